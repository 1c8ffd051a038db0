import DroverConfig
import DroverCore
import Glibc

/// What a master hands to the master it re-executes on reload (design §7),
/// like php-fpm's FPM_SOCKETS: the descriptors that must survive the exec
/// and what each one is. It travels in one environment variable, as lines
/// of text, and is taken out of the environment at once on the other side.
///
///     generation 3
///     scoreboard 5
///     channel 6 7
///     agent 4242
///     sockets /tmp/drover.Ab12Cd
///     pid /run/drover.pid
///     listen 8 0 1 /run/www.sock        fd, pool record, from systemd, address
struct Handoff: Equatable {
    static let variable = "DROVER_HANDOFF"

    struct Listener: Equatable {
        var fd: Int32
        /// `ListenAddress.description`, the key a new pool finds it by.
        var address: String
        /// Passed by systemd: never unlinked by Drover.
        var fromSystemd: Bool
        /// Set for an orphan: a socket no pool of the new configuration
        /// wants, with the scoreboard pool record of the pool that had it.
        var pool: Int? = nil
    }

    var generation: UInt32
    var scoreboardFD: Int32
    var channelSendFD: Int32
    var channelReceiveFD: Int32
    /// 0 when no agent was running (it was waiting out its back-off).
    var agentPID: Int32
    var appSocketBase: String
    var pidFile: String?
    var listeners: [Listener]

    /// Every descriptor the exec must keep open.
    var descriptors: [Int32] { [scoreboardFD, channelSendFD, channelReceiveFD] + listeners.map(\.fd) }

    func encoded() -> String {
        var lines = [
            "generation \(generation)",
            "scoreboard \(scoreboardFD)",
            "channel \(channelSendFD) \(channelReceiveFD)",
            "agent \(agentPID)",
            "sockets \(appSocketBase)",
        ]
        if let pidFile { lines.append("pid \(pidFile)") }
        for l in listeners {
            let systemd = l.fromSystemd ? 1 : 0
            if let pool = l.pool {
                lines.append("orphan \(l.fd) \(pool) \(systemd) \(l.address)")
            } else {
                lines.append("listen \(l.fd) \(systemd) \(l.address)")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Parses `encoded()`; nil when anything is missing or malformed.
    init?(decoding text: String) {
        var generation: UInt32?, scoreboard: Int32?, channel: (Int32, Int32)?, agent: Int32?, base: String?
        var pidFile: String?
        var listeners: [Listener] = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 1)
            guard words.count == 2 else { return nil }
            let rest = String(words[1])
            let numbers = rest.split(separator: " ").map { Int32($0) }
            switch words[0] {
            case "generation": generation = UInt32(rest)
            case "scoreboard": scoreboard = Int32(rest)
            case "channel":
                guard numbers.count == 2, let s = numbers[0], let r = numbers[1] else { return nil }
                channel = (s, r)
            case "agent": agent = Int32(rest)
            case "sockets": base = rest
            case "pid": pidFile = rest
            case "listen":
                let parts = rest.split(separator: " ", maxSplits: 2)
                guard parts.count == 3, let fd = Int32(parts[0]) else { return nil }
                listeners.append(Listener(fd: fd, address: String(parts[2]), fromSystemd: parts[1] == "1"))
            case "orphan":
                let parts = rest.split(separator: " ", maxSplits: 3)
                guard parts.count == 4, let fd = Int32(parts[0]), let pool = Int(parts[1]) else { return nil }
                listeners.append(Listener(fd: fd, address: String(parts[3]), fromSystemd: parts[2] == "1", pool: pool))
            default: return nil
            }
        }
        guard let generation, let scoreboard, let channel, let agent, let base else { return nil }
        self.init(generation: generation, scoreboardFD: scoreboard, channelSendFD: channel.0,
                  channelReceiveFD: channel.1, agentPID: agent, appSocketBase: base, pidFile: pidFile,
                  listeners: listeners)
    }

    init(generation: UInt32, scoreboardFD: Int32, channelSendFD: Int32, channelReceiveFD: Int32,
         agentPID: Int32, appSocketBase: String, pidFile: String?, listeners: [Listener]) {
        self.generation = generation
        self.scoreboardFD = scoreboardFD
        self.channelSendFD = channelSendFD
        self.channelReceiveFD = channelReceiveFD
        self.agentPID = agentPID
        self.appSocketBase = appSocketBase
        self.pidFile = pidFile
        self.listeners = listeners
    }

    /// The handoff this process was started with, if it is a re-executed
    /// master; the variable is removed so that no child inherits it.
    static func take(from environment: inout [String: String]) -> Handoff? {
        guard let text = environment.removeValue(forKey: variable) else { return nil }
        unsetenv(variable)
        return Handoff(decoding: text)
    }
}
