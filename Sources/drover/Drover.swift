import ArgumentParser
import DroverAgent
import DroverConfig
import DroverCore
import DroverMaster
import DroverWorker
import Glibc

/// `drover`: the daemon, with php-fpm's command-line flags so that init
/// scripts and habits carry over.
@main
struct Drover: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drover",
        abstract: "A FastCGI process manager: php-fpm's pools for any FastCGI application.",
        discussion: """
            Drover reads a php-fpm style configuration ([global] plus one section per pool), \
            opens each pool's listening socket and keeps a set of workers per pool. Each worker \
            runs the pool's `command` (php-cgi when there is none) with a private socket and \
            relays requests to it, so status, timeouts and logs work for any FastCGI app.

            Examples:
              drover -y Config/drover.conf -F          run in the foreground
              drover -t -y /etc/drover/drover.conf     test a configuration
              drover -tt -y /etc/php/8.2/fpm/php-fpm.conf   show every effective value

            Signals: INT/TERM stop at once, QUIT stops after in-flight requests, \
            USR1 reopens the log files, USR2 (or HUP) reloads the configuration with no \
            failed request (an invalid one is logged and the running one stays).
            Exit codes: 0 success, 64 usage error, 78 configuration error.
            """,
        helpNames: [.short, .long])

    @Option(name: [.customShort("y"), .customLong("fpm-config")], help: ArgumentHelp(
        "The configuration file (default: see --locations).", valueName: "file"))
    var configOption: String?

    @Option(name: [.short, .long], help: ArgumentHelp(
        "Prefix for relative paths in the configuration.", valueName: "dir"))
    var prefix: String?

    @Option(name: [.customShort("g"), .customLong("pid")], help: ArgumentHelp(
        "Write the master's pid to this file (overrides `pid`).", valueName: "file"))
    var pidFile: String?

    @Flag(name: [.customShort("F"), .customLong("nodaemonize")], help: "Stay in the foreground (overrides `daemonize`).")
    var noDaemonize = false

    @Flag(name: [.customShort("D"), .customLong("daemonize")], help: "Go to the background (overrides `daemonize`).")
    var daemonize = false

    @Flag(name: [.customShort("O"), .customLong("force-stderr")], help: "Write the error log to stderr, whatever `error_log` says.")
    var forceStderr = false

    @Flag(name: [.customShort("R"), .customLong("allow-to-run-as-root")], help: "Allow pools to run as root.")
    var allowRoot = false

    @Flag(name: [.customShort("t"), .customLong("test")], help: "Test the configuration and exit; twice (-tt) also prints every effective value.")
    var test: Int

    @Flag(name: [.customShort("v"), .customLong("version")], help: "Print the version and build information, and exit.")
    var version = false

    @Flag(name: .customLong("locations"), help: "Print where Drover looks for its files and why there, and exit.")
    var printLocations = false

    func validate() throws {
        if noDaemonize && daemonize { throw ValidationError("-F and -D contradict each other") }
    }

    func run() throws {
        if version {
            print(Self.versionText())
            return
        }
        var (locations, warnings) = Locations.resolve()
        for warning in warnings { Console.log(.warning, warning) }
        if let configOption { locations.override("config_file", configOption, by: "-y") }
        if let pidFile { locations.override("pid_file", pidFile, by: "-g") }
        if printLocations {
            let width = locations.entries.map(\.key.count).max() ?? 0
            for e in locations.entries {
                print(e.key.padding(width) + "  " + e.value.padding(max(30, e.value.count)) + "  (\(e.source))")
            }
            return
        }
        let configFile = locations.configFile
        let config: Configuration
        do {
            config = try ConfigLoader.load(path: configFile, prefix: prefix)
        } catch let errors as ConfigErrors {
            for warning in errors.warnings { Console.log(.warning, "\(warning)") }
            for error in errors.errors { Console.log(.error, "\(error)") }
            Console.log(.error, "FPM initialization failed")
            throw ExitCode(78)
        } catch {
            Console.log(.error, "\(error)")
            Console.log(.error, "FPM initialization failed")
            throw ExitCode(78)
        }
        let problems = Master.startProblems(config, allowRoot: allowRoot)
        if test > 0 {
            for warning in config.warnings { Console.log(.warning, "\(warning)") }
            for problem in problems { Console.log(.error, problem) }
            guard problems.isEmpty else { throw ExitCode(78) }
            if test > 1 { print(ConfigLoader.dump(config), terminator: "") }
            Console.log(.notice, "configuration file \(configFile) test is successful")
            return
        }
        guard problems.isEmpty else {
            for problem in problems { Console.log(.error, problem) }
            Console.log(.error, "FPM initialization failed")
            throw ExitCode(78)
        }
        var options = Master.Options()
        options.allowRoot = allowRoot
        options.forceStderr = forceStderr
        options.daemonize = noDaemonize ? false : (daemonize ? true : nil)
        options.pidFile = pidFile
        options.configFile = configFile
        options.prefix = prefix
        let master = Master(config: config, options: options, environment: Environment.current(),
                            workerEntry: { Worker.run($0) }, agentEntry: { Agent.run($0) })
        let status = master.run()
        if status != 0 { throw ExitCode(status) }
    }
}

extension Drover {
    /// `drover -v`: the version, then how this binary was built.
    static func versionText() -> String {
        var lines = ["drover \(DroverVersion.string) (FastCGI process manager; libev master, Swift)"]
        let commit = BuildInfo.gitCommit
        lines.append("built by \(BuildInfo.builtBy)" + (commit.isEmpty ? "" : " from git \(commit)")
                     + (BuildInfo.buildDate.isEmpty ? "" : " on \(BuildInfo.buildDate)"))
        lines.append("libev \(Master.libevVersion), libuv \(Agent.libuvVersion)")
        return lines.joined(separator: "\n")
    }
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// Messages before the error log is open go to stderr in its format.
enum Console {
    static func log(_ level: LogLevel, _ message: String) {
        FD.writeAll(STDERR_FILENO, ErrorLog.format(level, message, at: Clock.realtimeMicros()))
    }
}
