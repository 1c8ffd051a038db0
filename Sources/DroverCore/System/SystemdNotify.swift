import CDroverSys
import Glibc

/// sd_notify(3) without libsystemd: one AF_UNIX datagram per message to the
/// socket named by `NOTIFY_SOCKET` (a path, or an abstract name written with
/// a leading '@').
public struct NotifySocket: Equatable, Sendable, CustomStringConvertible {
    public enum Address: Equatable, Sendable {
        case path(String)
        /// The name without the leading '@' (nor the NUL that replaces it).
        case abstract(String)
    }

    public let address: Address

    /// Parses `NOTIFY_SOCKET`; nil when unset, empty, too long for
    /// sockaddr_un, or of a kind Drover does not speak (e.g. `vsock:`).
    public init?(_ value: String?) {
        guard let value, !value.isEmpty else { return nil }
        let bytes = value.utf8.count
        if value.hasPrefix("@") {
            guard bytes >= 2, bytes <= Self.maxPath else { return nil }
            address = .abstract(String(value.dropFirst()))
        } else if value.hasPrefix("/") {
            // sun_path needs room for the terminating NUL.
            guard bytes < Self.maxPath else { return nil }
            address = .path(value)
        } else {
            return nil
        }
    }

    public var description: String {
        switch address {
        case .path(let p): p
        case .abstract(let name): "@\(name)"
        }
    }

    static let maxPath = MemoryLayout.size(ofValue: sockaddr_un().sun_path)

    /// Sends `message` as one datagram; never blocks (a full queue drops it).
    /// Returns 0 or the errno.
    @discardableResult
    public func send(_ message: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(DROVER_SOCK_CLOEXEC), 0)
        if fd < 0 { return errno }
        defer { _ = Glibc.close(fd) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let pathBytes: [UInt8]
        switch address {
        case .path(let p): pathBytes = Array(p.utf8) + [0]
        case .abstract(let name): pathBytes = [0] + Array(name.utf8)
        }
        withUnsafeMutableBytes(of: &sa.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count)
        var text = message
        let sent = text.withUTF8 { buffer in
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), $0, length)
                }
            }
        }
        return sent < 0 ? errno : 0
    }
}

/// The figures of php-fpm's periodic systemd status line.
public struct SystemdStatus: Equatable, Sendable {
    public var active = 0
    public var idle = 0
    /// Accepted requests since start (all pools).
    public var requests: UInt64 = 0
    public var slow: UInt64 = 0

    public init(active: Int = 0, idle: Int = 0, requests: UInt64 = 0, slow: UInt64 = 0) {
        self.active = active
        self.idle = idle
        self.requests = requests
        self.slow = slow
    }

    /// `Processes active: N, idle: N, Requests: N, slow: N, Traffic: N req/sec`;
    /// traffic is the requests since `previousRequests` over `interval`
    /// seconds, printed as php-fpm does (`%.3g`).
    public func text(previousRequests: UInt64, interval: Double) -> String {
        let delta = requests >= previousRequests ? requests - previousRequests : 0
        let rate = interval > 0 ? Double(delta) / interval : 0
        return "Processes active: \(active), idle: \(idle), Requests: \(requests), slow: \(slow), Traffic: \(Self.threeSignificant(rate)) req/sec"
    }

    /// printf's `%.3g`.
    public static func threeSignificant(_ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([value]) { vsnprintf(&buffer, buffer.count, "%.3g", $0) }
        return String(cString: buffer)
    }
}
