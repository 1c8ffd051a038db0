// libFuzzer target for the config parser (Sources/DroverConfig).
//
// One input is the text of a main config file. It goes through the public
// entry point, ConfigLoader.load (the ini lexer, include=, ${ENV} expansion,
// the directive table, value decoding, validation), and on success through
// ConfigLoader.dump (`drover -tt`); on failure the diagnostics are rendered.
// Each line's value is also given to the public helpers the directives use
// (IP.parse, IPRange, ShellWords.split).
//
// ConfigLoader reads files, so the input is written to drover.conf in a
// private sandbox directory (on /dev/shm when there is one) that also holds
// a few pool files under pool.d/ for include= to find. The environment is a
// fixed dictionary, never the process's. To keep include= inside the sandbox
// (an include of /dev/zero or a glob over / would hang the run, not find a
// bug), an input whose include line could name anything outside it is
// skipped: an include value must be a plain relative pattern (no leading
// '/', no '..', no quotes, backslashes or '$').
import CLibFuzzer
import DroverConfig
import Glibc

/// Stops the run with a message libFuzzer shows next to the stack.
func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
           file: StaticString = #file, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant: \(message())", file: file, line: line) }
}

let environment: [String: String] = [
    "APP_ROOT": "/srv/app",
    "POOL": "www",
    "PORT": "9000",
    "EMPTY": "",
    "HOME": "/home/www",
]

let poolFiles: [(String, String)] = [
    ("pool.d/10-api.conf", """
        [api]
        command = ${APP_ROOT}/bin/api-server --workers 1 --name $pool ; comment
        listen = 127.0.0.1:9101
        listen.allowed_clients = 127.0.0.1, 10.0.0.0/8, ::1
        pm.max_children = 4

        """),
    ("pool.d/www.conf", """
        [www]
        listen = /tmp/drover-fuzz-www.sock
        listen.mode = 0666
        pm = static
        pm.max_children = 2
        pm.status_path = /status
        ping.path = /ping
        ping.response = pong
        php_admin_value[memory_limit] = 64M
        env[DROVER_POOL] = $pool

        """),
    ("pool.d/cgi.conf", """
        [cgi]
        listen = [::1]:9102
        command = /usr/sbin/fcgiwrap -f
        pm = ondemand
        pm.max_children = 2

        """),
]

func fail(_ what: String) -> Never {
    let message = "FuzzConfig: cannot \(what): \(String(cString: strerror(errno)))\n"
    _ = message.withCString { write(2, $0, strlen($0)) }
    exit(2)
}

func writeFile(_ path: String, _ bytes: UnsafeRawBufferPointer) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    if fd < 0 { fail("create \(path)") }
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 { if errno == EINTR { continue }; fail("write \(path)") }
        done += n
    }
    close(fd)
}

/// The sandbox directory, made once per process and removed at exit.
nonisolated(unsafe) var sandboxPath: String = {
    var template = Array((access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp").utf8CString.dropLast())
    template += Array("/drover-fuzz-config.XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { fail("make a sandbox") }
    let dir = String(cString: made)
    if mkdir(dir + "/pool.d", 0o700) != 0 { fail("make \(dir)/pool.d") }
    for (name, text) in poolFiles {
        var t = text
        t.withUTF8 { writeFile(dir + "/" + name, UnsafeRawBufferPointer($0)) }
    }
    atexit {
        let dir = sandboxPath
        for (name, _) in poolFiles { unlink(dir + "/" + name) }
        unlink(dir + "/drover.conf")
        rmdir(dir + "/pool.d")
        rmdir(dir)
    }
    return dir
}()

/// Whether every include line keeps to the sandbox (see the header comment).
func includesStayInSandbox(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var start = 0
    while start <= bytes.count {
        var end = start
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        let line = bytes[start ..< end]
        start = end + 1
        // Any line that mentions include (any case) and has an '='.
        let lower = line.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        guard let eq = lower.firstIndex(of: UInt8(ascii: "=")),
              containsInclude(lower[..<eq]) else { continue }
        var value = lower[(eq + 1)...].drop { $0 == 0x20 || $0 == 0x09 }
        if let semicolon = value.firstIndex(of: UInt8(ascii: ";")) { value = value[..<semicolon] }
        if value.first == UInt8(ascii: "/") { return false }
        var previous: UInt8 = 0
        for c in value {
            let allowed = (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7A) || c == 0x20 || c == 0x09 || c == 0x0D
                || c == UInt8(ascii: "_") || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: "/")
                || c == UInt8(ascii: "*") || c == UInt8(ascii: "?") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]")
            if !allowed { return false }
            if c == UInt8(ascii: ".") && previous == UInt8(ascii: ".") { return false }
            previous = c
        }
    }
    return true
}

func containsInclude(_ bytes: ArraySlice<UInt8>) -> Bool {
    let word = Array("include".utf8)
    guard bytes.count >= word.count else { return false }
    var i = bytes.startIndex
    while i + word.count <= bytes.endIndex {
        if bytes[i ..< i + word.count].elementsEqual(word) { return true }
        i += 1
    }
    return false
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard includesStayInSandbox(bytes) else { return -1 }  // -1: not added to the corpus

    let dir = sandboxPath
    let path = dir + "/drover.conf"
    writeFile(path, bytes)

    do {
        let config = try ConfigLoader.load(path: path, prefix: dir, environment: environment)
        let dump = ConfigLoader.dump(config)
        check(!dump.isEmpty, "empty dump of a valid config")
        for warning in config.warnings { _ = warning.description }
        for pool in config.pools { _ = pool.listen.description }
    } catch let errors as ConfigErrors {
        check(!errors.errors.isEmpty, "ConfigErrors thrown without an error")
        _ = errors.description
    } catch {
        check(false, "ConfigLoader.load threw a \(type(of: error)), not ConfigErrors")
    }

    // The value helpers, on every line's text after '=' (or the whole line).
    let text = String(decoding: bytes, as: UTF8.self)
    for line in text.split(separator: "\n", omittingEmptySubsequences: true).prefix(64) {
        let value = line.firstIndex(of: "=").map { String(line[line.index(after: $0)...]) } ?? String(line)
        let trimmed = value.trimmingBlanks()
        if let ip = IP.parse(trimmed) {
            check(ip.count == 4 || ip.count == 16, "IP.parse gave \(ip.count) bytes")
            let formatted = IP.format(ip)
            check(IP.parse(formatted) == ip, "IP round trip: \(trimmed) -> \(formatted)")
        }
        for item in trimmed.split(separator: ",") {
            if let range = IPRange(parsing: item.trimmingBlanks()) {
                _ = range.description
                _ = range.contains([127, 0, 0, 1])
                _ = range.contains([UInt8](repeating: 0, count: 16))
            }
        }
        _ = try? ShellWords.split(value)
    }
    return 0
}

extension StringProtocol {
    func trimmingBlanks() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return String(s)
    }
}

/// main(): SwiftPM links `FuzzConfig_main` as the program's entry point on
/// Linux, so start libFuzzer's driver from it (same flags as libFuzzer's main).
@_cdecl("FuzzConfig_main")
public func fuzzConfigMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzConfig(data, size) }
}
