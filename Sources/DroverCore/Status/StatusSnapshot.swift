// What a status page shows, as plain values: built from a scoreboard
// snapshot (Scoreboard+Status.swift), rendered by StatusRenderer. Keeping the
// model apart from shared memory lets the renderers be tested without it.

/// One pool, as php-fpm's status page shows it, plus Drover's extras.
public struct PoolStatus: Sendable, Equatable {
    public var name: String
    /// "static", "dynamic" or "ondemand".
    public var processManager: String
    /// Unix time (seconds) the pool started.
    public var startTime: Int64
    /// Unix time (seconds) of this snapshot; "start since" = now - startTime.
    public var now: Int64
    public var acceptedConnections: UInt64
    /// Listen queue figures; nil when not measured (then the fields are omitted, never made up).
    public var listenQueue: Int?
    public var maxListenQueue: Int?
    public var listenQueueLength: Int?
    public var idleProcesses: Int
    public var activeProcesses: Int
    public var totalProcesses: Int
    public var maxActiveProcesses: UInt64
    public var maxChildrenReached: UInt64
    /// nil while the slow log is not implemented (field omitted).
    public var slowRequests: UInt64?
    // Drover's extras
    public var spawns: UInt64
    public var crashes: UInt64
    /// Current respawn back-off in milliseconds; 0 when healthy.
    public var backoffMilliseconds: UInt32
    /// nil while there is no log channel (field omitted).
    public var droppedLogRecords: UInt64?
    public var processes: [ProcessStatus]

    public init(name: String, processManager: String, startTime: Int64, now: Int64,
                acceptedConnections: UInt64 = 0, listenQueue: Int? = nil, maxListenQueue: Int? = nil,
                listenQueueLength: Int? = nil, idleProcesses: Int = 0, activeProcesses: Int = 0,
                totalProcesses: Int = 0, maxActiveProcesses: UInt64 = 0, maxChildrenReached: UInt64 = 0,
                slowRequests: UInt64? = nil, spawns: UInt64 = 0, crashes: UInt64 = 0,
                backoffMilliseconds: UInt32 = 0, droppedLogRecords: UInt64? = nil,
                processes: [ProcessStatus] = []) {
        self.name = name
        self.processManager = processManager
        self.startTime = startTime
        self.now = now
        self.acceptedConnections = acceptedConnections
        self.listenQueue = listenQueue
        self.maxListenQueue = maxListenQueue
        self.listenQueueLength = listenQueueLength
        self.idleProcesses = idleProcesses
        self.activeProcesses = activeProcesses
        self.totalProcesses = totalProcesses
        self.maxActiveProcesses = maxActiveProcesses
        self.maxChildrenReached = maxChildrenReached
        self.slowRequests = slowRequests
        self.spawns = spawns
        self.crashes = crashes
        self.backoffMilliseconds = backoffMilliseconds
        self.droppedLogRecords = droppedLogRecords
        self.processes = processes
    }
}

/// One worker slot (php-fpm's "full" rows), plus Drover's app pid and status.
public struct ProcessStatus: Sendable, Equatable {
    /// The worker's pid (the process that accepts and relays).
    public var pid: Int32
    /// The app process the worker runs; 0 when none is running.
    public var appPid: Int32
    /// php-fpm's names: "Idle", "Reading headers", "Running", "Finishing",
    /// plus "Starting" and "Draining".
    public var state: String
    public var startTime: Int64
    public var startSince: Int64
    public var requests: UInt64
    /// Microseconds: of the current request while busy, of the last one while idle.
    public var requestDuration: Int64
    public var requestMethod: String
    /// Request URI including "?query" when there is one, as php-fpm shows it.
    public var requestURI: String
    public var contentLength: UInt64
    /// REMOTE_USER, "-" when none.
    public var user: String
    /// SCRIPT_FILENAME, "-" when none.
    public var script: String
    /// Percent; nil when not measured (php-fpm prints 0.00 then).
    public var lastRequestCPU: Double?
    /// Bytes; nil when not measured (php-fpm prints 0 then).
    public var lastRequestMemory: UInt64?
    /// HTTP status of the current/last request; nil when none seen.
    public var statusCode: Int?

    public init(pid: Int32, appPid: Int32 = 0, state: String, startTime: Int64, startSince: Int64,
                requests: UInt64 = 0, requestDuration: Int64 = 0, requestMethod: String = "-",
                requestURI: String = "-", contentLength: UInt64 = 0, user: String = "-",
                script: String = "-", lastRequestCPU: Double? = nil, lastRequestMemory: UInt64? = nil,
                statusCode: Int? = nil) {
        self.pid = pid
        self.appPid = appPid
        self.state = state
        self.startTime = startTime
        self.startSince = startSince
        self.requests = requests
        self.requestDuration = requestDuration
        self.requestMethod = requestMethod
        self.requestURI = requestURI
        self.contentLength = contentLength
        self.user = user
        self.script = script
        self.lastRequestCPU = lastRequestCPU
        self.lastRequestMemory = lastRequestMemory
        self.statusCode = statusCode
    }
}
