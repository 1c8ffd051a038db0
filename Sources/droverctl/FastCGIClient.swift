// A blocking, single-request FastCGI client: the I/O policy that the FastCGI
// module deliberately leaves out. One poll(2) loop sends BEGIN_REQUEST, PARAMS
// and the body as STDIN records while reading STDOUT/STDERR, so neither side
// can deadlock on a full socket buffer, and a large body is never held whole
// in memory.
#if canImport(Glibc)
import Glibc
#endif
import FastCGI

/// A request body read from a descriptor in chunks.
struct BodySource {
    var fd: Int32
    /// The CONTENT_LENGTH announced in PARAMS.
    var length: Int
}

/// What the application sent back, besides the STDOUT/STDERR streams.
struct ExchangeResult {
    var end: EndRequestBody
    var stdoutBytes: Int
    var stderrBytes: Int
    var bodyBytesSent: Int
}

final class FastCGIClient {
    let fd: Int32
    let address: FastCGIAddress
    let deadline: Deadline
    let requestID: UInt16 = 1
    /// Called with progress lines when --verbose is on.
    var trace: ((String) -> Void)?

    init(address: FastCGIAddress, deadline: Deadline) throws(CLIError) {
        self.address = address
        self.deadline = deadline
        self.fd = try Socket.connect(to: address, deadline: deadline)
    }

    deinit { close(fd) }

    /// Runs one request to its END_REQUEST. `onStdout` and `onStderr` get each
    /// non-empty STDOUT/STDERR record's content as it arrives.
    func perform(role: Role = .responder, keepConnection: Bool, params: [(String, String)], body: BodySource?,
                 onStdout: ([UInt8]) throws(CLIError) -> Void,
                 onStderr: ([UInt8]) throws(CLIError) -> Void) throws(CLIError) -> ExchangeResult
    {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 18)
        RecordEncoder.appendBeginRequest(requestID: requestID, role: role, keepConnection: keepConnection, to: &out)
        RecordEncoder.appendParams(requestID: requestID, params: params, to: &out)
        var bodyOpen = body != nil
        if body == nil { RecordEncoder.appendEmpty(.stdin, requestID: requestID, to: &out) }

        var sent = 0
        var canSend = true
        var sendFailure: String? = nil
        var decoder = RecordDecoder()
        var readBuffer = [UInt8](repeating: 0, count: 1 << 16)
        // Four full records' worth: one read becomes four unpadded STDIN records.
        var bodyBuffer = [UInt8](repeating: 0, count: FastCGIConstants.maxAlignedContentLength * 4)
        var result = ExchangeResult(end: EndRequestBody(), stdoutBytes: 0, stderrBytes: 0, bodyBytesSent: 0)

        while true {
            if sent > 0 && sent == out.count {
                out.removeAll(keepingCapacity: true)
                sent = 0
            }
            let pending = canSend && sent < out.count
            // Read more body only once what was read before is on its way.
            let wantBody = bodyOpen && canSend && !pending
            var fds = [pollfd(fd: fd, events: Int16(POLLIN) | (pending ? Int16(POLLOUT) : 0), revents: 0)]
            if wantBody, let body { fds.append(pollfd(fd: body.fd, events: Int16(POLLIN), revents: 0)) }
            let ready = poll(&fds, nfds_t(fds.count), deadline.pollTimeout)
            if ready < 0 {
                if errno == EINTR { continue }
                throw CLIError.system("poll")
            }
            if ready == 0 {
                throw CLIError("timed out waiting for \(address) (got \(result.stdoutBytes) bytes of STDOUT, no END_REQUEST)")
            }

            // 1. The response.
            if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let n = readBuffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    let code = errno
                    if code == ECONNRESET {
                        throw CLIError("\(address) reset the connection before END_REQUEST"
                            + " (after \(result.stdoutBytes) bytes of STDOUT)")
                    }
                    if code != EINTR && code != EAGAIN {
                        throw CLIError.system("reading from \(address)", errno: code)
                    }
                } else if n == 0 {
                    var message = "\(address) closed the connection before END_REQUEST"
                    message += " (after \(result.stdoutBytes) bytes of STDOUT)"
                    if let sendFailure { message += "; sending the request failed earlier: \(sendFailure)" }
                    throw CLIError(message)
                } else {
                    readBuffer.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0 ..< n])) }
                    while true {
                        let record: Record?
                        do { record = try decoder.next() } catch {
                            throw CLIError("protocol error from \(address): \(error)")
                        }
                        guard let record else { break }
                        if let end = try handle(record, &result, onStdout: onStdout, onStderr: onStderr) {
                            result.end = end
                            if bodyOpen { trace?("the application ended the request before reading the whole body") }
                            return result
                        }
                    }
                }
            }

            // 2. The request.
            if pending && fds[0].revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                let n = out.withUnsafeBytes { raw in
                    send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
                }
                if n >= 0 {
                    sent += n
                } else {
                    let code = errno
                    if code != EINTR && code != EAGAIN {
                        // The application stopped reading (EPIPE, ECONNRESET): stop
                        // sending, but read whatever it answered.
                        canSend = false
                        sendFailure = String(cString: strerror(code))
                        trace?("sending stopped: \(sendFailure!)")
                    }
                }
            }

            // 3. The next piece of the body.
            if wantBody, let body, fds.count > 1, fds[1].revents != 0 {
                let n = bodyBuffer.withUnsafeMutableBytes { read(body.fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    bodyBuffer.withUnsafeBytes { raw in
                        RecordEncoder.append(.stdin, requestID: requestID,
                                             content: UnsafeRawBufferPointer(rebasing: raw[0 ..< n]), to: &out)
                    }
                    result.bodyBytesSent += n
                } else if n == 0 {
                    RecordEncoder.appendEmpty(.stdin, requestID: requestID, to: &out)
                    bodyOpen = false
                    if result.bodyBytesSent != body.length {
                        trace?("sent \(result.bodyBytesSent) body bytes but CONTENT_LENGTH is \(body.length)")
                    }
                } else if errno != EINTR && errno != EAGAIN {
                    throw CLIError.system("reading the request body")
                }
            }
        }
    }

    /// Handles one record; returns the END_REQUEST body when the request is over.
    private func handle(_ record: Record, _ result: inout ExchangeResult,
                        onStdout: ([UInt8]) throws(CLIError) -> Void,
                        onStderr: ([UInt8]) throws(CLIError) -> Void) throws(CLIError) -> EndRequestBody?
    {
        let header = record.header
        if header.requestID == FastCGIConstants.nullRequestID {
            // Management records (UNKNOWN_TYPE, GET_VALUES_RESULT) need no answer here.
            trace?("ignoring management record \(header.type) (\(record.content.count) bytes)")
            return nil
        }
        guard header.requestID == requestID else {
            throw CLIError("protocol error from \(address): \(header.type) record for request \(header.requestID), expected \(requestID)")
        }
        switch header.type {
        case .stdout:
            result.stdoutBytes += record.content.count
            if !record.content.isEmpty { try onStdout(record.content) }
        case .stderr:
            result.stderrBytes += record.content.count
            if !record.content.isEmpty { try onStderr(record.content) }
        case .endRequest:
            do {
                return try record.content.withUnsafeBytes { raw throws(FastCGIError) in try EndRequestBody(parsing: raw) }
            } catch {
                throw CLIError("protocol error from \(address): \(error)")
            }
        default:
            throw CLIError("protocol error from \(address): unexpected \(header.type) record")
        }
        return nil
    }
}
