import CDroverSys
import DroverConfig
import DroverCore
import Glibc

/// The master's side of one pool: its listening sockets, its workers, and
/// the decision of when to start another (design §3).
final class Pool {
    let config: PoolConfig
    let index: Int
    let listeners: [Listeners.Opened]
    let socketDirectory: String
    let runAs: Account?
    private unowned let master: Master
    /// Live workers by pid.
    private(set) var children: [Int32: Child] = [:]
    private var backoff = Backoff()
    /// No worker starts before this time (µs, monotonic): the back-off.
    private var notBefore: Int64 = 0
    private var respawnTimer: TimerWatcher!

    struct Child {
        var slot: Int
        var startedAt: Int64
    }

    /// A worker or app that dies sooner than this after starting has "died
    /// young": a sign of a crash loop, answered with back-off.
    static let youngAge: Int64 = 1_000_000

    init(config: PoolConfig, index: Int, listeners: [Listeners.Opened], socketDirectory: String,
         runAs: Account?, master: Master) {
        self.config = config
        self.index = index
        self.listeners = listeners
        self.socketDirectory = socketDirectory
        self.runAs = runAs
        self.master = master
        respawnTimer = TimerWatcher(master.loop) { [unowned self] in self.fill() }
    }

    private var tag: String { "[pool \(config.name)]" }

    /// How many workers the pool wants. Only `pm = static` is implemented in
    /// this version; dynamic and ondemand pools run as static (drover -t warns).
    var wanted: Int { config.maxChildren }

    /// Starts workers up to `wanted`, honouring the back-off: while it is in
    /// force, one worker at a time probes whether the app has recovered.
    func fill() {
        guard master.isRunning else { return }
        let now = Clock.monotonicMicros()
        if now < notBefore {
            respawnTimer.start(after: Double(notBefore - now) / 1e6)
            return
        }
        let missing = wanted - children.count
        guard missing > 0 else { return }
        let delay = backoff.delay(at: now)
        master.scoreboard.setBackoff(pool: index, milliseconds: UInt32(clamping: delay / 1000))
        let count = delay > 0 ? 1 : missing
        for _ in 0..<count { spawn() }
        if count < missing {
            respawnTimer.start(after: max(Double(delay), Double(Self.youngAge)) / 1e6)
        }
    }

    private func spawn() {
        guard let slot = master.scoreboard.claimSlot(pool: index, generation: master.generation) else {
            master.log.error("\(tag) no free scoreboard slot for a new child")
            return
        }
        let launch = WorkerLaunch(
            pool: config, poolIndex: index, slot: slot, generation: master.generation,
            listenFDs: listeners.map(\.fd), scoreboard: master.scoreboard, errorLog: master.log,
            appSocketDirectory: socketDirectory, runAs: runAs, environment: master.environment)
        // The worker finishes its request and exits if the master dies.
        let pid = drover_fork_child(SIGQUIT)
        if pid == 0 { master.workerEntry(launch) }
        if pid < 0 {
            master.log.error("\(tag) fork(): \(SystemError.message(errno))")
            master.scoreboard.releaseSlot(slot)
            notBefore = Clock.monotonicMicros() + backoff.fail(at: Clock.monotonicMicros())
            respawnTimer.start(after: Double(backoff.delay) / 1e6)
            return
        }
        master.scoreboard.setWorkerPID(slot: slot, pid: pid)
        master.scoreboard.add(.spawns, pool: index)
        children[pid] = Child(slot: slot, startedAt: Clock.monotonicMicros())
        master.log.notice("\(tag) child \(pid) started")
    }

    /// Whether `pid` is one of this pool's workers.
    func owns(_ pid: Int32) -> Bool { children[pid] != nil }

    /// A worker exited: free its slot, log it like php-fpm, and start a
    /// replacement (after the back-off if it died young).
    func childExited(_ pid: Int32, status raw: Int32) {
        guard let child = children.removeValue(forKey: pid) else { return }
        master.scoreboard.releaseSlot(child.slot)
        let now = Clock.monotonicMicros()
        let age = now - child.startedAt
        let status = ExitStatus(raw)
        let line = "\(tag) child \(pid) \(status) after \(ExitStatus.seconds(age)) seconds from start"
        guard master.isRunning else {
            master.log.notice(line)
            return
        }
        let clean = status.code == WorkerExit.normal.rawValue
        let appFailed = status.code == WorkerExit.appDiedYoung.rawValue || status.code == WorkerExit.appStartFailed.rawValue
        if clean {
            master.log.notice(line)
        } else {
            master.scoreboard.add(.crashes, pool: index)
            master.log.warning(line)
        }
        // One failure per back-off window: when the app breaks, every worker
        // of the pool dies at about the same time, and that is one event,
        // not max_children of them.
        if (appFailed || (!clean && age < Self.youngAge)) && now >= notBefore {
            let delay = backoff.fail(at: now)
            notBefore = now + delay
            master.scoreboard.setBackoff(pool: index, milliseconds: UInt32(clamping: delay / 1000))
            master.log.warning("\(tag) child \(pid) died young; next start in \(ExitStatus.seconds(delay)) seconds (back-off)")
        }
        fill()
    }

    func signalChildren(_ sig: Int32) {
        for pid in children.keys { kill(pid, sig) }
    }

    func stopRespawning() { respawnTimer.stop() }

    func closeListeners() {
        Listeners.close(listeners)
        Listeners.unlinkPaths(listeners)
    }
}
