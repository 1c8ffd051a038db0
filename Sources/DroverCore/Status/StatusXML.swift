// php-fpm's XML status page: <status> with one element per field, <processes> in full
// mode. Several pools (or none) are wrapped in one <pools> root element.

enum StatusXML {
    static let declaration = "<?xml version=\"1.0\" ?>\n"

    static func render(_ pools: [PoolStatus], full: Bool) -> String {
        var out = declaration
        out.reserveCapacity(pools.count * (800 + (full ? 550 * 8 : 0)) + 64)
        if pools.count == 1 {
            append(pools[0], full: full, to: &out)
            return out
        }
        out += "<pools>\n"
        for pool in pools {
            append(pool, full: full, to: &out)
            out += "\n"
        }
        out += "</pools>"
        return out
    }

    /// php-fpm's layout: one field per line, then "</status>" without a final newline;
    /// in full mode "<processes>\n", one "<process>...</process>\n" per process, and
    /// "</processes>\n</status>".
    static func append(_ pool: PoolStatus, full: Bool, to out: inout String) {
        out += "<status>\n"
        for field in pool.statusFields {
            appendElement(field, to: &out)
            out += "\n"
        }
        if full {
            out += "<processes>\n"
            for process in pool.processes {
                out += "<process>"
                for field in process.statusFields() {
                    appendElement(field, to: &out)
                }
                out += "</process>\n"
            }
            out += "</processes>\n"
        }
        out += "</status>"
    }

    static func appendElement(_ field: StatusField, to out: inout String) {
        let name = field.xmlName
        out += "<"
        out += name
        out += ">"
        switch field.value {
        case .string(let text): StatusEscape.markup(text, into: &out)
        case .number(let number): out += number
        case .time(let epoch): out += String(epoch)
        }
        out += "</"
        out += name
        out += ">"
    }
}
