import DroverCore
import FastCGI

/// The CGI params the worker itself looks at: for the scoreboard and to
/// recognise ping and status requests.
struct RequestParams {
    var scriptName = ""
    var requestURI = ""
    var queryString = ""
    var contentLength: UInt64 = 0

    /// Parses the params block and copies the scoreboard's fields into the
    /// slot in the same pass (no intermediate strings for those).
    static func parse(_ bytes: [UInt8], into slot: SlotWriter) throws -> RequestParams {
        var result = RequestParams()
        var contentLength: UInt64 = 0
        var fields: [(SlotWriter.Field, Range<Int>)] = []
        try bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!
            try NameValuePairs.forEach(in: raw) { name, value in
                let range = (value.baseAddress.map { $0 - base } ?? 0)..<((value.baseAddress.map { $0 - base } ?? 0) + value.count)
                switch name.count {
                case 11 where name.elementsEqual("SCRIPT_NAME".utf8):
                    result.scriptName = String(decoding: value, as: UTF8.self)
                case 11 where name.elementsEqual("REMOTE_USER".utf8):
                    fields.append((.user, range))
                case 11 where name.elementsEqual("REQUEST_URI".utf8):
                    result.requestURI = String(decoding: value, as: UTF8.self)
                    let path = value.firstIndex(of: UInt8(ascii: "?")).map { range.lowerBound..<(range.lowerBound + $0) } ?? range
                    fields.append((.uri, path))
                case 12 where name.elementsEqual("QUERY_STRING".utf8):
                    result.queryString = String(decoding: value, as: UTF8.self)
                    fields.append((.query, range))
                case 14 where name.elementsEqual("REQUEST_METHOD".utf8):
                    fields.append((.method, range))
                case 14 where name.elementsEqual("CONTENT_LENGTH".utf8):
                    contentLength = UInt64(String(decoding: value, as: UTF8.self)) ?? 0
                case 15 where name.elementsEqual("SCRIPT_FILENAME".utf8):
                    fields.append((.script, range))
                default:
                    break
                }
            }
            result.contentLength = contentLength
            slot.describeRequest(contentLength: contentLength) { set in
                for (field, range) in fields {
                    set(field, UnsafeRawBufferPointer(rebasing: raw[range]))
                }
            }
        }
        return result
    }

    /// The path php-fpm matches `ping.path` and `pm.status_path` against:
    /// SCRIPT_NAME, else the path of REQUEST_URI.
    var path: Substring {
        if !scriptName.isEmpty { return Substring(scriptName) }
        return requestURI.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    }
}
