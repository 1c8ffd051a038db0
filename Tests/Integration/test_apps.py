"""Apps other than php-cgi, the app's environment and php settings, and the
privacy of the app's own socket."""

import os
import pwd
import stat
import time
import subprocess

import pytest

from conftest import (IS_ROOT, PERL_BIN, PHP_LIMITS, app_pids, connect_unix_as, fcgi_request, pool_section,
                      status_full, unix_socket_path_of_fd)


def start_perl_pool(drover_factory, workdir, max_children):
    """Starts a pool of apps/app.pl (Perl's FCGI, from Debian's
    libfcgi-perl) and returns its socket; skips the test without FCGI."""
    probe = subprocess.run([PERL_BIN, "-MFCGI", "-e", "1"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("perl FCGI module (libfcgi-perl) is not installed")
    d = drover_factory()
    sock = d.sock("perl")
    app = workdir / "www" / "app.pl"
    d.write_config([pool_section("perl", sock, max_children=max_children, command=f"{PERL_BIN} {app}")])
    d.start(statuses=[(sock, max_children)])
    return sock


def test_perl_fcgi_app(drover_factory, workdir):
    sock = start_perl_pool(drover_factory, workdir, 2)
    apps = app_pids(sock)
    for pid in apps:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"app.pl" in f.read()

    bodies = []
    for _ in range(6):
        r = fcgi_request(sock, "/anything")
        assert r.status == 200, r
        assert r.headers["content-type"] == "text/plain"
        assert r.text.startswith("hello from perl\n"), r
        bodies.append(r.text)
    # The apps stay up between requests (the worker keeps its connection
    # or reconnects; it does not restart the app per request).
    assert app_pids(sock) == apps
    served_by = {line.split()[-1] for body in bodies for line in body.splitlines()
                 if line.startswith("request ")}
    assert served_by <= {str(p) for p in apps}, (served_by, apps)


def test_env_clear_env_and_php_values(drover_factory, workdir):
    d = drover_factory()
    clear, keep = d.sock("clear"), d.sock("keep")
    d.write_config([
        pool_section("clear", clear, max_children=1, extra="""
            clear_env = yes
            env[FOO] = bar baz
            env[POOL_NAME] = $pool
            php_value[precision] = 7
            php_admin_value[memory_limit] = 77M
        """),
        pool_section("keep", keep, max_children=1, extra="""
            clear_env = no
            env[FOO] = from-config
            php_flag[display_errors] = off
            php_admin_value[post_max_size] = 3M
        """),
    ])
    d.start(statuses=[(clear, 1), (keep, 1)])
    script = str(workdir / "www" / "env.php")

    r = fcgi_request(clear, script)
    assert r.status == 200, r
    lines = dict(line.split("=", 1) for line in r.text.splitlines())
    assert lines["FOO"] == "bar baz"
    assert lines["POOL"] == "clear"
    assert lines["OUTER"] == "(unset)", "clear_env = yes must hide the master's environment"
    assert lines["precision"] == "7"
    assert lines["memory_limit"] == "77M"

    r = fcgi_request(keep, script)
    assert r.status == 200, r
    lines = dict(line.split("=", 1) for line in r.text.splitlines())
    assert lines["FOO"] == "from-config"
    assert lines["OUTER"] == "outer-environment", "clear_env = no must pass the environment on"
    assert lines["post_max_size"] == "3M"
    assert lines["precision"] != "7"

    # php_admin_value cannot be overridden by the script (ini_set fails)
    # and the values are on php-cgi's command line as -d name=value.
    cmdline = open(f"/proc/{app_pids(clear)[0]}/cmdline", "rb").read().split(b"\0")
    assert b"memory_limit=77M" in cmdline and b"precision=7" in cmdline, cmdline


def test_scheduling_policy_of_workers_and_apps(drover_factory, workdir):
    """process.sched_policy: SCHED_BATCH unless the pool says otherwise,
    for the worker and the app it starts; the master is left alone."""
    d = drover_factory()
    pools = {"dflt": None, "other": "other", "idle": "idle"}
    expected = {"dflt": os.SCHED_BATCH, "other": os.SCHED_OTHER, "idle": os.SCHED_IDLE}
    d.write_config([pool_section(name, d.sock(name), max_children=1,
                                 extra=PHP_LIMITS + (f"process.sched_policy = {policy}\n" if policy else ""))
                    for name, policy in pools.items()])
    d.start(statuses=[(d.sock(name), 1) for name in pools])
    assert os.sched_getscheduler(d.pid) == os.sched_getscheduler(0)
    for name in pools:
        [row] = status_full(d.sock(name))["processes"]
        for pid in (row["pid"], row["app pid"]):
            assert os.sched_getscheduler(pid) == expected[name], (name, pid)
        r = fcgi_request(d.sock(name), str(workdir / "www" / "hello.php"))
        assert r.status == 200, r


def test_app_socket_directory_is_private(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 2)])
    rows = status_full(sock)["processes"]
    paths = []
    for row in rows:
        path = unix_socket_path_of_fd(row["app pid"], 0)
        paths.append(path)
        assert path != sock
        directory = os.path.dirname(path)
        st = os.stat(directory)
        assert stat.S_IMODE(st.st_mode) == 0o700, f"{directory} has mode {oct(st.st_mode)}"
        assert st.st_uid == os.geteuid()
        base = os.stat(os.path.dirname(directory))
        assert stat.S_IMODE(base.st_mode) & 0o004 == 0, "others must not list the socket base directory"
    assert len(set(paths)) == 2, "each app has its own socket"

    if IS_ROOT:
        # Another user cannot reach the app, although it can reach the pool.
        for path, expected in ((paths[0], "denied"), (sock, "connected")):
            assert connect_unix_as(path, pwd.getpwnam("nobody")) == expected, path

    # The directory goes away with Drover.
    d.stop()
    for path in paths:
        assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(os.path.dirname(paths[0])))


def app_connection_inodes(pid):
    """Socket inodes the app holds besides its listening socket (fd 0)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if fd in ("0", "1", "2"):
            continue
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            inodes.add(target)
    return inodes


def test_kept_app_connection_survives_an_idle_start(drover_factory, workdir):
    """libfcgi (here in Perl's FCGI) drops a Unix connection that sends
    nothing within 2 s of its accept. The connection a worker opens while
    its app starts meets that fate when the first request comes later; the
    worker must reconnect once and keep connections after, not take the
    app for one that ignores FCGI_KEEP_CONN and reconnect per request."""
    sock = start_perl_pool(drover_factory, workdir, 1)
    [pid] = app_pids(sock)
    time.sleep(2.5)
    assert app_connection_inodes(pid) == set(), "the app should have dropped the silent start-up connection"
    seen = []
    for _ in range(4):
        # In one write, as nginx sends a GET: sent apart, the empty STDIN
        # may reach the worker after the app (which does not read it) has
        # answered, and the worker then closes that connection, as it must
        # when records for the app are left unsent.
        r = fcgi_request(sock, "/anything", one_write=True)
        assert r.status == 200, r
        seen.append(app_connection_inodes(pid))
    assert len(seen[0]) == 1, seen
    assert all(s == seen[0] for s in seen), f"the worker reconnected between requests: {seen}"
