import CDroverSys
import DroverConfig
import Glibc

/// The address of an accepted connection's peer, as raw bytes.
public enum PeerAddress: Equatable, Sendable, CustomStringConvertible {
    case ipv4([UInt8])
    case ipv6([UInt8])
    case unix

    /// The address bytes (4 or 16), nil for Unix sockets.
    public var bytes: [UInt8]? {
        switch self {
        case .ipv4(let b), .ipv6(let b): b
        case .unix: nil
        }
    }

    public var description: String { bytes.map(IP.format) ?? "unix" }

    /// Parses a textual IPv4 or IPv6 address.
    public init?(parsing text: String) {
        guard let b = IP.parse(text) else { return nil }
        self = b.count == 4 ? .ipv4(b) : .ipv6(b)
    }
}

/// Socket calls used by the master (listen) and the workers (accept, connect).
/// All sockaddr handling lives here.
public enum Sockets {
    /// Opens a listening socket for a `listen` address. Unix paths must be
    /// free (nothing accepts on them); a stale socket file is replaced.
    public static func listen(_ address: ListenAddress, backlog: Int32) throws -> Int32 {
        switch address {
        case .unix(let path):
            if drover_unix_is_live(path) == 1 {
                throw SystemError("another instance seems to already listen on \(path); bind()", errno: EADDRINUSE)
            }
            unlink(path)
            let fd = drover_unix_listen(path, backlog)
            if fd < 0 { throw SystemError("bind(\(path))") }
            return fd
        case .tcp(let host, let port):
            return try listenTCP(host: host, port: port, backlog: backlog)
        }
    }

    private static func listenTCP(host: String?, port: UInt16, backlog: Int32) throws -> Int32 {
        let peer = host.flatMap(PeerAddress.init(parsing:))
        if host != nil && peer == nil { throw SystemError("inet_pton(\(host!))", errno: EINVAL) }
        // A bare port listens on every address: IPv6 dual-stack, else IPv4.
        let useIPv6: Bool
        switch peer {
        case .ipv6: useIPv6 = true
        case .ipv4: useIPv6 = false
        default: useIPv6 = access("/proc/net/if_inet6", F_OK) == 0
        }
        let family = useIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(DROVER_SOCK_CLOEXEC), 0)
        if fd < 0 { throw SystemError("socket()") }
        var one: Int32 = 1
        var zero: Int32 = 0
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound: Int32
        if useIPv6 {
            if host == nil {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
            }
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            if case .ipv6(let bytes)? = peer { withUnsafeMutableBytes(of: &sa.sin6_addr) { $0.copyBytes(from: bytes) } }
            bound = bindAddress(fd, &sa)
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            if case .ipv4(let bytes)? = peer { withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: bytes) } }
            bound = bindAddress(fd, &sa)
        }
        if bound != 0 || Glibc.listen(fd, backlog) != 0 {
            let e = errno
            FD.close(fd)
            throw SystemError(bound != 0 ? "bind(\(ListenAddress.tcp(host: host, port: port)))" : "listen()", errno: e)
        }
        return fd
    }

    /// bind(2) with a sockaddr_in or sockaddr_in6.
    private static func bindAddress<Address>(_ fd: Int32, _ address: inout Address) -> Int32 {
        withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<Address>.size))
            }
        }
    }

    /// Accepts one connection without blocking: the fd (non-blocking,
    /// close-on-exec) and the peer, or nil when none is waiting.
    public static func accept(_ listenFD: Int32) -> (fd: Int32, peer: PeerAddress)? {
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                drover_accept4(listenFD, $0, &len, Int32(DROVER_SOCK_CLOEXEC | DROVER_SOCK_NONBLOCK))
            }
        }
        if fd < 0 { return nil }
        return (fd, peer(of: &storage))
    }

    private static func peer(of storage: inout sockaddr_storage) -> PeerAddress {
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { raw in
                let sin = raw.load(as: sockaddr_in.self)
                return .ipv4(withUnsafeBytes(of: sin.sin_addr) { Array($0) })
            }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { raw in
                let sin6 = raw.load(as: sockaddr_in6.self)
                return .ipv6(withUnsafeBytes(of: sin6.sin6_addr) { Array($0) })
            }
        default:
            return .unix
        }
    }

    /// Connects to a Unix socket (non-blocking when asked; then the connect
    /// may still be in progress).
    public static func connectUnix(_ path: String, nonBlocking: Bool) throws -> Int32 {
        let fd = drover_unix_connect(path, nonBlocking ? 1 : 0)
        if fd < 0 { throw SystemError("connect(\(path))") }
        return fd
    }

    /// SO_RCVTIMEO: bounds blocking recv(2) and accept(2) on the socket.
    public static func setReceiveTimeout(_ fd: Int32, microseconds: Int64) {
        var timeout = timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int(microseconds % 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

}

/// `listen.allowed_clients`: addresses and CIDR ranges, IPv4 and IPv6
/// (parsed and matched by DroverConfig's IPRange). An empty list allows
/// everyone, and Unix-socket peers are not checked (php-fpm's rules).
public struct AllowedClients: Sendable {
    private let ranges: [IPRange]

    public init(_ ranges: [IPRange]) { self.ranges = ranges }

    public func allows(_ peer: PeerAddress) -> Bool {
        guard !ranges.isEmpty, let bytes = peer.bytes else { return true }
        return ranges.contains { $0.contains(bytes) }
    }
}
