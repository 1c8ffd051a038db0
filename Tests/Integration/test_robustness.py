"""Garbage on the pool socket, apps and workers killed with SIGKILL, apps that
cannot start."""

import os
import random
import re
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import (FcgiResponse, PHP_LIMITS, TIMEOUT, connect_address, default_params,
                      fcgi_exchange, fcgi_name_value, fcgi_record, fcgi_request, http_request,
                      pid_alive, pool_section, status, status_full, wait_for, wait_sleeping_app,
                      worker_pids)


def _expect_closed(sock_path, payload, shutdown_write=False, within=5.0):
    """Sends `payload` on a fresh connection; returns what Drover sent back
    before closing it. Fails if it is not closed within `within` seconds."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(within)
    s.connect(sock_path)
    try:
        s.sendall(payload)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        received = bytearray()
        deadline = time.monotonic() + within
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return bytes(received)
            except socket.timeout:
                pytest.fail(f"Drover kept the connection open {within} s after {payload[:40]!r}")
            if not chunk:
                return bytes(received)
            received += chunk
            assert time.monotonic() < deadline + 1
    finally:
        s.close()


def test_garbage_on_the_pool_socket_closes_only_that_connection(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 2)])
    workers = worker_pids(sock)
    hello = str(workdir / "www" / "hello.php")

    rng = random.Random(20261121)
    noise = bytearray(rng.randbytes(4096))
    noise[0] = 0xA7                       # never a valid version byte
    cases = [
        ("HTTP request", b"GET / HTTP/1.0\r\n\r\n", False),
        ("random bytes", bytes(noise), False),
        ("version 2 header", struct.pack(">BBHHBB", 2, 1, 1, 8, 0, 0) + b"\0\1\0\0\0\0\0\0", False),
        ("content length 65535 then EOF",
         struct.pack(">BBHHBB", 1, 1, 1, 65535, 0, 0) + b"\0\1\0\0", True),
        ("params claiming 65535 then EOF",
         fcgi_record(1, 1, b"\0\1\0\0\0\0\0\0") + struct.pack(">BBHHBB", 1, 4, 1, 65535, 0, 0) + b"x" * 100,
         True),
        ("unknown record type on a request", fcgi_record(1, 1, b"\0\1\0\0\0\0\0\0") + fcgi_record(99, 1, b"zz"),
         False),
        ("1001 params", fcgi_record(1, 1, b"\0\1\0\0\0\0\0\0")
         + fcgi_record(4, 1, b"".join(fcgi_name_value(f"P{i}", "x") for i in range(1001)))
         + fcgi_record(4, 1, b""), False),
    ]
    for name, payload, shutdown in cases:
        _expect_closed(sock, payload, shutdown_write=shutdown)
        r = fcgi_request(sock, hello, query=f"name=after-{name.replace(' ', '-')}")
        assert r.status == 200, (name, r)
        assert f"name=after-{name.replace(' ', '-')}" in r.text
        assert worker_pids(sock) == workers, f"a worker died after {name}"

    # A management record with an unknown type gets FCGI_UNKNOWN_TYPE, and
    # the connection stays usable.
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(TIMEOUT)
    conn.connect(sock)
    try:
        conn.sendall(fcgi_record(77, 0, b"12345678"))
        head = conn.recv(8)
        assert len(head) == 8 and head[1] == 11, head       # FCGI_UNKNOWN_TYPE
    finally:
        conn.close()

    # The agent writes log lines in batches (a few ms late).
    wait_for(lambda: "more than 1000 params" in d.log_text(), what=f"the params limit in:\n{d.log_text()}")

    # No request was left half-open in the scoreboard: only this status
    # request is active.
    doc = status_full(sock)
    assert doc["total processes"] == 2
    assert doc["active processes"] == 1, doc
    assert sorted(p["state"] for p in doc["processes"]) == ["Idle", "Running"], doc["processes"]
    assert worker_pids(sock) == workers


def _running_row(sock, fragment):
    """The status row of the worker running a request whose URI contains
    `fragment`, with a short timeout (status itself is answered by a worker)."""
    for p in status(sock, "json&full")["processes"]:
        if p["state"] == "Running" and fragment in p["request uri"]:
            return p
    return None


def _find_sleeping_request(sock, rows):
    """(worker pid, app pid) of the worker whose app runs sleep.php: found
    through /proc (the app sleeping in nanosleep), then checked against the
    status page's Running row when that answers."""
    app = wait_sleeping_app([r["app pid"] for r in rows])
    worker = next(r["pid"] for r in rows if r["app pid"] == app)
    return worker, app


def _background(fn):
    result = {}

    def run():
        try:
            result["value"] = fn()
        except Exception as error:  # noqa: BLE001 - reported by the test
            result["error"] = error
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


@pytest.mark.parametrize("server", ["plain", "keepalive"])
def test_app_killed_mid_request_gives_502_through_nginx(nginx, php_drover, server):
    sock = php_drover.sock("www")
    port = nginx.port if server == "plain" else nginx.keep_port
    if server == "keepalive":
        for i in range(5):      # workers now hold kept connections from nginx
            assert http_request(port, f"/hello.php?name=warm{i}").status == 200
    rows = status_full(sock)["processes"]
    t, result = _background(lambda: http_request(port, "/sleep.php?s=5", timeout=60))
    worker, app = _find_sleeping_request(sock, rows)
    running = _running_row(sock, "/sleep.php")
    assert running is not None and running["pid"] == worker and running["app pid"] == app, running
    os.kill(app, signal.SIGKILL)
    t.join(timeout=60)
    assert not t.is_alive(), "the client never got an answer"
    assert "error" not in result, result
    r = result["value"]
    assert r.status == 502, r
    # The pool recovers: the same worker gets a new app, requests succeed.
    for i in range(6):
        r = http_request(port, f"/hello.php?name=after{i}", timeout=30)
        assert r.status == 200 and f"name=after{i}" in r.text, r
    wait_for(lambda: all(p["app pid"] and p["app pid"] != app and pid_alive(p["app pid"])
                         for p in status_full(sock)["processes"]), what="a new app")
    assert worker in worker_pids(sock), "the worker itself should survive its app"


def test_app_killed_mid_request_gives_502_directly(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    # Two workers: status is answered by a worker, so one must stay free.
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 2)])
    script = str(workdir / "www" / "sleep.php")
    rows = status_full(sock)["processes"]
    t, result = _background(lambda: fcgi_request(sock, script, query="s=5", timeout=60))
    worker, app = _find_sleeping_request(sock, rows)
    os.kill(app, signal.SIGKILL)
    t.join(timeout=60)
    assert not t.is_alive(), "no answer after the app was killed"
    assert "error" not in result, result
    r = result["value"]
    assert isinstance(r, FcgiResponse)
    assert r.status == 502, r
    r = fcgi_request(sock, str(workdir / "www" / "hello.php"), query="name=next")
    assert r.status == 200 and "name=next" in r.text, r


def test_killed_worker_is_replaced(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=3, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 3)])
    rows = status_full(sock)["processes"]
    victim = rows[0]
    os.kill(victim["pid"], signal.SIGKILL)

    def replaced():
        doc = status_full(sock)
        pids = {p["pid"] for p in doc["processes"]}
        return (doc["total processes"] == 3 and len(pids) == 3 and victim["pid"] not in pids
                and all(p["app pid"] for p in doc["processes"]) and doc)
    doc = wait_for(replaced, what="a replacement worker")
    new = {p["pid"] for p in doc["processes"]} - {p["pid"] for p in rows}
    assert len(new) == 1 and all(pid_alive(p) for p in new)
    hello = str(workdir / "www" / "hello.php")
    for i in range(10):
        r = fcgi_request(sock, hello, query=f"name=r{i}")
        assert r.status == 200 and f"name=r{i}" in r.text, r
    # The dead worker's app does not outlive it.
    wait_for(lambda: not pid_alive(victim["app pid"]), timeout=15, what="the orphaned app to exit")
    assert doc["crashes"] >= 1
    assert re.search(rf"child {victim['pid']} exited on signal 9", d.log_text()), d.log_text()


def test_killed_worker_holding_nginx_keepalive_connections(nginx, php_drover):
    """nginx (fastcgi_keep_conn on) has connections parked in the workers;
    one worker is killed: it is replaced and requests keep succeeding."""
    sock = php_drover.sock("www")
    for i in range(10):
        assert http_request(nginx.keep_port, f"/hello.php?name=warm{i}").status == 200
    rows = status_full(sock)["processes"]
    victim = rows[0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: (doc := status_full(sock))["total processes"] == 2
             and victim["pid"] not in {p["pid"] for p in doc["processes"]}
             and all(p["app pid"] for p in doc["processes"]), what="a replacement worker")
    for i in range(30):
        r = http_request(nginx.keep_port, f"/hello.php?name=k{i}")
        assert r.status == 200 and f"name=k{i}" in r.text, (i, r)
        r = http_request(nginx.port, f"/hello.php?name=p{i}")
        assert r.status == 200 and f"name=p{i}" in r.text, (i, r)


def test_app_that_exits_at_once_does_not_respawn_storm(drover_factory):
    d = drover_factory()
    sock = d.sock("bad")
    d.write_config([pool_section("bad", sock, max_children=2, command="/bin/false")])
    d.start(sockets=[sock])
    time.sleep(5)
    assert d.proc.poll() is None, f"drover died:\n{d.log_text()}"
    started = len(re.findall(r"\[pool bad\] child \d+ started", d.log_text()))
    print(f"{started} worker starts in 5 s")
    assert 2 <= started < 30, f"{started} starts in 5 s:\n{d.log_text()}"
    # ping/status stay unanswerable without workers; but Drover stops cleanly.
    d.send(signal.SIGTERM)
    assert d.wait_exit(timeout=TIMEOUT) == 0, d.log_text()
    assert not os.path.exists(sock)


def test_idle_worker_serves_while_another_is_busy(drover_factory, workdir):
    """Two connections opened back to back (as a busy nginx does), a slow
    request on the first and a ping on the second: with two workers the
    ping must be answered at once by the idle one.

    Today one worker often accepts both connections before their first
    bytes arrive, parks them as "kept" connections in its own epoll set,
    then serves the slow request; the ping sits unread in that worker
    (ss -xp shows it with a non-empty Recv-Q) until the slow request ends.
    """
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)])
    d.start(statuses=[(sock, 2)])
    params = default_params(str(workdir / "www" / "sleep.php"), query="s=1.5")
    slow = []
    for attempt in range(10):
        first, second = connect_address(sock), connect_address(sock)
        try:
            t, result = _background(lambda: fcgi_exchange(first, params))
            started = time.monotonic()
            r = fcgi_exchange(second, default_params("/ping"))
            took = time.monotonic() - started
            assert r.status == 200 and r.text.strip() == "pong"
            t.join(timeout=60)
            assert result.get("value") is not None and result["value"].status == 200, result
        finally:
            first.close()
            second.close()
        if took > 1.0:
            slow.append((attempt, round(took, 2)))
            break
    assert not slow, (f"a ping waited {slow[0][1]} s behind a 1.5 s request although the other "
                      f"worker was idle (attempt {slow[0][0] + 1})")
