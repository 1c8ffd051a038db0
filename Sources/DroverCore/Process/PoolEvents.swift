import Glibc

/// What a worker tells the master through its pool's event pipe (design §3:
/// the master learns within milliseconds that a pool runs short). One byte
/// per event; the pipe is non-blocking on both ends, and a full pipe drops
/// the byte, since the master already has events of that pool to read and
/// reads the scoreboard, not the bytes, to decide.
public enum PoolEvent: UInt8, Sendable {
    /// A worker went busy and the pool has fewer idle workers than it wants.
    case runningShort = 0x53      // "S"
    /// A worker finished starting and accepts connections.
    case ready = 0x52             // "R"
    /// A worker's app died of SIGSEGV or SIGBUS (emergency_restart_threshold).
    case appCrashed = 0x43        // "C"

    /// Sends `event` on the pool's event pipe; never blocks.
    public static func send(_ event: PoolEvent, to fd: Int32) {
        guard fd >= 0 else { return }
        var byte = event.rawValue
        _ = write(fd, &byte, 1)
    }

    /// Reads every pending event from the master's end (non-blocking).
    public static func drain(_ fd: Int32) -> [PoolEvent] {
        var buffer = [UInt8](repeating: 0, count: 256)
        var events: [PoolEvent] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            events += buffer[0..<n].compactMap(PoolEvent.init(rawValue:))
            if n < buffer.count { break }
        }
        return events
    }
}
