import CDroverSys
import Glibc

/// Where Drover looks for its files when not told (design §10), and where
/// each answer came from, which `drover --locations` prints. In order:
///
/// 1. a locations file: `$DROVER_LOCATIONS`, else `drover.locations` beside
///    the binary (`key = value` lines; a distribution's relocated layout);
/// 2. the source tree the binary was built in (`.build/…/drover` under a
///    directory with `Package.swift` and `Config/drover.conf`): Drover runs
///    "originally packaged", on the demo configuration, with no install;
/// 3. the values `make` compiled in (`make install PREFIX=… SYSCONFDIR=…
///    LOCALSTATEDIR=… RUNDIR=… DROVER_USER=… DROVER_GROUP=…`, like php-fpm's
///    `--with-fpm-*`), else /etc, /var, /run, www-data.
///
/// Flags (-y, -g) override all of them for one run.
public struct Locations: Sendable {
    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: String
        /// "compiled in", "locations file PATH", "source tree DIR" or "flag -y".
        public var source: String
    }

    /// The bases: a locations file may set them, and the rest follows.
    static let baseKeys = ["sysconfdir", "localstatedir", "rundir", "user", "group"]
    /// What each derived location is made of: a base and a path under it.
    static let derived: [(key: String, base: String, path: String)] = [
        ("config_file", "sysconfdir", "/drover/drover.conf"),
        ("pool_dir", "sysconfdir", "/drover/pool.d"),
        ("run_dir", "rundir", "/drover"),
        ("pid_file", "rundir", "/drover/drover.pid"),
        ("control_socket", "rundir", "/drover/drover.ctl"),
        ("log_dir", "localstatedir", "/log/drover"),
    ]
    public static var keys: [String] { baseKeys + derived.map(\.key) }

    public private(set) var entries: [Entry]

    public subscript(key: String) -> String { entries.first { $0.key == key }?.value ?? "" }
    public var configFile: String { self["config_file"] }

    /// Sets `key` for this run (a command-line flag).
    public mutating func override(_ key: String, _ value: String, by flag: String) {
        guard let i = entries.firstIndex(where: { $0.key == key }) else { return }
        entries[i] = Entry(key: key, value: value, source: "flag \(flag)")
    }

    /// The locations of this process. Problems with a locations file are
    /// returned as warnings (the file is then ignored).
    public static func resolve(executable: String? = currentExecutable(),
                               environment: [String: String] = Environment.current()) -> (Locations, warnings: [String]) {
        var values: [String: String] = [:]
        var sources: [String: String] = [:]
        for key in baseKeys {
            values[key] = String(cString: drover_build_value(key))
            sources[key] = "compiled in"
        }
        var explicit: [String: String] = [:]
        var warnings: [String] = []
        let dir = executable.map(parentDirectory)
        if let file = environment["DROVER_LOCATIONS"] ?? dir.map({ "\($0)/drover.locations" }).flatMap({ access($0, F_OK) == 0 ? $0 : nil }) {
            switch readFile(file) {
            case .success(let pairs):
                for (key, value) in pairs {
                    guard keys.contains(key) else {
                        warnings.append("\(file): unknown location '\(key)' (known: \(keys.joined(separator: ", ")))")
                        continue
                    }
                    explicit[key] = value
                    sources[key] = "locations file \(file)"
                }
            case .failure(let why):
                warnings.append("\(file): \(why); using the other locations")
            }
        } else if let dir, let root = sourceTree(above: dir) {
            let source = "source tree \(root)"
            explicit["config_file"] = "\(root)/Config/drover.conf"
            explicit["pool_dir"] = "\(root)/Config/pool.d"
            explicit["control_socket"] = "/tmp/drover-demo.ctl"
            for key in ["config_file", "pool_dir", "control_socket"] { sources[key] = source }
        }
        for key in baseKeys { if let v = explicit[key] { values[key] = v } }
        var entries = baseKeys.map { Entry(key: $0, value: values[$0]!, source: sources[$0]!) }
        for (key, base, path) in derived {
            entries.append(Entry(key: key, value: explicit[key] ?? values[base]! + path,
                                 source: explicit[key] != nil ? sources[key]! : sources[base]!))
        }
        return (Locations(entries: entries), warnings)
    }

    /// The directory above `dir` (at most 4 levels) that holds Package.swift
    /// and Config/drover.conf: the binary runs from its source tree.
    static func sourceTree(above dir: String) -> String? {
        var candidate = dir
        for _ in 0..<5 {
            if access("\(candidate)/Package.swift", F_OK) == 0 && access("\(candidate)/Config/drover.conf", F_OK) == 0 {
                return candidate
            }
            guard candidate != "/" else { return nil }
            candidate = parentDirectory(candidate)
        }
        return nil
    }

    /// `key = value` lines; `;` and `#` start comments.
    static func readFile(_ path: String) -> Result<[(String, String)], LocationsFileError> {
        guard let bytes = FD.readFile(path, limit: 64 * 1024) else { return .failure(LocationsFileError("cannot read it: \(SystemError.message(errno))")) }
        let text = String(decoding: bytes, as: UTF8.self)
        var pairs: [(String, String)] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingSpaces
            if line.isEmpty || line.hasPrefix(";") || line.hasPrefix("#") { continue }
            guard let eq = line.firstIndex(of: "=") else { return .failure(LocationsFileError("line \(n + 1): expected key = value")) }
            let value = line[line.index(after: eq)...].trimmingSpaces
            pairs.append((line[..<eq].trimmingSpaces, value))
        }
        return .success(pairs)
    }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// This process's binary (/proc/self/exe), nil if unknown.
    public static func currentExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

public struct LocationsFileError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Build facts for `drover -v`.
public enum BuildInfo {
    public static var gitCommit: String { String(cString: drover_build_value("git_commit")) }
    public static var buildDate: String { String(cString: drover_build_value("build_date")) }
    public static var builtBy: String { String(cString: drover_build_value("built_by")) }
}

private extension Substring {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}
