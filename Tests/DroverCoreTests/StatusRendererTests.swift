import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
@testable import DroverCore

final class StatusRendererTests: XCTestCase {
    private var savedTZ: String?

    override func setUp() {
        super.setUp()
        savedTZ = ProcessInfo.processInfo.environment["TZ"]
        setTimeZone("UTC0")
    }

    override func tearDown() {
        if let savedTZ {
            setenv("TZ", savedTZ, 1)
        } else {
            unsetenv("TZ")
        }
        tzset()
        super.tearDown()
    }

    private func setTimeZone(_ zone: String) {
        setenv("TZ", zone, 1)
        tzset()
    }

    // MARK: - Fixtures

    /// 1700000000 is 14/Nov/2023:22:13:20 UTC.
    static func pool(name: String = "www", full: Bool = true) -> PoolStatus {
        PoolStatus(
            name: name, processManager: "dynamic", startTime: 1_700_000_000, now: 1_700_000_100,
            acceptedConnections: 12, listenQueue: 0, maxListenQueue: 3, listenQueueLength: 511,
            idleProcesses: 1, activeProcesses: 1, totalProcesses: 2, maxActiveProcesses: 2,
            maxChildrenReached: 4, slowRequests: 5, spawns: 6, crashes: 1, backoffMilliseconds: 1500,
            droppedLogRecords: 7,
            processes: [
                ProcessStatus(pid: 4242, appPid: 4243, state: "Idle", startTime: 1_700_000_000, startSince: 100,
                              requests: 7, requestDuration: 1234, requestMethod: "GET",
                              requestURI: "/index.php?a=1", contentLength: 0, user: "-",
                              script: "/srv/www/index.php", lastRequestCPU: 12.5, lastRequestMemory: 2_097_152,
                              statusCode: 200),
                ProcessStatus(pid: 4244, state: "Running", startTime: 1_700_000_050, startSince: 50,
                              requests: 3, requestDuration: 99, requestMethod: "POST", requestURI: "/upload",
                              contentLength: 1024, user: "alice", script: "/srv/www/upload.php"),
            ])
    }

    /// Every optional figure nil.
    static func sparsePool(name: String = "www") -> PoolStatus {
        var pool = pool(name: name)
        pool.listenQueue = nil
        pool.maxListenQueue = nil
        pool.listenQueueLength = nil
        pool.slowRequests = nil
        pool.droppedLogRecords = nil
        return pool
    }

    static let hostileURI = "/a?q=\"'<script>alert(1)</script>&x=\\y\n\r\t\u{0}\u{1}\u{1B}[31m\u{7F}\u{85}\u{2028}\u{FFFE}é😀"
        + String(decoding: [0x2F, 0xFF, 0xFE, 0xC3], as: UTF8.self)
    static let hostileScript = "/srv/</script><b>\"x\".php"
    static let hostileUser = "bob\"},{\"pid\":1"

    static func hostilePool() -> PoolStatus {
        var pool = pool()
        pool.processes[0].requestURI = hostileURI
        pool.processes[0].script = hostileScript
        pool.processes[0].user = hostileUser
        pool.processes[0].requestMethod = "GET\nstate: Idle"
        return pool
    }

    func render(_ pools: [PoolStatus], _ query: String) -> RenderedStatus {
        StatusRenderer.render(pools, as: StatusQuery(queryString: query))
    }

    // MARK: - Query

    func testQueryParsing() {
        XCTAssertEqual(StatusQuery(queryString: ""), StatusQuery(format: .text, full: false))
        XCTAssertEqual(StatusQuery(queryString: "json"), StatusQuery(format: .json, full: false))
        XCTAssertEqual(StatusQuery(queryString: "full&json"), StatusQuery(format: .json, full: true))
        XCTAssertEqual(StatusQuery(queryString: "json&full"), StatusQuery(format: .json, full: true))
        XCTAssertEqual(StatusQuery(queryString: "html&full"), StatusQuery(format: .html, full: true))
        XCTAssertEqual(StatusQuery(queryString: "full&html"), StatusQuery(format: .html, full: true))
        XCTAssertEqual(StatusQuery(queryString: "openmetrics"), StatusQuery(format: .openmetrics, full: false))
        XCTAssertEqual(StatusQuery(queryString: "xml"), StatusQuery(format: .xml, full: false))
        XCTAssertEqual(StatusQuery(queryString: "full"), StatusQuery(format: .text, full: true))
        XCTAssertEqual(StatusQuery(queryString: "?json&full"), StatusQuery(format: .json, full: true))
        // Names count whatever their values, as in php-fpm's $_GET lookups.
        XCTAssertEqual(StatusQuery(queryString: "json=1&full=0"), StatusQuery(format: .json, full: true))
        XCTAssertEqual(StatusQuery(queryString: "full[]&xml"), StatusQuery(format: .xml, full: true))
        XCTAssertEqual(StatusQuery(queryString: "%6Aso%6E"), StatusQuery(format: .json, full: false))
        // Values are not names; names are case-sensitive; no substring matches.
        XCTAssertEqual(StatusQuery(queryString: "format=json"), StatusQuery(format: .text, full: false))
        XCTAssertEqual(StatusQuery(queryString: "JSON"), StatusQuery(format: .text, full: false))
        XCTAssertEqual(StatusQuery(queryString: "jsonp&fully"), StatusQuery(format: .text, full: false))
        // php-fpm's precedence: html, xml, json, openmetrics.
        XCTAssertEqual(StatusQuery(queryString: "json&html").format, .html)
        XCTAssertEqual(StatusQuery(queryString: "json&xml").format, .xml)
        XCTAssertEqual(StatusQuery(queryString: "openmetrics&json").format, .json)
        XCTAssertEqual(StatusQuery(queryString: "&&openmetrics&").format, .openmetrics)
    }

    func testContentTypes() {
        let pools = [Self.pool()]
        XCTAssertEqual(render(pools, "").contentType, "text/plain;charset=UTF-8")
        XCTAssertEqual(render(pools, "json").contentType, "application/json")
        XCTAssertEqual(render(pools, "xml").contentType, "text/xml;charset=UTF-8")
        XCTAssertEqual(render(pools, "html").contentType, "text/html;charset=UTF-8")
        XCTAssertEqual(render(pools, "openmetrics").contentType,
                       "application/openmetrics-text; version=1.0.0; charset=utf-8")
    }

    // MARK: - Text

    static let textPool = """
        pool:                 www
        process manager:      dynamic
        start time:           14/Nov/2023:22:13:20 +0000
        start since:          100
        accepted conn:        12
        listen queue:         0
        max listen queue:     3
        listen queue len:     511
        idle processes:       1
        active processes:     1
        total processes:      2
        max active processes: 2
        max children reached: 4
        slow requests:        5
        spawns:               6
        crashes:              1
        respawn backoff:      1500
        dropped log records:  7

        """

    static let textProcesses = """

        ************************
        pid:                  4242
        state:                Idle
        start time:           14/Nov/2023:22:13:20 +0000
        start since:          100
        requests:             7
        request duration:     1234
        request method:       GET
        request URI:          /index.php?a=1
        content length:       0
        user:                 -
        script:               /srv/www/index.php
        last request cpu:     12.50
        last request memory:  2097152
        app pid:              4243
        status:               200

        ************************
        pid:                  4244
        state:                Running
        start time:           14/Nov/2023:22:14:10 +0000
        start since:          50
        requests:             3
        request duration:     99
        request method:       POST
        request URI:          /upload
        content length:       1024
        user:                 alice
        script:               /srv/www/upload.php
        last request cpu:     0.00
        last request memory:  0
        app pid:              0

        """

    func testTextGolden() {
        XCTAssertEqual(render([Self.pool()], "").body, Self.textPool)
    }

    func testTextFullGolden() {
        XCTAssertEqual(render([Self.pool()], "full").body, Self.textPool + Self.textProcesses)
    }

    func testTextLabelsMatchPhpFpmAlignment() {
        // php-fpm 8.2's own labels (fpm_status.c), padded to column 23.
        let phpFpm = [
            "pool:                 ", "process manager:      ", "start time:           ",
            "start since:          ", "accepted conn:        ", "listen queue:         ",
            "max listen queue:     ", "listen queue len:     ", "idle processes:       ",
            "active processes:     ", "total processes:      ", "max active processes: ",
            "max children reached: ", "slow requests:        ",
            "pid:                  ", "state:                ", "start time:           ",
            "start since:          ", "requests:             ", "request duration:     ",
            "request method:       ", "request URI:          ", "content length:       ",
            "user:                 ", "script:               ", "last request cpu:     ",
            "last request memory:  ",
        ]
        let lines = render([Self.pool()], "full").body.split(separator: "\n").map(String.init)
        var cursor = lines.startIndex
        for label in phpFpm {
            guard let found = lines[cursor...].firstIndex(where: { $0.hasPrefix(label) }) else {
                return XCTFail("missing or out of order: \(label)")
            }
            cursor = found + 1
        }
    }

    func testTextTimeZoneOffset() {
        setTimeZone("ABC-02:30")
        XCTAssertTrue(render([Self.pool()], "").body.contains("start time:           15/Nov/2023:00:43:20 +0230\n"))
        setTimeZone("XYZ+05")
        XCTAssertTrue(render([Self.pool()], "").body.contains("start time:           14/Nov/2023:17:13:20 -0500\n"))
    }

    func testTextNilFieldsOmitted() {
        let body = render([Self.sparsePool()], "full").body
        for label in ["listen queue", "max listen queue", "listen queue len", "slow requests", "dropped log records"] {
            XCTAssertFalse(body.contains("\n\(label):"), label)
        }
        XCTAssertTrue(body.contains("\nmax children reached: 4\nspawns:               6\n"))
        XCTAssertTrue(body.contains("\nrespawn backoff:      1500\n\n****"))
        // A process without a status code has no status line.
        XCTAssertTrue(body.hasSuffix("last request memory:  0\napp pid:              0\n"))
    }

    func testTextMultiPool() {
        var second = Self.pool(name: "api")
        second.processes = []
        let body = render([Self.pool(), second], "").body
        let apiBlock = Self.textPool.replacingOccurrences(of: "pool:                 www", with: "pool:                 api")
        XCTAssertEqual(body, Self.textPool + "\n" + apiBlock)
        let fullBody = render([Self.pool(), second], "full").body
        XCTAssertEqual(fullBody, Self.textPool + Self.textProcesses + "\n" + apiBlock)
        XCTAssertEqual(render([], "").body, "")
    }

    func testTextHostileStaysOnItsLine() {
        let body = render([Self.hostilePool()], "full").body
        let lines = body.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertFalse(lines.contains { $0.hasPrefix("state: Idle") }, "injected line")
        XCTAssertTrue(body.contains("request method:       GET\\nstate: Idle\n"))
        let uriLine = lines.first { $0.hasPrefix("request URI:") }.map(String.init) ?? ""
        XCTAssertEqual(uriLine, "request URI:          /a?q=\"'<script>alert(1)</script>&x=\\\\y\\n\\r\\t\\x00\\x01\\x1b[31m\\x7f\\u0085\u{2028}\u{FFFE}é😀/\u{FFFD}\u{FFFD}\u{FFFD}")
        for scalar in body.unicodeScalars {
            let v = scalar.value
            XCTAssertFalse((v < 0x20 && v != 0x0A) || (v >= 0x7F && v <= 0x9F), "raw control U+\(String(v, radix: 16))")
        }
    }

    // MARK: - JSON

    static let jsonPool = #"{"pool":"www","process manager":"dynamic","start time":1700000000,"start since":100,"accepted conn":12,"listen queue":0,"max listen queue":3,"listen queue len":511,"idle processes":1,"active processes":1,"total processes":2,"max active processes":2,"max children reached":4,"slow requests":5,"spawns":6,"crashes":1,"respawn backoff":1500,"dropped log records":7"#

    func testJSONGolden() {
        XCTAssertEqual(render([Self.pool()], "json").body, Self.jsonPool + "}")
        let full = render([Self.pool()], "json&full").body
        XCTAssertEqual(full, Self.jsonPool + #", "processes":[{"pid":4242,"state":"Idle","start time":1700000000,"start since":100,"requests":7,"request duration":1234,"request method":"GET","request uri":"/index.php?a=1","content length":0,"user":"-","script":"/srv/www/index.php","last request cpu":12.50,"last request memory":2097152,"app pid":4243,"status":200},{"pid":4244,"state":"Running","start time":1700000050,"start since":50,"requests":3,"request duration":99,"request method":"POST","request uri":"/upload","content length":1024,"user":"alice","script":"/srv/www/upload.php","last request cpu":0.00,"last request memory":0,"app pid":0}]}"#)
    }

    func parseJSON(_ body: String, file: StaticString = #filePath, line: UInt = #line) -> Any? {
        do {
            return try JSONSerialization.jsonObject(with: Data(body.utf8), options: [.fragmentsAllowed])
        } catch {
            XCTFail("invalid JSON: \(error)\n\(body)", file: file, line: line)
            return nil
        }
    }

    func testJSONParses() throws {
        let object = try XCTUnwrap(parseJSON(render([Self.pool()], "json&full").body) as? [String: Any])
        XCTAssertEqual(object["pool"] as? String, "www")
        XCTAssertEqual(object["process manager"] as? String, "dynamic")
        XCTAssertEqual((object["start time"] as? NSNumber)?.int64Value, 1_700_000_000)
        XCTAssertEqual((object["start since"] as? NSNumber)?.intValue, 100)
        XCTAssertEqual((object["listen queue len"] as? NSNumber)?.intValue, 511)
        XCTAssertEqual((object["respawn backoff"] as? NSNumber)?.intValue, 1500)
        let processes = try XCTUnwrap(object["processes"] as? [[String: Any]])
        XCTAssertEqual(processes.count, 2)
        XCTAssertEqual((processes[0]["pid"] as? NSNumber)?.intValue, 4242)
        XCTAssertEqual((processes[0]["last request cpu"] as? NSNumber)?.doubleValue, 12.5)
        XCTAssertEqual((processes[0]["app pid"] as? NSNumber)?.intValue, 4243)
        XCTAssertEqual((processes[0]["status"] as? NSNumber)?.intValue, 200)
        XCTAssertEqual(processes[1]["user"] as? String, "alice")
        XCTAssertNil(processes[1]["status"])
        let short = try XCTUnwrap(parseJSON(render([Self.pool()], "json").body) as? [String: Any])
        XCTAssertNil(short["processes"])
    }

    func testJSONNilFieldsOmitted() throws {
        let body = render([Self.sparsePool()], "json&full").body
        let object = try XCTUnwrap(parseJSON(body) as? [String: Any])
        for key in ["listen queue", "max listen queue", "listen queue len", "slow requests", "dropped log records"] {
            XCTAssertNil(object[key], key)
        }
        XCTAssertNotNil(object["max children reached"])
        XCTAssertTrue(body.contains(#""max children reached":4,"spawns":6,"crashes":1,"respawn backoff":1500, "processes":["#))
    }

    func testJSONMultiPool() throws {
        let array = try XCTUnwrap(parseJSON(render([Self.pool(), Self.sparsePool(name: "lean")], "json&full").body) as? [[String: Any]])
        XCTAssertEqual(array.count, 2)
        XCTAssertEqual(array.map { $0["pool"] as? String }, ["www", "lean"])
        XCTAssertNotNil(array[0]["listen queue"])
        XCTAssertNil(array[1]["listen queue"])
        XCTAssertEqual((array[1]["processes"] as? [Any])?.count, 2)
        XCTAssertEqual(render([], "json").body, "[]")
        XCTAssertEqual(render([Self.pool(), Self.pool()], "json").body, "[" + Self.jsonPool + "}," + Self.jsonPool + "}]")
    }

    func testJSONHostileRoundTrips() throws {
        var pool = Self.hostilePool()
        pool.name = "w\"w\\w"
        let body = render([pool], "json&full").body
        let object = try XCTUnwrap(parseJSON(body) as? [String: Any])
        XCTAssertEqual(object["pool"] as? String, "w\"w\\w")
        let process = try XCTUnwrap((object["processes"] as? [[String: Any]])?.first)
        XCTAssertEqual(process["request uri"] as? String, Self.hostileURI)
        XCTAssertEqual(process["script"] as? String, Self.hostileScript)
        XCTAssertEqual(process["user"] as? String, Self.hostileUser)
        XCTAssertEqual(process["request method"] as? String, "GET\nstate: Idle")
        XCTAssertEqual((process["pid"] as? NSNumber)?.intValue, 4242, "injection must not override pid")
        XCTAssertFalse(body.contains("\u{2028}"))
        XCTAssertTrue(body.contains(#"\u0000\u0001\u001b[31m"#))
        for scalar in body.unicodeScalars {
            XCTAssertFalse(scalar.value < 0x20, "raw control U+\(String(scalar.value, radix: 16))")
        }
    }

    // MARK: - XML

    /// Collects the document as (path, text) pairs, e.g. ("status/pool", "www").
    final class XMLCollector: NSObject, XMLParserDelegate {
        var stack: [String] = []
        var elements: [(path: String, text: String)] = []
        var texts: [String] = []
        var error: Error?

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            stack.append(elementName)
            texts.append("")
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            if !texts.isEmpty { texts[texts.count - 1] += string }
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?) {
            elements.append((stack.joined(separator: "/"), texts.removeLast()))
            stack.removeLast()
        }

        func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) {
            error = parseError
        }

        func children(of path: String) -> [(name: String, text: String)] {
            elements.compactMap { element in
                guard element.path.hasPrefix(path + "/") else { return nil }
                let rest = element.path.dropFirst(path.count + 1)
                return rest.contains("/") ? nil : (String(rest), element.text)
            }
        }
    }

    func parseXML(_ body: String, file: StaticString = #filePath, line: UInt = #line) -> XMLCollector {
        let collector = XMLCollector()
        let parser = XMLParser(data: Data(body.utf8))
        parser.delegate = collector
        parser.shouldResolveExternalEntities = false
        let ok = parser.parse()
        XCTAssertTrue(ok, "XML did not parse: \(String(describing: collector.error ?? parser.parserError))\n\(body)",
                      file: file, line: line)
        return collector
    }

    static let xmlPoolNames = [
        "pool", "process-manager", "start-time", "start-since", "accepted-conn", "listen-queue",
        "max-listen-queue", "listen-queue-len", "idle-processes", "active-processes", "total-processes",
        "max-active-processes", "max-children-reached", "slow-requests", "spawns", "crashes",
        "respawn-backoff", "dropped-log-records",
    ]

    func testXMLExactLayout() {
        let body = render([Self.pool()], "xml").body
        XCTAssertTrue(body.hasPrefix("<?xml version=\"1.0\" ?>\n<status>\n<pool>www</pool>\n<process-manager>dynamic</process-manager>\n<start-time>1700000000</start-time>\n"))
        XCTAssertTrue(body.hasSuffix("<respawn-backoff>1500</respawn-backoff>\n<dropped-log-records>7</dropped-log-records>\n</status>"))
        let full = render([Self.pool()], "xml&full").body
        XCTAssertTrue(full.contains("<dropped-log-records>7</dropped-log-records>\n<processes>\n<process><pid>4242</pid><state>Idle</state>"))
        XCTAssertTrue(full.hasSuffix("<app-pid>0</app-pid></process>\n</processes>\n</status>"))
    }

    func testXMLParses() {
        let collector = parseXML(render([Self.pool()], "xml&full").body)
        let fields = collector.children(of: "status")
        XCTAssertEqual(fields.map(\.name), Self.xmlPoolNames + ["processes"])
        XCTAssertEqual(fields.first?.text, "www")
        XCTAssertEqual(fields.first { $0.name == "start-time" }?.text, "1700000000")
        let processes = collector.children(of: "status/processes")
        XCTAssertEqual(processes.map(\.name), ["process", "process"])
        let first = collector.elements.filter { $0.path.hasPrefix("status/processes/process/") }.prefix(15)
        XCTAssertEqual(first.map { String($0.path.split(separator: "/").last!) }, [
            "pid", "state", "start-time", "start-since", "requests", "request-duration", "request-method",
            "request-uri", "content-length", "user", "script", "last-request-cpu", "last-request-memory",
            "app-pid", "status",
        ])
        XCTAssertEqual(first.map(\.text), [
            "4242", "Idle", "1700000000", "100", "7", "1234", "GET", "/index.php?a=1", "0", "-",
            "/srv/www/index.php", "12.50", "2097152", "4243", "200",
        ])
    }

    func testXMLNilFieldsOmitted() {
        let collector = parseXML(render([Self.sparsePool()], "xml&full").body)
        let names = collector.children(of: "status").map(\.name)
        for name in ["listen-queue", "max-listen-queue", "listen-queue-len", "slow-requests", "dropped-log-records"] {
            XCTAssertFalse(names.contains(name), name)
        }
        XCTAssertTrue(names.contains("max-children-reached"))
        // The second process has no status code: no <status> inside it.
        let second = collector.elements.filter { $0.path == "status/processes/process/status" }
        XCTAssertEqual(second.count, 1)
    }

    func testXMLHostileEscaping() {
        var pool = Self.hostilePool()
        pool.name = "a<b>&\"c\""
        let body = render([pool], "xml&full").body
        XCTAssertFalse(body.contains("<script>alert"))
        XCTAssertFalse(body.contains("</script><b>"))
        XCTAssertFalse(body.contains("<b>"))
        let collector = parseXML(body)
        XCTAssertEqual(collector.children(of: "status").first?.text, "a<b>&\"c\"")
        let uri = collector.elements.first { $0.path == "status/processes/process/request-uri" }?.text
        // Characters XML cannot carry become U+FFFD; everything else survives (\r via &#13;).
        let expected = "/a?q=\"'<script>alert(1)</script>&x=\\y\n\r\t\u{FFFD}\u{FFFD}\u{FFFD}[31m\u{FFFD}\u{FFFD}\u{2028}\u{FFFD}é😀/\u{FFFD}\u{FFFD}\u{FFFD}"
        XCTAssertEqual(uri, expected)
        XCTAssertEqual(collector.elements.first { $0.path == "status/processes/process/script" }?.text, Self.hostileScript)
        XCTAssertEqual(collector.elements.first { $0.path == "status/processes/process/user" }?.text, Self.hostileUser)
    }

    func testXMLMultiPool() {
        let body = render([Self.pool(), Self.pool(name: "api")], "xml").body
        XCTAssertTrue(body.hasPrefix("<?xml version=\"1.0\" ?>\n<pools>\n<status>\n<pool>www</pool>\n"))
        XCTAssertTrue(body.hasSuffix("</status>\n</pools>"))
        let collector = parseXML(body)
        XCTAssertEqual(collector.children(of: "pools").map(\.name), ["status", "status"])
        XCTAssertEqual(collector.elements.filter { $0.path == "pools/status/pool" }.map(\.text), ["www", "api"])
        XCTAssertEqual(collector.children(of: "pools/status").count, 2 * Self.xmlPoolNames.count)
        _ = parseXML(render([], "xml&full").body)
    }

    // MARK: - HTML

    static let htmlHead = """
        <!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
        <html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
        <head><title>PHP-FPM Status Page</title></head>
        <body>
        <table>
        <tr><th>pool</th><td>www</td></tr>
        <tr><th>process manager</th><td>dynamic</td></tr>
        <tr><th>start time</th><td>14/Nov/2023:22:13:20 +0000</td></tr>
        <tr><th>start since</th><td>100</td></tr>
        <tr><th>accepted conn</th><td>12</td></tr>
        <tr><th>listen queue</th><td>0</td></tr>
        <tr><th>max listen queue</th><td>3</td></tr>
        <tr><th>listen queue len</th><td>511</td></tr>
        <tr><th>idle processes</th><td>1</td></tr>
        <tr><th>active processes</th><td>1</td></tr>
        <tr><th>total processes</th><td>2</td></tr>
        <tr><th>max active processes</th><td>2</td></tr>
        <tr><th>max children reached</th><td>4</td></tr>
        <tr><th>slow requests</th><td>5</td></tr>
        <tr><th>spawns</th><td>6</td></tr>
        <tr><th>crashes</th><td>1</td></tr>
        <tr><th>respawn backoff</th><td>1500</td></tr>
        <tr><th>dropped log records</th><td>7</td></tr>
        </table>

        """

    func testHTMLGolden() {
        XCTAssertEqual(render([Self.pool()], "html").body, Self.htmlHead + "</body></html>")
        let full = render([Self.pool()], "html&full").body
        XCTAssertEqual(full, Self.htmlHead + """
            <table border="1">
            <tr><th>pid</th><th>state</th><th>start time</th><th>start since</th><th>requests</th><th>request duration</th><th>request method</th><th>request uri</th><th>content length</th><th>user</th><th>script</th><th>last request cpu</th><th>last request memory</th><th>app pid</th><th>status</th></tr>
            <tr><td>4242</td><td>Idle</td><td>14/Nov/2023:22:13:20 +0000</td><td>100</td><td>7</td><td>1234</td><td>GET</td><td>/index.php?a=1</td><td>0</td><td>-</td><td>/srv/www/index.php</td><td>12.50</td><td>2097152</td><td>4243</td><td>200</td></tr>
            <tr><td>4244</td><td>Running</td><td>14/Nov/2023:22:14:10 +0000</td><td>50</td><td>3</td><td>99</td><td>POST</td><td>/upload</td><td>1024</td><td>alice</td><td>/srv/www/upload.php</td><td>0.00</td><td>0</td><td>0</td><td>-</td></tr>
            </table></body></html>
            """)
    }

    func testHTMLNilFieldsOmittedAndWellFormed() {
        let body = render([Self.sparsePool()], "html&full").body
        for label in ["listen queue", "max listen queue", "listen queue len", "slow requests", "dropped log records"] {
            XCTAssertFalse(body.contains("<tr><th>\(label)</th>"), label)
        }
        let collector = parseXML(body)
        // Every process row has as many cells as the header has columns.
        let rows = collector.children(of: "html/body/table")
        XCTAssertEqual(rows.count, 13 + 3)
        XCTAssertEqual(collector.elements.filter { $0.path == "html/body/table/tr/td" }.count, 13 + 2 * 15)
    }

    func testHTMLHostileEscaping() {
        var pool = Self.hostilePool()
        pool.name = "<img src=x onerror=alert(1)>"
        let body = render([pool], "html&full").body
        XCTAssertFalse(body.contains("<script>"))
        XCTAssertFalse(body.contains("<img"))
        XCTAssertFalse(body.contains("<b>"))
        XCTAssertTrue(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;x="))
        XCTAssertTrue(body.contains("&lt;img src=x onerror=alert(1)&gt;"))
        XCTAssertTrue(body.contains("/srv/&lt;/script&gt;&lt;b&gt;&quot;x&quot;.php"))
        let collector = parseXML(body)
        XCTAssertEqual(collector.elements.filter { $0.path == "html/body/table/tr/td" }.first?.text, pool.name)
    }

    func testHTMLMultiPool() {
        var second = Self.pool(name: "api")
        second.processes.removeLast()
        let body = render([Self.pool(), second], "html&full").body
        XCTAssertEqual(body.components(separatedBy: "<html").count, 2)
        XCTAssertEqual(body.components(separatedBy: "<table>").count, 3)
        XCTAssertEqual(body.components(separatedBy: "<table border=\"1\">").count, 3)
        XCTAssertTrue(body.contains("</tr>\n</table>\n<table>\n<tr><th>pool</th><td>api</td></tr>"))
        XCTAssertTrue(body.hasSuffix("</table></body></html>"))
        _ = parseXML(body)
        let short = render([Self.pool(), second], "html").body
        XCTAssertTrue(short.contains("</table>\n<table>\n<tr><th>pool</th><td>api</td></tr>"))
        XCTAssertTrue(short.hasSuffix("</table>\n</body></html>"))
        _ = parseXML(short)
        _ = parseXML(render([], "html").body)
    }

    // MARK: - OpenMetrics

    /// The structural rules of OpenMetrics 1.0 text that matter here: LF lines, "# EOF" last,
    /// TYPE/UNIT/HELP at most once per family and before its samples, families not
    /// interleaved, a gauge's samples named as the family, a unit suffixing the name,
    /// label names and escaped values, integer or decimal values.
    func checkOpenMetrics(_ body: String, file: StaticString = #filePath, line: UInt = #line) -> [String: [(labels: String, value: String)]] {
        XCTAssertTrue(body.hasSuffix("\n# EOF\n") || body == "# EOF\n", "must end with # EOF", file: file, line: line)
        XCTAssertFalse(body.contains("\r"), file: file, line: line)
        var samples: [String: [(labels: String, value: String)]] = [:]
        var seenFamilies = Set<String>()
        var family: String?
        var metadata = Set<String>()
        var types: [String: String] = [:]
        var sawSample = false
        let metricName = try! NSRegularExpression(pattern: "^[a-zA-Z_:][a-zA-Z0-9_:]*$")
        let sampleLine = try! NSRegularExpression(
            pattern: #"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? (-?[0-9]+(?:\.[0-9]+)?)$"#)
        func matches(_ regex: NSRegularExpression, _ text: String) -> NSTextCheckingResult? {
            regex.firstMatch(in: text, range: NSRange(text.startIndex..., in: text))
        }
        let lines = body.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        for (index, raw) in lines.enumerated() {
            let text = String(raw)
            if index == lines.count - 1 {
                XCTAssertEqual(text, "# EOF", file: file, line: line)
                break
            }
            if text.hasPrefix("#") {
                let parts = text.split(separator: " ", maxSplits: 3).map(String.init)
                XCTAssertGreaterThanOrEqual(parts.count, 4, text, file: file, line: line)
                guard parts.count >= 4, ["TYPE", "UNIT", "HELP"].contains(parts[1]) else {
                    XCTFail("bad comment line: \(text)", file: file, line: line)
                    continue
                }
                let name = parts[2]
                XCTAssertNotNil(matches(metricName, name), name, file: file, line: line)
                if name != family {
                    XCTAssertFalse(seenFamilies.contains(name), "interleaved family \(name)", file: file, line: line)
                    seenFamilies.insert(name)
                    family = name
                    metadata = []
                    sawSample = false
                }
                XCTAssertFalse(sawSample, "metadata after samples: \(text)", file: file, line: line)
                XCTAssertFalse(metadata.contains(parts[1]), "second \(parts[1]) for \(name)", file: file, line: line)
                metadata.insert(parts[1])
                switch parts[1] {
                case "TYPE":
                    XCTAssertEqual(parts[3], "gauge", file: file, line: line)
                    types[name] = parts[3]
                case "UNIT":
                    XCTAssertTrue(name.hasSuffix("_" + parts[3]), "unit must suffix the name", file: file, line: line)
                default:
                    XCTAssertFalse(parts[3].isEmpty, file: file, line: line)
                }
                continue
            }
            guard let match = matches(sampleLine, text) else {
                XCTFail("bad sample line: \(text)", file: file, line: line)
                continue
            }
            let ns = text as NSString
            let name = ns.substring(with: match.range(at: 1))
            XCTAssertEqual(name, family, "sample outside its family (a gauge's samples carry its name)", file: file, line: line)
            XCTAssertNotNil(types[name], "no TYPE for \(name)", file: file, line: line)
            sawSample = true
            let labels = match.range(at: 2).location == NSNotFound ? "" : ns.substring(with: match.range(at: 2))
            XCTAssertTrue(labels.hasPrefix("{pool=\""), "every sample has a pool label: \(text)", file: file, line: line)
            samples[name, default: []].append((labels, ns.substring(with: match.range(at: 3))))
        }
        return samples
    }

    func testOpenMetricsSinglePool() {
        let body = render([Self.pool()], "openmetrics&full").body
        let samples = checkOpenMetrics(body)
        let expected: [String: String] = [
            "phpfpm_up": "1", "phpfpm_start_since": "100", "phpfpm_accepted_connections": "12",
            "phpfpm_listen_queue": "0", "phpfpm_max_listen_queue": "3", "phpfpm_listen_queue_length": "511",
            "phpfpm_idle_processes": "1", "phpfpm_active_processes": "1", "phpfpm_total_processes": "2",
            "phpfpm_max_active_processes": "2", "phpfpm_max_children_reached": "4", "phpfpm_slow_requests": "5",
            "drover_spawns": "6", "drover_crashes": "1", "drover_respawn_backoff_seconds": "1.5",
            "drover_dropped_log_records": "7", "drover_process_manager": "1",
        ]
        XCTAssertEqual(Set(samples.keys), Set(expected.keys))
        for (name, value) in expected {
            XCTAssertEqual(samples[name]?.map(\.value), [value], name)
            let labels = name == "drover_process_manager" ? "{pool=\"www\",process_manager=\"dynamic\"}" : "{pool=\"www\"}"
            XCTAssertEqual(samples[name]?.first?.labels, labels, name)
        }
        // php-fpm's family order, then Drover's; TYPE, UNIT, HELP; full is ignored.
        XCTAssertTrue(body.hasPrefix("# TYPE phpfpm_up gauge\n# HELP phpfpm_up "))
        XCTAssertTrue(body.contains("phpfpm_slow_requests{pool=\"www\"} 5\n# TYPE drover_spawns gauge\n"))
        XCTAssertTrue(body.contains("# TYPE drover_respawn_backoff_seconds gauge\n# UNIT drover_respawn_backoff_seconds seconds\n# HELP drover_respawn_backoff_seconds "))
        XCTAssertEqual(body, render([Self.pool()], "openmetrics").body)
        let order = ["phpfpm_up", "phpfpm_start_since", "phpfpm_accepted_connections", "phpfpm_listen_queue",
                     "phpfpm_max_listen_queue", "phpfpm_listen_queue_length", "phpfpm_idle_processes",
                     "phpfpm_active_processes", "phpfpm_total_processes", "phpfpm_max_active_processes",
                     "phpfpm_max_children_reached", "phpfpm_slow_requests"]
        let typeLines = body.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { String($0.split(separator: " ")[2]) }
        XCTAssertEqual(Array(typeLines.prefix(order.count)), order)
    }

    func testOpenMetricsNilFieldsOmitted() {
        let samples = checkOpenMetrics(render([Self.sparsePool()], "openmetrics").body)
        for name in ["phpfpm_listen_queue", "phpfpm_max_listen_queue", "phpfpm_listen_queue_length",
                     "phpfpm_slow_requests", "drover_dropped_log_records"] {
            XCTAssertNil(samples[name], name)
        }
        XCTAssertNotNil(samples["phpfpm_max_children_reached"])
        // Mixed: only the pool that has the figure gets a sample.
        let mixed = checkOpenMetrics(render([Self.sparsePool(), Self.pool(name: "api")], "openmetrics").body)
        XCTAssertEqual(mixed["phpfpm_listen_queue"]?.map(\.labels), ["{pool=\"api\"}"])
        XCTAssertEqual(mixed["phpfpm_up"]?.map(\.labels), ["{pool=\"www\"}", "{pool=\"api\"}"])
    }

    func testOpenMetricsMultiPoolAndLabelEscaping() {
        var odd = Self.pool(name: "we\"ird\\po\nol")
        odd.backoffMilliseconds = 250
        let body = render([Self.pool(), odd], "openmetrics").body
        let samples = checkOpenMetrics(body)
        XCTAssertEqual(samples["phpfpm_accepted_connections"]?.map(\.labels),
                       ["{pool=\"www\"}", "{pool=\"we\\\"ird\\\\po\\nol\"}"])
        XCTAssertEqual(samples["drover_respawn_backoff_seconds"]?.map(\.value), ["1.5", "0.25"])
        XCTAssertEqual(body.components(separatedBy: "# TYPE phpfpm_up ").count, 2, "one family, a sample per pool")
        XCTAssertEqual(render([], "openmetrics").body, "# EOF\n")
    }

    func testOpenMetricsPassesPromtool() throws {
        let candidates = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        guard let promtool = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("promtool not installed (apt-get install prometheus)")
        }
        var odd = Self.pool(name: "we\"ird\\pool")
        odd.backoffMilliseconds = 3
        for pools in [[Self.pool()], [Self.pool(), odd, Self.sparsePool(name: "lean")], [Self.sparsePool()]] {
            let body = render(pools, "openmetrics").body
            let (status, output) = try run(promtool, ["check", "metrics"], input: body)
            XCTAssertEqual(status, 0, "promtool check metrics:\n\(output)\n\(body)")
        }
    }

    /// A strict OpenMetrics parser (the Python client's), where one is installed
    /// (DROVER_TEST_PYTHON may name a python3 that has prometheus_client).
    func testOpenMetricsPassesStrictParser() throws {
        let script = """
            import sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            n = sum(len(f.samples) for f in text_string_to_metric_families(sys.stdin.read()))
            print(n)
            """
        let pythons = [ProcessInfo.processInfo.environment["DROVER_TEST_PYTHON"], "/usr/bin/python3", "/usr/local/bin/python3"]
        guard let python = pythons.compactMap({ $0 }).first(where: { FileManager.default.isExecutableFile(atPath: $0) }),
              (try? run(python, ["-c", "import prometheus_client.openmetrics.parser"], input: ""))?.status == 0 else {
            throw XCTSkip("python3 with prometheus_client not installed")
        }
        var odd = Self.pool(name: "we\"ird\\po\nol")
        odd.backoffMilliseconds = 3
        let body = render([Self.pool(), odd, Self.sparsePool(name: "lean")], "openmetrics").body
        let (status, output) = try run(python, ["-c", script], input: body)
        XCTAssertEqual(status, 0, "strict OpenMetrics parser:\n\(output)\n\(body)")
    }

    private func run(_ tool: String, _ arguments: [String], input: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stdout
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self))
    }

    // MARK: - Numbers

    func testNumberFormatting() {
        XCTAssertEqual(StatusNumber.fixed2(0), "0.00")
        XCTAssertEqual(StatusNumber.fixed2(12.5), "12.50")
        XCTAssertEqual(StatusNumber.fixed2(0.125), "0.12", "printf rounds the exact binary value, half to even")
        XCTAssertEqual(StatusNumber.fixed2(99.999), "100.00")
        XCTAssertEqual(StatusNumber.fixed2(-1.5), "-1.50")
        XCTAssertEqual(StatusNumber.fixed2(1e20), "100000000000000000000.00")
        XCTAssertEqual(StatusNumber.fixed2(1e300).count, 304)
        XCTAssertEqual(StatusNumber.fixed2(.nan), "0.00")
        XCTAssertEqual(StatusNumber.fixed2(.infinity), "0.00")
        XCTAssertEqual(StatusNumber.seconds(milliseconds: 0), "0")
        XCTAssertEqual(StatusNumber.seconds(milliseconds: 1), "0.001")
        XCTAssertEqual(StatusNumber.seconds(milliseconds: 10), "0.01")
        XCTAssertEqual(StatusNumber.seconds(milliseconds: 250), "0.25")
        XCTAssertEqual(StatusNumber.seconds(milliseconds: 1500), "1.5")
        XCTAssertEqual(StatusNumber.seconds(milliseconds: 60000), "60")
        XCTAssertEqual(StatusNumber.seconds(milliseconds: UInt32.max), "4294967.295")
        XCTAssertEqual(StatusNumber.elapsed(100, since: 150), "0", "a clock stepped back shows 0")
        XCTAssertEqual(StatusNumber.elapsed(.max, since: .min), "0")
    }

    func testClampsNegativeFigures() {
        var pool = Self.pool()
        pool.processes[0].startSince = -5
        pool.processes[0].requestDuration = -1
        pool.processes[0].lastRequestCPU = .nan
        let body = render([pool], "full").body
        XCTAssertTrue(body.contains("start since:          0\nrequests:             7\nrequest duration:     0\n"))
        XCTAssertTrue(body.contains("last request cpu:     0.00\n"))
    }
}
