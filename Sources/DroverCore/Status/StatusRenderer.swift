// The status page: php-fpm's five formats (text, JSON, XML, HTML, OpenMetrics)
// for one or several pools, from the plain snapshot model (StatusSnapshot.swift).
// One file per format; escaping and number/time formatting in StatusFormatting.swift.
// No Foundation here (daemon memory); Glibc only.

/// The formats of php-fpm's status page.
public enum StatusFormat: Sendable, Equatable, Hashable, CaseIterable {
    case text, json, xml, html, openmetrics
}

/// What a status request asks for, read from its query string as php-fpm reads `$_GET`.
public struct StatusQuery: Sendable, Equatable {
    public var format: StatusFormat
    /// Per-process rows ("full"); OpenMetrics ignores it, as php-fpm does.
    public var full: Bool

    public init(format: StatusFormat = .text, full: Bool = false) {
        self.format = format
        self.full = full
    }

    /// php-fpm's rules: the query string's parameter *names* choose the format, whatever
    /// their values ("?json&full", "?full&html", "?json=1"). When several are present
    /// php-fpm's precedence applies: html, then xml, then json, then openmetrics, else text.
    /// Names are split on `&`, cut at `=`, percent-decoded (`+` is a space) and, like PHP,
    /// `full[]` counts as `full`. Matching is case-sensitive, as in PHP. A leading `?` is ignored.
    public init(queryString: String) {
        var names = Set<String>()
        var query = Substring(queryString)
        if query.first == "?" { query = query.dropFirst() }
        for parameter in query.split(separator: "&") {
            let rawName = parameter.split(separator: "=", maxSplits: 1,
                                          omittingEmptySubsequences: false).first ?? ""
            var name = StatusQuery.percentDecoded(rawName)
            if let bracket = name.firstIndex(of: "["), bracket != name.startIndex {
                name = String(name[..<bracket])
            }
            names.insert(name)
        }
        full = names.contains("full")
        if names.contains("html") {
            format = .html
        } else if names.contains("xml") {
            format = .xml
        } else if names.contains("json") {
            format = .json
        } else if names.contains("openmetrics") {
            format = .openmetrics
        } else {
            format = .text
        }
    }

    static func percentDecoded(_ text: Substring) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = Array(text.utf8)[...]
        while let byte = iterator.popFirst() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                if iterator.count >= 2,
                   let high = hexValue(iterator[iterator.startIndex]),
                   let low = hexValue(iterator[iterator.startIndex + 1]) {
                    bytes.append(high << 4 | low)
                    iterator = iterator.dropFirst(2)
                } else {
                    bytes.append(byte)
                }
            default:
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// A rendered status page: the Content-Type header value and the body.
public struct RenderedStatus: Sendable, Equatable {
    public var contentType: String
    public var body: String

    public init(contentType: String, body: String) {
        self.contentType = contentType
        self.body = body
    }
}

/// Renders php-fpm's status page for one or several pools.
///
/// Every format keeps php-fpm 8.2's field names, order and spacing; Drover's extras
/// ("spawns", "crashes", "respawn backoff" in milliseconds, "dropped log records") follow
/// php-fpm's pool fields, and in full mode "app pid" and "status" follow php-fpm's
/// per-process fields. A field whose model value is nil (listen queue figures, slow
/// requests, dropped log records, a process's status) is left out, never shown as 0;
/// a process's nil CPU or memory shows as php-fpm shows an unmeasured one (0.00, 0).
/// Every string (URIs, scripts, users are attacker-controlled) is escaped for its format.
///
/// Content types are php-fpm's as it sends them: PHP appends its default charset to
/// `text/*` types, so text, HTML and XML say `;charset=UTF-8`.
///
/// Several pools (Drover's agent serves every pool on one page; a worker serves its own):
/// - text: each pool's block (with its process rows in full mode), separated by a blank line;
/// - JSON: one pool is php-fpm's object exactly; any other number of pools is an array of
///   such objects (`[]` for none);
/// - XML: one pool is php-fpm's document exactly; otherwise the `<status>` elements are
///   wrapped in one `<pools>` root element;
/// - HTML: one page; each pool's table (and process table in full mode) in turn;
/// - OpenMetrics: one metric family per figure with one sample per pool, told apart by a
///   `pool` label (see `StatusOpenMetrics` for names and types).
public enum StatusRenderer {
    public static func render(_ pools: [PoolStatus], as query: StatusQuery) -> RenderedStatus {
        switch query.format {
        case .text:
            return RenderedStatus(contentType: "text/plain;charset=UTF-8",
                                  body: StatusText.render(pools, full: query.full))
        case .json:
            return RenderedStatus(contentType: "application/json",
                                  body: StatusJSON.render(pools, full: query.full))
        case .xml:
            return RenderedStatus(contentType: "text/xml;charset=UTF-8",
                                  body: StatusXML.render(pools, full: query.full))
        case .html:
            return RenderedStatus(contentType: "text/html;charset=UTF-8",
                                  body: StatusHTML.render(pools, full: query.full))
        case .openmetrics:
            return RenderedStatus(
                contentType: "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body: StatusOpenMetrics.render(pools))
        }
    }

    /// One pool, as a php-fpm worker serves it.
    public static func render(_ pool: PoolStatus, as query: StatusQuery) -> RenderedStatus {
        render([pool], as: query)
    }
}
