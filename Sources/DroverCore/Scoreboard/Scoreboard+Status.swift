import CDroverSys
import DroverConfig
import Glibc

extension Scoreboard {
    /// Index of the pool called `name`, if the scoreboard has it.
    public func poolIndex(named name: String) -> Int? {
        for i in 0..<poolCapacity {
            var copy = drover_sb_pool()
            guard drover_sb_pool_read(pool(i), &copy) == 0, copy.in_use != 0 else { continue }
            if Self.string(&copy.name) == name { return i }
        }
        return nil
    }

    /// Indices of every pool in use.
    public var poolIndices: [Int] {
        (0..<poolCapacity).filter { drover_atomic_load32(&pool($0).pointee.in_use) != 0 }
    }

    /// A consistent picture of one pool and its slots for the status page.
    /// `liveQueue` is a reading of the pool's accept queue taken just now
    /// (recorded first, so "max listen queue" includes it); without it the
    /// master's last sample is shown.
    public func status(pool index: Int, liveQueue: ListenQueue? = nil) -> PoolStatus {
        if let liveQueue { recordListenQueue(pool: index, liveQueue) }
        var p = drover_sb_pool()
        _ = drover_sb_pool_read(pool(index), &p)
        let nowMicros = Clock.realtimeMicros()
        let now = nowMicros / 1_000_000
        let shared = pool(index)
        var status = PoolStatus(
            name: Self.string(&p.name),
            processManager: ProcessManager.name(pm: p.pm),
            startTime: p.start_time_us / 1_000_000,
            now: now,
            acceptedConnections: drover_atomic_load64(&shared.pointee.accepted_conn),
            listenQueue: Int(drover_atomic_load32(&shared.pointee.listen_queue)),
            maxListenQueue: Int(drover_atomic_load32(&shared.pointee.max_listen_queue)),
            listenQueueLength: Int(drover_atomic_load32(&shared.pointee.listen_queue_len)),
            maxActiveProcesses: drover_atomic_load64(&shared.pointee.max_active),
            maxChildrenReached: drover_atomic_load64(&shared.pointee.max_children_reached),
            slowRequests: drover_atomic_load64(&shared.pointee.slow_requests),
            spawns: drover_atomic_load64(&shared.pointee.spawns),
            crashes: drover_atomic_load64(&shared.pointee.crashes),
            backoffMilliseconds: drover_atomic_load32(&shared.pointee.backoff_ms),
            droppedLogRecords: drover_atomic_load64(droppedLogRecordsCounter))
        for i in 0..<slotCapacity {
            var s = drover_sb_slot()
            guard drover_sb_slot_read(slot(i), &s) == 0, Int(s.pool_index) == index,
                  let state = SlotState(rawValue: s.state), state != .free else { continue }
            status.totalProcesses += 1
            if state == .idle { status.idleProcesses += 1 }
            if state.isBusy { status.activeProcesses += 1 }
            let query = Self.string(&s.query_string)
            let uri = Self.string(&s.request_uri)
            let duration = state.isBusy ? nowMicros - s.accepted_at_us : s.duration_us
            status.processes.append(ProcessStatus(
                pid: s.worker_pid,
                appPid: s.app_pid,
                state: state.label,
                startTime: s.started_at_us / 1_000_000,
                startSince: now - s.started_at_us / 1_000_000,
                requests: s.requests,
                requestDuration: s.requests == 0 ? 0 : max(0, duration),
                requestMethod: s.requests == 0 ? "-" : Self.string(&s.request_method, dash: true),
                requestURI: s.requests == 0 ? "-" : (query.isEmpty ? uri : "\(uri)?\(query)"),
                contentLength: s.content_length,
                user: Self.string(&s.auth_user, dash: true),
                script: Self.string(&s.script_filename, dash: true),
                lastRequestCPU: s.last_cpu < 0 ? nil : s.last_cpu,
                lastRequestMemory: s.last_memory == 0 ? nil : s.last_memory,
                statusCode: s.status == 0 ? nil : Int(s.status)))
        }
        // The busy count a worker keeps can lag a reap by a moment; the
        // slots themselves are the truth for "active processes".
        status.maxActiveProcesses = max(status.maxActiveProcesses, UInt64(status.activeProcesses))
        return status
    }

    /// Reads a NUL-terminated fixed-size C field.
    static func string<T>(_ field: inout T, dash: Bool = false) -> String {
        let s = withUnsafeBytes(of: &field) { raw -> String in
            let bytes = raw.prefix { $0 != 0 }
            return String(decoding: bytes, as: UTF8.self)
        }
        return dash && s.isEmpty ? "-" : s
    }
}

extension ProcessManager {
    public var scoreboardValue: UInt32 {
        switch self {
        case .static: UInt32(DROVER_PM_STATIC.rawValue)
        case .dynamic: UInt32(DROVER_PM_DYNAMIC.rawValue)
        case .ondemand: UInt32(DROVER_PM_ONDEMAND.rawValue)
        }
    }

    static func name(pm: UInt32) -> String {
        switch pm {
        case UInt32(DROVER_PM_DYNAMIC.rawValue): "dynamic"
        case UInt32(DROVER_PM_ONDEMAND.rawValue): "ondemand"
        default: "static"
        }
    }
}
