import CLibuv

/// The agent's libuv loop (design §5: the agent is the one libuv process).
/// Handles are Swift objects in the other files of Events/; each owns its C
/// handle, points the handle's `data` at itself, and is closed with
/// uv_close before its memory is freed.
public final class UVLoop {
    let raw: UnsafeMutablePointer<uv_loop_t>

    public init() {
        raw = .allocate(capacity: 1)
        uv_loop_init(raw)
    }

    /// Runs until `stop()` or until no handle is active.
    public func run() { uv_run(raw, UV_RUN_DEFAULT) }
    public func stop() { uv_stop(raw) }
    /// Milliseconds, libuv's cached loop time.
    public var now: UInt64 { uv_now(raw) }
}
