// droverctl status, reload, reopen, stop: commands for a running drover,
// sent to the control socket its agent serves.
#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

/// Where the control socket is, for every subcommand's help.
let controlSocketHelp = """
    THE CONTROL SOCKET
    The agent of a running drover serves a Unix socket that only the user \
    drover runs as (and root) may use. droverctl finds it through drover's \
    configuration: the control.socket directive in [global], or by default the \
    pid file's path with ".ctl" for its extension (pid = /run/drover.pid gives \
    /run/drover.ctl). The configuration is --config FILE (default \
    /etc/drover/drover.conf); give --prefix DIR if drover was started with -p \
    DIR. --socket PATH names the socket directly and reads no configuration.
    """

/// Runs `body`, turning a CLIError into a message and an exit status.
func runReportingErrors(_ body: () throws(CLIError) -> Void) throws {
    do {
        try body()
    } catch {
        Terminal.note("droverctl: error: \(error.message)")
        throw ExitCode(error.exitCode)
    }
}

func printOut(_ text: String) throws(CLIError) {
    try Terminal.writeAll(1, Array(text.utf8))
}

// MARK: - status

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every pool and process of a running drover.",
        usage: """
            droverctl status [--json] [--watch [<seconds>]] [--config <file> | --socket <path>]
            """,
        discussion: """
            Asks the running drover (its agent, through the control socket) for the \
            state of every pool and worker process, and prints two tables. The \
            answer comes from shared memory, so it is there even when every worker \
            is busy.

            POOLS
              POOL        the pool's name ([www] in the configuration)
              PM          process manager: static, dynamic or ondemand
              PROCESSES   worker processes now (IDLE + ACTIVE, and any starting)
              IDLE        workers waiting for a request
              ACTIVE      workers serving a request
              ACCEPTED    connections accepted since the pool started
              QUEUE       connections waiting in the listen queue (- if unknown)
              SLOW        requests that passed request_slowlog_timeout (- if off)

            PROCESSES
              PID         the worker (it accepts and relays requests)
              APP PID     the application process it runs (php-cgi, ...)
              STATE       Idle, Running, Reading headers, Finishing, Starting, Draining
              REQUESTS    requests this worker served
              DURATION    of the request running now, or of the last one when idle
              LAST REQUEST  method and URI; query strings show as [redacted]
                          unless the pool sets status.show_query = yes

            --json prints what drover sent instead: a JSON array with one object \
            per pool in php-fpm's status format (the "full" variant, with a \
            "processes" array), for scripts.

            --watch redraws every SECONDS (default 2) until you press Ctrl-C, like \
            watch(1); a drover that goes away and comes back is waited for.

            \(controlSocketHelp)

            EXIT STATUS
              0   success
              1   drover answered with an error
              2   drover could not be reached (the message says why)
              64  usage error, or no control socket in the configuration

            EXAMPLES
              droverctl status
              droverctl status --watch
              droverctl status --watch 0.5
              droverctl status --json | jq '.[] | {pool, "active processes"}'
              droverctl status --socket /run/drover.ctl
              droverctl status -c /etc/drover/staging.conf
            """)

    @OptionGroup var control: ControlOptions

    @Flag(help: "Print drover's JSON (one object per pool, with processes) instead of tables.")
    var json = false

    @Flag(help: "Redraw every few seconds (see <seconds>) until interrupted.")
    var watch = false

    @Argument(help: ArgumentHelp("With --watch: seconds between redraws (default 2).", valueName: "seconds"))
    var interval: Double?

    func validate() throws {
        if interval != nil && !watch {
            throw ValidationError("A number of seconds only goes with --watch: 'droverctl status --watch \(interval!)'.")
        }
        if let interval, !(interval >= 0.1) {
            throw ValidationError("--watch wants at least 0.1 seconds between redraws.")
        }
    }

    func run() throws {
        try runReportingErrors { () throws(CLIError) in
            if !watch {
                try printOut(try render())
                return
            }
            let seconds = interval ?? 2
            while true {
                var screen = "\u{1B}[H\u{1B}[2J"
                screen += "Every \(StatusTable.seconds(seconds)): droverctl status\(json ? " --json" : "")"
                screen += "    \(StatusTable.clock())\n\n"
                do throws(CLIError) {
                    screen += try render()
                } catch {
                    screen += "droverctl: \(error.message)\n"
                }
                try printOut(screen)
                var pause = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
                var left = timespec()
                while nanosleep(&pause, &left) != 0 && errno == EINTR { pause = left }
            }
        }
    }

    private func render() throws(CLIError) -> String {
        let reply = try control.send("status json")
        if json { return reply.hasSuffix("\n") ? reply : reply + "\n" }
        let document: JSON
        do throws(JSON.ParseError) {
            document = try JSON.parse(reply)
        } catch {
            throw CLIError("drover's status answer is not JSON (\(error))")
        }
        guard let pools = document.array else { throw CLIError("drover's status answer is not a list of pools") }
        return StatusTable.render(pools, width: Terminal.width())
    }
}

/// The tables `droverctl status` prints.
enum StatusTable {
    static func render(_ pools: [JSON], width: Int?) -> String {
        if pools.isEmpty { return "no pools\n" }
        var poolRows = [["POOL", "PM", "PROCESSES", "IDLE", "ACTIVE", "ACCEPTED", "QUEUE", "SLOW"]]
        var processRows = [["POOL", "PID", "APP PID", "STATE", "REQUESTS", "DURATION", "LAST REQUEST"]]
        var notes: [String] = []
        for pool in pools {
            let name = pool["pool"]?.string ?? "?"
            poolRows.append([
                name, pool["process manager"]?.string ?? "-", int(pool["total processes"]),
                int(pool["idle processes"]), int(pool["active processes"]), int(pool["accepted conn"]),
                int(pool["listen queue"]), int(pool["slow requests"]),
            ])
            if let backoff = pool["respawn backoff"]?.integer, backoff > 0 {
                notes.append("pool \(name): workers keep failing; the next start waits "
                             + "\(duration(microseconds: backoff * 1000)) (crashes: \(int(pool["crashes"])))")
            }
            for process in pool["processes"]?.array ?? [] {
                let method = process["request method"]?.string ?? "-"
                let uri = process["request uri"]?.string ?? "-"
                let requests = process["requests"]?.integer ?? 0
                processRows.append([
                    name, int(process["pid"]), int(process["app pid"]), process["state"]?.string ?? "-",
                    String(requests),
                    requests == 0 ? "-" : duration(microseconds: process["request duration"]?.integer ?? 0),
                    requests == 0 && method == "-" ? "-" : oneLine(method + " " + uri),
                ])
            }
        }
        let numeric: Set<Int> = [2, 3, 4, 5, 6, 7]
        var out = table(poolRows, rightAligned: numeric, freeLast: false, width: nil)
        out += "\n"
        out += processRows.count > 1 ? table(processRows, rightAligned: [1, 2, 4, 5], freeLast: true, width: width)
            : "no processes\n"
        for note in notes { out += "\nnote: \(note)" }
        if !notes.isEmpty { out += "\n" }
        return out
    }

    static func int(_ value: JSON?) -> String {
        value?.integer.map { String($0) } ?? "-"
    }

    /// Microseconds for a person: 850 µs, 12.3 ms, 4.56 s, 2m05s.
    static func duration(microseconds us: Int64) -> String {
        if us < 1000 { return "\(us) µs" }
        if us < 1_000_000 { return fixed(Double(us) / 1000, us < 10_000 ? 2 : 1) + " ms" }
        if us < 60_000_000 { return fixed(Double(us) / 1_000_000, 2) + " s" }
        let seconds = us / 1_000_000
        if seconds < 3600 { return "\(seconds / 60)m\(pad2(seconds % 60))s" }
        return "\(seconds / 3600)h\(pad2(seconds % 3600 / 60))m"
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? "\(Int(value))s" : fixed(value, 1) + "s"
    }

    private static func pad2(_ n: Int64) -> String { n < 10 ? "0\(n)" : "\(n)" }

    private static func fixed(_ value: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = Int64((value * scale).rounded())
        let whole = scaled / Int64(scale)
        var fraction = String(scaled % Int64(scale))
        while fraction.count < digits { fraction = "0" + fraction }
        return digits == 0 ? "\(whole)" : "\(whole).\(fraction)"
    }

    /// Control characters in a URI would break the table.
    private static func oneLine(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? "?" : $0 }))
    }

    /// Columns separated by two spaces. With `freeLast` the last column is
    /// free text, not padded; lines are cut to `width`.
    static func table(_ rows: [[String]], rightAligned: Set<Int>, freeLast: Bool, width: Int?) -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        var out = ""
        for row in rows {
            var line = ""
            for (i, cell) in row.enumerated() {
                if i > 0 { line += "  " }
                if freeLast && i == columns - 1 {
                    line += cell
                } else if rightAligned.contains(i) {
                    line += String(repeating: " ", count: widths[i] - cell.count) + cell
                } else {
                    line += cell + (i == row.count - 1 ? "" : String(repeating: " ", count: widths[i] - cell.count))
                }
            }
            if let width, width > 20, line.count > width {
                line = String(line.prefix(width - 1)) + "…"
            }
            while line.last == " " { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    /// The local time, HH:MM:SS.
    static func clock() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}

extension Terminal {
    /// The terminal's width when standard output is one.
    static func width() -> Int? {
        guard isatty(1) == 1 else { return nil }
        var size = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
        return Int(size.ws_col)
    }
}

// MARK: - reload, reopen, stop

struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Reload the configuration (as SIGUSR2 does) and say how it went.",
        discussion: """
            Sends SIGUSR2 to the master of the running drover, as \
            'kill -USR2 $(cat /run/drover.pid)' would: the master checks the \
            configuration, then re-executes itself and replaces the workers \
            with no failed request. droverctl waits (up to --timeout) until the \
            new generation serves, and prints its number; if the master refused \
            the configuration, it says so and exits 1: the reasons, with \
            file:line, are in the error log, and the running configuration stays.

            \(controlSocketHelp)

            EXAMPLES
              droverctl reload
              droverctl reload -c /etc/drover/drover.conf
            """)

    @OptionGroup var control: ControlOptions

    func run() throws {
        try runReportingErrors { () throws(CLIError) in
            let before = try control.generation()
            _ = try control.send("reload")
            let deadline = Deadline(seconds: control.timeout)
            while !deadline.hasPassed {
                usleep(100_000)
                // The agent is replaced during a reload: a refused connection
                // means "not yet".
                guard let now = try? control.generation() else { continue }
                if now.refused != before.refused {
                    throw CLIError("reload refused: the configuration has errors (the error log gives them with file:line); "
                                   + "drover runs on with generation \(now.generation)", exitCode: 1)
                }
                if now.generation != before.generation {
                    try printOut("OK: reloaded, generation \(now.generation) serves\n")
                    return
                }
            }
            throw CLIError("the master was asked to reload (SIGUSR2), but no new generation served within "
                           + "\(Int(control.timeout)) s; see the error log", exitCode: 1)
        }
    }
}

struct ReopenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reopen",
        abstract: "Reopen every log file (after logrotate moved them).",
        discussion: """
            Makes the agent close and reopen the error log, access logs and slow \
            logs, as SIGUSR1 to the master does: after logrotate (or you) renamed \
            them, new lines go to new files. No worker or application is \
            restarted. Prints "OK" when done; a file that cannot be reopened is \
            reported in the error log.

            In a logrotate configuration:
              postrotate
                  droverctl reopen
              endscript

            \(controlSocketHelp)

            EXAMPLES
              droverctl reopen
            """)

    @OptionGroup var control: ControlOptions

    func run() throws {
        try runReportingErrors { () throws(CLIError) in
            _ = try control.send("reopen")
            try printOut("OK: log files reopened\n")
        }
    }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop drover: gracefully, or at once with --now.",
        discussion: """
            Without --now the master gets SIGQUIT (as 'kill -QUIT'): workers \
            finish the requests they are serving, then everything exits (within \
            process_control_timeout, if set). With --now it gets SIGTERM: workers \
            and applications are stopped at once, requests in progress are cut.

            droverctl returns once the signal is sent, not when drover is gone.

            \(controlSocketHelp)

            EXAMPLES
              droverctl stop
              droverctl stop --now
            """)

    @OptionGroup var control: ControlOptions

    @Flag(help: "Stop at once (SIGTERM) instead of letting requests finish (SIGQUIT).")
    var now = false

    func run() throws {
        try runReportingErrors { () throws(CLIError) in
            _ = try control.send(now ? "stop now" : "stop")
            try printOut(now ? "OK: the master is stopping now (SIGTERM)\n"
                             : "OK: the master is stopping gracefully (SIGQUIT)\n")
        }
    }
}
