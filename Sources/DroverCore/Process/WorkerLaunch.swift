import DroverConfig

/// Everything a worker process needs, handed over by the master at fork time.
/// It lives in DroverCore so that the master and the worker (sibling modules)
/// share it without depending on each other; the `drover` executable wires
/// the master's fork to the worker's entry point.
public struct WorkerLaunch: @unchecked Sendable {
    public var pool: PoolConfig
    public var poolIndex: Int
    public var slot: Int
    public var generation: UInt32
    /// The pool's listening sockets (shared by all its workers).
    public var listenFDs: [Int32]
    public var scoreboard: Scoreboard
    public var errorLog: ErrorLog
    /// A private directory (mode 0700, owned by the pool's user) for the
    /// app's listening socket.
    public var appSocketDirectory: String
    /// Set when the master runs as root: the worker drops to this account.
    public var runAs: Account?
    /// The master's environment, for `clear_env = no`.
    public var environment: [String: String]
    /// The write end of the pool's event pipe (PoolEvent).
    public var eventFD: Int32
    /// Descriptors the worker keeps; every other inherited one is closed.
    public var keepFDs: [Int32] {
        listenFDs + [errorLog.fd, errorLog.channel?.sendFD ?? -1, scoreboard.fd, eventFD, 0, 1, 2]
    }

    public init(pool: PoolConfig, poolIndex: Int, slot: Int, generation: UInt32, listenFDs: [Int32],
                scoreboard: Scoreboard, errorLog: ErrorLog, appSocketDirectory: String, runAs: Account?,
                environment: [String: String], eventFD: Int32) {
        self.pool = pool
        self.poolIndex = poolIndex
        self.slot = slot
        self.generation = generation
        self.listenFDs = listenFDs
        self.scoreboard = scoreboard
        self.errorLog = errorLog
        self.appSocketDirectory = appSocketDirectory
        self.runAs = runAs
        self.environment = environment
        self.eventFD = eventFD
    }
}

/// How a worker tells the master why it exited (its exit status).
public enum WorkerExit: Int32, Sendable {
    /// Stopped as asked, or recycled.
    case normal = 0
    /// Its app kept dying right after start: the master backs off.
    case appDiedYoung = 75
    /// The app could not be started at all (exec failed): the master backs off.
    case appStartFailed = 78
    /// The worker could not set itself up (privileges, sockets).
    case setupFailed = 71
}
