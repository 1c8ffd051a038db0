import DroverConfig
import Foundation
import XCTest

/// `include = glob`: order, relative paths, errors with the included file's location.
final class IncludeTests: XCTestCase {
    func testIncludesAreReadInSortedOrderRelativeToTheConfigDirectory() throws {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            [global]
            log_level = warning
            include = pool.d/*.conf
            """)
        dir.write("pool.d/b.conf", """
            [b]
            listen = 127.0.0.1:9002
            pm.max_children = 1
            """)
        dir.write("pool.d/a.conf", """
            [a]
            listen = sockets/$pool.sock
            pm.max_children = 1
            """)
        dir.write("pool.d/ignored.txt", "garbage")
        dir.mkdir("pool.d/dir.conf")  // directories matching the glob are skipped
        let r = load(main)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let c = try XCTUnwrap(r.config)
        XCTAssertEqual(c.pools.map(\.name), ["a", "b"])
        XCTAssertEqual(c.files, [main, dir.path + "/pool.d/a.conf", dir.path + "/pool.d/b.conf"])
        XCTAssertEqual(c.prefix, dir.path)
        XCTAssertEqual(c.pools[0].listen, [.unix(path: dir.path + "/sockets/a.sock")])
        XCTAssertEqual(c.pools[0].location, SourceLocation(file: dir.path + "/pool.d/a.conf", line: 1))
    }

    func testRelativeIncludesFollowThePrefix() throws {
        let dir = ConfigDir()
        let main = dir.write("etc/php-fpm.conf", "include = etc/pool.d/*.conf\n")
        dir.write("etc/pool.d/www.conf", """
            [www]
            listen = var/run/www.sock
            pm.max_children = 1
            """)
        let r = load(main, prefix: dir.path)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let c = try XCTUnwrap(r.config)
        XCTAssertEqual(c.prefix, dir.path)
        XCTAssertEqual(c.pools.first?.listen, [.unix(path: dir.path + "/var/run/www.sock")])
    }

    func testErrorsCarryTheIncludedFileAndLine() {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            [global]
            include = pool.d/*.conf
            """)
        let included = dir.write("pool.d/www.conf", """
            [www]
            listen = /tmp/x.sock

            pm.max_children = 1
            no_such_thing = 1
            """)
        let r = load(main)
        XCTAssertEqual(r.errors.map(\.description), ["\(included):5: no_such_thing: unknown directive"])
    }

    func testIncludedLinesContinueTheCurrentSection() throws {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            [www]
            listen = /tmp/x.sock
            include = common.inc
            pm.max_requests = 9
            """)
        dir.write("common.inc", """
            pm.max_children = 7
            env[FROM_INCLUDE] = yes-really
            """)
        let c = try XCTUnwrap(load(main).config)
        XCTAssertEqual(c.pools[0].maxChildren, 7)
        XCTAssertEqual(c.pools[0].maxRequests, 9)
        XCTAssertEqual(c.pools[0].env.first?.value, "yes-really")
    }

    func testAWildcardMatchingNothingIsAWarning() {
        let dir = ConfigDir()
        dir.mkdir("empty")
        let main = dir.write("php-fpm.conf", """
            [global]
            include = empty/*.conf
            \(minimalPool)
            """)
        let r = load(main)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        assertDiagnostic(r.warnings, at: main, line: 2, directive: "include",
                         contains: "nothing matches the include pattern '\(dir.path)/empty/*.conf'")
    }

    func testAMissingPlainPathIsAnError() {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            [global]
            include = missing.conf
            \(minimalPool)
            """)
        let r = load(main)
        assertDiagnostic(r.errors, at: main, line: 2, directive: "include", contains: "'\(dir.path)/missing.conf' does not exist")
    }

    func testAMissingDirectoryIsAnError() {
        // php-fpm: glob(3) with GLOB_ERR fails when a directory cannot be read.
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            include = nodir/*.conf
            \(minimalPool)
            """)
        let r = load(main)
        assertDiagnostic(r.errors, at: main, line: 1, directive: "include", contains: "cannot read a directory")
    }

    func testIncludeCycleIsAnError() {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            \(minimalPool)
            include = a.inc
            """)
        dir.write("a.inc", "include = b.inc\n")
        dir.write("b.inc", "include = a.inc\n")
        let r = load(main)
        XCTAssertNil(r.config)
        assertDiagnostic(r.errors, at: dir.path + "/b.inc", line: 1, directive: "include", contains: "include cycle")
    }

    func testIncludeDepthIsLimitedLikePHPFPM() {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", "include = 1.inc\n\(minimalPool)\n")
        for i in 1...5 { dir.write("\(i).inc", "include = \(i + 1).inc\n") }
        dir.write("6.inc", "log_level = debug\n")
        let r = load(main)
        assertDiagnostic(r.errors, at: dir.path + "/4.inc", line: 1, directive: "include", contains: "more than 5 files nested")
        // Four levels below the main file are fine.
        let ok = ConfigDir()
        let main2 = ok.write("php-fpm.conf", "include = 1.inc\n\(minimalPool)\n")
        for i in 1...3 { ok.write("\(i).inc", "include = \(i + 1).inc\n") }
        ok.write("4.inc", "log_level = debug\n")
        XCTAssertEqual(load(main2).errors.count, 0)
    }

    func testAFileIncludedTwiceIsReadOnce() throws {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            [www]
            listen = /tmp/x.sock
            include = env.inc
            include = env.inc
            """)
        dir.write("env.inc", "env[A] = 1\npm.max_children = 1\n")
        let r = load(main)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        XCTAssertEqual(r.config?.pools[0].env.count, 1)
        assertDiagnostic(r.warnings, at: main, line: 4, directive: "include", contains: "already read")
    }

    func testIncludeWithEnvironmentVariable() throws {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", "include = ${CONF_DIR}/*.conf\n")
        dir.write("conf/www.conf", minimalPool)
        let r = load(main, environment: ["CONF_DIR": dir.path + "/conf"])
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        XCTAssertEqual(r.config?.pools.map(\.name), ["www"])
    }

    func testFixtureTree() throws {
        let fixtures = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).path
        let r = load(fixtures + "/multi/drover.conf", environment: ["APP_ROOT": "/srv/app"])
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let c = try XCTUnwrap(r.config)
        XCTAssertEqual(c.pools.map(\.name), ["api", "git", "legacy"])
        let api = c.pools[0]
        XCTAssertEqual(api.command, ["/srv/app/bin/api-server", "--workers", "1", "--name", "api"])
        XCTAssertEqual(api.listen, [.tcp(host: "127.0.0.1", port: 9101), .unix(path: "/tmp/drover-fixture-api.sock")])
        XCTAssertEqual(c.global.errorLog, fixtures + "/multi/log/drover.log")
        XCTAssertEqual(c.global.processControlTimeout, 10)
        XCTAssertEqual(api.listenAllowedClients, ["127.0.0.1", "10.0.0.0/8", "::1"])
        let git = c.pools[1]
        XCTAssertEqual(git.command, ["/usr/sbin/fcgiwrap", "-f"])
        XCTAssertEqual(git.env.map { "\($0.name)=\($0.value)" }, ["GIT_PROJECT_ROOT=/srv/git", "GIT_HTTP_EXPORT_ALL=1"])
        let legacy = c.pools[2]
        XCTAssertEqual(legacy.command, [])
        XCTAssertEqual(legacy.phpSettings.map { "\($0.admin ? "admin " : "")\($0.name)=\($0.value)" },
                       ["memory_limit=256M", "display_errors=0", "admin log_errors=1", "admin error_log=\(fixtures)/multi/log/legacy-php.log"])
    }
}
