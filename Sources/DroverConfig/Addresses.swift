// IP literals, CIDR ranges (`listen.allowed_clients`) and `listen` addresses.
import Glibc

/// One `listen.allowed_clients` entry: an address or a CIDR range.
public struct IPRange: Hashable, Sendable, CustomStringConvertible {
    /// 4 bytes (IPv4) or 16 bytes (IPv6), host bits cleared.
    public var address: [UInt8]
    /// 0...32 or 0...128; a plain address has the full length.
    public var prefixLength: Int

    public init(address: [UInt8], prefixLength: Int) {
        precondition(address.count == 4 || address.count == 16)
        self.address = address
        self.prefixLength = prefixLength
        IPRange.mask(&self.address, prefixLength)
    }

    /// `127.0.0.1`, `10.0.0.0/8`, `::1`, `2001:db8::/32`, `[::1]`; nil if invalid.
    public init?(parsing text: String) {
        var s = Substring(text)
        var length: Int?
        if let slash = s.lastIndex(of: "/") {
            let bits = s[s.index(after: slash)...]
            guard !bits.isEmpty, bits.count <= 3, bits.allSatisfy({ $0.isASCII && $0.isNumber }), let n = Int(bits) else { return nil }
            length = n
            s = s[..<slash]
        }
        if s.hasPrefix("["), s.hasSuffix("]") { s = s.dropFirst().dropLast() }
        guard let bytes = IP.parse(String(s)) else { return nil }
        let full = bytes.count * 8
        if let length, length > full { return nil }
        self.init(address: bytes, prefixLength: length ?? full)
    }

    /// Whether `peer` (4 or 16 bytes) is in the range. An IPv4-mapped IPv6
    /// peer (`::ffff:a.b.c.d`, what a dual-stack socket reports) matches
    /// IPv4 ranges.
    public func contains(_ peer: [UInt8]) -> Bool {
        var p = peer
        if address.count == 4, p.count == 16, IP.isV4Mapped(p) { p = Array(p[12...]) }
        guard p.count == address.count else { return false }
        IPRange.mask(&p, prefixLength)
        return p == address
    }

    public var description: String {
        let text = IP.format(address)
        return prefixLength == address.count * 8 ? text : "\(text)/\(prefixLength)"
    }

    static func mask(_ bytes: inout [UInt8], _ length: Int) {
        for i in bytes.indices {
            let bits = max(0, min(8, length - i * 8))
            bytes[i] &= bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
        }
    }
}

/// IP address literals as bytes: the one place that converts them.
public enum IP {
    /// An IPv4 (4 bytes) or IPv6 (16 bytes) literal.
    public static func parse(_ s: String) -> [UInt8]? { parse4(s) ?? parse6(s) }

    static func parse4(_ s: String) -> [UInt8]? {
        var a = in_addr()
        guard inet_pton(AF_INET, s, &a) == 1 else { return nil }
        return withUnsafeBytes(of: &a) { Array($0) }
    }

    static func parse6(_ s: String) -> [UInt8]? {
        var a = in6_addr()
        guard inet_pton(AF_INET6, s, &a) == 1 else { return nil }
        return withUnsafeBytes(of: &a) { Array($0) }
    }

    public static func format(_ bytes: [UInt8]) -> String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        return bytes.withUnsafeBytes { raw in
            buf.withUnsafeMutableBufferPointer { b in
                guard let p = inet_ntop(family, raw.baseAddress, b.baseAddress, socklen_t(b.count)) else { return "?" }
                return String(cString: p)
            }
        }
    }

    public static func isV4Mapped(_ b: [UInt8]) -> Bool {
        b.count == 16 && b[0..<10].allSatisfy { $0 == 0 } && b[10] == 0xFF && b[11] == 0xFF
    }

    static func isAny(_ host: String) -> Bool {
        guard let b = parse(host) else { return false }
        return b.allSatisfy { $0 == 0 }
    }

    /// Resolves a host name like php-fpm does (getaddrinfo, AF_UNSPEC): every
    /// address, in the resolver's order.
    static func resolve(_ host: String) throws(ValueError) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &res)
        guard rc == 0 else {
            throw ValueError("cannot resolve host '\(host)': \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var result: [String] = []
        var p = res
        while let ai = p {
            if let sa = ai.pointee.ai_addr {
                var bytes: [UInt8]?
                if ai.pointee.ai_family == AF_INET {
                    bytes = sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        var a = sin.pointee.sin_addr
                        return withUnsafeBytes(of: &a) { Array($0) }
                    }
                } else if ai.pointee.ai_family == AF_INET6 {
                    bytes = sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
                        var a = sin.pointee.sin6_addr
                        return withUnsafeBytes(of: &a) { Array($0) }
                    }
                }
                if let bytes {
                    let text = format(bytes)
                    if !result.contains(text) { result.append(text) }
                }
            }
            p = ai.pointee.ai_next
        }
        if result.isEmpty { throw ValueError("cannot resolve host '\(host)': no address") }
        return result
    }
}

/// A `listen` value before unix paths are resolved against the prefix.
enum ListenSpec: Equatable {
    case unix(String)
    case tcp(host: String?, port: UInt16)
}

enum Listen {
    /// Longest Unix socket path (sun_path holds 108 bytes with the NUL).
    static let maxUnixPath = 107

    /// php-fpm's syntax: `/path/to.sock` (or a relative path), `port`,
    /// `ip:port`, `[ipv6]:port`, `host:port`; Drover also takes `*:port`.
    /// A host name is resolved now to its first address (as php-fpm binds
    /// the first one); the second value is a warning when it had several.
    static func parse(_ text: String, resolve: Bool = true) throws(ValueError) -> (ListenSpec, String?) {
        if text.isEmpty { throw ValueError("empty address") }
        if text.hasPrefix("/") { return (.unix(text), nil) }
        if text.allSatisfy({ $0.isASCII && $0.isNumber }) {
            return (.tcp(host: nil, port: try port(text, in: text)), nil)
        }
        guard let colon = text.lastIndex(of: ":") else {
            return (.unix(text), nil)  // a relative socket path
        }
        var host = String(text[..<colon])
        let p = try port(String(text[text.index(after: colon)...]), in: text)
        if host == "*" { return (.tcp(host: nil, port: p), nil) }
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
            guard let b = IP.parse6(host) else { throw ValueError("'\(host)' in '\(text)' is not an IPv6 address") }
            return (.tcp(host: IP.format(b), port: p), nil)
        }
        if host.isEmpty { throw ValueError("missing host before ':' in '\(text)' (use a bare port for every address)") }
        if let b = IP.parse(host) { return (.tcp(host: IP.format(b), port: p), nil) }
        let hostChars = host.utf8.allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D || $0 == 0x2E
        }
        if !hostChars || host.contains(":") {
            throw ValueError("'\(host)' in '\(text)' is neither an IP address nor a host name")
        }
        guard resolve else { return (.tcp(host: host, port: p), nil) }
        let addresses = try IP.resolve(host)
        var warning: String?
        if addresses.count > 1 {
            warning = "'\(host)' has several addresses (\(addresses.joined(separator: ", "))); listening on \(addresses[0]) only, like php-fpm"
        }
        return (.tcp(host: addresses[0], port: p), warning)
    }

    static func port(_ s: String, in text: String) throws(ValueError) -> UInt16 {
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && $0.isNumber }), let v = Int(s), v >= 1, v <= 65535 else {
            throw ValueError("invalid port '\(s)' in '\(text)' (1-65535)")
        }
        return UInt16(v)
    }

    /// Whether two listening sockets would fight over the same address.
    /// A bare port (dual-stack) or `[::]` overlaps every address with that
    /// port; `0.0.0.0` overlaps every IPv4 address.
    static func overlaps(_ a: ListenAddress, _ b: ListenAddress) -> Bool {
        switch (a, b) {
        case (.unix(let p), .unix(let q)): return p == q
        case (.tcp(let h1, let p1), .tcp(let h2, let p2)):
            guard p1 == p2 else { return false }
            guard let h1, let h2 else { return true }
            if h1 == h2 { return true }
            let v4a = IP.parse4(h1) != nil, v4b = IP.parse4(h2) != nil
            if h1 == "::" || h2 == "::" { return true }
            if h1 == "0.0.0.0" && v4b { return true }
            if h2 == "0.0.0.0" && v4a { return true }
            return false
        default: return false
        }
    }
}
