// php-fpm's plain-text status page ("pool:                 www"), one block per pool.

import Glibc

enum StatusText {
    /// php-fpm aligns every value at column 23: "max active processes: " is the widest label.
    static let valueColumn = 22

    static func render(_ pools: [PoolStatus], full: Bool) -> String {
        tzset()
        var out = ""
        out.reserveCapacity(pools.count * (600 + (full ? 500 * 8 : 0)))
        for (index, pool) in pools.enumerated() {
            if index > 0 { out += "\n" }
            append(pool.statusFields, to: &out)
            if full {
                for process in pool.processes {
                    out += "\n************************\n"
                    append(process.statusFields(), to: &out)
                }
            }
        }
        return out
    }

    static func append(_ fields: [StatusField], to out: inout String) {
        for field in fields {
            out += field.textName
            out += ":"
            let width = field.textName.utf8.count + 1
            out += String(repeating: " ", count: max(1, valueColumn - width))
            switch field.value {
            case .string(let text): StatusEscape.text(text, into: &out)
            case .number(let number): out += number
            case .time(let epoch): out += StatusNumber.localTime(epoch)
            }
            out += "\n"
        }
    }
}
