import CDroverSys
import Glibc

/// The accept queue of a listening socket (design §3): how many connections
/// the kernel has completed but no worker has accepted yet, and how many it
/// will hold. Read exactly from the kernel (no estimate from accept
/// timings), for Unix listeners through sock_diag and TCP ones (IPv4 and
/// IPv6) through TCP_INFO.
public struct ListenQueue: Sendable, Equatable {
    /// Connections waiting to be accepted.
    public var waiting: Int
    /// The queue's capacity: the backlog as the kernel applied it (capped
    /// by net.core.somaxconn).
    public var capacity: Int

    public init(waiting: Int, capacity: Int) {
        self.waiting = waiting
        self.capacity = capacity
    }

    /// Reads the queue of the listening socket `fd`.
    /// nil when the kernel cannot tell (errno kept): not a socket
    /// (ENOTSOCK), not listening (EINVAL), neither Unix nor TCP
    /// (EAFNOSUPPORT, or the kernel's answer).
    public static func read(_ fd: Int32) -> ListenQueue? {
        var queued: UInt32 = 0
        var capacity: UInt32 = 0
        guard drover_listen_queue(fd, &queued, &capacity) == 0 else { return nil }
        return ListenQueue(waiting: Int(queued), capacity: Int(capacity))
    }

    /// The sum over a pool's listening sockets (those the kernel cannot
    /// read are left out).
    public static func total(of fds: [Int32]) -> ListenQueue {
        var sum = ListenQueue(waiting: 0, capacity: 0)
        for fd in fds {
            guard let q = read(fd) else { continue }
            sum.waiting += q.waiting
            sum.capacity += q.capacity
        }
        return sum
    }
}
