// The OpenMetrics page: php-fpm's `phpfpm_*` families, then Drover's `drover_*` ones,
// one sample per pool carrying a `pool` label, ending with "# EOF".
//
// Names: the fields php-fpm has keep php-fpm's sample names exactly
// (`phpfpm_accepted_connections`, ...) so dashboards written against php-fpm keep
// working. Types: every family is a gauge. php-fpm declares some of these `counter` but
// writes the sample without the `_total` suffix, which OpenMetrics forbids (a strict parser
// rejects php-fpm's page). A counter cannot be written so that both OpenMetrics and
// `promtool check metrics` accept it: OpenMetrics wants `# TYPE foo counter` + `foo_total`,
// while promtool (which parses the Prometheus 0.0.4 text format) then finds `foo_total`
// without HELP, and `# TYPE foo_total counter` + `foo_total` is rejected by OpenMetrics.
// So Drover declares no counters: monotonic figures (accepted connections, spawns, ...)
// are gauges under their php-fpm (or plain `drover_`) names, and the output is accepted
// by both a strict OpenMetrics parser and promtool. PromQL's rate() works on them as is.
// Metadata comes in the order the spec recommends: TYPE, UNIT, HELP. Families whose
// figure is nil for every pool are left out; a pool with a nil figure has no sample.
// php-fpm ignores `full` for OpenMetrics, and so does Drover.

enum StatusOpenMetrics {
    struct Family: Sendable {
        let name: String
        let unit: String?
        let help: String
        let value: @Sendable (PoolStatus) -> String?

        init(_ name: String, unit: String? = nil, _ help: String, _ value: @escaping @Sendable (PoolStatus) -> String?) {
            self.name = name
            self.unit = unit
            self.help = help
            self.value = value
        }
    }

    static let families: [Family] = [
        Family("phpfpm_up", "Could the pool be reached? Always 1 for a pool on this page.") { _ in "1" },
        Family("phpfpm_start_since", "The number of seconds since the pool has started.") {
            StatusNumber.elapsed($0.now, since: $0.startTime)
        },
        Family("phpfpm_accepted_connections", "The number of requests accepted by the pool.") {
            String($0.acceptedConnections)
        },
        Family("phpfpm_listen_queue", "The number of requests in the queue of pending connections.") {
            $0.listenQueue.map { String($0) }
        },
        Family("phpfpm_max_listen_queue",
               "The maximum number of requests in the queue of pending connections since the pool has started.") {
            $0.maxListenQueue.map { String($0) }
        },
        Family("phpfpm_listen_queue_length", "The size of the socket queue of pending connections.") {
            $0.listenQueueLength.map { String($0) }
        },
        Family("phpfpm_idle_processes", "The number of idle processes.") { String($0.idleProcesses) },
        Family("phpfpm_active_processes", "The number of active processes.") { String($0.activeProcesses) },
        Family("phpfpm_total_processes", "The number of idle + active processes.") {
            String($0.totalProcesses)
        },
        Family("phpfpm_max_active_processes",
               "The maximum number of active processes since the pool has started.") {
            String($0.maxActiveProcesses)
        },
        Family("phpfpm_max_children_reached",
               "The number of times the process limit has been reached when the process manager tried to start more children.") {
            String($0.maxChildrenReached)
        },
        Family("phpfpm_slow_requests", "The number of requests that exceeded request_slowlog_timeout.") {
            $0.slowRequests.map { String($0) }
        },
        Family("drover_spawns", "The number of worker processes started since the pool has started.") {
            String($0.spawns)
        },
        Family("drover_crashes", "The number of worker or app processes that exited abnormally since the pool has started.") {
            String($0.crashes)
        },
        Family("drover_respawn_backoff_seconds", unit: "seconds",
               "The current delay before a crashed worker is started again; 0 when healthy.") {
            StatusNumber.seconds(milliseconds: $0.backoffMilliseconds)
        },
        Family("drover_dropped_log_records", "The number of log records dropped because the log channel was full.") {
            $0.droppedLogRecords.map { String($0) }
        },
    ]

    static func render(_ pools: [PoolStatus]) -> String {
        var out = ""
        out.reserveCapacity(pools.count * 600 + 2_000)
        var labels: [String] = []
        labels.reserveCapacity(pools.count)
        for pool in pools {
            var label = "{pool=\""
            StatusEscape.labelValue(pool.name, into: &label)
            label += "\"}"
            labels.append(label)
        }
        for family in families {
            var samples: [(Int, String)] = []
            for (index, pool) in pools.enumerated() {
                if let value = family.value(pool) { samples.append((index, value)) }
            }
            if samples.isEmpty { continue }
            out += "# TYPE "
            out += family.name
            out += " gauge\n"
            if let unit = family.unit {
                out += "# UNIT "
                out += family.name
                out += " "
                out += unit
                out += "\n"
            }
            out += "# HELP "
            out += family.name
            out += " "
            out += family.help
            out += "\n"
            for (index, value) in samples {
                out += family.name
                out += labels[index]
                out += " "
                out += value
                out += "\n"
            }
        }
        if !pools.isEmpty {
            // The process manager has no figure: php-fpm puts it in phpfpm_up's HELP, which
            // cannot name one per pool, so Drover gives it a label of its own.
            out += "# TYPE drover_process_manager gauge\n"
            out += "# HELP drover_process_manager The pool's process manager (static, dynamic or ondemand) as a label; always 1.\n"
            for (index, pool) in pools.enumerated() {
                out += "drover_process_manager"
                out += labels[index].dropLast()
                out += ",process_manager=\""
                StatusEscape.labelValue(pool.processManager, into: &out)
                out += "\"} 1\n"
            }
        }
        out += "# EOF\n"
        return out
    }
}
