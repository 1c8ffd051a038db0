import Glibc
import XCTest
@testable import DroverCore

final class AccessLogFormatTests: XCTestCase {
    private var savedTZ: String?
    private var allocations: [UnsafeMutableRawBufferPointer] = []

    override func setUp() {
        super.setUp()
        savedTZ = getenv("TZ").map { String(cString: $0) }
        setTimeZone("UTC0")
    }

    override func tearDown() {
        if let savedTZ { setenv("TZ", savedTZ, 1) } else { unsetenv("TZ") }
        tzset()
        for a in allocations { a.deallocate() }
        allocations = []
        super.tearDown()
    }

    private func setTimeZone(_ zone: String) {
        setenv("TZ", zone, 1)
        tzset()
    }

    // MARK: - Fixtures

    /// Bytes that live until tearDown.
    private func bytes(_ value: some Collection<UInt8>) -> UnsafeRawBufferPointer {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(value.count, 1), alignment: 1)
        allocations.append(buffer)
        buffer.copyBytes(from: value)
        return UnsafeRawBufferPointer(rebasing: buffer[0 ..< value.count])
    }

    private func bytes(_ value: String) -> UnsafeRawBufferPointer { bytes(Array(value.utf8)) }

    /// FastCGI name-value pairs (lengths of one or four bytes).
    private func pairs(_ list: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        func length(_ n: Int) {
            if n < 128 {
                out.append(UInt8(n))
            } else {
                out += [UInt8(0x80 | (n >> 24)), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
            }
        }
        for (name, value) in list {
            length(name.utf8.count)
            length(value.utf8.count)
            out += name.utf8
            out += value.utf8
        }
        return out
    }

    /// 1700000000 is 14/Nov/2023:22:13:20 UTC; the request took 1.234567 s.
    private func record() -> AccessRecord {
        var r = AccessRecord()
        r.startedAtMicros = 1_700_000_000_250_000
        r.endedAtMicros = 1_700_000_001_484_567
        r.durationMicros = 1_234_567
        r.cpuUserPercent = 12.5
        r.cpuSystemPercent = 3.125
        r.cpuTotalPercent = 15.625
        r.memoryBytes = 5_000_000
        r.status = 200
        r.contentLength = 42
        r.pool = "www"
        r.workerPID = 4242
        r.masterPID = 1
        r.method = bytes("GET")
        r.uri = bytes("/index.php")
        r.query = bytes("a=1&b=2")
        r.script = bytes("/srv/www/index.php")
        r.remoteAddr = bytes("203.0.113.7")
        r.user = bytes("alice")
        r.responseHead = bytes(
            "Status: 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\nX-Empty:\r\n"
                + "X-Powered-By:  Drover \t\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n\r\nX-Body: no\r\n")
        r.params = FastCGIParamBlock(bytes(pairs([
            ("REQUEST_METHOD", "GET"), ("HTTP_HOST", "example.com"), ("EMPTY", ""),
            ("HTTP_USER_AGENT", String(repeating: "u", count: 200)),
        ])))
        return r
    }

    private func render(_ format: String, _ r: AccessRecord? = nil, lineLimit: Int = 1024) throws -> String {
        let f = try AccessLogFormat(format, lineLimit: lineLimit)
        var out: [UInt8] = []
        f.render(r ?? record(), into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private func assertRejected(
        _ format: String, escape: String, mentioning fragment: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try AccessLogFormat(format)
            XCTFail("\(format) accepted", file: file, line: line)
        } catch {
            XCTAssertEqual(error.escape, escape, file: file, line: line)
            XCTAssertTrue(error.message.contains(fragment), "\(error.message)", file: file, line: line)
            XCTAssertEqual(error.description, error.message, file: file, line: line)
        }
    }

    // MARK: - The default format

    func testDefaultFormat() throws {
        XCTAssertEqual(try render(AccessLogFormat.defaultFormat),
                       "203.0.113.7 - alice 14/Nov/2023:22:13:20 +0000 \"GET /index.php\" 200\n")
    }

    func testDefaultFormatWithoutUserKeepsTwoSpacesLikePhpFpm() throws {
        var r = record()
        r.user = UnsafeRawBufferPointer(start: nil, count: 0)
        XCTAssertEqual(try render(AccessLogFormat.defaultFormat, r),
                       "203.0.113.7 -  14/Nov/2023:22:13:20 +0000 \"GET /index.php\" 200\n")
    }

    func testPhpFpmSampleFormat() throws {
        // The commented example in php-fpm's www.conf.
        XCTAssertEqual(
            try render("%R - %u %t \"%m %r%Q%q\" %s %f %{mili}d %{kilo}M %C%%"),
            "203.0.113.7 - alice 14/Nov/2023:22:13:20 +0000 \"GET /index.php?a=1&b=2\" 200 /srv/www/index.php 1234.567 4882 15.62%\n")
    }

    // MARK: - Each escape

    func testPercentAndLiteralText() throws {
        XCTAssertEqual(try render("100%% done → é, %%s stays"), "100% done → é, %s stays\n")
        XCTAssertEqual(try render("%%"), "%\n")
    }

    func testCPU() throws {
        XCTAssertEqual(try render("%C %{total}C %{user}C %{system}C %{USER}C %{Total}C"),
                       "15.62 15.62 12.50 3.12 12.50 15.62\n")  // printf rounds the exact 15.625 / 3.125 to even
        var r = record()
        r.cpuTotalPercent = nil
        r.cpuUserPercent = 0
        r.cpuSystemPercent = 250.004
        XCTAssertEqual(try render("%C %{user}C %{system}C", r), "- 0.00 250.00\n")
    }

    func testDuration() throws {
        XCTAssertEqual(
            try render("%d|%{seconds}d|%{milliseconds}d|%{milli}d|%{miliseconds}d|%{mili}d|%{microseconds}d|%{micro}d|%{MICRO}d"),
            "1.235|1.235|1234.567|1234.567|1234.567|1234.567|1234567|1234567|1234567\n")
        var r = record()
        r.durationMicros = 62_500  // 0.0625 s is exact in binary: a true tie, to even
        XCTAssertEqual(try render("%d %{milli}d %{micro}d", r), "0.062 62.500 62500\n")
        r.durationMicros = 0
        XCTAssertEqual(try render("%d %{milli}d %{micro}d", r), "0.000 0.000 0\n")
        r.durationMicros = 3_600_000_001
        XCTAssertEqual(try render("%d %{milli}d %{micro}d", r), "3600.000 3600000.001 3600000001\n")
    }

    func testParams() throws {
        XCTAssertEqual(try render("%{HTTP_HOST}e %{REQUEST_METHOD}e [%{EMPTY}e] %{MISSING}e %{http_host}e"),
                       "example.com GET [] - -\n")  // names are exact, like fcgi_getenv
        XCTAssertEqual(try render("%{HTTP_USER_AGENT}e"), String(repeating: "u", count: 200) + "\n")
        var r = record()
        r.params = nil
        XCTAssertEqual(try render("%{HTTP_HOST}e", r), "-\n")
        // A broken block finds nothing rather than failing.
        r.params = FastCGIParamBlock(bytes([UInt8]([9, 200, 65])))
        XCTAssertEqual(try render("%{HTTP_HOST}e", r), "-\n")
    }

    func testScriptContentLengthMethod() throws {
        XCTAssertEqual(try render("%f %l %m"), "/srv/www/index.php 42 GET\n")
        var r = record()
        r.script = UnsafeRawBufferPointer(start: nil, count: 0)
        r.method = UnsafeRawBufferPointer(start: nil, count: 0)
        r.contentLength = 0
        XCTAssertEqual(try render("%f %l %m", r), "- 0 -\n")
    }

    func testMemory() throws {
        XCTAssertEqual(
            try render("%M %{bytes}M %{kilobytes}M %{kilo}M %{megabytes}M %{mega}M %{Mega}M"),
            "5000000 5000000 4882 4882 4 4 4\n")
        var r = record()
        r.memoryBytes = nil
        XCTAssertEqual(try render("%M %{kilo}M", r), "- -\n")
    }

    func testPoolAndPids() throws {
        XCTAssertEqual(try render("%n %p %P"), "www 4242 1\n")
        var r = record()
        r.pool = ""
        r.workerPID = 2_147_483_647
        XCTAssertEqual(try render("%n %p", r), "- 2147483647\n")
    }

    func testResponseHeaders() throws {
        XCTAssertEqual(try render("%{Content-Type}o|%{content-type}o|%{X-Powered-By}o|%{Status}o"),
                       "text/html; charset=utf-8|text/html; charset=utf-8|Drover|404 Not Found\n")
        // Empty values, absent headers, a name that is only a suffix, and
        // lines after the blank line all print "-"; the first of several wins.
        XCTAssertEqual(try render("%{X-Empty}o %{X-Missing}o %{Type}o %{X-Body}o %{Set-Cookie}o"),
                       "- - - - a=1\n")
        var r = record()
        r.responseHead = bytes("Location: /next\nContent-Type : text/plain")  // bare \n, no blank line
        XCTAssertEqual(try render("%{Location}o %{Content-Type}o", r), "/next text/plain\n")
        r.responseHead = UnsafeRawBufferPointer(start: nil, count: 0)
        XCTAssertEqual(try render("%{Location}o", r), "-\n")
    }

    func testQueryAndURI() throws {
        XCTAssertEqual(try render("%r%Q%q"), "/index.php?a=1&b=2\n")
        var r = record()
        r.query = UnsafeRawBufferPointer(start: nil, count: 0)
        XCTAssertEqual(try render("[%r%Q%q]", r), "[/index.php]\n")
        r.uri = UnsafeRawBufferPointer(start: nil, count: 0)
        XCTAssertEqual(try render("[%r]", r), "[]\n")  // php-fpm prints nothing, not "-"
    }

    func testRemoteAddrStatusUser() throws {
        XCTAssertEqual(try render("%R %s %u"), "203.0.113.7 200 alice\n")
        var r = record()
        r.remoteAddr = UnsafeRawBufferPointer(start: nil, count: 0)
        r.user = UnsafeRawBufferPointer(start: nil, count: 0)
        r.status = 502
        XCTAssertEqual(try render("%R %s [%u]", r), "- 502 []\n")
    }

    func testTimes() throws {
        XCTAssertEqual(try render("%t|%T"), "14/Nov/2023:22:13:20 +0000|14/Nov/2023:22:13:21 +0000\n")
        XCTAssertEqual(try render("%{%Y-%m-%dT%H:%M:%S%z}t %{%s}T %{}t"),
                       "2023-11-14T22:13:20+0000 1700000001 14/Nov/2023:22:13:20 +0000\n")
        setTimeZone("CET-1")
        XCTAssertEqual(try render("%t %{%H:%M %Z}T"), "14/Nov/2023:23:13:20 +0100 23:13 CET\n")
    }

    func testTimeCacheFollowsTheSecond() throws {
        let f = try AccessLogFormat("%{%H:%M:%S}t %{%H:%M:%S}T")
        var r = record()
        var out: [UInt8] = []
        for (start, end, expected) in [
            (Int64(1_700_000_000_000_000), Int64(1_700_000_000_999_999), "22:13:20 22:13:20"),
            (1_700_000_000_500_000, 1_700_000_001_000_000, "22:13:20 22:13:21"),  // %t cached, %T new
            (1_700_000_059_000_000, 1_700_000_001_000_001, "22:14:19 22:13:21"),
            (1_700_000_000_000_000, 1_700_000_000_000_000, "22:13:20 22:13:20"),  // back in time
            (-1, -1, "23:59:59 23:59:59"),  // before the epoch rounds down
        ] {
            r.startedAtMicros = start
            r.endedAtMicros = end
            out.removeAll(keepingCapacity: true)
            f.render(r, into: &out)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), expected + "\n")
        }
    }

    func testOverlongTimeFormatPrintsNothing() throws {
        // php-fpm formats into 128 bytes; a longer result prints nothing.
        XCTAssertEqual(try render("[%{" + String(repeating: "%Y", count: 40) + "}t]"), "[]\n")
    }

    // MARK: - Lines

    func testRenderAppendsAndCountsTheLimitFromWhereItStarts() throws {
        let f = try AccessLogFormat("%s", lineLimit: 2)
        var out = Array("prefix ".utf8)
        XCTAssertEqual(f.render(record(), into: &out), .truncated)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "prefix 20\n")
    }

    func testLongLineIsCutAtPhpFpmsBuffer() throws {
        var r = record()
        r.params = FastCGIParamBlock(bytes(pairs([("LONG", String(repeating: "x", count: 5000))])))
        let f = try AccessLogFormat("%m %{LONG}e %s")
        var out: [UInt8] = []
        XCTAssertEqual(f.render(r, into: &out), .truncated)
        XCTAssertEqual(out.count, 1025)
        XCTAssertEqual(out.last, UInt8(ascii: "\n"))
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "GET " + String(repeating: "x", count: 1020) + "\n")

        // Cut in a literal and in a number.
        XCTAssertEqual(try render(String(repeating: "a", count: 1030)), String(repeating: "a", count: 1024) + "\n")
        XCTAssertEqual(try render(String(repeating: "a", count: 1022) + "%s"), String(repeating: "a", count: 1022) + "20\n")
    }

    func testLineOfExactlyTheLimitIsNotCut() throws {
        let f = try AccessLogFormat(String(repeating: "a", count: 1021) + "%s%q")
        var r = record()
        r.query = UnsafeRawBufferPointer(start: nil, count: 0)
        var out: [UInt8] = []
        XCTAssertEqual(f.render(r, into: &out), .written)
        XCTAssertEqual(out.count, 1025)
    }

    func testEmptyLineIsNotWritten() throws {
        var r = record()
        r.query = UnsafeRawBufferPointer(start: nil, count: 0)
        let f = try AccessLogFormat("%q%Q")
        var out = Array("x".utf8)
        XCTAssertEqual(f.render(r, into: &out), .empty)
        XCTAssertEqual(out, Array("x".utf8))
        XCTAssertEqual(try AccessLogFormat("").render(r, into: &out), .empty)
    }

    func testTrailingPercentIsIgnoredLikePhpFpm() throws {
        XCTAssertEqual(try render("%s %"), "200 \n")
    }

    // MARK: - Rejected formats

    func testUnknownEscapesAreRejected() {
        assertRejected("%s %x", escape: "%x", mentioning: "invalid escape %x")
        assertRejected("%b", escape: "%b", mentioning: "invalid escape %b")
        assertRejected("%é", escape: "%é", mentioning: "invalid escape %é")
        assertRejected("%{foo}z", escape: "%{foo}z", mentioning: "invalid escape %z")
        assertRejected("% d", escape: "% ", mentioning: "invalid escape")
    }

    func testBadModifiersAreRejected() {
        assertRejected("%{idle}C", escape: "%{idle}C", mentioning: "'total', 'user' or 'system'")
        assertRejected("%{hours}d", escape: "%{hours}d", mentioning: "'seconds', 'milli'")
        assertRejected("%{giga}M", escape: "%{giga}M", mentioning: "'bytes', 'kilo'")
        assertRejected("%{x}m", escape: "%{x}m", mentioning: "braces are not allowed for modifier %m")
        assertRejected("%{x}%", escape: "%{x}%", mentioning: "braces are not allowed")
        assertRejected("%{x}s", escape: "%{x}s", mentioning: "braces are not allowed")
        XCTAssertNoThrow(try AccessLogFormat("%{}m %{}C %{}d %{}M"))  // empty braces are no modifier
    }

    func testNamesAreRequired() {
        assertRejected("%e", escape: "%e", mentioning: "between braces for %e")
        assertRejected("%{}e", escape: "%{}e", mentioning: "between braces for %e")
        assertRejected("%o", escape: "%o", mentioning: "between braces for %o")
    }

    func testBracesMustCloseAndBeFollowedByALetter() {
        assertRejected("%s %{HTTP_HOST", escape: "%{HTTP_HOST", mentioning: "missing closing brace")
        assertRejected("%{HTTP_HOST}", escape: "%{HTTP_HOST}", mentioning: "missing escape letter")
    }

    // MARK: - Numbers

    /// appendFixed prints what glibc's "%.2f" / "%.3f" print.
    func testFixedPointMatchesPrintf() {
        var values: [Double] = [
            0, -0.0, 0.005, 0.015, 0.025, 0.125, 0.375, 1.005, 2.675, 15.625, 3.125, 99.995, 100,
            0.0625, 0.0005, 1.0005, 1234.5675, 1e-9, 123_456_789.125, .infinity, -.infinity, .nan,
            -1.5, -0.004, 1e15,
        ]
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0 ..< 20_000 {
            seed = seed &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let micros = Double(seed >> 40)  // up to ~16.7 s in µs
            values.append(micros / 1_000_000.0)
            values.append(micros / 1000.0)
            values.append(Double(seed >> 11) / Double(1 << 53) * 400)  // CPU shares
        }
        for decimals in [2, 3] {
            for v in values {
                var out: [UInt8] = []
                AccessLogFormat.appendFixed(v, decimals: decimals, &out)
                XCTAssertEqual(String(decoding: out, as: UTF8.self), printf(v, decimals), "\(v)")
            }
        }
    }

    func testDecimals() {
        for v: UInt64 in [0, 9, 10, 99, 100, 4242, 1_000_000, .max] {
            var out: [UInt8] = []
            AccessLogFormat.appendDecimal(v, &out)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), String(v))
        }
        var out: [UInt8] = []
        AccessLogFormat.appendSigned(-42, &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), "-42")
    }

    private func printf(_ v: Double, _ decimals: Int) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let format = decimals == 2 ? "%.2f" : "%.3f"
        _ = withVaList([v]) { vsnprintf(&buffer, buffer.count, format, $0) }
        return String(cString: buffer)
    }
}
