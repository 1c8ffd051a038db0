import DroverConfig
import DroverCore
import Glibc

/// systemd integration without libsystemd (docs/architecture.md, "systemd"):
/// sd_notify messages (READY, RELOADING, STOPPING, STATUS, WATCHDOG) and
/// socket activation. Everything is read from the environment the master
/// started with; children never see these variables.
final class Systemd {
    /// Where notifications go; nil when not started by systemd (or a
    /// compatible manager): then every call here does nothing.
    let notifySocket: NotifySocket?
    /// WATCHDOG_USEC, when meant for this process.
    let watchdogMicros: Int64?
    /// LISTEN_FDS & co., when meant for this process.
    let activation: SocketActivation?

    private var stopSent = false
    private var notifyFailed = false
    private var statusTimer: TimerWatcher?
    private var watchdogTimer: TimerWatcher?
    private var lastRequests: UInt64 = 0
    private var statusInterval: Double = 0
    private var figures: () -> SystemdStatus = { SystemdStatus() }
    private var log: ErrorLog?

    /// `pid`: the process the environment was given to (LISTEN_PID and
    /// WATCHDOG_PID are compared with it; read before daemonizing forks).
    init(environment: [String: String], pid: Int32) {
        notifySocket = NotifySocket(environment["NOTIFY_SOCKET"])
        watchdogMicros = Self.watchdog(environment, pid: pid)
        activation = SocketActivation.parse(environment, pid: pid)
    }

    /// WATCHDOG_USEC when set, positive, and WATCHDOG_PID is unset or `pid`.
    static func watchdog(_ environment: [String: String], pid: Int32) -> Int64? {
        guard let text = environment["WATCHDOG_USEC"], let usec = Int64(text), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], Int32(owner) != pid { return nil }
        return usec
    }

    /// The environment for workers and apps: no systemd variables, so that
    /// an app never notifies systemd nor takes the inherited sockets as its own.
    static func childEnvironment(_ environment: [String: String]) -> [String: String] {
        environment.filter { !SocketActivation.variables.contains($0.key) }
    }

    /// Removes the variables from the master's own environment too.
    static func unsetProcessEnvironment() {
        for name in SocketActivation.variables { unsetenv(name) }
    }

    // MARK: socket activation

    /// The inherited sockets each pool uses instead of opening its own:
    /// pool index → (listen index → fd). Sockets no pool wants are closed
    /// with a warning.
    func inheritedSockets(for pools: [PoolConfig], log: ErrorLog) -> [Int: [Int: Int32]] {
        guard let activation else { return [:] }
        for warning in activation.warnings { log.warning("systemd: \(warning)") }
        var candidates: [SocketActivation.Candidate] = []
        for socket in activation.sockets {
            switch SocketActivation.bound(socket.fd) {
            case .success(let bound):
                candidates.append(.init(fd: socket.fd, name: socket.name, bound: bound))
            case .failure(let why):
                log.warning("systemd: inherited fd \(socket.fd)\(socket.name.map { " (\($0))" } ?? "") is \(why); closing it")
                FD.close(socket.fd)
            }
        }
        let assignment = SocketActivation.assign(
            candidates, to: pools.map { SocketActivation.PoolListen(name: $0.name, listen: $0.listen) })
        for fd in assignment.unmatched {
            let candidate = candidates.first { $0.fd == fd }
            let what = candidate.map { "\($0.bound)" + ($0.name.map { " (\($0))" } ?? "") } ?? ""
            log.warning("systemd: inherited fd \(fd) \(what) matches no pool's listen address; closing it")
            FD.close(fd)
        }
        for (fd, pool, listen) in assignment.byNameOnly {
            let bound = candidates.first { $0.fd == fd }.map { "\($0.bound)" } ?? "?"
            log.notice("[pool \(pools[pool].name)] systemd socket \(bound) (fd \(fd)) is used for listen = \(pools[pool].listen[listen])")
        }
        var usable: [Int: [Int: Int32]] = [:]
        for (pool, fds) in assignment.fds {
            for (listen, fd) in fds {
                do {
                    try SocketActivation.adopt(fd)
                    usable[pool, default: [:]][listen] = fd
                    log.debug("[pool \(pools[pool].name)] using the socket inherited from systemd (fd \(fd)) for \(pools[pool].listen[listen])")
                } catch {
                    log.warning("systemd: inherited fd \(fd): \(error); closing it")
                    FD.close(fd)
                }
            }
        }
        return usable
    }

    // MARK: notifications

    /// Starts the periodic STATUS (every `systemd_interval`, 0: never) and
    /// WATCHDOG=1 (every WATCHDOG_USEC / 2) notifications.
    func start(loop: EventLoop, interval: Double, log: ErrorLog, figures: @escaping () -> SystemdStatus) {
        guard notifySocket != nil else { return }
        self.log = log
        self.figures = figures
        statusInterval = interval
        if interval > 0 {
            let timer = TimerWatcher(loop) { [unowned self] in self.sendStatus() }
            timer.start(after: interval, repeat: interval)
            statusTimer = timer
        }
        if let watchdogMicros {
            let period = Double(watchdogMicros) / 2e6
            let timer = TimerWatcher(loop) { [unowned self] in self.notify("WATCHDOG=1") }
            timer.start(after: period, repeat: period)
            watchdogTimer = timer
        }
    }

    /// The master serves: READY=1 with its pid and a first status line.
    /// The reload calls this again once the new generation serves.
    func ready() {
        guard notifySocket != nil else { return }
        lastRequests = figures().requests
        notify("READY=1\nMAINPID=\(getpid())\nSTATUS=\(statusText())")
    }

    /// A reload begins (systemd's Type=notify-reload protocol); `ready()`
    /// follows when it is done.
    func reloading() {
        guard notifySocket != nil else { return }
        notify("RELOADING=1\nMONOTONIC_USEC=\(Clock.monotonicMicros())\nSTATUS=Reloading")
    }

    /// A stop begins; sent once however many stop signals follow.
    func stopping() {
        guard notifySocket != nil, !stopSent else { return }
        stopSent = true
        statusTimer?.stop()
        notify("STOPPING=1\nSTATUS=Stopping")
    }

    /// Nothing more is sent on timers (the loop is ending).
    func stopTimers() {
        statusTimer?.stop()
        watchdogTimer?.stop()
    }

    private func statusText() -> String {
        let now = figures()
        defer { lastRequests = now.requests }
        return now.text(previousRequests: lastRequests, interval: statusInterval)
    }

    private func sendStatus() {
        notify("STATUS=\(statusText())")
    }

    private func notify(_ message: String) {
        guard let notifySocket else { return }
        let error = notifySocket.send(message)
        if error != 0 && !notifyFailed {
            notifyFailed = true     // said once: a vanished manager must not flood the log
            log?.notice("failed to notify systemd on \(notifySocket): \(SystemError.message(error))")
        } else if error == 0 {
            notifyFailed = false
        }
    }
}

extension Scoreboard {
    /// The figures of the systemd status line, over every pool.
    func systemdStatus() -> SystemdStatus {
        var total = SystemdStatus()
        for index in poolIndices {
            let pool = status(pool: index)
            total.active += pool.activeProcesses
            total.idle += pool.idleProcesses
            total.requests += pool.acceptedConnections
            total.slow += pool.slowRequests ?? 0
        }
        return total
    }
}
