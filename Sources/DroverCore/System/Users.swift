import DroverConfig
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
        SystemAccounts.user(nameOrID).map { Account(name: $0.name, uid: $0.uid, gid: $0.gid, home: $0.home) }
    }

    /// Looks up a group id by name or numeric id.
    public static func groupID(_ nameOrID: String) -> gid_t? { SystemAccounts.groupID(nameOrID) }

    public static var isRoot: Bool { geteuid() == 0 }
}
