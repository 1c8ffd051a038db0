import DroverConfig

/// Everything the agent process (design §5–6) needs, handed over by the
/// master at fork time, like WorkerLaunch for workers.
public struct AgentLaunch: @unchecked Sendable {
    public var config: Configuration
    public var scoreboard: Scoreboard
    /// The log channel; the agent reads `receiveFD`.
    public var channel: LogChannel
    /// -O: the error log goes to stderr whatever the config says.
    public var forceStderr: Bool
    /// The master, which the control socket's reload/stop commands signal.
    public var masterPID: Int32
    /// The apps' socket directory, which the agent removes when it outlives
    /// the master (killed: nobody else is left to).
    public var appSocketBase: String?
    /// Descriptors the agent keeps; every other inherited one is closed.
    public var keepFDs: [Int32] { [channel.receiveFD, channel.sendFD, scoreboard.fd, 0, 1, 2] }

    public init(config: Configuration, scoreboard: Scoreboard, channel: LogChannel, forceStderr: Bool, masterPID: Int32,
                appSocketBase: String? = nil) {
        self.appSocketBase = appSocketBase
        self.config = config
        self.scoreboard = scoreboard
        self.channel = channel
        self.forceStderr = forceStderr
        self.masterPID = masterPID
    }
}
