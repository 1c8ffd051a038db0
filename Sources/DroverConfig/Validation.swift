// Checks across directives, path resolution and defaults, after every file
// was read: php-fpm's fpm_conf_post_process and fpm_conf_process_all_pools.

extension ConfigBuilder {
    /// php.ini settings whose relative values php-fpm makes relative to the
    /// prefix (FPM_PHP_INI_TO_EXPAND in fpm_php.h).
    static let phpPathSettings: Set<String> = [
        "error_log", "extension_dir", "sendmail_path", "session.cookie_path", "session_pgsql.sem_file_name",
        "soap.wsdl_cache_dir", "uploadprogress.file.filename_template", "xdebug.output_dir",
        "xdebug.profiler_output_dir", "xdebug.trace_output_dir", "xmms.path", "axis2.client_home",
        "blenc.key_file", "coin_acceptor.device",
    ]

    mutating func finish(files: [String]) -> Configuration {
        finishGlobal()
        if pools.isEmpty {
            sink.error(nil, nil, "no pool defined: at least one pool section (e.g. [www]) must be specified in \(files.first ?? "the configuration")")
        }
        for index in pools.indices { finishPool(&pools[index]) }
        checkListenConflicts()
        var config = Configuration(global: global.config, pools: pools.map(\.config), files: files, warnings: [])
        config.prefix = prefix
        return config
    }

    private mutating func finishGlobal() {
        var g = global.config
        if let pid = g.pid { g.pid = Paths.resolve(pid, against: prefix) }
        if let log = g.errorLog, log != "syslog" { g.errorLog = Paths.resolve(log, against: prefix) }
        if let (spec, location) = global.statusListen {
            g.statusListen = resolve(spec, against: prefix, at: location, directive: "status.listen")
        }
        g.controlSocket = controlSocket(g)
        global.config = g
    }

    /// `control.socket` made absolute, or its default from the pid file
    /// (`/run/drover.pid` → `/run/drover.ctl`); nil when there is none.
    private func controlSocket(_ g: GlobalConfig) -> String? {
        if let location = global.setAt["control.socket"] {
            guard let text = g.controlSocket, !text.isEmpty else { return nil }
            let absolute = Paths.resolve(text, against: prefix)
            if absolute.utf8.count > Listen.maxUnixPath {
                sink.error(location, "control.socket", "socket path '\(absolute)' is too long (\(absolute.utf8.count) bytes; at most \(Listen.maxUnixPath))")
                return nil
            }
            return absolute
        }
        guard let pid = g.pid else { return nil }
        let directory = Paths.directory(of: pid)
        let name = pid[pid.index(after: pid.lastIndex(of: "/") ?? pid.startIndex)...]
        var stem = name
        if let dot = name.lastIndex(of: "."), dot != name.startIndex { stem = name[..<dot] }
        let path = (directory == "/" ? "/" : directory + "/") + stem + ".ctl"
        if path.utf8.count > Listen.maxUnixPath {
            sink.warning(global.setAt["pid"], "control.socket",
                         "no control socket: '\(path)' (from the pid file) is too long for a Unix socket "
                            + "(\(path.utf8.count) bytes; at most \(Listen.maxUnixPath)); set control.socket")
            return nil
        }
        if path == pid { return nil }
        return path
    }

    /// A listen spec made absolute; nil (after an error) when the path is too long.
    private func resolve(_ spec: ListenSpec, against base: String, at location: SourceLocation, directive: String) -> ListenAddress? {
        switch spec {
        case .tcp(let host, let port):
            return .tcp(host: host, port: port)
        case .unix(let path):
            let absolute = Paths.resolve(path, against: base)
            if absolute.utf8.count > Listen.maxUnixPath {
                sink.error(location, directive, "socket path '\(absolute)' is too long (\(absolute.utf8.count) bytes; at most \(Listen.maxUnixPath))")
                return nil
            }
            return .unix(path: absolute)
        }
    }

    private func finishPool(_ p: inout PoolState) {
        let name = p.config.name
        let header = p.config.location

        // prefix
        var base = prefix
        if let poolPrefix = p.config.prefix {
            let absolute = Paths.resolve(poolPrefix, against: prefix)
            p.config.prefix = absolute
            base = absolute
            if !Paths.isDirectory(absolute) {
                sink.error(p.location(of: "prefix"), "prefix", "the pool prefix '\(absolute)' does not exist or is not a directory")
            }
        }

        // listen
        if p.listen.isEmpty && !p.failed.contains("listen") {
            sink.error(header, "listen", "no listen address defined for pool [\(name)] (required)")
        }
        var addresses: [ListenAddress] = []
        var locations: [SourceLocation] = []
        for (spec, location) in p.listen {
            guard let address = resolve(spec, against: base, at: location, directive: "listen") else { continue }
            if let twice = addresses.firstIndex(where: { Listen.overlaps($0, address) }) {
                let what = addresses[twice] == address ? "is listed twice" : "overlaps \(addresses[twice])"
                sink.error(location, "listen", "\(address) \(what) in pool [\(name)] (first at \(locations[twice]))")
                continue
            }
            addresses.append(address)
            locations.append(location)
        }
        p.config.listen = addresses
        p.config.listenLocations = locations
        if p.config.hasListenAcl { checkListenAcl(p) }
        if let (spec, location) = p.statusListen {
            p.config.statusListenAddress = resolve(spec, against: base, at: location, directive: "pm.status_listen")
        }

        // pm
        let maxChildren = p.config.maxChildren
        var childrenOK = false
        if p.failed.contains("pm.max_children") {
            // already reported
        } else if !p.isSet("pm.max_children") {
            sink.error(header, "pm.max_children", "not set for pool [\(name)] (required: the number of workers)")
        } else if maxChildren < 1 {
            sink.error(p.location(of: "pm.max_children"), "pm.max_children", "must be a positive value (got \(maxChildren))")
        } else {
            childrenOK = true
        }
        switch p.config.pm {
        case .static:
            break
        case .dynamic:
            let spare = ["pm.start_servers", "pm.min_spare_servers", "pm.max_spare_servers", "pm.max_spawn_rate"]
            if childrenOK && !spare.contains(where: p.failed.contains) { checkDynamic(&p) }
        case .ondemand:
            if p.config.processIdleTimeout <= 0 && !p.failed.contains("pm.process_idle_timeout") {
                sink.error(p.location(of: "pm.process_idle_timeout"), "pm.process_idle_timeout",
                           "must be greater than 0s with pm = ondemand")
            }
            p.config.startServers = 0
            p.config.minSpareServers = 0
            p.config.maxSpareServers = 0
        }

        // status and ping
        if let path = p.config.statusPath {
            checkURIPath(path, directive: "pm.status_path", at: p.location(of: "pm.status_path"),
                         allowRoot: p.config.statusListen != nil)
        }
        if let path = p.config.pingPath {
            checkURIPath(path, directive: "ping.path", at: p.location(of: "ping.path"), allowRoot: false)
            if p.config.pingResponse.isEmpty {
                sink.error(p.location(of: "ping.response"), "ping.response", "must not be empty when ping.path is set")
            }
        }

        // logs
        if let log = p.config.accessLog { p.config.accessLog = Paths.resolve(log, against: base) }
        if let log = p.config.slowlog { p.config.slowlog = Paths.resolve(log, against: base) }
        if p.config.requestSlowlogTimeout > 0 {
            if p.config.slowlog == nil {
                sink.error(p.location(of: "request_slowlog_timeout"), "request_slowlog_timeout",
                           "'slowlog' must be specified for use with 'request_slowlog_timeout'")
            }
            if p.config.requestTerminateTimeout > 0, p.config.requestSlowlogTimeout > p.config.requestTerminateTimeout {
                sink.error(p.location(of: "request_slowlog_timeout"), "request_slowlog_timeout",
                           "(\(Values.seconds(p.config.requestSlowlogTimeout))) can't be greater than 'request_terminate_timeout' (\(Values.seconds(p.config.requestTerminateTimeout)))")
            }
        }
        if p.isSet("request_slowlog_trace_depth") {
            if p.config.requestSlowlogTraceDepth <= 0 {
                sink.error(p.location(of: "request_slowlog_trace_depth"), "request_slowlog_trace_depth",
                           "must be a positive value (got \(p.config.requestSlowlogTraceDepth))")
            } else if p.config.slowlog == nil {
                sink.error(p.location(of: "request_slowlog_trace_depth"), "request_slowlog_trace_depth",
                           "'slowlog' must be specified for use with 'request_slowlog_trace_depth'")
            }
        }

        // chroot, chdir
        if let chroot = p.config.chroot {
            if chroot.contains("$prefix") && !chroot.hasPrefix("$prefix") {
                sink.error(p.location(of: "chroot"), "chroot", "'$prefix' must be used at the beginning of the value")
            } else {
                let absolute = Paths.resolve(chroot, against: base)
                p.config.chroot = absolute
                if !Paths.isDirectory(absolute) {
                    sink.error(p.location(of: "chroot"), "chroot", "the chroot path '\(absolute)' does not exist or is not a directory")
                }
            }
        }
        if let chdir = p.config.chdir {
            let absolute = Paths.resolve(chdir, against: base)
            p.config.chdir = absolute
            if let chroot = p.config.chroot {
                let inside = Paths.normalize(chroot + "/" + absolute)
                if !Paths.isDirectory(inside) {
                    sink.error(p.location(of: "chdir"), "chdir",
                               "the chdir path '\(absolute)' within the chroot path '\(chroot)' ('\(inside)') does not exist or is not a directory")
                }
            } else if !Paths.isDirectory(absolute) {
                sink.error(p.location(of: "chdir"), "chdir", "the chdir path '\(absolute)' does not exist or is not a directory")
            }
        }

        // path-like php.ini settings, like php-fpm (not under chroot)
        if p.config.chroot == nil {
            for i in p.config.phpSettings.indices {
                let s = p.config.phpSettings[i]
                guard ConfigBuilder.phpPathSettings.contains(s.name.lowercased()),
                      !s.value.isEmpty, !s.value.hasPrefix("/"), s.value.lowercased() != "syslog" else { continue }
                p.config.phpSettings[i].value = Paths.resolve(s.value, against: base)
            }
        }
    }

    /// listen.acl_users and listen.acl_groups: every name must exist (php-fpm
    /// looks them up while reading its configuration too); listen.owner and
    /// listen.group are then ignored, as php-fpm warns.
    private func checkListenAcl(_ p: PoolState) {
        let name = p.config.name
        for user in p.config.listenAclUserNames where UInt32(user) == nil && SystemAccounts.user(user) == nil {
            sink.error(p.location(of: "listen.acl_users"), "listen.acl_users", "[pool \(name)] cannot get uid for user '\(user)'")
        }
        for group in p.config.listenAclGroupNames where SystemAccounts.groupID(group) == nil {
            sink.error(p.location(of: "listen.acl_groups"), "listen.acl_groups", "[pool \(name)] cannot get gid for group '\(group)'")
        }
        let directive = p.isSet("listen.acl_users") ? "listen.acl_users" : "listen.acl_groups"
        if !p.config.listen.contains(where: { if case .unix = $0 { true } else { false } }) {
            sink.warning(p.location(of: directive), directive, "has no effect: pool [\(name)] has no Unix socket (ACLs apply to socket files only)")
        }
        for ignored in ["listen.owner", "listen.group"] where p.isSet(ignored) {
            sink.warning(p.location(of: ignored), ignored,
                         "ACL set, \(ignored) = '\(ignored == "listen.owner" ? p.config.listenOwner ?? "" : p.config.listenGroup ?? "")' is ignored")
        }
    }

    /// php-fpm's pm = dynamic rules, in its order; stops at the first failure.
    private func checkDynamic(_ p: inout PoolState) {
        let c = p.config
        let name = p.config.name
        let minLoc = p.location(of: "pm.min_spare_servers"), maxLoc = p.location(of: "pm.max_spare_servers")
        if c.minSpareServers <= 0 {
            let what = p.isSet("pm.min_spare_servers") ? "must be a positive value (got \(c.minSpareServers))" : "not set for pool [\(name)] (required with pm = dynamic)"
            sink.error(minLoc, "pm.min_spare_servers", what)
            return
        }
        if c.maxSpareServers <= 0 {
            let what = p.isSet("pm.max_spare_servers") ? "must be a positive value (got \(c.maxSpareServers))" : "not set for pool [\(name)] (required with pm = dynamic)"
            sink.error(maxLoc, "pm.max_spare_servers", what)
            return
        }
        if c.minSpareServers > c.maxChildren || c.maxSpareServers > c.maxChildren {
            let (loc, dir) = c.maxSpareServers > c.maxChildren ? (maxLoc, "pm.max_spare_servers") : (minLoc, "pm.min_spare_servers")
            sink.error(loc, dir, "pm.min_spare_servers(\(c.minSpareServers)) and pm.max_spare_servers(\(c.maxSpareServers)) cannot be greater than pm.max_children(\(c.maxChildren))")
            return
        }
        if c.maxSpareServers < c.minSpareServers {
            sink.error(maxLoc, "pm.max_spare_servers", "pm.max_spare_servers(\(c.maxSpareServers)) must not be less than pm.min_spare_servers(\(c.minSpareServers))")
            return
        }
        if c.startServers <= 0 {
            p.config.startServers = c.minSpareServers + (c.maxSpareServers - c.minSpareServers) / 2
        } else if c.startServers < c.minSpareServers || c.startServers > c.maxSpareServers {
            sink.error(p.location(of: "pm.start_servers"), "pm.start_servers",
                       "pm.start_servers(\(c.startServers)) must not be less than pm.min_spare_servers(\(c.minSpareServers)) and not greater than pm.max_spare_servers(\(c.maxSpareServers))")
            return
        }
        if c.maxSpawnRate < 1 {
            sink.error(p.location(of: "pm.max_spawn_rate"), "pm.max_spawn_rate", "must be a positive value (got \(c.maxSpawnRate))")
        }
    }

    /// pm.status_path and ping.path: php-fpm's rules.
    private func checkURIPath(_ path: String, directive: String, at location: SourceLocation, allowRoot: Bool) {
        if !path.hasPrefix("/") {
            sink.error(location, directive, "'\(path)' must start with a '/'")
            return
        }
        if path.utf8.count < 2 && !allowRoot {
            sink.error(location, directive, "'\(path)' is not long enough")
            return
        }
        let ok = path.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A)
                || $0 == 0x2F || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E || $0 == 0x7E
        }
        if !ok {
            sink.error(location, directive, "'\(path)' must contain only the following characters '[alphanum]/_-.~'")
        }
    }

    /// No two pools may listen on the same (or an overlapping) address; the
    /// global status.listen and every pm.status_listen count too.
    private func checkListenConflicts() {
        struct Use { var owner: String; var address: ListenAddress; var location: SourceLocation; var directive: String }
        var uses: [Use] = []
        if let address = global.config.statusListen, let location = global.setAt["status.listen"] {
            uses.append(Use(owner: "[global]", address: address, location: location, directive: "status.listen"))
        }
        if let path = global.config.controlSocket,
           let location = global.setAt["control.socket"] ?? global.setAt["pid"] {
            uses.append(Use(owner: "[global]", address: .unix(path: path), location: location, directive: "control.socket"))
        }
        for p in pools {
            for (address, location) in zip(p.config.listen, p.config.listenLocations) {
                uses.append(Use(owner: "pool '\(p.config.name)'", address: address, location: location, directive: "listen"))
            }
            if let address = p.config.statusListenAddress {
                uses.append(Use(owner: "pool '\(p.config.name)'", address: address, location: p.location(of: "pm.status_listen"), directive: "pm.status_listen"))
            }
        }
        for j in uses.indices {
            for i in 0..<j where uses[i].owner != uses[j].owner || uses[i].directive != uses[j].directive {
                guard Listen.overlaps(uses[i].address, uses[j].address) else { continue }
                let a = uses[i], b = uses[j]
                let what = a.address == b.address ? "is already used" : "overlaps \(a.address), used"
                sink.error(b.location, b.directive, "\(b.address) \(what) by \(a.owner) (\(a.directive) at \(a.location))")
                break
            }
        }
    }
}
