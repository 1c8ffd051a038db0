import DroverConfig
import DroverCore
import Glibc

/// One output file of the agent (error log, access log, slow log) or stderr.
///
/// - Opened `O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC`, mode 0640 (less the
///   umask). A missing parent directory is an error, not created.
/// - `write` issues one write(2) per record (looping only on a short write),
///   so a record is never interleaved with another.
/// - `reopen()` opens the path anew and only then swaps descriptors: after
///   logrotate moved the file, the old file keeps everything written so far
///   and later records go to the new one; when the open fails the old
///   descriptor stays in use.
/// - Size rotation (`log.max_size`, `log.max_files`): when `maxSize > 0` and
///   the next record would take the file past it, `path.(N-1)` → `path.N` …
///   `path` → `path.1` (the oldest, `path.maxFiles`, is deleted), then the
///   path is reopened. Rotation happens only between two records, so no line
///   is ever split across files. A record larger than `maxSize` goes alone
///   into a fresh file.
public final class LogFile {
    /// nil: stderr (never reopened or rotated).
    public let path: String?
    public private(set) var fd: Int32
    /// Bytes in the current file (fstat at open, then counted).
    public private(set) var size: Int64 = 0
    /// Rotate before the file would grow past this many bytes (0: never).
    public var maxSize: Int64
    /// Rotated files kept (`path.1` … `path.maxFiles`); 0 keeps none.
    public var maxFiles: Int
    /// Called with a message when rotation fails (the router logs it).
    public var onError: ((String) -> Void)?
    /// Rotations done (for tests and status).
    public private(set) var rotations = 0
    /// Records that could not be written (write(2) failed).
    public private(set) var failedWrites = 0

    /// After a failed rotation, the next attempt waits until the file has
    /// grown by another `maxSize` (no rename storm on every record).
    private var retryRotationAt: Int64 = 0
    /// Set by the agent: records are collected and written by `flush()`,
    /// which it calls after each batch read from the channel — one write(2)
    /// for many access lines instead of one per request.
    public var buffersWrites = false
    private var pending: [UInt8] = []
    private static let pendingLimit = 64 * 1024

    public init(path: String, maxSize: Int64 = 0, maxFiles: Int = 5) throws {
        self.path = path
        self.maxSize = maxSize
        self.maxFiles = max(0, maxFiles)
        fd = try Self.open(path)
        size = Self.currentSize(fd)
    }

    private init(stderr: Void) {
        path = nil
        fd = STDERR_FILENO
        maxSize = 0
        maxFiles = 0
    }

    /// The process's stderr as a target.
    public static func stderr() -> LogFile { LogFile(stderr: ()) }

    public var isStderr: Bool { path == nil }

    /// Writes one record (whole: rotation happens only between records);
    /// false when it failed. With `buffersWrites` it is only collected.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count > 0 else { return true }
        if maxSize > 0 && size + Int64(bytes.count) > maxSize { flush() }
        if shouldRotate(adding: bytes.count) { rotateLogged() }
        if buffersWrites && path != nil {
            pending.append(contentsOf: bytes)
            size += Int64(bytes.count)
            return pending.count < Self.pendingLimit || flush()
        }
        let ok = FD.writeAll(fd, bytes)
        if ok { size += Int64(bytes.count) } else { failedWrites += 1 }
        return ok
    }

    /// Writes what `buffersWrites` collected, with one write(2).
    @discardableResult
    public func flush() -> Bool {
        guard !pending.isEmpty else { return true }
        let ok = pending.withUnsafeBytes { FD.writeAll(fd, $0) }
        if !ok { failedWrites += 1 }
        pending.removeAll(keepingCapacity: true)
        return ok
    }

    @discardableResult
    public func write(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write($0) }
    }

    @discardableResult
    public func write(_ string: String) -> Bool {
        var s = string
        return s.withUTF8 { write(UnsafeRawBufferPointer($0)) }
    }

    /// Opens the path anew and swaps descriptors (SIGUSR1, `droverctl reopen`).
    /// On failure the old descriptor stays in use and the error is thrown.
    public func reopen() throws {
        guard let path else { return }
        let new = try Self.open(path)
        flush()     // what was collected belongs to the old file
        let old = fd
        fd = new
        size = Self.currentSize(new)
        retryRotationAt = 0
        if old >= 0 { FD.close(old) }
    }

    /// Rotates now (whatever the size): shifts `path.N`, moves `path` to
    /// `path.1` and reopens. Throws when the current file cannot be moved or
    /// the new one cannot be opened.
    public func rotate() throws {
        guard let path else { return }
        if maxFiles > 0 {
            // The oldest goes first; a missing file in the chain is fine.
            _ = unlink("\(path).\(maxFiles)")
            var n = maxFiles - 1
            while n >= 1 {
                if Glibc.rename("\(path).\(n)", "\(path).\(n + 1)") != 0 && errno != ENOENT {
                    throw SystemError("rename(\(path).\(n), \(path).\(n + 1))")
                }
                n -= 1
            }
            if Glibc.rename(path, "\(path).1") != 0 && errno != ENOENT {
                throw SystemError("rename(\(path), \(path).1)")
            }
        } else if unlink(path) != 0 && errno != ENOENT {
            throw SystemError("unlink(\(path))")
        }
        rotations += 1
        try reopen()
    }

    public func close() {
        flush()
        if path != nil && fd >= 0 { FD.close(fd) }
        fd = -1
    }

    deinit { close() }

    // MARK: -

    private func shouldRotate(adding count: Int) -> Bool {
        guard maxSize > 0, path != nil, size > 0, size + Int64(count) > maxSize else { return false }
        if retryRotationAt > 0 && size < retryRotationAt { return false }
        // The count can drift (copytruncate, someone else appending):
        // trust the file itself before moving it.
        size = Self.currentSize(fd)
        return size > 0 && size + Int64(count) > maxSize
    }

    private func rotateLogged() {
        do {
            try rotate()
        } catch {
            retryRotationAt = size + maxSize
            onError?("unable to rotate log file '\(path ?? "")': \(error)")
        }
    }

    private static func open(_ path: String) throws -> Int32 {
        while true {
            let fd = Glibc.open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw SystemError("open(\(path))")
        }
    }

    private static func currentSize(_ fd: Int32) -> Int64 {
        var st = stat()
        return fstat(fd, &st) == 0 ? Int64(st.st_size) : 0
    }
}

/// The error log sent to syslog(3) (`error_log = syslog`): openlog with
/// `syslog.ident` and `syslog.facility` (LOG_PID | LOG_CONS, as php-fpm), one
/// syslog call per line, at the line's own level.
public final class SyslogTarget {
    /// openlog keeps the pointer: the ident must live as long as the process.
    private let ident: UnsafeMutablePointer<CChar>?
    public let facility: Int32

    public init(ident: String, facility: String) {
        self.ident = strdup(ident)
        self.facility = Self.facility(named: facility)
        openlog(self.ident, LOG_PID | LOG_CONS, self.facility)
    }

    /// Sends one message (no trailing newline) at `level`.
    public func send(_ level: LogLevel, _ message: UnsafeRawBufferPointer) {
        // syslog wants a C string: copy and terminate.
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: message.count + 1) { buffer in
            let base = UnsafeMutableRawPointer(buffer.baseAddress!)
            if message.count > 0 { base.copyMemory(from: message.baseAddress!, byteCount: message.count) }
            // A NUL inside the message would end it early: show it as a space.
            let bytes = base.assumingMemoryBound(to: UInt8.self)
            for i in 0..<message.count where bytes[i] == 0 { bytes[i] = 0x20 }
            buffer[message.count] = 0
            "%s".withCString { format in
                withVaList([UnsafePointer(buffer.baseAddress!)]) { vsyslog(Self.priority(level), format, $0) }
            }
        }
    }

    public func send(_ level: LogLevel, _ message: String) {
        var m = message
        m.withUTF8 { send(level, UnsafeRawBufferPointer($0)) }
    }

    deinit {
        closelog()
        free(ident)
    }

    /// php-fpm's mapping of its levels to syslog priorities.
    public static func priority(_ level: LogLevel) -> Int32 {
        switch level {
        case .debug: LOG_DEBUG
        case .notice: LOG_NOTICE
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .alert: LOG_ALERT
        }
    }

    /// `syslog.facility` names (the config accepts these; anything else: daemon).
    public static func facility(named name: String) -> Int32 {
        switch name.lowercased() {
        case "auth": LOG_AUTH
        case "authpriv": LOG_AUTHPRIV
        case "cron": LOG_CRON
        case "daemon": LOG_DAEMON
        case "ftp": LOG_FTP
        case "kern": LOG_KERN
        case "lpr": LOG_LPR
        case "mail": LOG_MAIL
        case "news": LOG_NEWS
        case "syslog": LOG_SYSLOG
        case "user": LOG_USER
        case "uucp": LOG_UUCP
        case "local0": LOG_LOCAL0
        case "local1": LOG_LOCAL1
        case "local2": LOG_LOCAL2
        case "local3": LOG_LOCAL3
        case "local4": LOG_LOCAL4
        case "local5": LOG_LOCAL5
        case "local6": LOG_LOCAL6
        case "local7": LOG_LOCAL7
        default: LOG_DAEMON
        }
    }
}
