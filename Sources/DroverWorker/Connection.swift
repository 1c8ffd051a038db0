import DroverCore
import FastCGI
import Glibc

/// A connection from the web server, held by the worker while it carries a
/// request and, with FCGI_KEEP_CONN, between requests.
final class ClientConnection {
    let fd: Int32
    let peer: PeerAddress
    /// A partial record read before the connection was parked; the
    /// worker's single input buffer is shared by all its connections.
    var leftover: [UInt8] = []
    /// Records the worker wrote itself (ping, status, errors, management
    /// replies), waiting to be sent; written only between the app's records.
    var output: [UInt8] = []
    var outputOffset = 0
    var peerClosed = false
    /// Set when the connection must be closed once its output is written.
    var closeAfterOutput = false
    var idleSince: Int64 = 0
    /// In the worker's epoll set (kept-alive connections stay there while
    /// served, so parking one again costs no system call).
    var registered = false
    /// Requests completed on this connection: only a connection that has
    /// carried a request (with FCGI_KEEP_CONN) is parked when it goes quiet.
    var requestsServed = 0
    /// When a new connection must have sent its first whole record
    /// (Worker.firstRecordTimeout after the accept), parked or not.
    let firstRecordBy: Int64
    /// The peer as the access log's %R shows it ("-" for Unix sockets, as php-fpm).
    lazy var peerText: [UInt8] = Array((peer == .unix ? "-" : peer.description).utf8)

    init(fd: Int32, peer: PeerAddress, firstRecordBy: Int64) {
        self.fd = fd
        self.peer = peer
        self.firstRecordBy = firstRecordBy
    }

    /// Parked before its first request and past its deadline.
    func silentTooLong(now: Int64) -> Bool { requestsServed == 0 && now >= firstRecordBy }

    var hasOutput: Bool { outputOffset < output.count }

    /// Writes local output; returns false when the peer is gone.
    func flushOutput() -> Bool {
        while outputOffset < output.count {
            let r = output.withUnsafeBytes { raw in
                FD.send(fd, UnsafeRawBufferPointer(rebasing: raw[outputOffset...]))
            }
            switch r {
            case .bytes(let n): outputOffset += n
            case .wouldBlock: return true
            case .endOfFile, .failed: return false
            }
        }
        output.removeAll(keepingCapacity: true)
        outputOffset = 0
        return true
    }

    func close() { FD.close(fd) }
}

/// The request a connection is carrying.
struct ActiveRequest {
    enum Phase {
        /// BEGIN_REQUEST seen, PARAMS arriving; records held back until the
        /// worker knows whether the app or the worker answers.
        case params
        /// Relayed to the app.
        case app
        /// Answered by the worker (ping, status, error); the client's STDIN
        /// is read and dropped until its end.
        case local
    }

    let id: UInt16
    let keepConnection: Bool
    var phase = Phase.params
    var stdinDone = false
    /// Bytes of this request written to the app (a failed first write may be
    /// retried on a fresh connection; a later one may not).
    var sentToApp = false
    /// Bytes of the app's answer written to the client: before that, a
    /// failed app can still be answered with a clean 502.
    var sentToClient = false
    /// END_REQUEST came from the app (queued for the client).
    var appEnded = false
    /// The client left; the app's output is dropped until its END_REQUEST.
    var clientGone = false
    var abortSent = false
    var statusKnown = false
    /// The response's status: the app's Status header, 200 without one (CGI).
    var status = 200
    var bytesIn: UInt64 = 0
    var bytesOut: UInt64 = 0
    /// After the client left: when the app must have finished (abortGrace).
    var deadline: Int64 = .max
    /// When the request began (µs, monotonic and realtime).
    var startedAt: Int64 = 0
    var startedAtRealtime: Int64 = 0
    /// request_slowlog_timeout and request_terminate_timeout, as monotonic
    /// times; .max when off or already acted on.
    var slowAt: Int64 = .max
    var terminateAt: Int64 = .max
    /// Where the params the worker looks at are (into the worker's params buffer).
    var fields = RequestParams()
    /// The app process the request was sent to (for log lines; the app may
    /// be reaped before the relay notices).
    var appPID: Int32 = 0

    /// The next time the relay must look at this request.
    var nextTimer: Int64 { min(deadline, slowAt, terminateAt) }

    init(id: UInt16, keepConnection: Bool) {
        self.id = id
        self.keepConnection = keepConnection
    }
}
