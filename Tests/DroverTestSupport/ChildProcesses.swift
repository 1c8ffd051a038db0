import Glibc

/// Child processes started by a unit test (e.g. a `sleep` to probe through
/// /proc), killed and reaped by `killAll()` in the test's tearDown.
public final class ChildProcesses {
    public private(set) var pids: [pid_t] = []

    public init() {}

    /// Starts `args` with posix_spawn (it has exec'ed when this returns).
    public func spawn(_ args: [String]) throws -> pid_t {
        var pid: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let rc = posix_spawn(&pid, args[0], nil, nil, &argv, environ)
        guard rc == 0 else { throw SpawnError(program: args[0], errno: rc) }
        pids.append(pid)
        return pid
    }

    /// Forgets a child the test reaped itself.
    public func forget(_ pid: pid_t) { pids.removeAll { $0 == pid } }

    public func killAll() {
        for pid in pids {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        pids = []
    }

    public struct SpawnError: Error {
        public var program: String
        public var errno: Int32
    }
}
