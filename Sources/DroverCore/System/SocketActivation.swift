import CDroverSys
import DroverConfig
import Glibc

/// systemd socket activation (sd_listen_fds(3) without libsystemd): the
/// listening sockets passed as fds 3, 4, … with `LISTEN_FDS`, `LISTEN_PID`
/// and, optionally, `LISTEN_FDNAMES`.
public struct SocketActivation: Equatable, Sendable {
    public static let firstFD: Int32 = 3

    public struct Inherited: Equatable, Sendable {
        public var fd: Int32
        /// From LISTEN_FDNAMES; nil when not given.
        public var name: String?
        public init(fd: Int32, name: String?) {
            self.fd = fd
            self.name = name
        }
    }

    public var sockets: [Inherited]
    /// Problems worth a warning (e.g. a LISTEN_FDNAMES of the wrong length).
    public var warnings: [String] = []

    /// The environment's activation, nil when there is none for process
    /// `pid` (LISTEN_PID unset or another process's, LISTEN_FDS unset or 0).
    public static func parse(_ environment: [String: String], pid: Int32) -> SocketActivation? {
        guard let pidText = environment["LISTEN_PID"], let listenPID = Int32(pidText), listenPID == pid,
              let countText = environment["LISTEN_FDS"], let count = Int32(countText), count > 0,
              count <= 65_536 else { return nil }
        var names: [String] = []
        var warnings: [String] = []
        if let text = environment["LISTEN_FDNAMES"] {
            names = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            if names.count != Int(count) {
                warnings.append("LISTEN_FDNAMES has \(names.count) names for \(count) descriptors; names ignored")
                names = []
            }
        }
        let sockets = (0..<count).map { i in
            Inherited(fd: firstFD + i, name: names.isEmpty || names[Int(i)].isEmpty ? nil : names[Int(i)])
        }
        return SocketActivation(sockets: sockets, warnings: warnings)
    }

    /// The environment variables of socket activation and of sd_notify,
    /// which no child of the master should see.
    public static let variables = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
                                   "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"]

    // MARK: matching inherited sockets to pools

    /// What getsockname(2) says a socket is bound to.
    public enum Bound: Equatable, Sendable, CustomStringConvertible {
        case unix(String)
        case ipv4([UInt8], port: UInt16)
        case ipv6([UInt8], port: UInt16)

        public var description: String {
            switch self {
            case .unix(let path): path
            case .ipv4(let b, let port): "\(IP.format(b)):\(port)"
            case .ipv6(let b, let port): "[\(IP.format(b))]:\(port)"
            }
        }
    }

    /// A listening stream socket's bound address; nil (and why) for anything else.
    public static func bound(_ fd: Int32) -> Result<Bound, InheritedSocketError> {
        var type: Int32 = 0
        var listening: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &size) == 0 else { return .failure(.notASocket) }
        size = socklen_t(MemoryLayout<Int32>.size)
        guard type == Int32(SOCK_STREAM.rawValue),
              getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0, listening != 0
        else { return .failure(.notListeningStream) }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard r == 0 else { return .failure(.notASocket) }
        let family = Int32(storage.ss_family)
        return withUnsafeBytes(of: &storage) { raw -> Result<Bound, InheritedSocketError> in
            switch family {
            case AF_UNIX:
                let offset = MemoryLayout<sa_family_t>.size
                let pathBytes = raw[offset..<min(Int(length), raw.count)]
                // An abstract name starts with NUL; keep it as "@name".
                if pathBytes.first == 0 {
                    return .success(.unix("@" + String(decoding: pathBytes.dropFirst(), as: UTF8.self)))
                }
                return .success(.unix(String(decoding: pathBytes.prefix { $0 != 0 }, as: UTF8.self)))
            case AF_INET:
                let sin = raw.load(as: sockaddr_in.self)
                return .success(.ipv4(withUnsafeBytes(of: sin.sin_addr) { Array($0) }, port: UInt16(bigEndian: sin.sin_port)))
            case AF_INET6:
                let sin6 = raw.load(as: sockaddr_in6.self)
                return .success(.ipv6(withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }, port: UInt16(bigEndian: sin6.sin6_port)))
            default:
                return .failure(.unsupportedFamily)
            }
        }
    }

    public enum InheritedSocketError: Error, Equatable, Sendable, CustomStringConvertible {
        case notASocket, notListeningStream, unsupportedFamily
        public var description: String {
            switch self {
            case .notASocket: "not a socket"
            case .notListeningStream: "not a listening stream socket"
            case .unsupportedFamily: "not a Unix, IPv4 or IPv6 socket"
            }
        }
    }

    /// Whether a socket bound to `bound` serves the configured `address`.
    /// Unix paths match when equal or when both name the same file;
    /// a bare port matches the wildcard address of either family; an IPv4
    /// host also matches its IPv4-mapped IPv6 form.
    public static func matches(_ bound: Bound, _ address: ListenAddress,
                               sameFile: (String, String) -> Bool = Self.sameFile) -> Bool {
        switch (bound, address) {
        case (.unix(let a), .unix(let b)):
            return a == b || (!a.hasPrefix("@") && sameFile(a, b))
        case (.ipv4(let bytes, let port), .tcp(let host, let want)):
            guard port == want else { return false }
            guard let host else { return bytes == [0, 0, 0, 0] }
            return IP.parse(host) == bytes
        case (.ipv6(let bytes, let port), .tcp(let host, let want)):
            guard port == want else { return false }
            guard let host else { return bytes == [UInt8](repeating: 0, count: 16) }
            guard let wanted = IP.parse(host) else { return false }
            if wanted.count == 4 { return bytes == [UInt8](repeating: 0, count: 10) + [0xff, 0xff] + wanted }
            return wanted == bytes
        default:
            return false
        }
    }

    /// Two paths name the same existing file (device and inode).
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var sa = stat()
        var sb = stat()
        guard stat(a, &sa) == 0, stat(b, &sb) == 0 else { return false }
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
    }

    /// One pool as the matcher sees it.
    public struct PoolListen: Sendable {
        public var name: String
        public var listen: [ListenAddress]
        public init(name: String, listen: [ListenAddress]) {
            self.name = name
            self.listen = listen
        }
    }

    /// An inherited socket with its address, ready to be matched.
    public struct Candidate: Sendable {
        public var fd: Int32
        public var name: String?
        public var bound: Bound
        public init(fd: Int32, name: String?, bound: Bound) {
            self.fd = fd
            self.name = name
            self.bound = bound
        }
    }

    public struct Assignment: Equatable, Sendable {
        /// pool index → (index into the pool's `listen` → fd)
        public var fds: [Int: [Int: Int32]] = [:]
        /// Sockets no pool wants.
        public var unmatched: [Int32] = []
        /// Sockets given to a pool by name although their address differs
        /// from the configured one: (fd, pool index, listen index).
        public var byNameOnly: [(fd: Int32, pool: Int, listen: Int)] = []

        public static func == (a: Assignment, b: Assignment) -> Bool {
            a.fds == b.fds && a.unmatched == b.unmatched
                && a.byNameOnly.map { [$0.fd, Int32($0.pool), Int32($0.listen)] }
                == b.byNameOnly.map { [$0.fd, Int32($0.pool), Int32($0.listen)] }
        }
    }

    /// Matches inherited sockets to pools' `listen` addresses. A socket whose
    /// LISTEN_FDNAMES name is a pool's name belongs to that pool: to the
    /// address it is bound to, else to the pool's first address left.
    /// Other sockets go to the address they are bound to, in any pool.
    public static func assign(_ candidates: [Candidate], to pools: [PoolListen],
                              sameFile: (String, String) -> Bool = Self.sameFile) -> Assignment {
        var result = Assignment()
        var taken = Set<[Int]>()
        var left: [Candidate] = []
        func take(_ fd: Int32, _ pool: Int, _ listen: Int) {
            result.fds[pool, default: [:]][listen] = fd
            taken.insert([pool, listen])
        }
        // First pass: exact addresses (within the named pool, if named).
        for candidate in candidates {
            let named = candidate.name.flatMap { name in pools.firstIndex { $0.name == name } }
            var found = false
            search: for (p, pool) in pools.enumerated() where named == nil || named == p {
                for (l, address) in pool.listen.enumerated()
                where !taken.contains([p, l]) && matches(candidate.bound, address, sameFile: sameFile) {
                    take(candidate.fd, p, l)
                    found = true
                    break search
                }
            }
            if !found { left.append(candidate) }
        }
        // Second pass: named sockets take their pool's first free address.
        for candidate in left {
            if let name = candidate.name, let p = pools.firstIndex(where: { $0.name == name }),
               let l = pools[p].listen.indices.first(where: { !taken.contains([p, $0]) }) {
                take(candidate.fd, p, l)
                result.byNameOnly.append((candidate.fd, p, l))
            } else {
                result.unmatched.append(candidate.fd)
            }
        }
        return result
    }

    /// Makes an inherited socket behave like one Drover opened: non-blocking
    /// and close-on-exec.
    public static func adopt(_ fd: Int32) throws {
        try FD.setCloseOnExec(fd)
        try FD.setNonBlocking(fd)
    }
}
