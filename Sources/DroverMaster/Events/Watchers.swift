import CLibev

// libev watchers as Swift objects. Each owns its C watcher struct and points
// the struct's `data` at itself, so one C callback per kind can find the
// Swift handler. The callbacks are static members, not closures formed in
// main.swift, which Swift 6 would isolate to the main actor.

/// Runs a handler when a signal arrives.
public final class SignalWatcher {
    private let watcher = UnsafeMutablePointer<ev_signal>.allocate(capacity: 1)
    private let loop: EventLoop
    let handler: () -> Void

    public init(_ loop: EventLoop, signal: Int32, handler: @escaping () -> Void) {
        self.loop = loop
        self.handler = handler
        drover_ev_signal_init(watcher, SignalWatcher.callback, signal)
        watcher.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    public func start() { ev_signal_start(loop.loop, watcher) }
    public func stop() { ev_signal_stop(loop.loop, watcher) }

    deinit {
        stop()
        watcher.deallocate()
    }

    private static let callback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ev_signal>?, Int32) -> Void = { _, w, _ in
        Unmanaged<SignalWatcher>.fromOpaque(w!.pointee.data).takeUnretainedValue().handler()
    }
}

/// Runs a handler for every child that exits (pid 0: any child).
public final class ChildWatcher {
    private let watcher = UnsafeMutablePointer<ev_child>.allocate(capacity: 1)
    private let loop: EventLoop
    let handler: (_ pid: Int32, _ status: Int32) -> Void

    public init(_ loop: EventLoop, handler: @escaping (_ pid: Int32, _ status: Int32) -> Void) {
        self.loop = loop
        self.handler = handler
        drover_ev_child_init(watcher, ChildWatcher.callback, 0, 0)
        watcher.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    public func start() { ev_child_start(loop.loop, watcher) }
    public func stop() { ev_child_stop(loop.loop, watcher) }

    deinit {
        stop()
        watcher.deallocate()
    }

    private static let callback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ev_child>?, Int32) -> Void = { _, w, _ in
        let me = Unmanaged<ChildWatcher>.fromOpaque(w!.pointee.data).takeUnretainedValue()
        me.handler(w!.pointee.rpid, w!.pointee.rstatus)
    }
}

/// A one-shot or repeating timer.
public final class TimerWatcher {
    private let watcher = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
    private let loop: EventLoop
    let handler: () -> Void

    public init(_ loop: EventLoop, handler: @escaping () -> Void) {
        self.loop = loop
        self.handler = handler
        drover_ev_timer_init(watcher, TimerWatcher.callback, 0, 0)
        watcher.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    public var isActive: Bool { drover_ev_is_active(watcher) != 0 }

    /// (Re)starts the timer: fires after `after` seconds, then every `repeat` (0: once).
    public func start(after: Double, repeat: Double = 0) {
        ev_timer_stop(loop.loop, watcher)
        drover_ev_timer_set(watcher, after, `repeat`)
        ev_timer_start(loop.loop, watcher)
    }

    public func stop() { ev_timer_stop(loop.loop, watcher) }

    deinit {
        stop()
        watcher.deallocate()
    }

    private static let callback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ev_timer>?, Int32) -> Void = { _, w, _ in
        Unmanaged<TimerWatcher>.fromOpaque(w!.pointee.data).takeUnretainedValue().handler()
    }
}

/// Runs a handler while a descriptor is readable (level-triggered, like
/// every libev io watcher).
public final class IOWatcher {
    private let watcher = UnsafeMutablePointer<ev_io>.allocate(capacity: 1)
    private let loop: EventLoop
    let handler: () -> Void

    public init(_ loop: EventLoop, fd: Int32, handler: @escaping () -> Void) {
        self.loop = loop
        self.handler = handler
        drover_ev_io_init(watcher, IOWatcher.callback, fd, Int32(EV_READ))
        watcher.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    public var isActive: Bool { drover_ev_is_active(watcher) != 0 }
    public func start() { ev_io_start(loop.loop, watcher) }
    public func stop() { ev_io_stop(loop.loop, watcher) }

    deinit {
        stop()
        watcher.deallocate()
    }

    private static let callback: @convention(c) (OpaquePointer?, UnsafeMutablePointer<ev_io>?, Int32) -> Void = { _, w, _ in
        Unmanaged<IOWatcher>.fromOpaque(w!.pointee.data).takeUnretainedValue().handler()
    }
}
