"""Privileges, with real processes: the pool's user, groups, limits,
priority and dumpable flag on both the worker and its app; chroot;
listen.acl_users / listen.acl_groups; the app's private socket under the
pool's user; listen.allowed_clients over IPv4 and IPv6.

Most of these need root (they are skipped otherwise): they create two
system accounts and a group, idempotently, and leave them for the next run.
"""

import grp
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import (APPS, DROVER_BIN, FCGI_BEGIN_REQUEST, FCGI_RESPONDER, IS_ROOT, TIMEOUT, connect_unix_as,
                      fcgi_record, fcgi_request, free_port, ipv6_available, pool_section, status_full,
                      unix_socket_path_of_fd, wait_for)

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root")

POOL_USER = "drovertest"          # the pools' user; member of EXTRA_GROUP
EXTRA_GROUP = "drovertest-extra"  # a supplementary group
WEB_USER = "droverweb"            # plays the web server in the ACL test

CAP_SYS_CHROOT = 18


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def _exists(lookup, name):
    try:
        lookup(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def accounts():
    """The test accounts, created when missing (and then kept)."""
    def run(*cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"
    system = ["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
              "--shell", "/usr/sbin/nologin"]
    if not _exists(grp.getgrnam, EXTRA_GROUP):
        run("groupadd", "--system", EXTRA_GROUP)
    if not _exists(pwd.getpwnam, POOL_USER):
        run("useradd", *system, "--groups", EXTRA_GROUP, POOL_USER)
    elif POOL_USER not in grp.getgrnam(EXTRA_GROUP).gr_mem:
        run("usermod", "--append", "--groups", EXTRA_GROUP, POOL_USER)
    if not _exists(pwd.getpwnam, WEB_USER):
        run("useradd", *system, WEB_USER)
    return SimpleNamespace(pool=pwd.getpwnam(POOL_USER), web=pwd.getpwnam(WEB_USER),
                           extra=grp.getgrnam(EXTRA_GROUP), nobody=pwd.getpwnam("nobody"))


def proc_status(pid):
    """/proc/PID/status as {key: [fields]}."""
    with open(f"/proc/{pid}/status") as f:
        return {k: v.split() for k, _, v in (line.partition(":") for line in f)}


def proc_limit(pid, name):
    """(soft, hard) of one row of /proc/PID/limits, e.g. 'Max open files'."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith(name):
                soft, hard = line[len(name):].split()[:2]
                return soft, hard
    raise AssertionError(f"no '{name}' in /proc/{pid}/limits")


def nice_of(pid):
    return int(subprocess.run(["ps", "-o", "ni=", "-p", str(pid)], capture_output=True, text=True,
                              check=True).stdout)


def capabilities(pid):
    """(permitted, effective) capability masks of `pid`."""
    status = proc_status(pid)
    return int(status["CapPrm"][0], 16), int(status["CapEff"][0], 16)


def without_mode_0666(section):
    """pool_section makes sockets world-writable; these tests set their own mode."""
    return section.replace("listen.mode = 0666\n", "")


@pytest.fixture(scope="module")
def whereami(tmp_path_factory):
    """apps/whereami.c linked statically, so that it runs in an empty chroot."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not any(Path(d, "libfcgi.a").exists() for d in ("/usr/lib/x86_64-linux-gnu",
                                                                       "/usr/lib/aarch64-linux-gnu", "/usr/lib")):
        pytest.skip("needs a C compiler and libfcgi-dev (libfcgi.a)")
    out = tmp_path_factory.mktemp("whereami") / "whereami"
    r = subprocess.run([cc, "-static", "-O2", "-o", str(out), str(APPS / "whereami.c"), "-lfcgi"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot link whereami statically: {r.stderr[-500:]}")
    return out


def make_jail(workdir, whereami, name="jail"):
    """A chroot with only whereami (at /usr/bin), /srv and a marker file."""
    jail = Path(workdir) / name
    (jail / "usr" / "bin").mkdir(parents=True)
    (jail / "srv").mkdir()
    shutil.copy2(whereami, jail / "usr" / "bin" / "whereami")
    (jail / "inside-the-jail").write_text("")
    os.chmod(jail, 0o755)
    return jail


# ---------------------------------------------------------------------------
# user, groups, limits, priority, dumpable
# ---------------------------------------------------------------------------

@needs_root
def test_user_groups_limits_priority_and_dumpable_apply_to_worker_and_app(drover_factory, workdir, accounts):
    d = drover_factory()
    socks = {"dump": d.sock("dump"), "nodump": d.sock("nodump")}
    settings = f"""
        user = {POOL_USER}
        group = {POOL_USER}
        rlimit_files = 1234
        rlimit_core = 1048576
        process.priority = 7
    """
    d.write_config([
        pool_section("dump", socks["dump"], max_children=1, extra=settings + "process.dumpable = yes\n"),
        pool_section("nodump", socks["nodump"], max_children=1, extra=settings),
    ])
    d.start(statuses=[(socks["dump"], 1), (socks["nodump"], 1)])
    user = accounts.pool
    for pool, sock in socks.items():
        row = status_full(sock)["processes"][0]
        worker, app = row["pid"], row["app pid"]
        for role, pid in (("worker", worker), ("app", app)):
            what = f"{pool} {role} {pid}"
            status = proc_status(pid)
            assert status["Uid"] == [str(user.pw_uid)] * 4, what
            assert status["Gid"] == [str(user.pw_gid)] * 4, what
            # initgroups: the user's supplementary groups, nothing of root's.
            assert set(map(int, status["Groups"])) == {user.pw_gid, accounts.extra.gr_gid}, what
            assert proc_limit(pid, "Max open files") == ("1234", "1234"), what
            assert proc_limit(pid, "Max core file size") == ("1048576", "1048576"), what
            assert nice_of(pid) == 7, what
            assert capabilities(pid) == (0, 0), what
        # PR_SET_DUMPABLE shows in the owner of /proc/PID/environ: the
        # process's user when dumpable, root when not (setuid clears the
        # flag; process.dumpable sets it again).
        worker_owner = os.stat(f"/proc/{worker}/environ").st_uid
        assert worker_owner == (user.pw_uid if pool == "dump" else 0), pool
        # The app is dumpable either way: execve(2) by a non-setuid user
        # makes it so, whatever the worker was (docs/architecture.md).
        assert os.stat(f"/proc/{app}/environ").st_uid == user.pw_uid, pool
        assert fcgi_request(sock, "/ping").text == "pong\n"


# ---------------------------------------------------------------------------
# chroot
# ---------------------------------------------------------------------------

@needs_root
def test_chroot_confines_the_app_not_the_worker(drover_factory, workdir, accounts, whereami):
    assert shutil.which("whereami") is None, "the program must exist only inside the chroot"
    jail = make_jail(workdir, whereami)
    d = drover_factory()
    sock = d.sock("jail")
    d.write_config([pool_section("jail", sock, max_children=2, command="whereami", extra=f"""
        user = {POOL_USER}
        group = {POOL_USER}
        chroot = {jail}
        chdir = /srv
    """)])
    r = subprocess.run([DROVER_BIN, "-t", "-y", str(d.conf)], capture_output=True, text=True)
    assert r.returncode == 0 and "not implemented" not in r.stderr, r.stderr
    d.start(statuses=[(sock, 2)])

    # The program was found on PATH inside the chroot and runs there.
    text = fcgi_request(sock, "/x").text
    assert text == f"cwd=/srv marker=yes uid={accounts.pool.pw_uid}\n", text
    for row in status_full(sock)["processes"]:
        worker, app = row["pid"], row["app pid"]
        assert os.readlink(f"/proc/{app}/root") == str(jail)
        assert os.readlink(f"/proc/{app}/cwd") == str(jail / "srv")
        assert os.readlink(f"/proc/{worker}/root") == "/"
        # The worker keeps CAP_SYS_CHROOT alone, to start its app; the app
        # has no capability at all.
        assert capabilities(worker) == (1 << CAP_SYS_CHROOT, 1 << CAP_SYS_CHROOT)
        assert capabilities(app) == (0, 0)
        for pid in (worker, app):
            assert proc_status(pid)["Uid"] == [str(accounts.pool.pw_uid)] * 4

    # A replaced app is chrooted too (the worker restarts it on its own).
    old_app = status_full(sock)["processes"][0]["app pid"]
    os.kill(old_app, 9)
    def replaced():
        rows = status_full(sock)["processes"]
        return all(r["app pid"] and r["app pid"] != old_app for r in rows) and rows
    for row in wait_for(replaced, what="a new app"):
        assert os.readlink(f"/proc/{row['app pid']}/root") == str(jail)
    assert "marker=yes" in fcgi_request(sock, "/x").text


@needs_root
def test_chroot_failures_are_logged_clearly(drover_factory, workdir, accounts, whereami):
    locked = make_jail(workdir, whereami, "locked")
    os.chmod(locked, 0o700)                 # root's: the pool's user cannot enter it
    empty = Path(workdir) / "empty"
    empty.mkdir(mode=0o755)
    d = drover_factory()
    pools = []
    for name, jail in (("locked", locked), ("empty", empty)):
        pools.append(pool_section(name, d.sock(name), max_children=1, command="whereami", extra=f"""
            user = {POOL_USER}
            chroot = {jail}
        """))
    d.write_config(pools)
    d.start()
    wait_for(lambda: f"chroot({locked}) for the app: Permission denied (13)" in d.log_text(),
             what="the chroot error line")
    wait_for(lambda: f"execve(whereami) inside the chroot {empty}: No such file or directory (2)" in d.log_text(),
             what="the missing-program error line")
    assert "[pool locked] worker " in d.log_text()
    # The master backs off from the failing pools instead of spinning.
    wait_for(lambda: "[pool locked] child" in d.log_text() and "back-off" in d.log_text(),
             what="the back-off line")
    assert d.proc.poll() is None


# ---------------------------------------------------------------------------
# listen.acl_users, listen.acl_groups
# ---------------------------------------------------------------------------

def getfacl(path):
    out = subprocess.run(["getfacl", "--omit-header", "--numeric", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {line for line in out.splitlines() if line and not line.startswith("#")}


@needs_root
@pytest.mark.skipif(shutil.which("getfacl") is None, reason="needs getfacl (Debian package acl)")
def test_listen_acl_users_and_groups(drover_factory, workdir, accounts):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([without_mode_0666(pool_section("www", sock, max_children=1, extra=f"""
        user = {POOL_USER}
        group = {POOL_USER}
        listen.owner = nobody
        listen.acl_users = {WEB_USER}
        listen.acl_groups = {EXTRA_GROUP}
    """))])
    r = subprocess.run([DROVER_BIN, "-t", "-y", str(d.conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "listen.owner: ACL set, listen.owner = 'nobody' is ignored" in r.stderr, r.stderr
    d.start(statuses=[(sock, 1)])

    # php-fpm's result: no chown (the master's owner and group), listen.mode
    # (default 0660) and one rw entry per user and group.
    st = os.stat(sock)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o660)
    assert getfacl(sock) == {
        "user::rw-", f"user:{accounts.web.pw_uid}:rw-", "group::rw-", f"group:{accounts.extra.gr_gid}:rw-",
        "mask::rw-", "other::---",
    }
    nobody = accounts.nobody
    assert connect_unix_as(sock, accounts.web) == "connected"
    assert connect_unix_as(sock, nobody) == "denied"
    assert connect_unix_as(sock, nobody, groups=[accounts.extra.gr_gid]) == "connected"
    assert fcgi_request(sock, "/ping").text == "pong\n"


@needs_root
def test_listen_acl_unknown_name_is_a_configuration_error(drover_factory, workdir, accounts):
    d = drover_factory()
    conf = d.write_config([pool_section("www", d.sock("www"), max_children=1, extra=f"""
        user = {POOL_USER}
        listen.acl_users = {WEB_USER}, no-such-user-drover
        listen.acl_groups = no-such-group-drover
    """)])
    lines = conf.read_text().splitlines()
    users_line = next(i for i, l in enumerate(lines, 1) if l.startswith("listen.acl_users"))
    r = subprocess.run([DROVER_BIN, "-t", "-y", str(conf)], capture_output=True, text=True)
    assert r.returncode == 78, r.stderr
    assert f"{conf}:{users_line}: listen.acl_users: [pool www] cannot get uid for user 'no-such-user-drover'" in r.stderr
    assert f"{conf}:{users_line + 1}: listen.acl_groups: [pool www] cannot get gid for group 'no-such-group-drover'" \
        in r.stderr
    assert f"'{WEB_USER}'" not in r.stderr
    d.start(wait_ready=False)
    assert d.wait_exit() == 78
    assert "cannot get uid for user 'no-such-user-drover'" in d.log_text()


# ---------------------------------------------------------------------------
# the app's private socket under the pool's user
# ---------------------------------------------------------------------------

@needs_root
def test_other_users_cannot_reach_the_pool_users_app(drover_factory, workdir, accounts):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=1, extra=f"""
        user = {POOL_USER}
        group = {POOL_USER}
    """)])
    d.start(statuses=[(sock, 1)])
    app = status_full(sock)["processes"][0]["app pid"]
    path = unix_socket_path_of_fd(app, 0)
    directory = os.stat(os.path.dirname(path))
    assert (directory.st_uid, stat.S_IMODE(directory.st_mode)) == (accounts.pool.pw_uid, 0o700)
    for other in (accounts.nobody, accounts.web):
        assert connect_unix_as(path, other) == "denied", other.pw_name
        assert connect_unix_as(sock, other) == "connected", other.pw_name     # the pool socket is 0666 here
    # The pool's own user (the worker) does reach it: requests are served.
    assert fcgi_request(sock, "/ping").text == "pong\n"


# ---------------------------------------------------------------------------
# listen.allowed_clients over IPv6 (IPv4 ranges: test_protocol.py)
# ---------------------------------------------------------------------------

def _dropped(port, family, host):
    """Sends a request; True when the connection is closed without an answer."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect((host, port))
        s.sendall(fcgi_record(FCGI_BEGIN_REQUEST, 1, struct.pack(">HB5x", FCGI_RESPONDER, 0)))
        try:
            return s.recv(100) == b""
        except ConnectionResetError:
            return True   # closed with our request unread: the kernel sends RST


@pytest.mark.skipif(not ipv6_available(), reason="needs IPv6 (::1)")
def test_allowed_clients_with_ipv6_ranges(drover_factory, workdir):
    d = drover_factory()
    v6_open, v6_closed, dual = free_port(socket.AF_INET6, "::1"), free_port(socket.AF_INET6, "::1"), free_port()
    d.write_config([
        pool_section("v6open", f"[::1]:{v6_open}", max_children=1,
                     extra="listen.allowed_clients = 2001:db8::/32, ::1/128"),
        pool_section("v6closed", f"[::1]:{v6_closed}", max_children=1,
                     extra="listen.allowed_clients = 2001:db8::/32, 127.0.0.1"),
        # Every address, both families: IPv4 clients arrive as ::ffff:a.b.c.d
        # and still match IPv4 ranges.
        pool_section("dual", str(dual), max_children=1, extra="listen.allowed_clients = 127.0.0.0/8"),
    ])
    d.start(sockets=[])
    wait_for(lambda: d.log_text().count("started") >= 3, what="workers")
    assert fcgi_request(f"[::1]:{v6_open}", "/ping").text == "pong\n"
    assert _dropped(v6_closed, socket.AF_INET6, "::1")
    assert fcgi_request(f"127.0.0.1:{dual}", "/ping").text == "pong\n"
    assert _dropped(dual, socket.AF_INET6, "::1")
    wait_for(lambda: d.log_text().count("Connection disallowed: IP address '::1' has been dropped.") >= 2,
             what="the disallowed-client log lines")
    assert "'127.0.0.1' has been dropped" not in d.log_text()
