import Glibc

/// A failed system call: the operation and its errno, printed the way
/// php-fpm's logs do ("bind(): Address already in use (98)").
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Int32
    public init(_ operation: String, errno: Int32 = Glibc.errno) {
        self.operation = operation
        self.errno = errno
    }
    public var description: String { "\(operation): \(Self.message(errno)) (\(errno))" }
    public static func message(_ code: Int32) -> String { String(cString: strerror(code)) }
}

/// Runs `call` until it does not fail with EINTR; throws SystemError on -1.
@discardableResult
public func retryingEINTR(_ operation: @autoclosure () -> String, _ call: () -> Int32) throws -> Int32 {
    while true {
        let r = call()
        if r != -1 { return r }
        if errno == EINTR { continue }
        throw SystemError(operation())
    }
}
