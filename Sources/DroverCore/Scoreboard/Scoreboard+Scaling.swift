import CDroverSys
import Glibc

// What the master's scaling reads and writes (design §3). Workers keep two
// counters per pool current — `ready` (workers past start-up) and `active`
// (busy now) — so idle = ready - active is one subtraction away for both
// sides, without a scan of the slots on every request.

/// One pool's load as the master sees it when it decides to scale.
public struct PoolLoad: Sendable, Equatable {
    /// Workers past start-up (they accept connections).
    public var ready: Int
    /// Of those, busy with a request.
    public var active: Int
    public var idle: Int { max(0, ready - active) }
    public init(ready: Int, active: Int) {
        self.ready = ready
        self.active = active
    }
}

/// An idle worker, for choosing which one to stop.
public struct IdleWorker: Sendable, Equatable {
    public var slot: Int
    public var pid: Int32
    /// Realtime µs since when it has been idle.
    public var idleSince: Int64
}

extension Scoreboard {
    // MARK: master

    /// Sets the threshold below which a worker going busy wakes the master
    /// (0: never, for static pools).
    public func setNotifyBelow(pool index: Int, _ value: Int) {
        drover_atomic_store32(&pool(index).pointee.notify_below, UInt32(clamping: value))
    }

    /// The number of live workers, which workers compare with max_children
    /// before waking the master for nothing.
    public func setTotal(pool index: Int, _ value: Int) {
        drover_atomic_store32(&pool(index).pointee.total, UInt32(clamping: value))
    }

    public func load(pool index: Int) -> PoolLoad {
        let p = pool(index)
        return PoolLoad(ready: Int(drover_atomic_load32(&p.pointee.ready)),
                        active: Int(truncatingIfNeeded: drover_atomic_load64(&p.pointee.active)))
    }

    /// Records a sample of the pool's accept queue (the most seen is kept).
    public func recordListenQueue(pool index: Int, _ queue: ListenQueue) {
        let p = pool(index)
        drover_atomic_store32(&p.pointee.listen_queue, UInt32(clamping: queue.waiting))
        drover_atomic_store32(&p.pointee.listen_queue_len, UInt32(clamping: queue.capacity))
        drover_atomic_max32(&p.pointee.max_listen_queue, UInt32(clamping: queue.waiting))
    }

    /// The pool's idle workers, longest idle first.
    public func idleWorkers(pool index: Int) -> [IdleWorker] {
        var result: [IdleWorker] = []
        for i in 0..<slotCapacity {
            var s = drover_sb_slot()
            guard drover_sb_slot_read(slot(i), &s) == 0, Int(s.pool_index) == index,
                  s.state == SlotState.idle.rawValue, s.worker_pid > 0 else { continue }
            let since = s.requests == 0 ? s.started_at_us : s.accepted_at_us + s.duration_us
            result.append(IdleWorker(slot: i, pid: s.worker_pid, idleSince: since))
        }
        return result.sorted { $0.idleSince < $1.idleSince }
    }
}

extension SlotWriter {
    // MARK: worker

    /// The worker is up and accepts connections: it joins the pool's ready
    /// count (taken back by the master when the slot is released). Returns
    /// true when the master wants to hear about it.
    public func markReady() -> Bool {
        guard drover_atomic_load32(&slot.pointee.counted_ready) == 0 else { return false }
        drover_atomic_store32(&slot.pointee.counted_ready, 1)
        drover_atomic_add32(&pool.pointee.ready, 1)
        return drover_atomic_load32(&pool.pointee.notify_below) > 0
    }

    /// After `beginRequest`: whether the pool just ran short of idle workers
    /// and can still grow, so the master should be woken.
    public func poolRunsShort(active: UInt64) -> Bool {
        let below = drover_atomic_load32(&pool.pointee.notify_below)
        guard below > 0 else { return false }
        let ready = UInt64(drover_atomic_load32(&pool.pointee.ready))
        let idle = ready > active ? ready - active : 0
        return idle < UInt64(below)
            && drover_atomic_load32(&pool.pointee.total) < drover_atomic_load32(&pool.pointee.max_children)
    }
}
