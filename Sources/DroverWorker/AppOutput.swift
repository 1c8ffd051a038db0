import CDroverSys
import DroverCore
import Glibc

/// `catch_workers_output`: the app's stdout and stderr go into two pipes
/// that the worker drains whenever they are readable — in its idle loop and
/// while it relays — and forwards to the agent as `.output` records (the
/// agent splits, decorates and wraps the lines as php-fpm does). Reading
/// never waits for the agent: a full channel drops the record (counted), so
/// an app writing megabytes to stderr cannot stall its own requests.
/// Without catch_workers_output the app's stdout and stderr are /dev/null.
final class AppOutput {
    /// Read ends: [stdout, stderr]; -1 when closed.
    private(set) var fds: [Int32] = [-1, -1]
    /// The app the pipes belong to (the records name it, as php-fpm's
    /// "child N said into stderr" does).
    private var appPID: Int32 = 0
    private let channel: LogChannel?
    private let poolIndex: UInt16
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)

    init(channel: LogChannel?, poolIndex: Int) {
        self.channel = channel
        self.poolIndex = UInt16(clamping: poolIndex)
    }

    deinit { buffer.deallocate() }

    /// New pipes for an app about to start; returns the write ends (the
    /// caller places them on the app's fd 1 and 2 and closes them).
    func makePipes() throws -> (stdout: Int32, stderr: Int32) {
        close()
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        // Blocking pipes: the app's end must stay blocking (a full pipe
        // makes the app wait, as on a terminal, instead of losing output);
        // only the worker's read ends are made non-blocking.
        if drover_pipe2(&out, Int32(DROVER_O_CLOEXEC)) != 0 { throw SystemError("pipe2()") }
        if drover_pipe2(&err, Int32(DROVER_O_CLOEXEC)) != 0 {
            let e = errno
            FD.close(out[0])
            FD.close(out[1])
            throw SystemError("pipe2()", errno: e)
        }
        try FD.setNonBlocking(out[0])
        try FD.setNonBlocking(err[0])
        fds = [out[0], err[0]]
        return (out[1], err[1])
    }

    func started(pid: Int32) { appPID = pid }

    /// Reads what the app wrote to `fd` and forwards it. At end of file
    /// (the app is gone) the stream is closed with an empty record, which
    /// makes the agent write a partial last line.
    func drain(_ fd: Int32) {
        guard let stream = fds.firstIndex(of: fd), fd >= 0 else { return }
        let header = LogRecordHeader(kind: .output, stream: UInt8(stream + 1), pool: poolIndex, pid: appPID)
        while true {
            let n = read(fd, buffer.baseAddress, buffer.count)
            if n > 0 {
                channel?.send(header, UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if n < buffer.count { return }
                continue
            }
            if n < 0 && (errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN { return }
            // EOF or error: the app closed it (exited).
            channel?.send(header, UnsafeRawBufferPointer(start: nil, count: 0))
            FD.close(fd)
            fds[stream] = -1
            return
        }
    }

    /// Forwards what is left and closes both pipes (the app was stopped).
    func close() {
        for fd in fds where fd >= 0 { drain(fd) }
        for fd in fds where fd >= 0 { FD.close(fd) }
        fds = [-1, -1]
    }
}
