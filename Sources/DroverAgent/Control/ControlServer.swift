import DroverConfig
import DroverCore
import Glibc

// The control socket (design §6) that droverctl talks to: a Unix stream
// socket at `control.socket`, mode 0600, owned by the master's user, so only
// that user (and root) can connect.
//
// Protocol: one command per connection, one line (at most 1 KiB, ended by
// "\n" or by the client closing its side); the agent writes the reply and
// closes. Errors are one line "ERR message".
//
//   status        every pool's status (php-fpm's text), then one line per process
//   status json   a JSON array with one object per pool, per-process rows included
//   reopen        the agent reopens every log file           → "OK"
//   reload        SIGUSR2 to the master                      → "OK"
//   generation    the master's generation and refused reloads → "generation N refused M"
//   stop          SIGQUIT to the master (graceful stop)      → "OK"
//   stop now      SIGTERM to the master (fast stop)          → "OK"
//
// Query strings in status replies are redacted like on the status pages.

/// A control command.
public enum ControlCommand: Equatable, Sendable {
    case status(json: Bool)
    case reopen
    case reload
    case generation
    case stop(now: Bool)

    /// Words separated by spaces or tabs, case-insensitive; nil if unknown.
    public init?(parsing line: String) {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map { $0.lowercased() }
        switch words {
        case ["status"]: self = .status(json: false)
        case ["status", "json"]: self = .status(json: true)
        case ["reopen"]: self = .reopen
        case ["reload"]: self = .reload
        case ["generation"]: self = .generation
        case ["stop"]: self = .stop(now: false)
        case ["stop", "now"]: self = .stop(now: true)
        default: return nil
        }
    }

    public static let usage = "status, status json, reopen, reload, generation, stop, stop now"
}

/// What the commands act on; the server passes the real ones, tests fakes.
public struct ControlActions {
    public var pools: () -> [PoolStatus]
    public var reopen: () -> Void
    /// Sends a signal to the master (0: only checks that it could); 0 or an errno.
    public var signalMaster: (Int32) -> Int32
    /// The master's generation and how many reloads it refused.
    public var generation: () -> (generation: UInt32, refused: UInt32)

    public init(pools: @escaping () -> [PoolStatus], reopen: @escaping () -> Void,
                signalMaster: @escaping (Int32) -> Int32,
                generation: @escaping () -> (generation: UInt32, refused: UInt32) = { (0, 0) }) {
        self.pools = pools
        self.reopen = reopen
        self.signalMaster = signalMaster
        self.generation = generation
    }
}

/// A reply, and the signal to send the master once it is written (so "OK"
/// reaches the client before the master starts stopping the agent).
public struct ControlReply: Equatable, Sendable {
    public var text: String
    public var signalAfter: Int32?

    public init(_ text: String, signalAfter: Int32? = nil) {
        self.text = text
        self.signalAfter = signalAfter
    }
}

public enum ControlProtocol {
    /// The reply to one command line.
    public static func reply(to line: String, actions: ControlActions) -> ControlReply {
        guard let command = ControlCommand(parsing: line) else {
            let shown = line.count > 64 ? String(line.prefix(64)) + "..." : line
            return ControlReply("ERR unknown command '\(sanitized(shown))' (commands: \(ControlCommand.usage))\n")
        }
        switch command {
        case .status(let json):
            let pools = actions.pools()
            return ControlReply(json ? statusJSON(pools) : statusText(pools))
        case .reopen:
            actions.reopen()
            return ControlReply("OK\n")
        case .reload:
            return signal(SIGUSR2, "reload", actions)
        case .generation:
            let now = actions.generation()
            return ControlReply("generation \(now.generation) refused \(now.refused)\n")
        case .stop(let now):
            return signal(now ? SIGTERM : SIGQUIT, now ? "stop now" : "stop", actions)
        }
    }

    /// Checks that the master can be signalled (signal 0) and says OK; the
    /// signal itself goes after the reply.
    private static func signal(_ number: Int32, _ what: String, _ actions: ControlActions) -> ControlReply {
        let error = actions.signalMaster(0)
        if error == 0 { return ControlReply("OK\n", signalAfter: number) }
        return ControlReply("ERR \(what): cannot signal the master: \(String(cString: strerror(error)))\n")
    }

    /// Always an array, whatever the number of pools, with per-process rows.
    public static func statusJSON(_ pools: [PoolStatus]) -> String {
        let body = StatusRenderer.render(pools, as: StatusQuery(format: .json, full: true)).body
        return (pools.count == 1 ? "[" + body + "]" : body) + "\n"
    }

    /// php-fpm's text block per pool, each followed by one line per process:
    /// `process PID: app APP, STATE, N requests, last DURATION us, METHOD URI`.
    public static func statusText(_ pools: [PoolStatus]) -> String {
        var out = ""
        for (index, pool) in pools.enumerated() {
            if index > 0 { out += "\n" }
            out += StatusRenderer.render(pool, as: StatusQuery(format: .text)).body
            for process in pool.processes {
                out += "process \(process.pid): app \(process.appPid), \(process.state), "
                out += "\(process.requests) request\(process.requests == 1 ? "" : "s"), "
                out += "last \(process.requestDuration) us, "
                out += sanitized("\(process.requestMethod) \(process.requestURI)")
                out += "\n"
            }
        }
        return out
    }

    /// One line: control characters shown as "?".
    static func sanitized(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }
}

/// The control socket server.
public final class ControlServer {
    static let maxLine = 1024
    /// A client gets this long to send its command.
    static let commandTimeout: Double = 5

    public let path: String
    private let server: UVStreamServer

    /// Listens on `path` (mode 0600, owned by `owner` when given).
    public init(loop: UVLoop, path: String, owner: uid_t? = nil, actions: ControlActions) throws {
        self.path = path
        server = try UVStreamServer(loop: loop, address: .unix(path: path), mode: 0o600, owner: owner) { connection in
            ControlSession.start(connection, loop: loop, actions: actions)
        }
        server.maxConnections = 64
    }

    /// The uid of process `pid` (the owner of /proc/PID), nil if unknown.
    public static func owner(ofProcess pid: Int32) -> uid_t? {
        var info = stat()
        return stat("/proc/\(pid)", &info) == 0 ? info.st_uid : nil
    }

    public func close() { server.close() }
}

final class ControlSession {
    private let connection: UVConnection
    private let actions: ControlActions
    private var timer: UVTimer?
    private var line: [UInt8] = []
    private var done = false

    private init(connection: UVConnection, actions: ControlActions) {
        self.connection = connection
        self.actions = actions
    }

    static func start(_ connection: UVConnection, loop: UVLoop, actions: ControlActions) {
        let session = ControlSession(connection: connection, actions: actions)
        session.timer = connection.closingTimer(loop, after: ControlServer.commandTimeout)
        connection.onData = { bytes in session.received(bytes) }
        connection.onEnd = { session.execute() }
        connection.startReading()
    }

    private func received(_ bytes: [UInt8]) {
        guard !done else { return }
        if let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
            line += bytes[..<newline]
            execute()
        } else {
            line += bytes
            if line.count > ControlServer.maxLine {
                reply("ERR command too long\n")
            }
        }
    }

    private func execute() {
        guard !done else { return }
        if line.count > ControlServer.maxLine {
            reply("ERR command too long\n")
            return
        }
        let text = String(decoding: line, as: UTF8.self)
        let answer = ControlProtocol.reply(to: text, actions: actions)
        reply(answer.text, then: answer.signalAfter)
    }

    private func reply(_ text: String, then signal: Int32? = nil) {
        done = true
        timer?.stop()
        let actions = self.actions
        connection.write(Array(text.utf8)) { _ in
            if let signal { _ = actions.signalMaster(signal) }
        }
        connection.closeAfterWriting()
    }
}
