import CDroverSys
import Foundation
import XCTest

@testable import DroverCore

/// The ACL listen.acl_users/acl_groups write, and its xattr encoding.
final class PosixACLTests: XCTestCase {
    func testEntriesFollowPHPFPM() {
        // Mode 0640: owner rw, group r, other none; two users (one twice,
        // out of order) and one group get rw; the mask covers the group class.
        let acl = PosixACL(mode: 0o640, users: [1002, 33, 1002], groups: [7])
        let undefined = PosixACL.undefinedID
        XCTAssertEqual(acl.entries, [
            .init(tag: .userObj, permissions: 6, id: undefined),
            .init(tag: .user, permissions: 6, id: 33),
            .init(tag: .user, permissions: 6, id: 1002),
            .init(tag: .groupObj, permissions: 4, id: undefined),
            .init(tag: .group, permissions: 6, id: 7),
            .init(tag: .mask, permissions: 6, id: undefined),
            .init(tag: .other, permissions: 0, id: undefined),
        ])
    }

    func testXattrEncoding() {
        let acl = PosixACL(mode: 0o600, users: [0x0102_0304], groups: [])
        XCTAssertEqual(acl.xattrValue, [
            2, 0, 0, 0,                                     // version 2, little-endian
            0x01, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,          // user::rw-
            0x02, 0, 6, 0, 0x04, 0x03, 0x02, 0x01,          // user:0x01020304:rw-
            0x04, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,          // group::---
            0x10, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,          // mask::rw-
            0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff,          // other::---
        ])
    }

    /// The kernel accepts the attribute, reads back the same bytes, and
    /// sets the file's group bits to the mask.
    func testApplyToAFile() throws {
        let path = NSTemporaryDirectory() + "drover-acl-\(getpid())"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        defer { unlink(path) }
        chmod(path, 0o600)
        let acl = PosixACL(mode: 0o600, users: [getuid() == 0 ? 65534 : getuid() + 1], groups: [12345])
        do {
            try acl.apply(to: path)
        } catch let error as SystemError where error.errno == EOPNOTSUPP {
            throw XCTSkip("no POSIX ACLs on \(NSTemporaryDirectory()): \(error)")
        }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = getxattr(path, PosixACL.attributeName, &buffer, buffer.count)
        XCTAssertEqual(Array(buffer.prefix(max(n, 0))), acl.xattrValue)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o660)
        XCTAssertThrowsError(try acl.apply(to: path + ".missing"))
    }
}
