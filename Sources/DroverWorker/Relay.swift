import CDroverSys
import DroverCore
import FastCGI
import Glibc

/// The relay: carries requests from one client connection to the app and
/// the responses back, until the connection is idle or gone.
///
/// Records pass through as the bytes that arrived (the app sees the client's
/// request ids; only BEGIN_REQUEST's flags are patched to ask the app for
/// FCGI_KEEP_CONN). Writes are tried at once and polled only when they would
/// block, so a small request costs about five syscalls on top of the app's.
extension Worker {
    /// Longest params block accepted (nginx sends a few KiB).
    static let maxParamsSize = 64 * 1024
    /// How long an app may take to finish after the client left.
    static let abortGrace: Int64 = 5_000_000
    /// How long a connection may take to send a whole record when no request
    /// is in progress (a new connection, or a kept one mid-record). nginx
    /// sends at once; a client that does not is dropped, not waited for.
    static let firstRecordTimeout: Int64 = 30_000_000
    /// How long a worker waits for a new connection's first request before
    /// it parks the connection beside its listening sockets and goes on
    /// accepting: nginx writes the request with the connection, so a client
    /// silent this long is slow or hostile, and must not hold a worker (slow
    /// loris). Parked, it still has firstRecordTimeout from its accept.
    static let parkSilentAfter: Int64 = 20_000

    /// Relay state for one `serve` call.
    struct RelayState {
        var request: ActiveRequest?
        /// BEGIN_REQUEST and PARAMS are held back until the worker knows who answers.
        var holding = false
        var clientReadable = true
        var appReadable = false
        var clientBlocked = false
        var appBlocked = false
        /// While no request is in progress: when the client must have sent a
        /// whole record (see firstRecordTimeout).
        var recordDeadline: Int64 = .max
        /// A new connection without a request yet is parked at this time.
        var parkAt: Int64 = .max
        /// Loop turns, to look at signals and deadlines now and then even
        /// when data never stops flowing (poll, which watches them, is
        /// then never reached).
        var turns: UInt32 = 0
    }

    /// Serves `conn`; true when it is idle and may be kept, false when it
    /// must be closed.
    func serve(_ conn: ClientConnection) -> Bool {
        clientBuffer.load(conn.leftover)
        conn.leftover = []
        if accessLog != nil { currentPeer = conn.peerText }
        appBuffer.reset()
        var s = RelayState()
        if conn.requestsServed == 0 { s.parkAt = Clock.monotonicMicros() + Self.parkSilentAfter }
        while true {
            s.turns &+= 1
            if s.turns & 255 == 0 {
                _ = handleSignals()
                if Clock.monotonicMicros() >= min(s.request?.nextTimer ?? .max, s.recordDeadline),
                   !deadlinePassed(conn, &s) {
                    abandon(&s)
                    return false
                }
            }
            if stopping == .fast {
                abandon(&s)
                return false
            }
            readClient(conn, &s)
            readApp(conn, &s)
            do {
                try examineClientRecords(conn, &s)
            } catch {
                log.warning("\(poolTag) worker \(getpid()): closing a connection: \(error)")
                abandon(&s)
                return false
            }
            examineAppRecords(conn, &s)
            dropRequestTheAppDidNotRead(&s)
            flushToApp(conn, &s)
            sendAbortIfClientLeft(&s)
            guard flushToClient(conn, &s) else {
                abandon(&s)
                return false
            }
            if let request = s.request, isFinished(request, conn) {
                finish(request)
                s.request = nil
                conn.requestsServed += 1
                if request.clientGone { return false }
                if !request.keepConnection { conn.closeAfterOutput = true }
                continue
            }
            if s.request == nil && !conn.hasOutput {
                // Told to stop, a worker still serves the first request of a
                // connection it accepted (a graceful stop or a reload must
                // fail nothing); only a kept connection between requests is closed.
                let leaving = stopping != nil && conn.requestsServed > 0 && clientBuffer.isEmpty
                if conn.closeAfterOutput || conn.peerClosed || leaving { return false }
                // A kept connection between requests waits in the worker's
                // epoll set. A new one whose request has not arrived yet is
                // waited for here, briefly (parkSilentAfter): parking it at
                // once would leave its request behind whatever this worker
                // does next, while others sit idle.
                if clientBuffer.isEmpty && conn.requestsServed > 0 { return true }
            }
            // Waiting for the client's records (a new request, or its
            // PARAMS): bounded, so a silent client cannot hold the worker.
            if s.request.map({ $0.phase == .params }) ?? !conn.hasOutput {
                if s.recordDeadline == .max {
                    s.recordDeadline = conn.requestsServed == 0 ? conn.firstRecordBy : Clock.monotonicMicros() + Self.firstRecordTimeout
                }
            } else {
                s.recordDeadline = .max
            }
            // Still no request from a new connection: park it (slow loris).
            if s.request == nil && !conn.hasOutput && conn.requestsServed == 0 && Clock.monotonicMicros() >= s.parkAt {
                return true
            }
            if s.clientReadable && wantsClientInput(conn, s) { continue }
            if s.appReadable && wantsAppInput(s) { continue }
            if awaitingOnlyTheApp(conn, s) && waitForApp(conn, &s) { continue }
            guard wait(conn, &s) else {
                abandon(&s)
                return false
            }
        }
    }

    // MARK: reading

    private func wantsClientInput(_ conn: ClientConnection, _ s: RelayState) -> Bool {
        !conn.peerClosed && (s.holding || !clientBuffer.hasPendingOutput) && clientBuffer.freeSpace > 0
    }

    private func wantsAppInput(_ s: RelayState) -> Bool {
        guard let r = s.request, r.phase == .app, !r.appEnded, app.fd >= 0 else { return false }
        return !appBuffer.hasPendingOutput
    }

    private func readClient(_ conn: ClientConnection, _ s: inout RelayState) {
        guard s.clientReadable, wantsClientInput(conn, s) else { return }
        let (result, drained) = clientBuffer.read(from: conn.fd)
        if drained { s.clientReadable = false }
        switch result {
        case .bytes, .wouldBlock: break
        case .endOfFile, .failed: clientLeft(conn, &s)
        }
    }

    private func readApp(_ conn: ClientConnection, _ s: inout RelayState) {
        guard s.appReadable, wantsAppInput(s) else { return }
        let (result, drained) = appBuffer.read(from: app.fd)
        if drained { s.appReadable = false }
        switch result {
        case .bytes, .wouldBlock: break
        case .endOfFile, .failed: appBroke(conn, &s, "closed the connection before END_REQUEST")
        }
    }

    /// The client closed its side. nginx never half-closes, so this means it
    /// is gone: the app is told (FCGI_ABORT_REQUEST) and given a grace period.
    private func clientLeft(_ conn: ClientConnection, _ s: inout RelayState) {
        conn.peerClosed = true
        s.clientReadable = false
        clientBuffer.dropUnexamined()
        guard var r = s.request else { return }
        if r.phase == .app && !r.appEnded {
            r.clientGone = true
            r.deadline = Clock.monotonicMicros() + Self.abortGrace
            appBuffer.discardPending()
            s.request = r
        } else {
            s.request = nil
            clientBuffer.reset()
            s.holding = false
            finish(r)
        }
    }

    // MARK: the client's records

    private func examineClientRecords(_ conn: ClientConnection, _ s: inout RelayState) throws {
        while let h = try clientBuffer.nextRecord() {
            s.recordDeadline = .max   // progress: the timeout counts from here
            // While BEGIN and PARAMS are held back nothing can be flushed, so
            // a record of anything else would wait forever: nginx never
            // sends one, and it is treated as a protocol error.
            if s.holding, let r = s.request,
               h.requestID != r.id || (h.type != .params && h.type != .abortRequest) {
                throw FastCGIError.invalidBody(h.type)
            }
            if h.requestID == FastCGIConstants.nullRequestID {
                if clientBuffer.hasPendingOutput { return }
                answerManagement(h, conn)
                clientBuffer.consume(h)
                continue
            }
            guard var r = s.request, r.id == h.requestID else {
                if h.type == .beginRequest {
                    if s.request == nil {
                        try begin(h, &s)
                        continue
                    }
                    // A second request on one connection: we do not multiplex.
                    if clientBuffer.hasPendingOutput { return }
                    clientBuffer.consume(h)
                    RecordEncoder.appendEndRequest(requestID: h.requestID, appStatus: 0,
                                                   protocolStatus: .cantMultiplexConnection, to: &conn.output)
                    continue
                }
                // A record for a request that has ended (late STDIN, ABORT): drop it.
                if clientBuffer.hasPendingOutput { return }
                clientBuffer.consume(h)
                continue
            }
            switch (r.phase, h.type) {
            case (.params, .params):
                if h.contentLength > 0 {
                    guard params.count + Int(h.contentLength) <= Self.maxParamsSize else {
                        throw FastCGIError.limitExceeded("params larger than \(Self.maxParamsSize) bytes")
                    }
                    params.append(contentsOf: clientBuffer.content(of: h))
                    clientBuffer.forward(h)
                } else {
                    clientBuffer.forward(h)
                    try decide(&r, conn, &s)
                }
            case (.params, .abortRequest):
                // Aborted before it started: nothing reached the app.
                clientBuffer.discardPending()
                clientBuffer.consume(h)
                s.holding = false
                RecordEncoder.appendEndRequest(requestID: r.id, appStatus: 0, protocolStatus: .requestComplete,
                                               to: &conn.output)
                r.phase = .local
                r.stdinDone = true
            case (.app, .stdin), (.app, .data):
                if h.type == .stdin && h.contentLength == 0 { r.stdinDone = true }
                r.bytesIn += UInt64(h.contentLength)
                clientBuffer.forward(h)
            case (.app, .abortRequest):
                clientBuffer.forward(h)
            case (.local, .stdin), (.local, .data), (.local, .abortRequest):
                if clientBuffer.hasPendingOutput { return }
                if h.type != .data && h.contentLength == 0 { r.stdinDone = true }
                r.bytesIn += UInt64(h.contentLength)
                clientBuffer.consume(h)
            default:
                throw FastCGIError.invalidBody(h.type)
            }
            s.request = r
        }
    }

    private func begin(_ h: RecordHeader, _ s: inout RelayState) throws {
        let body = try BeginRequestBody(parsing: clientBuffer.content(of: h))
        s.request = ActiveRequest(id: h.requestID, keepConnection: body.keepConnection)
        inRequest = true
        appBuffer.reset()
        params.removeAll(keepingCapacity: true)
        responseHead.removeAll(keepingCapacity: true)
        // Ask the app to keep our connection open whatever the client asked.
        clientBuffer.mutableContent(of: h)[2] |= 1
        clientBuffer.forward(h)
        s.holding = true
        s.request?.startedAt = Clock.monotonicMicros()
        s.request?.startedAtRealtime = Clock.realtimeMicros()
        let active = slot.beginRequest(at: s.request!.startedAtRealtime)
        // The master scales dynamic and ondemand pools on this (design §3).
        if slot.poolRunsShort(active: active) { PoolEvent.send(.runningShort, to: launch.eventFD) }
    }

    /// PARAMS are complete: the worker answers ping and status itself, and
    /// refuses a script security.limit_extensions does not allow;
    /// everything else goes to the app.
    private func decide(_ r: inout ActiveRequest, _ conn: ClientConnection, _ s: inout RelayState) throws {
        s.holding = false
        try params.withUnsafeBytes { raw in
            let request = try RequestParams.parse(raw, into: slot)
            r.fields = request
            if let ping = pingPath, request.pathIs(ping, in: raw) {
                answerLocally(&r, conn, LocalResponse.ping(pool.pingResponse), status: 200)
            } else if let statusPath, request.pathIs(statusPath, in: raw) {
                var snapshot = launch.scoreboard.status(pool: launch.poolIndex, liveQueue: ListenQueue.total(of: launch.listenFDs))
                if !pool.statusShowQuery { snapshot = snapshot.redactingQueries() }
                let query = StatusQuery(queryString: request.queryString(in: raw))
                answerLocally(&r, conn, LocalResponse.status(StatusRenderer.render([snapshot], as: query)), status: 200)
            } else if let scriptGuard, let script = request.script,
                      let denied = scriptGuard.deniedScript(UnsafeRawBufferPointer(rebasing: raw[script])) {
                // php-fpm's wording and level (fpm_php_limit_extensions).
                log.notice("\(poolTag) Access to the script '\(denied)' has been denied (see security.limit_extensions)")
                answerLocally(&r, conn, LocalResponse.accessDenied, status: 403)
            } else if let problem = connectApp() {
                log.error("\(poolTag) worker \(getpid()): cannot reach the app: \(problem)")
                answerLocally(&r, conn, LocalResponse.error(503, "Service Unavailable"), status: 503)
            } else {
                app.requestStarted()
                r.appPID = app.pid
                r.phase = .app
                if pool.requestSlowlogTimeout > 0 && pool.slowlog != nil {
                    r.slowAt = r.startedAt + Int64(pool.requestSlowlogTimeout * 1e6)
                }
                if pool.requestTerminateTimeout > 0 {
                    r.terminateAt = r.startedAt + Int64(pool.requestTerminateTimeout * 1e6)
                }
                s.appReadable = false
            }
        }
    }

    private func answerLocally(_ r: inout ActiveRequest, _ conn: ClientConnection,
                               _ response: (head: String, body: String), status: Int) {
        clientBuffer.discardPending()
        LocalResponse.append(response, requestID: r.id, to: &conn.output)
        r.phase = .local
        r.statusKnown = true
        r.status = status
        slot.setStatus(status)
    }

    /// Makes sure the app runs and is connected; returns a reason if not.
    /// A new connection joins the epoll set, where the idle loop notices an
    /// app closing it between requests.
    private func connectApp(retried: Bool = false) -> String? {
        if app.pid == 0, let problem = startApp() { return problem }
        switch app.connect() {
        case nil:
            let problem = "connect(\(app.socketPath)): \(SystemError.message(errno))"
            // The app died while idle and its SIGCHLD is still unread (its
            // socket closes before it becomes a zombie): nothing of the
            // request was sent, so reap it, start a new one and try once
            // more rather than answer 503. A dying app is given 100 ms.
            guard !retried else { return problem }
            let deadline = Clock.monotonicMicros() + 100_000
            while app.pid > 0 && Clock.monotonicMicros() < deadline {
                reapApp()
                if app.pid > 0 { usleep(1_000) }
            }
            guard app.pid == 0, appFailureExit == nil else { return problem }
            return connectApp(retried: true)
        case true?:
            try? watch(app.fd, .app, events: UInt32(DROVER_EPOLLIN) | UInt32(DROVER_EPOLLRDHUP))
            return nil
        case false?:
            return nil
        }
    }

    private func answerManagement(_ h: RecordHeader, _ conn: ClientConnection) {
        guard h.type == .getValues else {
            RecordEncoder.appendUnknownType(h.type.rawValue, to: &conn.output)
            return
        }
        var names: [String] = []
        try? NameValuePairs.forEach(in: clientBuffer.content(of: h)) { name, _ in
            names.append(String(decoding: name, as: UTF8.self))
        }
        let known = ["FCGI_MAX_CONNS": "\(pool.maxChildren)", "FCGI_MAX_REQS": "\(pool.maxChildren)",
                     "FCGI_MPXS_CONNS": "0"]
        let values = names.compactMap { name in known[name].map { (name, $0) } }
        RecordEncoder.appendGetValuesResult(values: values, to: &conn.output)
    }

    /// The app answered (END_REQUEST) before taking the whole request, e.g.
    /// it ignored the body: what is still queued for it is dropped, and the
    /// app connection is closed because a record may be half written. The
    /// client's remaining STDIN is read and dropped as stray records.
    private func dropRequestTheAppDidNotRead(_ s: inout RelayState) {
        guard let r = s.request, r.phase == .app, r.appEnded, !s.holding, clientBuffer.hasPendingOutput else { return }
        clientBuffer.discardPending()
        app.closeConnection()
        s.appBlocked = false
        s.appReadable = false
    }

    // MARK: the app's records

    private func examineAppRecords(_ conn: ClientConnection, _ s: inout RelayState) {
        guard var r = s.request, r.phase == .app else { return }
        defer { s.request = r }
        do {
            while !r.appEnded, let h = try appBuffer.nextRecord() {
                guard h.requestID == r.id, !r.clientGone else {
                    if appBuffer.hasPendingOutput { return }
                    if h.type == .endRequest && h.requestID == r.id { r.appEnded = true }
                    appBuffer.consume(h)
                    continue
                }
                switch h.type {
                case .stdout:
                    r.bytesOut += UInt64(h.contentLength)
                    if !r.statusKnown { noteStatus(&r, appBuffer.content(of: h)) }
                    appBuffer.forward(h)
                case .stderr:
                    appBuffer.forward(h)
                case .endRequest:
                    appBuffer.forward(h)
                    r.appEnded = true
                default:
                    if appBuffer.hasPendingOutput { return }
                    appBuffer.consume(h)
                }
            }
        } catch {
            s.request = r
            appBroke(conn, &s, "sent a malformed record: \(error)")
            r = s.request ?? r
        }
    }

    /// Finds the response's status in the CGI header block, which may span
    /// several STDOUT records (collected in `responseHead`, up to 16 KiB).
    private func noteStatus(_ r: inout ActiveRequest, _ content: UnsafeRawBufferPointer) {
        // The access log's %{Name}o needs the head itself, not only the status.
        if responseHead.isEmpty, accessLog == nil, let code = CGIResponseHead.statusCode(content) {
            setStatus(&r, code)
            return
        }
        responseHead.append(contentsOf: content.prefix(16 * 1024 - responseHead.count))
        if let code = responseHead.withUnsafeBytes({ CGIResponseHead.statusCode($0) }) {
            setStatus(&r, code)
        } else if responseHead.count >= 16 * 1024 || accessLog != nil {
            // Without a Status header in the first record the app means 200.
            r.statusKnown = true
        }
    }

    private func setStatus(_ r: inout ActiveRequest, _ code: Int) {
        r.statusKnown = true
        r.status = code
        slot.setStatus(code)
    }

    /// The app connection failed mid-request. Before any response bytes the
    /// client gets a clean 502; after them the connection is cut, the only
    /// honest signal left. The app is replaced either way.
    private func appBroke(_ conn: ClientConnection, _ s: inout RelayState, _ what: String) {
        guard let r = s.request, r.phase == .app, !r.appEnded else { return }
        let died = replaceApp(conn, &s, answering: (502, "Bad Gateway"))
        log.warning("\(poolTag) app \(r.appPID) of worker \(getpid()) \(what)\(died.map { " (it \($0))" } ?? ""); \(r.sentToClient ? "closing the client connection" : "answering 502")")
        if let died { noteAppCrash(died) }
    }

    /// Stops the app mid-request (SIGTERM, SIGKILL after a second) and ends
    /// the request: with `answer` when the client has not had a byte yet,
    /// else by closing the client connection.
    @discardableResult
    func replaceApp(_ conn: ClientConnection, _ s: inout RelayState, answering answer: (Int, String)) -> ExitStatus? {
        guard var r = s.request, r.phase == .app, !r.appEnded else { return nil }
        let died = app.stop(grace: 1_000_000)
        slot.setApp(pid: 0)
        s.appReadable = false
        s.appBlocked = false
        clientBuffer.discardPending()
        if r.clientGone {
            r.appEnded = true
        } else if !r.sentToClient {
            appBuffer.reset()
            answerLocally(&r, conn, LocalResponse.error(answer.0, answer.1), status: answer.0)
            // The rest of the client's STDIN is read and dropped.
        } else {
            r.appEnded = true
            r.clientGone = true
            conn.peerClosed = true
        }
        s.request = r
        return died
    }

    // MARK: writing

    private func flushToApp(_ conn: ClientConnection, _ s: inout RelayState) {
        guard !s.holding, !s.appBlocked, clientBuffer.hasPendingOutput, var r = s.request, r.phase == .app,
              !r.appEnded else { return }
        let pendingBefore = clientBuffer.pendingCount
        let result = clientBuffer.flush(to: app.fd)
        // Any byte written (even by a flush that then failed) means the app
        // has part of this request: it can no longer be resent elsewhere.
        if clientBuffer.pendingCount < pendingBefore {
            r.sentToApp = true
            s.request = r
        }
        switch result {
        case .bytes:
            if clientBuffer.hasPendingOutput { s.appBlocked = true }
        case .wouldBlock:
            s.appBlocked = true
        case .failed(let e) where (e == EPIPE || e == ECONNRESET) && !r.sentToApp:
            // The app closed its kept connection between requests and
            // nothing of this request reached it: reconnect and send again.
            app.connectionClosedByApp()
            if let problem = connectApp() {
                appBroke(conn, &s, "is unreachable (\(problem))")
            } else {
                flushToApp(conn, &s)
            }
            return
        case .endOfFile, .failed:
            appBroke(conn, &s, "stopped reading its connection")
        }
    }

    /// Tells the app that the client left (FCGI_ABORT_REQUEST), once the
    /// records already accepted for it are written: records go whole.
    private func sendAbortIfClientLeft(_ s: inout RelayState) {
        guard var r = s.request, r.phase == .app, r.clientGone, !r.abortSent, !r.appEnded,
              !clientBuffer.hasPendingOutput, app.fd >= 0 else { return }
        var abort: [UInt8] = []
        RecordEncoder.appendEmpty(.abortRequest, requestID: r.id, to: &abort)
        _ = abort.withUnsafeBytes { FD.send(app.fd, $0) }
        r.abortSent = true
        s.request = r
    }

    /// Returns false when the client is gone and no request needs the app drained.
    private func flushToClient(_ conn: ClientConnection, _ s: inout RelayState) -> Bool {
        if s.request?.clientGone == true || conn.peerClosed && s.request == nil {
            appBuffer.discardPending()
            return s.request != nil
        }
        if s.clientBlocked { return true }
        if appBuffer.hasPendingOutput {
            let pendingBefore = appBuffer.pendingCount
            let result = appBuffer.flush(to: conn.fd)
            if appBuffer.pendingCount < pendingBefore, var r = s.request, !r.sentToClient {
                r.sentToClient = true
                s.request = r
            }
            switch result {
            case .bytes:
                if appBuffer.hasPendingOutput { s.clientBlocked = true }
            case .wouldBlock:
                s.clientBlocked = true
            case .endOfFile, .failed:
                clientLeft(conn, &s)
                return s.request != nil
            }
        }
        if !appBuffer.hasPendingOutput && conn.hasOutput {
            if !conn.flushOutput() {
                clientLeft(conn, &s)
                return s.request != nil
            }
            if conn.hasOutput { s.clientBlocked = true }
        }
        return true
    }

    // MARK: waiting

    /// The request is with the app and nothing else is pending: the common
    /// state of every request, where one blocking recv(2) on the app
    /// replaces poll(2) + read(2).
    private func awaitingOnlyTheApp(_ conn: ClientConnection, _ s: RelayState) -> Bool {
        // Caught app output must be drained while the app works, which only
        // poll(2) can watch beside the app's connection.
        guard let r = s.request, r.phase == .app, r.stdinDone, !r.appEnded, !r.clientGone,
              app.fd >= 0, app.output == nil else { return false }
        // A timer due within one wait is left to poll(2), which keeps it exactly.
        if r.nextTimer != .max && r.nextTimer - Clock.monotonicMicros() <= App.answerWait { return false }
        return !clientBuffer.hasPendingOutput && !appBuffer.hasPendingOutput && !conn.hasOutput
            && !s.clientBlocked && !s.appBlocked
    }

    /// Waits for the app's answer, at most App.answerWait; false when it did
    /// not come (then `wait` looks at the client and signals too).
    private func waitForApp(_ conn: ClientConnection, _ s: inout RelayState) -> Bool {
        let (result, drained) = appBuffer.read(from: app.fd, wait: true)
        switch result {
        case .bytes:
            s.appReadable = !drained
            return true
        case .wouldBlock:
            return false
        case .endOfFile, .failed:
            appBroke(conn, &s, "closed the connection before END_REQUEST")
            return true
        }
    }

    private func wait(_ conn: ClientConnection, _ s: inout RelayState) -> Bool {
        var clientEvents: Int16 = 0
        if wantsClientInput(conn, s) && !s.clientReadable { clientEvents |= Int16(POLLIN) }
        if s.clientBlocked { clientEvents |= Int16(POLLOUT) }
        var appEvents: Int16 = 0
        if wantsAppInput(s) && !s.appReadable { appEvents |= Int16(POLLIN) }
        if s.appBlocked { appEvents |= Int16(POLLOUT) }
        pollFDs[0] = pollfd(fd: clientEvents != 0 ? conn.fd : -1, events: clientEvents, revents: 0)
        pollFDs[1] = pollfd(fd: appEvents != 0 && app.fd >= 0 ? app.fd : -1, events: appEvents, revents: 0)
        pollFDs[2] = pollfd(fd: signals, events: Int16(POLLIN), revents: 0)
        let output = app.output?.fds ?? [-1, -1]
        pollFDs[3] = pollfd(fd: output[0], events: Int16(POLLIN), revents: 0)
        pollFDs[4] = pollfd(fd: output[1], events: Int16(POLLIN), revents: 0)
        var timeout: Int32 = -1
        let deadline = min(s.request?.nextTimer ?? .max, s.recordDeadline, s.request == nil ? s.parkAt : .max)
        if deadline != .max {
            timeout = Int32(clamping: max(0, (deadline - Clock.monotonicMicros()) / 1000 + 1))
        }
        if clientEvents == 0 && appEvents == 0 && timeout < 0 {
            // Nothing can make progress: a stuck state must not hang the worker.
            log.error("\(poolTag) worker \(getpid()): relay has nothing to wait for; closing the connection")
            return false
        }
        let n = poll(pollFDs, 5, timeout)
        if n < 0 { return errno == EINTR }
        if n == 0 { return deadlinePassed(conn, &s) }
        let ready = Int16(POLLIN | POLLHUP | POLLERR)
        let writable = Int16(POLLOUT | POLLERR | POLLHUP)
        if pollFDs[0].revents & ready != 0 { s.clientReadable = true }
        if pollFDs[0].revents & writable != 0 { s.clientBlocked = false }
        if pollFDs[1].revents & ready != 0 { s.appReadable = true }
        if pollFDs[1].revents & writable != 0 { s.appBlocked = false }
        if pollFDs[2].revents != 0 { _ = handleSignals() }
        for i in 3..<5 where pollFDs[i].revents != 0 { app.output?.drain(pollFDs[i].fd) }
        return true
    }

    /// Returns false when the connection must be closed.
    private func deadlinePassed(_ conn: ClientConnection, _ s: inout RelayState) -> Bool {
        let now = Clock.monotonicMicros()
        if now >= s.recordDeadline && (s.request.map { $0.phase == .params } ?? true) {
            logSilentConnection()
            return false
        }
        if let r = s.request, now >= r.slowAt { reportSlow(r, now: now, &s) }
        if let r = s.request, now >= r.terminateAt {
            terminate(conn, r, now: now, &s)
            return true
        }
        guard var r = s.request, now >= r.deadline else { return true }
        if r.clientGone {
            log.warning("\(poolTag) app \(r.appPID) of worker \(getpid()) did not finish within \(Self.abortGrace / 1_000_000) s after the client left; replacing it")
            app.stop(grace: 1_000_000)
            slot.setApp(pid: 0)
            r.appEnded = true
            r.deadline = .max
            s.request = r
        }
        return true
    }

    // MARK: ending

    private func isFinished(_ r: ActiveRequest, _ conn: ClientConnection) -> Bool {
        switch r.phase {
        case .params: return false
        case .app: return r.appEnded && !appBuffer.hasPendingOutput && (r.clientGone || !conn.hasOutput)
        case .local: return r.stdinDone && !conn.hasOutput
        }
    }

    private func finish(_ request: ActiveRequest) {
        var r = request
        if r.clientGone && !r.statusKnown {
            // Nobody answered and nobody was left to answer: nginx's "client
            // closed request", rather than a 200 that never happened.
            r.status = 499
            r.statusKnown = true
            slot.setStatus(499)
        }
        let usage = r.phase == .app ? app.usageSince(wallMicros: Clock.monotonicMicros() - r.startedAt) : nil
        let endedAt = Clock.realtimeMicros()
        slot.endRequest(at: endedAt, bytesIn: r.bytesIn, bytesOut: r.bytesOut, cpu: usage?.cpu, memory: usage?.memory)
        logAccess(r, usage: usage, endedAt: endedAt)
        inRequest = false
        if r.appEnded { app.requestAnswered() }
        if !app.keepsConnections { app.closeConnection() }
        guard stopping == nil && appFailureExit == nil else { return }
        if app.pid == 0 {
            // The app died during the request (reaped, or stopped by the relay).
            startApp()
        } else if pool.maxRequests > 0 && app.requests >= pool.maxRequests {
            recycleApp()
        }
    }

    /// Gives up on the connection mid-way (fast stop, protocol error).
    private func abandon(_ s: inout RelayState) {
        if let r = s.request {
            if r.phase == .app && !r.appEnded {
                // The app is mid-response on a connection we drop: start afresh.
                app.closeConnection()
            }
            finish(r)
        }
        s.request = nil
    }
}
