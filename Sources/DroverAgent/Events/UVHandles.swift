import CLibuv

// libuv handles as Swift objects, like DroverMaster's Watchers.swift does for
// libev. Each object owns its C handle (allocated here), points the handle's
// `data` at itself (unretained: whoever created the object keeps it alive
// while it should fire) and has one static @convention(c) callback per kind,
// so no closure is formed where Swift 6 would isolate it to an actor.
//
// A libuv handle cannot be freed while the loop knows it: `close()` (also run
// by deinit) clears `data` and hands the handle to uv_close, whose callback
// frees the memory on the loop's next turn. The Swift object may be gone by
// then; the close callback only touches the C memory. All unsafe pointer code
// of the agent's event handling stays in this file and UVLoop.swift.

/// Hands `handle` to uv_close; the memory is freed in the close callback.
private func closeAndFree(_ handle: UnsafeMutableRawPointer) {
    let h = handle.assumingMemoryBound(to: uv_handle_t.self)
    h.pointee.data = nil
    if uv_is_closing(h) == 0 { uv_close(h, freeOnClose) }
}

private let freeOnClose: @convention(c) (UnsafeMutablePointer<uv_handle_t>?) -> Void = { h in
    h.map { UnsafeMutableRawPointer($0).deallocate() }
}

/// Runs a handler while a descriptor is readable (level-triggered: the
/// handler is called again on the next loop turn while data is left).
/// Note: uv_poll_init switches the descriptor to non-blocking mode.
public final class UVPoll {
    private let handle = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
    private var closed = false
    public let fd: Int32
    let handler: () -> Void

    public init(_ loop: UVLoop, fd: Int32, handler: @escaping () -> Void) throws {
        self.fd = fd
        self.handler = handler
        let rc = uv_poll_init(loop.raw, handle, fd)
        if rc != 0 {
            handle.deallocate()
            closed = true
            throw UVError(rc, "uv_poll_init(\(fd))")
        }
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    public func start() throws {
        let rc = uv_poll_start(handle, Int32(UV_READABLE.rawValue), UVPoll.callback)
        if rc != 0 { throw UVError(rc, "uv_poll_start(\(fd))") }
    }

    public func stop() { if !closed { uv_poll_stop(handle) } }

    public func close() {
        guard !closed else { return }
        closed = true
        closeAndFree(UnsafeMutableRawPointer(handle))
    }

    deinit { close() }

    // An error status (e.g. the descriptor failed) also calls the handler:
    // its read then sees the error.
    private static let callback: @convention(c) (UnsafeMutablePointer<uv_poll_t>?, Int32, Int32) -> Void = { h, _, _ in
        guard let data = h?.pointee.data else { return }
        Unmanaged<UVPoll>.fromOpaque(data).takeUnretainedValue().handler()
    }
}

/// Runs a handler when a signal arrives (libuv turns it into a loop event,
/// so the handler may do anything).
public final class UVSignal {
    private let handle = UnsafeMutablePointer<uv_signal_t>.allocate(capacity: 1)
    private var closed = false
    public let signal: Int32
    let handler: () -> Void

    public init(_ loop: UVLoop, signal: Int32, handler: @escaping () -> Void) throws {
        self.signal = signal
        self.handler = handler
        let rc = uv_signal_init(loop.raw, handle)
        if rc != 0 {
            handle.deallocate()
            closed = true
            throw UVError(rc, "uv_signal_init")
        }
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    public func start() throws {
        let rc = uv_signal_start(handle, UVSignal.callback, signal)
        if rc != 0 { throw UVError(rc, "uv_signal_start(\(signal))") }
    }

    public func stop() { if !closed { uv_signal_stop(handle) } }

    public func close() {
        guard !closed else { return }
        closed = true
        closeAndFree(UnsafeMutableRawPointer(handle))
    }

    deinit { close() }

    private static let callback: @convention(c) (UnsafeMutablePointer<uv_signal_t>?, Int32) -> Void = { h, _ in
        guard let data = h?.pointee.data else { return }
        Unmanaged<UVSignal>.fromOpaque(data).takeUnretainedValue().handler()
    }
}

/// A one-shot or repeating timer.
public final class UVTimer {
    private let handle = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
    private var closed = false
    let handler: () -> Void

    public init(_ loop: UVLoop, handler: @escaping () -> Void) throws {
        self.handler = handler
        let rc = uv_timer_init(loop.raw, handle)
        if rc != 0 {
            handle.deallocate()
            closed = true
            throw UVError(rc, "uv_timer_init")
        }
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    /// (Re)starts the timer: fires after `after` seconds, then every
    /// `repeat` seconds (0: once). libuv counts whole milliseconds.
    public func start(after: Double, repeat: Double = 0) {
        guard !closed else { return }
        uv_timer_start(handle, UVTimer.callback, Self.millis(after), Self.millis(`repeat`))
    }

    public func stop() { if !closed { uv_timer_stop(handle) } }

    public var isActive: Bool { !closed && uv_is_active(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) != 0 }

    /// Lets the loop end while only this timer is left (uv_unref).
    public func unref() {
        if !closed { uv_unref(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) }
    }

    public func close() {
        guard !closed else { return }
        closed = true
        closeAndFree(UnsafeMutableRawPointer(handle))
    }

    deinit { close() }

    private static func millis(_ seconds: Double) -> UInt64 { seconds <= 0 ? 0 : UInt64((seconds * 1000).rounded(.up)) }

    private static let callback: @convention(c) (UnsafeMutablePointer<uv_timer_t>?) -> Void = { h in
        guard let data = h?.pointee.data else { return }
        Unmanaged<UVTimer>.fromOpaque(data).takeUnretainedValue().handler()
    }
}

/// A libuv call that failed: the operation and libuv's error name/message.
public struct UVError: Error, CustomStringConvertible {
    public var code: Int32
    public var operation: String
    public init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }
    public var description: String { "\(operation): \(String(cString: uv_strerror(code))) (\(-code))" }
}
