// Value syntax of the ini dialect: quoting, ${ENV} expansion, booleans,
// integers, time and size suffixes, octal modes. No Foundation.
import Glibc

/// An error about one value; the caller adds `file:line: directive:`.
struct ValueError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// The variables `${NAME}` and `env[X] = $X` read.
struct Environment {
    var variables: [String: String]

    init(_ variables: [String: String]) { self.variables = variables }

    /// The process environment, read from `environ`.
    static func process() -> Environment {
        var result: [String: String] = [:]
        var cursor: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = environ
        while let p = cursor, let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                let name = String(s[..<eq])
                if result[name] == nil { result[name] = String(s[s.index(after: eq)...]) }
            }
            cursor = p + 1
        }
        return Environment(result)
    }

    subscript(name: String) -> String? { variables[name] }
}

/// A value after ini decoding.
struct DecodedValue {
    /// The text with quotes removed, escapes and `${NAME}` applied, comment
    /// dropped and unquoted surrounding whitespace trimmed.
    var text: String
    /// Some part of the value was quoted.
    var quoted: Bool

    /// PHP's ini scanner turns an unquoted yes/on/true into "1" and
    /// no/off/false/none/null into "" (php-fpm sees those).
    var phpScannerText: String {
        if quoted { return text }
        switch text.lowercased() {
        case "yes", "on", "true": return "1"
        case "no", "off", "false", "none", "null": return ""
        default: return text
        }
    }
}

enum Values {
    static let space: UInt8 = 0x20, tab: UInt8 = 0x09
    static let dquote: UInt8 = 0x22, squote: UInt8 = 0x27, backslash: UInt8 = 0x5C
    static let dollar: UInt8 = 0x24, lbrace: UInt8 = 0x7B, rbrace: UInt8 = 0x7D
    static let semicolon: UInt8 = 0x3B

    /// Decodes the text after `=` the way PHP's ini scanner does (one line):
    /// `;` starts a comment outside quotes; "double quotes" allow `\"`, `\\`,
    /// `\$` and `${NAME}`; 'single quotes' are raw; `${NAME}` (and PHP 8.3's
    /// `${NAME:-default}`) expands outside single quotes, unset names to "".
    /// Adjacent pieces are concatenated as written.
    static func decode(_ raw: String, environment: Environment) throws(ValueError) -> DecodedValue {
        let b = Array(raw.utf8)
        var out: [UInt8] = []
        var keep = 0          // out[..<keep] ends with something that must not be trimmed
        var quoted = false
        var i = 0
        while i < b.count, b[i] == space || b[i] == tab { i += 1 }
        while i < b.count {
            let c = b[i]
            if c == semicolon { break }
            if c == dquote {
                quoted = true
                i += 1
                var closed = false
                while i < b.count {
                    let d = b[i]
                    if d == dquote { closed = true; i += 1; break }
                    if d == backslash, i + 1 < b.count, b[i + 1] == dquote || b[i + 1] == backslash || b[i + 1] == dollar {
                        out.append(b[i + 1]); i += 2; continue
                    }
                    if d == dollar, i + 1 < b.count, b[i + 1] == lbrace {
                        i = try expand(b, at: i, into: &out, environment: environment)
                        continue
                    }
                    out.append(d); i += 1
                }
                if !closed { throw ValueError("unterminated double-quoted string") }
                keep = out.count
                continue
            }
            if c == squote {
                quoted = true
                i += 1
                var closed = false
                while i < b.count {
                    if b[i] == squote { closed = true; i += 1; break }
                    out.append(b[i]); i += 1
                }
                if !closed { throw ValueError("unterminated single-quoted string") }
                keep = out.count
                continue
            }
            if c == dollar, i + 1 < b.count, b[i + 1] == lbrace {
                i = try expand(b, at: i, into: &out, environment: environment)
                keep = out.count
                continue
            }
            out.append(c)
            if c != space && c != tab && c != 0x0D && c != 0x0A { keep = out.count }
            i += 1
        }
        out.removeSubrange(keep...)
        return DecodedValue(text: String(decoding: out, as: UTF8.self), quoted: quoted)
    }

    /// Expands `${NAME}` / `${NAME:-default}` starting at `b[i] == "$"`; returns the index after `}`.
    static func expand(_ b: [UInt8], at start: Int, into out: inout [UInt8], environment: Environment) throws(ValueError) -> Int {
        var j = start + 2
        while j < b.count, b[j] != rbrace { j += 1 }
        if j >= b.count { throw ValueError("unterminated '${': missing '}'") }
        let inner = String(decoding: b[(start + 2)..<j], as: UTF8.self)
        var name = inner
        var fallback: String?
        if let r = inner.firstRange(of: ":-") {
            name = String(inner[..<r.lowerBound])
            fallback = String(inner[r.upperBound...])
        }
        if name.isEmpty { throw ValueError("empty variable name in '${\(inner)}'") }
        var value = environment[name] ?? ""
        if value.isEmpty, let fallback { value = fallback }
        out.append(contentsOf: value.utf8)
        return j + 1
    }

    // MARK: scalars

    static func bool(_ text: String) throws(ValueError) -> Bool {
        switch text.lowercased() {
        case "1", "yes", "on", "true": return true
        case "0", "no", "off", "false", "none", "null", "": return false
        default: throw ValueError("invalid boolean value '\(text)' (use yes/no, on/off, true/false or 1/0)")
        }
    }

    static func integer(_ text: String) throws(ValueError) -> Int {
        guard let v = integerOrNil(text) else {
            throw ValueError("'\(text)' is not a valid integer")
        }
        return v
    }

    static func integerOrNil(_ text: String) -> Int? {
        var digits = Substring(text)
        var negative = false
        if digits.first == "-" { negative = true; digits = digits.dropFirst() } else if digits.first == "+" { digits = digits.dropFirst() }
        if digits.isEmpty || !digits.allSatisfy({ $0.isASCII && $0.isNumber }) { return nil }
        guard let v = Int(digits) else { return nil }
        return negative ? -v : v
    }

    /// `10`, `10s`, `5m`, `2h`, `1d`, `1.5s` → seconds. php-fpm's units.
    static func time(_ text: String) throws(ValueError) -> Double {
        if text.isEmpty { throw ValueError("invalid time value ''") }
        var number = Substring(text)
        var unit = 1.0
        switch text.last! {
        case "s", "S": number = number.dropLast()
        case "m", "M": number = number.dropLast(); unit = 60
        case "h", "H": number = number.dropLast(); unit = 3600
        case "d", "D": number = number.dropLast(); unit = 86400
        case let c where c.isASCII && c.isNumber: break
        default: throw ValueError("unknown suffix used in time value '\(text)' (use s, m, h or d)")
        }
        guard let v = decimal(number), v >= 0 else {
            throw ValueError("invalid time value '\(text)' (a number >= 0 with an optional s, m, h or d suffix)")
        }
        return v * unit
    }

    /// `512`, `64K`, `10M`, `1G` (powers of 1024, like PHP's memory_limit) → bytes.
    static func size(_ text: String) throws(ValueError) -> Int64 {
        if text.isEmpty { throw ValueError("invalid size ''") }
        var number = Substring(text)
        var unit: Int64 = 1
        switch text.last! {
        case "k", "K": number = number.dropLast(); unit = 1 << 10
        case "m", "M": number = number.dropLast(); unit = 1 << 20
        case "g", "G": number = number.dropLast(); unit = 1 << 30
        case let c where c.isASCII && c.isNumber: break
        default: throw ValueError("unknown suffix used in size '\(text)' (use K, M or G)")
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && $0.isNumber }), let v = Int64(number) else {
            throw ValueError("invalid size '\(text)' (a number with an optional K, M or G suffix)")
        }
        let (r, overflow) = v.multipliedReportingOverflow(by: unit)
        if overflow { throw ValueError("size '\(text)' is too large") }
        return r
    }

    /// A non-negative decimal number without exponent: `12`, `0.5`.
    static func decimal(_ s: Substring) -> Double? {
        if s.isEmpty || s.first == "." || s.last == "." { return nil }
        var dots = 0
        for c in s {
            if c == "." { dots += 1; continue }
            if !(c.isASCII && c.isNumber) { return nil }
        }
        if dots > 1 { return nil }
        return Double(s)
    }

    /// `0660`, `660`, `0o660` → 0o660 (at most 0777).
    static func octalMode(_ text: String) throws(ValueError) -> UInt32 {
        var digits = Substring(text)
        if digits.hasPrefix("0o") || digits.hasPrefix("0O") { digits = digits.dropFirst(2) }
        guard !digits.isEmpty, digits.allSatisfy({ ("0"..."7").contains($0) }), let v = UInt32(digits, radix: 8) else {
            throw ValueError("invalid mode '\(text)' (an octal number such as 0660)")
        }
        if v > 0o777 { throw ValueError("mode '\(text)' is out of range (at most 0777)") }
        return v
    }

    static func octalString(_ mode: UInt32) -> String {
        let s = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - s.count)) + s
    }

    /// Seconds for -tt output: `10s`, `0.5s`.
    static func seconds(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return "\(Int(v))s" }
        return "\(v)s"
    }

    static func trimmed(_ s: Substring) -> Substring {
        var s = s
        while let f = s.first, f == " " || f == "\t" || f == "\r" || f == "\n" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" { s = s.dropLast() }
        return s
    }

    static func trimmed(_ s: String) -> String { String(trimmed(Substring(s))) }
}

// MARK: paths

enum Paths {
    /// `path` made absolute against `base` (`$prefix` at its start means `base`).
    /// Duplicate slashes and `/./` are collapsed; `..` is kept.
    static func resolve(_ path: String, against base: String) -> String {
        var p = path
        if p == "$prefix" { p = "" } else if p.hasPrefix("$prefix/") { p = String(p.dropFirst("$prefix/".count)) }
        if p.hasPrefix("/") { return normalize(p) }
        if p.isEmpty { return normalize(base) }
        return normalize(base + "/" + p)
    }

    static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) where part != "." {
            parts.append(part)
        }
        let joined = parts.joined(separator: "/")
        if absolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    static func currentDirectory() -> String {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        return buf.withUnsafeMutableBufferPointer { b in
            guard let p = getcwd(b.baseAddress, b.count) else { return "/" }
            return String(cString: p)
        }
    }

    static func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? normalize(path) : resolve(path, against: currentDirectory())
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    static func hasWildcard(_ pattern: String) -> Bool {
        pattern.contains { $0 == "*" || $0 == "?" || $0 == "[" }
    }
}
