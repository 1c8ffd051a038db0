import DroverCore
import Glibc

/// Files the master keeps while it runs: the pid file and the private
/// directory for the apps' sockets.
enum Runtime {
    static func writePidFile(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 { throw SystemError("open(\(path))") }
        defer { FD.close(fd) }
        if !FD.writeAll(fd, "\(getpid())\n") { throw SystemError("write(\(path))") }
    }

    /// A fresh directory for the apps' sockets: mode 0711 (enter, not list),
    /// with one 0700 subdirectory per pool owned by that pool's user, so no
    /// other user can connect to an app.
    static func makeAppSocketDirectory() throws -> String {
        let tmp = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(tmp)/drover.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp(\(tmp))") }
        let path = String(cString: made)
        if chmod(path, 0o711) != 0 { throw SystemError("chmod(\(path))") }
        return path
    }

    static func makePoolSocketDirectory(base: String, poolIndex: Int, owner: Account?) throws -> String {
        let path = "\(base)/p\(poolIndex)"
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("mkdir(\(path))") }
        if let owner, chown(path, owner.uid, owner.gid) != 0 { throw SystemError("chown(\(path))") }
        return path
    }

    /// Removes the socket directory tree (sockets, pool folders, base).
    static func removeAppSocketDirectory(_ base: String) {
        for name in entries(of: base) where name.hasPrefix("p") {
            removePoolSocketDirectory("\(base)/\(name)")
        }
        rmdir(base)
    }

    /// Removes one pool's socket folder (a pool a reload dropped, once its
    /// last worker is gone).
    static func removePoolSocketDirectory(_ path: String) {
        for name in entries(of: path) where name.hasSuffix(".sock") { unlink("\(path)/\(name)") }
        rmdir(path)
    }

    private static func entries(of path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            names.append(withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            })
        }
        return names
    }
}
