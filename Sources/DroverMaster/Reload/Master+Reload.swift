import DroverConfig
import DroverCore
import Glibc

// Graceful reload (design §7), on SIGUSR2, SIGHUP or `droverctl reload`.
//
// Old master: reads and checks the configuration, opens any new listening
// socket, and re-executes itself (same pid) with a handoff naming the
// descriptors to keep: scoreboard, log channel, listening sockets. Anything
// wrong so far is logged and the running configuration stays.
//
// New master: maps the same scoreboard, keeps each pool's record by name
// (so its counters survive), starts a new generation of workers at once,
// and retires the old generation pool by pool once the new one is ready
// (OldGeneration). The previous agent drains the log channel and exits; a
// new one with the new configuration takes over.
extension Master {
    // MARK: old master

    func reload(reason: String) {
        guard isRunning else { return }
        log.notice("\(reason) received, reloading the configuration from \(options.configFile)")
        let newConfig: Configuration
        switch Reexec.check(options, scoreboard: scoreboard, environment: environment) {
        case .failure(let refusal):
            for problem in refusal.problems { log.error("\(problem)") }
            refuseReload()
            return
        case .success(let config):
            newConfig = config
        }
        let handoff: Handoff
        let opened: [Listeners.Opened]
        do {
            (handoff, opened) = try prepareHandoff(for: newConfig)
        } catch {
            log.error("\(error)")
            refuseReload()
            return
        }
        systemd.reloading()
        log.notice("re-executing for generation \(generation + 1)")
        let error = Reexec.exec(handoff, arguments: CommandLine.arguments, environment: execEnvironment)
        log.error("execve(/proc/self/exe): \(SystemError.message(error))")
        refuseReload()
        Listeners.close(opened)
        Listeners.unlinkPaths(opened)
        systemd.ready()
    }

    /// Says so in the error log and in the scoreboard (for droverctl reload).
    private func refuseReload() {
        log.error("reload aborted: keeping the running configuration (generation \(generation))")
        scoreboard.reloadRefusals &+= 1
    }

    /// The handoff for `newConfig`: the sockets it keeps (duplicates, so
    /// that undoing closes nothing in use), the ones it opens, and the
    /// orphans no pool wants any more. Returns it with the sockets to close
    /// (and unlink, for new ones) should the exec fail.
    private func prepareHandoff(for newConfig: Configuration) throws -> (Handoff, [Listeners.Opened]) {
        // Every socket open now, by address, with the pool record that has it.
        var current: [String: Handoff.Listener] = [:]
        for pool in pools {
            for l in pool.listeners {
                current["\(l.address)"] = Handoff.Listener(fd: l.fd, address: "\(l.address)", fromSystemd: l.inherited, pool: pool.index)
            }
        }
        for orphan in oldGeneration?.openOrphans ?? [] { current[orphan.address] = orphan }
        var opened: [Listeners.Opened] = []
        var handed: [Handoff.Listener] = []
        do {
            for poolConfig in newConfig.pools {
                var reuse: [Int: Int32] = [:]
                for (i, address) in poolConfig.listen.enumerated() {
                    guard let existing = current["\(address)"] else { continue }
                    let dup = fcntl(existing.fd, F_DUPFD_CLOEXEC, 3)
                    if dup < 0 { throw SystemError("dup(listening socket \(address))") }
                    reuse[i] = dup
                }
                let runAs = Users.isRoot ? try account(for: poolConfig) : nil
                let sockets: [Listeners.Opened]
                do {
                    // Marks the reused ones `inherited`: an undo never unlinks them.
                    sockets = try Listeners.open(poolConfig, runAs: runAs, inherited: reuse)
                } catch {
                    throw SystemError("[pool \(poolConfig.name)] cannot listen: \(error)", errno: (error as? SystemError)?.errno ?? 0)
                }
                opened += sockets
                for socket in sockets {
                    let existing = current.removeValue(forKey: "\(socket.address)")
                    handed.append(Handoff.Listener(fd: socket.fd, address: "\(socket.address)",
                                                   fromSystemd: existing?.fromSystemd ?? false))
                }
            }
        } catch {
            Listeners.close(opened)
            Listeners.unlinkPaths(opened)
            throw error
        }
        // What no pool took any more: orphans, which the new master closes
        // once the pool that had them is retired.
        handed += current.values
        let handoff = Handoff(generation: generation, scoreboardFD: scoreboard.fd,
                              channelSendFD: channel!.sendFD, channelReceiveFD: channel!.receiveFD,
                              agentPID: agentPID, appSocketBase: appSocketBase!, pidFile: pidFile,
                              listeners: handed)
        return (handoff, opened)
    }

    // MARK: new master

    /// For each pool (by position in `pools`), the handed-over sockets it
    /// takes by address: listen index → descriptor.
    static func listenersFromHandoff(_ handoff: Handoff, for pools: [PoolConfig]) -> [Int: [Int: (fd: Int32, fromSystemd: Bool)]] {
        var byAddress: [String: Handoff.Listener] = [:]
        for l in handoff.listeners where l.pool == nil { byAddress[l.address] = l }
        var result: [Int: [Int: (fd: Int32, fromSystemd: Bool)]] = [:]
        for (position, pool) in pools.enumerated() {
            for (i, address) in pool.listen.enumerated() {
                if let l = byAddress.removeValue(forKey: "\(address)") { result[position, default: [:]][i] = (l.fd, l.fromSystemd) }
            }
        }
        // The configuration changed between the check and the exec: a
        // socket nobody takes is closed rather than leaked.
        for l in byAddress.values { FD.close(l.fd) }
        return result
    }

    /// The scoreboard record of each pool: the one it had before a reload
    /// (same name), else the lowest free one.
    func poolRecords(for configs: [PoolConfig]) -> [Int] {
        var free = scoreboard.freePoolIndices[...]
        return configs.map { pool in scoreboard.poolIndex(named: pool.name) ?? free.popFirst()! }
    }

    /// Takes over from the master before the exec: its workers become the
    /// old generation, its agent is asked to finish, and orphaned Unix
    /// sockets lose their path, so nothing new queues where only old
    /// workers would take it.
    func adoptPreviousMaster(_ handoff: Handoff) {
        let now = Clock.monotonicMicros()
        let orphans = handoff.listeners.filter { $0.pool != nil }
        for orphan in orphans where !orphan.fromSystemd && orphan.address.hasPrefix("/") { unlink(orphan.address) }
        let old = OldGeneration(workers: scoreboard.liveWorkers(), orphans: orphans, now: now)
        oldGeneration = old
        releaseDroppedPools()
        log.notice("reload: generation \(generation) takes over \(old.workers.count) workers of the previous generation")
        if handoff.agentPID > 0 {
            agentPID = handoff.agentPID
            agentStartedAt = now
            replacingAgent = true
            kill(agentPID, SIGTERM)
        } else {
            startAgent()
        }
        // Children that exited while no handler was installed are reaped now.
        kill(getpid(), SIGCHLD)
    }

    /// Looks after the old generation every 20 ms while it lasts.
    func startRetiring() {
        for pool in pools { pool.publishTotal() }
        let timer = TimerWatcher(loop) { [unowned self] in self.stepRetiring() }
        timer.start(after: 0.02, repeat: 0.02)
        reloadTimer = timer
        stepRetiring()
    }

    private func stepRetiring() {
        guard let old = oldGeneration, isRunning else { return }
        let now = Clock.monotonicMicros()
        // New workers start a few at a time while the old ones serve (Pool.rolloutRoom).
        for pool in pools where old.isServing(pool: pool.index) { pool.fill() }
        let idle = Set(scoreboard.liveWorkers().filter { scoreboard.slotState($0.slot) == .idle }.map(\.pid))
        let (pids, sockets) = old.step(now: now, newGeneration: { index in
            self.pools.first { $0.index == index }.map { OldGeneration.Progress(target: $0.startTarget, ready: $0.newGenerationReady) }
        }, isIdle: { idle.contains($0) })
        for pid in pids { kill(pid, SIGQUIT) }
        for socket in sockets { FD.close(socket.fd) }
        if !pids.isEmpty { log.debug("\(pids.count) workers of the previous generation finish their requests and exit") }
        for (pid, sig) in old.overdue(now: now, timeout: config.global.processControlTimeout) {
            log.warning("child \(pid) of the previous generation still runs \(Int(config.global.processControlTimeout)) s (process_control_timeout) after being told to stop; sending \(sig == SIGKILL ? "SIGKILL" : "SIGTERM")")
            kill(pid, sig)
        }
        if old.allRetired && !reloadAnnounced {
            reloadAnnounced = true
            let stalled = pools.filter { $0.newGenerationReady < $0.startTarget }.map(\.config.name)
            if !stalled.isEmpty {
                log.warning("reload: the new generation of \(stalled.map { "[pool \($0)]" }.joined(separator: ", ")) is not complete; the previous one was retired after \(OldGeneration.readyWait / 1_000_000) s without progress")
            }
            log.notice("reload complete: generation \(generation) serves")
            systemd.ready()
        }
        releaseDroppedPools()
        if old.isEmpty {
            reloadTimer?.stop()
            oldGeneration = nil
        }
    }

    /// An old-generation worker exited: its slot is free, and a dropped
    /// pool with nobody left is forgotten.
    func oldWorkerExited(_ pid: Int32, _ status: Int32) {
        guard let old = oldGeneration, let worker = old.exited(pid) else { return }
        scoreboard.releaseSlot(worker.slot)
        let name = scoreboard.poolName(worker.pool)
        log.notice("[pool \(name)] child \(pid) of generation \(worker.generation) \(ExitStatus(status))")
        if let pool = pools.first(where: { $0.index == worker.pool }) {
            pool.publishTotal()
            pool.fill()
        } else {
            releaseDroppedPools()
        }
        if old.isEmpty {
            reloadTimer?.stop()
            oldGeneration = nil
        }
    }

    /// Frees the scoreboard record and socket folder of every pool the
    /// configuration no longer has and nothing of the old generation uses
    /// (no worker, no orphaned socket).
    private func releaseDroppedPools() {
        let kept = Set(pools.map(\.index))
        let draining = oldGeneration?.pools ?? []
        for index in scoreboard.poolIndices where !kept.contains(index) && !draining.contains(index) {
            log.notice("[pool \(scoreboard.poolName(index))] removed")
            scoreboard.releasePool(index)
            if let base = appSocketBase { AppSocketDirectory.removePool("\(base)/p\(index)") }
        }
    }
}
