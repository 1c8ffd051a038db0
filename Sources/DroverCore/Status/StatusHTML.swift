// php-fpm's HTML (XHTML 1.0 Strict) status page: a table of pool fields and, in full
// mode, a bordered table with a row per process. Several pools share one page.

import Glibc

enum StatusHTML {
    static let head = """
        <!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">
        <html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
        <head><title>PHP-FPM Status Page</title></head>
        <body>

        """

    static func render(_ pools: [PoolStatus], full: Bool) -> String {
        tzset()
        var out = head
        out.reserveCapacity(pools.count * (1_000 + (full ? 600 * 8 : 0)) + 300)
        for (index, pool) in pools.enumerated() {
            out += "<table>\n"
            for field in pool.statusFields {
                out += "<tr><th>"
                out += field.name
                out += "</th><td>"
                appendValue(field.value, to: &out)
                out += "</td></tr>\n"
            }
            out += "</table>\n"
            if full {
                // php-fpm closes the process table with "</table></body></html>".
                out += "<table border=\"1\">\n<tr>"
                for name in ProcessStatus.columnNames {
                    out += "<th>"
                    out += name
                    out += "</th>"
                }
                out += "</tr>\n"
                for process in pool.processes {
                    out += "<tr>"
                    for field in process.statusFields(statusPlaceholder: "-") {
                        out += "<td>"
                        appendValue(field.value, to: &out)
                        out += "</td>"
                    }
                    out += "</tr>\n"
                }
                out += "</table>"
                if index < pools.count - 1 { out += "\n" }
            }
        }
        out += "</body></html>"
        return out
    }

    static func appendValue(_ value: StatusValue, to out: inout String) {
        switch value {
        case .string(let text): StatusEscape.markup(text, into: &out)
        case .number(let number): out += number
        case .time(let epoch): out += StatusNumber.localTime(epoch)
        }
    }
}
