import Glibc

/// The private directory of the apps' sockets: mode 0711 (enter, not list),
/// with one 0700 subdirectory per pool (`p<record>`) owned by that pool's
/// user, so no other user can connect to an app. The master makes it; the
/// master, or the agent when the master died, removes it.
public enum AppSocketDirectory {
    /// A fresh directory under $TMPDIR (or /tmp).
    public static func make() throws -> String {
        let tmp = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(tmp)/drover.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemError("mkdtemp(\(tmp))") }
        let path = String(cString: made)
        if chmod(path, 0o711) != 0 { throw SystemError("chmod(\(path))") }
        return path
    }

    public static func makePool(base: String, poolIndex: Int, owner: Account?) throws -> String {
        let path = "\(base)/p\(poolIndex)"
        if mkdir(path, 0o700) != 0 && errno != EEXIST { throw SystemError("mkdir(\(path))") }
        if let owner, chown(path, owner.uid, owner.gid) != 0 { throw SystemError("chown(\(path))") }
        return path
    }

    /// Removes the socket directory tree (sockets, pool folders, base).
    public static func remove(_ base: String) {
        for name in entries(of: base) where name.hasPrefix("p") {
            removePool("\(base)/\(name)")
        }
        rmdir(base)
    }

    /// Removes one pool's socket folder (a pool a reload dropped, once its
    /// last worker is gone).
    public static func removePool(_ path: String) {
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
