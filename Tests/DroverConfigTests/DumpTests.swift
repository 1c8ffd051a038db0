import DroverConfig
import Foundation
import XCTest

/// `drover -tt` output.
final class DumpTests: XCTestCase {
    func testDumpShowsEveryEffectiveValue() throws {
        let c = try XCTUnwrap(loadOK(#"""
            [global]
            pid = /run/drover.pid
            log_level = warning
            rlimit_core = unlimited
            [www]
            listen = /run/php.sock
            listen = 127.0.0.1:9000
            listen.mode = 0660
            listen.allowed_clients = 127.0.0.1, 10.0.0.0/8
            pm.max_children = 4
            ping.path = /ping
            command = /usr/bin/app --greeting "hello world" it\'s
            env[A] = b
            php_admin_value[memory_limit] = 64M
            php_flag[display_errors] = on
            access.suppress_path[] = /ping
            """#))
        let dump = ConfigLoader.dump(c)
        let lines = dump.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        XCTAssertEqual(lines.first, "[global]")
        for expected in [
            "\tpid = /run/drover.pid", "\terror_log = stderr", "\tlog_level = warning", "\tdaemonize = yes",
            "\trlimit_core = unlimited", "\trlimit_files = undefined", "\tprocess_control_timeout = 0s",
            "[www]", "\tlisten = /run/php.sock", "\tlisten = 127.0.0.1:9000", "\tlisten.mode = 0660",
            "\tlisten.allowed_clients = 127.0.0.1,10.0.0.0/8", "\tlisten.backlog = -1", "\tpm = static",
            "\tpm.max_children = 4", "\tping.path = /ping", "\tping.response = pong", "\tuser = undefined",
            "\tcommand = /usr/bin/app --greeting 'hello world' 'it'\\''s'", "\tenv[A] = b",
            "\tphp_admin_value[memory_limit] = 64M", "\tphp_value[display_errors] = 1", "\taccess.suppress_path[] = /ping",
            "\tpm.process_idle_timeout = 10s", "\tclear_env = yes", "\tsecurity.limit_extensions = .php .phar",
        ] {
            XCTAssertTrue(lines.contains(expected), "missing \(expected.debugDescription) in:\n\(dump)")
        }
        // Global block, blank line, pool block.
        XCTAssertLessThan(lines.firstIndex(of: "\tpid = /run/drover.pid")!, lines.firstIndex(of: "[www]")!)
        XCTAssertEqual(lines[lines.firstIndex(of: "[www]")! - 1], "")
        // The command line written back splits into the same argv.
        let commandLine = try XCTUnwrap(lines.first { $0.hasPrefix("\tcommand = ") }).dropFirst("\tcommand = ".count)
        XCTAssertEqual(try ShellWords.split(String(commandLine)), c.pools[0].command)
    }

    func testDumpOfDefaultCommand() throws {
        let c = try XCTUnwrap(loadOK(minimalPool))
        XCTAssertTrue(ConfigLoader.dump(c).contains("\tcommand = php-cgi"))
    }

    func testEveryDirectiveAppearsInTheDump() throws {
        let c = try XCTUnwrap(loadOK(minimalPool))
        let dump = ConfigLoader.dump(c)
        for d in Directives.all where d.name != "include" && !d.isArray {
            XCTAssertTrue(dump.contains("\t\(d.name) = "), "\(d.name) missing from the dump")
        }
    }
}
