import CLibuv
import DroverConfig
import DroverCore
import Glibc

// Stream servers and their connections on the agent's libuv loop: the HTTP
// status server (status.listen), the FastCGI status responders
// (pm.status_listen) and the control socket. A server is a uv_tcp_t for
// `ip:port` and `[v6]:port` or a uv_pipe_t for a Unix path; the socket itself
// is opened by DroverCore's `Sockets.listen`, as the master opens pool
// sockets (SO_REUSEADDR, dual-stack for a bare port, a live Unix socket
// refused, a stale one replaced), and handed to libuv.
//
// Every pointer and C callback of these handles is in this file; the servers
// built on it see bytes as [UInt8].

/// A listening stream socket; `onConnection` gets each accepted connection.
public final class UVStreamServer {
    public let address: ListenAddress
    /// Connections beyond this are accepted and closed at once (a client
    /// opening thousands must not exhaust the agent's descriptors).
    public var maxConnections = 1024
    /// Connections open now.
    public private(set) var connectionCount = 0

    private let loop: UVLoop
    /// A uv_tcp_t or uv_pipe_t, freed in its close callback.
    private let handle: UnsafeMutableRawPointer
    private let isPipe: Bool
    private let onConnection: (UVConnection) -> Void
    private var closed = false

    /// Opens `address` and starts accepting. A Unix socket gets `mode`
    /// (it is created under a umask that already gives no more, so it is
    /// never reachable with wider permissions) and, when given, `owner`.
    public init(loop: UVLoop, address: ListenAddress, mode: mode_t = 0o660, owner: uid_t? = nil,
                backlog: Int32 = 511, onConnection: @escaping (UVConnection) -> Void) throws {
        self.loop = loop
        self.address = address
        self.onConnection = onConnection
        var path: String?
        if case .unix(let p) = address { path = p }
        isPipe = path != nil

        let fd: Int32
        if path != nil {
            let previous = umask(~mode & 0o777)
            defer { umask(previous) }
            fd = try Sockets.listen(address, backlog: backlog)
        } else {
            fd = try Sockets.listen(address, backlog: backlog)
        }
        if let path {
            var failure: SystemError?
            if let owner, chown(path, owner, UInt32.max) != 0 { failure = SystemError("chown(\(path))") }
            if failure == nil, chmod(path, mode) != 0 { failure = SystemError("chmod(\(path))") }
            if let failure {
                Glibc.close(fd)
                unlink(path)
                throw failure
            }
        }

        let size = max(MemoryLayout<uv_tcp_t>.size, MemoryLayout<uv_pipe_t>.size)
        let alignment = max(MemoryLayout<uv_tcp_t>.alignment, MemoryLayout<uv_pipe_t>.alignment)
        handle = .allocate(byteCount: size, alignment: alignment)
        // Once opened, the handle owns the descriptor (uv_close closes it).
        var rc: Int32
        var opened = false
        if isPipe {
            let pipe = handle.bindMemory(to: uv_pipe_t.self, capacity: 1)
            uv_pipe_init(loop.raw, pipe, 0)
            rc = uv_pipe_open(pipe, fd)
        } else {
            let tcp = handle.bindMemory(to: uv_tcp_t.self, capacity: 1)
            uv_tcp_init(loop.raw, tcp)
            rc = uv_tcp_open(tcp, fd)
        }
        opened = rc == 0
        let stream = handle.assumingMemoryBound(to: uv_stream_t.self)
        stream.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        if rc == 0 {
            rc = uv_listen(stream, backlog, { server, status in
                guard let server, let data = server.pointee.data else { return }
                Unmanaged<UVStreamServer>.fromOpaque(data).takeUnretainedValue().accept(status: status)
            })
        }
        if rc != 0 {
            closed = true
            stream.pointee.data = nil
            if !opened { Glibc.close(fd) }
            if let path { unlink(path) }
            // A handle that was initialised must be closed before its memory goes.
            uv_close(handle.assumingMemoryBound(to: uv_handle_t.self)) { $0?.deallocate() }
            throw UVError(rc, "listening on \(address)")
        }
    }

    /// Stops accepting and, for a Unix socket, removes its path. Open
    /// connections are not touched.
    public func close() {
        guard !closed else { return }
        closed = true
        if case .unix(let path) = address { unlink(path) }
        let raw = handle.assumingMemoryBound(to: uv_handle_t.self)
        raw.pointee.data = nil
        uv_close(raw) { $0?.deallocate() }
    }

    deinit { close() }

    private func accept(status: Int32) {
        guard status == 0, !closed else { return }
        let client = UVConnection.make(loop: loop, pipe: isPipe)
        let server = handle.assumingMemoryBound(to: uv_stream_t.self)
        guard uv_accept(server, client.stream) == 0 else {
            client.close()
            return
        }
        if connectionCount >= maxConnections {
            client.close()
            return
        }
        connectionCount += 1
        client.closeHooks.append { [weak self] in self?.connectionCount -= 1 }
        onConnection(client)
    }
}

/// An accepted connection. It stays alive (libuv holds it) until closed,
/// by `close()`, by a read error, or by the peer when `onEnd` says so.
public final class UVConnection {
    /// Bytes read, in order. Called only while reading.
    public var onData: (([UInt8]) -> Void)?
    /// The peer finished sending (EOF). Without a handler the connection is
    /// closed once everything written has gone.
    public var onEnd: (() -> Void)?
    /// Called once, when the connection is closed, whoever closed it.
    public var onClose: (() -> Void)?
    /// Bytes handed to `write` and not yet written.
    public private(set) var pendingWriteBytes = 0
    public private(set) var isClosed = false

    fileprivate var closeHooks: [() -> Void] = []
    private let handle: UnsafeMutableRawPointer
    private var readBuffer: UnsafeMutableRawPointer?
    private static let readBufferSize = 16 * 1024
    private var pendingWrites = 0
    private var closeWhenWritten = false
    private var reading = false
    private var isTCP = false

    fileprivate var stream: UnsafeMutablePointer<uv_stream_t> { handle.assumingMemoryBound(to: uv_stream_t.self) }

    private init(handle: UnsafeMutableRawPointer) {
        self.handle = handle
    }

    /// A new, initialised handle whose `data` holds a retained reference to
    /// the connection; released in the close callback.
    fileprivate static func make(loop: UVLoop, pipe: Bool) -> UVConnection {
        let size = max(MemoryLayout<uv_tcp_t>.size, MemoryLayout<uv_pipe_t>.size)
        let alignment = max(MemoryLayout<uv_tcp_t>.alignment, MemoryLayout<uv_pipe_t>.alignment)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: alignment)
        if pipe {
            uv_pipe_init(loop.raw, raw.bindMemory(to: uv_pipe_t.self, capacity: 1), 0)
        } else {
            uv_tcp_init(loop.raw, raw.bindMemory(to: uv_tcp_t.self, capacity: 1))
        }
        let connection = UVConnection(handle: raw)
        connection.isTCP = !pipe
        connection.stream.pointee.data = Unmanaged.passRetained(connection).toOpaque()
        return connection
    }

    private static func from(_ stream: UnsafeMutablePointer<uv_stream_t>?) -> UVConnection? {
        guard let data = stream?.pointee.data else { return nil }
        return Unmanaged<UVConnection>.fromOpaque(data).takeUnretainedValue()
    }

    /// Starts delivering bytes to `onData`. Also turns Nagle off on TCP, so
    /// a response goes out as soon as it is written.
    public func startReading() {
        guard !isClosed, !reading else { return }
        if isTCP { uv_tcp_nodelay(handle.assumingMemoryBound(to: uv_tcp_t.self), 1) }
        reading = true
        let rc = uv_read_start(stream, { handle, _, buf in
            guard let handle, let data = handle.pointee.data, let buf else { return }
            let connection = Unmanaged<UVConnection>.fromOpaque(data).takeUnretainedValue()
            if connection.readBuffer == nil {
                connection.readBuffer = .allocate(byteCount: UVConnection.readBufferSize, alignment: 16)
            }
            buf.pointee = uv_buf_init(connection.readBuffer!.assumingMemoryBound(to: CChar.self),
                                      UInt32(UVConnection.readBufferSize))
        }, { stream, nread, _ in
            guard let connection = UVConnection.from(stream) else { return }
            connection.didRead(nread)
        })
        if rc != 0 { close() }
    }

    /// Stops delivering bytes (back-pressure); `startReading` resumes.
    public func stopReading() {
        guard !isClosed, reading else { return }
        reading = false
        uv_read_stop(stream)
    }

    private func didRead(_ nread: Int) {
        if nread > 0, let readBuffer {
            let bytes = Array(UnsafeRawBufferPointer(start: readBuffer, count: nread))
            onData?(bytes)
        } else if nread == Int(UV_EOF.rawValue) {
            stopReading()
            if let onEnd { onEnd() } else { closeAfterWriting() }
        } else if nread < 0 {
            close()
        }
    }

    /// Queues `bytes`; libuv writes at once what the socket takes and the
    /// rest when it can. `completion` gets whether everything was written.
    public func write(_ bytes: [UInt8], completion: ((Bool) -> Void)? = nil) {
        guard !isClosed else {
            completion?(false)
            return
        }
        if bytes.isEmpty {
            completion?(true)
            return
        }
        let request = WriteRequest(bytes: bytes, connection: self, completion: completion)
        pendingWrites += 1
        pendingWriteBytes += bytes.count
        let rc = withUnsafePointer(to: request.buffer) { buffer in
            uv_write(request.request, stream, buffer, 1) { req, status in
                guard let req, let data = req.pointee.data else { return }
                let request = Unmanaged<WriteRequest>.fromOpaque(data).takeRetainedValue()
                request.connection.didWrite(request, status: status)
            }
        }
        if rc != 0 {
            // Never queued: no callback comes; undo the retain taken for it.
            Unmanaged.passUnretained(request).release()
            didWrite(request, status: rc)
        }
    }

    private func didWrite(_ request: WriteRequest, status: Int32) {
        pendingWrites -= 1
        pendingWriteBytes -= request.count
        request.completion?(status == 0)
        if status != 0 && status != Int32(UV_ECANCELED.rawValue) {
            close()
        } else if closeWhenWritten && pendingWrites == 0 {
            close()
        }
    }

    /// Closes once every queued write has gone (at once when none is queued).
    public func closeAfterWriting() {
        guard !isClosed else { return }
        stopReading()
        if pendingWrites == 0 { close() } else { closeWhenWritten = true }
    }

    /// A timer, started now, that closes this connection when it fires (an
    /// idle or command timeout; start it again to give the peer more time).
    /// It is closed with the connection. nil when libuv refuses a timer.
    public func closingTimer(_ loop: UVLoop, after seconds: Double) -> UVTimer? {
        guard let timer = try? UVTimer(loop, handler: { [weak self] in self?.close() }) else { return nil }
        timer.start(after: seconds)
        let previous = onClose
        onClose = {
            timer.close()
            previous?()
        }
        return timer
    }

    /// Closes now; queued writes are cancelled (their completions get false).
    public func close() {
        guard !isClosed else { return }
        isClosed = true
        reading = false
        uv_close(handle.assumingMemoryBound(to: uv_handle_t.self)) { raw in
            guard let raw, let data = raw.pointee.data else { return }
            let connection = Unmanaged<UVConnection>.fromOpaque(data).takeRetainedValue()
            raw.pointee.data = nil
            connection.didClose()
        }
    }

    private func didClose() {
        let hooks = closeHooks
        let onClose = self.onClose
        closeHooks = []
        // Handlers usually hold the object that holds this connection: drop
        // them so the cycle ends here.
        self.onClose = nil
        onData = nil
        onEnd = nil
        for hook in hooks { hook() }
        onClose?()
        handle.deallocate()
        readBuffer?.deallocate()
        readBuffer = nil
    }
}

/// One uv_write in flight: the request, a copy of the bytes (libuv needs
/// them until the callback) and who to tell.
private final class WriteRequest {
    let request: UnsafeMutablePointer<uv_write_t>
    let storage: UnsafeMutableRawPointer
    let count: Int
    let buffer: uv_buf_t
    let connection: UVConnection
    let completion: ((Bool) -> Void)?

    init(bytes: [UInt8], connection: UVConnection, completion: ((Bool) -> Void)?) {
        let count = bytes.count
        let storage = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 1)
        bytes.withUnsafeBytes { storage.copyMemory(from: $0.baseAddress!, byteCount: count) }
        self.count = count
        self.storage = storage
        buffer = uv_buf_init(storage.assumingMemoryBound(to: CChar.self), UInt32(count))
        request = .allocate(capacity: 1)
        request.initialize(to: uv_write_t())
        self.connection = connection
        self.completion = completion
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit {
        storage.deallocate()
        request.deallocate()
    }
}
