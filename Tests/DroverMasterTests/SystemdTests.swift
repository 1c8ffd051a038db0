import DroverConfig
import DroverCore
import Glibc
import XCTest

@testable import DroverMaster

/// sd_notify and socket activation without libsystemd (Systemd.swift,
/// DroverCore/System/SystemdNotify.swift and SocketActivation.swift).
final class SystemdTests: XCTestCase {
    // MARK: NOTIFY_SOCKET

    func testNotifySocketParsing() {
        XCTAssertEqual(NotifySocket("/run/systemd/notify")?.address, .path("/run/systemd/notify"))
        XCTAssertEqual(NotifySocket("@/org/freedesktop/systemd1/notify/123")?.address,
                       .abstract("/org/freedesktop/systemd1/notify/123"))
        XCTAssertEqual(NotifySocket("@x")?.description, "@x")
        XCTAssertNil(NotifySocket(nil))
        XCTAssertNil(NotifySocket(""))
        XCTAssertNil(NotifySocket("@"))
        XCTAssertNil(NotifySocket("relative/notify"))
        XCTAssertNil(NotifySocket("vsock:2:1234"))
        XCTAssertNil(NotifySocket("/" + String(repeating: "a", count: 107)))   // no room for the NUL
        XCTAssertNotNil(NotifySocket("/" + String(repeating: "a", count: 106)))
    }

    func testNotifySendsOneDatagramToAPath() throws {
        let path = "/tmp/drover-notify-test.\(getpid()).sock"
        unlink(path)
        defer { unlink(path) }
        let fd = try datagramSocket(bound: Array(path.utf8) + [0])
        defer { close(fd) }
        XCTAssertEqual(NotifySocket(path)!.send("READY=1\nMAINPID=42"), 0)
        XCTAssertEqual(receive(fd), "READY=1\nMAINPID=42")
    }

    func testNotifySendsToAnAbstractSocket() throws {
        let name = "drover-notify-test-\(getpid())"
        let fd = try datagramSocket(bound: [0] + Array(name.utf8))
        defer { close(fd) }
        XCTAssertEqual(NotifySocket("@" + name)!.send("STOPPING=1"), 0)
        XCTAssertEqual(receive(fd), "STOPPING=1")
    }

    func testNotifyToNobodyFailsWithoutBlocking() {
        XCTAssertNotEqual(NotifySocket("/tmp/drover-no-such-notify-socket")!.send("READY=1"), 0)
    }

    // MARK: LISTEN_*

    func testListenFDsForThisProcess() {
        let env = ["LISTEN_PID": "1234", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "www:"]
        let a = SocketActivation.parse(env, pid: 1234)
        XCTAssertEqual(a?.sockets, [.init(fd: 3, name: "www"), .init(fd: 4, name: nil)])
        XCTAssertEqual(a?.warnings, [])
    }

    func testListenFDsForAnotherProcessOrAbsent() {
        XCTAssertNil(SocketActivation.parse(["LISTEN_PID": "1", "LISTEN_FDS": "2"], pid: 1234))
        XCTAssertNil(SocketActivation.parse(["LISTEN_FDS": "2"], pid: 1234))
        XCTAssertNil(SocketActivation.parse(["LISTEN_PID": "1234"], pid: 1234))
        XCTAssertNil(SocketActivation.parse(["LISTEN_PID": "1234", "LISTEN_FDS": "0"], pid: 1234))
        XCTAssertNil(SocketActivation.parse(["LISTEN_PID": "1234", "LISTEN_FDS": "x"], pid: 1234))
        XCTAssertNil(SocketActivation.parse([:], pid: 1234))
    }

    func testListenFDNamesOfTheWrongLengthAreIgnored() {
        let a = SocketActivation.parse(["LISTEN_PID": "7", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "a:b"], pid: 7)
        XCTAssertEqual(a?.sockets, [.init(fd: 3, name: nil)])
        XCTAssertEqual(a?.warnings.count, 1)
    }

    func testWatchdog() {
        XCTAssertEqual(Systemd.watchdog(["WATCHDOG_USEC": "30000000"], pid: 5), 30_000_000)
        XCTAssertEqual(Systemd.watchdog(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"], pid: 5), 30_000_000)
        XCTAssertNil(Systemd.watchdog(["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "6"], pid: 5))
        XCTAssertNil(Systemd.watchdog(["WATCHDOG_USEC": "0"], pid: 5))
        XCTAssertNil(Systemd.watchdog([:], pid: 5))
    }

    func testChildrenDoNotSeeSystemdVariables() {
        let env = ["PATH": "/bin", "NOTIFY_SOCKET": "/run/n", "LISTEN_PID": "1", "LISTEN_FDS": "1",
                   "LISTEN_FDNAMES": "www", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"]
        XCTAssertEqual(Systemd.childEnvironment(env), ["PATH": "/bin"])
    }

    func testNoSystemdMeansNothing() {
        let s = Systemd(environment: ["PATH": "/bin"], pid: getpid())
        XCTAssertNil(s.notifySocket)
        XCTAssertNil(s.activation)
        XCTAssertNil(s.watchdogMicros)
        s.ready()
        s.reloading()
        s.stopping()
    }

    // MARK: STATUS

    func testStatusText() {
        let s = SystemdStatus(active: 2, idle: 3, requests: 125, slow: 1)
        XCTAssertEqual(s.text(previousRequests: 100, interval: 10),
                       "Processes active: 2, idle: 3, Requests: 125, slow: 1, Traffic: 2.5 req/sec")
        XCTAssertEqual(SystemdStatus().text(previousRequests: 0, interval: 10),
                       "Processes active: 0, idle: 0, Requests: 0, slow: 0, Traffic: 0 req/sec")
        XCTAssertTrue(s.text(previousRequests: 0, interval: 0).hasSuffix(", Traffic: 0 req/sec"))
    }

    func testTrafficIsPrintedLikePrintfG() {
        XCTAssertEqual(SystemdStatus.threeSignificant(0), "0")
        XCTAssertEqual(SystemdStatus.threeSignificant(1.0 / 3), "0.333")
        XCTAssertEqual(SystemdStatus.threeSignificant(12.34), "12.3")
        XCTAssertEqual(SystemdStatus.threeSignificant(1234), "1.23e+03")
    }

    // MARK: matching inherited sockets

    private let pools = [
        SocketActivation.PoolListen(name: "www", listen: [.unix(path: "/run/www.sock"), .tcp(host: "127.0.0.1", port: 9000)]),
        SocketActivation.PoolListen(name: "api", listen: [.tcp(host: nil, port: 9001)]),
    ]
    private func never(_: String, _: String) -> Bool { false }

    func testMatchByAddress() {
        let a = SocketActivation.assign([
            .init(fd: 3, name: nil, bound: .ipv6([UInt8](repeating: 0, count: 16), port: 9001)),
            .init(fd: 4, name: nil, bound: .unix("/run/www.sock")),
            .init(fd: 5, name: nil, bound: .ipv4([127, 0, 0, 1], port: 9000)),
            .init(fd: 6, name: nil, bound: .ipv4([127, 0, 0, 1], port: 9999)),
        ], to: pools, sameFile: never)
        XCTAssertEqual(a.fds, [0: [0: 4, 1: 5], 1: [0: 3]])
        XCTAssertEqual(a.unmatched, [6])
        XCTAssertTrue(a.byNameOnly.isEmpty)
    }

    func testMatchByName() {
        let a = SocketActivation.assign([
            .init(fd: 3, name: "api", bound: .unix("/run/systemd-owned.sock")),
            .init(fd: 4, name: "www", bound: .ipv4([127, 0, 0, 1], port: 9000)),
            .init(fd: 5, name: "www", bound: .unix("/elsewhere.sock")),
            .init(fd: 6, name: "www", bound: .unix("/third.sock")),      // www has no address left
            .init(fd: 7, name: "other", bound: .unix("/other.sock")),
        ], to: pools, sameFile: never)
        XCTAssertEqual(a.fds, [0: [0: 5, 1: 4], 1: [0: 3]])
        XCTAssertEqual(a.unmatched, [6, 7])
        XCTAssertEqual(a.byNameOnly.map(\.fd), [3, 5])
    }

    func testAddressRules() {
        let any4 = SocketActivation.Bound.ipv4([0, 0, 0, 0], port: 80)
        XCTAssertTrue(SocketActivation.matches(any4, .tcp(host: nil, port: 80)))
        XCTAssertFalse(SocketActivation.matches(any4, .tcp(host: "127.0.0.1", port: 80)))
        XCTAssertFalse(SocketActivation.matches(any4, .tcp(host: nil, port: 81)))
        let mapped = SocketActivation.Bound.ipv6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1], port: 80)
        XCTAssertTrue(SocketActivation.matches(mapped, .tcp(host: "10.0.0.1", port: 80)))
        let loop6 = SocketActivation.Bound.ipv6([UInt8](repeating: 0, count: 15) + [1], port: 80)
        XCTAssertTrue(SocketActivation.matches(loop6, .tcp(host: "::1", port: 80)))
        XCTAssertFalse(SocketActivation.matches(loop6, .unix(path: "/x")))
        XCTAssertTrue(SocketActivation.matches(.unix("/a"), .unix(path: "/b")) { _, _ in true })
        XCTAssertFalse(SocketActivation.matches(.unix("@a"), .unix(path: "/a")) { _, _ in true })
    }

    func testBoundAddressOfRealSockets() throws {
        let path = "/tmp/drover-activation-test.\(getpid()).sock"
        unlink(path)
        defer { unlink(path) }
        let unixFD = try Sockets.listen(.unix(path: path), backlog: 8)
        defer { close(unixFD) }
        XCTAssertEqual(try SocketActivation.bound(unixFD).get(), .unix(path))
        XCTAssertTrue(SocketActivation.matches(try SocketActivation.bound(unixFD).get(), .unix(path: path)))

        let tcpFD = try Sockets.listen(.tcp(host: "127.0.0.1", port: 0), backlog: 8)
        defer { close(tcpFD) }
        guard case .ipv4([127, 0, 0, 1], let port) = try SocketActivation.bound(tcpFD).get() else {
            return XCTFail("not 127.0.0.1")
        }
        XCTAssertGreaterThan(port, 0)

        let dgram = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(dgram) }
        XCTAssertEqual(SocketActivation.bound(dgram), .failure(.notListeningStream))
        let pipeFDs = try FD.pipe()
        defer { close(pipeFDs.read); close(pipeFDs.write) }
        XCTAssertEqual(SocketActivation.bound(pipeFDs.read), .failure(.notASocket))
    }

    func testAdoptSetsNonBlockingAndCloseOnExec() throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        try SocketActivation.adopt(fd)
        XCTAssertNotEqual(fcntl(fd, F_GETFL) & O_NONBLOCK, 0)
        XCTAssertNotEqual(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0)
    }

    // MARK: helpers

    private func datagramSocket(bound pathBytes: [UInt8]) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        let r = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        if r != 0 { throw SystemError("bind") }
        return fd
    }

    private func receive(_ fd: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        return n < 0 ? nil : String(decoding: buffer[..<n], as: UTF8.self)
    }
}
