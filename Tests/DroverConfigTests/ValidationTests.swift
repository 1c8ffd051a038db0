import DroverConfig
import Foundation
import XCTest

/// Rules across directives (php-fpm's fpm_conf_process_all_pools) and paths.
final class ValidationTests: XCTestCase {
    func testAtLeastOnePool() {
        let (r, _, path) = loadText("""
            [global]
            log_level = debug
            """)
        XCTAssertNil(r.config)
        XCTAssertEqual(r.errors.map(\.description), ["no pool defined: at least one pool section (e.g. [www]) must be specified in \(path)"])
    }

    func testMissingRequiredDirectivesPointAtTheSectionHeader() {
        let (r, _, path) = loadText("""
            [global]
            log_level = debug

            [www]
            user = nobody
            """)
        XCTAssertEqual(r.errors.map(\.description), [
            "\(path):4: listen: no listen address defined for pool [www] (required)",
            "\(path):4: pm.max_children: not set for pool [www] (required: the number of workers)",
        ])
    }

    func testMaxChildrenMustBePositive() {
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 0
            """, line: 3, directive: "pm.max_children", contains: "must be a positive value (got 0)")
    }

    private func dynamic(_ settings: String) -> String {
        """
        [www]
        listen = /tmp/x.sock
        pm = dynamic
        pm.max_children = 10
        \(settings)
        """
    }

    func testDynamicRules() throws {
        // line 5 onwards are `settings`
        assertError(dynamic("pm.max_spare_servers = 3"), line: 1, directive: "pm.min_spare_servers",
                    contains: "not set for pool [www] (required with pm = dynamic)")
        assertError(dynamic("pm.min_spare_servers = 0\npm.max_spare_servers = 3"), line: 5, directive: "pm.min_spare_servers",
                    contains: "must be a positive value (got 0)")
        assertError(dynamic("pm.min_spare_servers = 2"), line: 1, directive: "pm.max_spare_servers",
                    contains: "not set for pool [www]")
        assertError(dynamic("pm.min_spare_servers = 2\npm.max_spare_servers = 11"), line: 6, directive: "pm.max_spare_servers",
                    contains: "pm.min_spare_servers(2) and pm.max_spare_servers(11) cannot be greater than pm.max_children(10)")
        assertError(dynamic("pm.min_spare_servers = 5\npm.max_spare_servers = 4"), line: 6, directive: "pm.max_spare_servers",
                    contains: "pm.max_spare_servers(4) must not be less than pm.min_spare_servers(5)")
        assertError(dynamic("pm.min_spare_servers = 2\npm.max_spare_servers = 4\npm.start_servers = 5"), line: 7,
                    directive: "pm.start_servers",
                    contains: "pm.start_servers(5) must not be less than pm.min_spare_servers(2) and not greater than pm.max_spare_servers(4)")
        assertError(dynamic("pm.min_spare_servers = 2\npm.max_spare_servers = 4\npm.max_spawn_rate = 0"), line: 7,
                    directive: "pm.max_spawn_rate", contains: "must be a positive value (got 0)")
        // start_servers defaults to min + (max - min) / 2, like php-fpm.
        let c = try XCTUnwrap(loadOK(dynamic("pm.min_spare_servers = 2\npm.max_spare_servers = 7")))
        XCTAssertEqual(c.pools[0].startServers, 4)
        // The spare rules are not checked for static pools.
        XCTAssertNotNil(loadOK("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 10
            pm.min_spare_servers = 50
            """))
    }

    func testOndemandRules() {
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm = ondemand
            pm.max_children = 10
            pm.process_idle_timeout = 0s
            """, line: 5, directive: "pm.process_idle_timeout", contains: "must be greater than 0s with pm = ondemand")
        let c = loadOK("""
            [www]
            listen = /tmp/x.sock
            pm = ondemand
            pm.max_children = 10
            pm.start_servers = 3
            """)
        XCTAssertEqual(c?.pools[0].startServers, 0)
        XCTAssertEqual(c?.pools[0].processIdleTimeout, 10)
    }

    func testDuplicateListenAcrossPoolsNamesBothLocations() {
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            [a]
            listen = 127.0.0.1:9000
            pm.max_children = 1
            include = pool.d/*.conf
            """)
        let other = dir.write("pool.d/b.conf", """
            [b]
            pm.max_children = 1
            listen = /tmp/b.sock
            listen = 127.0.0.1:9000
            """)
        let r = load(main)
        XCTAssertEqual(r.errors.map(\.description), [
            "\(other):4: listen: 127.0.0.1:9000 is already used by pool 'a' (listen at \(main):2)",
        ])
    }

    func testOverlappingListenAddresses() {
        assertError("""
            [a]
            listen = 9000
            pm.max_children = 1
            [b]
            listen = 127.0.0.1:9000
            pm.max_children = 1
            """, line: 5, directive: "listen", contains: "127.0.0.1:9000 overlaps 9000, used by pool 'a'")
        assertError("""
            [a]
            listen = 0.0.0.0:9000
            pm.max_children = 1
            [b]
            listen = 10.0.0.1:9000
            pm.max_children = 1
            """, line: 5, directive: "listen", contains: "overlaps 0.0.0.0:9000")
        // Different ports, or IPv4 any vs an IPv6 address, do not overlap.
        XCTAssertNotNil(loadOK("""
            [a]
            listen = 0.0.0.0:9000
            listen = 9001
            pm.max_children = 1
            [b]
            listen = [::1]:9000
            listen = /tmp/b.sock
            pm.max_children = 1
            """))
        // Unix paths are compared after resolution against the prefix.
        let dir = ConfigDir()
        let main = dir.write("php-fpm.conf", """
            [a]
            listen = run/x.sock
            pm.max_children = 1
            [b]
            listen = \(dir.path)/run/./x.sock
            pm.max_children = 1
            """)
        assertDiagnostic(load(main).errors, at: main, line: 5, directive: "listen", contains: "is already used by pool 'a'")
    }

    func testDuplicateListenInOnePool() {
        assertError("""
            [a]
            listen = /tmp/a.sock
            listen = 8080
            listen = /tmp/a.sock
            pm.max_children = 1
            """, line: 4, directive: "listen", contains: "/tmp/a.sock is listed twice in pool [a] (first at ")
    }

    func testStatusListenConflicts() {
        assertError("""
            [global]
            status.listen = 127.0.0.1:9000
            [a]
            listen = 127.0.0.1:9000
            pm.max_children = 1
            """, line: 4, directive: "listen", contains: "is already used by [global] (status.listen at ")
        assertError("""
            [a]
            listen = 127.0.0.1:9000
            pm.status_listen = 127.0.0.1:9000
            pm.max_children = 1
            """, line: 3, directive: "pm.status_listen", contains: "is already used by pool 'a'")
    }

    func testPingAndStatusPaths() {
        let cases: [(String, String, String)] = [
            ("ping.path = ping", "ping.path", "'ping' must start with a '/'"),
            ("ping.path = /", "ping.path", "'/' is not long enough"),
            ("ping.path = /pi ng", "ping.path", "must contain only the following characters '[alphanum]/_-.~'"),
            ("pm.status_path = status", "pm.status_path", "must start with a '/'"),
            ("pm.status_path = /", "pm.status_path", "is not long enough"),
            ("pm.status_path = /st?tus", "pm.status_path", "must contain only the following characters"),
        ]
        for (line, directive, fragment) in cases {
            assertError("""
                [www]
                listen = /tmp/x.sock
                pm.max_children = 1
                \(line)
                """, line: 4, directive: directive, contains: fragment)
        }
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            ping.path = /ping
            ping.response = ""
            """, line: 5, directive: "ping.response", contains: "must not be empty when ping.path is set")
        // With pm.status_listen, "/" is a valid status path (php-fpm's shared status pool).
        XCTAssertNotNil(loadOK("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            pm.status_path = /
            pm.status_listen = 127.0.0.1:9901
            """))
        XCTAssertNotNil(loadOK("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            pm.status_path = /fpm-status_1.0~x
            ping.path = /ping
            """))
    }

    func testSlowlogRules() {
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            request_slowlog_timeout = 5s
            """, line: 4, directive: "request_slowlog_timeout", contains: "'slowlog' must be specified")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            slowlog = /tmp/slow.log
            request_terminate_timeout = 10s
            request_slowlog_timeout = 1m
            """, line: 6, directive: "request_slowlog_timeout", contains: "(60s) can't be greater than 'request_terminate_timeout' (10s)")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            slowlog = /tmp/slow.log
            request_slowlog_trace_depth = 0
            """, line: 5, directive: "request_slowlog_trace_depth", contains: "must be a positive value (got 0)")
    }

    func testPathsAreRelativeToThePrefix() throws {
        let dir = ConfigDir()
        dir.mkdir("pools/api")
        dir.mkdir("pools/api/www")
        let main = dir.write("etc/drover.conf", """
            [global]
            pid = run/drover.pid
            error_log = log/drover.log
            [api]
            prefix = pools/$pool
            listen = api.sock
            pm.max_children = 1
            access.log = log/access.log
            slowlog = $prefix/log/slow.log
            chdir = www
            """)
        let r = load(main, prefix: dir.path)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let c = try XCTUnwrap(r.config)
        XCTAssertEqual(c.global.pid, dir.path + "/run/drover.pid")
        XCTAssertEqual(c.global.errorLog, dir.path + "/log/drover.log")
        let p = c.pools[0]
        XCTAssertEqual(p.prefix, dir.path + "/pools/api")
        XCTAssertEqual(p.listen, [.unix(path: dir.path + "/pools/api/api.sock")])
        XCTAssertEqual(p.accessLog, dir.path + "/pools/api/log/access.log")
        XCTAssertEqual(p.slowlog, dir.path + "/pools/api/log/slow.log")
        XCTAssertEqual(p.chdir, dir.path + "/pools/api/www")
        // Without -p, the directory of the main file is the prefix.
        dir.mkdir("etc/pools/api/www")
        let d = try XCTUnwrap(load(main).config)
        XCTAssertEqual(d.global.pid, dir.path + "/etc/run/drover.pid")
    }

    func testPoolPrefixMustExist() {
        assertError("""
            [www]
            prefix = /nonexistent/pools/$pool
            listen = x.sock
            pm.max_children = 1
            """, line: 2, directive: "prefix", contains: "the pool prefix '/nonexistent/pools/www' does not exist or is not a directory")
    }

    func testChdirAndChroot() throws {
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            chdir = /nonexistent/dir
            """, line: 4, directive: "chdir", contains: "the chdir path '/nonexistent/dir' does not exist or is not a directory")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            chroot = /srv/$prefix
            """, line: 4, directive: "chroot", contains: "'$prefix' must be used at the beginning of the value")
        let dir = ConfigDir()
        dir.mkdir("jail/app")
        let main = dir.write("php-fpm.conf", """
            [www]
            prefix = jail
            listen = /tmp/x.sock
            pm.max_children = 1
            chroot = $prefix
            chdir = /app
            php_admin_value[error_log] = log/php.log
            """)
        let r = load(main)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let p = try XCTUnwrap(r.config?.pools[0])
        XCTAssertEqual(p.chroot, dir.path + "/jail")
        XCTAssertEqual(p.chdir, "/app")
        // Under chroot, php values are not made absolute (php-fpm).
        XCTAssertEqual(p.phpSettings.first?.value, "log/php.log")
        let bad = dir.write("bad.conf", """
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            chroot = jail
            chdir = /missing
            """)
        assertDiagnostic(load(bad).errors, at: bad, line: 5, directive: "chdir", contains: "within the chroot path")
    }

    /// listen.acl_*: lists of names or ids that must exist; listen.owner and
    /// listen.group are then ignored (php-fpm's warning).
    func testListenAcl() throws {
        let (r, _, path) = loadText("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            listen.owner = nobody
            listen.group = 0
            listen.acl_users = root, 0 ,,
            listen.acl_groups = root,12345
            """)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let p = try XCTUnwrap(r.config?.pools[0])
        XCTAssertEqual(p.listenAclUserNames, ["root", "0"])
        XCTAssertEqual(p.listenAclGroupNames, ["root", "12345"])
        XCTAssertTrue(p.hasListenAcl)
        assertDiagnostic(r.warnings, at: path, line: 4, directive: "listen.owner", contains: "ACL set, listen.owner = 'nobody' is ignored")
        assertDiagnostic(r.warnings, at: path, line: 5, directive: "listen.group", contains: "ACL set, listen.group = '0' is ignored")

        let (bad, _, badPath) = loadText("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            listen.acl_users = root, no-such-user-drover
            listen.acl_groups = no-such-group-drover
            """)
        assertDiagnostic(bad.errors, at: badPath, line: 4, directive: "listen.acl_users",
                         contains: "[pool www] cannot get uid for user 'no-such-user-drover'")
        assertDiagnostic(bad.errors, at: badPath, line: 5, directive: "listen.acl_groups",
                         contains: "[pool www] cannot get gid for group 'no-such-group-drover'")
        XCTAssertEqual(bad.errors.count, 2, bad.errorText)

        let (tcp, _, tcpPath) = loadText("""
            [www]
            listen = 127.0.0.1:9000
            pm.max_children = 1
            listen.acl_groups = root
            """)
        XCTAssertTrue(tcp.errors.isEmpty, tcp.errorText)
        assertDiagnostic(tcp.warnings, at: tcpPath, line: 4, directive: "listen.acl_groups", contains: "has no effect")

        let none = try XCTUnwrap(loadOK(minimalPool))
        XCTAssertFalse(none.pools[0].hasListenAcl)
    }

    func testErrorsCollectWarningsToo() {
        let (r, _, path) = loadText("""
            [www]
            listen = /tmp/x.sock
            pm = dynamic
            pm.max_children = 0
            apparmor_hat = drover
            """)
        XCTAssertNil(r.config)
        assertDiagnostic(r.errors, at: path, line: 4, directive: "pm.max_children", contains: "must be a positive value")
        assertDiagnostic(r.warnings, at: path, line: 5, directive: "apparmor_hat", contains: "recognised but not implemented yet by Drover; ignored")
    }

    func testConfigErrorsDescriptionListsEveryError() throws {
        let dir = ConfigDir()
        let path = dir.write("x.conf", "[www]\nbogus = 1\nlisten = 0\n")
        XCTAssertThrowsError(try ConfigLoader.load(path: path, environment: [:])) { error in
            let e = error as? ConfigErrors
            XCTAssertEqual(e?.description, """
                \(path):2: bogus: unknown directive
                \(path):3: listen: invalid port '0' in '0' (1-65535)
                \(path):1: pm.max_children: not set for pool [www] (required: the number of workers)
                """)
        }
    }
}
