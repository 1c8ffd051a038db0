import DroverCore
import Glibc

/// What a worker does when a request runs long: request_slowlog_timeout
/// (a slow-log entry, once per request) and request_terminate_timeout (the
/// app is killed and replaced; the client gets a 504 if it has had nothing
/// yet). Both are checked by the relay whenever it waits (ActiveRequest.nextTimer).
/// Also pm.max_requests, the other reason a worker replaces its app.
extension Worker {
    /// How long the slow log's trace command may run.
    static let traceTimeout = 10.0

    func reportSlow(_ r: ActiveRequest, now: Int64, _ s: inout RelayState) {
        s.request?.slowAt = .max
        slot.countSlowRequest()
        let (script, method, uri) = describe(r)
        log.warning("\(poolTag) child \(getpid()), script '\(script)' (request: \"\(method) \(uri)\") executing too slow (\(ExitStatus.seconds(now - r.startedAt)) sec), logging")
        guard let path = pool.slowlog else { return }
        SlowLog.report(SlowLog.Request(pool: pool.name, workerPID: getpid(), appPID: r.appPID,
                                       scriptFilename: script, method: method, uri: uri,
                                       elapsedMicros: now - r.startedAt,
                                       startedAtRealtimeMicros: r.startedAtRealtime,
                                       poolIndex: launch.poolIndex),
                       path: path, traceCommand: pool.requestSlowlogTraceCommand.isEmpty ? nil : pool.requestSlowlogTraceCommand, traceTimeout: Self.traceTimeout, errorLog: log)
    }

    /// php-fpm's log line, with the app's pid added at the end so that
    /// existing patterns still match.
    func terminate(_ conn: ClientConnection, _ r: ActiveRequest, now: Int64, _ s: inout RelayState) {
        s.request?.terminateAt = .max
        s.request?.slowAt = .max
        let (script, method, uri) = describe(r)
        log.warning("\(poolTag) child \(getpid()), script '\(script)' (request: \"\(method) \(uri)\") execution timed out (\(ExitStatus.seconds(now - r.startedAt)) sec), terminating app \(r.appPID)")
        replaceApp(conn, &s, answering: (504, "Gateway Timeout"))
    }

    /// Script, method and URI of the request, from the params it arrived with.
    private func describe(_ r: ActiveRequest) -> (script: String, method: String, uri: String) {
        func text(_ range: Range<Int>?) -> String {
            guard let range, range.upperBound <= params.count else { return "" }
            return String(decoding: params[range], as: UTF8.self)
        }
        return (text(r.fields.script), text(r.fields.method), text(r.fields.uri))
    }

    /// pm.max_requests reached: the app is replaced between requests, so no
    /// request is lost (connections wait in the queue or go to other workers
    /// for the few milliseconds this takes).
    func recycleApp() {
        log.notice("\(poolTag) app \(app.pid) of worker \(getpid()) served \(app.requests) requests (pm.max_requests); replacing it")
        app.stop()
        slot.setApp(pid: 0)
        startApp()
    }
}
