import Glibc

/// A resolved user or group from the system database.
public struct Account: Sendable, Equatable {
    public var name: String
    public var uid: uid_t
    public var gid: gid_t
    public var home: String
}

public enum Users {
    /// Looks up a user by name or numeric id.
    public static func user(_ nameOrID: String) -> Account? {
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
        return Account(name: String(cString: p.pw_name), uid: p.pw_uid, gid: p.pw_gid,
                       home: String(cString: p.pw_dir))
    }

    /// Looks up a group id by name or numeric id.
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

    public static var isRoot: Bool { geteuid() == 0 }
}
