import CDroverSys
import DroverCore
import Glibc

/// php-fpm's slow log, for any app. php-fpm's master ptrace()s the PHP
/// process and walks its executor; an arbitrary FastCGI app has no such
/// stack, so an entry says what the kernel knows about the app (state,
/// wchan, current syscall, kernel stack) and, when
/// request_slowlog_trace_command is set, what a tracer such as
/// `py-spy dump --pid {pid}` or `gdb -batch -ex bt -p {pid}` prints:
///
///     [21-Nov-2026 12:09:26]  [pool www] pid 1234 (app 1235)
///     script_filename = /var/www/slow.php
///     request = GET /slow.php?x=1
///     elapsed = 1.003 s
///     app state = S (sleeping)
///     wchan = hrtimer_nanosleep
///     syscall = clock_nanosleep (230)
///     stack:
///     [<0>] hrtimer_nanosleep+0x74/0xf0
///     trace (py-spy dump --pid 1235):
///     ...output...
///     (blank line)
///
/// The timestamp is when the request started, as in php-fpm.
public enum SlowLog {
    /// The request being reported.
    public struct Request: Equatable, Sendable {
        public var pool: String
        public var workerPID: Int32
        public var appPID: Int32
        public var scriptFilename: String
        public var method: String
        /// REQUEST_URI, query string included.
        public var uri: String
        public var elapsedMicros: Int64
        public var startedAtRealtimeMicros: Int64
        /// The pool's position in the configuration (the agent's file for it).
        public var poolIndex: Int

        public init(pool: String, workerPID: Int32, appPID: Int32, scriptFilename: String, method: String,
                    uri: String, elapsedMicros: Int64, startedAtRealtimeMicros: Int64, poolIndex: Int = 0) {
            self.pool = pool
            self.poolIndex = poolIndex
            self.workerPID = workerPID
            self.appPID = appPID
            self.scriptFilename = scriptFilename
            self.method = method
            self.uri = uri
            self.elapsedMicros = elapsedMicros
            self.startedAtRealtimeMicros = startedAtRealtimeMicros
        }
    }

    /// Most of the trace command's output kept in an entry.
    public static let traceOutputCap = 64 * 1024
    /// The trace timeout used when the one given is not a positive number.
    public static let defaultTraceTimeout = 10.0

    // MARK: reporting

    /// Writes a slow-log entry for `r` without holding up the worker.
    ///
    /// The app's state is read here, in the worker (a few small /proc reads,
    /// tens of µs, less than the fork itself), because the worker is the
    /// app's parent: with Yama's relational ptrace scope (Ubuntu's default)
    /// only an ancestor may read /proc/APP/syscall and /proc/APP/stack, and
    /// the helper below is not one. Everything slow happens in a helper
    /// process, forked twice so the worker never has to reap it (it waits
    /// only for the intermediate, which exits at once): it runs the trace
    /// command (bounded by `traceTimeout` seconds), formats the entry and
    /// appends it to `path` with one write(2), so entries from several
    /// workers do not interleave.
    ///
    /// What the worker pays: the probe (≈45 µs in a debug build) and two
    /// forks, which cost in proportion to its resident memory (a double fork
    /// measured 0.3-0.4 ms from a small process, 1.2-1.6 ms with 20 MB
    /// resident, 4-8 ms from the debug XCTest process).
    ///
    /// The worker is single-threaded, so the Swift code the helper runs
    /// after fork cannot find a lock held by a thread that did not follow.
    /// The helper is reparented to init (or to a drover master running as
    /// PID 1, whose libev loop reaps any child).
    ///
    /// Failures (fork, open) go to `errorLog` when given. Returns false when
    /// no helper could be started.
    @discardableResult
    public static func report(_ r: Request, path: String, traceCommand: [String]?, traceTimeout: Double,
                              errorLog: ErrorLog? = nil) -> Bool {
        let probe = AppProbe.read(pid: r.appPID)
        let command = traceCommand.flatMap { $0.isEmpty ? nil : TraceResult.substitute($0, pid: r.appPID) }
        let timeout = traceTimeout.isFinite && traceTimeout > 0 ? traceTimeout : defaultTraceTimeout
        let tag = "[pool \(r.pool)] slowlog"

        let intermediate = drover_fork_child(0)
        if intermediate < 0 {
            errorLog?.error("\(tag): \(SystemError("fork()"))")
            return false
        }
        if intermediate == 0 {
            // Signals were reset by drover_fork_child; the helper inherits that.
            let helper = fork()
            if helper < 0 { errorLog?.error("\(tag): \(SystemError("fork()"))") }
            if helper != 0 { _exit(0) }
            runHelper(r, probe: probe, path: path, traceCommand: command, traceTimeout: timeout,
                      errorLog: errorLog, tag: tag)
            _exit(0)
        }
        var status: Int32 = 0
        while waitpid(intermediate, &status, 0) < 0 && errno == EINTR {}
        return true
    }

    /// The helper's work; never returns to the worker's code.
    private static func runHelper(_ r: Request, probe: AppProbe, path: String, traceCommand: [String]?,
                                  traceTimeout: Double, errorLog: ErrorLog?, tag: String) {
        // Hold none of the worker's fds (client and app connections, the
        // listening sockets): a connection the worker closes must close.
        FD.closeAll(except: [errorLog?.fd ?? -1, errorLog?.channel?.sendFD ?? -1])
        // A safety net: a helper stuck anywhere must not linger.
        alarm(UInt32(min(traceTimeout, 86_400).rounded(.up)) + 30)

        let trace = traceCommand.map { TraceResult.run($0, timeout: traceTimeout) }
        let entry = format(r, probe: probe, trace: trace)
        // Through the agent, the only writer of log files, when it runs.
        if let channel = errorLog?.channel {
            if !channel.send(LogRecordHeader(kind: .slow, pool: UInt16(clamping: r.poolIndex), pid: r.workerPID), entry) {
                errorLog?.error("\(tag): the log channel is full; entry dropped")
            }
            return
        }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        if fd < 0 {
            errorLog?.error("\(tag): unable to open slowlog: \(SystemError("open(\(path))"))")
            return
        }
        // One write(2): FD.writeAll only writes again after a short write.
        if !FD.writeAll(fd, entry) {
            errorLog?.error("\(tag): \(SystemError("write(\(path))"))")
        }
        FD.close(fd)
    }

    // MARK: formatting

    /// The entry for `r`, ending with a blank line. Pure: no I/O.
    public static func format(_ r: Request, probe: AppProbe, trace: TraceResult?) -> String {
        var s = "[\(ErrorLog.timestamp(r.startedAtRealtimeMicros))]  [pool \(oneLine(r.pool))] pid \(r.workerPID) (app \(r.appPID))\n"
        s += "script_filename = \(oneLine(r.scriptFilename))\n"
        s += "request = \(oneLine(r.method)) \(oneLine(r.uri))\n"
        s += "elapsed = \(milliseconds(r.elapsedMicros)) s\n"
        s += "app state = \(describeState(probe.state))\n"
        s += "wchan = \(describeWchan(probe.wchan))\n"
        s += "syscall = \(describeSyscall(probe.syscall))\n"
        switch probe.stack {
        case nil: s += "stack: (not readable)\n"
        case let stack? where stack.isEmpty: s += "stack: (empty)\n"
        case let stack?: s += "stack:\n" + withNewline(stack)
        }
        if let trace { s += format(trace) }
        s += "\n"
        return s
    }

    static func format(_ t: TraceResult) -> String {
        var s = "trace (\(oneLine(t.command.joined(separator: " ")))):"
        if let failure = t.failure { return s + " \(failure)\n" }
        s += "\n"
        s += t.output.isEmpty ? "(no output)\n" : withNewline(t.output)
        if t.truncated { s += "(output cut at \(traceOutputCap) bytes)\n" }
        if t.timedOut {
            s += "trace command timed out after \(seconds(t.timeout)) s\n"
        } else if let status = t.exitStatus, status != 0 {
            s += "trace command \(ExitStatus(status))\n"
        }
        return s
    }

    /// `1.003`: seconds with three decimals, rounded to the millisecond.
    static func milliseconds(_ micros: Int64) -> String {
        let ms = (max(micros, 0) + 500) / 1000
        let fraction = String(ms % 1000)
        return "\(ms / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }

    /// `0.5`, `2`: a timeout as given, without a trailing `.0`.
    static func seconds(_ value: Double) -> String {
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    static func describeState(_ state: Character?) -> String {
        guard let state else { return "(not readable)" }
        return stateNames[state].map { "\(state) (\($0))" } ?? String(state)
    }

    /// Task states as /proc/PID/status names them.
    static let stateNames: [Character: String] = [
        "R": "running", "S": "sleeping", "D": "disk sleep", "T": "stopped", "t": "tracing stop",
        "X": "dead", "Z": "zombie", "P": "parked", "I": "idle", "W": "waking", "K": "wakekill",
    ]

    static func describeWchan(_ wchan: String?) -> String {
        guard let wchan else { return "(not readable)" }
        // The kernel prints 0 for a running task (or one it will not show).
        return wchan.isEmpty || wchan == "0" ? "-" : oneLine(wchan)
    }

    /// /proc/PID/syscall: "NR arg1 ... sp pc" in a syscall, "-1 sp pc"
    /// when blocked outside one (a page fault), "running" on a CPU.
    static func describeSyscall(_ raw: String?) -> String {
        guard let raw else { return "(not readable)" }
        let first = raw.split(separator: " ", maxSplits: 1).first.map(String.init) ?? ""
        if first == "running" { return "running" }
        guard let nr = Int(first) else { return raw.isEmpty ? "(empty)" : oneLine(raw) }
        if nr < 0 { return "none (blocked outside a syscall)" }
        return syscallNames[nr].map { "\($0) (\(nr))" } ?? String(nr)
    }

    /// The calls a stuck request usually sits in, by this machine's numbers.
    static let syscallNames: [Int: String] = {
        #if arch(x86_64)
        return [0: "read", 1: "write", 7: "poll", 23: "select", 35: "nanosleep", 42: "connect", 43: "accept",
                44: "sendto", 45: "recvfrom", 46: "sendmsg", 47: "recvmsg", 61: "wait4", 202: "futex",
                230: "clock_nanosleep", 232: "epoll_wait", 270: "pselect6", 271: "ppoll", 281: "epoll_pwait",
                288: "accept4"]
        #elseif arch(arm64)
        // asm-generic numbering: no poll, select or epoll_wait.
        return [22: "epoll_pwait", 63: "read", 64: "write", 72: "pselect6", 73: "ppoll", 98: "futex",
                101: "nanosleep", 115: "clock_nanosleep", 202: "accept", 203: "connect", 206: "sendto",
                207: "recvfrom", 211: "sendmsg", 212: "recvmsg", 242: "accept4", 260: "wait4"]
        #else
        return [:]
        #endif
    }()

    /// Control characters in a one-line value (a hostile URI, a file name)
    /// must not start a fake entry.
    static func oneLine(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { return s }
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                let hex = String(scalar.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" : "") + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    static func withNewline(_ s: String) -> String { s.hasSuffix("\n") ? s : s + "\n" }

    // MARK: what the app is doing

    /// What the kernel says the app is doing; nil fields were not readable.
    public struct AppProbe: Equatable, Sendable {
        /// The state letter of /proc/PID/stat (R, S, D, T, Z, ...).
        public var state: Character?
        /// /proc/PID/wchan: the kernel function the task sleeps in, "0" if none.
        public var wchan: String?
        /// The first line of /proc/PID/syscall, as the kernel wrote it.
        public var syscall: String?
        /// /proc/PID/stack (needs CAP_SYS_ADMIN, so usually nil).
        public var stack: String?

        public init(state: Character?, wchan: String?, syscall: String?, stack: String?) {
            self.state = state
            self.wchan = wchan
            self.syscall = syscall
            self.stack = stack
        }

        public static func read(pid: Int32) -> AppProbe {
            let dir = "/proc/\(pid)/"
            return AppProbe(
                state: FD.readFile(dir + "stat", limit: 4096).flatMap(stateLetter),
                wchan: FD.readFile(dir + "wchan", limit: 256).map(text),
                syscall: FD.readFile(dir + "syscall", limit: 512).map { line(text($0)) },
                stack: FD.readFile(dir + "stack", limit: 16 * 1024).map(text))
        }

        /// The letter after the comm field, found from the last ')' since
        /// comm may itself hold spaces and parentheses.
        static func stateLetter(_ stat: [UInt8]) -> Character? {
            guard let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return nil }
            let c = stat[close + 2]
            guard (0x41...0x5a).contains(c) || (0x61...0x7a).contains(c) else { return nil }
            return Character(Unicode.Scalar(c))
        }

        static func text(_ bytes: [UInt8]) -> String {
            var s = String(decoding: bytes, as: UTF8.self)
            while s.hasSuffix("\n") || s.hasSuffix("\0") { s.removeLast() }
            return s
        }

        static func line(_ s: String) -> String {
            s.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        }
    }

    // MARK: the trace command

    /// What request_slowlog_trace_command printed.
    public struct TraceResult: Equatable, Sendable {
        /// The command run, `{pid}` replaced.
        public var command: [String]
        /// stdout and stderr together, at most `traceOutputCap` bytes.
        public var output: String
        /// More output was read and dropped.
        public var truncated: Bool
        /// Killed (SIGKILL, with its process group) at the timeout.
        public var timedOut: Bool
        /// The timeout applied, seconds.
        public var timeout: Double
        /// The wait(2) status, nil when it was not reaped (or not started).
        public var exitStatus: Int32?
        /// Why it could not be run at all.
        public var failure: String?

        public init(command: [String], output: String, truncated: Bool = false, timedOut: Bool = false,
                    timeout: Double, exitStatus: Int32? = 0, failure: String? = nil) {
            self.command = command
            self.output = output
            self.truncated = truncated
            self.timedOut = timedOut
            self.timeout = timeout
            self.exitStatus = exitStatus
            self.failure = failure
        }

        /// Replaces `{pid}` in every argument.
        public static func substitute(_ command: [String], pid: Int32) -> [String] {
            command.map { $0.contains("{pid}") ? $0.replacing("{pid}", with: String(pid)) : $0 }
        }

        /// Runs `command` (argv[0] looked up on PATH unless it has a slash)
        /// with stdin on /dev/null and stdout and stderr on one pipe, reads
        /// until EOF or `timeout` seconds, then kills it (and its process
        /// group) with SIGKILL and reaps it. Blocks for up to `timeout`:
        /// only the slow-log helper calls it.
        public static func run(_ command: [String], timeout: Double) -> TraceResult {
            var result = TraceResult(command: command, output: "", timeout: timeout, exitStatus: nil)
            guard let name = command.first, !name.isEmpty else {
                result.failure = "empty command"
                return result
            }
            guard let program = Environment.findExecutable(name) else {
                result.failure = "cannot find \(name) on PATH"
                return result
            }
            let pipe: (read: Int32, write: Int32)
            do { pipe = try FD.pipe() } catch {
                result.failure = "\(error)"
                return result
            }
            let deadline = Clock.monotonicMicros() + Int64(min(timeout, 86_400) * 1_000_000)
            var spawnError: Int32 = 0
            let pid = program.withCString { path in
                withCStrings(command) { argv in
                    var request = drover_spawn_request()
                    request.path = path
                    request.argv = argv
                    request.envp = UnsafePointer(environ)
                    request.fd0 = -1
                    request.fd1 = pipe.write
                    request.fd2 = pipe.write
                    request.deathsig = SIGKILL          // never outlive the helper
                    request.new_process_group = 1       // so a timeout kills its children too
                    return drover_spawn(&request, &spawnError, nil)
                }
            }
            FD.close(pipe.write)
            if pid < 0 {
                FD.close(pipe.read)
                result.failure = "\(SystemError("fork()", errno: spawnError))"
                return result
            }
            var status: Int32 = 0
            if spawnError != 0 {
                FD.close(pipe.read)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                result.failure = "\(SystemError("execve(\(program))", errno: spawnError))"
                return result
            }

            var output: [UInt8] = []
            output.reserveCapacity(4096)
            let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 1)
            defer { chunk.deallocate() }
            reading: while true {
                let left = deadline - Clock.monotonicMicros()
                if left <= 0 {
                    result.timedOut = true
                    break
                }
                var pfd = pollfd(fd: pipe.read, events: Int16(POLLIN), revents: 0)
                let ready = poll(&pfd, 1, Int32(min((left + 999) / 1000, 60_000)))
                if ready < 0 {
                    if errno == EINTR { continue }
                    break
                }
                if ready == 0 { continue }
                let n = Glibc.read(pipe.read, chunk.baseAddress, chunk.count)
                switch n {
                case 0: break reading
                case ..<0:
                    if errno == EINTR || errno == EAGAIN { continue }
                    break reading
                default:
                    // Past the cap, keep draining so it is not stuck on a full pipe.
                    let room = traceOutputCap - output.count
                    if room > 0 { output.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[..<min(n, room)])) }
                    if n > room { result.truncated = true }
                }
            }
            FD.close(pipe.read)

            // EOF: it normally exits now; give it until the deadline.
            var reaped = false
            while !result.timedOut {
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid {
                    reaped = true
                    break
                }
                if r < 0 && errno != EINTR { break }
                if Clock.monotonicMicros() >= deadline {
                    result.timedOut = true
                    break
                }
                usleep(2_000)
            }
            if !reaped {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            }
            result.exitStatus = reaped ? status : nil
            result.output = String(decoding: output, as: UTF8.self)
            return result
        }
    }
}
