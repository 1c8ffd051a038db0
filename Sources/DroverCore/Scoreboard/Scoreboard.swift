import CDroverSys
import Glibc

/// Slot states, as stored in shared memory.
public enum SlotState: UInt32, Sendable {
    case free = 0, starting, idle, readingHeaders, running, finishing, draining

    public var isBusy: Bool { self == .readingHeaders || self == .running || self == .finishing }

    /// php-fpm's spelling in status pages.
    public var label: String {
        switch self {
        case .free: "Free"
        case .starting: "Starting"
        case .idle: "Idle"
        case .readingHeaders: "Reading headers"
        case .running: "Running"
        case .finishing: "Finishing"
        case .draining: "Draining"
        }
    }
}

/// The shared-memory scoreboard (design §4): a memfd created by the master
/// before any worker is forked, so every worker inherits the same mapping.
/// The C layout is in CDroverSys.h. This type and SlotWriter are the only
/// places that touch its pointers.
public final class Scoreboard: @unchecked Sendable {
    /// The memfd; kept open so a re-executed master or the agent can map it again.
    public let fd: Int32
    public let poolCapacity: Int
    public let slotCapacity: Int
    private let base: UnsafeMutableRawPointer
    private let size: Int

    private init(fd: Int32, base: UnsafeMutableRawPointer, size: Int, poolCapacity: Int, slotCapacity: Int) {
        self.fd = fd
        self.base = base
        self.size = size
        self.poolCapacity = poolCapacity
        self.slotCapacity = slotCapacity
    }

    public static func create(poolCapacity: Int, slotCapacity: Int) throws -> Scoreboard {
        let headerSize = align(MemoryLayout<drover_sb_header>.stride)
        let poolsSize = align(MemoryLayout<drover_sb_pool>.stride * poolCapacity)
        let total = headerSize + poolsSize + MemoryLayout<drover_sb_slot>.stride * slotCapacity
        // Not close-on-exec: a re-executed master keeps it (reload).
        let fd = drover_memfd_create("drover-scoreboard", 0)
        if fd < 0 { throw SystemError("memfd_create()") }
        if ftruncate(fd, off_t(total)) != 0 {
            let e = errno
            close(fd)
            throw SystemError("ftruncate(scoreboard)", errno: e)
        }
        let base = try map(fd: fd, size: total)
        let header = base.assumingMemoryBound(to: drover_sb_header.self)
        header.pointee.magic = DROVER_SB_MAGIC
        header.pointee.layout = UInt32(DROVER_SB_LAYOUT)
        header.pointee.pool_capacity = UInt32(poolCapacity)
        header.pointee.slot_capacity = UInt32(slotCapacity)
        header.pointee.master_pid = getpid()
        header.pointee.start_time_us = Clock.realtimeMicros()
        header.pointee.pools_offset = UInt64(headerSize)
        header.pointee.slots_offset = UInt64(headerSize + poolsSize)
        header.pointee.total_size = UInt64(total)
        return Scoreboard(fd: fd, base: base, size: total, poolCapacity: poolCapacity, slotCapacity: slotCapacity)
    }

    /// Maps an existing scoreboard (inherited fd) and checks its layout.
    public static func attach(fd: Int32) throws -> Scoreboard {
        var st = stat()
        if fstat(fd, &st) != 0 { throw SystemError("fstat(scoreboard)") }
        let base = try map(fd: fd, size: Int(st.st_size))
        let header = base.assumingMemoryBound(to: drover_sb_header.self).pointee
        guard header.magic == DROVER_SB_MAGIC, header.layout == UInt32(DROVER_SB_LAYOUT),
              header.total_size == UInt64(st.st_size) else {
            munmap(base, Int(st.st_size))
            throw SystemError("scoreboard layout", errno: EINVAL)
        }
        return Scoreboard(fd: fd, base: base, size: Int(st.st_size),
                          poolCapacity: Int(header.pool_capacity), slotCapacity: Int(header.slot_capacity))
    }

    private static func map(fd: Int32, size: Int) throws -> UnsafeMutableRawPointer {
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { throw SystemError("mmap(scoreboard)") }
        return p
    }

    private static func align(_ n: Int) -> Int { (n + 63) & ~63 }

    deinit { munmap(base, size) }

    var header: UnsafeMutablePointer<drover_sb_header> { base.assumingMemoryBound(to: drover_sb_header.self) }

    public var startTimeMicros: Int64 { header.pointee.start_time_us }

    /// The counter of dropped log records (LogChannel adds to it).
    public var droppedLogRecordsCounter: UnsafeMutablePointer<UInt64> {
        UnsafeMutableRawPointer(header).assumingMemoryBound(to: drover_sb_header.self)
            .pointer(to: \.dropped_log_records)!
    }

    func pool(_ index: Int) -> UnsafeMutablePointer<drover_sb_pool> {
        precondition(index >= 0 && index < poolCapacity)
        return (base + Int(header.pointee.pools_offset)).assumingMemoryBound(to: drover_sb_pool.self) + index
    }

    func slot(_ index: Int) -> UnsafeMutablePointer<drover_sb_slot> {
        precondition(index >= 0 && index < slotCapacity)
        return (base + Int(header.pointee.slots_offset)).assumingMemoryBound(to: drover_sb_slot.self) + index
    }
}

// MARK: - Master side

public struct PoolLimits: Sendable {
    public var pm: UInt32
    public var maxChildren: Int
    public var startServers: Int
    public var minSpare: Int
    public var maxSpare: Int
    public init(pm: UInt32, maxChildren: Int, startServers: Int, minSpare: Int, maxSpare: Int) {
        self.pm = pm
        self.maxChildren = maxChildren
        self.startServers = startServers
        self.minSpare = minSpare
        self.maxSpare = maxSpare
    }
}

public enum PoolCounter: Sendable {
    case acceptedConnections, maxChildrenReached, slowRequests, spawns, crashes
}

extension Scoreboard {
    /// Describes pool `index`; counters are kept when the pool already exists.
    public func configurePool(_ index: Int, name: String, limits: PoolLimits) {
        let p = pool(index)
        drover_seq_write_begin(&p.pointee.seq)
        if p.pointee.in_use == 0 {
            p.pointee.start_time_us = Clock.realtimeMicros()
        }
        p.pointee.in_use = 1
        withUnsafeMutablePointer(to: &p.pointee.name) { field in
            var n = name
            n.withUTF8 { drover_copy_field(UnsafeMutableRawPointer(field).assumingMemoryBound(to: CChar.self),
                                           MemoryLayout.size(ofValue: field.pointee), $0.baseAddress, $0.count) }
        }
        p.pointee.pm = limits.pm
        p.pointee.max_children = UInt32(limits.maxChildren)
        p.pointee.start_servers = UInt32(limits.startServers)
        p.pointee.min_spare = UInt32(limits.minSpare)
        p.pointee.max_spare = UInt32(limits.maxSpare)
        drover_seq_write_end(&p.pointee.seq)
    }

    public func add(_ counter: PoolCounter, pool index: Int, _ value: UInt64 = 1) {
        let p = pool(index)
        switch counter {
        case .acceptedConnections: drover_atomic_add64(&p.pointee.accepted_conn, value)
        case .maxChildrenReached: drover_atomic_add64(&p.pointee.max_children_reached, value)
        case .slowRequests: drover_atomic_add64(&p.pointee.slow_requests, value)
        case .spawns: drover_atomic_add64(&p.pointee.spawns, value)
        case .crashes: drover_atomic_add64(&p.pointee.crashes, value)
        }
    }

    public func setBackoff(pool index: Int, milliseconds: UInt32) {
        drover_atomic_store32(&pool(index).pointee.backoff_ms, milliseconds)
    }

    /// Gives a free slot to a new worker of `pool`; nil when all are taken.
    public func claimSlot(pool poolIndex: Int, generation: UInt32) -> Int? {
        for i in 0..<slotCapacity {
            let s = slot(i)
            guard s.pointee.state == SlotState.free.rawValue else { continue }
            drover_seq_write_begin(&s.pointee.seq)
            let seq = s.pointee.seq
            memset(s, 0, MemoryLayout<drover_sb_slot>.size)
            s.pointee.seq = seq
            s.pointee.state = SlotState.starting.rawValue
            s.pointee.pool_index = UInt32(poolIndex)
            s.pointee.generation = generation
            s.pointee.started_at_us = Clock.realtimeMicros()
            s.pointee.last_cpu = -1
            drover_seq_write_end(&s.pointee.seq)
            return i
        }
        return nil
    }

    /// Records the pid of the worker forked for slot `index`.
    public func setWorkerPID(slot index: Int, pid: Int32) {
        let s = slot(index)
        drover_seq_write_begin(&s.pointee.seq)
        s.pointee.worker_pid = pid
        drover_seq_write_end(&s.pointee.seq)
    }

    /// Frees the slot of a worker that exited. If it died while busy, the
    /// pool's active count is corrected here, since the worker never will.
    public func releaseSlot(_ index: Int) {
        let s = slot(index)
        let state = SlotState(rawValue: drover_atomic_load32(&s.pointee.state)) ?? .free
        let p = pool(Int(s.pointee.pool_index))
        if state.isBusy {
            drover_atomic_sub64(&p.pointee.active, 1)
        }
        if drover_atomic_load32(&s.pointee.counted_ready) != 0 {
            drover_atomic_sub32(&p.pointee.ready, 1)
        }
        // A worker killed mid-write leaves an odd seq: make it even again.
        if s.pointee.seq & 1 == 1 { s.pointee.seq &+= 1 }
        drover_seq_write_begin(&s.pointee.seq)
        s.pointee.state = SlotState.free.rawValue
        s.pointee.worker_pid = 0
        s.pointee.app_pid = 0
        s.pointee.counted_ready = 0
        drover_seq_write_end(&s.pointee.seq)
    }

    public func slotState(_ index: Int) -> SlotState {
        SlotState(rawValue: drover_atomic_load32(&slot(index).pointee.state)) ?? .free
    }

    /// The worker-side writer for slot `index`.
    public func writer(slot index: Int) -> SlotWriter {
        let s = slot(index)
        return SlotWriter(slot: s, pool: pool(Int(s.pointee.pool_index)))
    }
}
