import DroverConfig
import Foundation
import XCTest

/// Booleans, times, sizes, modes, shell words, addresses.
final class ValueSyntaxTests: XCTestCase {
    private func pool(_ lines: String, environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line) -> PoolConfig? {
        loadOK("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            \(lines)
            """, environment: environment, file: file, line: line)?.pools.first
    }

    func testBooleans() {
        for (text, expected) in [("yes", true), ("Yes", true), ("on", true), ("TRUE", true), ("1", true),
                                 ("no", false), ("Off", false), ("false", false), ("0", false), ("", false), ("none", false),
                                 ("\"yes\"", true)] {
            XCTAssertEqual(pool("process.dumpable = \(text)")?.processDumpable, expected, text)
            XCTAssertEqual(pool("clear_env = \(text)")?.clearEnv, expected, text)
        }
        assertError("""
            [global]
            daemonize = maybe
            \(minimalPool)
            """, line: 2, directive: "daemonize", contains: "invalid boolean value 'maybe'")
    }

    func testTimes() {
        for (text, seconds) in [("0", 0.0), ("10", 10), ("10s", 10), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5s", 1.5), ("30S", 30)] {
            XCTAssertEqual(pool("request_terminate_timeout = \(text)")?.requestTerminateTimeout, seconds, text)
        }
        for (text, fragment) in [("5x", "unknown suffix used in time value '5x'"), ("s", "invalid time value 's'"),
                                 ("-1", "invalid time value '-1'"), ("1.2.3s", "invalid time value"), ("", "invalid time value ''")] {
            assertError("""
                [www]
                listen = /tmp/v.sock
                pm.max_children = 1
                request_terminate_timeout = \(text)
                """, line: 4, directive: "request_terminate_timeout", contains: fragment)
        }
        assertError("""
            [global]
            process_control_timeout = 10ms
            \(minimalPool)
            """, line: 2, directive: "process_control_timeout", contains: "invalid time value '10ms'")
    }

    func testIntegers() {
        XCTAssertEqual(pool("pm.max_requests = 500")?.maxRequests, 500)
        XCTAssertEqual(pool("pm.max_requests = +5")?.maxRequests, 5)
        assertError("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            pm.max_requests = 5k
            """, line: 4, directive: "pm.max_requests", contains: "'5k' is not a valid integer")
        assertError("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            pm.max_requests = -1
            """, line: 4, directive: "pm.max_requests", contains: "must be greater than or equal to zero")
        assertError("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 99999999999999999999999
            """, line: 3, directive: "pm.max_children", contains: "is not a valid integer")
    }

    func testSizes() throws {
        for (text, bytes) in [("0", Int64(0)), ("512", 512), ("64K", 65536), ("64k", 65536), ("10M", 10 << 20), ("1G", 1 << 30)] {
            let c = try XCTUnwrap(loadOK("log.max_size = \(text)\n\(minimalPool)"), text)
            XCTAssertEqual(c.global.logMaxSize, bytes, text)
        }
        for (text, fragment) in [("1T", "unknown suffix used in size '1T'"), ("M", "invalid size 'M'"), ("1.5M", "invalid size '1.5M'"),
                                 ("99999999999G", "too large")] {
            assertError("log.max_size = \(text)\n\(minimalPool)", line: 1, directive: "log.max_size", contains: fragment)
        }
    }

    func testOctalMode() {
        XCTAssertEqual(pool("listen.mode = 0660")?.listenMode, 0o660)
        XCTAssertEqual(pool("listen.mode = 600")?.listenMode, 0o600)
        XCTAssertEqual(pool("listen.mode = 0o666")?.listenMode, 0o666)
        XCTAssertNil(pool("")?.listenMode)
        assertError("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            listen.mode = 0680
            """, line: 4, directive: "listen.mode", contains: "invalid mode '0680'")
        assertError("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            listen.mode = 01777
            """, line: 4, directive: "listen.mode", contains: "out of range")
    }

    func testRlimits() {
        XCTAssertEqual(pool("rlimit_core = unlimited")?.rlimitCore, -1)
        XCTAssertEqual(pool("rlimit_core = 0")?.rlimitCore, 0)
        XCTAssertEqual(pool("rlimit_files = 4096")?.rlimitFiles, 4096)
        XCTAssertNil(pool("rlimit_files = 0")?.rlimitFiles)  // php-fpm: 0 leaves the system value
        assertError("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            rlimit_core = -1
            """, line: 4, directive: "rlimit_core", contains: "must be greater than or equal to zero or 'unlimited'")
        assertError("""
            [global]
            rlimit_files = lots
            \(minimalPool)
            """, line: 2, directive: "rlimit_files", contains: "'lots' is not a valid integer")
    }

    // MARK: ShellWords

    func testShellWords() throws {
        let cases: [(String, [String])] = [
            ("", []),
            ("   ", []),
            ("php-cgi", ["php-cgi"]),
            ("  /usr/bin/app   -x  --y=1 ", ["/usr/bin/app", "-x", "--y=1"]),
            ("a 'b c' d", ["a", "b c", "d"]),
            (#"a "b c" d"#, ["a", "b c", "d"]),
            (#"'it''s'"#, ["its"]),
            (#"'don'\''t'"#, ["don't"]),
            (#""a \"quoted\" \\ \$HOME \x""#, [#"a "quoted" \ $HOME \x"#]),
            (#"a\ b c\\d \'e"#, ["a b", #"c\d"#, "'e"]),
            ("'' \"\" x", ["", "", "x"]),
            ("pre'mid'\"post\"", ["premidpost"]),
            ("sh -c 'echo a; echo b | wc'", ["sh", "-c", "echo a; echo b | wc"]),
            ("a\tb\nc", ["a", "b", "c"]),
            ("$HOME ${HOME}", ["$HOME", "${HOME}"]),
            ("über 'naïve'", ["über", "naïve"]),
        ]
        for (input, expected) in cases {
            XCTAssertEqual(try ShellWords.split(input), expected, input)
        }
        for (input, message) in [("'open", "unterminated single quote"), (#""open"#, "unterminated double quote"),
                                  (#"a\"#, "trailing backslash"), (#"a "b\""#, "unterminated double quote")] {
            XCTAssertThrowsError(try ShellWords.split(input), input) { error in
                XCTAssertEqual((error as? ShellWordsError)?.message, message, input)
            }
        }
    }

    func testCommandDirective() throws {
        let p = try XCTUnwrap(pool(#"""
            command = ${APP}/bin/server --pool=$pool --home "${HOME}" --literal '${HOME} $pool' arg\;x ; a comment
            """#, environment: ["APP": "/opt/my app", "HOME": "/home/h"]))
        // Expanded values are never split again.
        XCTAssertEqual(p.command, ["/opt/my app/bin/server", "--pool=www", "--home", "/home/h", "--literal", "${HOME} $pool", "arg;x"])
        XCTAssertEqual(pool("command =")?.command, [])
        XCTAssertEqual(pool("command = ; just a comment")?.command, [])
        XCTAssertEqual(pool("command = sh -c 'exec app; true'")?.command, ["sh", "-c", "exec app; true"])
    }

    func testCommandErrorsHaveTheirLine() {
        assertError("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            command = /usr/bin/app --name 'unterminated
            """, line: 4, directive: "command", contains: "unterminated single quote")
    }

    func testWholeQuotedCommandWarns() {
        assertWarning("""
            [www]
            listen = /tmp/v.sock
            pm.max_children = 1
            command = "/usr/sbin/fcgiwrap -f"
            """, line: 4, directive: "command", contains: "the whole value is quoted, so it is one word")
    }

    // MARK: addresses

    func testIPRanges() throws {
        let r = try XCTUnwrap(IPRange(parsing: "10.1.2.3/8"))
        XCTAssertEqual(r.description, "10.0.0.0/8")
        XCTAssertTrue(r.contains([10, 200, 0, 1]))
        XCTAssertFalse(r.contains([11, 0, 0, 1]))
        // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
        XCTAssertTrue(r.contains([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 9, 9, 9]))
        XCTAssertEqual(IPRange(parsing: "127.0.0.1")?.description, "127.0.0.1")
        XCTAssertEqual(IPRange(parsing: "127.0.0.1")?.prefixLength, 32)
        let v6 = try XCTUnwrap(IPRange(parsing: "2001:DB8::/32"))
        XCTAssertEqual(v6.description, "2001:db8::/32")
        XCTAssertTrue(v6.contains(try XCTUnwrap(IPRange(parsing: "2001:db8:ffff::1")).address))
        XCTAssertFalse(v6.contains([10, 0, 0, 1]))
        XCTAssertEqual(IPRange(parsing: "[::1]")?.description, "::1")
        XCTAssertEqual(IPRange(parsing: "0.0.0.0/0")?.contains([1, 2, 3, 4]), true)
        for bad in ["", "localhost", "10.0.0.0/33", "::/129", "10.0.0/8", "1.2.3.4/", "1.2.3.4/x", "127.1", "10.0.0.0/-1"] {
            XCTAssertNil(IPRange(parsing: bad), bad)
        }
    }

    func testAllowedClients() throws {
        let p = try XCTUnwrap(pool("listen.allowed_clients = 127.0.0.1, 192.168.0.0/16 ,::1,,fd00::/8"))
        XCTAssertEqual(p.listenAllowedClients, ["127.0.0.1", "192.168.0.0/16", "::1", "fd00::/8"])
        XCTAssertEqual(p.listenAllowedClientRanges.map(\.description), ["127.0.0.1", "192.168.0.0/16", "::1", "fd00::/8"])
        XCTAssertEqual(pool("listen.allowed_clients =")?.listenAllowedClients, [])
        assertError("""
            [www]
            listen = 127.0.0.1:9000
            pm.max_children = 1
            listen.allowed_clients = 127.0.0.1, localhost, 10.0.0.0/40
            """, line: 4, directive: "listen.allowed_clients", contains: "invalid addresses 'localhost', '10.0.0.0/40'")
        assertWarning("""
            [www]
            listen = 127.0.0.1:9000
            pm.max_children = 1
            listen.allowed_clients = 10.1.0.0/8
            """, line: 4, directive: "listen.allowed_clients", contains: "'10.1.0.0/8' has host bits set; it means 10.0.0.0/8")
    }

    func testListenSyntax() throws {
        let cases: [(String, ListenAddress)] = [
            ("/run/php.sock", .unix(path: "/run/php.sock")),
            ("/run//php/./x.sock", .unix(path: "/run/php/x.sock")),
            ("9000", .tcp(host: nil, port: 9000)),
            ("*:9000", .tcp(host: nil, port: 9000)),
            ("127.0.0.1:9000", .tcp(host: "127.0.0.1", port: 9000)),
            ("0.0.0.0:9000", .tcp(host: "0.0.0.0", port: 9000)),
            ("[::1]:9000", .tcp(host: "::1", port: 9000)),
            ("[::]:9000", .tcp(host: "::", port: 9000)),
            ("[2001:DB8:0::1]:65535", .tcp(host: "2001:db8::1", port: 65535)),
            ("::1:9000", .tcp(host: "::1", port: 9000)),
        ]
        for (text, expected) in cases {
            let c = try XCTUnwrap(loadOK("""
                [www]
                listen = \(text)
                pm.max_children = 1
                """), text)
            XCTAssertEqual(c.pools[0].listen, [expected], text)
        }
        XCTAssertEqual(ListenAddress.tcp(host: "::1", port: 9000).description, "[::1]:9000")
    }

    func testListenHostNamesAreResolved() throws {
        let c = try XCTUnwrap(loadOK("""
            [www]
            listen = localhost:9000
            pm.max_children = 1
            """))
        guard case .tcp(let host?, 9000) = c.pools[0].listen[0] else {
            return XCTFail("\(c.pools[0].listen)")
        }
        XCTAssertTrue(host == "127.0.0.1" || host == "::1", host)
    }

    func testListenErrors() {
        for (text, fragment) in [("0", "invalid port '0'"), ("70000", "invalid port '70000'"), ("127.0.0.1:", "invalid port ''"),
                                 ("127.0.0.1:http", "invalid port 'http'"), (":9000", "missing host"),
                                 ("[127.0.0.1]:9000", "is not an IPv6 address"), ("bad host:9000", "neither an IP address nor a host name"),
                                 ("\"\"", "empty address")] {
            assertError("""
                [www]
                listen = \(text)
                pm.max_children = 1
                """, line: 2, directive: "listen", contains: fragment)
        }
    }

    func testUnixSocketPathLength() {
        let long = "/tmp/" + String(repeating: "s", count: 103)  // 108 bytes
        assertError("""
            [www]
            listen = \(long)
            pm.max_children = 1
            """, line: 2, directive: "listen", contains: "is too long (108 bytes; at most 107)")
        XCTAssertNotNil(loadOK("""
            [www]
            listen = \(long.dropLast())
            pm.max_children = 1
            """))
    }
}
