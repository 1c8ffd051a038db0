// php-fpm's JSON status page: one object per pool, {"pool":"www","process manager":...},
// with "processes":[...] in full mode. Several pools (or none) make an array.

enum StatusJSON {
    static func render(_ pools: [PoolStatus], full: Bool) -> String {
        var out = ""
        out.reserveCapacity(pools.count * (450 + (full ? 400 * 8 : 0)) + 2)
        if pools.count == 1 {
            append(pools[0], full: full, to: &out)
            return out
        }
        out += "["
        for (index, pool) in pools.enumerated() {
            if index > 0 { out += "," }
            append(pool, full: full, to: &out)
        }
        out += "]"
        return out
    }

    static func append(_ pool: PoolStatus, full: Bool, to out: inout String) {
        out += "{"
        appendMembers(pool.statusFields, to: &out)
        if full {
            // php-fpm writes ", \"processes\":[" (with that space) and "]}".
            out += ", \"processes\":["
            for (index, process) in pool.processes.enumerated() {
                if index > 0 { out += "," }
                out += "{"
                appendMembers(process.statusFields(), to: &out)
                out += "}"
            }
            out += "]"
        }
        out += "}"
    }

    static func appendMembers(_ fields: [StatusField], to out: inout String) {
        for (index, field) in fields.enumerated() {
            if index > 0 { out += "," }
            out += "\""
            StatusEscape.json(field.name, into: &out)
            out += "\":"
            switch field.value {
            case .string(let text):
                out += "\""
                StatusEscape.json(text, into: &out)
                out += "\""
            case .number(let number):
                out += number
            case .time(let epoch):
                out += String(epoch)
            }
        }
    }
}
