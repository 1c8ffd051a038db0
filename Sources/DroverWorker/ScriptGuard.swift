import DroverConfig
import Glibc

/// `security.limit_extensions`, php-fpm's defence against running an
/// uploaded file that is not PHP (`/uploads/evil.jpg`, or
/// `/uploads/evil.jpg/x.php`, which php-cgi's `cgi.fix_pathinfo` walks back
/// to `evil.jpg`). The worker decides before anything reaches the app, as
/// php-fpm's child does (fpm_main.c, fpm_php_limit_extensions): it finds the
/// file php-cgi would run for SCRIPT_FILENAME and checks that its name ends
/// with one of the extensions.
///
/// Only for php-cgi pools (no `command`, or a php-cgi command): other apps
/// do not run SCRIPT_FILENAME as PHP, and fcgiwrap's scripts have any name.
struct ScriptGuard {
    /// The extensions as bytes (".php", ".phar"); never empty.
    let extensions: [[UInt8]]
    /// The pool's chroot: the app sees SCRIPT_FILENAME inside it, the worker
    /// outside, so file lookups prefix it.
    let root: String?

    /// nil when the pool does not check: not php-cgi, or an empty
    /// `security.limit_extensions` (php-fpm: the check is off).
    init?(pool: PoolConfig) {
        guard Self.runsPHPCGI(pool), !pool.securityLimitExtensions.isEmpty else { return nil }
        extensions = pool.securityLimitExtensions.map { Array($0.utf8) }
        root = pool.chroot.flatMap { $0 == "/" ? nil : $0 }
    }

    /// The pool's app is php-cgi: no `command` (Drover runs php-cgi), or one
    /// whose program is php-cgi.
    static func runsPHPCGI(_ pool: PoolConfig) -> Bool {
        pool.command.first.map(App.isPHPCGI) ?? true
    }

    /// The script php-cgi would run for `scriptFilename` when its name is
    /// not allowed (the request must be refused), else nil.
    func deniedScript(_ scriptFilename: UnsafeRawBufferPointer) -> String? {
        // PHP reads params as C strings: a NUL ends the name it runs.
        let name = Array(scriptFilename.prefix { $0 != 0 })
        guard let script = Self.scriptToRun(name, exists: exists, isRegularFile: isRegularFile),
              !allows(script) else { return nil }
        return String(decoding: script, as: UTF8.self)
    }

    /// Whether `path` ends with one of the extensions, as php-fpm compares:
    /// byte for byte (case matters), and the name must be longer than the
    /// extension (a file called just `.php` is refused).
    func allows(_ path: [UInt8]) -> Bool {
        extensions.contains { ext in path.count > ext.count && path.suffix(ext.count).elementsEqual(ext) }
    }

    /// php-cgi's `cgi.fix_pathinfo = 1` (its default): SCRIPT_FILENAME itself
    /// when it exists and does not end in '/'; otherwise the longest leading
    /// part, cut at a '/', that is a regular file (the rest becomes
    /// PATH_INFO). nil when there is none: php-cgi then answers 404 itself
    /// ("No input file specified."), and php-fpm does too, without a check.
    static func scriptToRun(_ name: [UInt8], exists: ([UInt8]) -> Bool,
                            isRegularFile: ([UInt8]) -> Bool) -> [UInt8]? {
        if name.isEmpty { return nil }
        if name.last != UInt8(ascii: "/") && exists(name) { return name }
        var end = name.count
        while let slash = name[..<end].lastIndex(of: UInt8(ascii: "/")) {
            end = slash
            let prefix = Array(name[..<end])
            if !prefix.isEmpty && isRegularFile(prefix) { return prefix }
        }
        return nil
    }

    private func fileStatus(_ path: [UInt8]) -> stat? {
        let full = (root ?? "") + String(decoding: path, as: UTF8.self)
        var st = stat()
        return stat(full, &st) == 0 ? st : nil
    }

    private func exists(_ path: [UInt8]) -> Bool { fileStatus(path) != nil }

    private func isRegularFile(_ path: [UInt8]) -> Bool {
        guard let st = fileStatus(path) else { return false }
        return st.st_mode & S_IFMT == S_IFREG
    }
}
