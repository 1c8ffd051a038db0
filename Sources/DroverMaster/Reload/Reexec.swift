import DroverConfig
import DroverCore
import Glibc

/// The old master's half of a reload (design §7): check the new
/// configuration while everything still runs, then replace this process
/// image with a fresh `drover`, same pid, keeping the descriptors named in
/// the handoff. The workers stay this process's children throughout.
enum Reexec {
    /// The signals the master handles. They are blocked across the exec: the
    /// exec resets their handlers to the default action (which for USR1,
    /// USR2 and HUP is to die) until the new master installs its own; a
    /// blocked signal waits instead, and the new master unblocks them.
    static let masterSignals: [Int32] = [SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGHUP, SIGCHLD]

    /// Loads and checks the configuration as `drover -t` would, plus what
    /// only a running master can check: room in the scoreboard for a second
    /// generation. Returns the configuration or every reason to keep the
    /// old one (each with file:line where the file has one).
    /// Why a configuration cannot be reloaded, each reason on its own line.
    struct Refusal: Error {
        var problems: [String]
    }

    static func check(_ options: Master.Options, scoreboard: Scoreboard, environment: [String: String]) -> Result<Configuration, Refusal> {
        let config: Configuration
        do {
            config = try ConfigLoader.load(path: options.configFile, prefix: options.prefix)
        } catch let errors as ConfigErrors {
            return .failure(Refusal(problems: errors.errors.map(\.description)))
        } catch {
            return .failure(Refusal(problems: ["\(error)"]))
        }
        var problems = Master.startProblems(config, allowRoot: options.allowRoot)
        for pool in config.pools where pool.chroot == nil {
            let program = pool.command.first ?? "php-cgi"
            if Environment.findExecutable(program, path: environment["PATH"]) == nil {
                problems.append("[pool \(pool.name)] command: cannot find '\(program)' (not executable, or not on PATH)")
            }
        }
        for pool in config.pools {
            for address in pool.listen where "\(address)".contains("\n") {
                problems.append("[pool \(pool.name)] listen: a reload cannot pass on an address with a newline")
            }
        }
        let kept = Set(config.pools.map(\.name))
        let draining = scoreboard.poolIndices.filter { !kept.contains(scoreboard.poolName($0)) }.count
        if config.pools.count + draining > scoreboard.poolCapacity {
            problems.append("\(config.pools.count) pools and \(draining) draining ones exceed the scoreboard's \(scoreboard.poolCapacity); restart Drover instead")
        }
        let wanted = config.pools.reduce(0) { $0 + $1.maxChildren }
        if wanted > scoreboard.freeSlotCount {
            problems.append("pm.max_children of all pools (\(wanted)) exceeds the \(scoreboard.freeSlotCount) free scoreboard slots beside the running workers; restart Drover instead")
        }
        return problems.isEmpty ? .success(config) : .failure(Refusal(problems: problems))
    }

    /// Execs this binary again with `arguments` and `environment` plus the
    /// handoff. Returns only if the exec failed: the errno, with everything
    /// as it was.
    static func exec(_ handoff: Handoff, arguments: [String], environment: [String: String]) -> Int32 {
        for fd in handoff.descriptors { try? FD.setCloseOnExec(fd, false) }
        setBlocked(masterSignals, true)
        var env = environment
        env[Handoff.variable] = handoff.encoded()
        let envp = env.map { "\($0.key)=\($0.value)" }
        // /proc/self/exe: the binary this master runs, even if a package
        // upgrade replaced the file since (a new binary needs a restart,
        // since the scoreboard layout may have changed).
        let error = withCStrings(arguments) { argv in
            withCStrings(envp) { envp in
                execve("/proc/self/exe", argv, envp)
                return errno
            }
        }
        setBlocked(masterSignals, false)
        for fd in handoff.descriptors { try? FD.setCloseOnExec(fd, true) }
        return error
    }

    static func setBlocked(_ signals: [Int32], _ blocked: Bool) {
        var set = sigset_t()
        sigemptyset(&set)
        for sig in signals { sigaddset(&set, sig) }
        sigprocmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, nil)
    }
}
