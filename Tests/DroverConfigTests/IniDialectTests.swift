import DroverConfig
import Foundation
import XCTest

/// The ini dialect: comments, quoting, sections, arrays, variables, includes.
final class IniDialectTests: XCTestCase {
    func testCommentsBlankLinesAndWhitespace() throws {
        let c = try XCTUnwrap(loadOK("""
            ; a comment

            [global]
              log_level   =   debug   ; trailing comment
            [www]
            listen = /tmp/drover-a.sock ;comment right after
            pm.max_children=3
            ping.path = /ping
            ping.response = "a ; b" ; the quoted ';' stays
            	pm.max_requests	=	7	
            """))
        XCTAssertEqual(c.global.logLevel, .debug)
        let p = try XCTUnwrap(c.pools.first)
        XCTAssertEqual(p.name, "www")
        XCTAssertEqual(p.listen, [.unix(path: "/tmp/drover-a.sock")])
        XCTAssertEqual(p.maxChildren, 3)
        XCTAssertEqual(p.pingResponse, "a ; b")
        XCTAssertEqual(p.maxRequests, 7)
    }

    func testDirectivesBeforeAnySectionAreGlobal() throws {
        let c = try XCTUnwrap(loadOK("""
            log_level = error
            \(minimalPool)
            """))
        XCTAssertEqual(c.global.logLevel, .error)
    }

    func testQuoting() throws {
        let c = try XCTUnwrap(loadOK(#"""
            [www]
            listen = /tmp/q.sock
            pm.max_children = 1
            access.format = "%R - %u %t \"%m %r%Q%q\" %s"
            ping.response = 'raw \" ${HOME} ; kept'
            user = "a\\b"
            group = "x"'y'z
            slowlog = "  padded  "
            """#, environment: ["HOME": "/home/h"]))
        let p = c.pools[0]
        XCTAssertEqual(p.accessFormat, #"%R - %u %t "%m %r%Q%q" %s"#)
        XCTAssertEqual(p.pingResponse, #"raw \" ${HOME} ; kept"#)
        XCTAssertEqual(p.user, #"a\b"#)
        XCTAssertEqual(p.group, "xyz")
        XCTAssertTrue(p.slowlog?.hasSuffix("/  padded  ") ?? false, "\(p.slowlog ?? "nil")")
    }

    func testUnterminatedQuotesAreErrorsAtTheirLine() {
        assertError("""
            [www]
            listen = /tmp/u.sock
            pm.max_children = 1
            user = "www-data
            """, line: 4, directive: "user", contains: "unterminated double-quoted string")
        assertError("""
            [www]
            listen = /tmp/u.sock
            group = 'www
            pm.max_children = 1
            """, line: 3, directive: "group", contains: "unterminated single-quoted string")
    }

    func testEnvironmentVariables() throws {
        let c = try XCTUnwrap(loadOK("""
            [global]
            pid = ${RUN}/drover.pid
            [www]
            listen = "${RUN}/${POOLSOCK}"
            pm.max_children = 2
            user = ${UNSET_VARIABLE}nobody
            group = ${UNSET_VARIABLE:-fallback}
            """, environment: ["RUN": "/run/d", "POOLSOCK": "w.sock"]).map { $0 })
        XCTAssertEqual(c.global.pid, "/run/d/drover.pid")
        let p = c.pools[0]
        XCTAssertEqual(p.listen, [.unix(path: "/run/d/w.sock")])
        XCTAssertEqual(p.user, "nobody")  // unset → "" like PHP
        XCTAssertEqual(p.group, "fallback")
    }

    func testSingleQuotedVariablesStayLiteral() {
        // chroot = '${RUN}' is a relative path literally named ${RUN}: it does not exist.
        assertError("""
            [www]
            listen = /tmp/s.sock
            pm.max_children = 1
            chroot = '${RUN}'
            """, line: 4, directive: "chroot", contains: "/${RUN}' does not exist", environment: ["RUN": "/"])
    }

    func testUnterminatedVariable() {
        assertError("""
            [www]
            listen = ${RUN/x.sock
            pm.max_children = 1
            """, line: 2, directive: "listen", contains: "unterminated '${'")
    }

    func testPoolVariable() throws {
        let c = try XCTUnwrap(loadOK("""
            [app1]
            listen = /tmp/$pool.sock
            pm.max_children = 1
            env[POOL] = $pool-env
            php_admin_value[session.name] = $pool
            access.log = /var/log/$pool.access.log
            command = /usr/bin/app --name $pool "$pool" '$pool'
            """))
        let p = c.pools[0]
        XCTAssertEqual(p.listen, [.unix(path: "/tmp/app1.sock")])
        XCTAssertEqual(p.env.map(\.value), ["app1-env"])
        XCTAssertEqual(p.phpSettings.first?.value, "app1")
        XCTAssertEqual(p.accessLog, "/var/log/app1.access.log")
        XCTAssertEqual(p.command, ["/usr/bin/app", "--name", "app1", "app1", "$pool"])
    }

    func testPoolVariableOutsideAPoolIsAnError() {
        assertError("""
            [global]
            error_log = /var/log/$pool.log
            \(minimalPool)
            """, line: 2, directive: "error_log", contains: "cannot use '$pool' outside a pool section")
    }

    func testSyntaxErrors() {
        assertError("""
            [www
            listen = /tmp/x.sock
            """, line: 1, directive: nil, contains: "missing ']'")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            this line has no equals sign
            """, line: 4, directive: nil, contains: "expected 'name = value'")
        assertError("""
            [www]
            = value
            """, line: 2, directive: nil, contains: "missing directive name")
        assertError("""
            [www] trailing
            """, line: 1, directive: nil, contains: "after section header")
        assertError("""
            []
            """, line: 1, directive: nil, contains: "empty section name")
        assertError("""
            [www]
            env[X = 1
            """, line: 2, directive: nil, contains: "missing ']'")
    }

    func testAllErrorsAreReported() {
        let (r, _, path) = loadText("""
            [www]
            bogus1 = 1
            listen = /tmp/x.sock
            pm.max_children = x
            bogus2 = 2
            """)
        XCTAssertNil(r.config)
        XCTAssertEqual(r.errors.map { $0.location?.line }, [2, 4, 5], r.errorText)
        XCTAssertEqual(r.errors[0].description, "\(path):2: bogus1: unknown directive")
        XCTAssertEqual(r.errors[1].description, "\(path):4: pm.max_children: 'x' is not a valid integer")
    }

    func testSectionsAreCaseInsensitiveAndReopen() throws {
        let (r, _, path) = loadText("""
            [GLOBAL]
            log_level = alert
            [www]
            listen = /tmp/a.sock
            listen = /tmp/b.sock
            pm.max_children = 2
            [Global]
            daemonize = no
            [WWW]
            listen = /tmp/c.sock
            pm.max_children = 4
            """)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let c = try XCTUnwrap(r.config)
        XCTAssertEqual(c.global.logLevel, .alert)
        XCTAssertFalse(c.global.daemonize)
        XCTAssertEqual(c.pools.count, 1)
        let p = c.pools[0]
        XCTAssertEqual(p.name, "www")
        XCTAssertEqual(p.location, SourceLocation(file: path, line: 3))
        // Several listen lines in one section add up; a reopened section replaces them.
        XCTAssertEqual(p.listen, [.unix(path: "/tmp/c.sock")])
        XCTAssertEqual(p.listenLocations, [SourceLocation(file: path, line: 10)])
        XCTAssertEqual(p.maxChildren, 4)
        XCTAssertTrue(r.warnings.map(\.description).contains(
            "\(path):9: pool [www] reopened (first defined at \(path):3); its directives here override the earlier ones"), r.warningText)
    }

    func testSeveralListenLinesInOneSection() throws {
        let c = try XCTUnwrap(loadOK("""
            [www]
            listen = /tmp/a.sock
            listen = 127.0.0.1:9001
            listen = [::1]:9001
            pm.max_children = 2
            """))
        XCTAssertEqual(c.pools[0].listen, [.unix(path: "/tmp/a.sock"), .tcp(host: "127.0.0.1", port: 9001), .tcp(host: "::1", port: 9001)])
        XCTAssertEqual(c.pools[0].listenLocations.map(\.line), [2, 3, 4])
    }

    func testDirectiveNamesAreCaseInsensitive() throws {
        let c = try XCTUnwrap(loadOK("""
            [www]
            Listen = /tmp/x.sock
            PM.Max_Children = 3
            """))
        XCTAssertEqual(c.pools[0].maxChildren, 3)
        XCTAssertEqual(c.pools[0].locations["pm.max_children"]?.line, 3)
    }

    func testByteOrderMarkAndCRLF() throws {
        let dir = ConfigDir()
        let path = dir.path + "/crlf.conf"
        let text = "\u{FEFF}[www]\r\nlisten = /tmp/crlf.sock\r\npm.max_children = 2\r\nbogus = 1\r\n"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let r = load(path)
        XCTAssertEqual(r.errors.map(\.description), ["\(path):4: bogus: unknown directive"])
    }

    func testArrayKeys() throws {
        let c = try XCTUnwrap(loadOK("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            env[ SPACED ] = 1
            env["QUOTED"] = 2
            php_value[date.timezone] = UTC
            access.suppress_path[] = /ping
            access.suppress_path[] = /health
            """))
        let p = c.pools[0]
        XCTAssertEqual(p.env.map(\.name), ["SPACED", "QUOTED"])
        XCTAssertEqual(p.phpSettings.map(\.name), ["date.timezone"])
        XCTAssertEqual(p.accessSuppressPaths, ["/ping", "/health"])
    }

    func testMissingMainFile() {
        let r = load("/nonexistent/drover/php-fpm.conf")
        XCTAssertNil(r.config)
        XCTAssertEqual(r.errors.count, 1)
        XCTAssertTrue(r.errors[0].description.contains("cannot read '/nonexistent/drover/php-fpm.conf': No such file or directory"), r.errorText)
    }

    func testNonexistentPrefixIsAnError() {
        let dir = ConfigDir()
        let path = dir.write("a.conf", minimalPool)
        let r = load(path, prefix: "/nonexistent/prefix")
        XCTAssertEqual(r.errors.map(\.message), ["the prefix '/nonexistent/prefix' does not exist or is not a directory"])
    }
}
