// Shared by the status formats: the ordered field lists (so every format shows the
// same fields in the same order and leaves out the same nil ones), escaping for each
// format, and number and time formatting without Foundation.

import Glibc

/// A value on the status page.
enum StatusValue {
    /// A string: quoted in JSON, escaped everywhere.
    case string(String)
    /// An already formatted number: bare in JSON.
    case number(String)
    /// A Unix time: "%d/%b/%Y:%H:%M:%S %z" in local time for text and HTML,
    /// the number of seconds for JSON and XML (php-fpm's "%s").
    case time(Int64)
}

/// One line of the status page. `name` is php-fpm's JSON and HTML name; XML uses it with
/// dashes for spaces; text uses `textName` (php-fpm writes "request URI" there only).
struct StatusField {
    let name: String
    let textName: String
    let value: StatusValue

    init(_ name: String, text textName: String? = nil, _ value: StatusValue) {
        self.name = name
        self.textName = textName ?? name
        self.value = value
    }

    var xmlName: String {
        String(name.map { $0 == " " ? "-" : $0 })
    }
}

extension PoolStatus {
    /// php-fpm's pool fields in php-fpm's order, then Drover's; nil ones left out.
    var statusFields: [StatusField] {
        var fields: [StatusField] = []
        fields.reserveCapacity(18)
        fields.append(StatusField("pool", .string(name)))
        fields.append(StatusField("process manager", .string(processManager)))
        fields.append(StatusField("start time", .time(startTime)))
        fields.append(StatusField("start since", .number(StatusNumber.elapsed(now, since: startTime))))
        fields.append(StatusField("accepted conn", .number(String(acceptedConnections))))
        if let listenQueue {
            fields.append(StatusField("listen queue", .number(String(listenQueue))))
        }
        if let maxListenQueue {
            fields.append(StatusField("max listen queue", .number(String(maxListenQueue))))
        }
        if let listenQueueLength {
            fields.append(StatusField("listen queue len", .number(String(listenQueueLength))))
        }
        fields.append(StatusField("idle processes", .number(String(idleProcesses))))
        fields.append(StatusField("active processes", .number(String(activeProcesses))))
        fields.append(StatusField("total processes", .number(String(totalProcesses))))
        fields.append(StatusField("max active processes", .number(String(maxActiveProcesses))))
        fields.append(StatusField("max children reached", .number(String(maxChildrenReached))))
        if let slowRequests {
            fields.append(StatusField("slow requests", .number(String(slowRequests))))
        }
        fields.append(StatusField("spawns", .number(String(spawns))))
        fields.append(StatusField("crashes", .number(String(crashes))))
        fields.append(StatusField("respawn backoff", .number(String(backoffMilliseconds))))
        if let droppedLogRecords {
            fields.append(StatusField("dropped log records", .number(String(droppedLogRecords))))
        }
        return fields
    }
}

extension ProcessStatus {
    /// Names of the full-mode columns, for HTML's header row (status is always a column there).
    static let columnNames = [
        "pid", "state", "start time", "start since", "requests", "request duration",
        "request method", "request uri", "content length", "user", "script",
        "last request cpu", "last request memory", "app pid", "status",
    ]

    /// php-fpm's per-process fields in php-fpm's order, then Drover's.
    /// `status` is left out when nil unless `statusPlaceholder` is given (HTML's table cell).
    func statusFields(statusPlaceholder: String? = nil) -> [StatusField] {
        var fields: [StatusField] = []
        fields.reserveCapacity(15)
        fields.append(StatusField("pid", .number(String(pid))))
        fields.append(StatusField("state", .string(state)))
        fields.append(StatusField("start time", .time(startTime)))
        fields.append(StatusField("start since", .number(String(max(0, startSince)))))
        fields.append(StatusField("requests", .number(String(requests))))
        fields.append(StatusField("request duration", .number(String(max(0, requestDuration)))))
        fields.append(StatusField("request method", .string(StatusNumber.dash(requestMethod))))
        fields.append(StatusField("request uri", text: "request URI", .string(StatusNumber.dash(requestURI))))
        fields.append(StatusField("content length", .number(String(contentLength))))
        fields.append(StatusField("user", .string(StatusNumber.dash(user))))
        fields.append(StatusField("script", .string(StatusNumber.dash(script))))
        fields.append(StatusField("last request cpu", .number(StatusNumber.fixed2(lastRequestCPU ?? 0))))
        fields.append(StatusField("last request memory", .number(String(lastRequestMemory ?? 0))))
        fields.append(StatusField("app pid", .number(String(appPid))))
        if let statusCode {
            fields.append(StatusField("status", .number(String(statusCode))))
        } else if let statusPlaceholder {
            fields.append(StatusField("status", .string(statusPlaceholder)))
        }
        return fields
    }
}

// MARK: - Numbers and times

enum StatusNumber {
    /// `now - since` in seconds, never negative (a clock stepped back shows 0).
    static func elapsed(_ now: Int64, since start: Int64) -> String {
        let (difference, overflow) = now.subtractingReportingOverflow(start)
        return String(overflow ? 0 : max(0, difference))
    }

    /// php-fpm shows "-" for an empty method, URI, user or script.
    static func dash(_ text: String) -> String {
        text.isEmpty ? "-" : text
    }

    /// printf's "%.2f" (php-fpm's CPU figure), always with a "." whatever the C locale;
    /// NaN and infinities (never measured sensibly) show as 0.00.
    static func fixed2(_ value: Double) -> String {
        guard value.isFinite else { return "0.00" }
        var buffer = [CChar](repeating: 0, count: 32)
        var length = Int(withVaList([value]) { vsnprintf(&buffer, buffer.count, "%.2f", $0) })
        if length >= buffer.count {
            buffer = [CChar](repeating: 0, count: length + 1)
            length = Int(withVaList([value]) { vsnprintf(&buffer, buffer.count, "%.2f", $0) })
        }
        guard length > 0 else { return "0.00" }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(length)
        for char in buffer[0..<length] {
            let byte = UInt8(bitPattern: char)
            let isDigitOrSign = (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                || byte == UInt8(ascii: "-")
            bytes.append(isDigitOrSign ? byte : UInt8(ascii: "."))
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Milliseconds as seconds for OpenMetrics: 1500 -> "1.5", 250 -> "0.25", 0 -> "0".
    static func seconds(milliseconds: UInt32) -> String {
        let whole = milliseconds / 1000
        var fraction = milliseconds % 1000
        if fraction == 0 { return String(whole) }
        var digits = 3
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        let fractionText = String(fraction)
        return String(whole) + "." + String(repeating: "0", count: digits - fractionText.count) + fractionText
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// php-fpm's "%d/%b/%Y:%H:%M:%S %z" in local time (English month names whatever the
    /// locale, as in the C locale php-fpm runs in). Call `tzset()` once per page first:
    /// glibc's localtime_r does not reread TZ by itself.
    static func localTime(_ epoch: Int64) -> String {
        var seconds = time_t(truncatingIfNeeded: epoch)
        var parts = tm()
        guard localtime_r(&seconds, &parts) != nil else { return String(epoch) }
        var text = ""
        text.reserveCapacity(26)
        appendPadded(Int(parts.tm_mday), width: 2, to: &text)
        text += "/"
        text += months[Int(max(0, min(11, parts.tm_mon)))]
        text += "/"
        appendPadded(Int(parts.tm_year) + 1900, width: 4, to: &text)
        text += ":"
        appendPadded(Int(parts.tm_hour), width: 2, to: &text)
        text += ":"
        appendPadded(Int(parts.tm_min), width: 2, to: &text)
        text += ":"
        appendPadded(Int(parts.tm_sec), width: 2, to: &text)
        let offset = Int(parts.tm_gmtoff)
        text += offset < 0 ? " -" : " +"
        let minutes = abs(offset) / 60
        appendPadded(minutes / 60, width: 2, to: &text)
        appendPadded(minutes % 60, width: 2, to: &text)
        return text
    }

    private static func appendPadded(_ value: Int, width: Int, to text: inout String) {
        let digits = String(abs(value))
        if value < 0 { text += "-" }
        if digits.count < width { text += String(repeating: "0", count: width - digits.count) }
        text += digits
    }
}

// MARK: - Escaping

enum StatusEscape {
    /// JSON string contents (without the quotes): `"` `\` and every control character
    /// escaped (short forms where JSON has them, \u00XX otherwise), plus U+2028/U+2029 so
    /// the output is also safe inside JavaScript.
    static func json(_ text: String, into out: inout String) {
        let needsWork = text.utf8.contains { byte in
            byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte == 0xE2
        }
        if !needsWork {
            out += text
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\u{2028}": out += "\\u2028"
            case "\u{2029}": out += "\\u2029"
            default:
                if scalar.value < 0x20 {
                    out += "\\u00"
                    out += hexByte(UInt8(scalar.value))
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
    }

    /// XML and (X)HTML character data and attribute values: `& < > " '` as entities, a
    /// carriage return as `&#13;` (parsers would fold it), and characters XML 1.0 does not
    /// allow even as references (C0 controls other than tab and newline, U+FFFE, U+FFFF),
    /// as well as DEL and the C1 controls, replaced by U+FFFD.
    static func markup(_ text: String, into out: inout String) {
        let needsWork = text.utf8.contains { byte in
            switch byte {
            case UInt8(ascii: "&"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "\""),
                 UInt8(ascii: "'"), 0x7F, 0xC2, 0xEF:
                return true
            case UInt8(ascii: "\t"), UInt8(ascii: "\n"):
                return false
            default:
                return byte < 0x20
            }
        }
        if !needsWork {
            out += text
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\r": out += "&#13;"
            case "\t", "\n": out.unicodeScalars.append(scalar)
            default:
                let value = scalar.value
                if value < 0x20 || (value >= 0x7F && value <= 0x9F) || value == 0xFFFE || value == 0xFFFF {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
    }

    /// The plain-text page is read line by line (scripts grep "active processes:"), so a
    /// value must stay on its line: backslash as `\\`, tab/newline/CR as `\t` `\n` `\r`,
    /// other control characters as `\xHH` (C0, DEL) or `\u00HH` (C1).
    /// Printable text, including non-ASCII, is shown as it is (as php-fpm shows it).
    static func text(_ text: String, into out: inout String) {
        let needsWork = text.utf8.contains { byte in
            byte < 0x20 || byte == 0x7F || byte == UInt8(ascii: "\\") || byte == 0xC2
        }
        if !needsWork {
            out += text
            return
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                let value = scalar.value
                if value < 0x20 || value == 0x7F {
                    out += "\\x"
                    out += hexByte(UInt8(value))
                } else if value >= 0x80 && value <= 0x9F {
                    out += "\\u00"
                    out += hexByte(UInt8(value))
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
    }

    /// An OpenMetrics label value: `\` `"` and newline escaped as the spec's ABNF says;
    /// other control characters (which no pool name should hold) replaced by U+FFFD.
    static func labelValue(_ text: String, into out: inout String) {
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default:
                let value = scalar.value
                if value < 0x20 || (value >= 0x7F && value <= 0x9F) {
                    out += "\u{FFFD}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
    }

    private static let hexDigits: [Character] = Array("0123456789abcdef")

    static func hexByte(_ byte: UInt8) -> String {
        String([hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0x0F)]])
    }
}
