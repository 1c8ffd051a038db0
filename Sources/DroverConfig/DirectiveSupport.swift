// What the directive table is made of: the public description of each
// directive, the parsing state it writes into, and the typed accessors a
// handler uses to read its value.

/// One directive Drover recognises (see `Directives.all`).
public struct DirectiveInfo: Sendable {
    public enum Scope: String, Sendable {
        case global, pool
    }
    /// As written in the file; array directives end in `[]` (`env[]`).
    public var name: String
    public var scope: Scope
    /// The default, as documented (`none` when unset).
    public var defaultValue: String
    public var summary: String
    /// false: recognised, parsed and validated, but ignored with a warning.
    public var implemented: Bool
    /// A Drover directive php-fpm does not have.
    public var droverExtension: Bool
    /// `name[key] = value` (`env[]`, `php_value[]`, `access.suppress_path[]`...).
    public var isArray: Bool { name.hasSuffix("[]") }

    public init(name: String, scope: Scope, defaultValue: String, summary: String,
                implemented: Bool, droverExtension: Bool = false) {
        self.name = name
        self.scope = scope
        self.defaultValue = defaultValue
        self.summary = summary
        self.implemented = implemented
        self.droverExtension = droverExtension
    }
}

/// Parsing state of `[global]`.
struct GlobalState {
    var config = GlobalConfig()
    /// Directive → where it was last set.
    var setAt: [String: SourceLocation] = [:]
    /// Directives whose value was rejected (no follow-up errors about them).
    var failed: Set<String> = []
    var statusListen: (spec: ListenSpec, location: SourceLocation)?
}

/// Parsing state of one pool (all its `[name]` sections).
struct PoolState {
    var config: PoolConfig
    /// Incremented at each `[name]` header that reopens the pool.
    var block = 0
    /// Directive → (where it was last set, in which block).
    var setAt: [String: (location: SourceLocation, block: Int)] = [:]
    /// Directives whose value was rejected (no follow-up errors about them).
    var failed: Set<String> = []
    var listen: [(spec: ListenSpec, location: SourceLocation)] = []
    var listenBlock = -1
    var statusListen: (spec: ListenSpec, location: SourceLocation)?

    init(name: String, location: SourceLocation) {
        config = PoolConfig(name: name, location: location)
    }

    func location(of directive: String) -> SourceLocation {
        setAt[directive]?.location ?? config.location
    }

    func isSet(_ directive: String) -> Bool { setAt[directive] != nil }
}

/// The value of one entry, read through the directive's type.
struct DirectiveInput {
    let entry: IniEntry
    /// How messages name the directive: `listen`, `env[PATH]`.
    let directive: String
    /// The current pool's name, nil in `[global]`.
    let pool: String?
    let environment: Environment
    let sink: DiagnosticSink

    var location: SourceLocation { entry.location }
    var key: String { entry.key ?? "" }

    func warn(_ message: String) { sink.warning(location, directive, message) }

    func decoded() throws(ValueError) -> DecodedValue {
        try Values.decode(entry.rawValue, environment: environment)
    }

    /// `$pool` replaced by the pool name (an error outside a pool, like php-fpm).
    func substitutePool(_ text: String) throws(ValueError) -> String {
        guard text.contains("$pool") else { return text }
        guard let pool else { throw ValueError("cannot use '$pool' outside a pool section") }
        return text.replacing("$pool", with: pool)
    }

    /// A string directive: decoded, `$pool` substituted.
    func string() throws(ValueError) -> String { try substitutePool(decoded().text) }

    /// A string directive where empty means unset.
    func optionalString() throws(ValueError) -> String? {
        let s = try string()
        return s.isEmpty ? nil : s
    }

    /// A comma-separated list: items trimmed, empty items dropped.
    func list() throws(ValueError) -> [String] {
        try string().split(separator: ",").map { String(Values.trimmed($0)) }.filter { !$0.isEmpty }
    }

    func bool() throws(ValueError) -> Bool { try Values.bool(decoded().text) }

    func int(in range: ClosedRange<Int>? = nil, _ rule: String = "") throws(ValueError) -> Int {
        let text = try decoded().text
        let v = try Values.integer(text)
        if let range, !range.contains(v) {
            throw ValueError("\(v) is out of range" + (rule.isEmpty ? " (\(range.lowerBound)..\(range.upperBound))" : " (\(rule))"))
        }
        return v
    }

    func nonNegativeInt() throws(ValueError) -> Int {
        try int(in: 0...Int(Int32.max), "must be greater than or equal to zero")
    }

    func time() throws(ValueError) -> Double { try Values.time(decoded().text) }

    func size() throws(ValueError) -> Int64 { try Values.size(decoded().text) }

    /// `rlimit_core`: `unlimited` (-1) or an integer >= 0.
    func rlimit() throws(ValueError) -> Int64 {
        let text = try decoded().text
        if text.lowercased() == "unlimited" { return -1 }
        guard let v = Values.integerOrNil(text) else {
            throw ValueError("'\(text)' is not a valid number; use an integer >= 0 or 'unlimited'")
        }
        if v < 0 { throw ValueError("must be greater than or equal to zero or 'unlimited'") }
        return Int64(v)
    }

    /// `listen`-style address (unix paths resolved later, against the prefix).
    func listen() throws(ValueError) -> ListenSpec {
        let text = try string()
        let (spec, warning) = try Listen.parse(text)
        if let warning { warn(warning) }
        return spec
    }

    /// A shell-like argv (`command`): the raw text after `=` up to an
    /// unquoted `;`, with `${NAME}` and `$pool` expanded outside single quotes.
    func words() throws(ValueError) -> [String] {
        let env = environment
        let pool = pool
        do {
            let (words, _) = try ShellWords.split(entry.rawValue, stopAtSemicolon: true) { name, braced throws(ShellWordsError) in
                if braced {
                    var n = Substring(name)
                    var fallback: Substring?
                    if let r = name.firstRange(of: ":-") {
                        n = name[..<r.lowerBound]
                        fallback = name[r.upperBound...]
                    }
                    if n.isEmpty { throw ShellWordsError("empty variable name in '${\(name)}'") }
                    var v = env[String(n)] ?? ""
                    if v.isEmpty, let fallback { v = String(fallback) }
                    return v
                }
                if name == "pool" {
                    guard let pool else { throw ShellWordsError("cannot use '$pool' outside a pool section") }
                    return pool
                }
                return nil
            }
            let trimmed = Values.trimmed(entry.rawValue)
            if words.count == 1, trimmed.hasPrefix("\""), words[0].contains(" ") {
                warn("the whole value is quoted, so it is one word (a program named '\(words[0])'); "
                     + "remove the outer quotes to pass arguments")
            }
            return words
        } catch {
            throw ValueError(error.message)
        }
    }
}

/// How a directive writes its value.
enum DirectiveApply: Sendable {
    case global(@Sendable (inout GlobalState, DirectiveInput) throws(ValueError) -> Void)
    case pool(@Sendable (inout PoolState, DirectiveInput) throws(ValueError) -> Void)
    /// `include`, handled while reading (IniReader).
    case include
}

struct DirectiveSpec: Sendable {
    var info: DirectiveInfo
    var apply: DirectiveApply
}
