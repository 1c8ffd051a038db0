import CDroverSys
import DroverConfig
import DroverCore
import FastCGI
import Glibc

/// A worker process: accepts on the pool's sockets, relays each request to
/// its own app, answers ping and status itself, and keeps its scoreboard slot
/// current. Single-threaded; one request at a time; idle kept-alive
/// connections wait in epoll beside the listening sockets, so they never pin
/// the worker.
public final class Worker {
    /// Entry point, called in the child right after the master's fork.
    public static func run(_ launch: WorkerLaunch) -> Never {
        let worker = Worker(launch)
        // _exit: stdio buffers inherited from the master must not be flushed twice.
        _exit(worker.main().rawValue)
    }

    let launch: WorkerLaunch
    let pool: PoolConfig
    let slot: SlotWriter
    let log: ErrorLog
    let allowedClients: AllowedClients
    var app: App!
    var epoll: Int32 = -1
    var signals: Int32 = -1
    var kept: [Int32: ClientConnection] = [:]
    /// One input and one output buffer serve every connection in turn.
    var clientBuffer = RecordBuffer()
    var appBuffer = RecordBuffer()
    var stopping: Stop?
    /// A request is being relayed: the relay owns the app connection.
    var inRequest = false
    /// Scratch space reused by every request, so the hot path allocates nothing.
    var params: [UInt8] = []
    var responseHead: [UInt8] = []
    /// The pool's access log, when it has one; `currentPeer` is %R.
    var accessLog: AccessLog?
    var currentPeer: [UInt8] = []
    let pollFDs = UnsafeMutablePointer<pollfd>.allocate(capacity: 5)
    private let eventTokens = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
    private let eventFlags = UnsafeMutablePointer<UInt32>.allocate(capacity: 64)
    /// ping.path and pm.status_path as bytes, compared with the request's.
    let pingPath: [UInt8]?
    let statusPath: [UInt8]?
    /// security.limit_extensions, for php-cgi pools that check it.
    let scriptGuard: ScriptGuard?
    /// How many idle kept-alive connections one worker holds at most; the
    /// oldest is closed beyond that.
    let maxKeptConnections = 64

    enum Stop { case graceful, fast }

    enum Token: UInt64 {
        case listen = 1, signal, app, client, output
        static func make(_ kind: Token, _ fd: Int32) -> UInt64 { kind.rawValue << 32 | UInt64(UInt32(bitPattern: fd)) }
        static func split(_ token: UInt64) -> (Token, Int32) {
            (Token(rawValue: token >> 32) ?? .client, Int32(bitPattern: UInt32(truncatingIfNeeded: token)))
        }
    }

    init(_ launch: WorkerLaunch) {
        self.launch = launch
        pool = launch.pool
        slot = launch.scoreboard.writer(slot: launch.slot)
        log = launch.errorLog
        allowedClients = AllowedClients(launch.pool.listenAllowedClientRanges)
        pingPath = launch.pool.pingPath.map { Array($0.utf8) }
        statusPath = launch.pool.statusPath.map { Array($0.utf8) }
        scriptGuard = ScriptGuard(pool: launch.pool)
        params.reserveCapacity(8192)
        accessLog = AccessLog(pool: launch.pool, poolIndex: launch.poolIndex)
    }

    var poolTag: String { "[pool \(pool.name)]" }

    func main() -> WorkerExit {
        FD.closeAll(except: launch.keepFDs)
        do {
            try applyLimits()
            try dropPrivileges()
            try setUpEvents()
            app = try App(launch: launch)
            try app.start()
            slot.setApp(pid: app.pid)
            watchAppOutput()
        } catch {
            log.error("\(poolTag) worker \(getpid()): \(error)")
            slot.setState(.draining)
            return error is App.StartFailure ? .appStartFailed : .setupFailed
        }
        slot.setState(.idle)
        if slot.markReady() { PoolEvent.send(.ready, to: launch.eventFD) }
        let result = eventLoop()
        if stopping == .graceful && appFailureExit == nil { serveParkedBeforeExit() }
        shutDown()
        return result
    }

    // MARK: set-up

    private func applyLimits() throws {
        try ProcessLimits.apply(files: pool.rlimitFiles, core: pool.rlimitCore, priority: pool.processPriority)
        try ProcessLimits.apply(schedulingPolicy: pool.processSchedPolicy)
    }

    /// Becomes the pool's user. With `chroot` the worker keeps exactly one
    /// capability, CAP_SYS_CHROOT: it starts (and restarts) its app, and
    /// only a process with that capability may chroot(2) it. The worker
    /// itself stays outside the chroot (it reaches the app's socket and
    /// reads /proc), and the app's spawn gives the capability up before
    /// exec. Keeping root instead, or a way back to it, would leave root
    /// in the one process that parses network input.
    private func dropPrivileges() throws {
        guard let account = launch.runAs else { return }
        let keep: UInt32 = pool.chroot == nil ? 0 : 1 << UInt32(DROVER_CAP_SYS_CHROOT)
        let rc = account.name.withCString { drover_drop_privileges($0, account.uid, account.gid, keep) }
        if rc != 0 {
            throw SystemError("set user \(account.name)" + (keep == 0 ? "" : " keeping CAP_SYS_CHROOT for chroot"))
        }
        if pool.processDumpable { drover_set_dumpable(1) }
    }

    private func setUpEvents() throws {
        signal(SIGPIPE, SIG_IGN)
        // SIGINT/SIGHUP from a terminal reach the whole process group: the
        // master decides what happens, so the worker only swallows them.
        let watched: [Int32] = [SIGCHLD, SIGTERM, SIGQUIT, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, 0]
        signals = watched.withUnsafeBufferPointer { drover_signalfd_open($0.baseAddress) }
        if signals < 0 { throw SystemError("signalfd()") }
        epoll = drover_epoll_create()
        if epoll < 0 { throw SystemError("epoll_create1()") }
        try watch(signals, .signal, events: UInt32(DROVER_EPOLLIN))
        for fd in launch.listenFDs {
            // EPOLLEXCLUSIVE: one idle worker wakes per connection, not all.
            try watch(fd, .listen, events: UInt32(DROVER_EPOLLIN) | UInt32(DROVER_EPOLLEXCLUSIVE))
        }
    }

    func watch(_ fd: Int32, _ kind: Token, events: UInt32) throws {
        if drover_epoll_add(epoll, fd, events, Token.make(kind, fd)) != 0 { throw SystemError("epoll_ctl(ADD)") }
    }


    // MARK: the idle loop

    private func eventLoop() -> WorkerExit {
        while stopping == nil {
            let n = Int(drover_epoll_wait(epoll, eventTokens, eventFlags, 64, silentConnectionWait()))
            if n < 0 {
                if errno == EINTR { continue }
                log.error("\(poolTag) worker \(getpid()): epoll_wait(): \(SystemError.message(errno))")
                return .setupFailed
            }
            // Signals and the app connection first: an app that closed its
            // kept connection is noticed before a request is sent on it.
            for i in 0..<n {
                let (kind, fd) = Token.split(eventTokens[i])
                if let exit = handleHousekeeping(kind, fd) { return exit }
            }
            // Then accept, before serving kept connections: a connection
            // taken off the queue is one no other worker will be woken for.
            // Even when told to stop gracefully in this same batch: with
            // EPOLLEXCLUSIVE the kernel woke this worker alone for that
            // connection, and leaving without it would strand it in the
            // queue until the next connection wakes someone else.
            for i in 0..<n where stopping != .fast && appFailureExit == nil {
                let (kind, fd) = Token.split(eventTokens[i])
                // One connection per wake-up: trying accept4 again before
                // epoll_wait was measured to fail with EAGAIN half the time
                // under load, and epoll_wait does not sleep when another
                // connection is already queued (docs/performance.md).
                if kind == .listen { acceptOne(fd) }
            }
            for i in 0..<n where stopping == nil && appFailureExit == nil {
                let (kind, fd) = Token.split(eventTokens[i])
                if kind == .client, let conn = kept[fd] { serveAndPark(conn) }
            }
            if let exit = appFailureExit { return exit }
            closeSilentConnections()
        }
        return .normal
    }

    /// How long a graceful stop waits for the first request of connections
    /// it parked (nginx sends at once; this is for clients a little slower).
    static let parkedGrace: Int64 = 1_000_000

    /// A graceful stop fails nothing the worker took: a connection parked
    /// before its first request is still served if the request comes within
    /// `parkedGrace`. The listening sockets leave the epoll set first, so
    /// new connections go to other workers.
    private func serveParkedBeforeExit() {
        for fd in launch.listenFDs { drover_epoll_del(epoll, fd) }
        let until = Clock.monotonicMicros() + Self.parkedGrace
        while stopping == .graceful && appFailureExit == nil && kept.values.contains(where: { $0.requestsServed == 0 }) {
            let left = until - Clock.monotonicMicros()
            guard left > 0 else { return }
            let n = Int(drover_epoll_wait(epoll, eventTokens, eventFlags, 64, Int32(clamping: left / 1000 + 1)))
            if n < 0 && errno != EINTR { return }
            for i in 0..<max(n, 0) {
                let (kind, fd) = Token.split(eventTokens[i])
                _ = handleHousekeeping(kind, fd)
                if kind == .client, let conn = kept[fd], conn.requestsServed == 0, stopping == .graceful { serveAndPark(conn) }
            }
        }
    }

    /// epoll_wait's timeout (ms): until the first parked new connection
    /// runs out of time to send its request, or -1.
    private func silentConnectionWait() -> Int32 {
        guard let first = kept.values.lazy.filter({ $0.requestsServed == 0 }).map(\.firstRecordBy).min() else { return -1 }
        return Int32(clamping: max(0, (first - Clock.monotonicMicros()) / 1000 + 1))
    }

    /// Signals, the app's connection and its output pipes, between
    /// requests; returns an exit status when the worker must leave at once.
    private func handleHousekeeping(_ kind: Token, _ fd: Int32) -> WorkerExit? {
        switch kind {
        case .signal:
            return handleSignals()
        case .app where app.fd == fd:
            // Data or EOF from the app between requests: it closed the
            // connection (or broke the protocol); the next request reconnects.
            app.connectionClosedByApp()
        case .output:
            app.output?.drain(fd)
        default:
            break
        }
        return nil
    }

    private func closeSilentConnections() {
        guard !kept.isEmpty else { return }
        let now = Clock.monotonicMicros()
        for conn in kept.values where conn.silentTooLong(now: now) {
            logSilentConnection()
            kept.removeValue(forKey: conn.fd)
            conn.close()
        }
    }

    func logSilentConnection() {
        log.warning("\(poolTag) worker \(getpid()): closing a connection that sent no complete record in \(Self.firstRecordTimeout / 1_000_000) s")
    }

    /// Accepts and serves one connection, if one is waiting (another worker
    /// woken for the same connection may have taken it).
    private func acceptOne(_ listenFD: Int32) {
        guard let (fd, peer) = Sockets.accept(listenFD) else { return }
        slot.countAcceptedConnection()
        guard allowedClients.allows(peer) else {
            log.error("\(poolTag) Connection disallowed: IP address '\(peer)' has been dropped.")
            FD.close(fd)
            return
        }
        serveAndPark(ClientConnection(fd: fd, peer: peer, firstRecordBy: Clock.monotonicMicros() + Self.firstRecordTimeout))
    }

    /// Serves a connection until it is idle, then keeps or closes it.
    private func serveAndPark(_ conn: ClientConnection) {
        // Stopping gracefully, a connection still waiting for its first
        // request stays parked: serveParkedBeforeExit serves it.
        guard serve(conn), stopping == nil || (stopping == .graceful && conn.requestsServed == 0) else {
            // close(2) also takes it out of the epoll set.
            kept.removeValue(forKey: conn.fd)
            conn.close()
            return
        }
        conn.leftover = clientBuffer.unexamined
        conn.idleSince = Clock.monotonicMicros()
        if conn.registered { return }
        if kept.count >= maxKeptConnections, let oldest = kept.values.min(by: { $0.idleSince < $1.idleSince }) {
            kept.removeValue(forKey: oldest.fd)
            oldest.close()
        }
        if (try? watch(conn.fd, .client, events: UInt32(DROVER_EPOLLIN) | UInt32(DROVER_EPOLLRDHUP))) != nil {
            conn.registered = true
            kept[conn.fd] = conn
        } else {
            conn.close()
        }
    }

    // MARK: signals and the app's life

    /// Set when the app died in a way the master should back off from.
    var appFailureExit: WorkerExit?

    /// Reads pending signals; returns an exit status when the worker must
    /// leave at once.
    func handleSignals() -> WorkerExit? {
        while true {
            let sig = drover_signalfd_read(signals)
            if sig <= 0 { break }
            switch sig {
            case SIGCHLD: reapApp()
            case SIGTERM: stopping = .fast
            case SIGQUIT: if stopping == nil { stopping = .graceful }
            default: break
            }
        }
        return stopping == .fast ? .normal : appFailureExit
    }

    /// Reaps the app if it exited, logs how, and starts a new one.
    func reapApp() {
        guard app.pid > 0 else { return }
        var status: Int32 = 0
        let pid = app.pid
        guard waitpid(pid, &status, WNOHANG) == pid else { return }
        let served = app.requests
        let ran = app.exited()
        slot.setApp(pid: 0)
        let how = ExitStatus(status)
        let seconds = ExitStatus.seconds(ran)
        if !inRequest { app.closeConnection() }
        if stopping != nil { return }
        // Not asked to stop (stop() reaps the app itself): a crash, even
        // with exit code 0, since an app is meant to run until told.
        log.warning("\(poolTag) app \(pid) of worker \(getpid()) \(how) after \(seconds) seconds from start")
        // Died young without serving anything: a crash loop in the making.
        // The master owns the back-off (and counts the crash when this
        // worker exits), so hand the decision to it.
        if ran < 1_000_000 && served == 0 {
            noteAppCrash(how, counted: true)
            appFailureExit = .appDiedYoung
            return
        }
        noteAppCrash(how)
        // Mid-request the relay answers the client first, then restarts it.
        if !inRequest { startApp() }
    }

    /// Accounts for an app that died without being asked: the pool's crash
    /// count (unless the master will count this worker's exit instead), and
    /// SIGSEGV/SIGBUS for emergency_restart_threshold.
    func noteAppCrash(_ how: ExitStatus, counted: Bool = false) {
        if !counted { slot.countCrash() }
        if how.signal == SIGSEGV || how.signal == SIGBUS { PoolEvent.send(.appCrashed, to: launch.eventFD) }
    }

    /// Starts a new app; on failure logs it, marks the worker for exit (the
    /// master backs off) and returns the reason.
    @discardableResult
    func startApp() -> String? {
        do {
            try app.start()
            slot.setApp(pid: app.pid)
            watchAppOutput()
            return nil
        } catch {
            log.error("\(poolTag) worker \(getpid()): \(error)")
            appFailureExit = .appStartFailed
            return "\(error)"
        }
    }

    /// The app's output pipes join the epoll set (close(2) takes them out).
    private func watchAppOutput() {
        for fd in app.output?.fds ?? [] where fd >= 0 {
            try? watch(fd, .output, events: UInt32(DROVER_EPOLLIN))
        }
    }

    private func shutDown() {
        slot.setState(.draining)
        for conn in kept.values { conn.close() }
        kept.removeAll()
        app?.stop()
        app?.output?.close()
        unlink(app?.socketPath ?? "")
    }
}

