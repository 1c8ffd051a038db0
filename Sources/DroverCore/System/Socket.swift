import CDroverSys
import DroverConfig
import Glibc

/// The address of an accepted connection's peer, as raw bytes.
public enum PeerAddress: Equatable, Sendable, CustomStringConvertible {
    case ipv4([UInt8])
    case ipv6([UInt8])
    case unix

    /// IPv4-mapped IPv6 (::ffff:a.b.c.d) is folded to IPv4 so that one rule matches both.
    public var normalized: PeerAddress {
        if case .ipv6(let b) = self, b.count == 16, b[0..<10].allSatisfy({ $0 == 0 }), b[10] == 0xff, b[11] == 0xff {
            return .ipv4(Array(b[12..<16]))
        }
        return self
    }

    public var description: String {
        switch self {
        case .unix: return "unix"
        case .ipv4(let b): return b.map(String.init).joined(separator: ".")
        case .ipv6(let b):
            var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            var raw = b
            _ = inet_ntop(AF_INET6, &raw, &out, socklen_t(out.count))
            return String(cString: out)
        }
    }

    /// Parses a textual IPv4 or IPv6 address.
    public init?(parsing text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self = .ipv4(withUnsafeBytes(of: &v4) { Array($0) })
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self = .ipv6(withUnsafeBytes(of: &v6) { Array($0) })
            return
        }
        return nil
    }
}

/// Socket calls used by the master (listen) and the workers (accept, connect).
/// All sockaddr handling lives here.
public enum Sockets {
    /// Opens a listening socket for a `listen` address. Unix paths must be
    /// free (see `unixPathIsLive`); a stale socket file is replaced.
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
            bound = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            if case .ipv4(let bytes)? = peer { withUnsafeMutableBytes(of: &sa.sin_addr) { $0.copyBytes(from: bytes) } }
            bound = withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        if bound != 0 || Glibc.listen(fd, backlog) != 0 {
            let e = errno
            FD.close(fd)
            throw SystemError(bound != 0 ? "bind(\(ListenAddress.tcp(host: host, port: port)))" : "listen()", errno: e)
        }
        return fd
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

    public static func unixPathIsLive(_ path: String) -> Bool { drover_unix_is_live(path) == 1 }

    public static func setOption(_ fd: Int32, level: Int32, name: Int32, value: Int32) {
        var v = value
        setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size))
    }
}

/// `listen.allowed_clients`: addresses and CIDR ranges, IPv4 and IPv6.
/// An empty list allows everyone (php-fpm's default).
public struct AllowedClients: Sendable {
    struct Rule: Sendable {
        var bytes: [UInt8]
        var prefix: Int
    }
    private var rules: [Rule] = []
    public var allowsEveryone: Bool { rules.isEmpty }

    /// Entries that do not parse are reported by the config validator; here
    /// they are skipped.
    public init(_ entries: [String]) {
        for entry in entries {
            let parts = entry.split(separator: "/", maxSplits: 1)
            guard let first = parts.first, let addr = PeerAddress(parsing: String(first))?.normalized else { continue }
            let bytes: [UInt8]
            switch addr {
            case .ipv4(let b), .ipv6(let b): bytes = b
            case .unix: continue
            }
            let prefix = parts.count == 2 ? Int(parts[1]) ?? bytes.count * 8 : bytes.count * 8
            rules.append(Rule(bytes: bytes, prefix: min(prefix, bytes.count * 8)))
        }
    }

    public func allows(_ peer: PeerAddress) -> Bool {
        if rules.isEmpty { return true }
        let bytes: [UInt8]
        switch peer.normalized {
        case .unix: return true   // php-fpm applies allowed_clients to TCP only
        case .ipv4(let b), .ipv6(let b): bytes = b
        }
        return rules.contains { rule in
            guard rule.bytes.count == bytes.count else { return false }
            var bits = rule.prefix
            var i = 0
            while bits > 0 {
                let mask: UInt8 = bits >= 8 ? 0xff : ~(0xff >> UInt8(bits))
                if (rule.bytes[i] & mask) != (bytes[i] & mask) { return false }
                bits -= 8
                i += 1
            }
            return true
        }
    }
}
