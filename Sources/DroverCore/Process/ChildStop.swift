import Glibc

/// Stopping a child process the way every part of Drover does it: SIGTERM,
/// a grace period polled with waitpid, then SIGKILL. Used by a worker for
/// its app and by the master for the agent.
public enum ChildStop {
    /// Sends SIGTERM to `pid` (and to its process group when `group`), waits
    /// up to `grace` µs for it to exit, then SIGKILLs and reaps it. Returns
    /// the wait status when the child was reaped within the grace period
    /// (nil after SIGKILL, or when someone else had reaped it).
    @discardableResult
    public static func terminate(_ pid: Int32, group: Bool = false, grace: Int64, poll: UInt32 = 5_000) -> Int32? {
        if group { kill(-pid, SIGTERM) }
        kill(pid, SIGTERM)
        let deadline = Clock.monotonicMicros() + grace
        var status: Int32 = 0
        while Clock.monotonicMicros() < deadline {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return status }
            if r < 0 && errno == ECHILD { return nil }
            usleep(poll)
        }
        if group { kill(-pid, SIGKILL) }
        kill(pid, SIGKILL)
        waitpid(pid, &status, 0)
        return nil
    }
}
