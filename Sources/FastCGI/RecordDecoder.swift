// Incremental record framing for clients and tests.

/// Frames records out of a byte stream: `feed` it bytes as they arrive and
/// call `next` until it returns nil (more bytes needed).
///
///     var decoder = RecordDecoder()
///     decoder.feed(bytesJustRead)
///     while let record = try decoder.next() { handle(record) }
///
/// An error is final for the stream: the decoder stays at the bad record and
/// `next` throws again. Padding of any length is accepted and dropped.
public struct RecordDecoder: Sendable {
    /// Records declaring more content than this are rejected with
    /// `.limitExceeded` (the header's own limit is 65535).
    public let maxContentLength: Int

    @usableFromInline var storage: [UInt8] = []
    @usableFromInline var readIndex = 0

    public init(maxContentLength: Int = FastCGIConstants.maxContentLength) {
        self.maxContentLength = maxContentLength
    }

    /// Bytes fed but not yet returned as records.
    @inlinable
    public var bufferedByteCount: Int { storage.count - readIndex }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        compact()
        storage.append(contentsOf: bytes)
    }

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The next complete record, or nil when the buffered bytes do not hold
    /// one yet. Throws `.unsupportedVersion` for a header whose version is not
    /// 1 and `.limitExceeded` for content longer than `maxContentLength`.
    public mutating func next() throws(FastCGIError) -> Record? {
        guard bufferedByteCount >= FastCGIConstants.headerLength else { return nil }
        let start = readIndex
        let parsed: Result<RecordHeader, FastCGIError> = storage.withUnsafeBytes { raw in
            do throws(FastCGIError) {
                return .success(try RecordHeader(parsing: UnsafeRawBufferPointer(rebasing: raw[start...])))
            } catch {
                return .failure(error)
            }
        }
        let header = try parsed.get()
        guard Int(header.contentLength) <= maxContentLength else {
            throw .limitExceeded("\(header.type) record declares \(header.contentLength) bytes of content, limit \(maxContentLength)")
        }
        guard bufferedByteCount >= header.recordLength else { return nil }
        let contentStart = start + FastCGIConstants.headerLength
        let content = Array(storage[contentStart ..< contentStart + Int(header.contentLength)])
        readIndex += header.recordLength
        if readIndex == storage.count {
            storage.removeAll(keepingCapacity: true)
            readIndex = 0
        }
        return Record(header: header, content: content)
    }

    /// Drops consumed bytes once they are at least half the buffer, so feeding
    /// costs amortized O(1) per byte.
    mutating func compact() {
        guard readIndex > 0 else { return }
        if readIndex == storage.count {
            storage.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex * 2 >= storage.count {
            storage.removeSubrange(0 ..< readIndex)
            readIndex = 0
        }
    }
}
