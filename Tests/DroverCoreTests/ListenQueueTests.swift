import DroverConfig
import XCTest

@testable import DroverCore

/// ListenQueue against real sockets: connections are queued by the kernel
/// and never accepted unless the test says so.
final class ListenQueueTests: XCTestCase {
    private var fds: [Int32] = []
    private var directory: String?

    override func tearDown() {
        fds.forEach(FD.close)
        fds = []
        if let directory {
            unlink(directory + "/q.sock")
            rmdir(directory)
        }
        directory = nil
        super.tearDown()
    }

    private func keep(_ fd: Int32) -> Int32 {
        fds.append(fd)
        return fd
    }

    /// Reads the queue until it shows `waiting` connections or 2 s pass (TCP
    /// handshakes complete asynchronously, even on loopback).
    private func settle(_ fd: Int32, waiting: Int) -> ListenQueue? {
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        deadline.tv_sec += 2
        while true {
            let queue = ListenQueue.read(fd)
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            if queue?.waiting == waiting || (now.tv_sec, now.tv_nsec) >= (deadline.tv_sec, deadline.tv_nsec) {
                return queue
            }
            usleep(10_000)
        }
    }

    /// A non-blocking TCP connect to the listener's own address.
    private func connectTCP(to listener: Int32) throws -> Int32 {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &len) }
        }
        XCTAssertEqual(named, 0)
        let fd = socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        let r = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) }
        }
        if r != 0 && errno != EINPROGRESS { throw SystemError("connect()") }
        return keep(fd)
    }

    func testUnixListener() throws {
        var template = Array("/tmp/drover-lq-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in
            mkdtemp(buffer.baseAddress!).map { String(cString: $0) }
        }
        let directory = try XCTUnwrap(made, "mkdtemp: \(SystemError.message(errno))")
        self.directory = directory
        let path = directory + "/q.sock"

        let listener = keep(try Sockets.listen(.unix(path: path), backlog: 16))
        XCTAssertEqual(ListenQueue.read(listener), ListenQueue(waiting: 0, capacity: 16))

        // A Unix connect is queued synchronously: no need to poll.
        var clients: [Int32] = []
        for _ in 0..<3 { clients.append(keep(try Sockets.connectUnix(path, nonBlocking: true))) }
        XCTAssertEqual(ListenQueue.read(listener), ListenQueue(waiting: 3, capacity: 16))

        let accepted = try XCTUnwrap(Sockets.accept(listener))
        _ = keep(accepted.fd)
        XCTAssertEqual(ListenQueue.read(listener), ListenQueue(waiting: 2, capacity: 16))

        // Connected (not listening) Unix sockets have no accept queue.
        let connected = ListenQueue.read(clients[0])
        let error = errno
        XCTAssertNil(connected)
        XCTAssertEqual(error, EINVAL)
        XCTAssertNil(ListenQueue.read(accepted.fd))
    }

    func testTCPListener() throws {
        let listener = keep(try Sockets.listen(.tcp(host: "127.0.0.1", port: 0), backlog: 16))
        XCTAssertEqual(ListenQueue.read(listener), ListenQueue(waiting: 0, capacity: 16))

        var clients: [Int32] = []
        for _ in 0..<3 { clients.append(try connectTCP(to: listener)) }
        XCTAssertEqual(settle(listener, waiting: 3), ListenQueue(waiting: 3, capacity: 16))

        let accepted = try XCTUnwrap(Sockets.accept(listener))
        _ = keep(accepted.fd)
        XCTAssertEqual(ListenQueue.read(listener), ListenQueue(waiting: 2, capacity: 16))

        // A connected TCP socket's TCP_INFO counts segments, not connections.
        let connected = ListenQueue.read(clients[0])
        let error = errno
        XCTAssertNil(connected)
        XCTAssertEqual(error, EINVAL)
    }

    func testTCPv6Listener() throws {
        let listener: Int32
        do {
            listener = keep(try Sockets.listen(.tcp(host: "::1", port: 0), backlog: 16))
        } catch {
            throw XCTSkip("no IPv6 loopback: \(error)")
        }
        _ = try connectTCP(to: listener)
        XCTAssertEqual(settle(listener, waiting: 1), ListenQueue(waiting: 1, capacity: 16))
    }

    func testNotASocket() {
        var pipe: [Int32] = [-1, -1]
        XCTAssertEqual(Glibc.pipe(&pipe), 0)
        pipe.forEach { _ = keep($0) }
        let queue = ListenQueue.read(pipe[0])
        let error = errno
        XCTAssertNil(queue)
        XCTAssertEqual(error, ENOTSOCK)
    }
}
