import DroverCore
import FastCGI
import Glibc

/// A fixed-size byte buffer that holds FastCGI records on their way through
/// the worker, in three regions:
///
///     [head, ready)   whole records accepted for forwarding, not yet written
///     [ready, tail)   bytes read but not yet examined
///
/// Records are forwarded as the bytes that arrived (only BEGIN_REQUEST's flags
/// are patched in place), so a relay copies each byte once: kernel → buffer →
/// kernel. The buffer is one record larger than FastCGI's largest record, so
/// a whole record always fits; reading stops while forwarded bytes wait, which
/// is the back-pressure that keeps a 100 MB body from growing memory.
struct RecordBuffer: ~Copyable {
    /// Largest record (8 + 65535 + 255) plus room to read ahead.
    static let capacity = 96 * 1024
    private let storage: UnsafeMutableRawPointer
    private(set) var head = 0
    private(set) var ready = 0
    private(set) var tail = 0

    init() {
        storage = UnsafeMutableRawPointer.allocate(byteCount: Self.capacity, alignment: 16)
    }

    deinit { storage.deallocate() }

    var hasPendingOutput: Bool { head < ready }
    var isEmpty: Bool { head == tail }
    var freeSpace: Int { Self.capacity - tail + head }

    mutating func reset() {
        head = 0
        ready = 0
        tail = 0
    }

    /// Reads once from `fd` into free space (compacting first if needed).
    /// `drained` tells whether the read took less than it could, i.e. the fd
    /// has nothing more right now: the caller can skip the read that would
    /// only say EAGAIN.
    /// With `wait`, blocks until data arrives or the socket's SO_RCVTIMEO.
    mutating func read(from fd: Int32, wait: Bool = false) -> (result: IOResult, drained: Bool) {
        if tail == Self.capacity { compact() }
        let space = Self.capacity - tail
        if space == 0 { return (.bytes(0), false) }
        let r = FD.receive(fd, into: UnsafeMutableRawBufferPointer(start: storage + tail, count: space), wait: wait)
        if case .bytes(let n) = r {
            tail += n
            return (r, n < space)
        }
        return (r, true)
    }

    /// Puts bytes kept from an earlier read back (a parked connection's
    /// partial record).
    mutating func load(_ bytes: [UInt8]) {
        reset()
        guard !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { storage.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        tail = bytes.count
    }

    /// The bytes not yet examined, to keep while a connection is parked.
    var unexamined: [UInt8] {
        Array(UnsafeRawBufferPointer(start: storage + ready, count: tail - ready))
    }

    /// Drops everything not yet examined (a client that left).
    mutating func dropUnexamined() {
        tail = ready
        if head == tail { reset() }
    }

    /// The header of the next unexamined record, if all of it has arrived;
    /// throws on a header FastCGI cannot parse.
    func nextRecord() throws(FastCGIError) -> RecordHeader? {
        guard tail - ready >= FastCGIConstants.headerLength else { return nil }
        let header = try RecordHeader(parsing: UnsafeRawBufferPointer(start: storage + ready, count: FastCGIConstants.headerLength))
        return tail - ready >= header.recordLength ? header : nil
    }

    /// The content of the next record (valid until the buffer changes).
    func content(of header: RecordHeader) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: storage + ready + FastCGIConstants.headerLength, count: Int(header.contentLength))
    }

    func mutableContent(of header: RecordHeader) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: storage + ready + FastCGIConstants.headerLength, count: Int(header.contentLength))
    }

    /// Accepts the next record for forwarding.
    mutating func forward(_ header: RecordHeader) {
        ready += header.recordLength
    }

    /// Drops the next record (handled here, not forwarded). Only allowed when
    /// nothing is waiting to be forwarded, so the regions stay contiguous.
    mutating func consume(_ header: RecordHeader) {
        precondition(!hasPendingOutput)
        ready += header.recordLength
        head = ready
        if head == tail { reset() }
    }

    /// Discards the records accepted for forwarding (e.g. a held-back
    /// BEGIN+PARAMS that turned out to be a ping).
    mutating func discardPending() {
        head = ready
        if head == tail { reset() }
    }

    /// Total bytes waiting to be forwarded.
    var pendingCount: Int { ready - head }

    /// Writes pending records to `fd`; returns the result of the last send.
    mutating func flush(to fd: Int32) -> IOResult {
        var total = 0
        while head < ready {
            let r = FD.send(fd, UnsafeRawBufferPointer(start: storage + head, count: ready - head))
            guard case .bytes(let n) = r else { return total > 0 && r == .wouldBlock ? .bytes(total) : r }
            head += n
            total += n
        }
        if head == tail { reset() }
        return .bytes(total)
    }

    private mutating func compact() {
        guard head > 0 else { return }
        let count = tail - head
        if count > 0 { memmove(storage, storage + head, count) }
        ready -= head
        tail -= head
        head = 0
    }
}
