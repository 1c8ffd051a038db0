import DroverConfig
import Foundation
import XCTest

/// The directive table and each directive's parsing.
final class DirectiveTests: XCTestCase {
    /// php-fpm 8.x's ini_fpm_global_options[] (fpm_conf.c), plus include.
    static let phpFPMGlobal = [
        "include", "pid", "error_log", "syslog.ident", "syslog.facility", "log_buffering", "log_level", "log_limit",
        "emergency_restart_threshold", "emergency_restart_interval", "process_control_timeout", "process.max",
        "process.priority", "daemonize", "rlimit_files", "rlimit_core", "events.mechanism", "systemd_interval",
    ]
    /// php-fpm 8.x's ini_fpm_pool_options[] plus its array directives.
    static let phpFPMPool = [
        "prefix", "user", "group", "listen", "listen.backlog", "listen.acl_users", "listen.acl_groups", "listen.owner",
        "listen.group", "listen.mode", "listen.allowed_clients", "listen.setfib", "process.priority", "process.dumpable",
        "pm", "pm.max_children", "pm.start_servers", "pm.min_spare_servers", "pm.max_spare_servers", "pm.max_spawn_rate",
        "pm.process_idle_timeout", "pm.max_requests", "pm.status_path", "pm.status_listen", "ping.path", "ping.response",
        "access.log", "access.format", "slowlog", "request_slowlog_timeout", "request_slowlog_trace_depth",
        "request_terminate_timeout", "request_terminate_timeout_track_finished", "rlimit_files", "rlimit_core", "chroot",
        "chdir", "catch_workers_output", "decorate_workers_output", "clear_env", "security.limit_extensions",
        "apparmor_hat", "env[]", "php_value[]", "php_flag[]", "php_admin_value[]", "php_admin_flag[]",
        "access.suppress_path[]",
    ]
    /// Implemented in this version (everything else is recognised with a warning).
    static let implementedGlobal: Set = [
        "include", "pid", "error_log", "log_level", "daemonize", "process_control_timeout", "rlimit_files", "rlimit_core",
        "events.mechanism", "process.priority", "emergency_restart_threshold", "emergency_restart_interval", "process.max",
        "status.listen", "control.socket", "syslog.ident", "syslog.facility", "log_limit", "log.max_size", "log.max_files",
        "systemd_interval",
    ]
    static let implementedPool: Set = [
        "prefix", "user", "group", "listen", "listen.backlog", "listen.owner", "listen.group", "listen.mode",
        "listen.acl_users", "listen.acl_groups", "listen.allowed_clients", "pm", "pm.max_children", "pm.status_path",
        "ping.path", "ping.response", "rlimit_files", "rlimit_core", "chroot", "chdir", "clear_env", "env[]", "php_value[]", "php_flag[]", "php_admin_value[]", "php_admin_flag[]",
        "command", "process.priority", "process.dumpable", "pm.start_servers", "pm.min_spare_servers",
        "access.log", "access.format", "access.suppress_path[]", "catch_workers_output", "decorate_workers_output",
        "pm.max_spare_servers", "pm.max_spawn_rate", "pm.process_idle_timeout", "pm.max_requests", "slowlog",
        "request_slowlog_timeout", "request_terminate_timeout", "request_slowlog_trace_command",
        "pm.status_listen", "status.show_query", "security.limit_extensions", "process.sched_policy",
    ]

    func testEveryPHPFPMDirectiveIsRecognised() {
        let global = Set(Directives.all.filter { $0.scope == .global }.map(\.name))
        let pool = Set(Directives.all.filter { $0.scope == .pool }.map(\.name))
        for name in Self.phpFPMGlobal { XCTAssertTrue(global.contains(name), name) }
        for name in Self.phpFPMPool { XCTAssertTrue(pool.contains(name), name) }
        XCTAssertTrue(pool.contains("command"))
        // Only Drover's own directives are beyond php-fpm's.
        for d in Directives.all where !(d.scope == .global ? Self.phpFPMGlobal : Self.phpFPMPool).contains(d.name) {
            XCTAssertTrue(d.droverExtension, d.name)
        }
    }

    func testImplementedFlags() {
        for d in Directives.all {
            let expected = (d.scope == .global ? Self.implementedGlobal : Self.implementedPool).contains(d.name)
            XCTAssertEqual(d.implemented, expected, "\(d.scope) \(d.name)")
        }
    }

    func testTableIsWellFormed() {
        var seen = Set<String>()
        for d in Directives.all {
            XCTAssertTrue(seen.insert("\(d.scope) \(d.name)").inserted, "duplicate \(d.name)")
            XCTAssertEqual(d.name, d.name.lowercased(), d.name)
            XCTAssertFalse(d.summary.isEmpty, d.name)
            XCTAssertFalse(d.defaultValue.isEmpty, d.name)
        }
        XCTAssertEqual(Directives.info("LISTEN", scope: .pool)?.name, "listen")
        XCTAssertNil(Directives.info("listen", scope: .global))
        XCTAssertEqual(Directives.info("env[]", scope: .pool)?.isArray, true)
    }

    /// A sample value for every directive, so each one is exercised.
    static let samples: [String: String] = [
        "include": "", "pid": "run/d.pid", "error_log": "log/e.log", "syslog.ident": "drover", "syslog.facility": "LOCAL3",
        "log_buffering": "no", "log_level": "debug", "log_limit": "4096", "emergency_restart_threshold": "10",
        "emergency_restart_interval": "1m", "process_control_timeout": "10s", "process.max": "128",
        "process.priority": "-5", "daemonize": "no", "rlimit_files": "1024", "rlimit_core": "unlimited",
        "events.mechanism": "epoll", "systemd_interval": "30", "log.max_size": "10M", "log.max_files": "3",
        "status.listen": "127.0.0.1:9900", "control.socket": "run/d.ctl", "status.show_query": "yes",
        "prefix": "", "user": "nobody", "group": "nogroup", "listen": "/tmp/sample.sock", "listen.backlog": "128",
        "listen.acl_users": "www-data", "listen.acl_groups": "www-data", "listen.owner": "www-data",
        "listen.group": "www-data", "listen.mode": "0666", "listen.allowed_clients": "127.0.0.1", "listen.setfib": "1",
        "process.dumpable": "yes", "process.sched_policy": "other", "pm": "static", "pm.max_children": "5", "pm.start_servers": "2",
        "pm.min_spare_servers": "1", "pm.max_spare_servers": "3", "pm.max_spawn_rate": "8",
        "pm.process_idle_timeout": "20s", "pm.max_requests": "500", "pm.status_path": "/status",
        "pm.status_listen": "127.0.0.1:9901", "ping.path": "/ping", "ping.response": "ok", "access.log": "log/a.log",
        "access.format": "%R %s", "access.suppress_path[]": "/ping", "slowlog": "log/slow.log",
        "request_slowlog_timeout": "5s", "request_slowlog_trace_depth": "10", "request_terminate_timeout": "30s",
        "request_terminate_timeout_track_finished": "yes", "chroot": "", "chdir": "/", "catch_workers_output": "yes",
        "decorate_workers_output": "no", "clear_env": "no", "security.limit_extensions": ".php .php8",
        "apparmor_hat": "hat", "env[]": "value", "php_value[]": "1", "php_flag[]": "on", "php_admin_value[]": "2",
        "php_admin_flag[]": "off", "command": "/bin/true", "request_slowlog_trace_command": "py-spy dump --pid {pid}",
    ]

    func testEveryDirectiveParsesAndUnimplementedOnesWarn() throws {
        for d in Directives.all where d.name != "include" {
            let sample = try XCTUnwrap(Self.samples[d.name], "no sample for \(d.name)")
            if sample.isEmpty { continue }
            let written = d.isArray ? d.name.replacingOccurrences(of: "[]", with: d.name == "access.suppress_path[]" ? "[]" : "[key]") : d.name
            let text: String
            if d.scope == .global {
                text = "[global]\n\(written) = \(sample)\n[www]\nlisten = /tmp/x.sock\npm.max_children = 5\n"
            } else {
                let needsSlowlog = d.name.hasPrefix("request_slowlog")
                text = "[www]\n\(written) = \(sample)\n"
                    + (d.name == "listen" ? "" : "listen = /tmp/x.sock\n")
                    + (d.name == "pm.max_children" ? "" : "pm.max_children = 5\n")
                    + (needsSlowlog && d.name != "slowlog" ? "slowlog = /tmp/slow.log\n" : "")
            }
            let (r, _, path) = loadText(text)
            XCTAssertTrue(r.errors.isEmpty, "\(d.name): \(r.errorText)")
            let warned = r.warnings.contains {
                $0.location == SourceLocation(file: path, line: 2)
                    && $0.description == "\(path):2: \(d.isArray ? written : d.name): recognised but not implemented yet by Drover; ignored"
            }
            XCTAssertEqual(warned, !d.implemented, "\(d.name): \(r.warningText)")
        }
    }

    func testParsedValues() throws {
        let c = try XCTUnwrap(loadOK("""
            [global]
            syslog.facility = LOCAL3
            log_level = WARN
            process.priority = -5
            events.mechanism = Poll
            systemd_interval = 1m
            [www]
            listen = /tmp/x.sock
            pm.max_children = 5
            user = nobody
            group = nogroup
            listen.backlog = 128
            listen.owner = www-data
            listen.group = www-data
            process.priority = 19
            process.sched_policy = IDLE
            pm.status_path = /status
            ping.path = /ping
            ping.response = ok
            security.limit_extensions = .php   .php8
            security.limit_extensions = .php .phtml
            clear_env = no
            chdir = /
            """))
        XCTAssertEqual(c.global.syslogFacility, "local3")
        XCTAssertEqual(c.global.logLevel, .warning)
        XCTAssertEqual(c.global.processPriority, -5)
        XCTAssertEqual(c.global.eventsMechanism, "poll")
        XCTAssertEqual(c.global.systemdInterval, 60)
        let p = c.pools[0]
        XCTAssertEqual(p.user, "nobody")
        XCTAssertEqual(p.group, "nogroup")
        XCTAssertEqual(p.listenBacklog, 128)
        XCTAssertEqual(p.listenOwner, "www-data")
        XCTAssertEqual(p.processPriority, 19)
        XCTAssertEqual(p.processSchedPolicy, .idle)
        XCTAssertEqual(p.statusPath, "/status")
        XCTAssertEqual(p.pingPath, "/ping")
        XCTAssertEqual(p.pingResponse, "ok")
        XCTAssertEqual(p.securityLimitExtensions, [".php", ".phtml"])
        XCTAssertFalse(p.clearEnv)
        XCTAssertEqual(p.chdir, "/")
        XCTAssertEqual(p.locations["listen.owner"]?.line, 13)
        XCTAssertEqual(p.locations["process.sched_policy"]?.line, 16)
        XCTAssertEqual(c.global.locations["events.mechanism"]?.line, 5)
    }

    func testDefaults() throws {
        let c = try XCTUnwrap(loadOK(minimalPool))
        let g = c.global
        XCTAssertNil(g.pid)
        XCTAssertNil(g.errorLog)
        XCTAssertEqual(g.logLevel, .notice)
        XCTAssertTrue(g.daemonize)
        XCTAssertEqual(g.processControlTimeout, 0)
        XCTAssertNil(g.processPriority)
        XCTAssertNil(g.eventsMechanism)
        let p = c.pools[0]
        XCTAssertEqual(p.pm, .static)
        XCTAssertEqual(p.listenBacklog, -1)
        XCTAssertNil(p.listenMode)
        XCTAssertTrue(p.clearEnv)
        XCTAssertFalse(p.processDumpable)
        XCTAssertEqual(p.processSchedPolicy, .batch)
        XCTAssertEqual(p.pingResponse, "pong")
        XCTAssertEqual(p.securityLimitExtensions, [".php", ".phar"])
        XCTAssertTrue(p.command.isEmpty)
        XCTAssertEqual(p.requestSlowlogTraceDepth, 20)
        XCTAssertEqual(c.warnings.count, 0, c.warnings.map(\.description).joined(separator: "\n"))
    }

    func testSchedulingPolicyErrorNamesFileLineAndChoices() {
        let (r, _, path) = loadText("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 5
            process.sched_policy = fifo
            """)
        XCTAssertEqual(r.errors.map(\.description),
                       ["\(path):4: process.sched_policy: invalid scheduling policy 'fifo' (batch, other or idle)"])
    }

    func testUnknownDirectiveIsAnErrorWithFileAndLine() {
        let (r, _, path) = loadText("""
            [global]
            pid = /run/x.pid
            frobnicate = 1
            \(minimalPool)
            """)
        XCTAssertEqual(r.errors.map(\.description), ["\(path):3: frobnicate: unknown directive"])
    }

    func testScopeErrors() {
        assertError("""
            [global]
            pm.max_children = 5
            \(minimalPool)
            """, line: 2, directive: "pm.max_children", contains: "is a pool directive; it is not allowed in [global]")
        assertError("""
            env[X] = 1
            \(minimalPool)
            """, line: 1, directive: "env[X]", contains: "is a pool directive")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            daemonize = no
            """, line: 4, directive: "daemonize", contains: "is a global directive; it is only allowed in [global]")
        assertError("""
            [www]
            listen[] = /tmp/x.sock
            pm.max_children = 1
            """, line: 2, directive: "listen[]", contains: "is not an array directive")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            php_value = 1
            """, line: 4, directive: "php_value", contains: "needs a key: write php_value[name] = value")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            include[] = x
            """, line: 4, directive: "include[]", contains: "include is not an array directive")
    }

    func testProcessManager() {
        for pm in ["dynamic", "ondemand"] {
            let settings = pm == "dynamic" ? "pm.min_spare_servers = 1\npm.max_spare_servers = 2" : ""
            let (r, _, path) = loadText("""
                [www]
                listen = /tmp/x.sock
                pm = \(pm)
                pm.max_children = 3
                \(settings)
                """)
            XCTAssertTrue(r.errors.isEmpty, r.errorText)
            XCTAssertTrue(r.warnings.isEmpty, r.warningText)
            XCTAssertEqual(r.config?.pools[0].pm, pm == "dynamic" ? .dynamic : .ondemand)
        }
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm = elastic
            pm.max_children = 3
            """, line: 3, directive: "pm", contains: "invalid process manager 'elastic' (static, dynamic or ondemand)")
        XCTAssertEqual(loadOK("[www]\nlisten = /tmp/x.sock\npm = STATIC\npm.max_children = 1\n")?.pools[0].pm, .static)
    }

    func testEventsMechanism() {
        for m in ["kqueue", "port", "/dev/poll"] {
            assertError("events.mechanism = \(m)\n\(minimalPool)", line: 1, directive: "events.mechanism",
                        contains: "'\(m)' is not available on Linux")
        }
        assertError("events.mechanism = io_uring\n\(minimalPool)", line: 1, directive: "events.mechanism",
                    contains: "unknown mechanism 'io_uring'")
        XCTAssertEqual(loadOK("events.mechanism = select\n\(minimalPool)")?.global.eventsMechanism, "select")
    }

    func testErrorLog() {
        let (r, dir, path) = loadText("error_log = log/drover.log\n\(minimalPool)")
        XCTAssertEqual(r.config?.global.errorLog, dir.path + "/log/drover.log")
        _ = path
        let (s, _, spath) = loadText("[global]\nerror_log = syslog\n\(minimalPool)")
        XCTAssertEqual(s.config?.global.errorLog, "syslog")     // not a path under the prefix
        XCTAssertTrue(s.warnings.isEmpty, "\(s.warnings) \(spath)")
    }

    func testLogLevel() {
        for (name, level) in [("debug", LogLevel.debug), ("notice", .notice), ("warning", .warning), ("warn", .warning),
                              ("error", .error), ("ALERT", .alert)] {
            XCTAssertEqual(loadOK("log_level = \(name)\n\(minimalPool)")?.global.logLevel, level, name)
        }
        assertError("log_level = verbose\n\(minimalPool)", line: 1, directive: "log_level", contains: "invalid value 'verbose'")
    }

    func testLimits() {
        assertError("log_limit = 100\n\(minimalPool)", line: 1, directive: "log_limit", contains: "must be at least 512")
        assertError("process.max = -1\n\(minimalPool)", line: 1, directive: "process.max", contains: "can't be negative")
        assertError("syslog.facility = local9\n\(minimalPool)", line: 1, directive: "syslog.facility", contains: "invalid value 'local9'")
        for bad in ["-20", "21"] {
            assertError("process.priority = \(bad)\n\(minimalPool)", line: 1, directive: "process.priority", contains: "must be in [-19,20]")
            assertError("""
                [www]
                listen = /tmp/x.sock
                pm.max_children = 1
                process.priority = \(bad)
                """, line: 4, directive: "process.priority", contains: "must be in [-19,20]")
        }
        for bad in ["0", "-2"] {
            assertError("""
                [www]
                listen = /tmp/x.sock
                pm.max_children = 1
                listen.backlog = \(bad)
                """, line: 4, directive: "listen.backlog", contains: "must be -1 (the system maximum) or a positive number")
        }
        XCTAssertEqual(loadOK("[www]\nlisten = /tmp/x.sock\npm.max_children = 1\nlisten.backlog = -1\n")?.pools[0].listenBacklog, -1)
    }

    func testEnvArray() throws {
        let (r, _, path) = loadText(#"""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            env[HOME] = $HOME
            env[MISSING] = $NOT_SET_ANYWHERE
            env[FLAG] = on
            env[WORD] = "off"
            env[PATH] = /usr/local/bin:/usr/bin:/bin
            env[HOME] = /override
            env[WEIRD] = $HOME/bin
            env[TEMPLATE] = ${HOME}/bin
            env[QUOTED] = "$HOME"
            """#, environment: ["HOME": "/home/master"])
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let env = try XCTUnwrap(r.config?.pools[0].env)
        XCTAssertEqual(env.map { "\($0.name)=\($0.value)" }, [
            "HOME=/home/master", "MISSING=", "FLAG=1", "WORD=off", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/override",
            "WEIRD=", "TEMPLATE=/home/master/bin", "QUOTED=$HOME",
        ])
        assertDiagnostic(r.warnings, at: path, line: 9, directive: "env[HOME]", contains: "set again; the last value wins")
        assertDiagnostic(r.warnings, at: path, line: 10, directive: "env[WEIRD]", contains: "use ${NAME} to embed a variable")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            env[EMPTY] =
            """, line: 4, directive: "env[EMPTY]", contains: "empty value")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            env[OFF] = off
            """, line: 4, directive: "env[OFF]", contains: "empty value")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            env[] = x
            """, line: 4, directive: "env[]", contains: "missing variable name")
    }

    func testPHPSettings() throws {
        let (r, dir, _) = loadText("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            php_value[memory_limit] = 128M
            php_value[error_reporting] = E_ALL & ~E_NOTICE
            php_flag[display_errors] = Off
            php_admin_flag[log_errors] = yes
            php_admin_value[error_log] = log/$pool-php.log
            php_admin_value[sendmail_path] = /usr/sbin/sendmail -t -i
            php_value[session.save_path] = relative/is/kept
            php_admin_value[error_log] = syslog
            """)
        XCTAssertTrue(r.errors.isEmpty, r.errorText)
        let s = try XCTUnwrap(r.config?.pools[0].phpSettings)
        XCTAssertEqual(s.map { "\($0.admin ? "admin:" : "")\($0.name)=\($0.value)" }, [
            "memory_limit=128M", "error_reporting=E_ALL & ~E_NOTICE", "display_errors=0", "admin:log_errors=1",
            "admin:error_log=\(dir.path)/log/www-php.log", "admin:sendmail_path=/usr/sbin/sendmail -t -i",
            "session.save_path=relative/is/kept", "admin:error_log=syslog",
        ])
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            php_admin_flag[log_errors] = sometimes
            """, line: 4, directive: "php_admin_flag[log_errors]", contains: "invalid boolean value 'sometimes'")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            php_value[] = 1
            """, line: 4, directive: "php_value[]", contains: "missing setting name")
    }

    func testAccessSuppressPath() {
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            access.suppress_path[x] = /ping
            """, line: 4, directive: "access.suppress_path[x]", contains: "keys provided to access.suppress_path are not allowed")
        assertError("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            access.suppress_path[] = ping
            """, line: 4, directive: "access.suppress_path[]", contains: "'ping' must begin with '/'")
    }

    func testDuplicateScalarWarns() {
        let (r, _, path) = loadText("""
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            pm.max_children = 2
            """)
        XCTAssertEqual(r.config?.pools[0].maxChildren, 2)
        XCTAssertTrue(r.warnings.map(\.description).contains("\(path):4: pm.max_children: set again (first at \(path):3); the last value wins"),
                      r.warningText)
    }

    /// control.socket: explicit (relative to the prefix), derived from the pid file, or none.
    func testControlSocket() throws {
        let (r, _, path) = loadText("""
            [global]
            control.socket = run/d.ctl
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            """)
        let directory = String(path[..<path.lastIndex(of: "/")!])
        XCTAssertEqual(r.config?.global.controlSocket, directory + "/run/d.ctl")

        let derived = try XCTUnwrap(loadOK("""
            [global]
            pid = /run/drover/drover.pid
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            """))
        XCTAssertEqual(derived.global.controlSocket, "/run/drover/drover.ctl")
        XCTAssertTrue(ConfigLoader.dump(derived).contains("\tcontrol.socket = /run/drover/drover.ctl"))

        let noExtension = try XCTUnwrap(loadOK("[global]\npid = /run/drover.d/pidfile\n" + minimalPool))
        XCTAssertEqual(noExtension.global.controlSocket, "/run/drover.d/pidfile.ctl")

        let off = try XCTUnwrap(loadOK("[global]\npid = /run/drover.pid\ncontrol.socket =\n" + minimalPool))
        XCTAssertNil(off.global.controlSocket)

        let none = try XCTUnwrap(loadOK(minimalPool))
        XCTAssertNil(none.global.controlSocket)

        assertError("""
            [global]
            control.socket = /tmp/x.sock
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            """, line: 4, directive: "listen", contains: "is already used by [global] (control.socket at ")
        assertError("""
            [global]
            control.socket = @abstract
            [www]
            listen = /tmp/x.sock
            pm.max_children = 1
            """, line: 2, directive: "control.socket", contains: "must be a file path")
    }

    func testStatusShowQuery() throws {
        let c = try XCTUnwrap(loadOK(minimalPool + "\nstatus.show_query = yes\n"))
        XCTAssertTrue(c.pools[0].statusShowQuery)
        let d = try XCTUnwrap(loadOK(minimalPool))
        XCTAssertFalse(d.pools[0].statusShowQuery)
    }
}
