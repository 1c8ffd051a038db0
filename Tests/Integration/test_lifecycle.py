"""Signals, listeners, daemonizing, and two instances on one socket."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (DROVER_BIN, IS_ROOT, PHP_LIMITS, READY_LINE, TIMEOUT, descendants, fcgi_request,
                      agent_of, children_of, free_port, ipv6_available, pid_alive, pool_section, proc_comm, status_full,
                      wait_for, wait_sleeping_app)


def test_sigquit_lets_the_running_request_finish(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 2)])
    assert d.pid_file.exists()
    rows = status_full(sock)["processes"]
    result = {}

    def slow():
        try:
            result["r"] = fcgi_request(sock, str(workdir / "www" / "sleep.php"), query="s=2", timeout=60)
        except Exception as error:  # noqa: BLE001
            result["error"] = error
    t = threading.Thread(target=slow, daemon=True)
    t.start()
    wait_sleeping_app([r["app pid"] for r in rows])
    d.send(signal.SIGQUIT)
    t.join(timeout=60)
    assert "error" not in result, result
    r = result["r"]
    assert r.status == 200, r
    assert r.text.startswith("slept 2\n") and r.text.endswith("done\n"), r
    assert len(r.body) == len("slept 2\n") + 16 * 4096 + 1 + len("done\n")
    assert d.wait_exit(timeout=TIMEOUT) == 0, d.log_text()
    assert not os.path.exists(sock), "the socket file must be removed"
    assert not d.pid_file.exists(), "the pid file must be removed"
    for pid in d.known_pids:
        wait_for(lambda: not pid_alive(pid), timeout=10, what=f"process {pid} to exit")
    assert "SIGQUIT received" in d.log_text()


def test_sigterm_stops_promptly_and_leaves_no_app(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=3, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 3)])
    rows = status_full(sock)["processes"]
    apps = [r["app pid"] for r in rows]
    assert all(proc_comm(p).startswith("php-cgi") for p in apps)
    everything = set(descendants(d.pid))
    assert set(apps) <= everything
    # One request is in flight (a 20 s sleep): TERM does not wait for it.
    result = {}

    def slow():
        try:
            result["r"] = fcgi_request(sock, str(workdir / "www" / "sleep.php"), query="s=20", timeout=60)
        except Exception as error:  # noqa: BLE001 - the connection is cut: expected
            result["error"] = error
    t = threading.Thread(target=slow, daemon=True)
    t.start()
    wait_sleeping_app(apps)
    started = time.monotonic()
    d.send(signal.SIGTERM)
    assert d.wait_exit(timeout=TIMEOUT) == 0, d.log_text()
    took = time.monotonic() - started
    assert took < 8, f"SIGTERM took {took:.1f} s to stop Drover"
    t.join(timeout=30)
    assert "r" not in result or result["r"].status != 200 or "done" not in result["r"].text, \
        "the 20 s request cannot have completed"
    wait_for(lambda: not any(pid_alive(p) for p in everything), timeout=10,
             what="every worker and php-cgi to be gone")
    assert not os.path.exists(sock)
    assert not d.pid_file.exists()


def test_tcp_listeners(drover_factory, workdir):
    d = drover_factory()
    port4 = free_port()
    pools = [pool_section("v4", f"127.0.0.1:{port4}", max_children=1, extra=PHP_LIMITS)]
    port6 = None
    if ipv6_available():
        port6 = free_port(socket.AF_INET6, "::1")
        pools.append(pool_section("v6", f"[::1]:{port6}", max_children=1, extra=PHP_LIMITS))
    d.write_config(pools)
    d.start(statuses=[(f"127.0.0.1:{port4}", 1)])
    hello = str(workdir / "www" / "hello.php")
    r = fcgi_request(f"127.0.0.1:{port4}", hello, query="name=ipv4")
    assert r.status == 200 and "name=ipv4" in r.text, r
    if port6 is None:
        pytest.skip("no IPv6 loopback here; IPv4 passed")
    d.wait_workers(f"[::1]:{port6}", 1)
    r = fcgi_request(f"[::1]:{port6}", hello, query="name=ipv6")
    assert r.status == 200 and "name=ipv6" in r.text, r


def test_second_instance_on_the_same_socket_refuses_to_start(drover_factory, workdir):
    first = drover_factory("first")
    sock = first.sock("www")
    first.write_config([pool_section("www", sock, max_children=1, extra=PHP_LIMITS)])
    first.start(statuses=[(sock, 1)])
    inode = os.stat(sock).st_ino

    second = drover_factory("second")
    second.write_config([pool_section("www", sock, max_children=1, extra=PHP_LIMITS)])
    second.start(wait_ready=False)
    code = second.wait_exit(timeout=TIMEOUT)
    assert code != 0, second.log_text()
    assert sock in second.log_text(), second.log_text()
    assert READY_LINE not in second.log_text()

    # The first one still owns the socket and serves.
    assert os.stat(sock).st_ino == inode, "the second instance replaced the socket file"
    r = fcgi_request(sock, str(workdir / "www" / "hello.php"), query="name=still-first")
    assert r.status == 200 and "name=still-first" in r.text, r
    assert first.proc.poll() is None


def _wait_gone(pid, timeout=TIMEOUT):
    wait_for(lambda: not pid_alive(pid), timeout=timeout, what=f"pid {pid} to exit")


def test_daemonize(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)], daemonize=True)
    cmd = [DROVER_BIN] + (["-R"] if IS_ROOT else []) + ["-y", str(d.conf)]
    with open(d.stderr_path, "wb") as err:
        started = time.monotonic()
        rc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=TIMEOUT,
                            cwd=workdir).returncode
    assert rc == 0, d.log_text()
    assert time.monotonic() - started < TIMEOUT
    # The pool sockets are open and the pid file written before `drover`
    # returns; so a request sent now is served. (The "ready" log line is
    # written just after the parent is released, as php-fpm does.)
    assert os.path.exists(sock), "drover returned before the daemon listened"
    pid = int(d.pid_file.read_text().strip())
    assert pid_alive(pid)
    r = fcgi_request(sock, "/ping", timeout=TIMEOUT)
    assert r.status == 200 and r.text.strip() == "pong", r
    wait_for(lambda: READY_LINE in d.log_text(), timeout=10, what="the ready line")
    d.known_pids.add(pid)
    d.known_pids.update(descendants(pid))
    assert os.getsid(pid) == pid, "the daemon leads its own session"
    d.wait_workers(sock, 2)
    d.known_pids.update(descendants(pid))
    r = fcgi_request(sock, str(workdir / "www" / "hello.php"), query="name=daemon")
    assert r.status == 200 and "name=daemon" in r.text, r

    os.kill(pid, signal.SIGTERM)
    _wait_gone(pid)
    for child in d.known_pids:
        _wait_gone(child, timeout=10)
    assert not os.path.exists(sock)
    assert not d.pid_file.exists()
    assert "exiting, bye-bye!" in d.log_text()


def test_daemonize_with_flag_D_and_failed_start_reports_failure(drover_factory, workdir):
    """-D overrides daemonize = no; a daemon that cannot start makes the
    `drover` command fail (the parent waits for the daemon's verdict)."""
    d = drover_factory()
    bad_sock = str(workdir / "no-such-dir" / "www.sock")
    d.write_config([pool_section("www", bad_sock, max_children=1, extra=PHP_LIMITS)])
    cmd = [DROVER_BIN, "-D"] + (["-R"] if IS_ROOT else []) + ["-y", str(d.conf)]
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT, cwd=workdir)
    assert out.returncode != 0, out
    assert bad_sock in d.log_text() + out.stderr.decode(), (out, d.log_text())
    assert not d.pid_file.exists()


def test_daemon_does_not_hold_the_callers_output_open(drover_factory, workdir):
    """`drover -D` with error_log set must let go of the terminal/pipe it was
    started from (like php-fpm), or `$(drover -D)`, `ssh host drover -D`
    and Type=forking units capturing output hang until Drover stops."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)], daemonize=True)
    cmd = [DROVER_BIN] + (["-R"] if IS_ROOT else []) + ["-y", str(d.conf)]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=workdir)
    try:
        try:
            out, err = proc.communicate(timeout=15)
            released = True
        except subprocess.TimeoutExpired:
            released = False
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        wait_for(lambda: d.pid_file.exists(), timeout=TIMEOUT, what="the pid file")
        pid = int(d.pid_file.read_text().strip())
        d.known_pids.add(pid)
        d.known_pids.update(descendants(pid))
        holders = [] if released else [
            (p, proc_comm(p), "master" if p == pid else "agent" if p == agent_of(pid)
             else "worker" if p in children_of(pid) else "app")
            for p in sorted(d.known_pids) if pid_alive(p) and _holds_pipe(p, proc)]
        os.kill(pid, signal.SIGTERM)
        _wait_gone(pid)
        if not released:
            proc.communicate(timeout=TIMEOUT)
    assert released, ("the drover command exited, but its stdout/stderr pipe stayed open; "
                      f"held by (pid, comm, role): {holders}")


def _holds_pipe(pid, proc):
    """Whether `pid` has the write end of `proc`'s stderr pipe open."""
    try:
        target = os.readlink(f"/proc/{proc.pid}/fd/2") if pid_alive(proc.pid) else None
    except OSError:
        target = None
    mine = os.fstat(proc.stderr.fileno()).st_ino
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with_target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if with_target == f"pipe:[{mine}]" or (target and with_target == target):
                return True
    except OSError:
        return False
    return False


def test_stale_socket_file_is_replaced(drover_factory, workdir):
    """A socket file left behind by a crashed instance (nobody listens on
    it) does not stop Drover from starting."""
    d = drover_factory()
    sock = d.sock("www")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock)
    stale.close()
    assert os.path.exists(sock)
    d.write_config([pool_section("www", sock, max_children=1, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 1)])
    r = fcgi_request(sock, str(workdir / "www" / "hello.php"), query="name=fresh")
    assert r.status == 200 and "name=fresh" in r.text, r
