// Record headers, fixed-size record bodies, and the owned Record value.

/// The 8-byte header that starts every FastCGI record.
///
///     version  type  requestIdB1 requestIdB0  contentLengthB1 contentLengthB0  paddingLength  reserved
public struct RecordHeader: Hashable, Sendable {
    public var version: UInt8
    public var type: RecordType
    public var requestID: UInt16
    public var contentLength: UInt16
    public var paddingLength: UInt8

    @inlinable
    public init(type: RecordType, requestID: UInt16, contentLength: UInt16, paddingLength: UInt8 = 0) {
        self.version = FastCGIConstants.version
        self.type = type
        self.requestID = requestID
        self.contentLength = contentLength
        self.paddingLength = paddingLength
    }

    /// Parses the first 8 bytes of `bytes` (any further bytes are ignored).
    /// Throws `.truncated` when fewer than 8 bytes are given and
    /// `.unsupportedVersion` when the version byte is not 1. Any padding
    /// length and any record type are accepted.
    @inlinable
    public init(parsing bytes: UnsafeRawBufferPointer) throws(FastCGIError) {
        guard bytes.count >= FastCGIConstants.headerLength else { throw .truncated }
        let version = bytes[0]
        guard version == FastCGIConstants.version else { throw .unsupportedVersion(version) }
        self.version = version
        self.type = RecordType(rawValue: bytes[1])
        self.requestID = UInt16(bytes[2]) << 8 | UInt16(bytes[3])
        self.contentLength = UInt16(bytes[4]) << 8 | UInt16(bytes[5])
        self.paddingLength = bytes[6]
    }

    /// Writes the 8 header bytes at `pointer` (the reserved byte is zero).
    @inlinable
    public func write(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: version, toByteOffset: 0, as: UInt8.self)
        pointer.storeBytes(of: type.rawValue, toByteOffset: 1, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: requestID >> 8), toByteOffset: 2, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: requestID), toByteOffset: 3, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: contentLength >> 8), toByteOffset: 4, as: UInt8.self)
        pointer.storeBytes(of: UInt8(truncatingIfNeeded: contentLength), toByteOffset: 5, as: UInt8.self)
        pointer.storeBytes(of: paddingLength, toByteOffset: 6, as: UInt8.self)
        pointer.storeBytes(of: 0 as UInt8, toByteOffset: 7, as: UInt8.self)
    }

    /// The 8 header bytes as an array.
    @inlinable
    public var bytes: [UInt8] {
        [version, type.rawValue,
         UInt8(truncatingIfNeeded: requestID >> 8), UInt8(truncatingIfNeeded: requestID),
         UInt8(truncatingIfNeeded: contentLength >> 8), UInt8(truncatingIfNeeded: contentLength),
         paddingLength, 0]
    }

    /// The whole record's length on the wire: header, content and padding.
    @inlinable
    public var recordLength: Int {
        FastCGIConstants.headerLength + Int(contentLength) + Int(paddingLength)
    }

    /// The padding that brings `contentLength` to a multiple of 8, as php-fpm
    /// and nginx send it.
    @inlinable
    public static func padding(forContentLength length: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: (8 - (length & 7)) & 7)
    }
}

/// The body of BEGIN_REQUEST: role, flags and 5 reserved bytes.
public struct BeginRequestBody: Hashable, Sendable {
    public static let length = 8

    public var role: Role
    public var flags: UInt8

    @inlinable
    public init(role: Role, flags: UInt8 = 0) {
        self.role = role
        self.flags = flags
    }

    @inlinable
    public init(role: Role, keepConnection: Bool) {
        self.role = role
        self.flags = keepConnection ? FastCGIConstants.keepConnectionFlag : 0
    }

    /// Parses a BEGIN_REQUEST record's content, which must be exactly 8 bytes
    /// (otherwise `.invalidBody(.beginRequest)`).
    @inlinable
    public init(parsing content: UnsafeRawBufferPointer) throws(FastCGIError) {
        guard content.count == Self.length else { throw .invalidBody(.beginRequest) }
        self.role = Role(rawValue: UInt16(content[0]) << 8 | UInt16(content[1]))
        self.flags = content[2]
    }

    /// `FCGI_KEEP_CONN` (flag bit 1): keep the connection open after the request.
    @inlinable
    public var keepConnection: Bool {
        get { flags & FastCGIConstants.keepConnectionFlag != 0 }
        set {
            if newValue { flags |= FastCGIConstants.keepConnectionFlag }
            else { flags &= ~FastCGIConstants.keepConnectionFlag }
        }
    }

    @inlinable
    public func encoded() -> [UInt8] {
        [UInt8(truncatingIfNeeded: role.rawValue >> 8), UInt8(truncatingIfNeeded: role.rawValue),
         flags, 0, 0, 0, 0, 0]
    }
}

/// The body of END_REQUEST: a 32-bit application status, the protocol status
/// and 3 reserved bytes.
public struct EndRequestBody: Hashable, Sendable {
    public static let length = 8

    public var appStatus: UInt32
    public var protocolStatus: ProtocolStatus

    @inlinable
    public init(appStatus: UInt32 = 0, protocolStatus: ProtocolStatus = .requestComplete) {
        self.appStatus = appStatus
        self.protocolStatus = protocolStatus
    }

    /// Parses an END_REQUEST record's content, which must be exactly 8 bytes
    /// (otherwise `.invalidBody(.endRequest)`).
    @inlinable
    public init(parsing content: UnsafeRawBufferPointer) throws(FastCGIError) {
        guard content.count == Self.length else { throw .invalidBody(.endRequest) }
        self.appStatus = UInt32(content[0]) << 24 | UInt32(content[1]) << 16
            | UInt32(content[2]) << 8 | UInt32(content[3])
        self.protocolStatus = ProtocolStatus(rawValue: content[4])
    }

    @inlinable
    public func encoded() -> [UInt8] {
        [UInt8(truncatingIfNeeded: appStatus >> 24), UInt8(truncatingIfNeeded: appStatus >> 16),
         UInt8(truncatingIfNeeded: appStatus >> 8), UInt8(truncatingIfNeeded: appStatus),
         protocolStatus.rawValue, 0, 0, 0]
    }
}

/// The body of UNKNOWN_TYPE: the type byte that was not understood and 7
/// reserved bytes.
public struct UnknownTypeBody: Hashable, Sendable {
    public static let length = 8

    public var type: UInt8

    @inlinable
    public init(type: UInt8) { self.type = type }

    /// Parses an UNKNOWN_TYPE record's content, which must be exactly 8 bytes
    /// (otherwise `.invalidBody(.unknownType)`).
    @inlinable
    public init(parsing content: UnsafeRawBufferPointer) throws(FastCGIError) {
        guard content.count == Self.length else { throw .invalidBody(.unknownType) }
        self.type = content[0]
    }

    @inlinable
    public func encoded() -> [UInt8] { [type, 0, 0, 0, 0, 0, 0, 0] }
}

/// One complete record with its content (without padding), owned.
public struct Record: Hashable, Sendable {
    public var header: RecordHeader
    public var content: [UInt8]

    @inlinable
    public init(header: RecordHeader, content: [UInt8]) {
        self.header = header
        self.content = content
    }

    /// A record with the header filled in from `content` (no padding).
    /// `content` must be at most 65535 bytes.
    @inlinable
    public init(type: RecordType, requestID: UInt16, content: [UInt8] = []) {
        precondition(content.count <= FastCGIConstants.maxContentLength, "record content too long")
        self.header = RecordHeader(type: type, requestID: requestID,
                                   contentLength: UInt16(truncatingIfNeeded: content.count))
        self.content = content
    }

    @inlinable public var type: RecordType { header.type }
    @inlinable public var requestID: UInt16 { header.requestID }
}
