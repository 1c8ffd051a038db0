import CDroverSys
import CLibuv
import DroverConfig
import DroverCore
import Glibc

// The agent process (design §5–6): the only writer of log files, and the
// home of the status server and the control socket. The master forks it and
// calls `Agent.run` in the child.
//
// Services — how the other parts of the agent start from here:
//
//   `AgentServices.all` (Services.swift) lists start hooks, each
//   `(AgentContext) throws -> AnyObject`: the HTTP status server, the
//   pm.status_listen responders and the control socket.
//
//   `run` calls every hook once, in order, after the loop, the log channel
//   watcher and the signal handlers are set up and the log files are open.
//   The returned object is kept alive in `context.services` for the life of
//   the process (a service holds its own UVPoll/UVTimer/... handles on
//   `context.loop`). A hook that throws is logged at ERROR
//   (`failed to start agent service: ...`) and the agent runs without it.
//   At exit (SIGTERM/SIGQUIT, master gone) the `context.onExit` closures
//   run in order before the process ends: a service that created a socket
//   file registers its unlink there.
//
//   Through `AgentContext` a service reaches the loop, what the master handed
//   over (`launch.config`, `launch.scoreboard`, `launch.masterPID`), the log
//   router (`log(_:_:)` for its own error-log lines, `reopenLogs()` for
//   `droverctl reopen`, `router.counts` for status) and `stop()`.

/// What a service started from `Agent.run` gets.
public final class AgentContext {
    public let loop: UVLoop
    public let launch: AgentLaunch
    public let router: LogRouter
    /// The objects the `Agent.services` hooks returned, kept alive here.
    public internal(set) var services: [AnyObject] = []
    /// Run in order when the agent exits (after the channel is drained).
    public var onExit: [() -> Void] = []
    /// Set by run(): drains the channel, runs `onExit` and exits 0.
    var shutdown: () -> Never = { _exit(0) }

    init(loop: UVLoop, launch: AgentLaunch, router: LogRouter) {
        self.loop = loop
        self.launch = launch
        self.router = router
    }

    public var config: Configuration { launch.config }
    public var scoreboard: Scoreboard { launch.scoreboard }

    /// A line in the error log, php-fpm's format, filtered by `log_level`.
    public func log(_ level: LogLevel, _ message: String) { router.log(level, message) }

    /// Reopens every log file (what SIGUSR1 does); false when one failed.
    @discardableResult
    public func reopenLogs() -> Bool { router.reopenAll() }

    /// Ends the agent as SIGTERM does: drain, `onExit`, exit 0.
    public func stop() -> Never { shutdown() }
}

public enum Agent {
    /// The libuv this binary runs with, for `drover -v`.
    public static var libuvVersion: String { String(cString: uv_version_string()) }

    /// Records routed per wake-up of the channel watcher at most; the rest
    /// waits one loop turn, so a flood of log records cannot starve the
    /// status server or the signal handlers on the same loop.
    static let maxRecordsPerWake = 1024
    /// How long the agent lets records collect after a batch (seconds).
    static let batchPause = 0.005
    /// Records routed at most when draining before exit.
    static let maxRecordsAtExit = 1_000_000

    /// The agent's main: never returns.
    public static func run(_ launch: AgentLaunch) -> Never {
        FD.closeAll(except: launch.keepFDs)
        setProcessTitle("drover: agent")
        // Normally done by drover_fork_child already; harmless twice.
        drover_reset_signals()
        // SIGINT/SIGHUP from a terminal reach the whole process group: the
        // master decides, and forwards what concerns the agent.
        signal(SIGINT, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGUSR2, SIG_IGN)
        signal(SIGPIPE, SIG_IGN)

        // The master configures every pool in the scoreboard before the agent
        // starts; a pool it does not know keeps its position.
        let records = launch.config.pools.enumerated().map { position, pool in
            launch.scoreboard.poolIndex(named: pool.name) ?? position
        }
        let router = LogRouter(config: launch.config, poolRecords: records, forceStderr: launch.forceStderr)
        let loop = UVLoop()
        let context = AgentContext(loop: loop, launch: launch, router: router)
        let runtime = Runtime(context)
        context.shutdown = { runtime.finish() }
        do {
            try runtime.start()
        } catch {
            router.log(.alert, "agent: \(error)")
            _exit(1)
        }
        for hook in AgentServices.all {
            do {
                context.services.append(try hook(context))
            } catch {
                router.log(.error, "failed to start agent service: \(error)")
            }
        }
        loop.run()
        // The loop only ends when every handle stopped: nothing left to do.
        runtime.finish()
    }

    /// `ps` shows the title (libuv rewrites argv in place; prctl name too).
    static func setProcessTitle(_ title: String) {
        _ = uv_setup_args(CommandLine.argc, CommandLine.unsafeArgv)
        _ = uv_set_process_title(title)
    }

    /// The handles of the running agent.
    final class Runtime {
        let context: AgentContext
        private var channelWatch: UVPoll?
        private var signals: [UVSignal] = []
        private var masterCheck: UVTimer?
        /// Restarts the channel watch after a pause (see `channelReadable`).
        private var pause: UVTimer?
        private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: LogChannel.maxRecord, alignment: 8)
        private var finishing = false
        /// The master is gone: the agent stays until its workers are.
        private var outliving = false
        private var exitHooksRun = false
        private var outliveTimer: UVTimer?
        /// Longest the agent outlives its master, waiting for workers that
        /// finish their requests (seconds).
        static let outliveLimit = 120.0

        init(_ context: AgentContext) { self.context = context }

        func start() throws {
            let loop = context.loop
            context.router.buffersWrites = true
            let watch = try UVPoll(loop, fd: context.launch.channel.receiveFD) { [unowned self] in
                self.channelReadable()
            }
            try watch.start()
            channelWatch = watch
            pause = try UVTimer(loop) { [unowned self] in
                self.drain(limit: Agent.maxRecordsPerWake)
                try? self.channelWatch?.start()
            }

            let reopen = try UVSignal(loop, signal: SIGUSR1) { [unowned self] in
                self.context.router.reopenAll()
            }
            try reopen.start()
            signals.append(reopen)
            // SIGTERM is also what PR_SET_PDEATHSIG sends when the master dies.
            let masterPID = context.launch.masterPID
            for sig in [SIGTERM, SIGQUIT] {
                let s = try UVSignal(loop, signal: sig) { [unowned self] in
                    if getppid() != masterPID { self.outliveMaster() } else { self.finish() }
                }
                try s.start()
                signals.append(s)
            }
            // Only the master and its workers send on the channel: without
            // our own copy of the send end, the channel reads end-of-file once
            // the last of them is gone.
            FD.close(context.launch.channel.sendFD)

            // This also covers a lost signal.
            let timer = try UVTimer(loop) { [unowned self] in
                if getppid() != masterPID { self.outliveMaster() }
            }
            timer.start(after: 1, repeat: 1)
            masterCheck = timer
            // Records that arrived before the loop runs.
            drain(limit: Agent.maxRecordsPerWake)
        }

        /// Records arrived. Woken for every record, the agent would cost a
        /// wake-up per request (and the worker's send a wake-up call); so
        /// after a batch it stops watching the channel for `batchPause`:
        /// records collect in the socket meanwhile, and the next batch is
        /// read and written with one write(2) per file. (Measured with
        /// bench/run --access-log: docs/performance.md.)
        func channelReadable() {
            guard drain(limit: Agent.maxRecordsPerWake) > 0, let pause else { return }
            channelWatch?.stop()
            pause.start(after: Agent.batchPause)
        }

        /// Routes waiting records until the channel is empty or `limit`
        /// records were routed, writes them out, and returns how many.
        @discardableResult
        func drain(limit: Int) -> Int {
            let fd = context.launch.channel.receiveFD
            var count = 0
            defer { context.router.flushAll() }
            while count < limit {
                switch FD.receive(fd, into: buffer) {
                case .bytes(let n):
                    context.router.route(record: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                    count += 1
                case .wouldBlock:
                    return count
                case .endOfFile:
                    // Every sender is gone (only possible once the master is).
                    if outliving && !finishing { finish() }
                    return count
                case .failed(let e):
                    context.router.log(.alert, "agent: recv() on the log channel: \(SystemError.message(e)) (\(e))")
                    if e == ENOMEM || e == ENOBUFS { return count }
                    // The channel is unusable: end, the master starts a new agent.
                    finish(status: 1)
                }
            }
            return count
        }

        /// The master died (killed: a stop would have stopped the agent
        /// last). Its workers finish their requests and exit (their
        /// PR_SET_PDEATHSIG is SIGQUIT), logging as they go: the agent keeps
        /// writing until the channel reads end-of-file, that is until the
        /// last of them is gone, at most `outliveLimit`; then it removes
        /// the apps' socket directory, which nobody else is left to remove.
        func outliveMaster() {
            guard !outliving else { return }
            outliving = true
            context.router.log(.alert, "the master (pid \(context.launch.masterPID)) is gone; its workers finish their requests, and the agent writes their logs until the last one exits")
            runExitHooks()      // no more status or control: nobody answers them
            if let limit = try? UVTimer(context.loop, handler: { [unowned self] in self.finish() }) {
                limit.start(after: Self.outliveLimit)
                outliveTimer = limit
            }
            drain(limit: Agent.maxRecordsPerWake)
        }

        private func runExitHooks() {
            guard !exitHooksRun else { return }
            exitHooksRun = true
            for hook in context.onExit { hook() }
        }

        /// Drains what is left (bounded: writers that never stop cannot
        /// keep the agent alive), writes unfinished lines, runs the
        /// services' exit hooks and exits with `status`.
        func finish(status: Int32 = 0) -> Never {
            if !finishing {
                finishing = true
                if status == 0 { drain(limit: Agent.maxRecordsAtExit) }
                context.router.flushPartials()
                runExitHooks()
                if outliving, let base = context.launch.appSocketBase { AppSocketDirectory.remove(base) }
            }
            _exit(status)
        }
    }
}
