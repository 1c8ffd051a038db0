import CDroverSys
import DroverConfig
import DroverCore
import Glibc

/// The master process (design §1): owns the configuration, the listening
/// sockets, the scoreboard and every decision about workers. It runs one
/// libev loop and is never in the data path.
public final class Master {
    public struct Options: Sendable {
        /// -R: pools may run as root.
        public var allowRoot = false
        /// -O: the error log goes to stderr whatever the config says.
        public var forceStderr = false
        /// -D / -F: overrides `daemonize`.
        public var daemonize: Bool?
        /// -g: overrides `pid`.
        public var pidFile: String?
        /// -y and -p: where a reload reads the configuration again.
        public var configFile = ""
        public var prefix: String?
        public init() {}
    }

    /// How the master was asked to stop.
    enum Stop {
        /// QUIT: stop accepting, finish in-flight requests, exit.
        case graceful
        /// INT/TERM: workers stop their apps now; SIGKILL after a timeout.
        case fast
    }

    let config: Configuration
    let options: Options
    let workerEntry: (WorkerLaunch) -> Never
    let agentEntry: (AgentLaunch) -> Never
    /// The environment of workers and apps (without systemd's variables).
    let environment: [String: String]
    /// sd_notify and socket activation (Systemd.swift).
    let systemd: Systemd
    /// 1 at start, one more with each reload (Reload/).
    var generation: UInt32 = 1
    /// Set when this process is a re-executed master (reload, design §7).
    let handoff: Handoff?
    /// The environment a reload re-executes with: the one Drover started
    /// with (NOTIFY_SOCKET included), less socket activation's variables,
    /// whose sockets travel in the handoff instead.
    let execEnvironment: [String: String]
    /// The workers of the masters before the last reload, until they exit.
    var oldGeneration: OldGeneration?
    /// Looks after the old generation while it lasts (Master+Reload.swift).
    var reloadTimer: TimerWatcher?
    /// The previous master's agent is stopping; ours starts when it is gone.
    var replacingAgent = false
    /// "reload complete" was logged and READY=1 sent for this generation.
    var reloadAnnounced = false

    private(set) var log: ErrorLog!
    private(set) var loop: EventLoop!
    private(set) var scoreboard: Scoreboard!
    private(set) var pools: [Pool] = []
    private(set) var appSocketBase: String?
    private(set) var pidFile: String?
    private var stopping: Stop?
    private var watchers: [SignalWatcher] = []
    private var childWatcher: ChildWatcher?
    private var escalation: TimerWatcher?
    /// The 1 s tick of every pool (scale-down, listen-queue samples).
    private var tick: TimerWatcher?
    private var emergency: EmergencyRestart
    /// The agent process (design §5–6): the log channel's reader.
    private(set) var channel: LogChannel?
    var agentPID: Int32 = 0
    var agentStartedAt: Int64 = 0
    private var agentBackoff = Backoff()
    private var agentTimer: TimerWatcher?

    var isRunning: Bool { stopping == nil }

    /// The libev this binary runs with, for `drover -v`.
    public static var libevVersion: String { EventLoop.libevVersion }

    /// `workerEntry` runs in each forked worker and `agentEntry` in the
    /// forked agent (the `drover` executable passes DroverWorker's and
    /// DroverAgent's entry points; master, worker and agent stay siblings).
    public init(config: Configuration, options: Options, environment: [String: String],
                workerEntry: @escaping (WorkerLaunch) -> Never, agentEntry: @escaping (AgentLaunch) -> Never) {
        self.config = config
        self.options = options
        var environment = environment
        handoff = Handoff.take(from: &environment)
        execEnvironment = environment.filter { !$0.key.hasPrefix("LISTEN_") }
        // LISTEN_PID/WATCHDOG_PID name this process, before daemonizing forks.
        // (A re-executed master has no LISTEN_*: its sockets are in the handoff.)
        systemd = Systemd(environment: environment, pid: getpid())
        self.environment = Systemd.childEnvironment(environment)
        self.workerEntry = workerEntry
        self.agentEntry = agentEntry
        emergency = EmergencyRestart(threshold: config.global.emergencyRestartThreshold,
                                     intervalSeconds: config.global.emergencyRestartInterval)
    }

    /// Everything that refuses a configuration beyond parsing it: `-t`, the
    /// start and a reload ask the same questions.
    public static func startProblems(_ config: Configuration, allowRoot: Bool) -> [String] {
        config.accessFormatProblems + privilegeProblems(config, allowRoot: allowRoot)
    }

    /// Checks that can refuse to start before anything is opened (php-fpm's
    /// rules for running as root). Returns the problems, empty when fine.
    public static func privilegeProblems(_ config: Configuration, allowRoot: Bool) -> [String] {
        guard Users.isRoot else { return [] }
        var problems: [String] = []
        for pool in config.pools {
            guard let user = pool.user else {
                if !allowRoot { problems.append("[pool \(pool.name)] please specify user and group other than root") }
                continue
            }
            guard let account = Users.user(user) else {
                problems.append("[pool \(pool.name)] cannot get uid for user '\(user)'")
                continue
            }
            if account.uid == 0 && !allowRoot {
                problems.append("[pool \(pool.name)] please specify user and group other than root")
            }
            if let group = pool.group, Users.groupID(group) == nil {
                problems.append("[pool \(pool.name)] cannot get gid for group '\(group)'")
            }
        }
        return problems
    }

    /// Runs until stopped; returns the process exit status.
    public func run() -> Int32 {
        // A re-executed master is already whatever the first one became.
        let daemonize = handoff == nil && (options.daemonize ?? config.global.daemonize)
        Systemd.unsetProcessEnvironment()
        var reportFD: Int32 = -1
        if daemonize {
            do { reportFD = try Daemon.detach() } catch {
                FD.writeAll(STDERR_FILENO, "ERROR: \(error)\n")
                return 78
            }
        }
        let status = start(daemonize: daemonize)
        if reportFD >= 0 { Daemon.report(reportFD, status: UInt8(status)) }
        guard status == 0 else { return status }
        log.notice("ready to handle connections")
        systemd.start(loop: loop, interval: config.global.systemdInterval, log: log) { [unowned self] in
            self.scoreboard.systemdStatus()
        }
        // After a reload, READY=1 waits until the new generation serves.
        if oldGeneration == nil { systemd.ready() }
        loop.run()
        systemd.stopTimers()
        log.notice("exiting, bye-bye!")
        cleanUp()
        return 0
    }

    /// Opens everything and starts the workers; 0 or an exit status.
    private func start(daemonize: Bool) -> Int32 {
        // Whatever the previous master left open beyond the handoff (libev's
        // descriptors, the error log) is not ours.
        if let handoff { FD.closeAll(except: handoff.descriptors) }
        do {
            // Until the agent takes over: the file itself, or stderr for syslog.
            let path = options.forceStderr || config.global.errorLog == "syslog" ? nil : config.global.errorLog
            log = try ErrorLog(path: path, level: config.global.logLevel)
        } catch {
            FD.writeAll(STDERR_FILENO, "ERROR: failed to open error_log: \(error)\n")
            return 78
        }
        for warning in config.warnings { log.warning("\(warning)") }
        if !Users.isRoot {
            for pool in config.pools where pool.user != nil || pool.group != nil {
                log.notice("[pool \(pool.name)] 'user' directive is ignored when FPM is not running as root")
            }
        }
        do {
            try applyGlobalLimits()
            try openEverything()
        } catch {
            log.error("\(error)")
            log.error("FPM initialization failed")
            cleanUp()
            return 78
        }
        // A daemon logging to a file lets go of the caller's terminal or pipe
        // before forking the agent and the workers, which would otherwise
        // inherit it and keep e.g. `out=$(drover -D)` waiting until Drover stops.
        if daemonize && log.path != nil { Daemon.detachStderr() }
        if let handoff {
            adoptPreviousMaster(handoff)
        } else {
            startAgent()
        }
        log.route(through: channel!)
        log.notice("drover \(DroverVersion.string) is running, pid \(getpid()), generation \(generation), events.mechanism = \(loop.backendName)")
        for pool in pools { pool.start() }
        if oldGeneration != nil { startRetiring() }
        let tick = TimerWatcher(loop) { [unowned self] in
            for pool in self.pools { pool.tick() }
            self.reportDroppedLogRecords()
        }
        tick.start(after: 1, repeat: 1)
        self.tick = tick
        return 0
    }

    private func applyGlobalLimits() throws {
        try ProcessLimits.apply(files: config.global.rlimitFiles, core: config.global.rlimitCore,
                                priority: config.global.processPriority)
    }

    private func openEverything() throws {
        signal(SIGPIPE, SIG_IGN)
        let channel: LogChannel
        let base: String
        if let handoff {
            scoreboard = try Scoreboard.attach(fd: handoff.scoreboardFD)
            generation = scoreboard.generation &+ 1
            channel = LogChannel(adoptingSend: handoff.channelSendFD, receive: handoff.channelReceiveFD)
            base = handoff.appSocketBase
            for fd in handoff.descriptors { try? FD.setCloseOnExec(fd) }
        } else {
            let totalChildren = config.pools.reduce(0) { $0 + $1.maxChildren }
            // Headroom for a reload's second generation and added pools.
            scoreboard = try Scoreboard.create(poolCapacity: max(64, config.pools.count * 2),
                                               slotCapacity: max(256, totalChildren * 2 + 64))
            channel = try LogChannel()
            base = try AppSocketDirectory.make()
        }
        scoreboard.generation = generation
        channel.countDrops(in: scoreboard.droppedLogRecordsCounter)
        self.channel = channel
        appSocketBase = base
        loop = EventLoop(backend: config.global.eventsMechanism)
        installSignalHandlers()
        let inherited = handoff.map { Self.listenersFromHandoff($0, for: config.pools) }
            ?? systemd.inheritedSockets(for: config.pools, log: log).mapValues { $0.mapValues { (fd: $0, fromSystemd: true) } }
        let records = poolRecords(for: config.pools)
        for (position, poolConfig) in config.pools.enumerated() {
            let index = records[position]
            let runAs = Users.isRoot ? try account(for: poolConfig) : nil
            var listeners: [Listeners.Opened]
            let reused = inherited[position] ?? [:]
            do {
                listeners = try Listeners.open(poolConfig, runAs: runAs, inherited: reused.mapValues(\.fd))
            } catch {
                throw SystemError("[pool \(poolConfig.name)] cannot listen: \(error)", errno: (error as? SystemError)?.errno ?? 0)
            }
            // Only sockets systemd passed are never unlinked; one a previous
            // master opened is Drover's own.
            for i in listeners.indices { listeners[i].inherited = reused[i]?.fromSystemd ?? false }
            let directory = try AppSocketDirectory.makePool(base: base, poolIndex: index, owner: runAs)
            scoreboard.configurePool(index, name: poolConfig.name, limits: PoolLimits(
                pm: poolConfig.pm.scoreboardValue, maxChildren: poolConfig.maxChildren,
                startServers: poolConfig.startServers, minSpare: poolConfig.minSpareServers,
                maxSpare: poolConfig.maxSpareServers))
            pools.append(try Pool(config: poolConfig, index: index, listeners: listeners,
                                  socketDirectory: directory, runAs: runAs, master: self))
        }
        if let old = handoff?.pidFile, old != options.pidFile ?? config.global.pid { unlink(old) }
        if let path = options.pidFile ?? config.global.pid {
            try Runtime.writePidFile(path)
            pidFile = path
        }
    }

    /// The account a pool's workers run as when the master is root.
    func account(for pool: PoolConfig) throws -> Account? {
        guard let user = pool.user else { return nil }     // -R: stays root
        guard var account = Users.user(user) else { throw SystemError("[pool \(pool.name)] cannot get uid for user '\(user)'", errno: EINVAL) }
        if let group = pool.group {
            guard let gid = Users.groupID(group) else { throw SystemError("[pool \(pool.name)] cannot get gid for group '\(group)'", errno: EINVAL) }
            account.gid = gid
        }
        return account
    }

    // MARK: process limits

    /// How many more workers process.max allows (php-fpm's global limit).
    var processRoom: Int {
        let limit = config.global.processMax
        guard limit > 0 else { return .max }
        return max(0, limit - pools.reduce(0) { $0 + $1.children.count })
    }

    /// Old-generation workers still alive in scoreboard pool `index`.
    func oldWorkers(in index: Int) -> Int { oldGeneration?.count(pool: index) ?? 0 }

    /// A worker or app died of SIGSEGV or SIGBUS. Enough of them within
    /// emergency_restart_interval restart every worker, as php-fpm's
    /// emergency restart does (a graceful restart: in-flight requests finish).
    func processCrashed() {
        guard isRunning, emergency.record(at: Clock.monotonicMicros()) else { return }
        log.warning("failed processes threshold (\(emergency.threshold) in \(Int(config.global.emergencyRestartInterval)) sec) is reached, initiating reload")
        for pool in pools { pool.signalChildren(SIGQUIT) }
    }

    // MARK: signals and children

    private func installSignalHandlers() {
        let actions: [(Int32, () -> Void)] = [
            (SIGTERM, { [unowned self] in self.stop(.fast, reason: "SIGTERM") }),
            (SIGINT, { [unowned self] in self.stop(.fast, reason: "SIGINT") }),
            (SIGQUIT, { [unowned self] in self.stop(.graceful, reason: "SIGQUIT") }),
            (SIGUSR1, { [unowned self] in
                self.log.notice("received SIGUSR1, reopening the log files")
                if self.agentPID > 0 { kill(self.agentPID, SIGUSR1) }
            }),
            (SIGUSR2, { [unowned self] in self.reload(reason: "SIGUSR2") }),
            (SIGHUP, { [unowned self] in self.reload(reason: "SIGHUP") }),
        ]
        for (sig, action) in actions {
            let watcher = SignalWatcher(loop, signal: sig, handler: action)
            watcher.start()
            watchers.append(watcher)
        }
        let children = ChildWatcher(loop) { [unowned self] pid, status in self.childExited(pid, status) }
        children.start()
        childWatcher = children
        // A reload blocked them across the exec (Reexec.masterSignals).
        Reexec.setBlocked(Reexec.masterSignals, false)
    }

    private func childExited(_ pid: Int32, _ status: Int32) {
        if pid == agentPID {
            agentExited(status)
            return
        }
        if oldGeneration?.owns(pid) == true {
            oldWorkerExited(pid, status)
        } else {
            for pool in pools where pool.owns(pid) {
                pool.childExited(pid, status: status)
                break
            }
        }
        if stopping != nil && noWorkersLeft { loop.stop() }
    }

    private var noWorkersLeft: Bool {
        pools.allSatisfy { $0.children.isEmpty } && (oldGeneration?.workers.isEmpty ?? true)
    }

    /// php-fpm's stop sequence: graceful (QUIT) lets requests finish, bounded
    /// by process_control_timeout when it is set, then escalates to a fast
    /// stop (TERM), then to SIGKILL.
    func stop(_ kind: Stop, reason: String) {
        if stopping == .fast || (stopping == .graceful && kind == .graceful) { return }
        stopping = kind
        systemd.stopping()
        log.notice("\(reason) received, \(kind == .graceful ? "Finishing" : "Terminating") ...")
        tick?.stop()
        reloadTimer?.stop()
        for pool in pools {
            pool.stopRespawning()
            pool.signalChildren(kind == .graceful ? SIGQUIT : SIGTERM)
        }
        oldGeneration?.signalAll(kind == .graceful ? SIGQUIT : SIGTERM)
        let timeout = config.global.processControlTimeout
        let timer = escalation ?? TimerWatcher(loop) { [unowned self] in self.escalate() }
        escalation = timer
        if kind == .fast {
            timer.start(after: timeout > 0 ? timeout : 3)
        } else if timeout > 0 {
            timer.start(after: timeout)
        }
        if noWorkersLeft { loop.stop() }
    }

    private func escalate() {
        if stopping == .graceful {
            log.warning("process_control_timeout (\(config.global.processControlTimeout) s) reached; terminating the remaining children")
            stopping = nil
            stop(.fast, reason: "timeout")
            return
        }
        log.warning("children did not stop in time; sending SIGKILL")
        for pool in pools { pool.signalChildren(SIGKILL) }
        oldGeneration?.signalAll(SIGKILL)
    }

    // MARK: the agent

    private var droppedReported: UInt64 = 0

    /// Log records the channel had no room for are counted in the
    /// scoreboard (status: "dropped log records") and reported here, once a
    /// second at most.
    private func reportDroppedLogRecords() {
        let dropped = drover_atomic_load64(scoreboard.droppedLogRecordsCounter)
        guard dropped > droppedReported else { return }
        log.warning("\(dropped - droppedReported) log records dropped: the log channel to the agent was full")
        droppedReported = dropped
    }

    /// Forks the agent. It gets SIGTERM if the master dies, and then writes
    /// what is left in the channel before it exits.
    func startAgent() {
        guard let channel, isRunning else { return }
        let launch = AgentLaunch(config: config, scoreboard: scoreboard, channel: channel,
                                 forceStderr: options.forceStderr, masterPID: getpid(), appSocketBase: appSocketBase)
        let pid = drover_fork_child(SIGTERM)
        if pid == 0 { agentEntry(launch) }
        if pid < 0 {
            log.error("fork() of the agent: \(SystemError.message(errno))")
            scheduleAgentRestart()
            return
        }
        agentPID = pid
        agentStartedAt = Clock.monotonicMicros()
    }

    /// The agent died: records wait in the channel meanwhile (the master
    /// keeps its read end), and a new agent starts after the back-off.
    private func agentExited(_ status: Int32) {
        let pid = agentPID
        agentPID = 0
        if replacingAgent {
            // The previous master's agent wrote what it had and left.
            replacingAgent = false
            startAgent()
            return
        }
        guard isRunning else { return }
        let age = Clock.monotonicMicros() - agentStartedAt
        log.warning("agent \(pid) \(ExitStatus(status)) after \(ExitStatus.seconds(age)) seconds from start; restarting it")
        if age < Pool.youngAge {
            _ = agentBackoff.fail(at: Clock.monotonicMicros())
        }
        scheduleAgentRestart()
    }

    private func scheduleAgentRestart() {
        let delay = agentBackoff.delay(at: Clock.monotonicMicros())
        guard delay > 0 else {
            startAgent()
            return
        }
        let timer = agentTimer ?? TimerWatcher(loop) { [unowned self] in self.startAgent() }
        agentTimer = timer
        timer.start(after: Double(delay) / 1e6)
    }

    /// The last step of stopping: the agent writes what the workers left in
    /// the channel, then exits (SIGKILL after 5 s).
    private func stopAgent() {
        agentTimer?.stop()
        guard agentPID > 0 else { return }
        ChildStop.terminate(agentPID, grace: 5_000_000, poll: 10_000)
        agentPID = 0
    }

    private func cleanUp() {
        stopAgent()
        for pool in pools { pool.closeListeners() }
        for orphan in oldGeneration?.takeOrphans() ?? [] { FD.close(orphan.fd) }
        if let base = appSocketBase { AppSocketDirectory.remove(base) }
        if let pidFile { unlink(pidFile) }
    }
}
