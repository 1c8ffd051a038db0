@testable import DroverAgent
import DroverConfig
import DroverCore
import XCTest

/// status.listen's HTTP handling (parser, routes, response bytes), the
/// redaction of query strings, pm.status_listen's answers and the control
/// protocol: all pure functions, tested without sockets.
final class HTTPStatusTests: XCTestCase {
    func parse(_ text: String) -> HTTPParseResult {
        HTTPParser.parse(Array(text.utf8)[...])
    }

    func head(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> HTTPRequestHead? {
        guard case .request(let head, let length) = parse(text) else {
            XCTFail("not a request: \(parse(text))", file: file, line: line)
            return nil
        }
        XCTAssertEqual(length, text.utf8.count, file: file, line: line)
        return head
    }

    func status(_ text: String) -> Int? {
        if case .invalid(let status, _) = parse(text) { return status }
        return nil
    }

    // MARK: parsing

    func testSimpleGet() throws {
        let h = try XCTUnwrap(head("GET /status?json&full HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n"))
        XCTAssertEqual(h.method, "GET")
        XCTAssertEqual(h.target, "/status?json&full")
        XCTAssertEqual(h.path, "/status")
        XCTAssertEqual(h.query, "json&full")
        XCTAssertEqual(h.minorVersion, 1)
        XCTAssertTrue(h.keepAlive)
        XCTAssertEqual(h.contentLength, 0)
        XCTAssertFalse(h.chunked)
        XCTAssertEqual(h.header("user-agent"), "t")
        XCTAssertEqual(h.headers.count, 2)
    }

    func testPathWithoutQuery() throws {
        let h = try XCTUnwrap(head("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertEqual(h.path, "/ping")
        XCTAssertNil(h.query)
        let empty = try XCTUnwrap(head("GET /status? HTTP/1.1\r\nHost: x\r\n\r\n"))
        XCTAssertEqual(empty.query, "")
    }

    func testIncompleteUntilTheEmptyLine() {
        XCTAssertEqual(parse(""), .incomplete)
        XCTAssertEqual(parse("GET /status HTTP/1.1\r\n"), .incomplete)
        XCTAssertEqual(parse("GET /status HTTP/1.1\r\nHost: x\r\n"), .incomplete)
        XCTAssertEqual(parse("GET /status HTTP/1.1\r\nHost: x\r\n\r"), .incomplete)
        XCTAssertEqual(parse("\r"), .incomplete)
    }

    func testPipelinedRequestsParseOneAtATime() throws {
        let first = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        let both = Array((first + "HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n").utf8)
        guard case .request(let a, let length) = HTTPParser.parse(both[...]) else { return XCTFail() }
        XCTAssertEqual(a.path, "/ping")
        XCTAssertEqual(length, first.utf8.count)
        guard case .request(let b, _) = HTTPParser.parse(both[length...]) else { return XCTFail() }
        XCTAssertEqual(b.method, "HEAD")
        XCTAssertEqual(b.path, "/status")
    }

    func testBareLineFeedsAndLeadingEmptyLines() throws {
        let h = try XCTUnwrap(head("\r\n\nGET /metrics HTTP/1.1\nHost: x\n\n"))
        XCTAssertEqual(h.path, "/metrics")
    }

    func testKeepAliveRules() throws {
        XCTAssertEqual(head("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?.keepAlive, false)
        XCTAssertEqual(head("GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n")?.keepAlive, false)
        XCTAssertEqual(head("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n\r\n")?.keepAlive, true)
        XCTAssertEqual(head("GET / HTTP/1.0\r\n\r\n")?.keepAlive, false)
        XCTAssertEqual(head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?.keepAlive, true)
        XCTAssertEqual(head("GET / HTTP/1.0\r\n\r\n")?.minorVersion, 0)
        // A later 1.x is answered as 1.1.
        XCTAssertEqual(head("GET / HTTP/1.7\r\nHost: x\r\n\r\n")?.minorVersion, 1)
    }

    func testBodies() throws {
        XCTAssertEqual(head("POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n")?.contentLength, 12)
        XCTAssertEqual(head("POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\n")?.contentLength, 3)
        XCTAssertEqual(head("POST /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")?.chunked, true)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n"), 400)
        // Smuggling shapes.
        XCTAssertEqual(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400)
        XCTAssertEqual(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400)
    }

    func testGarbage() {
        XCTAssertEqual(status("\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03}\r\n\r\n"), 400)  // TLS-ish
        XCTAssertEqual(status("hello\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status\r\n\r\n"), 400)                       // HTTP/0.9
        XCTAssertEqual(status("GET  /status HTTP/1.1\r\nHost: x\r\n\r\n"), 400)  // two spaces
        XCTAssertEqual(status("GET /status HTTP/1.1 \r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET status HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /sta\u{7f}tus HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("G(T /status HTTP/1.1\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/1.1\r\nHost x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/1.1\r\nHost : x\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/1.1\r\nHost: x\ry\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/1.1\r\nHost: x\u{01}\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/1.1\r\n\r\n"), 400)              // no Host
        XCTAssertEqual(status("GET /status HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/1.1\r\nHost: x\r\n:v\r\n\r\n"), 400)
        XCTAssertEqual(status("GET /status HTTP/2.0\r\nHost: x\r\n\r\n"), 505)
        XCTAssertEqual(status("GET /status HTTP/1.10\r\nHost: x\r\n\r\n"), 400)
        XCTAssertEqual(status("\r\r\n"), 400)
    }

    func testSizeLimits() {
        let longTarget = "GET /" + String(repeating: "a", count: HTTPParser.maxHeadSize) + " HTTP/1.1\r\n"
        XCTAssertEqual(status(longTarget), 414)
        XCTAssertEqual(status(String(longTarget.prefix(HTTPParser.maxHeadSize))), 414)  // no line end yet
        let bigHeader = "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + String(repeating: "b", count: HTTPParser.maxHeadSize) + "\r\n\r\n"
        XCTAssertEqual(status(bigHeader), 431)
        XCTAssertEqual(status(String(bigHeader.prefix(HTTPParser.maxHeadSize + 10))), 431)
        var many = "GET / HTTP/1.1\r\nHost: x\r\n"
        for i in 0...HTTPParser.maxHeaders { many += "X-\(i): 1\r\n" }
        XCTAssertEqual(status(many + "\r\n"), 431)
        // Just under the limit is fine.
        let fits = "GET / HTTP/1.1\r\nHost: x\r\nX-Fill: "
        let filler = String(repeating: "f", count: HTTPParser.maxHeadSize - fits.utf8.count - 4)
        XCTAssertNotNil(head(fits + filler + "\r\n\r\n"))
        XCTAssertEqual(status(fits + filler + "f\r\n\r\n"), 431)
    }

    func testTargetForms() {
        XCTAssertEqual(head("GET http://localhost:9900/status?json HTTP/1.1\r\nHost: localhost\r\n\r\n")?.path, "/status")
        XCTAssertEqual(head("GET http://localhost:9900/status?json HTTP/1.1\r\nHost: localhost\r\n\r\n")?.query, "json")
        XCTAssertEqual(head("GET HTTP://h HTTP/1.1\r\nHost: h\r\n\r\n")?.path, "/")
        XCTAssertEqual(head("GET https://h?xml HTTP/1.1\r\nHost: h\r\n\r\n")?.query, "xml")
        XCTAssertEqual(head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")?.path, "*")
        XCTAssertEqual(head("GET /status#frag HTTP/1.1\r\nHost: h\r\n\r\n")?.path, "/status")
        XCTAssertEqual(status("GET ftp://h/status HTTP/1.1\r\nHost: h\r\n\r\n"), 400)
    }

    // MARK: routes

    func page(_ query: StatusQuery) -> RenderedStatus {
        RenderedStatus(contentType: "type/\(query.format)", body: "page \(query.format) full=\(query.full)")
    }

    func route(_ method: String, _ target: String) -> HTTPResponse {
        let (path, query) = HTTPParser.split(target: target)!
        let head = HTTPRequestHead(method: method, target: target, path: path, query: query, minorVersion: 1,
                                   keepAlive: true)
        return HTTPStatusRoutes.response(for: head, render: page)
    }

    func body(_ r: HTTPResponse) -> String { String(decoding: r.body, as: UTF8.self) }
    func contentType(_ r: HTTPResponse) -> String? { r.headers.first { $0.name == "Content-Type" }?.value }

    func testStatusFormats() {
        XCTAssertEqual(body(route("GET", "/status")), "page text full=false")
        XCTAssertEqual(body(route("GET", "/status?json")), "page json full=false")
        XCTAssertEqual(body(route("GET", "/status?json&full")), "page json full=true")
        XCTAssertEqual(body(route("GET", "/status?full&html")), "page html full=true")
        XCTAssertEqual(body(route("GET", "/status?xml")), "page xml full=false")
        XCTAssertEqual(body(route("GET", "/status?openmetrics")), "page openmetrics full=false")
        XCTAssertEqual(body(route("GET", "/status?full")), "page text full=true")
        XCTAssertEqual(contentType(route("GET", "/status?json")), "type/json")
        XCTAssertEqual(route("GET", "/status").status, 200)
        XCTAssertTrue(route("GET", "/status").headers.contains(HTTPHeader("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0")))
    }

    func testMetricsAndPing() {
        XCTAssertEqual(body(route("GET", "/metrics")), "page openmetrics full=false")
        XCTAssertEqual(body(route("GET", "/metrics?json")), "page openmetrics full=false")
        let ping = route("GET", "/ping")
        XCTAssertEqual(ping.status, 200)
        XCTAssertEqual(body(ping), "pong\n")
        XCTAssertEqual(contentType(ping), "text/plain")
    }

    func testNotFoundAndMethodNotAllowed() {
        for target in ["/", "/status/", "/Status", "/statusx", "/fpm-status", "*"] {
            XCTAssertEqual(route("GET", target).status, 404, target)
            XCTAssertFalse(route("GET", target).close, target)
        }
        XCTAssertEqual(route("POST", "/nope").status, 404)
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get", "TRACE"] {
            let r = route(method, "/status")
            XCTAssertEqual(r.status, 405, method)
            XCTAssertTrue(r.headers.contains(HTTPHeader("Allow", "GET, HEAD")), method)
            XCTAssertFalse(r.close)
        }
        XCTAssertEqual(route("HEAD", "/metrics").status, 200)
        XCTAssertEqual(route("HEAD", "/ping").status, 200)
    }

    func testErrorsThatClose() {
        for code in [400, 413, 414, 431, 505] { XCTAssertTrue(HTTPStatusRoutes.error(code).close, "\(code)") }
        XCTAssertFalse(HTTPStatusRoutes.error(404).close)
        XCTAssertEqual(body(HTTPStatusRoutes.error(400)), "Bad Request\n")
    }

    // MARK: response bytes

    func testSerializedResponse() {
        let r = HTTPResponse(status: 200, headers: [HTTPHeader("Content-Type", "text/plain")], body: Array("pong\n".utf8))
        let date = "Sun, 06 Nov 1994 08:49:37 GMT"
        XCTAssertEqual(String(decoding: r.serialized(headOnly: false, keepAlive: true, clientMinorVersion: 1, date: date), as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nDate: \(date)\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\npong\n")
        XCTAssertEqual(String(decoding: r.serialized(headOnly: true, keepAlive: false, clientMinorVersion: 1, date: date), as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nDate: \(date)\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(String(decoding: r.serialized(headOnly: false, keepAlive: true, clientMinorVersion: 0, date: date), as: UTF8.self),
                       "HTTP/1.1 200 OK\r\nDate: \(date)\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\npong\n")
        let notFound = HTTPStatusRoutes.error(404).serialized(headOnly: false, keepAlive: true, clientMinorVersion: 1, date: date)
        XCTAssertTrue(String(decoding: notFound, as: UTF8.self).hasPrefix("HTTP/1.1 404 Not Found\r\n"))
    }

    func testHTTPDate() {
        XCTAssertEqual(HTTPDate.format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
        XCTAssertEqual(HTTPDate.format(0), "Thu, 01 Jan 1970 00:00:00 GMT")
        XCTAssertEqual(HTTPDate.format(1_772_366_400), "Sun, 01 Mar 2026 12:00:00 GMT")
    }

    // MARK: real pages through the renderer

    func samplePool(_ name: String = "www") -> PoolStatus {
        PoolStatus(name: name, processManager: "static", startTime: 1_772_366_400, now: 1_772_366_460,
                   acceptedConnections: 7, idleProcesses: 1, activeProcesses: 1, totalProcesses: 2,
                   processes: [
                       ProcessStatus(pid: 101, appPid: 102, state: "Running", startTime: 1_772_366_400, startSince: 60,
                                     requests: 3, requestDuration: 1500, requestMethod: "GET",
                                     requestURI: "/login.php?token=s3cret&user=bob"),
                       ProcessStatus(pid: 103, appPid: 104, state: "Idle", startTime: 1_772_366_400, startSince: 60,
                                     requests: 4, requestDuration: 900, requestMethod: "GET", requestURI: "/index.php"),
                   ])
    }

    func testEveryPoolOnOnePage() {
        let pools = [samplePool("www"), samplePool("api")]
        let json = StatusRenderer.render(pools, as: StatusQuery(queryString: "json")).body
        XCTAssertTrue(json.hasPrefix("[{\"pool\":\"www\""), json)
        XCTAssertTrue(json.contains("{\"pool\":\"api\""), json)
        let metrics = StatusRenderer.render(pools, as: StatusQuery(format: .openmetrics))
        XCTAssertEqual(metrics.contentType, "application/openmetrics-text; version=1.0.0; charset=utf-8")
        for line in metrics.body.split(separator: "\n") where !line.hasPrefix("#") {
            XCTAssertTrue(line.contains("{pool=\"www\"") || line.contains("{pool=\"api\""), String(line))
        }
        XCTAssertTrue(metrics.body.hasSuffix("# EOF\n"))
    }

    // MARK: redaction

    func testQueryStringsAreRedacted() {
        XCTAssertEqual(PoolStatus.redactedURI("/login.php?token=s3cret"), "/login.php?[redacted]")
        XCTAssertEqual(PoolStatus.redactedURI("/index.php"), "/index.php")
        XCTAssertEqual(PoolStatus.redactedURI("/index.php?"), "/index.php?[redacted]")
        XCTAssertEqual(PoolStatus.redactedURI("-"), "-")
        let pool = samplePool().redactingQueries()
        XCTAssertEqual(pool.processes.map(\.requestURI), ["/login.php?[redacted]", "/index.php"])
        let full = StatusRenderer.render([pool], as: StatusQuery(queryString: "full")).body
        XCTAssertFalse(full.contains("s3cret"))
        XCTAssertTrue(full.contains("request URI:          /login.php?[redacted]"), full)
    }

    // MARK: pm.status_listen

    func poolConfig(status: String? = "/status", ping: String? = "/ping") -> PoolConfig {
        var pool = PoolConfig(name: "www", location: SourceLocation(file: "t", line: 1))
        pool.statusPath = status
        pool.pingPath = ping
        pool.pingResponse = "alive"
        return pool
    }

    func fcgi(_ params: [(String, String)], pool: PoolConfig? = nil, known: Bool = true) -> String {
        FastCGIStatusResponder.response(params: params.map { (name: $0.0, value: $0.1) }, pool: pool ?? poolConfig()) { query in
            known ? RenderedStatus(contentType: "type/\(query.format)", body: "full=\(query.full)") : nil
        }
    }

    func testFastCGIStatusAndPing() {
        XCTAssertEqual(fcgi([("SCRIPT_NAME", "/status"), ("QUERY_STRING", "json&full")]),
                       "Content-Type: type/json\r\nExpires: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
                        + "Cache-Control: no-cache, no-store, must-revalidate, max-age=0\r\n\r\nfull=true")
        XCTAssertTrue(fcgi([("SCRIPT_NAME", "/ping")]).hasSuffix("\r\n\r\nalive\n"))
        XCTAssertTrue(fcgi([("SCRIPT_NAME", "/ping")]).hasPrefix("Content-Type: text/plain\r\n"))
        // Without SCRIPT_NAME, REQUEST_URI's path.
        XCTAssertTrue(fcgi([("REQUEST_URI", "/status?xml"), ("QUERY_STRING", "xml")]).hasPrefix("Content-Type: type/xml\r\n"))
        XCTAssertTrue(fcgi([("SCRIPT_NAME", "/index.php")]).hasPrefix("Status: 404 Not Found\r\n"))
        XCTAssertTrue(fcgi([("SCRIPT_NAME", "/status")], known: false).hasPrefix("Status: 503 "))
        // No pm.status_path: every path but ping is the status page.
        XCTAssertTrue(fcgi([("SCRIPT_NAME", "/anything")], pool: poolConfig(status: nil)).hasPrefix("Content-Type: type/text\r\n"))
        XCTAssertTrue(fcgi([("SCRIPT_NAME", "/ping")], pool: poolConfig(status: nil)).hasSuffix("alive\n"))
    }

    // MARK: control protocol

    func testControlCommands() {
        XCTAssertEqual(ControlCommand(parsing: "status"), .status(json: false))
        XCTAssertEqual(ControlCommand(parsing: " STATUS  json\r"), .status(json: true))
        XCTAssertEqual(ControlCommand(parsing: "reopen"), .reopen)
        XCTAssertEqual(ControlCommand(parsing: "reload"), .reload)
        XCTAssertEqual(ControlCommand(parsing: "stop"), .stop(now: false))
        XCTAssertEqual(ControlCommand(parsing: "stop now"), .stop(now: true))
        XCTAssertNil(ControlCommand(parsing: ""))
        XCTAssertNil(ControlCommand(parsing: "stop later"))
        XCTAssertNil(ControlCommand(parsing: "status xml"))
    }

    final class Recorder {
        var reopened = 0
        var signals: [Int32] = []
        var error: Int32 = 0
    }

    func actions(_ recorder: Recorder, pools: [PoolStatus]) -> ControlActions {
        ControlActions(pools: { pools }, reopen: { recorder.reopened += 1 }, signalMaster: { signal in
            recorder.signals.append(signal)
            return recorder.error
        }, generation: { (3, 1) })
    }

    func testControlReplies() {
        let recorder = Recorder()
        let a = actions(recorder, pools: [samplePool().redactingQueries()])
        XCTAssertEqual(ControlProtocol.reply(to: "reopen", actions: a), ControlReply("OK\n"))
        XCTAssertEqual(recorder.reopened, 1)
        // The signal is checked (0) at once and sent after the reply.
        XCTAssertEqual(ControlProtocol.reply(to: "reload", actions: a), ControlReply("OK\n", signalAfter: SIGUSR2))
        XCTAssertEqual(ControlProtocol.reply(to: "generation", actions: a), ControlReply("generation 3 refused 1\n"))
        XCTAssertEqual(ControlProtocol.reply(to: "stop", actions: a), ControlReply("OK\n", signalAfter: SIGQUIT))
        XCTAssertEqual(ControlProtocol.reply(to: "stop now", actions: a), ControlReply("OK\n", signalAfter: SIGTERM))
        XCTAssertEqual(recorder.signals, [0, 0, 0])
        recorder.error = ESRCH
        let failed = ControlProtocol.reply(to: "stop", actions: a)
        XCTAssertNil(failed.signalAfter)
        XCTAssertTrue(failed.text.hasPrefix("ERR stop: cannot signal the master: "), failed.text)
        let unknown = ControlProtocol.reply(to: "restart\u{1b}[2J", actions: a).text
        XCTAssertTrue(unknown.hasPrefix("ERR unknown command 'restart?[2J' (commands: status, status json"), unknown)
        XCTAssertTrue(unknown.hasSuffix("\n"))
    }

    func testControlStatus() {
        let recorder = Recorder()
        let one = actions(recorder, pools: [samplePool().redactingQueries()])
        let json = ControlProtocol.reply(to: "status json", actions: one).text
        XCTAssertTrue(json.hasPrefix("[{\"pool\":\"www\""), json)
        XCTAssertTrue(json.hasSuffix("]}]\n"), json)
        XCTAssertTrue(json.contains("\"app pid\":102"), json)
        XCTAssertFalse(json.contains("s3cret"))
        let two = actions(recorder, pools: [samplePool("a"), samplePool("b")])
        XCTAssertTrue(ControlProtocol.reply(to: "status json", actions: two).text.hasPrefix("[{\"pool\":\"a\""))
        XCTAssertEqual(ControlProtocol.reply(to: "status json", actions: actions(recorder, pools: [])).text, "[]\n")

        let text = ControlProtocol.reply(to: "status", actions: one).text
        XCTAssertTrue(text.hasPrefix("pool:                 www\n"), text)
        XCTAssertTrue(text.contains("\nprocess 101: app 102, Running, 3 requests, last 1500 us, GET /login.php?[redacted]\n"), text)
        XCTAssertTrue(text.hasSuffix("process 103: app 104, Idle, 4 requests, last 900 us, GET /index.php\n"), text)
    }
}
