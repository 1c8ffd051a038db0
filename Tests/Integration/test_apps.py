"""Apps other than php-cgi, the app's environment and php settings, and the
privacy of the app's own socket."""

import os
import pwd
import stat
import subprocess

import pytest

from conftest import (IS_ROOT, PERL_BIN, PHP_LIMITS, app_pids, connect_unix_as, fcgi_request, pool_section,
                      status_full, unix_socket_path_of_fd)


def test_perl_fcgi_app(drover_factory, workdir):
    probe = subprocess.run([PERL_BIN, "-MFCGI", "-e", "1"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("perl FCGI module (libfcgi-perl) is not installed")
    d = drover_factory()
    sock = d.sock("perl")
    app = workdir / "www" / "app.pl"
    d.write_config([pool_section("perl", sock, max_children=2, command=f"{PERL_BIN} {app}")])
    d.start(statuses=[(sock, 2)])
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
