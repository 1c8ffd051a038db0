import DroverCore
import Glibc

/// The workers a re-executed master inherits (design §7). The master before
/// the exec forked them; they are still this process's children and still
/// serve. They are retired pool by pool — SIGQUIT: finish the request in
/// hand, then exit — as soon as the pool's new generation is ready, so the
/// pool never has nobody accepting. A pool the new configuration dropped is
/// retired once its accept queue is empty (its socket path is already gone,
/// so nothing new arrives). `readyWait` bounds the wait for either, and
/// process_control_timeout bounds how long a retired worker may take.
final class OldGeneration {
    struct Worker {
        var slot: Int
        var pool: Int
        var generation: UInt32
    }

    /// Longest wait for a pool's new generation (or for a dropped pool's
    /// queue to empty) before the old workers are retired anyway.
    static let readyWait: Int64 = 5_000_000

    private(set) var workers: [Int32: Worker] = [:]
    /// Sockets no pool of the new configuration took over, by the pool
    /// record that had them; the master closes its copy when that pool retires.
    private(set) var orphans: [Int: [Handoff.Listener]] = [:]
    /// Pool records whose old workers have been told to stop, and when.
    private(set) var retiredAt: [Int: Int64] = [:]
    /// The last signal process_control_timeout sent each overdue worker.
    private var escalated: [Int32: Int32] = [:]
    let adoptedAt: Int64

    init(workers live: [LiveWorker], orphans: [Handoff.Listener], now: Int64) {
        for w in live { workers[w.pid] = Worker(slot: w.slot, pool: w.pool, generation: w.generation) }
        for o in orphans { self.orphans[o.pool ?? -1, default: []].append(o) }
        adoptedAt = now
    }

    var isEmpty: Bool { workers.isEmpty && orphans.isEmpty }

    /// The pool records that still have old workers or orphaned sockets.
    var pools: Set<Int> { Set(workers.values.map(\.pool)).union(orphans.keys) }

    func count(pool: Int) -> Int { workers.values.filter { $0.pool == pool }.count }

    func owns(_ pid: Int32) -> Bool { workers[pid] != nil }

    /// Forgets an old worker that exited; nil when `pid` is not one.
    func exited(_ pid: Int32) -> Worker? { workers.removeValue(forKey: pid) }

    /// Whether every pool has been told to stop (the new generation serves).
    var allRetired: Bool { pools.allSatisfy { retiredAt[$0] != nil } }

    /// The pools to retire now. `newGenerationReady(pool)` is nil for a pool
    /// the configuration dropped, else whether its new workers are ready.
    func poolsToRetire(now: Int64, newGenerationReady: (Int) -> Bool?) -> [Int] {
        pools.filter { pool in
            guard retiredAt[pool] == nil else { return false }
            // Nobody is left to take what waits in an orphaned socket.
            if now - adoptedAt >= Self.readyWait || count(pool: pool) == 0 { return true }
            let ready = newGenerationReady(pool) ?? true
            let queued = ListenQueue.total(of: (orphans[pool] ?? []).map(\.fd)).waiting
            return ready && queued == 0
        }.sorted()
    }

    /// Marks `pool` retired and returns its workers' pids and its orphaned
    /// sockets (which the caller signals and closes).
    func retire(_ pool: Int, now: Int64) -> (pids: [Int32], sockets: [Handoff.Listener]) {
        retiredAt[pool] = now
        let sockets = orphans.removeValue(forKey: pool) ?? []
        return (workers.filter { $0.value.pool == pool }.map(\.key), sockets)
    }

    /// process_control_timeout (seconds, 0: none) after a pool was retired,
    /// its remaining old workers get SIGTERM, and one second later SIGKILL.
    /// Returns the signals to send now.
    func overdue(now: Int64, timeout: Double) -> [(pid: Int32, signal: Int32)] {
        guard timeout > 0 else { return [] }
        var result: [(Int32, Int32)] = []
        for (pid, w) in workers {
            guard let since = retiredAt[w.pool] else { continue }
            let late = now - since - Int64(timeout * 1e6)
            let next: Int32? = switch escalated[pid] {
            case nil where late >= 0: SIGTERM
            case SIGTERM where late >= 1_000_000: SIGKILL
            default: nil
            }
            if let next {
                escalated[pid] = next
                result.append((pid, next))
            }
        }
        return result
    }

    /// Signals every old worker (a stop of the whole master).
    func signalAll(_ sig: Int32) {
        for pid in workers.keys { kill(pid, sig) }
    }

    /// Every orphaned socket not yet closed.
    var openOrphans: [Handoff.Listener] { orphans.values.flatMap { $0 } }

    /// Every orphaned socket not yet closed, forgotten here (at stop).
    func takeOrphans() -> [Handoff.Listener] {
        defer { orphans = [:] }
        return openOrphans
    }
}
