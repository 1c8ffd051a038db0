import DroverConfig
import DroverCore
import Glibc

// The agent's network services (design §6), as start hooks for `Agent.run`:
// the HTTP status server (status.listen), one FastCGI status responder per
// pool with pm.status_listen, and the control socket (control.socket).
// `Agent.run` starts them after its own set-up.
//
// A hook whose service is not configured returns a placeholder object. A
// service that cannot start (its address is taken, say) throws, and
// `Agent.run` logs it; the agent and the other services go on without it.

public enum AgentServices {
    /// The hooks, in the order they start.
    public static var all: [(AgentContext) throws -> AnyObject] {
        [startHTTPStatus, startFastCGIStatus, startControl]
    }

    /// What a hook returns when its service is not configured.
    final class NotConfigured {}

    /// The pm.status_listen servers, kept by the context. Every service is
    /// closed (its socket file removed) when the agent exits.
    final class Started {
        var fastCGI: [FastCGIStatusServer] = []
    }

    static func startHTTPStatus(_ context: AgentContext) throws -> AnyObject {
        guard let address = context.config.global.statusListen else { return NotConfigured() }
        let status = AgentStatus(scoreboard: context.scoreboard, config: context.config)
        let server = try HTTPStatusServer(loop: context.loop, address: address, status: status)
        context.onExit.append { server.close() }
        context.log(.notice, "status server listening on \(address) (/status, /metrics, /ping)")
        return server
    }

    static func startFastCGIStatus(_ context: AgentContext) throws -> AnyObject {
        let status = AgentStatus(scoreboard: context.scoreboard, config: context.config)
        let started = Started()
        for pool in context.config.pools {
            guard let address = pool.statusListenAddress else { continue }
            do {
                let server = try FastCGIStatusServer(loop: context.loop, pool: pool, address: address, status: status)
                started.fastCGI.append(server)
                context.onExit.append { server.close() }
            } catch {
                // One pool's address failing must not cost the others theirs.
                context.log(.error, "[pool \(pool.name)] pm.status_listen \(address): \(error)")
            }
        }
        return started
    }

    static func startControl(_ context: AgentContext) throws -> AnyObject {
        guard let path = context.config.global.controlSocket else { return NotConfigured() }
        let status = AgentStatus(scoreboard: context.scoreboard, config: context.config)
        let masterPID = context.launch.masterPID
        let actions = ControlActions(
            pools: { status.pools() },
            reopen: { context.reopenLogs() },
            signalMaster: { signal in kill(masterPID, signal) == 0 ? 0 : errno },
            generation: { (context.scoreboard.generation, context.scoreboard.reloadRefusals) })
        // The agent runs as the master's user; should that ever differ, the
        // socket still belongs to the master's.
        var owner = ControlServer.owner(ofProcess: masterPID)
        if owner == geteuid() || geteuid() != 0 { owner = nil }
        let server = try ControlServer(loop: context.loop, path: path, owner: owner, actions: actions)
        context.onExit.append { server.close() }
        return server
    }
}
