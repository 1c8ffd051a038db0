// Talking to the agent's control socket: finding it (--socket, or the
// configuration's control.socket / pid file), sending one command line and
// reading the reply to the end.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import DroverConfig
import DroverCore

/// The options every control subcommand shares.
struct ControlOptions: ParsableArguments {
    @Option(name: [.customShort("s"), .long],
            help: ArgumentHelp("The control socket; then no configuration is read.", valueName: "path"))
    var socket: String?

    @Option(name: [.customShort("c"), .customLong("config")],
            help: ArgumentHelp("Drover's configuration file, read for control.socket (or pid); by default the one `drover --locations` names.", valueName: "file"))
    var configFile: String?

    /// -c, else drover's default configuration (its locations).
    var config: String { configFile ?? Locations.resolve().0.configFile }

    @Option(name: [.customShort("p"), .long],
            help: ArgumentHelp("The prefix drover was started with (-p), for relative paths in the configuration.",
                               valueName: "dir"))
    var prefix: String?

    @Option(name: [.customShort("t"), .long],
            help: ArgumentHelp("Give up after this many seconds.", valueName: "seconds"))
    var timeout: Double = 10

    func validate() throws {
        if !(timeout > 0) { throw ValidationError("--timeout must be more than 0 seconds.") }
        if let socket, socket.isEmpty { throw ValidationError("--socket must not be empty.") }
    }

    /// Where the control socket is: --socket, else from the configuration.
    func socketPath() throws(CLIError) -> String {
        if let socket { return socket }
        let loaded: Configuration
        do {
            loaded = try ConfigLoader.load(path: config, prefix: prefix)
        } catch let errors as ConfigErrors {
            let first = errors.errors.first.map { "\($0)" } ?? "unreadable"
            let more = errors.errors.count > 1 ? " (and \(errors.errors.count - 1) more)" : ""
            throw CLIError("cannot read the control socket's path from \(config): \(first)\(more); "
                           + "give it with --socket PATH", exitCode: 64)
        } catch {
            throw CLIError("cannot read \(config): \(error); give the control socket with --socket PATH", exitCode: 64)
        }
        guard let path = loaded.global.controlSocket else {
            throw CLIError("\(config) defines no control socket: set control.socket (or pid) in its [global] "
                           + "section, or give the socket with --socket PATH", exitCode: 64)
        }
        return path
    }

    /// Sends `command` and returns the reply; "ERR ..." replies are thrown.
    func send(_ command: String) throws(CLIError) -> String {
        let path = try socketPath()
        let reply = try ControlClient.exchange(path: path, command: command, deadline: Deadline(seconds: timeout))
        if reply.hasPrefix("ERR ") {
            var message = String(reply.dropFirst(4))
            while message.last == "\n" { message.removeLast() }
            throw CLIError("drover answered: \(message)", exitCode: 1)
        }
        return reply
    }
}

enum ControlClient {
    /// Connects to the Unix socket at `path`, sends `command` and a newline,
    /// and reads until the agent closes the connection.
    static func exchange(path: String, command: String, deadline: Deadline) throws(CLIError) -> String {
        let fd = try connect(path: path, deadline: deadline)
        defer { close(fd) }
        try Terminal.writeAll(fd, Array((command + "\n").utf8))
        shutdown(fd, Int32(SHUT_WR))
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&pfd, 1, deadline.pollTimeout)
            if ready < 0 {
                if errno == EINTR { continue }
                throw CLIError.system("poll")
            }
            if ready == 0 { throw CLIError("timed out waiting for drover's answer on \(path)") }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw CLIError.system("reading from \(path)")
            }
            reply += buffer[0..<n]
        }
        if reply.isEmpty { throw CLIError("drover closed the control connection without an answer (\(path))") }
        return String(decoding: reply, as: UTF8.self)
    }

    /// A connected, non-blocking socket, with errors that say what to do.
    static func connect(path: String, deadline: Deadline) throws(CLIError) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else {
            throw CLIError("control socket path too long (\(bytes.count) bytes, at most \(capacity - 1)): \(path)",
                           exitCode: 64)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        // Non-blocking, so a full accept queue is EAGAIN (retried until the
        // deadline) rather than a hang.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
                            | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw CLIError.system("socket") }
        while true {
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            if rc == 0 { return fd }
            let code = errno
            switch code {
            case EINTR:
                continue
            case EAGAIN where !deadline.hasPassed:
                // The accept queue is full: wait for room.
                usleep(10_000)
                continue
            default:
                close(fd)
                throw connectError(code, path: path)
            }
        }
    }

    static func connectError(_ code: Int32, path: String) -> CLIError {
        switch code {
        case ENOENT:
            return CLIError("is drover running? no control socket at \(path)")
        case ECONNREFUSED:
            return CLIError("is drover running? nothing answers on the control socket \(path) (left from a stopped drover?)")
        case EACCES, EPERM:
            return CLIError("permission denied on the control socket \(path): only the user drover runs as "
                            + "(and root) may use it")
        case ENOTDIR:
            return CLIError("is drover running? no control socket at \(path) (a parent is not a directory)")
        case EAGAIN:
            return CLIError("timed out connecting to \(path): drover's control socket is not accepting connections")
        default:
            return CLIError.system("cannot connect to the control socket \(path)", errno: code)
        }
    }
}
