// `drover -tt`: every effective value, php-fpm's fpm_conf_dump layout.

extension ConfigLoader {
    /// For `drover -tt`: every effective value, global then each pool, in php-fpm's -tt spirit
    /// (lines like "\tlisten = /run/php.sock"), including defaults.
    public static func dump(_ config: Configuration) -> String {
        var out: [String] = []
        func line(_ name: String, _ value: String) { out.append("\t\(name) = \(value)") }
        func text(_ v: String?) -> String { v ?? "undefined" }
        func yesNo(_ v: Bool) -> String { v ? "yes" : "no" }
        func number<T: BinaryInteger>(_ v: T?) -> String { v.map { "\($0)" } ?? "undefined" }
        func rlimit(_ v: Int64?) -> String {
            guard let v else { return "undefined" }
            return v < 0 ? "unlimited" : "\(v)"
        }

        let g = config.global
        out.append("[global]")
        line("pid", text(g.pid))
        line("error_log", g.errorLog ?? "stderr")
        line("syslog.ident", g.syslogIdent)
        line("syslog.facility", g.syslogFacility)
        line("log_buffering", yesNo(g.logBuffering))
        line("log_level", g.logLevel.label.lowercased())
        line("log_limit", "\(g.logLimit)")
        line("emergency_restart_interval", Values.seconds(g.emergencyRestartInterval))
        line("emergency_restart_threshold", "\(g.emergencyRestartThreshold)")
        line("process_control_timeout", Values.seconds(g.processControlTimeout))
        line("process.max", "\(g.processMax)")
        line("process.priority", number(g.processPriority))
        line("daemonize", yesNo(g.daemonize))
        line("rlimit_files", number(g.rlimitFiles))
        line("rlimit_core", rlimit(g.rlimitCore))
        line("events.mechanism", g.eventsMechanism ?? "auto")
        line("systemd_interval", Values.seconds(g.systemdInterval))
        line("log.max_size", "\(g.logMaxSize)")
        line("log.max_files", "\(g.logMaxFiles)")
        line("status.listen", g.statusListen.map { "\($0)" } ?? "undefined")
        line("control.socket", text(g.controlSocket))
        out.append("")

        for p in config.pools {
            out.append("[\(p.name)]")
            line("prefix", text(p.prefix))
            line("user", text(p.user))
            line("group", text(p.group))
            if p.listen.isEmpty { line("listen", "undefined") }
            for address in p.listen { line("listen", "\(address)") }
            line("listen.backlog", "\(p.listenBacklog)")
            line("listen.acl_users", text(p.listenAclUsers))
            line("listen.acl_groups", text(p.listenAclGroups))
            line("listen.owner", text(p.listenOwner))
            line("listen.group", text(p.listenGroup))
            line("listen.mode", p.listenMode.map(Values.octalString) ?? "undefined")
            line("listen.allowed_clients", p.listenAllowedClients.isEmpty ? "undefined" : p.listenAllowedClients.joined(separator: ","))
            line("listen.setfib", number(p.listenSetfib))
            line("process.priority", number(p.processPriority))
            line("process.dumpable", yesNo(p.processDumpable))
            line("process.sched_policy", p.processSchedPolicy.rawValue)
            line("pm", p.pm.rawValue)
            line("pm.max_children", "\(p.maxChildren)")
            line("pm.start_servers", "\(p.startServers)")
            line("pm.min_spare_servers", "\(p.minSpareServers)")
            line("pm.max_spare_servers", "\(p.maxSpareServers)")
            line("pm.max_spawn_rate", "\(p.maxSpawnRate)")
            line("pm.process_idle_timeout", Values.seconds(p.processIdleTimeout))
            line("pm.max_requests", "\(p.maxRequests)")
            line("pm.status_path", text(p.statusPath))
            line("pm.status_listen", p.statusListenAddress.map { "\($0)" } ?? "undefined")
            line("status.show_query", yesNo(p.statusShowQuery))
            line("ping.path", text(p.pingPath))
            line("ping.response", p.pingPath == nil ? "undefined" : p.pingResponse)
            line("access.log", text(p.accessLog))
            line("access.format", p.accessFormat)
            for path in p.accessSuppressPaths { line("access.suppress_path[]", path) }
            line("slowlog", text(p.slowlog))
            line("request_slowlog_timeout", Values.seconds(p.requestSlowlogTimeout))
            line("request_slowlog_trace_depth", "\(p.requestSlowlogTraceDepth)")
            line("request_slowlog_trace_command", p.requestSlowlogTraceCommand.isEmpty ? "undefined" : quoted(p.requestSlowlogTraceCommand))
            line("request_terminate_timeout", Values.seconds(p.requestTerminateTimeout))
            line("request_terminate_timeout_track_finished", yesNo(p.requestTerminateTimeoutTrackFinished))
            line("rlimit_files", number(p.rlimitFiles))
            line("rlimit_core", rlimit(p.rlimitCore))
            line("chroot", text(p.chroot))
            line("chdir", text(p.chdir))
            line("catch_workers_output", yesNo(p.catchWorkersOutput))
            line("decorate_workers_output", yesNo(p.decorateWorkersOutput))
            line("clear_env", yesNo(p.clearEnv))
            line("security.limit_extensions", p.securityLimitExtensions.joined(separator: " "))
            line("apparmor_hat", text(p.apparmorHat))
            line("command", p.command.isEmpty ? "php-cgi" : quoted(p.command))
            for e in p.env { line("env[\(e.name)]", e.value) }
            for s in p.phpSettings { line("\(s.admin ? "php_admin_value" : "php_value")[\(s.name)]", s.value) }
            out.append("")
        }
        return out.joined(separator: "\n")
    }

    /// argv written back so that `ShellWords.split` gives it again.
    static func quoted(_ words: [String]) -> String {
        words.map { word in
            let plain = !word.isEmpty && word.utf8.allSatisfy {
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
                    || [0x2F, 0x2D, 0x5F, 0x2E, 0x3D, 0x3A, 0x2C, 0x2B, 0x40, 0x25, 0x7B, 0x7D].contains($0)
            }
            if plain { return word }
            return "'" + word.replacing("'", with: "'\\''") + "'"
        }.joined(separator: " ")
    }
}
