import DroverConfig
import DroverCore

/// What the agent's status pages show (design §6): every pool of the
/// scoreboard, read at the moment of the request, with the query strings of
/// per-process rows redacted unless the pool's `status.show_query` allows
/// them. Shared by the HTTP server (status.listen), the FastCGI responders
/// (pm.status_listen) and the control socket.
///
/// The agent does not hold the pools' listening sockets, so "listen queue"
/// is the master's last sample (taken every second), where a worker's own
/// status page reads it live.
public final class AgentStatus {
    private let scoreboard: Scoreboard
    /// Pool name → whether its query strings may be shown.
    private let showQuery: [String: Bool]

    public init(scoreboard: Scoreboard, config: Configuration) {
        self.scoreboard = scoreboard
        var showQuery: [String: Bool] = [:]
        for pool in config.pools { showQuery[pool.name] = pool.statusShowQuery }
        self.showQuery = showQuery
    }

    /// Every pool, in scoreboard (configuration) order.
    public func pools() -> [PoolStatus] {
        scoreboard.poolIndices.map { redact(scoreboard.status(pool: $0)) }
    }

    /// The pool called `name`, nil when the scoreboard has none.
    public func pool(named name: String) -> PoolStatus? {
        scoreboard.poolIndex(named: name).map { redact(scoreboard.status(pool: $0)) }
    }

    /// Every pool rendered as `query` asks.
    public func render(_ query: StatusQuery) -> RenderedStatus {
        StatusRenderer.render(pools(), as: query)
    }

    private func redact(_ pool: PoolStatus) -> PoolStatus {
        showQuery[pool.name] == true ? pool : pool.redactingQueries()
    }
}
