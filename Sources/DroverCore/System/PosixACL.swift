import CDroverSys
import Glibc

/// A POSIX access ACL (listen.acl_users, listen.acl_groups), written
/// straight as the `system.posix_acl_access` extended attribute in the
/// kernel's format (linux/posix_acl_xattr.h): php-fpm links libacl for
/// this, Drover needs one setxattr(2).
///
/// The ACL is php-fpm's: the file's permission bits give the owner, group
/// and other entries, each named user and group gets read and write, and
/// the mask is the union of the group class (what acl_calc_mask does), so
/// no named entry is masked away.
public struct PosixACL: Equatable, Sendable {
    /// Entry tags (ACL_USER_OBJ...), in the order the kernel requires.
    public enum Tag: UInt16, Sendable {
        case userObj = 0x01, user = 0x02, groupObj = 0x04, group = 0x08, mask = 0x10, other = 0x20
    }

    public struct Entry: Equatable, Sendable {
        public var tag: Tag
        /// rwx bits: 4 read, 2 write, 1 execute.
        public var permissions: UInt16
        /// A uid or gid for `.user` and `.group`; `undefinedID` otherwise.
        public var id: UInt32
    }

    public static let attributeName = "system.posix_acl_access"
    /// ACL_UNDEFINED_ID: the id of entries that name no one.
    public static let undefinedID = UInt32.max
    static let version: UInt32 = 2

    public private(set) var entries: [Entry]

    /// The ACL of a file with permission bits `mode` whose `users` and
    /// `groups` also get read and write. Ids are sorted and repeats
    /// dropped: the kernel wants each tag's entries together, and getfacl
    /// lists them by id.
    public init(mode: UInt32, users: [uid_t], groups: [gid_t]) {
        let readWrite: UInt16 = 4 | 2
        let owner = UInt16((mode >> 6) & 7), group = UInt16((mode >> 3) & 7), other = UInt16(mode & 7)
        let named = Set(users).sorted().map { Entry(tag: .user, permissions: readWrite, id: $0) }
            + Set(groups).sorted().map { Entry(tag: .group, permissions: readWrite, id: $0) }
        let mask = named.reduce(group) { $0 | $1.permissions }
        entries = [Entry(tag: .userObj, permissions: owner, id: Self.undefinedID)]
            + named.filter { $0.tag == .user }
            + [Entry(tag: .groupObj, permissions: group, id: Self.undefinedID)]
            + named.filter { $0.tag == .group }
            + [Entry(tag: .mask, permissions: mask, id: Self.undefinedID),
               Entry(tag: .other, permissions: other, id: Self.undefinedID)]
    }

    /// The attribute's value: a 4-byte version header, then 8 bytes per
    /// entry (tag and permissions as 16 bits, the id as 32), little-endian.
    public var xattrValue: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + 8 * entries.count)
        func append<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
        }
        append(Self.version)
        for entry in entries {
            append(entry.tag.rawValue)
            append(entry.permissions)
            append(entry.id)
        }
        return bytes
    }

    /// Sets the ACL on `path`. The kernel also rewrites the group bits of
    /// the file's mode to the mask, as setfacl would.
    public func apply(to path: String) throws {
        let value = xattrValue
        let rc = value.withUnsafeBytes { setxattr(path, Self.attributeName, $0.baseAddress, $0.count, 0) }
        if rc != 0 {
            let code = errno
            let hint = code == EOPNOTSUPP ? " (the file system does not support POSIX ACLs)" : ""
            throw SystemError("setxattr(\(path), \(Self.attributeName))\(hint)", errno: code)
        }
    }
}
