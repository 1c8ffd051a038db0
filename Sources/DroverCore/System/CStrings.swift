import Glibc

/// Calls `body` with a NULL-terminated C array of the strings (argv/envp):
/// the one place that builds such arrays (apps, trace commands, re-exec).
public func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
