import CDroverSys
import Glibc

/// Outcome of one non-blocking read or write, without throwing: the relay
/// calls these on every request, so the common cases are plain values.
public enum IOResult: Equatable, Sendable {
    case bytes(Int)
    case wouldBlock
    case endOfFile
    case failed(Int32)
}

/// Thin helpers over an fd number (swift-system style: one verb per syscall).
public enum FD {
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)   // EINTR on close must not be retried on Linux
    }

    public static func setCloseOnExec(_ fd: Int32, _ on: Bool = true) throws {
        let flags = fcntl(fd, F_GETFD)
        if flags < 0 { throw SystemError("fcntl(F_GETFD)") }
        let new = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC
        if new != flags, fcntl(fd, F_SETFD, new) < 0 { throw SystemError("fcntl(F_SETFD)") }
    }

    public static func setNonBlocking(_ fd: Int32, _ on: Bool = true) throws {
        let flags = fcntl(fd, F_GETFL)
        if flags < 0 { throw SystemError("fcntl(F_GETFL)") }
        let new = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if new != flags, fcntl(fd, F_SETFL, new) < 0 { throw SystemError("fcntl(F_SETFL)") }
    }

    /// recv(2) on a socket: non-blocking whatever the socket's mode, or
    /// (`wait`) blocking, bounded by the socket's SO_RCVTIMEO, whose expiry
    /// reads as `.wouldBlock`.
    @inline(__always)
    public static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, wait: Bool = false) -> IOResult {
        while true {
            let n = Glibc.recv(fd, buffer.baseAddress, buffer.count, wait ? 0 : Int32(MSG_DONTWAIT))
            if n > 0 { return .bytes(n) }
            if n == 0 { return .endOfFile }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: return .failed(errno)
            }
        }
    }

    /// send(2) on a socket, never blocking (MSG_DONTWAIT) and with
    /// MSG_NOSIGNAL, so a vanished peer is EPIPE, not SIGPIPE.
    @inline(__always)
    public static func send(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> IOResult {
        while true {
            let n = Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
            if n >= 0 { return .bytes(n) }
            switch errno {
            case EINTR: continue
            case EAGAIN: return .wouldBlock
            default: return .failed(errno)
            }
        }
    }

    /// Writes all of `bytes` to a blocking fd (log files, pipes); false on error.
    @discardableResult
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    @discardableResult
    public static func writeAll(_ fd: Int32, _ string: String) -> Bool {
        var s = string
        return s.withUTF8 { writeAll(fd, UnsafeRawBufferPointer($0)) }
    }

    /// A pipe whose ends are close-on-exec.
    public static func pipe(nonBlocking: Bool = false) throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let flags = Int32(DROVER_O_CLOEXEC) | (nonBlocking ? O_NONBLOCK : 0)
        if drover_pipe2(&fds, flags) != 0 { throw SystemError("pipe2()") }
        return (fds[0], fds[1])
    }

    /// A small file read whole (up to `limit` bytes); nil when it cannot be
    /// opened or read (an unreadable /proc file fails at open or at read).
    public static func readFile(_ path: String, limit: Int) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { return nil }
        defer { FD.close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var count = 0
        while count < limit {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, limit - count) }
            if n < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if n == 0 { break }
            count += n
        }
        bytes.removeSubrange(count...)
        return bytes
    }

    /// Closes every descriptor from 3 up except `keep` (negative entries are
    /// ignored): a forked worker, agent or helper must not hold what its
    /// parent had open (other pools' sockets, client connections, libev's fds).
    public static func closeAll(except keep: [Int32]) {
        let kept = Set(keep.filter { $0 > 2 })
        let highest = kept.max() ?? 2
        var fd: Int32 = 3
        while fd <= highest {
            if !kept.contains(fd) { close(fd) }
            fd += 1
        }
        drover_close_range(UInt32(highest + 1), UInt32.max)
    }
}
