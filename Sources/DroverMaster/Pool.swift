import CDroverSys
import DroverConfig
import DroverCore
import Glibc

/// The master's side of one pool: its listening sockets, its workers, and
/// the decision of when to start or stop one (design §3).
///
/// Static pools are kept at pm.max_children. Dynamic and ondemand pools are
/// scaled by `scale()`, which runs when something may have changed: a worker
/// wrote to the pool's event pipe (it went busy and the pool ran short, or
/// it finished starting), a connection is waiting while no worker is idle
/// (the listening sockets are watched only then), a spawn token came due, a
/// worker exited, or the 1 s tick, which also stops surplus idle workers.
final class Pool {
    let config: PoolConfig
    /// The pool's record in the scoreboard (kept across reloads by name).
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
    private var spawnRate: SpawnRate
    private var tokenTimer: TimerWatcher!
    /// Since when the pool has been short of idle workers with no connection
    /// waiting (ScalingPolicy.topUpDelay), and the timer that looks again.
    private var shortSince: Int64?
    private var topUpTimer: TimerWatcher!
    /// The pool's event pipe (PoolEvent): workers write, the master reads.
    private let events: (read: Int32, write: Int32)
    private var eventWatcher: IOWatcher!
    /// Readable listening sockets wake the master only while no worker is idle.
    private var queueWatchers: [IOWatcher] = []
    /// "server reached pm.max_children" is logged once per episode; the
    /// episode ends at a tick that finds the pool no longer held back.
    private var warnedMaxChildren = false
    private var lastBusyWarning: Int64?

    struct Child {
        var slot: Int
        var startedAt: Int64
        /// Told to stop (SIGQUIT) because the pool has too many idle workers.
        var stopping = false
    }

    /// A worker or app that dies sooner than this after starting has "died
    /// young": a sign of a crash loop, answered with back-off.
    static let youngAge: Int64 = 1_000_000

    init(config: PoolConfig, index: Int, listeners: [Listeners.Opened], socketDirectory: String,
         runAs: Account?, master: Master) throws {
        self.config = config
        self.index = index
        self.listeners = listeners
        self.socketDirectory = socketDirectory
        self.runAs = runAs
        self.master = master
        spawnRate = SpawnRate(perSecond: config.maxSpawnRate, now: Clock.monotonicMicros())
        var fds: [Int32] = [-1, -1]
        if drover_pipe2(&fds, Int32(DROVER_O_CLOEXEC) | O_NONBLOCK) != 0 { throw SystemError("pipe2()") }
        events = (fds[0], fds[1])
        respawnTimer = TimerWatcher(master.loop) { [unowned self] in self.fill() }
        tokenTimer = TimerWatcher(master.loop) { [unowned self] in self.scale() }
        topUpTimer = TimerWatcher(master.loop) { [unowned self] in self.scale() }
        eventWatcher = IOWatcher(master.loop, fd: events.read) { [unowned self] in self.readEvents() }
        eventWatcher.start()
        if config.pm != .static {
            queueWatchers = listeners.map { listener in
                IOWatcher(master.loop, fd: listener.fd) { [unowned self] in self.scale() }
            }
        }
        master.scoreboard.setNotifyBelow(pool: index, notifyThreshold)
    }

    private var tag: String { "[pool \(config.name)]" }

    /// Below how many idle workers a worker going busy wakes the master.
    private var notifyThreshold: Int {
        switch config.pm {
        case .static: 0
        case .dynamic: config.minSpareServers
        // Ondemand wants no idle workers, but must hear when the last one
        // goes busy, so that it watches the queue from then on.
        case .ondemand: 1
        }
    }

    // MARK: starting workers

    /// Starts the pool: all workers of a static pool, pm.start_servers of a
    /// dynamic one, none of an ondemand one (it waits for a connection).
    func start() {
        switch config.pm {
        case .static: fill()
        case .dynamic: _ = startWorkers(config.startServers, at: Clock.monotonicMicros())
        case .ondemand: setQueueWatch(true)
        }
    }

    /// Brings the pool back to the size its process manager wants (after a
    /// worker exited, or when the back-off ends).
    func fill() {
        guard master.isRunning else { return }
        guard config.pm == .static else {
            scale()
            return
        }
        let now = Clock.monotonicMicros()
        if now < notBefore {
            respawnTimer.start(after: Double(notBefore - now) / 1e6)
            return
        }
        _ = startWorkers(config.maxChildren - children.count, at: now)
    }

    /// Starts up to `count` workers, honouring the back-off (while it is in
    /// force, one worker at a time probes whether the app has recovered) and
    /// process.max. Returns how many were started.
    private func startWorkers(_ count: Int, at now: Int64) -> Int {
        guard count > 0 else { return 0 }
        let delay = backoff.delay(at: now)
        master.scoreboard.setBackoff(pool: index, milliseconds: UInt32(clamping: delay / 1000))
        var allowed = min(delay > 0 ? 1 : count, rolloutRoom ?? .max)
        let room = master.processRoom
        if room < allowed {
            master.log.warning("The maximum number of processes has been reached. Please review your configuration and consider raising 'process.max'")
            allowed = room
        }
        var started = 0
        for _ in 0..<allowed where spawn() { started += 1 }
        if started < count && delay > 0 {
            respawnTimer.start(after: max(Double(delay), Double(Self.youngAge)) / 1e6)
        }
        return started
    }

    private func spawn() -> Bool {
        guard let slot = master.scoreboard.claimSlot(pool: index, generation: master.generation) else {
            master.log.error("\(tag) no free scoreboard slot for a new child")
            return false
        }
        let launch = WorkerLaunch(
            pool: config, poolIndex: index, slot: slot, generation: master.generation,
            listenFDs: listeners.map(\.fd), scoreboard: master.scoreboard, errorLog: master.log,
            appSocketDirectory: socketDirectory, runAs: runAs, environment: master.environment,
            eventFD: events.write)
        // The worker finishes its request and exits if the master dies.
        let pid = drover_fork_child(SIGQUIT)
        if pid == 0 { master.workerEntry(launch) }
        if pid < 0 {
            master.log.error("\(tag) fork(): \(SystemError.message(errno))")
            master.scoreboard.releaseSlot(slot)
            notBefore = Clock.monotonicMicros() + backoff.fail(at: Clock.monotonicMicros())
            respawnTimer.start(after: Double(backoff.delay) / 1e6)
            return false
        }
        master.scoreboard.setWorkerPID(slot: slot, pid: pid)
        master.scoreboard.add(.spawns, pool: index)
        children[pid] = Child(slot: slot, startedAt: Clock.monotonicMicros())
        publishTotal()
        master.log.notice("\(tag) child \(pid) started")
        return true
    }

    // MARK: scaling (dynamic, ondemand)

    /// What the pool looks like now, with a fresh reading of its accept queues.
    private func scalingInput() -> ScalingInput {
        let load = master.scoreboard.load(pool: index)
        let stopping = children.values.filter(\.stopping).count
        return ScalingInput(
            pm: config.pm, maxChildren: config.maxChildren,
            minSpare: config.minSpareServers, maxSpare: config.maxSpareServers,
            total: children.count,
            starting: max(0, children.count - load.ready),
            idle: max(0, load.idle - stopping),
            queued: sampleListenQueue())
    }

    /// Sums the pool's accept queues and records them for the status page.
    @discardableResult
    func sampleListenQueue() -> Int {
        let queue = ListenQueue.total(of: listeners.map(\.fd))
        master.scoreboard.recordListenQueue(pool: index, queue)
        return queue.waiting
    }

    /// Starts the workers a dynamic or ondemand pool needs now, as fast as
    /// pm.max_spawn_rate allows.
    func scale() {
        guard master.isRunning, config.pm != .static else { return }
        let now = Clock.monotonicMicros()
        let x = scalingInput()
        let wanted = min(workersToStartNow(x, at: now), master.processRoom)
        var started = 0
        if wanted > 0 {
            if now < notBefore {
                respawnTimer.start(after: Double(notBefore - now) / 1e6)
            } else {
                let granted = spawnRate.take(wanted, at: now)
                if granted < wanted { tokenTimer.start(after: spawnRate.secondsToNextToken(at: now)) }
                started = startWorkers(granted, at: now)
            }
        }
        if config.pm == .dynamic && started >= ScalingPolicy.busySpawnCount && now - (lastBusyWarning ?? 0) >= 1_000_000 {
            lastBusyWarning = now
            master.log.warning("\(tag) seems busy (you may need to increase pm.start_servers, or pm.min/max_spare_servers), spawning \(started) children, there are \(x.idle) idle, and \(x.total) total children")
        }
        var after = x
        after.total += started
        after.starting += started
        if ScalingPolicy.reachedMaxChildren(after) && !warnedMaxChildren {
            warnedMaxChildren = true
            master.scoreboard.add(.maxChildrenReached, pool: index)
            master.log.warning("\(tag) server reached pm.max_children setting (\(config.maxChildren)), consider raising it")
        }
        // Watch the queue while nobody is idle to take a new connection. A
        // queue that stays readable without anything left to do (workers
        // already starting for it, or no spawn token) is not watched, or the
        // loop would spin; a worker becoming ready, the token timer, an exit
        // or the tick looks again.
        setQueueWatch(x.idle == 0 && after.total < config.maxChildren && !(x.queued > 0 && started == 0))
    }

    /// Workers for waiting connections at once; the idle reserve only once
    /// the pool has been short for ScalingPolicy.topUpDelay.
    private func workersToStartNow(_ x: ScalingInput, at now: Int64) -> Int {
        let all = ScalingPolicy.workersToStart(x)
        let urgent = ScalingPolicy.workersForWaitingConnections(x)
        guard all > urgent else {
            shortSince = nil
            return all
        }
        let since = shortSince ?? now
        shortSince = since
        if now - since >= ScalingPolicy.topUpDelay { return all }
        if !topUpTimer.isActive { topUpTimer.start(after: Double(since + ScalingPolicy.topUpDelay - now) / 1e6) }
        return urgent
    }

    private func setQueueWatch(_ on: Bool) {
        for watcher in queueWatchers where watcher.isActive != on {
            if on { watcher.start() } else { watcher.stop() }
        }
    }

    private func readEvents() {
        for event in PoolEvent.drain(events.read) where event == .appCrashed {
            master.processCrashed()
        }
        scale()
    }

    /// The 1 s tick: samples the accept queue, stops surplus idle workers
    /// (dynamic: one per tick, longest idle first; ondemand: every worker
    /// idle for pm.process_idle_timeout), ends a max_children episode, and
    /// scales as a safety net for anything missed.
    func tick() {
        guard master.isRunning else { return }
        guard config.pm != .static else {
            sampleListenQueue()
            return
        }
        let x = scalingInput()
        if !ScalingPolicy.reachedMaxChildren(x) { warnedMaxChildren = false }
        let idle = master.scoreboard.idleWorkers(pool: index).filter { children[$0.pid].map { !$0.stopping } ?? false }
        switch config.pm {
        case .dynamic:
            if ScalingPolicy.surplusIdle(x) > 0, let oldest = idle.first { stopWorker(oldest.pid) }
        case .ondemand:
            let now = Clock.realtimeMicros()
            let timeout = Int64(config.processIdleTimeout * 1e6)
            for worker in idle where now - worker.idleSince >= timeout { stopWorker(worker.pid) }
        case .static:
            break
        }
        scale()
    }

    /// Asks an idle worker to exit (SIGQUIT: should a request have reached
    /// it meanwhile, it finishes that first).
    private func stopWorker(_ pid: Int32) {
        guard children[pid] != nil else { return }
        children[pid]?.stopping = true
        kill(pid, SIGQUIT)
    }

    /// "total processes": this generation's workers and, after a reload,
    /// the previous generation's that still finish their requests.
    func publishTotal() {
        master.scoreboard.setTotal(pool: index, children.count + master.oldWorkers(in: index))
    }

    /// How many workers the pool starts with (what a reload waits for).
    var startTarget: Int {
        switch config.pm {
        case .static: config.maxChildren
        case .dynamic: min(config.startServers, config.maxChildren)
        case .ondemand: 0
        }
    }

    /// This generation's workers that are ready (their app accepts).
    var newGenerationReady: Int {
        master.scoreboard.readyWorkers(pool: index, generation: master.generation)
    }

    /// While the previous generation still serves this pool after a reload,
    /// new workers start at most `rolloutConcurrency` at a time: starting
    /// them all at once (fork, exec, PHP's start-up, for every worker) took
    /// the CPU from the requests being served and delayed them by up to
    /// 250 ms on 2 cores (bench/reload, docs/architecture.md). nil: no limit.
    private var rolloutRoom: Int? {
        guard master.oldGeneration?.isServing(pool: index) == true else { return nil }
        let starting = children.count - newGenerationReady
        return max(0, Self.rolloutConcurrency - starting)
    }

    /// One fewer than the CPUs, at least one.
    static let rolloutConcurrency = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) - 1)

    // MARK: exits

    /// Whether `pid` is one of this pool's workers.
    func owns(_ pid: Int32) -> Bool { children[pid] != nil }

    /// A worker exited: free its slot, log it like php-fpm, and start a
    /// replacement if the pool needs one (after the back-off if it died young).
    func childExited(_ pid: Int32, status raw: Int32) {
        guard let child = children.removeValue(forKey: pid) else { return }
        master.scoreboard.releaseSlot(child.slot)
        publishTotal()
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
        if status.signal == SIGSEGV || status.signal == SIGBUS { master.processCrashed() }
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

    /// Asks every worker to stop; `graceful` lets requests finish. Workers
    /// stopped gracefully while the master runs are replaced as they exit.
    func signalChildren(_ sig: Int32) {
        for pid in children.keys { kill(pid, sig) }
    }

    func stopRespawning() {
        respawnTimer.stop()
        tokenTimer.stop()
        topUpTimer.stop()
        setQueueWatch(false)
    }

    func closeListeners() {
        eventWatcher.stop()
        FD.close(events.read)
        FD.close(events.write)
        Listeners.close(listeners)
        Listeners.unlinkPaths(listeners)
    }
}
