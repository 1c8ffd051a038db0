import CDroverSys
import Glibc

/// A worker's handle on its own scoreboard slot. Every update is one seqlock
/// write, so readers never see half a request.
public struct SlotWriter: @unchecked Sendable {
    let slot: UnsafeMutablePointer<drover_sb_slot>
    let pool: UnsafeMutablePointer<drover_sb_pool>

    /// The request fields copied into the slot, truncated like php-fpm's.
    public enum Field {
        case method, uri, query, script, user
    }

    public func setState(_ state: SlotState) {
        drover_seq_write_begin(&slot.pointee.seq)
        slot.pointee.state = state.rawValue
        drover_seq_write_end(&slot.pointee.seq)
    }

    public func setApp(pid: Int32) {
        drover_seq_write_begin(&slot.pointee.seq)
        slot.pointee.app_pid = pid
        drover_seq_write_end(&slot.pointee.seq)
    }

    /// Counts an accepted connection for the pool.
    public func countAcceptedConnection() {
        drover_atomic_add64(&pool.pointee.accepted_conn, 1)
    }

    public func countSlowRequest() {
        drover_atomic_add64(&pool.pointee.slow_requests, 1)
    }

    /// Counts an app that died without being asked to.
    public func countCrash() {
        drover_atomic_add64(&pool.pointee.crashes, 1)
    }

    /// Marks the slot busy ("Reading headers") as a request begins; returns
    /// the pool's busy count including this worker.
    @discardableResult
    public func beginRequest(at micros: Int64) -> UInt64 {
        drover_seq_write_begin(&slot.pointee.seq)
        slot.pointee.state = SlotState.readingHeaders.rawValue
        slot.pointee.accepted_at_us = micros
        slot.pointee.duration_us = 0
        slot.pointee.requests &+= 1
        slot.pointee.status = 0
        slot.pointee.bytes_in = 0
        slot.pointee.bytes_out = 0
        slot.pointee.content_length = 0
        clear(.method)
        clear(.uri)
        clear(.query)
        clear(.script)
        clear(.user)
        drover_seq_write_end(&slot.pointee.seq)
        let active = drover_atomic_add64(&pool.pointee.active, 1)
        drover_atomic_max64(&pool.pointee.max_active, active)
        return active
    }

    /// Fills the request fields from the FastCGI params; `values` is called
    /// inside one seqlock write with a setter for each field.
    public func describeRequest(contentLength: UInt64, _ values: (_ set: (Field, UnsafeRawBufferPointer) -> Void) -> Void) {
        drover_seq_write_begin(&slot.pointee.seq)
        slot.pointee.state = SlotState.running.rawValue
        slot.pointee.content_length = contentLength
        values { field, bytes in self.set(field, bytes) }
        drover_seq_write_end(&slot.pointee.seq)
    }

    public func setStatus(_ status: Int) {
        drover_seq_write_begin(&slot.pointee.seq)
        slot.pointee.status = UInt32(truncatingIfNeeded: status)
        drover_seq_write_end(&slot.pointee.seq)
    }

    /// Marks the request finished: back to Idle with its duration, sizes,
    /// and the app's CPU (percent of the request's wall time) and memory
    /// (bytes) when they were measured.
    public func endRequest(at micros: Int64, bytesIn: UInt64, bytesOut: UInt64, cpu: Double? = nil, memory: UInt64? = nil) {
        drover_seq_write_begin(&slot.pointee.seq)
        slot.pointee.state = SlotState.idle.rawValue
        slot.pointee.duration_us = micros - slot.pointee.accepted_at_us
        slot.pointee.bytes_in = bytesIn
        slot.pointee.bytes_out = bytesOut
        slot.pointee.last_cpu = cpu ?? -1
        slot.pointee.last_memory = memory ?? 0
        drover_seq_write_end(&slot.pointee.seq)
        drover_atomic_sub64(&pool.pointee.active, 1)
    }

    private func set(_ field: Field, _ bytes: UnsafeRawBufferPointer) {
        withField(field) { dst, cap in drover_copy_field(dst, cap, bytes.baseAddress, bytes.count) }
    }

    private func clear(_ field: Field) {
        withField(field) { dst, _ in dst.pointee = 0 }
    }

    private func withField(_ field: Field, _ body: (UnsafeMutablePointer<CChar>, Int) -> Void) {
        func apply<T>(_ p: UnsafeMutablePointer<T>) {
            body(UnsafeMutableRawPointer(p).assumingMemoryBound(to: CChar.self), MemoryLayout<T>.size)
        }
        switch field {
        case .method: apply(&slot.pointee.request_method)
        case .uri: apply(&slot.pointee.request_uri)
        case .query: apply(&slot.pointee.query_string)
        case .script: apply(&slot.pointee.script_filename)
        case .user: apply(&slot.pointee.auth_user)
        }
    }
}
