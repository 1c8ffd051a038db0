// Name-value pairs: the content of PARAMS, GET_VALUES and GET_VALUES_RESULT.
//
// Each pair is nameLength, valueLength, nameData, valueData. A length below 128
// takes one byte; a longer one takes four bytes, big-endian, with the high bit
// of the first byte set (so at most 0x7fffffff).

public enum NameValuePairs {
    /// The largest name or value length a pair can declare.
    public static let maxLength = 0x7fff_ffff

    /// Parses the pair that starts at `offset` in `bytes` and moves `offset`
    /// past it. Returns nil when `offset` is at the end. The returned ranges
    /// index `bytes`. This is the closure-free primitive `forEach` is built on.
    ///
    /// Throws `.truncated` when a length prefix is cut short and
    /// `.invalidLength` when a declared length runs past the end of `bytes`.
    @inlinable
    public static func nextPair(in bytes: UnsafeRawBufferPointer, at offset: inout Int)
        throws(FastCGIError) -> (name: Range<Int>, value: Range<Int>)?
    {
        let end = bytes.count
        guard offset < end else { return nil }
        var cursor = offset
        let nameLength = try readLength(bytes, &cursor)
        let valueLength = try readLength(bytes, &cursor)
        let remaining = end - cursor
        guard nameLength <= remaining, valueLength <= remaining - nameLength else {
            throw .invalidLength(
                "name-value pair declares \(nameLength)+\(valueLength) bytes, \(remaining) remain")
        }
        let name = cursor ..< cursor + nameLength
        let value = name.upperBound ..< name.upperBound + valueLength
        offset = value.upperBound
        return (name, value)
    }

    @inlinable
    static func readLength(_ bytes: UnsafeRawBufferPointer, _ cursor: inout Int) throws(FastCGIError) -> Int {
        guard cursor < bytes.count else { throw .truncated }
        let b0 = bytes[cursor]
        if b0 & 0x80 == 0 {
            cursor += 1
            return Int(b0)
        }
        guard bytes.count - cursor >= 4 else { throw .truncated }
        let length = Int(b0 & 0x7f) << 24 | Int(bytes[cursor + 1]) << 16
            | Int(bytes[cursor + 2]) << 8 | Int(bytes[cursor + 3])
        cursor += 4
        return length
    }

    /// Calls `body` with each name and value in `bytes`, without copying.
    /// The buffers passed to `body` are slices of `bytes` (rebased) and are
    /// valid only as long as `bytes` is.
    ///
    /// Throws a `FastCGIError` on a length prefix cut short or a declared
    /// length past the end (pairs before the bad one have been passed to
    /// `body` by then), and rethrows what `body` throws.
    @inlinable
    public static func forEach(
        in bytes: UnsafeRawBufferPointer,
        _ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var offset = 0
        while let pair = try nextPair(in: bytes, at: &offset) {
            try body(UnsafeRawBufferPointer(rebasing: bytes[pair.name]),
                     UnsafeRawBufferPointer(rebasing: bytes[pair.value]))
        }
    }

    /// Decodes every pair into strings (invalid UTF-8 is repaired with U+FFFD).
    /// Convenient for tests and tools; the hot path uses `forEach`.
    public static func decode(_ bytes: [UInt8]) throws(FastCGIError) -> [(name: String, value: String)] {
        let result: Result<[(name: String, value: String)], FastCGIError> = bytes.withUnsafeBytes { raw in
            var pairs: [(name: String, value: String)] = []
            var offset = 0
            do throws(FastCGIError) {
                while let pair = try nextPair(in: raw, at: &offset) {
                    pairs.append((String(decoding: raw[pair.name], as: UTF8.self),
                                  String(decoding: raw[pair.value], as: UTF8.self)))
                }
            } catch {
                return .failure(error)
            }
            return .success(pairs)
        }
        return try result.get()
    }

    /// The number of bytes `append` writes for a pair of these lengths.
    @inlinable
    public static func encodedLength(nameLength: Int, valueLength: Int) -> Int {
        (nameLength < 128 ? 1 : 4) + (valueLength < 128 ? 1 : 4) + nameLength + valueLength
    }

    /// Appends one pair, with 1-byte lengths below 128 and 4-byte lengths
    /// otherwise. A name or value longer than 0x7fffffff bytes is a
    /// programming error (it traps); use `checkedAppend` to get an error instead.
    @inlinable
    public static func append(name: some Collection<UInt8>, value: some Collection<UInt8>, to buffer: inout [UInt8]) {
        let nameLength = name.count
        let valueLength = value.count
        precondition(nameLength <= maxLength && valueLength <= maxLength,
                     "FastCGI name or value longer than 0x7fffffff bytes")
        buffer.reserveCapacity(buffer.count + encodedLength(nameLength: nameLength, valueLength: valueLength))
        appendLength(nameLength, to: &buffer)
        appendLength(valueLength, to: &buffer)
        buffer.append(contentsOf: name)
        buffer.append(contentsOf: value)
    }

    /// Appends one pair of strings (as UTF-8).
    @inlinable
    public static func append(name: String, value: String, to buffer: inout [UInt8]) {
        append(name: name.utf8, value: value.utf8, to: &buffer)
    }

    /// Like `append`, but throws `.nameValueTooLong` instead of trapping.
    @inlinable
    public static func checkedAppend(name: some Collection<UInt8>, value: some Collection<UInt8>,
                                     to buffer: inout [UInt8]) throws(FastCGIError) {
        let nameLength = name.count
        let valueLength = value.count
        guard nameLength <= maxLength else { throw .nameValueTooLong(nameLength) }
        guard valueLength <= maxLength else { throw .nameValueTooLong(valueLength) }
        append(name: name, value: value, to: &buffer)
    }

    /// Encodes pairs of strings into one buffer.
    public static func encode(_ pairs: [(String, String)]) -> [UInt8] {
        var buffer: [UInt8] = []
        for (name, value) in pairs { append(name: name.utf8, value: value.utf8, to: &buffer) }
        return buffer
    }

    @inlinable
    static func appendLength(_ length: Int, to buffer: inout [UInt8]) {
        if length < 128 {
            buffer.append(UInt8(truncatingIfNeeded: length))
        } else {
            buffer.append(UInt8(truncatingIfNeeded: length >> 24) | 0x80)
            buffer.append(UInt8(truncatingIfNeeded: length >> 16))
            buffer.append(UInt8(truncatingIfNeeded: length >> 8))
            buffer.append(UInt8(truncatingIfNeeded: length))
        }
    }
}
