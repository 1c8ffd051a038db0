import Glibc

/// The system's user and group database (getpwnam_r, getgrnam_r: NSS), for
/// the directives that name accounts. It lives here so that validation can
/// report an unknown name with its file and line (`drover -t`); DroverCore's
/// `Users` gives the rest of Drover the same lookups.
public enum SystemAccounts {
    /// A user's passwd entry.
    public struct User: Sendable, Equatable {
        public var name: String
        public var uid: uid_t
        public var gid: gid_t
        public var home: String
    }

    /// Looks up a user by name or numeric id.
    public static func user(_ nameOrID: String) -> User? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16384)
        let rc: Int32
        if let id = UInt32(nameOrID) {
            rc = getpwuid_r(id, &pwd, &buffer, buffer.count, &result)
        } else {
            rc = getpwnam_r(nameOrID, &pwd, &buffer, buffer.count, &result)
        }
        guard rc == 0, let p = result?.pointee else { return nil }
        return User(name: String(cString: p.pw_name), uid: p.pw_uid, gid: p.pw_gid, home: String(cString: p.pw_dir))
    }

    /// Looks up a group id by name; a numeric id is taken as it is.
    public static func groupID(_ nameOrID: String) -> gid_t? {
        if let id = UInt32(nameOrID) { return id }
        var grp = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16384)
        guard getgrnam_r(nameOrID, &grp, &buffer, buffer.count, &result) == 0, let g = result?.pointee else {
            return nil
        }
        return g.gr_gid
    }
}
