// Where a FastCGI application listens, and how to connect to it (blocking
// policy lives here in droverctl, never in the FastCGI module).
#if canImport(Glibc)
import Glibc
#endif

/// An error droverctl reports with a message and an exit status.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var exitCode: Int32

    init(_ message: String, exitCode: Int32 = 2) {
        self.message = message
        self.exitCode = exitCode
    }

    /// An error for a failed system call, with `strerror(errno)` appended.
    static func system(_ what: String, errno code: Int32 = errno) -> CLIError {
        CLIError("\(what): \(String(cString: strerror(code)))")
    }

    var description: String { message }
}

/// A FastCGI address as users write it:
///
/// - `/run/drover/www.sock`, `./app.sock`, `app.sock`, `unix:PATH`: a Unix socket path
/// - `@name`: a Linux abstract Unix socket
/// - `host:port`, `127.0.0.1:9000`, `[::1]:9000`: TCP
/// - `9000` or `:9000`: TCP on 127.0.0.1
enum FastCGIAddress: Equatable, CustomStringConvertible {
    case unix(path: String)
    case abstract(name: String)
    case tcp(host: String, port: UInt16)

    static func parse(_ text: String) throws(CLIError) -> FastCGIAddress {
        guard !text.isEmpty else { throw CLIError("empty address", exitCode: 64) }
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { throw CLIError("empty Unix socket path in \"\(text)\"", exitCode: 64) }
            return .unix(path: path)
        }
        if text.hasPrefix("@") {
            guard text.count > 1 else { throw CLIError("empty abstract socket name", exitCode: 64) }
            return .abstract(name: String(text.dropFirst()))
        }
        if text.contains("/") { return .unix(path: text) }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw CLIError("missing \"]\" in \"\(text)\" (write IPv6 as [::1]:9000)", exitCode: 64)
            }
            let host = String(text[text.index(after: text.startIndex) ..< close])
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":"), !host.isEmpty else {
                throw CLIError("expected [IPv6]:PORT, got \"\(text)\"", exitCode: 64)
            }
            return .tcp(host: host, port: try parsePort(String(rest.dropFirst()), in: text))
        }
        if text.allSatisfy(\.isASCII) && text.allSatisfy(\.isNumber) {
            return .tcp(host: "127.0.0.1", port: try parsePort(text, in: text))
        }
        if let colon = text.lastIndex(of: ":") {
            let host = String(text[..<colon])
            if host.contains(":") {
                throw CLIError("write an IPv6 address in brackets: [\(host)]:PORT", exitCode: 64)
            }
            let port = try parsePort(String(text[text.index(after: colon)...]), in: text)
            return .tcp(host: host.isEmpty ? "127.0.0.1" : host, port: port)
        }
        return .unix(path: text)
    }

    private static func parsePort(_ text: String, in address: String) throws(CLIError) -> UInt16 {
        guard let port = UInt16(text), port > 0 else {
            throw CLIError("invalid port \"\(text)\" in \"\(address)\"", exitCode: 64)
        }
        return port
    }

    var description: String {
        switch self {
        case .unix(let path): return path
        case .abstract(let name): return "@" + name
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

/// A point in monotonic time after which the request is given up.
struct Deadline {
    private let end: Double?  // seconds on CLOCK_MONOTONIC, nil = never

    init(seconds: Double) {
        end = seconds > 0 ? Deadline.now() + seconds : nil
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Milliseconds left for poll(2): -1 for no deadline, 0 when passed.
    var pollTimeout: Int32 {
        guard let end else { return -1 }
        let left = end - Deadline.now()
        if left <= 0 { return 0 }
        return Int32(min(left * 1000 + 1, Double(Int32.max)))
    }

    var hasPassed: Bool { end.map { Deadline.now() >= $0 } ?? false }
}

enum Socket {
    /// Connects to `address` and returns a non-blocking, close-on-exec socket.
    static func connect(to address: FastCGIAddress, deadline: Deadline) throws(CLIError) -> Int32 {
        switch address {
        case .unix(let path):
            return try connectUnix(path: path, abstract: false, display: address.description, deadline: deadline)
        case .abstract(let name):
            return try connectUnix(path: name, abstract: true, display: address.description, deadline: deadline)
        case .tcp(let host, let port):
            return try connectTCP(host: host, port: port, display: address.description, deadline: deadline)
        }
    }

    private static func connectUnix(path: String, abstract: Bool, display: String,
                                     deadline: Deadline) throws(CLIError) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: addr.sun_path)
        let offset = abstract ? 1 : 0
        // A path needs its terminating NUL; an abstract name starts with one.
        guard bytes.count + 1 <= capacity else {
            throw CLIError("socket path too long (\(bytes.count) bytes, at most \(capacity - 1)): \(path)", exitCode: 64)
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[offset + i] = b }
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        let length = abstract ? pathOffset + 1 + bytes.count : MemoryLayout<sockaddr_un>.size
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CLIError.system("socket") }
        do {
            try withUnsafePointer(to: &addr) { pointer throws(CLIError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(CLIError) in
                    try connectNonBlocking(fd, sa, socklen_t(length), display: display, deadline: deadline)
                }
            }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }

    private static func connectTCP(host: String, port: UInt16, display: String,
                                   deadline: Deadline) throws(CLIError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw CLIError("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var lastError = CLIError("cannot connect to \(display)")
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let ai = entry {
            entry = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue),
                            ai.pointee.ai_protocol)
            if fd < 0 { lastError = CLIError.system("socket"); continue }
            do {
                try connectNonBlocking(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen,
                                       display: display, deadline: deadline)
                var one: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return fd
            } catch {
                close(fd)
                lastError = error
            }
        }
        throw lastError
    }

    private static func connectNonBlocking(_ fd: Int32, _ addr: UnsafePointer<sockaddr>, _ length: socklen_t,
                                           display: String, deadline: Deadline) throws(CLIError) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        while true {
            if Glibc.connect(fd, addr, length) == 0 { return }
            let code = errno
            if code == EAGAIN {
                // A Unix socket whose accept queue is full: wait for room, as a
                // blocking connect would, until the deadline.
                if deadline.hasPassed {
                    throw CLIError("timed out connecting to \(display) (its accept queue stayed full)")
                }
                usleep(10_000)
                continue
            }
            guard code == EINPROGRESS || code == EINTR else {
                throw CLIError.system("cannot connect to \(display)", errno: code)
            }
            break
        }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        while true {
            let n = poll(&pfd, 1, deadline.pollTimeout)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw CLIError.system("poll") }
            if n == 0 { throw CLIError("timed out connecting to \(display)") }
            break
        }
        var soError: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &size)
        if soError != 0 { throw CLIError.system("cannot connect to \(display)", errno: soError) }
    }
}
