import CDroverSys
import Glibc

/// What a log record is (design §5).
public enum LogRecordKind: UInt8, Sendable {
    /// A whole error-log line, already formatted and filtered by level.
    case error = 1
    /// One access-log line of a pool.
    case access = 2
    /// One slow-log entry of a pool.
    case slow = 3
    /// Bytes an app wrote to stdout (stream 1) or stderr (stream 2), for
    /// `catch_workers_output`; the agent splits, decorates and wraps them.
    case output = 4
}

/// The 8-byte header in front of every record.
public struct LogRecordHeader: Sendable, Equatable {
    public var kind: LogRecordKind
    /// For `.output`: the stream (1 stdout, 2 stderr); otherwise 0.
    public var stream: UInt8
    /// The pool's index in the configuration (0 for error-log lines).
    public var pool: UInt16
    /// The sending process (for `.output`: the app).
    public var pid: Int32

    public static let size = 8

    public init(kind: LogRecordKind, stream: UInt8 = 0, pool: UInt16 = 0, pid: Int32) {
        self.kind = kind
        self.stream = stream
        self.pool = pool
        self.pid = pid
    }
}

/// The log channel (design §5): one SOCK_SEQPACKET socketpair created by
/// the master before anything is forked. Every process sends records on the
/// same end (a sequenced packet is one whole record, so records from many
/// writers never interleave); the agent reads the other end, which the
/// master also keeps open, so records written while the agent is down wait
/// in the socket for the next agent. Sends never block: when the buffer is
/// full the record is dropped and counted in the scoreboard (a slow or
/// absent agent must not hold up requests).
public final class LogChannel: @unchecked Sendable {
    public let sendFD: Int32
    public let receiveFD: Int32
    /// Where drops are counted (the scoreboard's counter), once it exists.
    private var dropped: UnsafeMutablePointer<UInt64>?

    /// Largest record; longer payloads are cut (a slow-log entry with a long
    /// trace is the only record that comes near).
    public static let maxRecord = 128 * 1024

    public init() throws {
        var fds: [Int32] = [-1, -1]
        if drover_seqpacket_pair(&fds) != 0 { throw SystemError("socketpair(SOCK_SEQPACKET)") }
        sendFD = fds[0]
        receiveFD = fds[1]
        // The buffer bounds how much waits for the agent: as large as the
        // kernel allows this process (SO_SNDBUFFORCE needs CAP_NET_ADMIN).
        drover_set_send_buffer(sendFD, 8 * 1024 * 1024)
    }

    /// The channel of the master before a reload (design §7): the same
    /// socket pair, so that records waiting in it survive the re-exec.
    public init(adoptingSend sendFD: Int32, receive receiveFD: Int32) {
        self.sendFD = sendFD
        self.receiveFD = receiveFD
    }

    /// Counts dropped records in `counter` from now on.
    public func countDrops(in counter: UnsafeMutablePointer<UInt64>) { dropped = counter }

    /// Sends one record; false when it was dropped.
    @discardableResult
    public func send(_ header: LogRecordHeader, _ payload: UnsafeRawBufferPointer) -> Bool {
        let body = UnsafeRawBufferPointer(rebasing: payload.prefix(Self.maxRecord - LogRecordHeader.size))
        var head: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) = (
            header.kind.rawValue, header.stream, UInt8(header.pool & 0xff), UInt8(header.pool >> 8),
            UInt8(truncatingIfNeeded: header.pid), UInt8(truncatingIfNeeded: header.pid >> 8),
            UInt8(truncatingIfNeeded: header.pid >> 16), UInt8(truncatingIfNeeded: header.pid >> 24))
        let sent = withUnsafeBytes(of: &head) { h in
            drover_send2(sendFD, h.baseAddress, h.count, body.baseAddress, body.count)
        }
        if sent < 0 {
            if let dropped { drover_atomic_add64(dropped, 1) }
            return false
        }
        return true
    }

    @discardableResult
    public func send(_ header: LogRecordHeader, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { send(header, UnsafeRawBufferPointer($0)) }
    }

    /// Splits a received record into header and payload; nil when malformed.
    public static func parse(_ record: UnsafeRawBufferPointer) -> (LogRecordHeader, UnsafeRawBufferPointer)? {
        guard record.count >= LogRecordHeader.size, let kind = LogRecordKind(rawValue: record[0]) else { return nil }
        let pool = UInt16(record[2]) | UInt16(record[3]) << 8
        let pid = Int32(bitPattern: UInt32(record[4]) | UInt32(record[5]) << 8 | UInt32(record[6]) << 16 | UInt32(record[7]) << 24)
        return (LogRecordHeader(kind: kind, stream: record[1], pool: pool, pid: pid),
                UnsafeRawBufferPointer(rebasing: record[LogRecordHeader.size...]))
    }
}
