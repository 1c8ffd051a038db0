// The directive table: every php-fpm global and pool directive (php-src
// sapi/fpm/fpm/fpm_conf.c, ini_fpm_global_options[] and
// ini_fpm_pool_options[], plus the array directives), and Drover's own. One
// entry per (scope, name) gives the docs (Directives.all), the parser and
// the -tt dump their names, defaults and status.

public enum Directives {
    /// Every directive Drover recognises, global first, in php-fpm's order.
    public static let all: [DirectiveInfo] = DirectiveTable.specs.map(\.info)

    /// The directive called `name` (case-insensitive; arrays as `env[]`) in `scope`.
    public static func info(_ name: String, scope: DirectiveInfo.Scope) -> DirectiveInfo? {
        DirectiveTable.lookup(name, scope: scope)?.info
    }
}

enum DirectiveTable {
    static let byKey: [String: DirectiveSpec] = {
        var d: [String: DirectiveSpec] = [:]
        for s in specs { d["\(s.info.scope.rawValue) \(s.info.name.lowercased())"] = s }
        return d
    }()

    static func lookup(_ name: String, scope: DirectiveInfo.Scope) -> DirectiveSpec? {
        byKey["\(scope.rawValue) \(name.lowercased())"]
    }

    private static func global(
        _ name: String, _ defaultValue: String, implemented: Bool, drover: Bool = false, _ summary: String,
        _ apply: @escaping @Sendable (inout GlobalState, DirectiveInput) throws(ValueError) -> Void
    ) -> DirectiveSpec {
        DirectiveSpec(info: DirectiveInfo(name: name, scope: .global, defaultValue: defaultValue, summary: summary,
                                          implemented: implemented, droverExtension: drover),
                      apply: .global(apply))
    }

    private static func pool(
        _ name: String, _ defaultValue: String, implemented: Bool, drover: Bool = false, _ summary: String,
        _ apply: @escaping @Sendable (inout PoolState, DirectiveInput) throws(ValueError) -> Void
    ) -> DirectiveSpec {
        DirectiveSpec(info: DirectiveInfo(name: name, scope: .pool, defaultValue: defaultValue, summary: summary,
                                          implemented: implemented, droverExtension: drover),
                      apply: .pool(apply))
    }

    static let facilities: Set<String> = [
        "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    ]

    static let specs: [DirectiveSpec] = globalSpecs + poolSpecs

    // MARK: [global]

    static let globalSpecs: [DirectiveSpec] = [
        DirectiveSpec(
            info: DirectiveInfo(
                name: "include", scope: .global, defaultValue: "none",
                summary: "Reads more files matching a glob(3) pattern, in sorted order, at this point (allowed in any section; "
                    + "the included lines continue the current section). A relative pattern is relative to the prefix. "
                    + "A pattern with wildcards that matches nothing is a warning; a plain path that does not exist is an error.",
                implemented: true),
            apply: .include),
        global("pid", "none", implemented: true,
               "Path of the master's pid file; relative to the prefix.") { g, i throws(ValueError) in
            g.config.pid = try i.optionalString()
        },
        global("error_log", "stderr", implemented: true,
               "Path of the error log, relative to the prefix, or `syslog` (with syslog.ident and syslog.facility). "
                + "Unset: stderr (php-fpm: log/php-fpm.log). Written by the agent process.") { g, i throws(ValueError) in
            let v = try i.optionalString()
            g.config.errorLog = v.map { $0.lowercased() == "syslog" ? "syslog" : $0 }
        },
        global("syslog.ident", "php-fpm", implemented: true,
               "Identity prepended to every syslog message.") { g, i throws(ValueError) in
            g.config.syslogIdent = try i.string()
        },
        global("syslog.facility", "daemon", implemented: true,
               "Syslog facility: auth, authpriv, cron, daemon, ftp, kern, lpr, mail, news, syslog, user, uucp, local0..local7.") { g, i throws(ValueError) in
            let v = try i.string().lowercased()
            guard facilities.contains(v) else {
                throw ValueError("invalid value '\(v)' (one of \(facilities.sorted().joined(separator: ", ")))")
            }
            g.config.syslogFacility = v
        },
        global("log_buffering", "yes", implemented: false,
               "Write each error log line with a single write.") { g, i throws(ValueError) in
            g.config.logBuffering = try i.bool()
        },
        global("log_level", "notice", implemented: true,
               "Least severe error log level written: debug, notice, warning (or warn), error, alert.") { g, i throws(ValueError) in
            let v = try i.string()
            switch v.lowercased() {
            case "debug": g.config.logLevel = .debug
            case "notice": g.config.logLevel = .notice
            case "warning", "warn": g.config.logLevel = .warning
            case "error": g.config.logLevel = .error
            case "alert": g.config.logLevel = .alert
            default: throw ValueError("invalid value '\(v)' (debug, notice, warning, error or alert)")
            }
        },
        global("log_limit", "1024", implemented: true,
               "Longest error log line in bytes (at least 512): longer error lines are cut (ending in ...), longer app output lines are wrapped.") { g, i throws(ValueError) in
            g.config.logLimit = try i.int(in: 512...Int(Int32.max), "must be at least 512")
        },
        global("emergency_restart_threshold", "0", implemented: true,
               "When this many workers or apps die of SIGSEGV or SIGBUS within emergency_restart_interval, every worker is restarted gracefully (0: off).") { g, i throws(ValueError) in
            g.config.emergencyRestartThreshold = try i.nonNegativeInt()
        },
        global("emergency_restart_interval", "0", implemented: true,
               "Window for emergency_restart_threshold (time: s, m, h, d).") { g, i throws(ValueError) in
            g.config.emergencyRestartInterval = try i.time()
        },
        global("process_control_timeout", "0", implemented: true,
               "How long workers get to react to a signal from the master before they are killed (time; 0: no limit).") { g, i throws(ValueError) in
            g.config.processControlTimeout = try i.time()
        },
        global("process.max", "0", implemented: true,
               "Most worker processes across all pools (0: no limit).") { g, i throws(ValueError) in
            g.config.processMax = try i.int(in: 0...Int(Int32.max), "can't be negative")
        },
        global("process.priority", "none", implemented: true,
               "nice(2) value of the master, -19 (highest) to 20; pools inherit it unless they set their own. Needs root for negative values.") { g, i throws(ValueError) in
            g.config.processPriority = try i.int(in: -19...20, "must be in [-19,20]")
        },
        global("daemonize", "yes", implemented: true,
               "Detach into the background (-F and -D on the command line win).") { g, i throws(ValueError) in
            g.config.daemonize = try i.bool()
        },
        global("rlimit_files", "system", implemented: true,
               "RLIMIT_NOFILE of the master (0: leave the system value).") { g, i throws(ValueError) in
            let v = try i.nonNegativeInt()
            g.config.rlimitFiles = v == 0 ? nil : v
        },
        global("rlimit_core", "system", implemented: true,
               "RLIMIT_CORE of the master: bytes or `unlimited`.") { g, i throws(ValueError) in
            g.config.rlimitCore = try i.rlimit()
        },
        global("events.mechanism", "auto", implemented: true,
               "Event mechanism: epoll, poll or select (Linux); kqueue, /dev/poll and port do not exist on Linux.") { g, i throws(ValueError) in
            let v = try i.string().lowercased()
            switch v {
            case "": g.config.eventsMechanism = nil
            case "epoll", "poll", "select": g.config.eventsMechanism = v
            case "kqueue", "/dev/poll", "port": throw ValueError("'\(v)' is not available on Linux (use epoll, poll or select)")
            default: throw ValueError("unknown mechanism '\(v)' (epoll, poll or select)")
            }
        },
        global("systemd_interval", "10", implemented: true,
               "Interval between health reports to systemd (time; 0: off).") { g, i throws(ValueError) in
            g.config.systemdInterval = try i.time()
        },
        global("log.max_size", "0", implemented: true, drover: true,
               "Rotate each log file the agent writes when it reaches this size (K, M, G suffixes; 0: never).") { g, i throws(ValueError) in
            g.config.logMaxSize = try i.size()
        },
        global("log.max_files", "5", implemented: true, drover: true,
               "Rotated log files kept by log.max_size rotation.") { g, i throws(ValueError) in
            g.config.logMaxFiles = try i.nonNegativeInt()
        },
        global("status.listen", "none", implemented: true, drover: true,
               "Address of an HTTP/1.1 server run by the agent for every pool at once: GET /status (php-fpm's status page; "
                + "?json, ?xml, ?html, ?openmetrics, ?full as for pm.status_path), /metrics (OpenMetrics, a `pool` label "
                + "on every sample) and /ping (200 `pong`). Same syntax as listen; a Unix socket gets mode 0660. "
                + "It answers while every worker is busy.") { g, i throws(ValueError) in
            let text = try i.string()
            g.statusListen = text.isEmpty ? nil : (try i.listen(), i.location)
        },
        global("control.socket", "pid file with .ctl", implemented: true, drover: true,
               "Unix socket of the control server droverctl talks to (status, reload, reopen, stop), mode 0600, owned by "
                + "the master's user; relative to the prefix. By default the pid file's path with `.ctl` as its extension "
                + "(pid = /run/drover.pid gives /run/drover.ctl); without a pid file, or set empty, there is none.") { g, i throws(ValueError) in
            let text = try i.string()
            if text.hasPrefix("@") { throw ValueError("'\(text)' must be a file path (abstract sockets have no permissions)") }
            g.config.controlSocket = text
        },
    ]

    // MARK: pools

    static let poolSpecs: [DirectiveSpec] = [
        pool("prefix", "none", implemented: true,
             "Prefix for this pool's relative paths (listen, access.log, slowlog, chroot, chdir, path-like php values); "
                + "itself relative to the global prefix. Must be an existing directory.") { p, i throws(ValueError) in
            p.config.prefix = try i.optionalString()
        },
        pool("user", "master's user", implemented: true,
             "User (name or uid) the workers and apps run as; only possible when the master runs as root.") { p, i throws(ValueError) in
            p.config.user = try i.optionalString()
        },
        pool("group", "user's group", implemented: true,
             "Group (name or gid) the workers and apps run as.") { p, i throws(ValueError) in
            p.config.group = try i.optionalString()
        },
        pool("listen", "none (required)", implemented: true,
             "Address to accept FastCGI connections on: `/path.sock` (relative to the prefix), `ip:port`, `[ipv6]:port`, "
                + "`host:port` (resolved at load time), or a bare `port` (every address). "
                + "Drover: each `listen` line in the same section adds one more address.") { p, i throws(ValueError) in
            let spec = try i.listen()
            if p.listenBlock != p.block {
                // A reopened [pool] section replaces the addresses, as php-fpm's later value wins.
                p.listen = []
                p.listenBlock = p.block
            }
            p.listen.append((spec, i.location))
        },
        pool("listen.backlog", "-1", implemented: true,
             "listen(2) backlog; -1 means the system maximum (net.core.somaxconn), php-fpm's Linux default.") { p, i throws(ValueError) in
            let v = try i.int()
            if v == 0 || v < -1 { throw ValueError("must be -1 (the system maximum) or a positive number") }
            p.config.listenBacklog = v
        },
        pool("listen.acl_users", "none", implemented: true,
             "Users (comma-separated names or uids) given read and write access to the Unix sockets by a POSIX ACL. "
                + "With listen.acl_users or listen.acl_groups set, listen.owner and listen.group are ignored, as in php-fpm: "
                + "the socket keeps the master's owner and group and gets listen.mode plus one ACL entry per user and group. "
                + "Every name must exist (checked by drover -t); the file system must support ACLs.") { p, i throws(ValueError) in
            p.config.listenAclUsers = try i.optionalString()
            p.config.listenAclUserNames = try i.list()
        },
        pool("listen.acl_groups", "none", implemented: true,
             "Groups (comma-separated names or gids) given read and write access to the Unix sockets by a POSIX ACL; "
                + "see listen.acl_users.") { p, i throws(ValueError) in
            p.config.listenAclGroups = try i.optionalString()
            p.config.listenAclGroupNames = try i.list()
        },
        pool("listen.owner", "master's user", implemented: true,
             "Owner (name or uid) of the Unix socket.") { p, i throws(ValueError) in
            p.config.listenOwner = try i.optionalString()
        },
        pool("listen.group", "owner's group", implemented: true,
             "Group (name or gid) of the Unix socket.") { p, i throws(ValueError) in
            p.config.listenGroup = try i.optionalString()
        },
        pool("listen.mode", "0660", implemented: true,
             "Permissions of the Unix socket, in octal.") { p, i throws(ValueError) in
            let text = try i.string()
            p.config.listenMode = text.isEmpty ? nil : try Values.octalMode(text)
        },
        pool("listen.allowed_clients", "any", implemented: true,
             "Comma-separated client addresses allowed on TCP sockets (IPv4, IPv6; Drover also takes CIDR ranges such as 10.0.0.0/8). Empty: any client.") { p, i throws(ValueError) in
            let text = try i.string()
            var written: [String] = []
            var ranges: [IPRange] = []
            var bad: [String] = []
            for part in text.split(separator: ",") {
                let item = Values.trimmed(part)
                if item.isEmpty { continue }
                guard let range = IPRange(parsing: String(item)) else { bad.append("'\(item)'"); continue }
                let bare = item.split(separator: "/").first.map { String($0) } ?? ""
                if item.contains("/"), let raw = IPRange(parsing: bare), raw.address != range.address {
                    i.warn("'\(item)' has host bits set; it means \(range)")
                }
                written.append(String(item))
                ranges.append(range)
            }
            if !bad.isEmpty {
                throw ValueError("invalid address\(bad.count > 1 ? "es" : "") \(bad.joined(separator: ", ")) (use IPv4 or IPv6 addresses or CIDR ranges)")
            }
            p.config.listenAllowedClients = written
            p.config.listenAllowedClientRanges = ranges
        },
        pool("listen.setfib", "-1", implemented: false,
             "FreeBSD routing table (FIB) of the socket; has no effect on Linux.") { p, i throws(ValueError) in
            p.config.listenSetfib = try i.int()
        },
        pool("process.priority", "none", implemented: true,
             "nice(2) value of the pool's processes, -19 to 20 (default: the master's).") { p, i throws(ValueError) in
            p.config.processPriority = try i.int(in: -19...20, "must be in [-19,20]")
        },
        pool("process.dumpable", "no", implemented: true,
             "Set PR_SET_DUMPABLE so the pool's user can ptrace its processes and they can dump core.") { p, i throws(ValueError) in
            p.config.processDumpable = try i.bool()
        },
        pool("process.sched_policy", "batch", implemented: true, drover: true,
             "Scheduling policy of the pool's workers and apps: batch (SCHED_BATCH: a worker or app woken by a request "
                + "does not preempt the process running, which saves each request two context switches in the relay; "
                + "docs/performance.md), other (SCHED_OTHER, as php-fpm's processes run) or idle (SCHED_IDLE: only "
                + "CPU time nothing else wants). process.priority still applies to batch and other.") { p, i throws(ValueError) in
            let v = try i.string()
            guard let policy = SchedulingPolicy(rawValue: v.lowercased()) else {
                throw ValueError("invalid scheduling policy '\(v)' (batch, other or idle)")
            }
            p.config.processSchedPolicy = policy
        },
        pool("pm", "static", implemented: true,
             "Process manager: static (pm.max_children workers), dynamic (idle workers kept between pm.min_spare_servers and "
                + "pm.max_spare_servers; scale-up within milliseconds, scale-down one worker per second) or ondemand (workers start "
                + "for waiting connections and stop after pm.process_idle_timeout). php-fpm requires pm; Drover defaults to static.") { p, i throws(ValueError) in
            let v = try i.string()
            switch v.lowercased() {
            case "static": p.config.pm = .static
            case "dynamic": p.config.pm = .dynamic
            case "ondemand": p.config.pm = .ondemand
            default: throw ValueError("invalid process manager '\(v)' (static, dynamic or ondemand)")
            }
        },
        pool("pm.max_children", "none (required)", implemented: true,
             "Workers of a static pool; the most workers of a dynamic or ondemand pool.") { p, i throws(ValueError) in
            p.config.maxChildren = try i.int()
        },
        pool("pm.start_servers", "min + (max - min) / 2", implemented: true,
             "dynamic: workers started at launch (between pm.min_spare_servers and pm.max_spare_servers).") { p, i throws(ValueError) in
            p.config.startServers = try i.int()
        },
        pool("pm.min_spare_servers", "none", implemented: true,
             "dynamic: fewest idle workers (required, > 0).") { p, i throws(ValueError) in
            p.config.minSpareServers = try i.int()
        },
        pool("pm.max_spare_servers", "none", implemented: true,
             "dynamic: most idle workers (required, >= pm.min_spare_servers, <= pm.max_children).") { p, i throws(ValueError) in
            p.config.maxSpareServers = try i.int()
        },
        pool("pm.max_spawn_rate", "32", implemented: true,
             "dynamic and ondemand: most workers started per second when scaling up (a token bucket: up to this many at once, then this many per second).") { p, i throws(ValueError) in
            p.config.maxSpawnRate = try i.int()
        },
        pool("pm.process_idle_timeout", "10s", implemented: true,
             "ondemand: idle time after which a worker stops (time, > 0).") { p, i throws(ValueError) in
            p.config.processIdleTimeout = try i.time()
        },
        pool("pm.max_requests", "0", implemented: true,
             "Requests after which a worker's app is replaced, between two requests (0: never). php-cgi's own PHP_FCGI_MAX_REQUESTS is set to 0.") { p, i throws(ValueError) in
            p.config.maxRequests = try i.nonNegativeInt()
        },
        pool("pm.status_path", "none", implemented: true,
             "URI of the status page, answered by the workers (starts with '/'; letters, digits and / _ - . ~ only).") { p, i throws(ValueError) in
            p.config.statusPath = try i.optionalString()
        },
        pool("pm.status_listen", "none", implemented: true,
             "Separate FastCGI address, served by the agent, for this pool's status page (at pm.status_path, any path "
                + "when that is unset) and ping page (ping.path): they answer while every worker is busy. "
                + "Same syntax as listen.") { p, i throws(ValueError) in
            let text = try i.string()
            p.config.statusListen = text.isEmpty ? nil : text
            p.statusListen = text.isEmpty ? nil : (try i.listen(), i.location)
        },
        pool("status.show_query", "no", implemented: true, drover: true,
             "Show query strings (which may hold secrets) in the per-process rows of every status page "
                + "(pm.status_path, pm.status_listen, status.listen, droverctl status); otherwise they read `[redacted]`.") { p, i throws(ValueError) in
            p.config.statusShowQuery = try i.bool()
        },
        pool("ping.path", "none", implemented: true,
             "URI of the ping page, answered by the workers (same rules as pm.status_path).") { p, i throws(ValueError) in
            p.config.pingPath = try i.optionalString()
        },
        pool("ping.response", "pong", implemented: true,
             "Body of the ping response (text/plain, 200).") { p, i throws(ValueError) in
            p.config.pingResponse = try i.string()
        },
        pool("access.log", "none", implemented: true,
             "Access log path, relative to the prefix.") { p, i throws(ValueError) in
            p.config.accessLog = try i.optionalString()
        },
        pool("access.format", "%R - %u %t \"%m %r\" %s", implemented: true,
             "Access log line format (php-fpm's % escapes).") { p, i throws(ValueError) in
            p.config.accessFormat = try i.string()
        },
        pool("access.suppress_path[]", "none", implemented: true,
             "A request URI (starting with '/') never written to the access log when the request succeeded; one per line, without a key.") { p, i throws(ValueError) in
            if !i.key.isEmpty { throw ValueError("keys provided to access.suppress_path are not allowed; write access.suppress_path[] = /path") }
            let v = try i.string()
            if !v.hasPrefix("/") { throw ValueError("'\(v)' must begin with '/'") }
            p.config.accessSuppressPaths.append(v)
        },
        pool("slowlog", "none", implemented: true,
             "Slow request log path, relative to the prefix; required by request_slowlog_timeout.") { p, i throws(ValueError) in
            p.config.slowlog = try i.optionalString()
        },
        pool("request_slowlog_timeout", "0", implemented: true,
             "Requests running longer get one slowlog entry: pool, worker and app pid, script, method and URI, elapsed time, and the app's state, wait channel, system call and kernel stack from /proc (time; 0: off).") { p, i throws(ValueError) in
            p.config.requestSlowlogTimeout = try i.time()
        },
        pool("request_slowlog_trace_depth", "20", implemented: false,
             "Depth of the stack trace written to the slow log.") { p, i throws(ValueError) in
            p.config.requestSlowlogTraceDepth = try i.int()
        },
        pool("request_terminate_timeout", "0", implemented: true,
             "Requests running longer have their app killed (SIGTERM, SIGKILL after 1 s) and replaced; the client gets a 504 if no response byte was sent (time; 0: off).") { p, i throws(ValueError) in
            p.config.requestTerminateTimeout = try i.time()
        },
        pool("request_terminate_timeout_track_finished", "no", implemented: false,
             "Keep enforcing request_terminate_timeout after the response was finished.") { p, i throws(ValueError) in
            p.config.requestTerminateTimeoutTrackFinished = try i.bool()
        },
        pool("rlimit_files", "system", implemented: true,
             "RLIMIT_NOFILE of the pool's processes (0: leave the system value).") { p, i throws(ValueError) in
            let v = try i.nonNegativeInt()
            p.config.rlimitFiles = v == 0 ? nil : v
        },
        pool("rlimit_core", "system", implemented: true,
             "RLIMIT_CORE of the pool's processes: bytes or `unlimited`.") { p, i throws(ValueError) in
            p.config.rlimitCore = try i.rlimit()
        },
        pool("chroot", "none", implemented: true,
             "Directory the app is chroot(2)ed into (absolute, or starting with $prefix): the app's process sees it as /, "
                + "so `command`, `chdir` (default /) and the paths nginx sends (SCRIPT_FILENAME) name files inside it. "
                + "The worker stays outside, as the pool's user keeping only CAP_SYS_CHROOT to start its app. "
                + "Needs root (php-fpm ignores it without root; Drover refuses to start the app).") { p, i throws(ValueError) in
            p.config.chroot = try i.optionalString()
        },
        pool("chdir", "none", implemented: true,
             "Working directory of the app (relative to the prefix); must exist. Under chroot it is a directory inside the chroot (default: its /).") { p, i throws(ValueError) in
            p.config.chdir = try i.optionalString()
        },
        pool("catch_workers_output", "no", implemented: true,
             "Send the apps' stdout and stderr to the error log as WARNING lines, wrapped at log_limit (otherwise /dev/null).") { p, i throws(ValueError) in
            p.config.catchWorkersOutput = try i.bool()
        },
        pool("decorate_workers_output", "yes", implemented: true,
             "Prefix caught app output with pool, pid and stream, as php-fpm: [pool www] child 123 said into stderr: \"line\".") { p, i throws(ValueError) in
            p.config.decorateWorkersOutput = try i.bool()
        },
        pool("clear_env", "yes", implemented: true,
             "Start apps with an empty environment plus env[] (no: inherit the master's environment).") { p, i throws(ValueError) in
            p.config.clearEnv = try i.bool()
        },
        pool("security.limit_extensions", ".php .phar", implemented: true,
             "Space-separated extensions a script must end with (case-sensitive) for php-cgi pools (no `command`, or a php-cgi one); "
                + "empty: no check. The worker finds the file php-cgi would run for SCRIPT_FILENAME (cgi.fix_pathinfo: "
                + "/up/evil.jpg/x.php runs /up/evil.jpg) and answers any other with php-fpm's 403 `Access denied.` and a "
                + "NOTICE in the error log, before the app sees the request. Pools with another `command` ignore it.") { p, i throws(ValueError) in
            let text = try i.string()
            p.config.securityLimitExtensions = text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        },
        pool("apparmor_hat", "none", implemented: false,
             "AppArmor hat the app changes to.") { p, i throws(ValueError) in
            p.config.apparmorHat = try i.optionalString()
        },
        pool("env[]", "none", implemented: true,
             "env[NAME] = value sets an environment variable of the app; `$NAME` alone takes NAME from the master's environment.") { p, i throws(ValueError) in
            if i.key.isEmpty { throw ValueError("missing variable name: write env[NAME] = value") }
            let decoded = try i.decoded()
            var value = try i.substitutePool(decoded.phpScannerText)
            if value.isEmpty { throw ValueError("empty value") }
            if !decoded.quoted, value.hasPrefix("$") {
                // php-fpm: the whole rest is a variable name of the master's environment.
                let name = String(value.dropFirst())
                let isName = !name.isEmpty && name.utf8.allSatisfy {
                    ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x5F
                }
                if !isName {
                    i.warn("'\(value)' names the variable '\(name)' (php-fpm takes everything after '$'), which cannot exist; use ${NAME} to embed a variable")
                }
                value = i.environment[name] ?? ""
            }
            if p.config.env.contains(where: { $0.name == i.key }) {
                i.warn("set again; the last value wins (php-fpm keeps the first)")
            }
            p.config.env.append((name: i.key, value: value))
        },
        pool("php_value[]", "none", implemented: true,
             "php_value[name] = value: a php.ini setting for php-cgi (passed as -d name=value); PHP code may change it.") { p, i throws(ValueError) in
            try phpSetting(&p, i, admin: false, flag: false)
        },
        pool("php_flag[]", "none", implemented: true,
             "php_flag[name] = on/off: a boolean php.ini setting (normalised to 1/0).") { p, i throws(ValueError) in
            try phpSetting(&p, i, admin: false, flag: true)
        },
        pool("php_admin_value[]", "none", implemented: true,
             "php_admin_value[name] = value: passed to php-cgi as -d like php_value (php-fpm also stops PHP code from changing it; "
                + "php-cgi has no such level, so ini_set() can).") { p, i throws(ValueError) in
            try phpSetting(&p, i, admin: true, flag: false)
        },
        pool("php_admin_flag[]", "none", implemented: true,
             "php_admin_flag[name] = on/off: passed to php-cgi as -d like php_flag (php-fpm also stops PHP code from changing it; php-cgi cannot).") { p, i throws(ValueError) in
            try phpSetting(&p, i, admin: true, flag: true)
        },
        pool("command", "php-cgi", implemented: true, drover: true,
             "The app's command line, split like a shell would (quotes, backslashes; ${NAME} and $pool expanded; no other shell features). "
                + "Empty or unset: php-cgi from PATH.") { p, i throws(ValueError) in
            p.config.command = try i.words()
        },
        pool("request_slowlog_trace_command", "none", implemented: true, drover: true,
             "A command run when a request becomes slow, its output added to the slow log; {pid} is the app's pid "
                + "(e.g. `py-spy dump --pid {pid}`); it may run 10 s, then it is killed.") { p, i throws(ValueError) in
            p.config.requestSlowlogTraceCommand = try i.words()
        },
    ]

    private static func phpSetting(_ p: inout PoolState, _ i: DirectiveInput, admin: Bool, flag: Bool) throws(ValueError) {
        if i.key.isEmpty { throw ValueError("missing setting name: write \(i.entry.name)[name] = value") }
        let value: String
        if flag {
            value = try i.bool() ? "1" : "0"
        } else {
            value = try i.string()
        }
        p.config.phpSettings.append((name: i.key, value: value, admin: admin))
    }
}
