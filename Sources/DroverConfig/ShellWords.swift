// Shell-like word splitting for `command` (the app's argv). No Foundation.

/// Why a command line could not be split.
public struct ShellWordsError: Error, Hashable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Splits a command line into words the way a POSIX shell does for a simple
/// command, without running anything: blanks separate words; 'single quotes'
/// keep everything literally; "double quotes" keep everything except `\"`,
/// `\\`, `\$` and `` \` `` (and backslash-newline, removed); a backslash
/// outside quotes makes the next character literal. `''` and `""` are empty
/// words. No globbing, no `$VAR`, no operators: `;`, `|`, `&` are ordinary
/// characters here.
public enum ShellWords {
    public static func split(_ s: String) throws -> [String] {
        try split(s, stopAtSemicolon: false, expand: { _, _ in nil }).words
    }

    /// The splitter used for `command`: optionally stops at an unquoted `;`
    /// (an ini comment), and calls `expand(name, braced)` for `${name}` and
    /// `$name` outside single quotes; nil keeps the text as written. Expanded
    /// text is inserted as is (never split again).
    static func split(
        _ s: String, stopAtSemicolon: Bool,
        expand: (String, Bool) throws(ShellWordsError) -> String?
    ) throws(ShellWordsError) -> (words: [String], consumed: Int) {
        let b = Array(s.utf8)
        var words: [String] = []
        var word: [UInt8] = []
        var inWord = false
        var i = 0

        func isBlank(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
        func isIdent(_ c: UInt8) -> Bool {
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x5F
        }
        // Handles `$` at b[i]; returns true when it consumed something.
        func dollar() throws(ShellWordsError) -> Bool {
            guard i + 1 < b.count else { return false }
            if b[i + 1] == 0x7B {  // ${
                var j = i + 2
                while j < b.count, b[j] != 0x7D { j += 1 }
                if j >= b.count { throw ShellWordsError("unterminated '${': missing '}'") }
                let name = String(decoding: b[(i + 2)..<j], as: UTF8.self)
                if let v = try expand(name, true) {
                    word.append(contentsOf: v.utf8)
                } else {
                    word.append(contentsOf: b[i...j])
                }
                i = j + 1
                return true
            }
            if isIdent(b[i + 1]) {
                var j = i + 1
                while j < b.count, isIdent(b[j]) { j += 1 }
                let name = String(decoding: b[(i + 1)..<j], as: UTF8.self)
                if let v = try expand(name, false) {
                    word.append(contentsOf: v.utf8)
                    i = j
                    return true
                }
            }
            return false
        }

        while i < b.count {
            let c = b[i]
            if isBlank(c) {
                if inWord { words.append(String(decoding: word, as: UTF8.self)); word = []; inWord = false }
                i += 1
                continue
            }
            if c == 0x3B && stopAtSemicolon { break }
            inWord = true
            switch c {
            case 0x27:  // '
                guard let close = b[(i + 1)...].firstIndex(of: 0x27) else {
                    throw ShellWordsError("unterminated single quote")
                }
                word.append(contentsOf: b[(i + 1)..<close])
                i = close + 1
            case 0x22:  // "
                i += 1
                var closed = false
                while i < b.count {
                    let d = b[i]
                    if d == 0x22 { closed = true; i += 1; break }
                    if d == 0x5C, i + 1 < b.count {
                        let n = b[i + 1]
                        if n == 0x22 || n == 0x5C || n == 0x24 || n == 0x60 { word.append(n); i += 2; continue }
                        if n == 0x0A { i += 2; continue }
                    }
                    if d == 0x24, try dollar() { continue }
                    word.append(d)
                    i += 1
                }
                if !closed { throw ShellWordsError("unterminated double quote") }
            case 0x5C:  // backslash
                guard i + 1 < b.count else { throw ShellWordsError("trailing backslash") }
                if b[i + 1] != 0x0A { word.append(b[i + 1]) } else if word.isEmpty { inWord = false }
                i += 2
            case 0x24:  // $
                if try !dollar() { word.append(c); i += 1 }
            default:
                word.append(c)
                i += 1
            }
        }
        if inWord { words.append(String(decoding: word, as: UTF8.self)) }
        return (words, i)
    }
}
