import DroverConfig
import XCTest

@testable import DroverWorker

final class AppCommandLineTests: XCTestCase {
    func pool(_ configure: (inout PoolConfig) -> Void) -> PoolConfig {
        var p = PoolConfig(name: "www", location: SourceLocation(file: "t.conf", line: 1))
        configure(&p)
        return p
    }

    let env = ["PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin", "HOME": "/root", "PHP_FCGI_CHILDREN": "8"]

    func testDefaultIsPHPCGIWithDashD() throws {
        let p = pool {
            $0.phpSettings = [(name: "memory_limit", value: "64M", admin: true),
                              (name: "display_errors", value: "0", admin: false)]
        }
        let (argv, envp) = try App.commandLine(for: p, environment: env)
        XCTAssertTrue(argv[0].hasSuffix("/php-cgi"))
        XCTAssertEqual(Array(argv.dropFirst()), ["-d", "memory_limit=64M", "-d", "display_errors=0"])
        // clear_env = yes (default): nothing from the master, but php-cgi's own knobs are fixed.
        XCTAssertEqual(envp, ["PHP_FCGI_MAX_REQUESTS=0"])
    }

    func testCommandIsUsedAsIsAndEnvApplies() throws {
        let p = pool {
            $0.command = ["fcgiwrap", "-f"]
            $0.env = [(name: "FOO", value: "bar")]
            $0.phpSettings = [(name: "memory_limit", value: "64M", admin: true)]
            $0.clearEnv = false
        }
        let (argv, envp) = try App.commandLine(for: p, environment: env)
        XCTAssertTrue(argv[0].hasSuffix("/fcgiwrap"))
        XCTAssertEqual(Array(argv.dropFirst()), ["-f"])   // no -d for non-PHP apps
        XCTAssertTrue(envp.contains("FOO=bar"))
        XCTAssertTrue(envp.contains("HOME=/root"))
        XCTAssertTrue(envp.contains("PHP_FCGI_CHILDREN=8"))  // not php-cgi: untouched
    }

    func testPHPCGIEnvironmentIsFixedEvenWithoutClearEnv() throws {
        let p = pool {
            $0.clearEnv = false
            $0.env = [(name: "PHP_FCGI_MAX_REQUESTS", value: "1000")]
        }
        let (_, envp) = try App.commandLine(for: p, environment: env)
        XCTAssertFalse(envp.contains { $0.hasPrefix("PHP_FCGI_CHILDREN=") })
        // pm.max_requests is the only limit: php-cgi's own is always off.
        XCTAssertTrue(envp.contains("PHP_FCGI_MAX_REQUESTS=0"))
        XCTAssertFalse(envp.contains("PHP_FCGI_MAX_REQUESTS=1000"))
    }

    func testMissingProgramIsAnError() {
        let p = pool { $0.command = ["no-such-program-drover-test"] }
        XCTAssertThrowsError(try App.commandLine(for: p, environment: env)) { error in
            XCTAssertTrue(error is App.StartFailure, "\(error)")
        }
    }

    /// Under chroot the program is looked up inside the chroot, by the
    /// spawned child: the worker leaves the name as written.
    func testUnderChrootTheProgramIsNotLookedUpOnTheHost() throws {
        let p = pool {
            $0.chroot = "/nonexistent-jail"
            $0.command = ["no-such-program-drover-test", "-x"]
        }
        let (argv, _) = try App.commandLine(for: p, environment: env)
        XCTAssertEqual(argv, ["no-such-program-drover-test", "-x"])
        let php = pool { $0.chroot = "/jail" }
        XCTAssertEqual(try App.commandLine(for: php, environment: env).0, ["php-cgi"])
    }
}
