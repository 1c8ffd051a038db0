import DroverConfig
import DroverCore
import Glibc

// status.listen (design §6): a minimal HTTP/1.1 server in the agent, so
// Prometheus and Kubernetes probes need no web server and get an answer
// while every worker is busy.
//
//   GET /status[?json|xml|html|openmetrics|full]   every pool on one page
//   GET /metrics                                   OpenMetrics, a `pool` label per sample
//   GET /ping                                      200 "pong"
//
// HEAD is answered like GET without the body; other methods on these paths
// get 405, other paths 404, malformed requests 400 (and the connection is
// closed). Connections are kept alive as HTTP/1.1 says (HTTP/1.0 only with
// "Connection: keep-alive"; "Connection: close" is honoured), pipelined
// requests are answered in order, a request head may hold 8 KiB, and a
// connection idle for 15 s is closed.
//
// The request parser, the routing and the response bytes are pure functions
// (HTTPParser, HTTPStatusRoutes, HTTPResponse.serialized), unit-tested
// without sockets; HTTPStatusServer and HTTPSession only move bytes.

// MARK: - Requests

public struct HTTPHeader: Equatable, Sendable {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// A parsed request line and header block.
public struct HTTPRequestHead: Equatable, Sendable {
    public var method: String
    /// The request-target as sent.
    public var target: String
    /// The target's path ("/status"); "*" for the asterisk form.
    public var path: String
    /// What follows "?" (without it); nil when there is no "?".
    public var query: String?
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 (and any later 1.x).
    public var minorVersion: Int
    /// Whether the client wants the connection kept after this request.
    public var keepAlive: Bool
    /// The body's length from Content-Length (0 when none).
    public var contentLength: Int
    /// The body is chunked (Transfer-Encoding); its length is unknown here.
    public var chunked: Bool
    public var headers: [HTTPHeader]

    public init(method: String, target: String, path: String, query: String?, minorVersion: Int,
                keepAlive: Bool, contentLength: Int = 0, chunked: Bool = false, headers: [HTTPHeader] = []) {
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.minorVersion = minorVersion
        self.keepAlive = keepAlive
        self.contentLength = contentLength
        self.chunked = chunked
        self.headers = headers
    }

    /// The first header called `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return headers.first { $0.name.lowercased() == wanted }?.value
    }
}

public enum HTTPParseResult: Equatable, Sendable {
    /// More bytes are needed.
    case incomplete
    /// A whole head, `headLength` bytes long (a body, if any, follows).
    case request(HTTPRequestHead, headLength: Int)
    /// Answer with `status` and close the connection.
    case invalid(status: Int, reason: String)
}

/// An HTTP/1.1 request head parser (RFC 9112) that is strict where
/// leniency lets requests be misread (request smuggling) and lenient where
/// the RFC allows it (bare LF line ends, empty lines before the request).
public enum HTTPParser {
    /// Longest request head (request line, headers, empty line).
    public static let maxHeadSize = 8 * 1024
    /// Most header fields in one request.
    public static let maxHeaders = 100

    private static let lf = UInt8(ascii: "\n")
    private static let cr = UInt8(ascii: "\r")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")

    /// Parses the request head at the start of `bytes`.
    public static func parse(_ bytes: ArraySlice<UInt8>) -> HTTPParseResult {
        let start = bytes.startIndex
        var index = start
        // RFC 9112 §2.2: empty lines before the request line are ignored.
        while index < bytes.endIndex, bytes[index] == cr || bytes[index] == lf {
            if bytes[index] == cr {
                guard index + 1 < bytes.endIndex else { return .incomplete }
                guard bytes[index + 1] == lf else { return .invalid(status: 400, reason: "bare CR") }
                index += 2
            } else {
                index += 1
            }
            if index - start > maxHeadSize { return .invalid(status: 400, reason: "only empty lines") }
        }

        var lines: [Range<Int>] = []
        var headEnd: Int?
        var lineStart = index
        var cursor = index
        while cursor < bytes.endIndex {
            guard let newline = bytes[cursor...].firstIndex(of: lf) else { break }
            var lineEnd = newline
            if lineEnd > lineStart, bytes[lineEnd - 1] == cr { lineEnd -= 1 }
            if newline + 1 - start > maxHeadSize {
                return lines.isEmpty ? .invalid(status: 414, reason: "request line too long")
                    : .invalid(status: 431, reason: "request head too large")
            }
            if lineEnd == lineStart {
                headEnd = newline + 1
                break
            }
            lines.append(lineStart..<lineEnd)
            if lines.count > maxHeaders + 1 { return .invalid(status: 431, reason: "too many header fields") }
            lineStart = newline + 1
            cursor = lineStart
        }
        guard let headEnd else {
            if bytes.endIndex - start >= maxHeadSize {
                return lines.isEmpty ? .invalid(status: 414, reason: "request line too long")
                    : .invalid(status: 431, reason: "request head too large")
            }
            return .incomplete
        }
        guard let first = lines.first else { return .invalid(status: 400, reason: "no request line") }
        for line in lines where bytes[line].contains(cr) || bytes[line].contains(0) {
            return .invalid(status: 400, reason: "bare CR or NUL in the head")
        }

        // Request line: method SP request-target SP HTTP-version.
        let parts = bytes[first].split(separator: space, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            return .invalid(status: 400, reason: "malformed request line")
        }
        guard parts[0].allSatisfy(isTokenByte) else { return .invalid(status: 400, reason: "malformed method") }
        let minor: Int
        switch version(parts[2]) {
        case .some((1, let m)): minor = m == 0 ? 0 : 1
        case .some: return .invalid(status: 505, reason: "HTTP version not supported")
        case .none: return .invalid(status: 400, reason: "malformed HTTP version")
        }
        guard parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            return .invalid(status: 400, reason: "malformed request target")
        }
        let target = String(decoding: parts[1], as: UTF8.self)
        guard let (path, query) = split(target: target) else {
            return .invalid(status: 400, reason: "malformed request target")
        }

        var head = HTTPRequestHead(method: String(decoding: parts[0], as: UTF8.self), target: target,
                                   path: path, query: query, minorVersion: minor, keepAlive: minor == 1)
        var hosts = 0
        var contentLength: Int?
        var transferEncoding: String?
        var connectionTokens: [String] = []
        for line in lines.dropFirst() {
            let field = bytes[line]
            guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else {
                return .invalid(status: 400, reason: "malformed header field")
            }
            let name = field[field.startIndex..<colon]
            // No whitespace before the colon, no obsolete line folding.
            guard !name.isEmpty, name.allSatisfy(isTokenByte) else {
                return .invalid(status: 400, reason: "malformed header field name")
            }
            var value = field[(colon + 1)...]
            while let b = value.first, b == space || b == tab { value = value.dropFirst() }
            while let b = value.last, b == space || b == tab { value = value.dropLast() }
            guard value.allSatisfy({ $0 >= 0x20 && $0 != 0x7F || $0 == tab }) else {
                return .invalid(status: 400, reason: "control character in a header field")
            }
            let nameText = String(decoding: name, as: UTF8.self)
            let valueText = String(decoding: value, as: UTF8.self)
            head.headers.append(HTTPHeader(nameText, valueText))
            switch nameText.lowercased() {
            case "host":
                hosts += 1
            case "content-length":
                // A list of identical values is one value (RFC 9110 §8.6).
                for item in valueText.split(separator: ",", omittingEmptySubsequences: false) {
                    let digits = item.trimmingSpaces
                    guard !digits.isEmpty, digits.count <= 15, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                          let length = Int(digits) else {
                        return .invalid(status: 400, reason: "malformed Content-Length")
                    }
                    if let contentLength, contentLength != length {
                        return .invalid(status: 400, reason: "conflicting Content-Length")
                    }
                    contentLength = length
                }
            case "transfer-encoding":
                transferEncoding = (transferEncoding.map { $0 + "," } ?? "") + valueText
            case "connection":
                connectionTokens += valueText.split(separator: ",").map { $0.trimmingSpaces.lowercased() }
            default:
                break
            }
        }
        if minor == 1 && hosts != 1 || hosts > 1 {
            return .invalid(status: 400, reason: hosts == 0 ? "missing Host header" : "several Host headers")
        }
        if let transferEncoding {
            // RFC 9112 §6.1, §6.3: with Content-Length, in HTTP/1.0, or not
            // ending in chunked, the body's length cannot be known.
            let last = transferEncoding.split(separator: ",").last?.trimmingSpaces.lowercased()
            guard contentLength == nil, minor == 1, last == "chunked" else {
                return .invalid(status: 400, reason: "unusable Transfer-Encoding")
            }
            head.chunked = true
        }
        head.contentLength = contentLength ?? 0
        if connectionTokens.contains("close") {
            head.keepAlive = false
        } else if minor == 0 && connectionTokens.contains("keep-alive") {
            head.keepAlive = true
        }
        return .request(head, headLength: headEnd - start)
    }

    /// RFC 9110's tchar.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "A")...UInt8(ascii: "Z"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }

    /// "HTTP/1.1" → (1, 1); nil when not of the form HTTP/DIGIT.DIGIT.
    private static func version(_ bytes: ArraySlice<UInt8>) -> (Int, Int)? {
        let text = Array(bytes)
        guard text.count == 8, text[0..<5].elementsEqual("HTTP/".utf8), text[6] == UInt8(ascii: "."),
              let major = digit(text[5]), let minor = digit(text[7]) else { return nil }
        return (major, minor)
    }

    private static func digit(_ b: UInt8) -> Int? {
        b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") ? Int(b - UInt8(ascii: "0")) : nil
    }

    /// Path and query of an origin-form ("/a?b"), absolute-form
    /// ("http://host/a?b") or asterisk-form ("*") target; a fragment is dropped.
    static func split(target: String) -> (String, String?)? {
        if target == "*" { return ("*", nil) }
        var rest = Substring(target)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        if !rest.hasPrefix("/") {
            let lower = rest.lowercased()
            let scheme = lower.hasPrefix("http://") ? 7 : lower.hasPrefix("https://") ? 8 : 0
            guard scheme > 0 else { return nil }
            rest = rest.dropFirst(scheme)
            guard let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) else { return ("/", nil) }
            if rest[slash] == "?" { return ("/", String(rest[rest.index(after: slash)...])) }
            rest = rest[slash...]
        }
        guard let mark = rest.firstIndex(of: "?") else { return (String(rest), nil) }
        return (String(rest[..<mark]), String(rest[rest.index(after: mark)...]))
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs.
    fileprivate var trimmingSpaces: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}

// MARK: - Responses

public struct HTTPResponse: Equatable, Sendable {
    public var status: Int
    /// Everything but Date, Content-Length and Connection, which
    /// `serialized` writes.
    public var headers: [HTTPHeader]
    public var body: [UInt8]
    /// The connection must be closed after this response.
    public var close: Bool

    public init(status: Int, headers: [HTTPHeader] = [], body: [UInt8] = [], close: Bool = false) {
        self.status = status
        self.headers = headers
        self.body = body
        self.close = close
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 413: "Content Too Large"
        case 414: "URI Too Long"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Unknown"
        }
    }

    /// The bytes on the wire. `keepAlive` false adds "Connection: close";
    /// to an HTTP/1.0 client a kept connection is announced with
    /// "Connection: keep-alive". `headOnly` (HEAD) leaves the body out but
    /// keeps its Content-Length.
    public func serialized(headOnly: Bool, keepAlive: Bool, clientMinorVersion: Int, date: String) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(HTTPResponse.reason(status))\r\n"
        head += "Date: \(date)\r\n"
        for header in headers {
            head += header.name
            head += ": "
            head += header.value
            head += "\r\n"
        }
        head += "Content-Length: \(body.count)\r\n"
        if !keepAlive {
            head += "Connection: close\r\n"
        } else if clientMinorVersion == 0 {
            head += "Connection: keep-alive\r\n"
        }
        head += "\r\n"
        var out = Array(head.utf8)
        if !headOnly { out += body }
        return out
    }
}

/// An HTTP date (RFC 9110 §5.6.7, IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT".
public enum HTTPDate {
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    public static func format(_ epoch: Int64) -> String {
        var seconds = time_t(truncatingIfNeeded: epoch)
        var parts = tm()
        guard gmtime_r(&seconds, &parts) != nil else { return "Thu, 01 Jan 1970 00:00:00 GMT" }
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(parts.tm_wday) % 7]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon) % 12]) "
            + "\(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }

    public static func now() -> String { format(Int64(time(nil))) }
}

/// Which page a request gets.
public enum HTTPStatusRoutes {
    /// php-fpm's headers on its status and ping pages: never cached.
    static let noCache = [
        HTTPHeader("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        HTTPHeader("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"),
    ]

    /// The answer to `head`; `render` renders every pool as asked.
    public static func response(for head: HTTPRequestHead,
                                render: (StatusQuery) -> RenderedStatus) -> HTTPResponse {
        let query: StatusQuery
        switch head.path {
        case "/status": query = StatusQuery(queryString: head.query ?? "")
        case "/metrics": query = StatusQuery(format: .openmetrics)
        case "/ping": query = StatusQuery()
        default: return error(404)
        }
        guard head.method == "GET" || head.method == "HEAD" else {
            var response = error(405)
            response.headers.append(HTTPHeader("Allow", "GET, HEAD"))
            return response
        }
        if head.path == "/ping" {
            return HTTPResponse(status: 200, headers: [HTTPHeader("Content-Type", "text/plain")] + noCache,
                                body: Array("pong\n".utf8))
        }
        let page = render(query)
        return HTTPResponse(status: 200, headers: [HTTPHeader("Content-Type", page.contentType)] + noCache,
                            body: Array(page.body.utf8))
    }

    /// A plain-text error page; 400 and the other "cannot read this" answers close the connection.
    public static func error(_ status: Int, close: Bool? = nil) -> HTTPResponse {
        HTTPResponse(status: status, headers: [HTTPHeader("Content-Type", "text/plain")],
                     body: Array("\(HTTPResponse.reason(status))\n".utf8),
                     close: close ?? (status == 400 || status == 413 || status == 414 || status == 431 || status == 505))
    }
}

// MARK: - The server

/// The status.listen server: accepts connections and gives each an HTTPSession.
public final class HTTPStatusServer {
    /// A connection with no complete request for this long is closed.
    public static let idleTimeout: Double = 15
    /// A body up to this size is read and dropped (the connection is kept);
    /// beyond it the connection is closed after the answer.
    public static let maxDiscardedBody = 64 * 1024
    /// Reading stops while this many response bytes wait to be sent (a
    /// client pipelining requests without reading the answers).
    public static let maxPendingOutput = 1 << 20

    public let address: ListenAddress
    private let server: UVStreamServer

    public init(loop: UVLoop, address: ListenAddress, status: AgentStatus) throws {
        self.address = address
        server = try UVStreamServer(loop: loop, address: address, mode: 0o660) { connection in
            HTTPSession.start(connection, loop: loop, render: status.render)
        }
        server.maxConnections = 512
    }

    public func close() { server.close() }
}

/// One HTTP connection. It lives as long as its connection: the connection's
/// handlers hold it and are dropped when the connection closes.
final class HTTPSession {
    private let connection: UVConnection
    private let render: (StatusQuery) -> RenderedStatus
    private var timer: UVTimer?
    private var input: [UInt8] = []
    /// Body bytes still to be read and dropped.
    private var discard = 0
    private var closing = false
    private var paused = false
    /// The peer sent EOF: answer what is complete, then close.
    private var ended = false
    /// `input` up to here holds no complete head (reparsed only when a
    /// line end arrives after it, so a head sent byte by byte costs little).
    private var scanned = 0

    private init(connection: UVConnection, render: @escaping (StatusQuery) -> RenderedStatus) {
        self.connection = connection
        self.render = render
    }

    static func start(_ connection: UVConnection, loop: UVLoop, render: @escaping (StatusQuery) -> RenderedStatus) {
        let session = HTTPSession(connection: connection, render: render)
        session.timer = connection.closingTimer(loop, after: HTTPStatusServer.idleTimeout)
        connection.onData = { bytes in session.received(bytes) }
        connection.onEnd = { session.peerFinished() }
        connection.startReading()
    }

    private func received(_ bytes: [UInt8]) {
        guard !closing else { return }
        if discard > 0 && input.isEmpty {
            let n = min(discard, bytes.count)
            discard -= n
            input.append(contentsOf: bytes[n...])
        } else {
            input.append(contentsOf: bytes)
        }
        process()
    }

    private func process() {
        var consumed = 0
        defer {
            if consumed > 0 {
                input.removeFirst(consumed)
                scanned = max(0, scanned - consumed)
            }
        }
        while !closing && !paused {
            if discard > 0 {
                let n = min(discard, input.count - consumed)
                consumed += n
                discard -= n
                if discard > 0 { return }
            }
            guard consumed < input.count else { return }
            if scanned > consumed, input.count - consumed < HTTPParser.maxHeadSize,
               !input[scanned...].contains(UInt8(ascii: "\n")) {
                scanned = input.count
                return
            }
            switch HTTPParser.parse(input[consumed...]) {
            case .incomplete:
                scanned = input.count
                return
            case .invalid(let status, _):
                send(HTTPStatusRoutes.error(status, close: true), headOnly: false, keepAlive: false, minor: 1)
                finish()
                return
            case .request(let head, let headLength):
                consumed += headLength
                let response = HTTPStatusRoutes.response(for: head, render: render)
                var keep = head.keepAlive && !response.close
                // A body that is chunked, large, or that the client waits for
                // a 100 Continue to send (which never comes: the answer does
                // not need it) cannot be skipped reliably: close instead.
                if head.chunked || head.contentLength > HTTPStatusServer.maxDiscardedBody
                    || (head.contentLength > 0 && head.header("Expect") != nil) {
                    keep = false
                } else {
                    discard = head.contentLength
                }
                send(response, headOnly: head.method == "HEAD", keepAlive: keep, minor: head.minorVersion)
                timer?.start(after: HTTPStatusServer.idleTimeout)
                if !keep {
                    finish()
                    return
                }
                if connection.pendingWriteBytes > HTTPStatusServer.maxPendingOutput {
                    paused = true
                    connection.stopReading()
                }
            }
        }
    }

    private func send(_ response: HTTPResponse, headOnly: Bool, keepAlive: Bool, minor: Int) {
        let bytes = response.serialized(headOnly: headOnly, keepAlive: keepAlive, clientMinorVersion: minor,
                                        date: HTTPDate.now())
        connection.write(bytes) { [weak self] _ in self?.written() }
    }

    private func written() {
        guard !closing else { return }
        timer?.start(after: HTTPStatusServer.idleTimeout)
        if paused && connection.pendingWriteBytes <= HTTPStatusServer.maxPendingOutput / 2 {
            paused = false
            if !ended { connection.startReading() }
            process()
            if ended && !paused && !closing { finish() }
        }
    }

    /// The client sent everything it will: answer what is complete, then close.
    private func peerFinished() {
        ended = true
        guard !paused else { return }
        process()
        if !paused && !closing { finish() }
    }

    private func finish() {
        closing = true
        connection.closeAfterWriting()
    }
}
