import DroverConfig
import XCTest

@testable import DroverCore

final class AllowedClientsTests: XCTestCase {
    func addr(_ s: String) -> PeerAddress { PeerAddress(parsing: s)! }

    func testEmptyListAllowsEveryone() {
        XCTAssertTrue(AllowedClients([]).allows(addr("203.0.113.9")))
    }

    func testAddressesAndCIDRRanges() {
        let rules = AllowedClients(["127.0.0.1", "10.1.0.0/16", "2001:db8::/32", "::1"].compactMap(IPRange.init(parsing:)))
        XCTAssertTrue(rules.allows(addr("127.0.0.1")))
        XCTAssertFalse(rules.allows(addr("127.0.0.2")))
        XCTAssertTrue(rules.allows(addr("10.1.255.3")))
        XCTAssertFalse(rules.allows(addr("10.2.0.1")))
        XCTAssertTrue(rules.allows(addr("2001:db8:1::5")))
        XCTAssertFalse(rules.allows(addr("2001:db9::5")))
        XCTAssertTrue(rules.allows(addr("::1")))
        // IPv4-mapped IPv6 peers (dual-stack sockets) match IPv4 rules.
        XCTAssertTrue(rules.allows(addr("::ffff:10.1.2.3")))
        XCTAssertFalse(rules.allows(addr("::ffff:192.0.2.1")))
        // Unix sockets are not subject to allowed_clients (php-fpm).
        XCTAssertTrue(rules.allows(.unix))
    }

    func testOddPrefixLengths() {
        let rules = AllowedClients(["192.168.1.128/25"].compactMap(IPRange.init(parsing:)))
        XCTAssertTrue(rules.allows(addr("192.168.1.200")))
        XCTAssertFalse(rules.allows(addr("192.168.1.100")))
    }
}

final class ExitStatusTests: XCTestCase {
    func testPHPFPMWording() {
        XCTAssertEqual(ExitStatus(0).description, "exited with code 0")
        XCTAssertEqual(ExitStatus(75 << 8).description, "exited with code 75")
        XCTAssertEqual(ExitStatus(9).description, "exited on signal 9 (SIGKILL)")
        XCTAssertEqual(ExitStatus(11 | 0x80).description, "exited on signal 11 (SIGSEGV) - core dumped")
        XCTAssertEqual(ExitStatus.seconds(1_000_042), "1.000042")
        XCTAssertEqual(ExitStatus.seconds(5), "0.000005")
    }
}

final class ErrorLogTests: XCTestCase {
    func testLineFormat() {
        let line = ErrorLog.format(.warning, "[pool www] child 1 exited", at: 0)
        // [01-Jan-1970 00:00:00] WARNING: ... (in local time)
        XCTAssertTrue(line.hasPrefix("["))
        XCTAssertTrue(line.hasSuffix("] WARNING: [pool www] child 1 exited\n"))
        XCTAssertNotNil(line.range(of: #"^\[\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d\] "#, options: .regularExpression))
    }

    func testLevelFilter() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("drover-log-\(getpid()).log").path
        defer { unlink(path) }
        let log = try ErrorLog(path: path, level: .warning)
        log.notice("hidden")
        log.warning("shown")
        log.error("also shown")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertFalse(text.contains("hidden"))
        XCTAssertTrue(text.contains("WARNING: shown"))
        XCTAssertTrue(text.contains("ERROR: also shown"))
    }
}
