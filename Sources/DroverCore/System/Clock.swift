import Glibc

/// Time in microseconds. Durations use the monotonic clock; timestamps shown
/// to people (start time, log lines) use the real-time clock.
public enum Clock {
    @inline(__always)
    public static func monotonicMicros() -> Int64 { micros(CLOCK_MONOTONIC) }
    @inline(__always)
    public static func realtimeMicros() -> Int64 { micros(CLOCK_REALTIME) }
    public static func unixSeconds() -> Int64 { realtimeMicros() / 1_000_000 }

    @inline(__always)
    private static func micros(_ clock: clockid_t) -> Int64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }
}
