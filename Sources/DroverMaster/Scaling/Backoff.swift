/// Exponential respawn back-off for a pool whose workers or apps die young
/// (php-fpm has none and respawns in a tight loop). The delay doubles with
/// each failure from `initial` up to `maximum`, and is forgotten after
/// `healthyPeriod` without a failure.
struct Backoff {
    var initial: Int64 = 100_000          // µs
    var maximum: Int64 = 30_000_000
    var healthyPeriod: Int64 = 30_000_000
    private(set) var failures = 0
    private var lastFailure: Int64 = 0

    /// Records a failure at `now` (µs) and returns the delay before the next start.
    mutating func fail(at now: Int64) -> Int64 {
        if failures > 0 && now - lastFailure > healthyPeriod { failures = 0 }
        failures += 1
        lastFailure = now
        return delay
    }

    /// The current delay: 0 when healthy.
    var delay: Int64 {
        guard failures > 0 else { return 0 }
        let shift = min(failures - 1, 30)
        return min(maximum, initial << shift)
    }

    /// The delay still in force at `now`, forgetting old failures.
    mutating func delay(at now: Int64) -> Int64 {
        if failures > 0 && now - lastFailure > healthyPeriod { failures = 0 }
        return delay
    }
}
