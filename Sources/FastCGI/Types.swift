// FastCGI 1.0 protocol constants and the small value types of its records.
//
// This module is a codec only: it turns bytes into records and records into
// bytes. It never opens, reads or writes a file descriptor, and it imports
// nothing but the Swift standard library (Drover's daemon avoids Foundation).
//
// Reference: the FastCGI Specification (Open Market, 1996), sections 3 and 8.

/// Numbers fixed by the FastCGI 1.0 specification.
public enum FastCGIConstants {
    /// `FCGI_VERSION_1`: the only protocol version there is.
    public static let version: UInt8 = 1
    /// `FCGI_HEADER_LEN`: every record starts with an 8-byte header.
    public static let headerLength = 8
    /// The largest content one record can carry (the header's 16-bit length).
    public static let maxContentLength = 65535
    /// `FCGI_LISTENSOCK_FILENO`: an application started by a process manager
    /// finds its listening socket on this descriptor.
    public static let listenSocketFileno: Int32 = 0
    /// `FCGI_NULL_REQUEST_ID`: the request ID of management records.
    public static let nullRequestID: UInt16 = 0
    /// `FCGI_KEEP_CONN`: the BEGIN_REQUEST flag asking the application to keep
    /// the connection open after the request.
    public static let keepConnectionFlag: UInt8 = 1
    /// The largest content length that is a multiple of 8, used when a long
    /// stream is split so that full records need no padding.
    public static let maxAlignedContentLength = 65528
    /// Names of the management variables an application reports in
    /// GET_VALUES_RESULT.
    public static let maxConnsName = "FCGI_MAX_CONNS"
    public static let maxReqsName = "FCGI_MAX_REQS"
    public static let mpxsConnsName = "FCGI_MPXS_CONNS"
}

/// The type byte of a record header.
///
/// A struct rather than an enum so that a record of a type this code does not
/// know can still be framed, reported and answered with UNKNOWN_TYPE.
public struct RecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8

    @inlinable
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let beginRequest = RecordType(rawValue: 1)
    public static let abortRequest = RecordType(rawValue: 2)
    public static let endRequest = RecordType(rawValue: 3)
    public static let params = RecordType(rawValue: 4)
    public static let stdin = RecordType(rawValue: 5)
    public static let stdout = RecordType(rawValue: 6)
    public static let stderr = RecordType(rawValue: 7)
    public static let data = RecordType(rawValue: 8)
    public static let getValues = RecordType(rawValue: 9)
    public static let getValuesResult = RecordType(rawValue: 10)
    public static let unknownType = RecordType(rawValue: 11)

    /// True for the management record types (GET_VALUES, GET_VALUES_RESULT,
    /// UNKNOWN_TYPE). Whether a record with request ID 0 of another type is a
    /// management record is the caller's business.
    @inlinable
    public var isManagement: Bool { rawValue >= 9 && rawValue <= 11 }

    /// True for the types the specification defines (1 through 11).
    @inlinable
    public var isKnown: Bool { rawValue >= 1 && rawValue <= 11 }

    public var description: String {
        switch rawValue {
        case 1: return "BEGIN_REQUEST"
        case 2: return "ABORT_REQUEST"
        case 3: return "END_REQUEST"
        case 4: return "PARAMS"
        case 5: return "STDIN"
        case 6: return "STDOUT"
        case 7: return "STDERR"
        case 8: return "DATA"
        case 9: return "GET_VALUES"
        case 10: return "GET_VALUES_RESULT"
        case 11: return "UNKNOWN_TYPE"
        default: return "type \(rawValue)"
        }
    }
}

/// The role requested in BEGIN_REQUEST.
public struct Role: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16

    @inlinable
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let responder = Role(rawValue: 1)
    public static let authorizer = Role(rawValue: 2)
    public static let filter = Role(rawValue: 3)

    public var description: String {
        switch rawValue {
        case 1: return "RESPONDER"
        case 2: return "AUTHORIZER"
        case 3: return "FILTER"
        default: return "role \(rawValue)"
        }
    }
}

/// The protocol status of END_REQUEST.
public struct ProtocolStatus: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8

    @inlinable
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `FCGI_REQUEST_COMPLETE`: normal end of request.
    public static let requestComplete = ProtocolStatus(rawValue: 0)
    /// `FCGI_CANT_MPX_CONN`: a second concurrent request on a connection that
    /// does not multiplex.
    public static let cantMultiplexConnection = ProtocolStatus(rawValue: 1)
    /// `FCGI_OVERLOADED`: the application ran out of some resource.
    public static let overloaded = ProtocolStatus(rawValue: 2)
    /// `FCGI_UNKNOWN_ROLE`: the application does not play the requested role.
    public static let unknownRole = ProtocolStatus(rawValue: 3)

    public var description: String {
        switch rawValue {
        case 0: return "REQUEST_COMPLETE"
        case 1: return "CANT_MPX_CONN"
        case 2: return "OVERLOADED"
        case 3: return "UNKNOWN_ROLE"
        default: return "protocol status \(rawValue)"
        }
    }
}

/// What can be wrong with FastCGI bytes.
public enum FastCGIError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A record header whose version byte is not 1.
    case unsupportedVersion(UInt8)
    /// Fewer bytes than the structure being parsed needs.
    case truncated
    /// A declared length that does not fit the bytes (the text says which).
    case invalidLength(String)
    /// The body of a fixed-size record (BEGIN_REQUEST, END_REQUEST,
    /// UNKNOWN_TYPE) has the wrong length.
    case invalidBody(RecordType)
    /// A name or value longer than the 31-bit length a name-value pair can
    /// declare.
    case nameValueTooLong(Int)
    /// A configured limit was exceeded (the text says which).
    case limitExceeded(String)

    public var description: String {
        switch self {
        case .unsupportedVersion(let v):
            return "unsupported FastCGI version \(v) (expected \(FastCGIConstants.version))"
        case .truncated:
            return "truncated FastCGI data"
        case .invalidLength(let what):
            return "invalid FastCGI length: \(what)"
        case .invalidBody(let type):
            return "invalid \(type) record body"
        case .nameValueTooLong(let n):
            return "FastCGI name or value too long (\(n) bytes, at most \(0x7fff_ffff))"
        case .limitExceeded(let what):
            return "FastCGI limit exceeded: \(what)"
        }
    }
}
