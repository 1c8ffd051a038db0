import CLibev

/// libev's default loop: the master's only thread waits here for signals,
/// child exits and timers. The default loop is required because only it
/// reaps children (ev_child), and with that nothing else may call
/// waitpid(-1).
public final class EventLoop {
    let loop: OpaquePointer

    /// `backend` is php-fpm's `events.mechanism` (epoll, poll, select), or
    /// nil for libev's choice.
    public init(backend: String?) {
        var flags = UInt32(EVFLAG_AUTO)
        switch backend {
        case "epoll": flags |= UInt32(EVBACKEND_EPOLL)
        case "poll": flags |= UInt32(EVBACKEND_POLL)
        case "select": flags |= UInt32(EVBACKEND_SELECT)
        default: break
        }
        // EVFLAG_SIGNALFD is left off on purpose: it leaks a blocked signal
        // mask into forked children.
        loop = drover_ev_default_loop(flags)
    }

    public var backendName: String {
        switch Int32(ev_backend(loop)) {
        case Int32(EVBACKEND_EPOLL): "epoll"
        case Int32(EVBACKEND_POLL): "poll"
        case Int32(EVBACKEND_SELECT): "select"
        default: "other"
        }
    }

    public func run() { ev_run(loop, 0) }
    /// The libev this process runs with ("4.33").
    public static var libevVersion: String { "\(ev_version_major()).\(ev_version_minor())" }
    public func stop() { ev_break(loop, Int32(EVBREAK_ALL)) }
    /// libev's cached time, seconds.
    public var now: Double { ev_now(loop) }
}
