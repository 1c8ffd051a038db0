import CDroverSys
import DroverConfig
import DroverCore
import Glibc

/// The worker's app process: started with a private listening socket on fd 0
/// (FCGI_LISTENSOCK_FILENO), reached over one kept-alive connection.
final class App {
    /// php-cgi exits by itself after PHP_FCGI_MAX_REQUESTS (default 500) and
    /// forks its own children when PHP_FCGI_CHILDREN is set; the worker owns
    /// both decisions, so they are fixed in the app's environment.
    static func isPHPCGI(_ program: String) -> Bool {
        let base = program.split(separator: "/").last.map(String.init) ?? program
        return base.hasPrefix("php-cgi")
    }

    private let launch: WorkerLaunch
    let socketPath: String
    private(set) var pid: Int32 = 0
    private(set) var startedAt: Int64 = 0
    /// Requests sent to this app instance.
    var requests = 0
    /// False once this app was seen closing a connection after answering a
    /// request on it (it ignores FCGI_KEEP_CONN): then each request gets a
    /// fresh connection, closed after END_REQUEST, so no request is written
    /// into a closing one.
    private(set) var keepsConnections = true
    /// Requests answered on the current connection.
    private var answeredOnConnection = 0
    /// The connection to the app, or -1.
    private(set) var fd: Int32 = -1
    /// `fd` was opened by start() and not yet handed out by connect().
    private var freshConnection = false
    private let argv: [String]
    private let envp: [String]
    /// The app's CPU time (its CPU clock, at the start and the end of each
    /// request) and memory (/proc/PID/statm, at the end): "last request cpu"
    /// and "last request memory".
    private var usage: ProcessUsage?
    /// catch_workers_output: the pipes of the app's stdout and stderr.
    let output: AppOutput?
    private var lastCPUMicros: Int64 = 0

    /// The app could not be started (its program, its chroot): the worker
    /// exits with WorkerExit.appStartFailed and the master backs off.
    struct StartFailure: Error, CustomStringConvertible {
        var error: SystemError
        var description: String { error.description }
    }

    init(launch: WorkerLaunch) throws {
        self.launch = launch
        socketPath = "\(launch.appSocketDirectory)/\(launch.slot).sock"
        (argv, envp) = try Self.commandLine(for: launch.pool, environment: launch.environment)
        output = launch.pool.catchWorkersOutput ? AppOutput(channel: launch.errorLog.channel, poolIndex: launch.poolIndex) : nil
    }

    /// The app's argv and environment from the pool's configuration.
    static func commandLine(for pool: PoolConfig, environment: [String: String]) throws -> ([String], [String]) {
        var argv = pool.command.isEmpty ? ["php-cgi"] : pool.command
        // Under chroot the program is a file inside the chroot, which only
        // the spawned child sees: it looks the name up there (start()).
        if pool.chroot == nil {
            guard let program = Environment.findExecutable(argv[0], path: environment["PATH"]) else {
                throw StartFailure(error: SystemError("cannot find \(argv[0]) on PATH; execve()", errno: ENOENT))
            }
            argv[0] = program
        }
        let php = isPHPCGI(argv[0])
        if php {
            // -d name=value for php_value/php_flag/php_admin_*, php-fpm's order.
            let settings = pool.phpSettings.flatMap { ["-d", "\($0.name)=\($0.value)"] }
            argv.insert(contentsOf: settings, at: 1)
        }
        var env = pool.clearEnv ? [:] : environment
        for entry in pool.env { env[entry.name] = entry.value }
        if php {
            env["PHP_FCGI_CHILDREN"] = nil
            // pm.max_requests is the one limit: php-cgi's own would end
            // the app behind the worker's back, mid-way through its count.
            env["PHP_FCGI_MAX_REQUESTS"] = "0"
        }
        return (argv, env.map { "\($0.key)=\($0.value)" }.sorted())
    }

    var isRunning: Bool { pid > 0 }

    /// Starts the app. Throws when the program cannot be executed.
    func start() throws {
        precondition(pid == 0)
        closeConnection()
        unlink(socketPath)
        let old = umask(0o077)
        let listenFD = drover_unix_listen(socketPath, 128)
        umask(old)
        if listenFD < 0 { throw SystemError("bind(\(socketPath))") }
        defer { FD.close(listenFD) }
        let writeEnds = try output?.makePipes()
        defer {
            if let writeEnds {
                FD.close(writeEnds.stdout)
                FD.close(writeEnds.stderr)
            }
        }
        let pool = launch.pool
        // A bare name under chroot is looked up on PATH inside the chroot.
        let searchPath = pool.chroot != nil && !argv[0].contains("/")
            ? launch.environment["PATH"] ?? Environment.defaultSearchPath : nil
        var error: Int32 = 0
        var step: Int32 = 0
        let child = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnv in
                withOptionalCString(pool.chdir) { cDir in
                    withOptionalCString(pool.chroot) { cRoot in
                        withOptionalCString(searchPath) { cSearch in
                            var request = drover_spawn_request()
                            request.path = UnsafePointer(cArgv[0]!)
                            request.argv = cArgv
                            request.envp = cEnv
                            request.fd0 = listenFD
                            request.fd1 = writeEnds?.stdout ?? -1
                            request.fd2 = writeEnds?.stderr ?? -1
                            request.deathsig = SIGTERM
                            request.new_process_group = 1
                            request.chdir = cDir
                            request.chroot = cRoot
                            request.search_path = cSearch
                            return drover_spawn(&request, &error, &step)
                        }
                    }
                }
            }
        }
        if child < 0 { throw SystemError("fork()", errno: error) }
        if error != 0 {
            var status: Int32 = 0
            waitpid(child, &status, 0)
            throw StartFailure(error: spawnFailure(step: step, errno: error))
        }
        pid = child
        output?.started(pid: child)
        usage = ProcessUsage(pid: child)
        startedAt = Clock.monotonicMicros()
        requests = 0
        keepsConnections = true
        awaitFirstAccept(listenFD)
    }

    /// Longest wait for a new app to accept its first connection (µs).
    static let startWait: Int64 = 1_000_000

    /// Waits until the app takes a first connection off its socket, at most
    /// `startWait`: php-cgi, for one, accepts only once PHP has started, so
    /// the worker counts as ready (and a reload retires the old generation)
    /// only when its app really serves, not while the first request would
    /// still wait for PHP to start. The connection is kept for that request.
    private func awaitFirstAccept(_ listenFD: Int32) {
        guard connect() != nil else { return }
        freshConnection = true
        let deadline = Clock.monotonicMicros() + Self.startWait
        while Clock.monotonicMicros() < deadline {
            guard let queue = ListenQueue.read(listenFD), queue.waiting > 0 else { return }
            // Died meanwhile: left unreaped (WNOWAIT) for the worker's SIGCHLD handling.
            var info = siginfo_t()
            if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info._sifields._sigchld.si_pid == pid { return }
            usleep(1_000)
        }
    }

    /// What failed in the spawned child, for the error log.
    private func spawnFailure(step: Int32, errno: Int32) -> SystemError {
        let pool = launch.pool
        let inside = pool.chroot.map { " inside the chroot \($0)" } ?? ""
        switch UInt32(bitPattern: step) {
        case DROVER_SPAWN_CHROOT.rawValue:
            let hint = errno == EPERM ? " (only root, or a process with CAP_SYS_CHROOT, may chroot)" : ""
            return SystemError("chroot(\(pool.chroot ?? "")) for the app\(hint)", errno: errno)
        case DROVER_SPAWN_CHDIR.rawValue:
            return SystemError("chdir(\(pool.chdir ?? "/"))\(inside)", errno: errno)
        case DROVER_SPAWN_SETUP.rawValue:
            return SystemError("preparing the app's process", errno: errno)
        default:
            return SystemError("execve(\(argv[0]))\(inside)", errno: errno)
        }
    }

    /// Connects if not connected; returns whether a new connection was made,
    /// or nil if the app is unreachable.
    func connect() -> Bool? {
        if fd >= 0 {
            // The connection made while the app started is new to the caller.
            defer { freshConnection = false }
            return freshConnection
        }
        // A blocking socket (every other call on it passes MSG_DONTWAIT), so
        // the relay can wait for the app's answer in one recv(2) instead of
        // poll(2) + read(2); SO_RCVTIMEO bounds that wait so signals and the
        // client are looked at again.
        guard let c = try? Sockets.connectUnix(socketPath, nonBlocking: false) else { return nil }
        Sockets.setReceiveTimeout(c, microseconds: Self.answerWait)
        fd = c
        return true
    }

    /// How long one blocking wait for the app's answer lasts (µs).
    static let answerWait: Int64 = 500_000

    func requestStarted() {
        requests += 1
        lastCPUMicros = usage?.cpuMicros() ?? 0
    }

    func closeConnection() {
        if fd >= 0 { FD.close(fd) }
        fd = -1
        freshConnection = false
        answeredOnConnection = 0
    }

    /// The relay saw END_REQUEST for a request on the current connection.
    func requestAnswered() {
        if fd >= 0 { answeredOnConnection += 1 }
    }

    /// The app closed its connection between requests (EOF, or EPIPE on
    /// the next request's first write). Only closing it after exactly one
    /// answered request shows an app that ignores FCGI_KEEP_CONN. libfcgi,
    /// for one, drops a Unix connection that sends nothing within 2 s of
    /// its accept, which is what happens to the connection made while the
    /// app starts when the first request comes later; and an app may close
    /// a connection it kept for a while (a per-connection limit, a stray
    /// record). Taking either for "keeps no connections" cost a socket,
    /// connect and close on every request after (docs/performance.md).
    func connectionClosedByApp() {
        if answeredOnConnection == 1 { keepsConnections = false }
        closeConnection()
    }

    /// Called when the worker reaped the app; returns how long it ran (µs).
    /// The connection is left to its user: mid-request, the relay sees the
    /// app's end as EOF and answers the client.
    func exited() -> Int64 {
        pid = 0
        forgetUsage()
        return Clock.monotonicMicros() - startedAt
    }

    /// Stops the app: SIGTERM to its process group, SIGKILL after `grace`.
    /// Returns how it ended when that was not by these signals: an app that
    /// was already dying (a crash the relay noticed as a closed connection)
    /// keeps its own cause of death. nil when it was stopped.
    @discardableResult
    func stop(grace: Int64 = 2_000_000) -> ExitStatus? {
        closeConnection()
        guard pid > 0 else { return nil }
        let status = ChildStop.terminate(pid, group: true, grace: grace)
        pid = 0
        forgetUsage()
        return status.map(ExitStatus.init).flatMap { $0.signal == SIGTERM ? nil : $0 }
    }

    /// CPU (percent of `wallMicros`) since the request started, and the
    /// app's resident memory; nil when the kernel cannot tell.
    func usageSince(wallMicros: Int64) -> (cpu: Double, memory: UInt64)? {
        guard let sample = usage?.sample() else { return nil }
        return (ProcessUsage.cpuPercent(cpuMicros: sample.cpuMicros - lastCPUMicros, wallMicros: wallMicros),
                sample.rssBytes)
    }

    private func forgetUsage() {
        usage?.close()
        usage = nil
    }
}
