import DroverCore
import Glibc

/// The workers a re-executed master inherits (design §7). The master before
/// the exec forked them; they are still this process's children and still
/// serve. They are retired — SIGQUIT: finish the request in hand, then exit
/// — one for each new worker that is ready, idle ones first, so the pool
/// never has fewer workers accepting than it had. A pool the configuration
/// dropped is retired once its accept queue is empty (its socket path is
/// already gone, so nothing new arrives there). When the new generation
/// makes no progress for `readyWait`, whatever is left is retired anyway;
/// process_control_timeout then bounds how long a retired worker may take.
final class OldGeneration {
    struct Worker {
        var slot: Int
        var pool: Int
        var generation: UInt32
        /// When it was told to stop (SIGQUIT).
        var retiredAt: Int64?
        /// The last signal process_control_timeout sent it.
        var escalated: Int32?
    }

    /// What a kept pool's new generation looks like.
    struct Progress {
        /// Workers the new generation starts with (static: max_children).
        var target: Int
        /// New workers ready now.
        var ready: Int
    }

    /// Longest time without a new worker becoming ready (or, for a dropped
    /// pool, without its queue emptying) before the rest is retired anyway.
    static let readyWait: Int64 = 5_000_000

    private(set) var workers: [Int32: Worker] = [:]
    /// Sockets no pool of the new configuration took over, by the pool
    /// record that had them; closed once that pool's last old worker retires.
    private(set) var orphans: [Int: [Handoff.Listener]] = [:]
    /// Per pool: the new workers ready at the last step, and since when.
    private var progress: [Int: (ready: Int, since: Int64)] = [:]
    let adoptedAt: Int64

    init(workers live: [LiveWorker], orphans: [Handoff.Listener], now: Int64) {
        for w in live { workers[w.pid] = Worker(slot: w.slot, pool: w.pool, generation: w.generation) }
        for o in orphans { self.orphans[o.pool ?? -1, default: []].append(o) }
        adoptedAt = now
    }

    var isEmpty: Bool { workers.isEmpty && orphans.isEmpty }

    /// The pool records that still have old workers or orphaned sockets.
    var pools: Set<Int> { Set(workers.values.map(\.pool)).union(orphans.keys) }

    /// Old workers still alive in pool record `pool`.
    func count(pool: Int) -> Int { workers.values.filter { $0.pool == pool }.count }

    func owns(_ pid: Int32) -> Bool { workers[pid] != nil }

    /// Forgets an old worker that exited; nil when `pid` is not one.
    func exited(_ pid: Int32) -> Worker? { workers.removeValue(forKey: pid) }

    /// Whether every old worker has been told to stop (the new generation
    /// serves in its place).
    var allRetired: Bool { orphans.isEmpty && workers.values.allSatisfy { $0.retiredAt != nil } }

    /// Whether `pool` still has old workers serving (not yet retired).
    func isServing(pool: Int) -> Bool {
        workers.values.contains { $0.pool == pool && $0.retiredAt == nil }
    }

    /// The old workers to retire now, marked retired, and the orphaned
    /// sockets to close. `newGeneration(pool)` is nil for a pool the
    /// configuration dropped; `isIdle(pid)` says whether a worker is idle.
    func step(now: Int64, newGeneration: (Int) -> Progress?, isIdle: (Int32) -> Bool)
        -> (pids: [Int32], sockets: [Handoff.Listener]) {
        var pids: [Int32] = []
        var sockets: [Handoff.Listener] = []
        for pool in pools.sorted() {
            let serving = workers.filter { $0.value.pool == pool && $0.value.retiredAt == nil }
                .map(\.key).sorted { isIdle($0) && !isIdle($1) }
            let queued = ListenQueue.total(of: (orphans[pool] ?? []).map(\.fd)).waiting
            let new = newGeneration(pool)
            var stalled = now - adoptedAt >= Self.readyWait
            var keep: Int
            if let new {
                let last = progress[pool] ?? (0, adoptedAt)
                if new.ready > last.ready { progress[pool] = (new.ready, now) }
                stalled = now - (progress[pool]?.since ?? adoptedAt) >= Self.readyWait
                // One old worker stays while only it can take what waits in
                // the socket the pool used before.
                keep = max(new.target - new.ready, queued > 0 ? 1 : 0)
            } else {
                keep = queued > 0 ? serving.count : 0
            }
            if stalled { keep = 0 }
            let leaving = Array(serving.prefix(max(0, serving.count - keep)))
            for pid in leaving { workers[pid]?.retiredAt = now }
            pids += leaving
            if !isServing(pool: pool), let closing = orphans.removeValue(forKey: pool) { sockets += closing }
        }
        return (pids, sockets)
    }

    /// process_control_timeout (seconds, 0: none) after a worker was
    /// retired it gets SIGTERM, and one second later SIGKILL. Returns the
    /// signals to send now.
    func overdue(now: Int64, timeout: Double) -> [(pid: Int32, signal: Int32)] {
        guard timeout > 0 else { return [] }
        var result: [(pid: Int32, signal: Int32)] = []
        for (pid, w) in workers {
            guard let since = w.retiredAt else { continue }
            let late = now - since - Int64(timeout * 1e6)
            let next: Int32? = switch w.escalated {
            case nil where late >= 0: SIGTERM
            case SIGTERM where late >= 1_000_000: SIGKILL
            default: nil
            }
            if let next {
                workers[pid]?.escalated = next
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
