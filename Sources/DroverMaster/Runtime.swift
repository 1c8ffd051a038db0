import DroverCore
import Glibc

/// The pid file the master keeps while it runs (the apps' socket
/// directory is AppSocketDirectory, in DroverCore).
enum Runtime {
    static func writePidFile(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw SystemError("open(\(path))") }
        defer { FD.close(fd) }
        if !FD.writeAll(fd, "\(getpid())\n") { throw SystemError("write(\(path))") }
    }
}
