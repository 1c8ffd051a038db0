import CDroverSys
import DroverCore
import Glibc

/// php-fpm's `daemonize = yes`: the foreground process waits until the
/// daemon reports that it serves (or failed), so that the exit status of
/// `drover` tells an init script the truth.
enum Daemon {
    /// Forks. In the parent this never returns: it exits with the status the
    /// daemon reports. In the daemon it returns the fd to report on.
    static func detach() throws -> Int32 {
        let (readEnd, writeEnd) = try FD.pipe()
        let pid = drover_fork_child(0)
        if pid < 0 { throw SystemError("fork()") }
        if pid > 0 {
            FD.close(writeEnd)
            var status: UInt8 = 78
            let n = read(readEnd, &status, 1)
            exit(n == 1 ? Int32(status) : 78)
        }
        FD.close(readEnd)
        setsid()
        let devnull = open("/dev/null", O_RDWR)
        if devnull >= 0 {
            dup2(devnull, STDIN_FILENO)
            dup2(devnull, STDOUT_FILENO)
            if devnull > 2 { FD.close(devnull) }
        }
        return writeEnd
    }

    /// Tells the waiting parent how start-up went, then forgets the pipe.
    static func report(_ fd: Int32, status: UInt8) {
        var s = status
        _ = write(fd, &s, 1)
        FD.close(fd)
    }

    /// After start-up, a daemon whose error log is a file has no use for the
    /// terminal's stderr.
    static func detachStderr() {
        let devnull = open("/dev/null", O_RDWR)
        if devnull >= 0 {
            dup2(devnull, STDERR_FILENO)
            if devnull > 2 { FD.close(devnull) }
        }
    }
}
