import DroverConfig
import DroverCore
import Glibc

/// Writes the records that arrive on the log channel (design §5):
///
/// - `.error`: a whole error-log line (`[date] LEVEL: text`, formatted and
///   level-filtered by its sender) → the error log. A line longer than
///   `log_limit` is cut to `log_limit` bytes ending in `...` (php-fpm's
///   zlog truncation). For syslog the date is dropped and the line sent as
///   `[LEVEL] text` at the line's level.
/// - `.access` → the pool's `access.log` (pool index = position in
///   `config.pools`), one write(2) per record, newline added if missing.
/// - `.slow` → the pool's `slowlog`, as is.
/// - `.output` (an app's stdout/stderr, `catch_workers_output`) → the error
///   log, split into lines. With `decorate_workers_output` (php-fpm's
///   default) each line is written as php-fpm's zlog stream writes it:
///   `[date] WARNING: [pool www] child 1234 said into stderr: "text"`.
///   A line that does not fit in `log_limit` bytes (newline included) is
///   wrapped as php-fpm wraps it: every piece is a complete line of its own,
///   with the same prefix and its own quotes, exactly `log_limit` bytes long
///   (no `...` marker: php-fpm only truncates when wrapping is off). Without
///   decoration the text is written bare, wrapped at `log_limit - 1` bytes
///   plus the newline, and empty lines are dropped (php-fpm does the same).
///   Bytes after the last newline are kept per (pid, stream) until the rest
///   of the line arrives; they never exceed one wrapped piece: once more is
///   pending, full pieces are written at once (php-fpm's stream flushes at
///   `log_limit` the same way). An `.output` record with an empty payload
///   means the stream closed: its pending bytes are written as a last line.
///
/// Files are shared by path (two pools may name the same access log, or the
/// error log), all rotate with `log.max_size` / `log.max_files`, and
/// `reopenAll()` reopens every one of them (SIGUSR1, `droverctl reopen`).
public final class LogRouter {
    /// Lines written, by kind (access and slow: records), and records that
    /// could not be written anywhere.
    public struct Counts: Equatable, Sendable {
        public var error = 0
        public var access = 0
        public var slow = 0
        public var output = 0
        public var dropped = 0
        public init() {}
    }

    public enum ErrorTarget {
        case file(LogFile)
        case syslog(SyslogTarget)
    }

    public let config: Configuration
    public private(set) var counts = Counts()
    public private(set) var errorTarget: ErrorTarget
    /// The clock used for timestamps (microseconds); tests may fix it.
    public var clock: () -> Int64

    /// `log_limit`: the longest error-log line, newline included.
    private let limit: Int
    /// Every file opened, by path.
    private var files: [String: LogFile] = [:]
    private var accessFiles: [LogFile?]
    private var slowFiles: [LogFile?]
    /// Records name their pool by its scoreboard record, which a reload
    /// keeps by name; this maps it to the pool's place in `config.pools`.
    private let positions: [Int: Int]
    private var pending: [StreamKey: Pending] = [:]
    /// Messages about failed rotations, written once the current write is done.
    private var deferred: [String] = []
    private let forceStderr: Bool
    private var draining = false
    /// The lines made from one record, written with one write(2).
    private var batch: [UInt8] = []
    private var stampSecond: Int64 = .min
    private var stampPrefix: [UInt8] = []

    /// Streams with pending bytes kept at most; beyond, all are flushed.
    static let maxPendingStreams = 4096

    private struct StreamKey: Hashable {
        var pid: Int32
        var stream: UInt8
    }

    private struct Pending {
        var pool: Int
        var bytes: [UInt8]
    }

    /// Opens every file the configuration names. A file that cannot be
    /// opened is reported in the error log (the error log itself falls back
    /// to stderr) and tried again at the next `reopenAll()`; its records are
    /// counted as dropped meanwhile.
    /// `poolRecords`: the scoreboard record of each pool of `config`, in
    /// order (default: the same as its position).
    public init(config: Configuration, poolRecords: [Int]? = nil, forceStderr: Bool = false,
                clock: @escaping () -> Int64 = Clock.realtimeMicros) {
        self.config = config
        var positions: [Int: Int] = [:]
        for (position, record) in (poolRecords ?? Array(config.pools.indices)).enumerated() { positions[record] = position }
        self.positions = positions
        self.clock = clock
        self.forceStderr = forceStderr
        limit = max(config.global.logLimit, 16)
        accessFiles = Array(repeating: nil, count: config.pools.count)
        slowFiles = Array(repeating: nil, count: config.pools.count)
        errorTarget = .file(LogFile.stderr())
        batch.reserveCapacity(64 * 1024)

        var errorLogFailure: String?
        if !forceStderr, let path = config.global.errorLog {
            if Self.isSyslog(path) {
                errorTarget = .syslog(SyslogTarget(ident: config.global.syslogIdent, facility: config.global.syslogFacility))
            } else {
                do {
                    errorTarget = .file(try file(path))
                } catch {
                    errorLogFailure = "failed to open error_log (\(path)): \(Self.reason(error))"
                }
            }
        }
        if let errorLogFailure { log(.error, errorLogFailure) }
        for index in config.pools.indices {
            openPoolFiles(index)
        }
    }

    public static func isSyslog(_ errorLog: String) -> Bool { errorLog.lowercased() == "syslog" }

    // MARK: routing

    /// Routes one record as received from the channel (header + payload);
    /// false when it was malformed or could not be written.
    @discardableResult
    public func route(record: UnsafeRawBufferPointer) -> Bool {
        guard let (header, payload) = LogChannel.parse(record) else {
            counts.dropped += 1
            return false
        }
        return route(header, payload)
    }

    @discardableResult
    public func route(_ header: LogRecordHeader, _ payload: UnsafeRawBufferPointer) -> Bool {
        defer { if !deferred.isEmpty { drainDeferred() } }
        switch header.kind {
        case .error:
            return writeErrorLine(payload)
        case .access:
            guard positions[Int(header.pool)] != nil else { return routeFromDroppedPool(header, payload) }
            let ok = writeRecord(payload, to: poolFile(accessFiles, header.pool), addNewline: true)
            if ok { counts.access += 1 }
            return ok
        case .slow:
            guard positions[Int(header.pool)] != nil else { return routeFromDroppedPool(header, payload) }
            let ok = writeRecord(payload, to: poolFile(slowFiles, header.pool), addNewline: false)
            if ok { counts.slow += 1 }
            return ok
        case .output:
            return routeOutput(header, payload)
        }
    }

    @discardableResult
    public func route(_ header: LogRecordHeader, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { route(header, UnsafeRawBufferPointer($0)) }
    }

    /// The agent's own messages, in php-fpm's format, filtered by `log_level`.
    public func log(_ level: LogLevel, _ message: String) {
        guard level >= config.global.logLevel else { return }
        var line = ErrorLog.format(level, message, at: clock())
        line.withUTF8 { _ = writeErrorLine(UnsafeRawBufferPointer($0)) }
        if !deferred.isEmpty { drainDeferred() }
        // The agent's own lines (reopen notices, service errors) come
        // outside the channel's batches, which are what flushes buffers.
        flushAll()
    }

    // MARK: reopen

    /// Reopens every file (SIGUSR1, `droverctl reopen`) and tries again the
    /// ones that could not be opened before. Logs php-fpm's notices:
    /// `error log file re-opened` / `unable to re-opened error log file`,
    /// `access log file re-opened` / `unable to re-opened access log file`
    /// (the latter pair only when some pool has an access log). Returns
    /// false when anything failed.
    @discardableResult
    public func reopenAll() -> Bool {
        var failed: [String: String] = [:]
        for (path, file) in files {
            do { try file.reopen() } catch { failed[path] = Self.reason(error) }
        }
        var allOK = failed.isEmpty
        var errorLogOK = true
        if case .file(let f) = errorTarget, let path = f.path, let reason = failed[path] {
            errorLogOK = false
            log(.error, "failed to open error_log (\(path)): \(reason)")
        } else if !forceStderr, !config.global.isStderrOrSyslog, case .file(let f) = errorTarget, f.isStderr,
                  let path = config.global.errorLog {
            // The error log could not be opened at start: try again.
            do {
                errorTarget = .file(try file(path))
            } catch {
                errorLogOK = false
                allOK = false
            }
        }
        log(errorLogOK ? .notice : .error, errorLogOK ? "error log file re-opened" : "unable to re-opened error log file")

        var accessOK = true
        var anyAccess = false
        for (index, pool) in config.pools.enumerated() {
            if let path = pool.accessLog {
                anyAccess = true
                if let reason = failed[path] {
                    accessOK = false
                    log(.error, "failed to open access log (\(path)): \(reason)")
                } else if accessFiles[index] == nil {
                    accessFiles[index] = openPoolFile(path, what: "access log")
                    if accessFiles[index] == nil { accessOK = false }
                }
            }
            if let path = pool.slowlog {
                if let reason = failed[path] {
                    allOK = false
                    log(.error, "failed to open slowlog (\(path)): \(reason)")
                } else if slowFiles[index] == nil {
                    slowFiles[index] = openPoolFile(path, what: "slowlog")
                    if slowFiles[index] == nil { allOK = false }
                }
            }
        }
        if anyAccess {
            log(accessOK ? .notice : .error, accessOK ? "access log file re-opened" : "unable to re-opened access log file")
        }
        return allOK && accessOK && errorLogOK
    }

    /// Writes every pending partial line (at exit: nothing is lost).
    public func flushPartials() {
        batch.removeAll(keepingCapacity: true)
        emitAllPending()
        flushBatch()
        drainDeferred()
        flushAll()
    }

    /// Bytes waiting for the rest of their line (tests).
    public var pendingBytes: Int { pending.values.reduce(0) { $0 + $1.bytes.count } }

    // MARK: error log

    /// Writes one error-log line (own buffer: `batch` may be in use).
    private func writeErrorLine(_ line: UnsafeRawBufferPointer) -> Bool {
        var content = line
        while let last = content.last, last == 0x0A { content = UnsafeRawBufferPointer(rebasing: content.dropLast()) }
        var out: [UInt8] = []
        switch errorTarget {
        case .file(let f):
            out.reserveCapacity(min(content.count, limit) + 1)
            if content.count + 1 > limit {
                out.append(contentsOf: content.prefix(limit - 4))
                out.append(contentsOf: [0x2E, 0x2E, 0x2E])
            } else {
                out.append(contentsOf: content)
            }
            out.append(0x0A)
            let ok = out.withUnsafeBytes { f.write($0) }
            if ok { counts.error += 1 } else { counts.dropped += 1 }
            return ok
        case .syslog(let s):
            let (level, message) = Self.splitErrorLine(content)
            out.append(contentsOf: Array("[\(level.label)] ".utf8))
            out.append(contentsOf: message)
            if out.count + 1 > limit {
                out.removeLast(out.count - (limit - 4))
                out.append(contentsOf: [0x2E, 0x2E, 0x2E])
            }
            out.withUnsafeBytes { s.send(level, $0) }
            counts.error += 1
            return true
        }
    }

    /// Logs the messages LogFile reported while a write was in progress.
    private func drainDeferred() {
        guard !draining else { return }
        draining = true
        defer { draining = false }
        var rounds = 0
        while !deferred.isEmpty && rounds < 4 {
            let messages = deferred
            deferred.removeAll()
            for m in messages { log(.error, m) }
            rounds += 1
        }
        deferred.removeAll()
    }

    /// `[date] LEVEL: text` → (level, text); anything else → (notice, line).
    static func splitErrorLine(_ line: UnsafeRawBufferPointer) -> (LogLevel, UnsafeRawBufferPointer) {
        guard line.first == UInt8(ascii: "["), let close = line.firstIndex(of: UInt8(ascii: "]")),
              close + 2 < line.count, line[close + 1] == 0x20 else { return (.notice, line) }
        let rest = UnsafeRawBufferPointer(rebasing: line[(close + 2)...])
        guard let colon = rest.firstIndex(of: UInt8(ascii: ":")) else { return (.notice, line) }
        let label = String(decoding: UnsafeRawBufferPointer(rebasing: rest[..<colon]), as: UTF8.self)
        guard let level = LogLevel.allCases.first(where: { $0.label == label }) else { return (.notice, line) }
        var start = colon + 1
        if start < rest.count, rest[start] == 0x20 { start += 1 }
        return (level, UnsafeRawBufferPointer(rebasing: rest[start...]))
    }

    // MARK: access and slow logs

    private func poolFile(_ table: [LogFile?], _ pool: UInt16) -> LogFile? {
        positions[Int(pool)].flatMap { $0 < table.count ? table[$0] : nil }
    }

    /// After a reload dropped a pool, its last requests still finish; their
    /// access, slow-log and output records go to the error log rather than
    /// nowhere (undecorated: the pool's settings are gone with it).
    private func routeFromDroppedPool(_ header: LogRecordHeader, _ payload: UnsafeRawBufferPointer) -> Bool {
        var text = String(decoding: payload, as: UTF8.self)
        while text.last == "\n" { text.removeLast() }
        let what = switch header.kind {
        case .access: "access"
        case .slow: "slow log"
        default: header.stream == 1 ? "stdout" : "stderr"
        }
        log(.notice, "child \(header.pid) of a pool removed by a reload: \(what): \(text)")
        return true
    }

    private func writeRecord(_ payload: UnsafeRawBufferPointer, to file: LogFile?, addNewline: Bool) -> Bool {
        guard let file else {
            counts.dropped += 1
            return false
        }
        let ok: Bool
        if addNewline && payload.last != 0x0A {
            batch.removeAll(keepingCapacity: true)
            batch.append(contentsOf: payload)
            batch.append(0x0A)
            ok = batch.withUnsafeBytes { file.write($0) }
        } else {
            ok = file.write(payload)
        }
        if !ok { counts.dropped += 1 }
        return ok
    }

    // MARK: worker output

    /// How the lines of one stream look: `head` goes before each piece
    /// (level prefix, php-fpm's message prefix and the opening quote), and
    /// `room` pieces of text fit in one line.
    private struct Decoration {
        var decorate: Bool
        var head: [UInt8]
        var room: Int
    }

    private func decoration(pool: Int, pid: Int32, stream: UInt8) -> Decoration {
        guard config.pools[pool].decorateWorkersOutput else {
            return Decoration(decorate: false, head: [], room: max(limit - 1, 1))
        }
        var head = levelPrefix()
        // php-fpm's STREAM_SET_MSG_PREFIX_FMT: `[pool %s] child %d said into %s: `.
        head += Array("[pool \(config.pools[pool].name)] child \(pid) said into \(stream == 1 ? "stdout" : "stderr"): ".utf8)
        head.append(0x22)
        // log_limit less the head, the closing quote and the newline.
        return Decoration(decorate: true, head: head, room: max(limit - head.count - 2, 1))
    }

    private func routeOutput(_ header: LogRecordHeader, _ payload: UnsafeRawBufferPointer) -> Bool {
        guard let poolIndex = positions[Int(header.pool)], poolIndex < config.pools.count else {
            // A pool a reload dropped, finishing its last requests.
            return payload.isEmpty || routeFromDroppedPool(header, payload)
        }
        let key = StreamKey(pid: header.pid, stream: header.stream)
        var carry = pending.removeValue(forKey: key)?.bytes ?? []
        let style = decoration(pool: poolIndex, pid: header.pid, stream: header.stream)
        batch.removeAll(keepingCapacity: true)

        if payload.isEmpty {
            // The stream closed: its unfinished line is complete now.
            if !carry.isEmpty { emitLine(carry[...], style) }
            return flushBatch()
        }

        var start = 0
        while let nl = payload[start...].firstIndex(of: 0x0A) {
            let piece = UnsafeRawBufferPointer(rebasing: payload[start..<nl])
            if carry.isEmpty {
                emitLine(piece, style)
            } else {
                carry.append(contentsOf: piece)
                emitLine(carry[...], style)
                carry.removeAll(keepingCapacity: true)
            }
            start = nl + 1
        }
        if start < payload.count {
            carry.append(contentsOf: UnsafeRawBufferPointer(rebasing: payload[start...]))
            // Bounded: what does not fit in one line is written now, as
            // php-fpm's stream does when its buffer reaches log_limit.
            if carry.count > style.room {
                let whole = (carry.count - 1) / style.room * style.room
                emitPieces(carry[..<whole], style)
                carry.removeFirst(whole)
            }
            if pending.count >= Self.maxPendingStreams { emitAllPending() }
            pending[key] = Pending(pool: poolIndex, bytes: carry)
        }
        return flushBatch()
    }

    /// Writes the lines collected in `batch` with one write(2).
    @discardableResult
    private func flushBatch() -> Bool {
        guard !batch.isEmpty else { return true }
        guard case .file(let f) = errorTarget else {
            batch.removeAll(keepingCapacity: true)
            return true
        }
        let ok = batch.withUnsafeBytes { f.write($0) }
        batch.removeAll(keepingCapacity: true)
        if !ok { counts.dropped += 1 }
        return ok
    }

    /// Appends every pending partial line to `batch` and forgets them.
    private func emitAllPending() {
        let keys = pending.keys.sorted { ($0.pid, $0.stream) < ($1.pid, $1.stream) }
        for key in keys {
            guard let p = pending[key] else { continue }
            emitLine(p.bytes[...], decoration(pool: p.pool, pid: key.pid, stream: key.stream))
        }
        pending.removeAll()
    }

    /// `[date] WARNING: ` for files, `[WARNING] ` for syslog.
    private func levelPrefix() -> [UInt8] {
        switch errorTarget {
        case .file:
            let second = clock() / 1_000_000
            if second != stampSecond {
                stampSecond = second
                stampPrefix = Array("[\(ErrorLog.timestamp(second * 1_000_000))] \(LogLevel.warning.label): ".utf8)
            }
            return stampPrefix
        case .syslog:
            return Array("[\(LogLevel.warning.label)] ".utf8)
        }
    }

    /// One logical line of output: wrapped into pieces.
    private func emitLine<C: Collection>(_ text: C, _ style: Decoration) where C.Element == UInt8 {
        if text.isEmpty {
            // php-fpm writes an empty decorated line as `""`, drops a bare one.
            if style.decorate { emitPiece(EmptyCollection<UInt8>(), style) }
            return
        }
        emitPieces(text, style)
    }

    private func emitPieces<C: Collection>(_ text: C, _ style: Decoration) where C.Element == UInt8 {
        var rest = text[...]
        while !rest.isEmpty {
            let piece = rest.prefix(style.room)
            emitPiece(piece, style)
            rest = rest.dropFirst(piece.count)
        }
    }

    /// One line: appended to `batch` (files) or sent to syslog.
    private func emitPiece<C: Collection>(_ piece: C, _ style: Decoration) where C.Element == UInt8 {
        counts.output += 1
        switch errorTarget {
        case .file:
            batch.append(contentsOf: style.head)
            batch.append(contentsOf: piece)
            if style.decorate { batch.append(0x22) }
            batch.append(0x0A)
        case .syslog(let s):
            var message = style.head
            message.append(contentsOf: piece)
            if style.decorate { message.append(0x22) }
            message.withUnsafeBytes { s.send(.warning, $0) }
        }
    }

    // MARK: files

    /// Every file collects records (`LogFile.buffersWrites`) until the next
    /// `flushAll()`; the agent flushes after each batch from the channel.
    public var buffersWrites = false {
        didSet { for file in files.values { file.buffersWrites = buffersWrites } }
    }

    /// Writes what the files collected.
    public func flushAll() {
        for file in files.values { file.flush() }
    }

    /// The file for `path`, shared with every other user of the same path.
    private func file(_ path: String) throws -> LogFile {
        if let f = files[path] { return f }
        let f = try LogFile(path: path, maxSize: config.global.logMaxSize, maxFiles: config.global.logMaxFiles)
        // Not logged at once: the error log may be the file being written.
        f.onError = { [unowned self] message in self.deferred.append(message) }
        f.buffersWrites = buffersWrites
        files[path] = f
        return f
    }

    private func openPoolFiles(_ index: Int) {
        let pool = config.pools[index]
        if let path = pool.accessLog { accessFiles[index] = openPoolFile(path, what: "access log") }
        if let path = pool.slowlog { slowFiles[index] = openPoolFile(path, what: "slowlog") }
    }

    /// php-fpm: `failed to open access log (path): reason (errno)`.
    private func openPoolFile(_ path: String, what: String) -> LogFile? {
        do {
            return try file(path)
        } catch {
            log(.error, "failed to open \(what) (\(path)): \(Self.reason(error))")
            return nil
        }
    }

    /// `No such file or directory (2)` for a SystemError, else its description.
    static func reason(_ error: Error) -> String {
        if let e = error as? SystemError { return "\(SystemError.message(e.errno)) (\(e.errno))" }
        return "\(error)"
    }
}

extension GlobalConfig {
    /// True when the error log is not a file (stderr or syslog).
    var isStderrOrSyslog: Bool {
        guard let path = errorLog else { return true }
        return LogRouter.isSyslog(path)
    }
}
