import DroverConfig
import DroverCore
import FastCGI
import Glibc

// pm.status_listen (design §6): a FastCGI responder in the agent for one
// pool's status and ping pages, so they answer while every worker of the
// pool is busy (php-fpm's separate "status pool" serves the same purpose but
// needs a free process of its own).
//
// Paths are matched as the worker matches them (SCRIPT_NAME, else the path
// of REQUEST_URI): ping.path gets ping.response; pm.status_path (any path
// when the pool has none) gets the pool's status page in the format
// QUERY_STRING asks for; anything else 404. The answer goes out when PARAMS
// are complete; a body (STDIN) is read and dropped. FCGI_KEEP_CONN is
// honoured, one request at a time (a second BEGIN_REQUEST while one is open
// gets FCGI_CANT_MPX_CONN), GET_VALUES is answered.

/// What the responder answers, as a pure function of the request's params.
public enum FastCGIStatusResponder {
    /// The CGI response (header block and body) for a request with `params`
    /// to `pool`'s status listener; `render` gives the pool's status page, or
    /// nil when the pool is not in the scoreboard.
    public static func response(params: [(name: String, value: String)], pool: PoolConfig,
                                render: (StatusQuery) -> RenderedStatus?) -> String {
        var scriptName: String?
        var uri: String?
        var query = ""
        for (name, value) in params {
            switch name {
            case "SCRIPT_NAME": scriptName = value
            case "REQUEST_URI": uri = value
            case "QUERY_STRING": query = value
            default: break
            }
        }
        let path = scriptName ?? uri.map { String($0.prefix { $0 != "?" }) } ?? ""
        let noCache = "Expires: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
            + "Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n"
        if let ping = pool.pingPath, path == ping {
            return "Content-Type: text/plain\r\n" + noCache + "\r\n" + pool.pingResponse + "\n"
        }
        if pool.statusPath == nil || path == pool.statusPath {
            guard let page = render(StatusQuery(queryString: query)) else {
                return "Status: 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nService Unavailable\n"
            }
            return "Content-Type: \(page.contentType)\r\n" + noCache + "\r\n" + page.body
        }
        return "Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nNot Found\n"
    }
}

/// One pool's pm.status_listen server.
public final class FastCGIStatusServer {
    /// Longest params block accepted (as the workers).
    static let maxParamsSize = 64 * 1024
    /// A connection without a whole request for this long is closed.
    static let idleTimeout: Double = 30
    static let maxConnections = 256

    public let pool: String
    public let address: ListenAddress
    private let server: UVStreamServer

    public init(loop: UVLoop, pool: PoolConfig, address: ListenAddress, status: AgentStatus) throws {
        self.pool = pool.name
        self.address = address
        let name = pool.name
        server = try UVStreamServer(loop: loop, address: address, mode: pool.listenMode.map { mode_t($0) } ?? 0o660) { connection in
            FastCGIStatusSession.start(connection, loop: loop, pool: pool) { query in
                status.pool(named: name).map { StatusRenderer.render([$0], as: query) }
            }
        }
        server.maxConnections = Self.maxConnections
    }

    public func close() { server.close() }
}

final class FastCGIStatusSession {
    private let connection: UVConnection
    private let pool: PoolConfig
    private let render: (StatusQuery) -> RenderedStatus?
    private var timer: UVTimer?
    private var decoder = RecordDecoder()
    /// The request whose PARAMS are being read.
    private var active: UInt16?
    private var keepConnection = false
    private var params: [UInt8] = []
    /// An answered request without FCGI_KEEP_CONN: the connection is closed
    /// when its STDIN ends (or the client closes first).
    private var draining: UInt16?
    private var closing = false

    private init(connection: UVConnection, pool: PoolConfig, render: @escaping (StatusQuery) -> RenderedStatus?) {
        self.connection = connection
        self.pool = pool
        self.render = render
    }

    static func start(_ connection: UVConnection, loop: UVLoop, pool: PoolConfig,
                      render: @escaping (StatusQuery) -> RenderedStatus?) {
        let session = FastCGIStatusSession(connection: connection, pool: pool, render: render)
        session.timer = connection.closingTimer(loop, after: FastCGIStatusServer.idleTimeout)
        connection.onData = { bytes in session.received(bytes) }
        connection.startReading()
    }

    private func received(_ bytes: [UInt8]) {
        guard !closing else { return }
        decoder.feed(bytes)
        var out: [UInt8] = []
        do {
            while !closing, let record = try decoder.next() {
                try handle(record, &out)
            }
        } catch {
            closing = true
        }
        connection.write(out)
        if closing { connection.closeAfterWriting() }
    }

    private func handle(_ record: Record, _ out: inout [UInt8]) throws {
        let id = record.requestID
        if id == FastCGIConstants.nullRequestID {
            if record.type == .getValues {
                let asked = try NameValuePairs.decode(record.content)
                let known = [
                    FastCGIConstants.maxConnsName: String(FastCGIStatusServer.maxConnections),
                    FastCGIConstants.maxReqsName: String(FastCGIStatusServer.maxConnections),
                    FastCGIConstants.mpxsConnsName: "0",
                ]
                RecordEncoder.appendGetValuesResult(values: asked.compactMap { pair in
                    known[pair.name].map { (pair.name, $0) }
                }, to: &out)
            } else {
                RecordEncoder.appendUnknownType(record.type.rawValue, to: &out)
            }
            return
        }
        switch record.type {
        case .beginRequest:
            let body = try record.content.withUnsafeBytes { try BeginRequestBody(parsing: $0) }
            if active != nil {
                RecordEncoder.appendEndRequest(requestID: id, protocolStatus: .cantMultiplexConnection, to: &out)
            } else if body.role != .responder {
                RecordEncoder.appendEndRequest(requestID: id, protocolStatus: .unknownRole, to: &out)
                if !body.keepConnection { closing = true }
            } else {
                active = id
                keepConnection = body.keepConnection
                params.removeAll(keepingCapacity: true)
            }
        case .params where id == active:
            if record.content.isEmpty {
                answer(id, &out)
            } else {
                params += record.content
                if params.count > FastCGIStatusServer.maxParamsSize { closing = true }
            }
        case .abortRequest where id == active:
            active = nil
            RecordEncoder.appendEndRequest(requestID: id, to: &out)
            if !keepConnection { closing = true }
        case .stdin where id == draining && record.content.isEmpty:
            // The client has sent all of the answered request: closing now
            // cannot turn into a reset that loses the answer.
            closing = true
        default:
            // STDIN and DATA of an answered request, or records of no request.
            break
        }
    }

    private func answer(_ id: UInt16, _ out: inout [UInt8]) {
        active = nil
        let pairs = (try? NameValuePairs.decode(params)) ?? []
        let response = FastCGIStatusResponder.response(params: pairs, pool: pool, render: render)
        RecordEncoder.append(.stdout, requestID: id, content: Array(response.utf8), to: &out)
        RecordEncoder.appendEmpty(.stdout, requestID: id, to: &out)
        RecordEncoder.appendEndRequest(requestID: id, to: &out)
        timer?.start(after: FastCGIStatusServer.idleTimeout)
        if !keepConnection { draining = id }
    }
}
