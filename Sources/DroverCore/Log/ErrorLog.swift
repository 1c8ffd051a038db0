import DroverConfig
import Glibc

/// The error log: php-fpm's line format, `[21-Nov-2026 12:09:26] NOTICE: text`.
/// Until the agent runs, lines are written with one write(2) each to the
/// file (or stderr); once the master routes the log through the log channel,
/// every process sends its lines to the agent, the only writer of log files
/// (design §5), and holds no log file open.
public final class ErrorLog: @unchecked Sendable {
    /// The file written directly; -1 once the log goes through the channel.
    public private(set) var fd: Int32
    public private(set) var channel: LogChannel?
    public var level: LogLevel
    /// The path when logging to a file (nil: stderr).
    public let path: String?

    /// Opens `path` for appending, or uses stderr when nil.
    public init(path: String?, level: LogLevel) throws {
        self.level = level
        self.path = path
        if let path {
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd < 0 { throw SystemError("open(\(path))") }
            self.fd = fd
        } else {
            self.fd = STDERR_FILENO
        }
    }

    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func notice(_ message: @autoclosure () -> String) { log(.notice, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
    public func alert(_ message: @autoclosure () -> String) { log(.alert, message()) }

    public func log(_ level: LogLevel, _ message: @autoclosure () -> String) {
        guard level >= self.level else { return }
        let line = Self.format(level, message(), at: Clock.realtimeMicros())
        if let channel {
            channel.send(LogRecordHeader(kind: .error, pid: getpid()), line)
        } else {
            FD.writeAll(fd, line)
        }
    }

    /// From now on lines go to the agent through `channel`; a log file this
    /// object opened is closed (stderr stays open).
    public func route(through channel: LogChannel) {
        self.channel = channel
        if path != nil && fd >= 0 { FD.close(fd) }
        fd = -1
    }

    /// `[21-Nov-2026 12:09:26] NOTICE: message\n` (local time, like php-fpm).
    public static func format(_ level: LogLevel, _ message: String, at micros: Int64) -> String {
        "[\(timestamp(micros))] \(level.label): \(message)\n"
    }

    public static func timestamp(_ micros: Int64) -> String {
        strftime(micros / 1_000_000, "%d-%b-%Y %H:%M:%S")
    }

    /// Formats a Unix time with strftime(3) in local time.
    public static func strftime(_ seconds: Int64, _ format: String) -> String {
        var t = time_t(seconds)
        var tm = tm()
        localtime_r(&t, &tm)
        var buffer = [CChar](repeating: 0, count: 64)
        let n = Glibc.strftime(&buffer, buffer.count, format, &tm)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
