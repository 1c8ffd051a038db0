"""The agent's status services and droverctl's control commands (design §6):

- status.listen: HTTP/1.1 /status (every format), /metrics (promtool),
  /ping, HEAD, 404/405/400, keep-alive, Connection: close, and that it
  answers while every worker of a pool is busy (p99 of 1000 /status?json on
  one keep-alive connection is printed);
- query strings redacted unless status.show_query = yes;
- pm.status_listen: a pool's FastCGI status and ping, answered by the agent;
- the control socket and droverctl status / --json / reopen / reload / stop.
"""

import contextlib
import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from conftest import (DROVERCTL_BIN, PHP_LIMITS, TIMEOUT, fcgi_request, free_port, pid_alive,
                      pool_section, wait_for, wait_sleeping_app)

PROMTOOL = shutil.which("promtool")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

class HTTP:
    """A keep-alive HTTP/1.1 client for the status server."""

    def __init__(self, port, timeout=TIMEOUT):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path, method="GET", headers=None, body=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def close(self):
        self.conn.close()


def http_get(port, path, method="GET", headers=None):
    client = HTTP(port)
    try:
        return client.get(path, method=method, headers=headers)
    finally:
        client.close()


def raw_exchange(port, data, timeout=10):
    """Sends raw bytes; returns everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def droverctl(*args, timeout=30):
    return subprocess.run([DROVERCTL_BIN, *args], capture_output=True, text=True, timeout=timeout)


def start_drover(drover_factory, workdir, pools=("www",), max_children=2, global_extra="", pool_extra=""):
    """Drover with php pools `pools` and status.listen on a free port."""
    d = drover_factory()
    port = free_port()
    sections = [pool_section(name, d.sock(name), max_children=max_children, extra=PHP_LIMITS + pool_extra)
                for name in pools]
    d.write_config(sections, global_extra=f"status.listen = 127.0.0.1:{port}\n" + global_extra)
    d.start(statuses=[(d.sock(name), max_children) for name in pools], sockets=[d.sock(n) for n in pools])
    d.status_port = port
    wait_for(lambda: http_get(port, "/ping")[0] == 200, what=f"the agent's status server on port {port}")
    return d


def busy_all_workers(d, pool="www", count=2, seconds=30, query=""):
    """Starts `count` long sleep.php requests; returns (threads, results)
    once every one of them runs in an app."""
    results = []
    script = str(d.workdir / "www" / "sleep.php")
    q = f"s={seconds}" + (f"&{query}" if query else "")

    def run():
        with contextlib.suppress(Exception):
            results.append(fcgi_request(d.sock(pool), script, query=q, timeout=seconds + 30))

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for t in threads:
        t.start()
    doc = wait_for(lambda: (lambda s: s if s["active processes"] == count else None)(
        pool_doc(d.status_port, pool)), what=f"{count} busy workers in {pool}")
    apps = [p["app pid"] for p in doc["processes"]]
    for _ in range(count):
        wait_sleeping_app(apps)
    return threads, results


def pool_doc(port, name, query="json&full"):
    status, _, body = http_get(port, "/status?" + query)
    assert status == 200
    doc = json.loads(body)
    docs = doc if isinstance(doc, list) else [doc]
    return next(p for p in docs if p["pool"] == name)


def stop_sleepers(d):
    """Ends the long requests by replacing the apps (stop the master)."""
    d.stop()


# ---------------------------------------------------------------------------
# status.listen
# ---------------------------------------------------------------------------

def test_status_listen_formats(drover_factory, workdir):
    d = start_drover(drover_factory, workdir, pools=("www", "api"))
    port = d.status_port

    status, headers, body = http_get(port, "/ping")
    assert (status, body) == (200, b"pong\n")
    assert headers["content-type"] == "text/plain"
    assert "no-cache" in headers["cache-control"]

    # text: every pool's block
    status, headers, body = http_get(port, "/status")
    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert "pool:                 www" in text and "pool:                 api" in text
    assert "total processes:      2" in text

    # JSON: an array of pools (json.loads)
    status, headers, body = http_get(port, "/status?json")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert [p["pool"] for p in doc] == ["www", "api"]
    assert all(p["total processes"] == 2 and p["process manager"] == "static" for p in doc)

    doc = json.loads(http_get(port, "/status?json&full")[2])
    for pool in doc:
        assert len(pool["processes"]) == 2
        assert all(pid_alive(p["pid"]) and pid_alive(p["app pid"]) for p in pool["processes"])

    # XML (xml.etree parses it): <pools> with one <status> per pool
    status, headers, body = http_get(port, "/status?xml&full")
    assert status == 200 and headers["content-type"].startswith("text/xml")
    root = ET.fromstring(body)
    assert root.tag == "pools"
    assert [s.findtext("pool") for s in root.findall("status")] == ["www", "api"]
    assert all(len(s.find("processes").findall("process")) == 2 for s in root.findall("status"))

    # HTML: XHTML, so an XML parser reads it too
    status, headers, body = http_get(port, "/status?html&full")
    assert status == 200 and headers["content-type"].startswith("text/html")
    root = ET.fromstring(body)
    cells = [el.text for el in root.iter() if el.tag.endswith("td")]
    assert "www" in cells and "api" in cells

    # OpenMetrics on /status?openmetrics and /metrics: a pool label on every sample
    for path in ("/status?openmetrics", "/metrics"):
        status, headers, body = http_get(port, path)
        assert status == 200
        assert headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8"
        text = body.decode()
        assert text.endswith("# EOF\n")
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert samples
        for line in samples:
            assert 'pool="www"' in line or 'pool="api"' in line, line
        assert 'phpfpm_total_processes{pool="www"} 2' in samples
        assert 'phpfpm_total_processes{pool="api"} 2' in samples


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian package prometheus) is not installed")
def test_metrics_pass_promtool(drover_factory, workdir):
    d = start_drover(drover_factory, workdir, pools=("www", "api"))
    # some traffic first, so the counters are not all zero
    for _ in range(3):
        fcgi_request(d.sock("www"), str(d.workdir / "www" / "hello.php"))
    status, _, body = http_get(d.status_port, "/metrics")
    assert status == 200
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert out.returncode == 0, (out.stdout.decode() + out.stderr.decode(), body.decode())


def test_http_semantics(drover_factory, workdir):
    d = start_drover(drover_factory, workdir)
    port = d.status_port

    # HEAD: the headers of GET, no body
    client = HTTP(port)
    status, headers, body = client.get("/status?json", method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["content-length"]) > 50
    assert headers["content-type"] == "application/json"
    # ... and the connection is still usable
    status, headers, body = client.get("/ping")
    assert (status, body) == (200, b"pong\n")
    assert "date" in headers

    # 404, 405 (with Allow), keep-alive kept through both
    status, headers, body = client.get("/nope")
    assert status == 404
    status, headers, body = client.get("/status", method="POST", body=b"a=1",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, _, body = client.get("/ping")
    assert (status, body) == (200, b"pong\n")
    client.close()

    # Connection: close is honoured: the answer, then the server closes
    raw = raw_exchange(port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in raw and raw.endswith(b"\r\n\r\npong\n")

    # HTTP/1.0 without keep-alive closes too
    raw = raw_exchange(port, b"GET /ping HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"pong\n")

    # pipelined requests are answered in order
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"HEAD /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.count(b"HTTP/1.1 ") == 3
    first, second, third = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and second.startswith(b"404") and third.startswith(b"200")
    assert third.endswith(b"\r\n\r\n")   # HEAD: no body

    # garbage: 400 and closed
    for garbage in (b"hello\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\r\n\r\n",
                    b"GET /status HTTP/1.1\r\n\r\n", b"GET /status HTTP/1.1\r\nHost : x\r\n\r\n"):
        raw = raw_exchange(port, garbage)
        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (garbage, raw)
        assert b"Connection: close" in raw

    # an 8 KiB head is the limit
    raw = raw_exchange(port, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 431 ")

    # the status server still works after all that
    assert http_get(port, "/ping")[0] == 200


def test_idle_connections_are_closed(drover_factory, workdir):
    d = start_drover(drover_factory, workdir)
    with socket.create_connection(("127.0.0.1", d.status_port), timeout=40) as s:
        start = time.monotonic()
        s.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")   # never finished
        assert s.recv(100) == b""
        waited = time.monotonic() - start
    assert 10 <= waited <= 30, waited


def test_status_while_every_worker_is_busy(drover_factory, workdir):
    d = start_drover(drover_factory, workdir)
    port = d.status_port
    busy_all_workers(d, count=2, seconds=60)

    status, _, body = http_get(port, "/ping")
    assert (status, body) == (200, b"pong\n")
    doc = pool_doc(port, "www")
    assert doc["active processes"] == 2 and doc["idle processes"] == 0
    assert all(p["state"] == "Running" for p in doc["processes"])
    assert all(p["request uri"].startswith("/sleep.php?[redacted]") for p in doc["processes"])

    # p99 of 1000 /status?json on one keep-alive connection
    client = HTTP(port)
    timings = []
    for _ in range(1000):
        start = time.perf_counter()
        status, _, body = client.get("/status?json")
        timings.append(time.perf_counter() - start)
        assert status == 200
    client.close()
    json.loads(body)
    timings.sort()
    p50, p99 = timings[499] * 1000, timings[989] * 1000
    print(f"\n/status?json while every worker is busy: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
          f"max {timings[-1] * 1000:.2f} ms (1000 requests, one keep-alive connection)")
    assert p99 < 50, f"p99 {p99:.2f} ms"
    # the workers never saw any of it
    assert pool_doc(port, "www")["active processes"] == 2
    d.stop()


# ---------------------------------------------------------------------------
# redaction
# ---------------------------------------------------------------------------

def test_query_strings_redacted_unless_allowed(drover_factory, workdir):
    d = drover_factory()
    port = free_port()
    d.write_config([
        pool_section("www", d.sock("www"), max_children=1, extra=PHP_LIMITS),
        pool_section("open", d.sock("open"), max_children=1, extra=PHP_LIMITS + "status.show_query = yes\n"),
    ], global_extra=f"status.listen = 127.0.0.1:{port}\n")
    d.start(statuses=[(d.sock("www"), 1), (d.sock("open"), 1)], sockets=[d.sock("www"), d.sock("open")])
    d.status_port = port
    wait_for(lambda: http_get(port, "/ping")[0] == 200, what="the status server")

    busy_all_workers(d, pool="www", count=1, seconds=60, query="token=s3cret")
    busy_all_workers(d, pool="open", count=1, seconds=60, query="token=visible")

    full = http_get(port, "/status?full")[2].decode()
    assert "s3cret" not in full
    assert "/sleep.php?[redacted]" in full
    assert "token=visible" in full
    for query in ("json&full", "xml&full", "html&full"):
        page = http_get(port, "/status?" + query)[2].decode()
        assert "s3cret" not in page and "[redacted]" in page and "token=visible" in page, query

    out = droverctl("status", "--json", "--socket", str(d.workdir / "drover.ctl"))
    assert out.returncode == 0, out
    assert "s3cret" not in out.stdout and "token=visible" in out.stdout
    d.stop()


# ---------------------------------------------------------------------------
# pm.status_listen
# ---------------------------------------------------------------------------

def test_pm_status_listen_answers_while_busy(drover_factory, workdir):
    d = drover_factory()
    port = free_port()
    status_sock = str(workdir / "www-status.sock")
    d.write_config([pool_section("www", d.sock("www"), max_children=2,
                                 extra=PHP_LIMITS + f"pm.status_listen = {status_sock}\n")],
                   global_extra=f"status.listen = 127.0.0.1:{port}\n")
    d.start(statuses=[(d.sock("www"), 2)], sockets=[d.sock("www")])
    d.status_port = port
    wait_for(lambda: os.path.exists(status_sock), what=f"{status_sock}")
    assert stat.S_IMODE(os.stat(status_sock).st_mode) == 0o666   # listen.mode of the pool

    busy_all_workers(d, count=2, seconds=60)

    r = fcgi_request(status_sock, "/status", query="json&full")
    assert r.status == 200 and r.headers["content-type"] == "application/json", r
    doc = json.loads(r.body)
    assert doc["pool"] == "www" and doc["active processes"] == 2
    assert len(doc["processes"]) == 2

    r = fcgi_request(status_sock, "/ping")
    assert r.status == 200 and r.text == "pong\n", r
    r = fcgi_request(status_sock, "/status", query="openmetrics")
    assert 'phpfpm_active_processes{pool="www"} 2' in r.text
    r = fcgi_request(status_sock, "/status", query="xml")
    assert ET.fromstring(r.body).findtext("pool") == "www"
    r = fcgi_request(status_sock, str(d.workdir / "www" / "hello.php"))
    assert r.status == 404, r

    # kept connections (FCGI_KEEP_CONN) serve several requests
    from conftest import connect_address, default_params, fcgi_exchange
    with contextlib.closing(connect_address(status_sock)) as s:
        for i in range(3):
            r = fcgi_exchange(s, default_params("/ping"), keep_conn=True, request_id=i + 1)
            assert r.text == "pong\n"
    d.stop()


# ---------------------------------------------------------------------------
# the control socket and droverctl
# ---------------------------------------------------------------------------

def test_droverctl_status_reopen_stop(drover_factory, workdir):
    d = start_drover(drover_factory, workdir, pools=("www", "api"))
    ctl = d.workdir / "drover.ctl"
    wait_for(lambda: ctl.exists(), what=f"control socket {ctl}")
    info = os.stat(ctl)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.stat(f"/proc/{d.pid}").st_uid

    # found through the configuration (pid = drover.pid -> drover.ctl)
    out = droverctl("status", "--config", str(d.conf))
    assert out.returncode == 0, out
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["POOL", "PM", "PROCESSES", "IDLE", "ACTIVE", "ACCEPTED", "QUEUE", "SLOW"]
    assert lines[1].split()[:3] == ["www", "static", "2"]
    assert lines[2].split()[:3] == ["api", "static", "2"]
    doc = json.loads(http_get(d.status_port, "/status?json&full")[2])
    for pool in doc:
        for process in pool["processes"]:
            assert any(line.split()[:3] == [pool["pool"], str(process["pid"]), str(process["app pid"])]
                       for line in lines), (process, out.stdout)

    out = droverctl("status", "--json", "--socket", str(ctl))
    assert out.returncode == 0, out
    doc = json.loads(out.stdout)
    assert [p["pool"] for p in doc] == ["www", "api"]
    assert all(len(p["processes"]) == 2 for p in doc)

    # the raw protocol, one command per connection
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(ctl))
        s.sendall(b"status\n")
        text = b""
        while chunk := s.recv(65536):
            text += chunk
    assert b"pool:                 www" in text and b"\nprocess " in text
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(ctl))
        s.sendall(b"bogus\n")
        assert s.recv(4096).startswith(b"ERR unknown command 'bogus'")

    # reopen: log files reopened, no worker or app replaced
    before = sorted((p["pid"], p["app pid"]) for pool in doc for p in pool["processes"])
    os.rename(d.error_log, str(d.error_log) + ".1")
    out = droverctl("reopen", "--socket", str(ctl))
    assert out.returncode == 0 and out.stdout.startswith("OK"), out
    wait_for(lambda: d.error_log.exists(), what="a new error log after reopen")
    doc = json.loads(droverctl("status", "--json", "--socket", str(ctl)).stdout)
    assert sorted((p["pid"], p["app pid"]) for pool in doc for p in pool["processes"]) == before

    # stop: graceful, the master exits 0 and the socket goes away
    out = droverctl("stop", "--config", str(d.conf))
    assert out.returncode == 0 and out.stdout.startswith("OK"), out
    assert d.wait_exit() == 0
    wait_for(lambda: not ctl.exists(), what="the control socket to be removed")

    out = droverctl("status", "--socket", str(ctl))
    assert out.returncode == 2
    assert f"is drover running? no control socket at {ctl}" in out.stderr


def test_droverctl_stop_now(drover_factory, workdir):
    d = start_drover(drover_factory, workdir)
    ctl = d.workdir / "drover.ctl"
    wait_for(lambda: ctl.exists(), what=f"control socket {ctl}")
    busy_all_workers(d, count=1, seconds=60)
    start = time.monotonic()
    out = droverctl("stop", "--now", "--socket", str(ctl))
    assert out.returncode == 0 and "SIGTERM" in out.stdout, out
    d.wait_exit(timeout=20)
    assert time.monotonic() - start < 15    # did not wait for the 60 s request


def test_droverctl_reload_is_delivered(drover_factory, workdir):
    d = start_drover(drover_factory, workdir)
    ctl = d.workdir / "drover.ctl"
    wait_for(lambda: ctl.exists(), what=f"control socket {ctl}")
    out = droverctl("reload", "--socket", str(ctl))
    assert out.returncode == 0 and out.stdout.startswith("OK"), out
    # Whatever the master does with SIGUSR2, it says so in its log.
    wait_for(lambda: "SIGUSR2" in d.log_text() or "reload" in d.log_text().lower(),
             what="the master to log the reload request")


def test_droverctl_errors(drover_factory, workdir):
    missing = workdir / "nothing.ctl"
    out = droverctl("status", "--socket", str(missing))
    assert out.returncode == 2
    assert out.stderr.strip() == f"droverctl: error: is drover running? no control socket at {missing}"

    # a socket file nobody listens on
    stale = workdir / "stale.ctl"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    out = droverctl("reopen", "--socket", str(stale))
    assert out.returncode == 2 and "nothing answers on the control socket" in out.stderr, out

    # a configuration without pid or control.socket
    conf = workdir / "nopid.conf"
    conf.write_text(f"[global]\n\n{pool_section('www', str(workdir / 'x.sock'))}")
    out = droverctl("status", "--config", str(conf))
    assert out.returncode == 64
    assert "defines no control socket" in out.stderr and "--socket" in out.stderr

    out = droverctl("status", "--config", str(workdir / "missing.conf"))
    assert out.returncode == 64 and "--socket" in out.stderr, out

    out = droverctl("status", "3")
    assert out.returncode == 64 and "--watch" in out.stderr


def test_status_listen_on_a_unix_socket(drover_factory, workdir):
    d = drover_factory()
    path = str(workdir / "status.sock")
    d.write_config([pool_section("www", d.sock("www"), max_children=1, extra=PHP_LIMITS)],
                   global_extra=f"status.listen = {path}\n")
    d.start(statuses=[(d.sock("www"), 1)], sockets=[d.sock("www")])
    wait_for(lambda: os.path.exists(path), what=path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660

    def get(request):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(request)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out

    raw = get(b"GET /status?json HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert json.loads(body)["pool"] == "www"
    d.stop()
    assert not os.path.exists(path)
