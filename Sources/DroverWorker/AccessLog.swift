import DroverConfig
import DroverCore
import Glibc

/// The pool's access log (`access.log`, `access.format`,
/// `access.suppress_path[]`): the worker formats one line per request and
/// sends it to the agent, which writes the file (design §5). A class: its
/// line buffer is reused in place (a struct copied out of the worker and
/// back would copy the buffer on every request).
final class AccessLog {
    let format: AccessLogFormat
    let pool: String
    let poolIndex: UInt16
    let masterPID: Int32
    /// Looked up once: getpid(2) is a system call.
    let workerPID = getpid()
    /// URIs whose successful requests are not logged, as bytes.
    let suppressed: [[UInt8]]
    /// One line's buffer, reused.
    var line: [UInt8] = []

    init?(pool config: PoolConfig, poolIndex: Int) {
        guard config.accessLog != nil, let format = try? AccessLogFormat(config.accessFormat) else { return nil }
        self.format = format
        pool = config.name
        self.poolIndex = UInt16(clamping: poolIndex)
        masterPID = getppid()
        suppressed = config.accessSuppressPaths.map { Array($0.utf8) }
        line.reserveCapacity(1100)
    }

    /// php-fpm leaves out successful requests to `access.suppress_path[]`.
    func isSuppressed(path: UnsafeRawBufferPointer, status: Int) -> Bool {
        guard (200..<300).contains(status), !suppressed.isEmpty else { return false }
        return suppressed.contains { $0.elementsEqual(path) }
    }
}

extension Worker {
    /// Writes the access-log line of a finished request, if the pool has an
    /// access log. `usage` is the app's CPU and memory for the request.
    func logAccess(_ r: ActiveRequest, usage: (cpu: Double, memory: UInt64)?, endedAt: Int64) {
        guard let access = accessLog else { return }
        params.withUnsafeBytes { raw in
            func field(_ range: Range<Int>?) -> UnsafeRawBufferPointer {
                guard let range, range.upperBound <= raw.count else { return UnsafeRawBufferPointer(start: nil, count: 0) }
                return UnsafeRawBufferPointer(rebasing: raw[range])
            }
            if access.isSuppressed(path: field(r.fields.uriPath), status: r.status) { return }
            currentPeer.withUnsafeBytes { peer in
                responseHead.withUnsafeBytes { head in
                    var record = AccessRecord()
                    record.startedAtMicros = r.startedAtRealtime
                    record.endedAtMicros = endedAt
                    record.durationMicros = UInt64(max(0, endedAt - r.startedAtRealtime))
                    record.cpuTotalPercent = usage?.cpu
                    record.memoryBytes = usage?.memory
                    record.status = r.status
                    record.contentLength = r.fields.contentLength
                    record.pool = access.pool
                    record.workerPID = access.workerPID
                    record.masterPID = access.masterPID
                    record.method = field(r.fields.method)
                    record.uri = field(r.fields.uriPath)
                    record.query = field(r.fields.query)
                    record.script = field(r.fields.script)
                    record.user = field(r.fields.user)
                    record.remoteAddr = peer
                    record.responseHead = head
                    record.params = r.phase == .params ? nil : FastCGIParamBlock(raw)
                    access.line.removeAll(keepingCapacity: true)
                    access.format.render(record, into: &access.line)
                }
            }
            access.line.withUnsafeBytes { bytes in
                _ = log.channel?.send(LogRecordHeader(kind: .access, pool: access.poolIndex, pid: access.workerPID), bytes)
            }
        }
    }
}
