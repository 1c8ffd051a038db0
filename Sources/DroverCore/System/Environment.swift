import Glibc

/// The process environment as a dictionary (Glibc only, no Foundation).
public enum Environment {
    public static func current() -> [String: String] {
        var result: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                result[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return result
    }

    /// Where programs are looked up when there is no PATH.
    public static let defaultSearchPath = "/usr/local/bin:/usr/bin:/bin"

    /// Finds an executable on PATH (or returns `name` if it has a slash).
    public static func findExecutable(_ name: String, path: String? = nil) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let searchPath = path ?? (getenv("PATH").map { String(cString: $0) } ?? defaultSearchPath)
        for dir in searchPath.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}
