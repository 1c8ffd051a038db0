import DroverCore
import FastCGI

/// The CGI params the worker itself looks at, as byte ranges into the params
/// block (no strings on the hot path): for the scoreboard, and to recognise
/// ping and status requests.
struct RequestParams {
    var method: Range<Int>?
    var uri: Range<Int>?
    var uriPath: Range<Int>?
    var query: Range<Int>?
    var script: Range<Int>?
    var scriptName: Range<Int>?
    var user: Range<Int>?
    var contentLength: UInt64 = 0

    /// Most params a request may carry (nginx sends a few dozen: one per
    /// HTTP header plus the CGI variables); more is hostile input.
    static let maxCount = 1000

    /// Finds the params in `raw` and copies the scoreboard's fields into the slot.
    static func parse(_ raw: UnsafeRawBufferPointer, into slot: SlotWriter) throws -> RequestParams {
        var p = RequestParams()
        let base = raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!
        var count = 0
        try NameValuePairs.forEach(in: raw) { name, value in
            count += 1
            if count > maxCount { throw FastCGIError.limitExceeded("more than \(maxCount) params") }
            let start = value.baseAddress.map { $0 - base } ?? 0
            let range = start..<(start + value.count)
            switch name.count {
            case 11 where name.elementsEqual("SCRIPT_NAME".utf8): p.scriptName = range
            case 11 where name.elementsEqual("REMOTE_USER".utf8): p.user = range
            case 11 where name.elementsEqual("REQUEST_URI".utf8):
                p.uri = range
                let question = value.firstIndex(of: UInt8(ascii: "?"))
                p.uriPath = question.map { start..<(start + $0) } ?? range
            case 12 where name.elementsEqual("QUERY_STRING".utf8): p.query = range
            case 14 where name.elementsEqual("REQUEST_METHOD".utf8): p.method = range
            case 14 where name.elementsEqual("CONTENT_LENGTH".utf8): p.contentLength = parseDecimal(value)
            case 15 where name.elementsEqual("SCRIPT_FILENAME".utf8): p.script = range
            default: break
            }
        }
        slot.describeRequest(contentLength: p.contentLength) { set in
            func put(_ field: SlotWriter.Field, _ range: Range<Int>?) {
                if let range { set(field, UnsafeRawBufferPointer(rebasing: raw[range])) }
            }
            put(.method, p.method)
            put(.uri, p.uriPath)
            put(.query, p.query)
            put(.script, p.script)
            put(.user, p.user)
        }
        return p
    }

    /// Whether the request's path is `path`: php-fpm matches `ping.path` and
    /// `pm.status_path` against SCRIPT_NAME; without one, REQUEST_URI's path.
    func pathIs(_ path: [UInt8], in raw: UnsafeRawBufferPointer) -> Bool {
        guard let range = scriptName ?? uriPath else { return false }
        return range.count == path.count && raw[range].elementsEqual(path)
    }

    func queryString(in raw: UnsafeRawBufferPointer) -> String {
        query.map { String(decoding: raw[$0], as: UTF8.self) } ?? ""
    }

    private static func parseDecimal(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var n: UInt64 = 0
        for b in bytes {
            guard b >= 48 && b <= 57 else { return 0 }
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(b - 48))
            if o1 || o2 { return 0 }
            n = s
        }
        return n
    }
}
