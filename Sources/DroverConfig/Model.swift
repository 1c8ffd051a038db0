// The typed configuration that the rest of Drover reads. The parser
// (IniParser.swift), the directive table (Directives.swift) and validation
// (Validation.swift) produce it; nothing outside this module sees ini text.

/// Where a value came from, for `file:line` messages.
public struct SourceLocation: Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }
    public var description: String { "\(file):\(line)" }
}

/// A configuration problem: `file:line: directive: message`.
public struct ConfigDiagnostic: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Severity: Sendable { case error, warning }
    public var severity: Severity
    public var location: SourceLocation?
    public var directive: String?
    public var message: String
    public init(_ severity: Severity, _ location: SourceLocation?, directive: String?, _ message: String) {
        self.severity = severity
        self.location = location
        self.directive = directive
        self.message = message
    }
    public var description: String {
        var s = ""
        if let location { s += "\(location): " }
        if let directive { s += "\(directive): " }
        return s + message
    }
}

/// Thrown by `ConfigLoader.load` when there is at least one error.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigDiagnostic]
    public var warnings: [ConfigDiagnostic]
    public init(errors: [ConfigDiagnostic], warnings: [ConfigDiagnostic]) {
        self.errors = errors
        self.warnings = warnings
    }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug = 0, notice, warning, error, alert
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
    /// php-fpm's spelling in log lines: DEBUG, NOTICE, WARNING, ERROR, ALERT.
    public var label: String {
        switch self {
        case .debug: "DEBUG"
        case .notice: "NOTICE"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .alert: "ALERT"
        }
    }
}

public enum ProcessManager: String, Sendable {
    case `static`, dynamic, ondemand
}

/// `process.sched_policy`: the Linux scheduling policy of a pool's workers
/// and apps (sched(7)).
public enum SchedulingPolicy: String, Sendable {
    /// SCHED_OTHER, the default of every other process.
    case other
    /// SCHED_BATCH: a woken worker or app does not preempt the running task.
    case batch
    /// SCHED_IDLE: runs only when nothing else wants the CPU.
    case idle
}

/// One `listen` address.
public enum ListenAddress: Hashable, Sendable, CustomStringConvertible {
    /// A Unix socket path (absolute after prefix resolution).
    case unix(path: String)
    /// `host` is an IPv4 or IPv6 literal without brackets, or nil for "any"
    /// (a bare port listens on every address: IPv6 dual-stack when available).
    case tcp(host: String?, port: UInt16)

    public var description: String {
        switch self {
        case .unix(let path): path
        case .tcp(nil, let port): "\(port)"
        case .tcp(let host?, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

public struct GlobalConfig: Sendable {
    public var pid: String?
    /// nil means stderr; "syslog" means syslog (see `syslogFacility`).
    public var errorLog: String?
    public var logLevel: LogLevel = .notice
    public var logLimit: Int = 1024
    public var logBuffering: Bool = true
    public var syslogFacility: String = "daemon"
    public var syslogIdent: String = "php-fpm"
    public var emergencyRestartThreshold: Int = 0
    public var emergencyRestartInterval: Double = 0      // seconds
    public var processControlTimeout: Double = 0          // seconds
    public var processMax: Int = 0
    public var processPriority: Int?
    public var daemonize: Bool = true
    public var rlimitFiles: Int?
    public var rlimitCore: Int64?                          // -1 = unlimited
    public var eventsMechanism: String?
    public var systemdInterval: Double = 10
    /// Drover: rotate log files written by the agent at this size in bytes (0: never).
    public var logMaxSize: Int64 = 0
    /// Drover: rotated log files kept (`log.max_files`).
    public var logMaxFiles: Int = 5
    /// Drover: the global HTTP status/metrics/ping listener (`status.listen`), if any.
    public var statusListen: ListenAddress?
    /// Drover: the agent's control socket for droverctl (`control.socket`), absolute;
    /// by default the pid file's path with `.ctl` for its extension; nil: none.
    public var controlSocket: String?
    public var location: SourceLocation?
    /// Where each directive was written, by its canonical name (the last
    /// occurrence wins), for `file:line` messages from the master.
    public var locations: [String: SourceLocation] = [:]
    public init() {}
}

public struct PoolConfig: Sendable {
    public var name: String
    public var location: SourceLocation
    public var prefix: String?
    public var user: String?
    public var group: String?
    public var listen: [ListenAddress] = []
    /// -1: the system maximum (net.core.somaxconn), php-fpm's default on Linux.
    public var listenBacklog: Int = -1
    public var listenOwner: String?
    public var listenGroup: String?
    public var listenMode: UInt32?
    public var listenAclUsers: String?
    public var listenAclGroups: String?
    /// `listen.acl_users` and `listen.acl_groups` split at commas, blanks
    /// trimmed: names, or numeric ids.
    public var listenAclUserNames: [String] = []
    public var listenAclGroupNames: [String] = []
    /// Unix sockets get a POSIX ACL instead of listen.owner and listen.group.
    public var hasListenAcl: Bool { !listenAclUserNames.isEmpty || !listenAclGroupNames.isEmpty }
    /// Empty: any client. Entries are addresses or CIDR ranges as written.
    public var listenAllowedClients: [String] = []
    /// `listenAllowedClients` parsed, in the same order (empty: any client).
    public var listenAllowedClientRanges: [IPRange] = []
    public var listenSetfib: Int?
    public var processPriority: Int?
    public var processDumpable: Bool = false
    public var processSchedPolicy: SchedulingPolicy = .batch
    public var pm: ProcessManager = .static
    public var maxChildren: Int = 0
    public var startServers: Int = 0
    public var minSpareServers: Int = 0
    public var maxSpareServers: Int = 0
    public var maxSpawnRate: Int = 32
    public var processIdleTimeout: Double = 10            // seconds
    public var maxRequests: Int = 0
    public var statusPath: String?
    public var statusListen: String?
    /// `pm.status_listen` parsed (unix paths resolved against the prefix).
    public var statusListenAddress: ListenAddress?
    public var pingPath: String?
    public var pingResponse: String = "pong"
    /// Drover: whether status pages served by the agent show this pool's
    /// query strings in per-process rows (`status.show_query`); otherwise
    /// they read "[redacted]".
    public var statusShowQuery: Bool = false
    public var accessLog: String?
    public var accessFormat: String = "%R - %u %t \"%m %r\" %s"
    public var accessSuppressPaths: [String] = []
    public var slowlog: String?
    public var requestSlowlogTimeout: Double = 0           // seconds
    public var requestSlowlogTraceDepth: Int = 20
    public var requestTerminateTimeout: Double = 0         // seconds
    public var requestTerminateTimeoutTrackFinished: Bool = false
    public var rlimitFiles: Int?
    public var rlimitCore: Int64?                          // -1 = unlimited
    public var chroot: String?
    public var chdir: String?
    public var catchWorkersOutput: Bool = false
    public var decorateWorkersOutput: Bool = true
    public var clearEnv: Bool = true
    public var securityLimitExtensions: [String] = [".php", ".phar"]
    /// `env[NAME] = value`, in file order (later wins for the same name).
    public var env: [(name: String, value: String)] = []
    /// php_value / php_flag (admin: false) and php_admin_value / php_admin_flag (admin: true);
    /// flags already normalised to "1"/"0".
    public var phpSettings: [(name: String, value: String, admin: Bool)] = []
    /// The app's argv (`command`, split with shell-like quoting). Empty when
    /// the pool has no `command`: then Drover runs `php-cgi` from PATH.
    public var command: [String] = []
    /// Drover: argv run when a request becomes slow (`request_slowlog_trace_command`),
    /// with `{pid}` still in place for the app's pid. Empty: none.
    public var requestSlowlogTraceCommand: [String] = []
    /// `apparmor_hat` (recognised, not implemented).
    public var apparmorHat: String?
    /// Where each `listen` line was written, parallel to `listen`.
    public var listenLocations: [SourceLocation] = []
    /// Where each directive was written, by its canonical name (the last
    /// occurrence wins; `env[]`, `php_value[]`... by their array name).
    public var locations: [String: SourceLocation] = [:]
    public init(name: String, location: SourceLocation) {
        self.name = name
        self.location = location
    }
}

public struct Configuration: Sendable {
    public var global: GlobalConfig
    public var pools: [PoolConfig]
    /// Files read, in order (the main file first, then includes).
    public var files: [String]
    /// Warnings, e.g. directives recognised but not implemented yet.
    public var warnings: [ConfigDiagnostic]
    /// The global prefix relative paths were resolved against (`-p`, or the
    /// directory of the main configuration file).
    public var prefix: String = "/"
    public init(global: GlobalConfig, pools: [PoolConfig], files: [String], warnings: [ConfigDiagnostic]) {
        self.global = global
        self.pools = pools
        self.files = files
        self.warnings = warnings
    }
}
