// php-fpm's `access.format` for any FastCGI app: a pure formatter (parse once
// at config load, render one line per request into a caller's buffer), kept
// apart from the I/O that ships the line to the agent.
//
// The escapes follow php-fpm's fpm_log_write (sapi/fpm/fpm/fpm_log.c) and the
// `access.format` notes in sapi/fpm/www.conf.in:
//
//   %%  a '%'
//   %C  CPU used by the request, percent, "%.2f"; %{total}C (default),
//       %{user}C, %{system}C
//   %d  duration; %{seconds}d (default, "%.3f"), %{milliseconds}d /
//       %{milli}d (and the old spellings miliseconds / mili, "%.3f"),
//       %{microseconds}d / %{micro}d (integer)
//   %e  %{NAME}e: the request's FastCGI param NAME; "-" when absent
//   %f  script filename ("-" when empty)
//   %l  content length of the request (CONTENT_LENGTH)
//   %m  method ("-" when empty)
//   %M  memory; %{bytes}M (default), %{kilobytes}M / %{kilo}M,
//       %{megabytes}M / %{mega}M (integer division by 1024)
//   %n  pool name ("-" when empty)
//   %o  %{Name}o: a header of the app's response; "-" when absent or empty
//       (php-fpm matches "Name: " exactly; here the name is matched
//       case-insensitively and blanks around the colon are allowed)
//   %p  pid of the worker, %P pid of its parent (the master)
//   %q  query string, %Q "?" when there is a query string
//   %r  request URI without the query string
//   %R  remote address ("-" when empty)
//   %s  status code
//   %t  when the request was received, %T when the line is written; strftime
//       in local time, %{format}t, default "%d/%b/%Y:%H:%M:%S %z"
//   %u  remote user
//
// Modifier names are case-insensitive. php-fpm checks the format when the
// configuration is loaded and refuses to start on an unknown escape, a bad
// modifier, braces on an escape that takes none, %e / %o without a name, or
// an unclosed brace; `init` throws for the same cases. A lone '%' at the end
// is ignored, as in php-fpm. A line longer than 1024 bytes (FPM_LOG_BUFFER)
// is cut there; an empty line is not written at all.

import FastCGI
import Glibc
import Synchronization

// MARK: - Record

/// Where `%{NAME}e` finds a request's param, looked up only when the format
/// asks for one.
public protocol AccessParamSource {
    /// The value of the FastCGI param `name`, or nil when the request has none.
    func param(_ name: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer?
}

/// A FastCGI PARAMS block (name-value pairs) as an `AccessParamSource`: each
/// lookup scans the pairs; nothing is indexed up front.
public struct FastCGIParamBlock: AccessParamSource {
    public var raw: UnsafeRawBufferPointer

    public init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

    public func param(_ name: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var offset = 0
        do {
            while let pair = try NameValuePairs.nextPair(in: raw, at: &offset) {
                if pair.name.count == name.count
                    && memcmp(raw.baseAddress! + pair.name.lowerBound, name.baseAddress!, name.count) == 0
                {
                    return UnsafeRawBufferPointer(rebasing: raw[pair.value])
                }
            }
        } catch {
            return nil
        }
        return nil
    }
}

/// What the worker knows about a finished request. The byte slices point into
/// the worker's own buffers and need to stay valid only while `render` runs;
/// an empty slice means "not set".
public struct AccessRecord {
    /// Realtime µs when the request was received (`%t`).
    public var startedAtMicros: Int64 = 0
    /// Realtime µs when the request finished, i.e. when the line is written (`%T`).
    public var endedAtMicros: Int64 = 0
    /// Wall-clock duration of the request (`%d`).
    public var durationMicros: UInt64 = 0
    /// CPU used by the request as a percentage of its duration (`%C`); nil prints "-".
    public var cpuUserPercent: Double? = nil
    public var cpuSystemPercent: Double? = nil
    public var cpuTotalPercent: Double? = nil
    /// Memory of the app after the request (`%M`; php-fpm prints PHP's peak
    /// allocation, which an arbitrary app has no equivalent of); nil prints "-".
    public var memoryBytes: UInt64? = nil
    /// The HTTP status of the response (`%s`).
    public var status: Int = 0
    /// CONTENT_LENGTH of the request (`%l`).
    public var contentLength: UInt64 = 0
    /// `%n`.
    public var pool: String = ""
    /// `%p` and `%P`.
    public var workerPID: Int32 = 0
    public var masterPID: Int32 = 0
    /// `%m`, `%r` (the URI's path, without the query, as in php-fpm), `%q`, `%f`.
    public var method = UnsafeRawBufferPointer(start: nil, count: 0)
    public var uri = UnsafeRawBufferPointer(start: nil, count: 0)
    public var query = UnsafeRawBufferPointer(start: nil, count: 0)
    public var script = UnsafeRawBufferPointer(start: nil, count: 0)
    /// `%R`. php-fpm prints the address of the FastCGI peer (the web server;
    /// "-" over a unix socket), not REMOTE_ADDR; the worker chooses.
    public var remoteAddr = UnsafeRawBufferPointer(start: nil, count: 0)
    /// `%u`. php-fpm prints the user PHP took from a Basic Authorization
    /// header (PHP_AUTH_USER); for any app, REMOTE_USER is the equivalent.
    public var user = UnsafeRawBufferPointer(start: nil, count: 0)
    /// The CGI response head the app sent (header lines, up to and possibly
    /// including the empty line), searched by `%{Name}o`.
    public var responseHead = UnsafeRawBufferPointer(start: nil, count: 0)
    /// Where `%{NAME}e` looks; nil prints "-".
    public var params: (any AccessParamSource)? = nil

    public init() {}
}

// MARK: - Errors

/// A format php-fpm would refuse; `escape` is the offending escape as written.
public struct AccessLogFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    public var escape: String
    public var message: String

    public init(escape: String, message: String) {
        self.escape = escape
        self.message = message
    }

    public var description: String { message }
}

// MARK: - Format

public struct AccessLogFormat: Sendable {
    /// php-fpm's FPM_LOG_BUFFER: the longest line, without its newline.
    public static let defaultLineLimit = 1024
    /// php-fpm's default `access.format`.
    public static let defaultFormat = "%R - %u %t \"%m %r\" %s"
    /// The strftime format of `%t` and `%T` without braces.
    public static let defaultTimeFormat = "%d/%b/%Y:%H:%M:%S %z"

    /// What `render` did.
    public enum Outcome: Sendable, Equatable {
        case written
        /// Written, cut at the line limit (php-fpm logs a notice then).
        case truncated
        /// Nothing appended: the line was empty.
        case empty
    }

    enum CPUPart: Sendable { case user, system, total }
    enum DurationUnit: Sendable { case seconds, milliseconds, microseconds }
    enum MemoryUnit: Sendable { case bytes, kilobytes, megabytes }

    enum Piece: Sendable {
        /// Bytes of `text`.
        case literal(Range<Int>)
        case cpu(CPUPart)
        case duration(DurationUnit)
        /// The param whose name is these bytes of `text`.
        case param(Range<Int>)
        case script
        case contentLength
        case method
        case memory(MemoryUnit)
        case pool
        /// The response header whose name is these bytes of `text`.
        case header(Range<Int>)
        case workerPID
        case masterPID
        case query
        case queryMark
        case uri
        case remoteAddr
        case status
        /// Slot in `timeFormats` and the cache; `received` is %t, else %T.
        case time(slot: Int, received: Bool)
        case user
    }

    let pieces: [Piece]
    /// Literal text and the names %e and %o look up.
    let text: [UInt8]
    /// NUL-terminated strftime formats of the time pieces.
    let timeFormats: [[CChar]]
    let cache: TimeCache?
    public let lineLimit: Int
    /// The format as configured.
    public let format: String

    /// Parses `format` once, at configuration load.
    public init(_ format: String, lineLimit: Int = AccessLogFormat.defaultLineLimit) throws(AccessLogFormatError) {
        self.format = format
        self.lineLimit = max(lineLimit, 0)
        var parser = Parser(Array(format.utf8))
        try parser.run()
        pieces = parser.pieces
        text = parser.text
        timeFormats = parser.timeFormats
        cache = parser.timeFormats.isEmpty ? nil : TimeCache(slots: parser.timeFormats.count)
    }

    /// Appends the line for `r` and a newline to `out`; nothing when the line
    /// is empty. The line is built in a stack buffer of `lineLimit` bytes (as
    /// php-fpm does) and appended once: nothing is allocated beyond the growth
    /// of `out`.
    @discardableResult
    public func render(_ r: AccessRecord, into out: inout [UInt8]) -> Outcome {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: max(lineLimit, 1)) { buffer in
            var line = LineWriter(base: buffer.baseAddress!, capacity: lineLimit)
            text.withUnsafeBytes { text in
                for piece in pieces {
                    renderPiece(piece, r, text, &line)
                    if line.cut { break }
                }
            }
            if line.count == 0 { return .empty }
            out.append(contentsOf: UnsafeBufferPointer(start: buffer.baseAddress, count: line.count))
            out.append(UInt8(ascii: "\n"))
            return line.cut ? .truncated : .written
        }
    }

    // MARK: Rendering

    @inline(__always)
    private func renderPiece(
        _ piece: Piece, _ r: AccessRecord, _ text: UnsafeRawBufferPointer, _ line: inout LineWriter
    ) {
        switch piece {
        case .literal(let range):
            line.write(UnsafeRawBufferPointer(rebasing: text[range]))
        case .cpu(let part):
            let value: Double?
            switch part {
            case .user: value = r.cpuUserPercent
            case .system: value = r.cpuSystemPercent
            case .total: value = r.cpuTotalPercent
            }
            if let value { line.fixed(value, decimals: 2) } else { line.byte(Self.dash) }
        case .duration(let unit):
            // Computed as php-fpm does, from seconds and microseconds.
            let seconds = r.durationMicros / 1_000_000
            let micros = r.durationMicros % 1_000_000
            switch unit {
            case .seconds:
                line.fixed(Double(seconds) + Double(micros) / 1_000_000.0, decimals: 3)
            case .milliseconds:
                line.fixed(Double(seconds) * 1000.0 + Double(micros) / 1000.0, decimals: 3)
            case .microseconds:
                line.decimal(r.durationMicros)
            }
        case .param(let range):
            if let value = r.params?.param(UnsafeRawBufferPointer(rebasing: text[range])) {
                line.write(value)
            } else {
                line.byte(Self.dash)
            }
        case .script:
            line.writeOrDash(r.script)
        case .contentLength:
            line.decimal(r.contentLength)
        case .method:
            line.writeOrDash(r.method)
        case .memory(let unit):
            guard let bytes = r.memoryBytes else { line.byte(Self.dash); break }
            switch unit {
            case .bytes: line.decimal(bytes)
            case .kilobytes: line.decimal(bytes / 1024)
            case .megabytes: line.decimal(bytes / 1024 / 1024)
            }
        case .pool:
            if r.pool.isEmpty {
                line.byte(Self.dash)
            } else if r.pool.utf8.withContiguousStorageIfAvailable({ line.write(UnsafeRawBufferPointer($0)) }) == nil {
                for b in r.pool.utf8 { line.byte(b) }
            }
        case .header(let range):
            if let value = Self.findHeader(UnsafeRawBufferPointer(rebasing: text[range]), in: r.responseHead) {
                line.write(value)
            } else {
                line.byte(Self.dash)
            }
        case .workerPID:
            line.signed(Int64(r.workerPID))
        case .masterPID:
            line.signed(Int64(r.masterPID))
        case .query:
            line.write(r.query)
        case .queryMark:
            if r.query.count > 0 { line.byte(UInt8(ascii: "?")) }
        case .uri:
            line.write(r.uri)
        case .remoteAddr:
            line.writeOrDash(r.remoteAddr)
        case .status:
            line.signed(Int64(r.status))
        case .time(let slot, let received):
            appendTime(slot: slot, micros: received ? r.startedAtMicros : r.endedAtMicros, &line)
        case .user:
            line.write(r.user)
        }
    }

    static let dash = UInt8(ascii: "-")

    /// The line being built: writes past `capacity` are dropped and set `cut`.
    struct LineWriter {
        let base: UnsafeMutablePointer<UInt8>
        let capacity: Int
        var count = 0
        var cut = false

        init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
            self.base = base
            self.capacity = capacity
        }

        @inline(__always)
        mutating func write(_ bytes: UnsafeRawBufferPointer) {
            guard let source = bytes.baseAddress else { return }
            var n = bytes.count
            let room = capacity - count
            if n > room {
                n = room
                cut = true
            }
            if n > 0 {
                UnsafeMutableRawPointer(base + count).copyMemory(from: source, byteCount: n)
                count += n
            }
        }

        @inline(__always)
        mutating func writeOrDash(_ bytes: UnsafeRawBufferPointer) {
            if bytes.count == 0 { byte(AccessLogFormat.dash) } else { write(bytes) }
        }

        @inline(__always)
        mutating func byte(_ b: UInt8) {
            if count < capacity {
                base[count] = b
                count += 1
            } else {
                cut = true
            }
        }

        mutating func decimal(_ value: UInt64) {
            var digits = 1
            var v = value
            while v >= 10 {
                v /= 10
                digits += 1
            }
            if digits <= capacity - count {
                var p = base + count + digits
                v = value
                repeat {
                    p -= 1
                    p.pointee = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                    v /= 10
                } while v != 0
                count += digits
            } else {
                // Does not fit: the leading digits that do.
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digitsBuffer in
                    var i = 20
                    v = value
                    repeat {
                        i -= 1
                        digitsBuffer[i] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v % 10)
                        v /= 10
                    } while v != 0
                    write(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: digitsBuffer[i ..< 20])))
                }
            }
        }

        mutating func signed(_ value: Int64) {
            if value < 0 { byte(UInt8(ascii: "-")) }
            decimal(value.magnitude)
        }

        /// `value` as printf's "%.Nf" prints it (glibc: the exact binary
        /// value, rounded to nearest, ties to even), for N = 1...3, without
        /// going through printf.
        mutating func fixed(_ value: Double, decimals: Int) {
            if value.sign == .minus { byte(UInt8(ascii: "-")) }
            if value.isNaN {
                byte(UInt8(ascii: "n")); byte(UInt8(ascii: "a")); byte(UInt8(ascii: "n"))
                return
            }
            let a = value.magnitude
            if a.isInfinite {
                byte(UInt8(ascii: "i")); byte(UInt8(ascii: "n")); byte(UInt8(ascii: "f"))
                return
            }
            let scaleInt: UInt64 = decimals >= 3 ? 1000 : decimals == 2 ? 100 : 10
            let scale = Double(scaleInt)
            let scaled: UInt64
            if a * scale < 4_000_000_000_000_000 {  // well inside 2^53: k and k + 0.5 are exact
                // k = floor of the exact product, then round half to even on
                // the exact remainder (a fused multiply-add keeps its sign exact).
                var k = (a * scale).rounded(.down)
                while (-k).addingProduct(a, scale) < 0 { k -= 1 }
                while (-(k + 1)).addingProduct(a, scale) >= 0 { k += 1 }
                let rest = (-(k + 0.5)).addingProduct(a, scale)
                var n = UInt64(k)
                if rest > 0 || (rest == 0 && n & 1 == 1) { n += 1 }
                scaled = n
            } else {
                // Far beyond any CPU share or duration: the integer part only.
                decimal(a < 1.8e19 ? UInt64(a) : UInt64.max)
                byte(UInt8(ascii: "."))
                for _ in 0 ..< (decimals >= 3 ? 3 : max(decimals, 1)) { byte(UInt8(ascii: "0")) }
                return
            }
            decimal(scaled / scaleInt)
            byte(UInt8(ascii: "."))
            var fraction = scaled % scaleInt
            var divisor = scaleInt / 10
            while divisor > 0 {
                byte(UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: fraction / divisor))
                fraction %= divisor
                divisor /= 10
            }
        }
    }

    /// Runs `body` with a writer and appends what it wrote to `out` (tests).
    static func withWriter(_ out: inout [UInt8], _ body: (inout LineWriter) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { buffer in
            var line = LineWriter(base: buffer.baseAddress!, capacity: 64)
            body(&line)
            out.append(contentsOf: UnsafeBufferPointer(start: buffer.baseAddress, count: line.count))
        }
    }

    static func appendDecimal(_ value: UInt64, _ out: inout [UInt8]) {
        withWriter(&out) { $0.decimal(value) }
    }

    static func appendSigned(_ value: Int64, _ out: inout [UInt8]) {
        withWriter(&out) { $0.signed(value) }
    }

    static func appendFixed(_ value: Double, decimals: Int, _ out: inout [UInt8]) {
        withWriter(&out) { $0.fixed(value, decimals: decimals) }
    }

    /// The value of header `name` (ASCII, compared case-insensitively) in a
    /// CGI response head: the first such line whose value is not empty, with
    /// blanks around the value removed. The search stops at the empty line.
    static func findHeader(_ name: UnsafeRawBufferPointer, in head: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        let n = head.count
        guard n > 0, name.count > 0, let base = head.baseAddress else { return nil }
        let nameCount = name.count
        var lineStart = 0
        while lineStart < n {
            let remaining = n - lineStart
            let newline = memchr(base + lineStart, 0x0A, remaining)
            let lineEnd = newline.map { UnsafeRawPointer($0) - base } ?? n
            var end = lineEnd
            if end > lineStart && head[end - 1] == 0x0D { end -= 1 }
            if end == lineStart { return nil }
            if end - lineStart > nameCount && equalsIgnoringASCIICase(base + lineStart, name) {
                var i = lineStart + nameCount
                while i < end && (head[i] == 0x20 || head[i] == 0x09) { i += 1 }
                if i < end && head[i] == UInt8(ascii: ":") {
                    i += 1
                    while i < end && (head[i] == 0x20 || head[i] == 0x09) { i += 1 }
                    var valueEnd = end
                    while valueEnd > i && (head[valueEnd - 1] == 0x20 || head[valueEnd - 1] == 0x09) { valueEnd -= 1 }
                    if valueEnd > i { return UnsafeRawBufferPointer(rebasing: head[i ..< valueEnd]) }
                }
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    @inline(__always)
    private static func equalsIgnoringASCIICase(_ p: UnsafeRawPointer, _ name: UnsafeRawBufferPointer) -> Bool {
        for i in 0 ..< name.count {
            var a = p.load(fromByteOffset: i, as: UInt8.self)
            var b = name[i]
            if a >= 0x41 && a <= 0x5A { a |= 0x20 }
            if b >= 0x41 && b <= 0x5A { b |= 0x20 }
            if a != b { return false }
        }
        return true
    }
}

// MARK: - Time

extension AccessLogFormat {
    /// The last formatted second of each time piece: strftime runs at most
    /// once per second per piece (every strftime conversion has a resolution
    /// of a second, so the cached text is exact).
    final class TimeCache: Sendable {
        struct Slot {
            var second: Int64 = .min
            var bytes: [UInt8] = []
        }

        let slots: Mutex<[Slot]>

        init(slots count: Int) {
            var slots = [Slot](repeating: Slot(), count: count)
            for i in slots.indices { slots[i].bytes.reserveCapacity(128) }
            self.slots = Mutex(slots)
        }
    }

    /// Appends the text of time piece `slot` for the second of `micros`.
    @inline(__always)
    func appendTime(slot: Int, micros: Int64, _ line: inout LineWriter) {
        guard let cache else { return }
        let second = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        cache.slots.withLock { slots in
            if slots[slot].second != second {
                slots[slot].second = second
                slots[slot].bytes.removeAll(keepingCapacity: true)
                Self.strftime(second, timeFormats[slot], into: &slots[slot].bytes)
            }
            slots[slot].bytes.withUnsafeBytes { line.write($0) }
        }
    }

    /// strftime(3) in local time into `bytes`, at most 127 bytes like
    /// php-fpm's 129-byte buffer (a longer result prints nothing).
    static func strftime(_ second: Int64, _ format: [CChar], into bytes: inout [UInt8]) {
        var t = time_t(second)
        var tm = tm()
        localtime_r(&t, &tm)
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 128) { buffer in
            let n = format.withUnsafeBufferPointer { f in
                Glibc.strftime(buffer.baseAddress!, 128, f.baseAddress!, &tm)
            }
            buffer.withMemoryRebound(to: UInt8.self) { b in
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: b[0 ..< n]))
            }
        }
    }
}

// MARK: - Parsing

extension AccessLogFormat {
    struct Parser {
        let bytes: [UInt8]
        var index = 0
        var pieces: [Piece] = []
        var text: [UInt8] = []
        var timeFormats: [[CChar]] = []

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        mutating func literal(_ b: UInt8) {
            text.append(b)
            if case .literal(let range)? = pieces.last, range.upperBound == text.count - 1 {
                pieces[pieces.count - 1] = .literal(range.lowerBound ..< text.count)
            } else {
                pieces.append(.literal(text.count - 1 ..< text.count))
            }
        }

        /// Stores `name` in `text` (not as a literal) and returns its range.
        mutating func store(_ name: ArraySlice<UInt8>) -> Range<Int> {
            let start = text.count
            text.append(contentsOf: name)
            return start ..< text.count
        }

        mutating func run() throws(AccessLogFormatError) {
            let n = bytes.count
            while index < n {
                let b = bytes[index]
                guard b == UInt8(ascii: "%") else {
                    literal(b)
                    index += 1
                    continue
                }
                let escapeStart = index
                index += 1
                // php-fpm ignores a '%' that ends the format.
                guard index < n else { return }
                var argument: ArraySlice<UInt8>? = nil
                if bytes[index] == UInt8(ascii: "{") {
                    let open = index + 1
                    guard let close = bytes[open...].firstIndex(of: UInt8(ascii: "}")) else {
                        throw error(escapeStart, n, "missing closing brace in the access.format ('\(show(escapeStart, n))')")
                    }
                    argument = bytes[open ..< close]
                    index = close + 1
                    guard index < n else {
                        throw error(escapeStart, n, "missing escape letter after '\(show(escapeStart, n))' in the access.format")
                    }
                }
                let letterStart = index
                index = scalarEnd(letterStart)
                try escape(letterStart, argument, escapeStart)
            }
        }

        /// The end of the UTF-8 sequence starting at `i` (for messages).
        func scalarEnd(_ i: Int) -> Int {
            var j = i + 1
            while j < bytes.count && bytes[j] & 0xC0 == 0x80 { j += 1 }
            return j
        }

        func show(_ start: Int, _ end: Int) -> String {
            String(decoding: bytes[start ..< end], as: UTF8.self)
        }

        func error(_ start: Int, _ end: Int, _ message: String) -> AccessLogFormatError {
            AccessLogFormatError(escape: show(start, end), message: message)
        }

        static func lowercased(_ a: ArraySlice<UInt8>) -> String {
            String(decoding: a.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }, as: UTF8.self)
        }

        /// Handles the escape whose letter starts at `letterStart` and ends at
        /// `index`; `start` is its '%'.
        mutating func escape(
            _ letterStart: Int, _ argument: ArraySlice<UInt8>?, _ start: Int
        ) throws(AccessLogFormatError) {
            let letter = bytes[letterStart]
            let written = show(start, index)
            let letterText = show(letterStart, index)
            // Empty braces count as none, as in php-fpm.
            func noArgument() throws(AccessLogFormatError) {
                if let argument, !argument.isEmpty {
                    throw AccessLogFormatError(
                        escape: written, message: "braces are not allowed for modifier %\(letterText) ('\(written)')")
                }
            }
            func modifier() -> String? {
                guard let argument, !argument.isEmpty else { return nil }
                return Parser.lowercased(argument)
            }
            switch letter {
            case UInt8(ascii: "%"):
                try noArgument()
                literal(UInt8(ascii: "%"))
            case UInt8(ascii: "C"):
                switch modifier() {
                case nil, "total": pieces.append(.cpu(.total))
                case "user": pieces.append(.cpu(.user))
                case "system": pieces.append(.cpu(.system))
                default:
                    throw AccessLogFormatError(
                        escape: written,
                        message: "only 'total', 'user' or 'system' are allowed as a modifier for %C ('\(written)')")
                }
            case UInt8(ascii: "d"):
                switch modifier() {
                case nil, "seconds": pieces.append(.duration(.seconds))
                case "milliseconds", "milli", "miliseconds", "mili": pieces.append(.duration(.milliseconds))
                case "microseconds", "micro": pieces.append(.duration(.microseconds))
                default:
                    throw AccessLogFormatError(
                        escape: written,
                        message: "only 'seconds', 'milli', 'milliseconds', 'micro' or 'microseconds' are allowed as a modifier for %d ('\(written)')")
                }
            case UInt8(ascii: "e"):
                guard let argument, !argument.isEmpty else {
                    throw AccessLogFormatError(
                        escape: written,
                        message: "the name of the param must be set between braces for %e, e.g. %{HTTP_HOST}e ('\(written)')")
                }
                pieces.append(.param(store(argument)))
            case UInt8(ascii: "f"): try noArgument(); pieces.append(.script)
            case UInt8(ascii: "l"): try noArgument(); pieces.append(.contentLength)
            case UInt8(ascii: "m"): try noArgument(); pieces.append(.method)
            case UInt8(ascii: "M"):
                switch modifier() {
                case nil, "bytes": pieces.append(.memory(.bytes))
                case "kilobytes", "kilo": pieces.append(.memory(.kilobytes))
                case "megabytes", "mega": pieces.append(.memory(.megabytes))
                default:
                    throw AccessLogFormatError(
                        escape: written,
                        message: "only 'bytes', 'kilo', 'kilobytes', 'mega' or 'megabytes' are allowed as a modifier for %M ('\(written)')")
                }
            case UInt8(ascii: "n"): try noArgument(); pieces.append(.pool)
            case UInt8(ascii: "o"):
                guard let argument, !argument.isEmpty else {
                    throw AccessLogFormatError(
                        escape: written,
                        message: "the name of the header must be set between braces for %o, e.g. %{Content-Type}o ('\(written)')")
                }
                pieces.append(.header(store(argument)))
            case UInt8(ascii: "p"): try noArgument(); pieces.append(.workerPID)
            case UInt8(ascii: "P"): try noArgument(); pieces.append(.masterPID)
            case UInt8(ascii: "q"): try noArgument(); pieces.append(.query)
            case UInt8(ascii: "Q"): try noArgument(); pieces.append(.queryMark)
            case UInt8(ascii: "r"): try noArgument(); pieces.append(.uri)
            case UInt8(ascii: "R"): try noArgument(); pieces.append(.remoteAddr)
            case UInt8(ascii: "s"): try noArgument(); pieces.append(.status)
            case UInt8(ascii: "t"), UInt8(ascii: "T"):
                var format: [CChar]
                if let argument, !argument.isEmpty {
                    format = argument.map { CChar(bitPattern: $0) }
                } else {
                    format = AccessLogFormat.defaultTimeFormat.utf8.map { CChar(bitPattern: $0) }
                }
                format.append(0)
                pieces.append(.time(slot: timeFormats.count, received: letter == UInt8(ascii: "t")))
                timeFormats.append(format)
            case UInt8(ascii: "u"): try noArgument(); pieces.append(.user)
            default:
                throw AccessLogFormatError(
                    escape: written, message: "invalid escape %\(letterText) in the access.format ('\(written)')")
            }
        }
    }
}
