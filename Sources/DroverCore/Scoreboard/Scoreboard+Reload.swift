import CDroverSys
import Glibc

/// A worker found in the scoreboard by a re-executed master (reload, design
/// §7): the master before it forked it, and it is still this process's child.
public struct LiveWorker: Sendable, Equatable {
    public var slot: Int
    public var pid: Int32
    public var pool: Int
    public var generation: UInt32

    public init(slot: Int, pid: Int32, pool: Int, generation: UInt32) {
        self.slot = slot
        self.pid = pid
        self.pool = pool
        self.generation = generation
    }
}

// What a reload needs beyond the master's everyday calls: the scoreboard
// outlives the master that created it, so the next one reads back which
// pools and workers exist, and frees the records of pools that are gone.
extension Scoreboard {
    /// The master generation: 1 at start, one more after each reload.
    public var generation: UInt32 {
        get { drover_atomic_load32(&header.pointee.generation) }
        set { drover_atomic_store32(&header.pointee.generation, newValue) }
    }

    /// Reloads the master refused (invalid configuration, a socket it could
    /// not open, a failed exec): `droverctl reload` compares it before and after.
    public var reloadRefusals: UInt32 {
        get { drover_atomic_load32(&header.pointee.reload_refusals) }
        set { drover_atomic_store32(&header.pointee.reload_refusals, newValue) }
    }

    /// The name of pool record `index` ("" when it is not in use).
    public func poolName(_ index: Int) -> String {
        var copy = drover_sb_pool()
        guard drover_sb_pool_read(pool(index), &copy) == 0, copy.in_use != 0 else { return "" }
        return Self.string(&copy.name)
    }

    /// Every slot that has a worker, whatever its generation.
    public func liveWorkers() -> [LiveWorker] {
        var result: [LiveWorker] = []
        for i in 0..<slotCapacity {
            var s = drover_sb_slot()
            guard drover_sb_slot_read(slot(i), &s) == 0, s.state != SlotState.free.rawValue, s.worker_pid > 0 else { continue }
            result.append(LiveWorker(slot: i, pid: s.worker_pid, pool: Int(s.pool_index), generation: s.generation))
        }
        return result
    }

    /// Workers of `generation` in pool `index` that have finished starting.
    public func readyWorkers(pool index: Int, generation: UInt32) -> Int {
        var count = 0
        for i in 0..<slotCapacity {
            var s = drover_sb_slot()
            guard drover_sb_slot_read(slot(i), &s) == 0, Int(s.pool_index) == index,
                  s.generation == generation, s.counted_ready != 0, s.worker_pid > 0 else { continue }
            count += 1
        }
        return count
    }

    /// Forgets a pool that the configuration no longer has, once its last
    /// worker is gone: the record (counters included) is cleared for reuse.
    public func releasePool(_ index: Int) {
        let p = pool(index)
        drover_seq_write_begin(&p.pointee.seq)
        let seq = p.pointee.seq
        memset(p, 0, MemoryLayout<drover_sb_pool>.size)
        p.pointee.seq = seq
        drover_seq_write_end(&p.pointee.seq)
    }

    /// Pool records not in use, lowest first.
    public var freePoolIndices: [Int] {
        (0..<poolCapacity).filter { drover_atomic_load32(&pool($0).pointee.in_use) == 0 }
    }

    /// Slots without a worker.
    public var freeSlotCount: Int {
        (0..<slotCapacity).filter { slotState($0) == .free }.count
    }
}
