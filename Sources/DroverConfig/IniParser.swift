// Lexing php-fpm's ini files into section headers and `name = value`
// entries, following `include =` globs in place. Values are decoded later,
// by the directive that owns them (see Values.decode), because `command`
// uses shell quoting instead of ini quoting.
import Glibc

/// One `name = value` or `name[key] = value` line.
struct IniEntry {
    var location: SourceLocation
    /// The directive name as written (trimmed), without `[key]`.
    var name: String
    /// nil for a plain directive; the key (maybe "") for `name[key]`.
    var key: String?
    /// Everything after the first `=`, comment included.
    var rawValue: String

    /// How messages name it: `listen`, `env[PATH]`.
    var displayName: String { key.map { "\(name)[\($0)]" } ?? name }
}

enum IniEvent {
    case section(name: String, location: SourceLocation)
    case entry(IniEntry)
}

/// Collects every error and warning, in the order found.
final class DiagnosticSink {
    var errors: [ConfigDiagnostic] = []
    var warnings: [ConfigDiagnostic] = []

    func error(_ location: SourceLocation?, _ directive: String?, _ message: String) {
        errors.append(ConfigDiagnostic(.error, location, directive: directive, message))
    }

    func warning(_ location: SourceLocation?, _ directive: String?, _ message: String) {
        warnings.append(ConfigDiagnostic(.warning, location, directive: directive, message))
    }
}

/// Reads the main file and its includes into one stream of events.
struct IniReader {
    /// php-fpm refuses more than 5 files in an include chain.
    static let maxDepth = 5

    let prefix: String
    let environment: Environment
    let sink: DiagnosticSink
    private(set) var events: [IniEvent] = []
    private(set) var files: [String] = []
    private var chain: [String] = []
    private var seen: Set<String> = []

    init(prefix: String, environment: Environment, sink: DiagnosticSink) {
        self.prefix = prefix
        self.environment = environment
        self.sink = sink
    }

    /// Reads `path`. `includedAt` is the `include` line that named it (nil
    /// for the main file); errors opening it are reported there.
    mutating func read(file path: String, includedAt: SourceLocation? = nil) {
        let key = Paths.absolute(path)
        if chain.contains(key) {
            sink.error(includedAt, "include", "include cycle: '\(path)' includes itself (through \((chain + [key]).joined(separator: " -> ")))")
            return
        }
        if seen.contains(key) {
            sink.warning(includedAt, "include", "'\(path)' was already read; not reading it twice")
            return
        }
        if chain.count >= IniReader.maxDepth {
            sink.error(includedAt, "include", "cannot include '\(path)': more than \(IniReader.maxDepth) files nested (php-fpm's limit)")
            return
        }
        let bytes: [UInt8]
        do {
            bytes = try IniReader.readFile(path)
        } catch {
            sink.error(includedAt, includedAt == nil ? nil : "include", "cannot read '\(path)': \(error.message)")
            return
        }
        seen.insert(key)
        files.append(path)
        chain.append(key)
        defer { chain.removeLast() }

        var lineNumber = 0
        var start = 0
        var content = bytes[...]
        if content.starts(with: [0xEF, 0xBB, 0xBF]) { content = content.dropFirst(3) }
        start = content.startIndex
        while start < content.endIndex {
            lineNumber += 1
            var end = start
            while end < content.endIndex, content[end] != 0x0A { end += 1 }
            var lineBytes = content[start..<end]
            if lineBytes.last == 0x0D { lineBytes = lineBytes.dropLast() }
            start = end + 1
            let location = SourceLocation(file: path, line: lineNumber)
            lex(String(decoding: lineBytes, as: UTF8.self), at: location)
        }
    }

    private mutating func lex(_ line: String, at location: SourceLocation) {
        let text = Values.trimmed(Substring(line))
        if text.isEmpty || text.first == ";" { return }
        if text.first == "[" {
            section(text, at: location)
            return
        }
        guard let eq = text.firstIndex(of: "=") else {
            sink.error(location, nil, "syntax error: expected 'name = value' or '[section]', found '\(text)'")
            return
        }
        let lhs = Values.trimmed(text[..<eq])
        let rawValue = String(text[text.index(after: eq)...])
        var name = lhs
        var key: String?
        if let open = lhs.firstIndex(of: "[") {
            guard lhs.last == "]" else {
                sink.error(location, nil, "syntax error: missing ']' in '\(lhs)'")
                return
            }
            name = Values.trimmed(lhs[..<open])
            key = IniReader.unquote(Values.trimmed(lhs[lhs.index(after: open)..<lhs.index(before: lhs.endIndex)]))
        }
        if name.isEmpty {
            sink.error(location, nil, "syntax error: missing directive name before '='")
            return
        }
        let entry = IniEntry(location: location, name: String(name), key: key, rawValue: rawValue)
        if entry.name.lowercased() == "include" {
            if key != nil {
                sink.error(location, entry.displayName, "include is not an array directive")
                return
            }
            include(entry)
            return
        }
        events.append(.entry(entry))
    }

    private mutating func section(_ text: Substring, at location: SourceLocation) {
        guard let close = text.firstIndex(of: "]") else {
            sink.error(location, nil, "syntax error: missing ']' in section header '\(text)'")
            return
        }
        let after = Values.trimmed(text[text.index(after: close)...])
        if !after.isEmpty && after.first != ";" {
            sink.error(location, nil, "syntax error: unexpected '\(after)' after section header")
            return
        }
        let name = IniReader.unquote(Values.trimmed(text[text.index(after: text.startIndex)..<close]))
        if name.isEmpty {
            sink.error(location, nil, "syntax error: empty section name '[]'")
            return
        }
        events.append(.section(name: name, location: location))
    }

    /// `include = glob`: relative patterns are relative to the prefix (as
    /// php-fpm's are to -p or its install prefix); matches are read in
    /// sorted order, in place, so they continue the current section.
    private mutating func include(_ entry: IniEntry) {
        let pattern: String
        do {
            pattern = try Values.decode(entry.rawValue, environment: environment).text
        } catch {
            sink.error(entry.location, "include", error.message)
            return
        }
        if pattern.isEmpty {
            sink.error(entry.location, "include", "empty include pattern")
            return
        }
        let resolved = Paths.resolve(pattern, against: prefix)
        var g = glob_t()
        defer { globfree(&g) }
        let rc = glob(resolved, GLOB_ERR | GLOB_MARK, nil, &g)
        switch rc {
        case 0:
            var matches: [String] = []
            for i in 0..<Int(g.gl_pathc) {
                guard let p = g.gl_pathv[i] else { continue }
                let path = String(cString: p)
                if path.hasSuffix("/") { continue }  // directories
                matches.append(path)
            }
            for path in matches { read(file: path, includedAt: entry.location) }
        case GLOB_NOMATCH:
            if Paths.hasWildcard(resolved) {
                sink.warning(entry.location, "include", "nothing matches the include pattern '\(resolved)'")
            } else {
                sink.error(entry.location, "include", "'\(resolved)' does not exist")
            }
        case GLOB_ABORTED:
            sink.error(entry.location, "include", "cannot read a directory of the include pattern '\(resolved)'")
        default:
            sink.error(entry.location, "include", "cannot expand the include pattern '\(resolved)' (glob error \(rc))")
        }
    }

    static func unquote(_ s: Substring) -> String {
        if s.count >= 2, let f = s.first, f == "\"" || f == "'", s.last == f {
            return String(s.dropFirst().dropLast())
        }
        return String(s)
    }

    struct ReadError: Error { var message: String }

    static func readFile(_ path: String) throws(ReadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw ReadError(message: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
            throw ReadError(message: "is a directory")
        }
        var result: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(message: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            result.append(contentsOf: buf[0..<n])
        }
        return result
    }
}
