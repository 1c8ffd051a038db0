import DroverConfig
import DroverCore
import Glibc

/// Opens a pool's listening sockets (design §3: the master owns them; the
/// workers inherit them and accept).
enum Listeners {
    struct Opened {
        var fd: Int32
        var address: ListenAddress
        /// Passed by systemd (socket activation): never unlinked by Drover.
        var inherited = false
    }

    /// Opens every `listen` address of `pool`; Unix sockets get
    /// listen.owner/group/mode (php-fpm's default mode 0660; owner and group
    /// default to the pool's user when the master runs as root), or
    /// listen.mode and an ACL (listen.acl_users/acl_groups).
    /// `inherited` (listen index → fd): sockets from systemd, used as they are.
    static func open(_ pool: PoolConfig, runAs: Account?, inherited: [Int: Int32] = [:]) throws -> [Opened] {
        var opened: [Opened] = []
        do {
            for (index, address) in pool.listen.enumerated() {
                if let fd = inherited[index] {
                    // Already non-blocking and close-on-exec (Systemd.inheritedSockets);
                    // owner and mode are systemd's (SocketUser=, SocketMode=).
                    opened.append(Opened(fd: fd, address: address, inherited: true))
                    continue
                }
                let fd = try Sockets.listen(address, backlog: Int32(clamping: pool.listenBacklog))
                opened.append(Opened(fd: fd, address: address))
                // Non-blocking: workers accept only after epoll says so, and
                // two may be woken for one connection; the loser must get
                // EAGAIN, not sleep in accept(2). (Sleeping in accept(2) with
                // a receive timeout saved a syscall per request but no
                // measurable CPU, and woke idle workers 50 times a second:
                // docs/performance.md.)
                try FD.setNonBlocking(fd)
                if case .unix(let path) = address {
                    try applyOwnership(path, pool: pool, runAs: runAs)
                }
            }
        } catch {
            close(opened)
            throw error
        }
        return opened
    }

    private static func applyOwnership(_ path: String, pool: PoolConfig, runAs: Account?) throws {
        let mode = mode_t(pool.listenMode ?? 0o660)
        if pool.hasListenAcl {
            // As php-fpm: no chown (the socket stays the master's), the
            // mode, then the ACL, which names who else may connect.
            if chmod(path, mode) != 0 { throw SystemError("chmod(\(path))") }
            try listenAcl(pool, mode: mode).apply(to: path)
            return
        }
        var uid: uid_t = UInt32.max     // (uid_t)-1: leave unchanged
        var gid: gid_t = UInt32.max
        if let owner = pool.listenOwner {
            guard let account = Users.user(owner) else { throw SystemError("listen.owner: no user '\(owner)'", errno: EINVAL) }
            uid = account.uid
        } else if let runAs {
            uid = runAs.uid
        }
        if let group = pool.listenGroup {
            guard let id = Users.groupID(group) else { throw SystemError("listen.group: no group '\(group)'", errno: EINVAL) }
            gid = id
        } else if let runAs {
            gid = runAs.gid
        }
        if uid != UInt32.max || gid != UInt32.max {
            if chown(path, uid, gid) != 0 { throw SystemError("chown(\(path))") }
        }
        if chmod(path, mode) != 0 { throw SystemError("chmod(\(path))") }
    }

    /// listen.acl_users and listen.acl_groups resolved (names, or numeric
    /// ids taken as they are) into the socket's ACL.
    private static func listenAcl(_ pool: PoolConfig, mode: mode_t) throws -> PosixACL {
        let users = try pool.listenAclUserNames.map { name in
            guard let uid = UInt32(name) ?? Users.user(name)?.uid else {
                throw SystemError("listen.acl_users: cannot get uid for user '\(name)'", errno: EINVAL)
            }
            return uid
        }
        let groups = try pool.listenAclGroupNames.map { name in
            guard let gid = Users.groupID(name) else {
                throw SystemError("listen.acl_groups: cannot get gid for group '\(name)'", errno: EINVAL)
            }
            return gid
        }
        return PosixACL(mode: UInt32(mode), users: users, groups: groups)
    }

    static func close(_ sockets: [Opened]) {
        for socket in sockets { FD.close(socket.fd) }
    }

    /// Removes the socket files of Unix listeners (on stop; never for
    /// sockets Drover did not create, such as those systemd passed).
    static func unlinkPaths(_ sockets: [Opened]) {
        for socket in sockets where !socket.inherited {
            if case .unix(let path) = socket.address { unlink(path) }
        }
    }
}
