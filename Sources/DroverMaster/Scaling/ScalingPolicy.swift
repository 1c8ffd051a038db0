import DroverConfig

/// The decisions of `pm = dynamic` and `pm = ondemand` (design §3) as pure
/// functions of what the master knows at one moment, so that they can be
/// tested without processes. Pool.swift gathers the input and carries the
/// decisions out.
struct ScalingInput: Equatable {
    var pm: ProcessManager
    var maxChildren: Int
    var minSpare: Int
    var maxSpare: Int
    /// Live workers, including those starting and those told to stop.
    var total: Int
    /// Forked but not accepting yet.
    var starting: Int
    /// Accepting and not busy (workers told to stop are not counted).
    var idle: Int
    /// Connections waiting in the pool's accept queues.
    var queued: Int
}

enum ScalingPolicy {
    /// Idle workers the pool keeps ready for the next request.
    static func wantedIdle(_ x: ScalingInput) -> Int {
        switch x.pm {
        case .dynamic: x.minSpare
        case .static, .ondemand: 0
        }
    }

    /// Workers to start now, before the spawn-rate limit: enough for every
    /// waiting connection plus the idle reserve, counting those already
    /// starting, within max_children. Static pools are filled elsewhere.
    static func workersToStart(_ x: ScalingInput) -> Int {
        guard x.pm != .static else { return 0 }
        let room = x.maxChildren - x.total
        let short = wantedIdle(x) + x.queued - x.idle - x.starting
        return max(0, min(room, short))
    }

    /// Of `workersToStart`, those for connections that wait beyond the idle
    /// and starting workers: started at once. The rest only tops up the
    /// idle reserve, which a short request gives back by itself a moment
    /// later; it is started only if the pool is still short after
    /// `topUpDelay` (php-fpm's 1 s heartbeat filters such dips the same way,
    /// but also delays everything else by up to a second).
    static func workersForWaitingConnections(_ x: ScalingInput) -> Int {
        guard x.pm != .static else { return 0 }
        return max(0, min(x.maxChildren - x.total, x.queued - x.idle - x.starting))
    }

    static let topUpDelay: Int64 = 50_000   // µs

    /// The pool would grow but max_children stops it (php-fpm's
    /// "server reached pm.max_children setting" condition).
    static func reachedMaxChildren(_ x: ScalingInput) -> Bool {
        guard x.pm != .static, x.total >= x.maxChildren else { return false }
        return x.idle + x.starting < wantedIdle(x) + x.queued
    }

    /// Idle workers above pm.max_spare_servers (dynamic); the master stops
    /// one of them per tick, the longest idle first.
    static func surplusIdle(_ x: ScalingInput) -> Int {
        guard x.pm == .dynamic else { return 0 }
        return max(0, x.idle - x.maxSpare)
    }

    /// php-fpm logs "seems busy" when one round of scaling starts this many.
    static let busySpawnCount = 8
}

/// pm.max_spawn_rate as a token bucket: up to `rate` workers may start at
/// once, and the bucket refills at `rate` per second. A burst gets its
/// workers immediately; a sustained shortage gets `rate` per second.
struct SpawnRate {
    let rate: Int
    private var tokens: Double
    private var updatedAt: Int64    // µs, monotonic

    init(perSecond rate: Int, now: Int64) {
        self.rate = max(1, rate)
        tokens = Double(self.rate)
        updatedAt = now
    }

    private mutating func refill(_ now: Int64) {
        tokens = min(Double(rate), tokens + Double(now - updatedAt) * Double(rate) / 1e6)
        updatedAt = now
    }

    /// Takes up to `wanted` tokens; returns how many were granted.
    mutating func take(_ wanted: Int, at now: Int64) -> Int {
        refill(now)
        let granted = min(wanted, Int(tokens))
        tokens -= Double(granted)
        return granted
    }

    /// Seconds until the next token.
    mutating func secondsToNextToken(at now: Int64) -> Double {
        refill(now)
        return tokens >= 1 ? 0 : (1 - tokens) / Double(rate)
    }
}

/// php-fpm's emergency_restart_threshold / emergency_restart_interval: when
/// this many processes die of SIGSEGV or SIGBUS within the interval, the
/// master restarts its workers.
struct EmergencyRestart {
    let threshold: Int
    let interval: Int64             // µs
    private var deaths: [Int64] = []

    init(threshold: Int, intervalSeconds: Double) {
        self.threshold = threshold
        interval = Int64(intervalSeconds * 1e6)
    }

    var isEnabled: Bool { threshold > 0 && interval > 0 }

    /// Records a death; true when the threshold is reached (the record is
    /// then cleared, so one episode triggers one restart).
    mutating func record(at now: Int64) -> Bool {
        guard isEnabled else { return false }
        deaths.append(now)
        deaths.removeAll { now - $0 > interval }
        guard deaths.count >= threshold else { return false }
        deaths.removeAll()
        return true
    }
}
