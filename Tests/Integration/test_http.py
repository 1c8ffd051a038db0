"""Requests through a real nginx in front of Drover: php-cgi and fcgiwrap
pools, big bodies in both directions, concurrency, fastcgi_keep_conn."""

import concurrent.futures
import hashlib
import http.client
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import (RSSSampler, fcgi_request, big_pattern_sha256, http_request, rss_kib,
                      status, status_full, worker_pids)

# A worker relays with bounded buffers: moving 50-100 MB through it must not
# grow it by more than this (it would grow by the body size if it buffered).
MAX_WORKER_GROWTH_KIB = 8 * 1024


def test_get_and_post_through_nginx(nginx):
    r = http_request(nginx.port, "/hello.php?name=drover")
    assert r.status == 200, r
    assert r.headers.get("x-drover-test") == "hello"
    assert "method=GET" in r.text
    assert "name=drover" in r.text
    assert "sapi=cgi-fcgi" in r.text

    form = urllib.parse.urlencode({"field": "some posted value"}).encode()
    r = http_request(nginx.port, "/hello.php?name=poster", method="POST", body=form,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, r
    assert "method=POST" in r.text
    assert "name=poster" in r.text
    assert "posted=some posted value" in r.text
    assert f"length={len(form)}" in r.text

    # urllib too (a different client, HTTP/1.1 with Connection: close)
    with urllib.request.urlopen(nginx.url("/hello.php?name=urllib"), timeout=30) as resp:
        assert resp.status == 200
        assert b"name=urllib" in resp.read()

    # A missing script is php-cgi's 404, relayed unchanged.
    r = http_request(nginx.port, "/does-not-exist.php")
    assert r.status == 404, r


def _worker_memory(sock):
    return {pid: rss_kib(pid) for pid in worker_pids(sock)}


def _assert_bounded_growth(before, sampler, what):
    for pid, (rss0, anon0) in before.items():
        rss1, anon1 = sampler.peak[pid]
        print(f"worker {pid} during {what}: VmRSS {rss0} -> {rss1} KiB, RssAnon {anon0} -> {anon1} KiB")
        assert anon1 - anon0 <= MAX_WORKER_GROWTH_KIB, (
            f"worker {pid} RssAnon grew from {anon0} to {anon1} KiB during {what}")
        assert rss1 - rss0 <= MAX_WORKER_GROWTH_KIB + 4096, (
            f"worker {pid} VmRSS grew from {rss0} to {rss1} KiB during {what}")


def test_50mb_post_is_echoed_intact_and_worker_memory_stays_flat(nginx, php_drover):
    sock = php_drover.sock("www")
    body = os.urandom(50 * 1024 * 1024)
    expected = hashlib.sha256(body).hexdigest()
    before = _worker_memory(sock)
    received = hashlib.sha256()
    size = 0

    def sink(chunk):
        nonlocal size
        received.update(chunk)
        size += len(chunk)

    with RSSSampler(before) as sampler:
        r = http_request(nginx.port, "/echo.php", method="POST", body=body, sink=sink, timeout=120,
                         headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200, r
    assert size == len(body)
    assert received.hexdigest() == expected
    _assert_bounded_growth(before, sampler, "a 50 MB upload")


def test_100mb_response_intact_and_worker_memory_stays_flat(nginx, php_drover):
    sock = php_drover.sock("www")
    before = _worker_memory(sock)
    received = hashlib.sha256()
    size = 0

    def sink(chunk):
        nonlocal size
        received.update(chunk)
        size += len(chunk)

    with RSSSampler(before) as sampler:
        r = http_request(nginx.port, "/big.php?mb=100", sink=sink, timeout=120)
    assert r.status == 200, r
    assert size == 100 * 1024 * 1024
    assert received.hexdigest() == big_pattern_sha256(100)
    _assert_bounded_growth(before, sampler, "a 100 MB download")
    # The pool is whole and idle again (the status request itself is the
    # one active process).
    doc = status(sock)
    assert doc["total processes"] == 2 and doc["active processes"] == 1, doc


def test_200_concurrent_requests(nginx):
    def one(i):
        return i, http_request(nginx.port, f"/hello.php?name=c{i}", timeout=120)

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(one, range(200)))
    bad = [(i, r) for i, r in results if r.status != 200 or f"name=c{i}\n" not in r.text]
    assert not bad, f"{len(bad)} of 200 failed, e.g. {bad[:3]}"


def test_200_concurrent_requests_with_curl(nginx):
    curl = shutil.which("curl")
    if not curl:
        pytest.skip("curl is not installed")
    args = []
    for i in range(200):
        args += ["-o", "/dev/null", nginx.url(f"/hello.php?name=k{i}")]
    out = subprocess.run([curl, "-s", "--parallel", "--parallel-max", "200", "--parallel-immediate",
                          "-w", "%{http_code}\n", *args], capture_output=True, text=True, timeout=120)
    codes = out.stdout.split()
    assert len(codes) == 200, out
    assert codes.count("200") == 200, sorted(set(codes))


def test_cgi_script_through_fcgiwrap(nginx, php_drover):
    r = http_request(nginx.port, "/cgi-bin/hello.cgi?x=1&y=2")
    assert r.status == 200, (r, nginx.error_log()[-2000:])
    assert r.headers.get("x-cgi") == "yes"
    assert "hello from cgi" in r.text
    assert "method=GET" in r.text
    assert "query=x=1&y=2" in r.text
    # And directly on the pool's socket.
    script = str(php_drover.workdir / "www" / "hello.cgi")
    d = fcgi_request(php_drover.sock("cgi"), script, query="direct=1")
    assert d.status == 200, d
    assert "hello from cgi" in d.text and "query=direct=1" in d.text
    assert status(php_drover.sock("cgi"), path="/cgi-status")["pool"] == "cgi"


def test_fastcgi_keep_conn_reuses_connections(nginx, php_drover):
    sock = php_drover.sock("www")
    before = status(sock)["accepted conn"]

    # 500 sequential requests over one HTTP keep-alive connection to nginx.
    conn = http.client.HTTPConnection("127.0.0.1", nginx.keep_port, timeout=30)
    try:
        for i in range(500):
            r = http_request(nginx.keep_port, f"/hello.php?name=s{i}", conn=conn)
            assert r.status == 200 and f"name=s{i}\n" in r.text, (i, r)
    finally:
        conn.close()
    after_sequential = status(sock)["accepted conn"]
    # Each status query above counts once; the 500 requests should take a few.
    assert after_sequential - before - 1 <= 20, (before, after_sequential)

    def one(i):
        return i, http_request(nginx.keep_port, f"/hello.php?name=p{i}", timeout=60)

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    bad = [(i, r) for i, r in results if r.status != 200 or f"name=p{i}\n" not in r.text]
    assert not bad, bad[:3]

    # The status page through the keep-alive server as well.
    r = http_request(nginx.keep_port, "/status?json")
    assert r.status == 200, r
    after = status(sock)["accepted conn"]
    print(f"accepted conn: {before} before, {after_sequential} after 500 sequential, {after} at the end")
    total_requests = 500 + 50 + 1
    assert after - before < total_requests // 4, (
        f"{after - before} connections accepted for {total_requests} requests: not reused")

    # Kept-alive connections parked in workers do not pin them: a fresh
    # connection is still served at once.
    d = fcgi_request(sock, str(php_drover.workdir / "www" / "hello.php"), query="name=fresh", timeout=10)
    assert d.status == 200 and "name=fresh" in d.text
    assert len(status_full(sock)["processes"]) == 2


def test_direct_download_with_a_stalled_reader_keeps_worker_memory_flat(php_drover):
    """Without nginx's buffering: the client stops reading for a while in
    the middle of a 64 MB response; the worker must stop reading from the
    app (back-pressure) instead of buffering the response."""
    sock = php_drover.sock("www")
    before = _worker_memory(sock)
    received = hashlib.sha256()
    size = 0
    paused = []

    def on_stdout(chunk):
        nonlocal size
        received.update(chunk)
        size += len(chunk)
        if size > 16 * 1024 * 1024 and not paused:
            paused.append(True)
            time.sleep(1.5)           # the socket buffers fill up; the worker must wait

    with RSSSampler(before) as sampler:
        r = fcgi_request(sock, str(php_drover.workdir / "www" / "big.php"), query="mb=64",
                         on_stdout=on_stdout, timeout=120)
    assert r.status == 200 and r.app_status == 0, r
    assert paused
    assert size > 64 * 1024 * 1024     # the body plus the CGI header block
    _assert_bounded_growth(before, sampler, "a stalled 64 MB direct download")


def test_direct_50mb_upload_keeps_worker_memory_flat(php_drover):
    sock = php_drover.sock("www")
    before = _worker_memory(sock)
    block = os.urandom(1024 * 1024)
    expected = hashlib.sha256(block * 50).hexdigest()
    received = hashlib.sha256()
    head = bytearray()
    in_body = [False]

    def on_stdout(chunk):
        if in_body[0]:
            received.update(chunk)
            return
        head.extend(chunk)
        if b"\r\n\r\n" in head:
            in_body[0] = True
            received.update(bytes(head).split(b"\r\n\r\n", 1)[1])

    with RSSSampler(before) as sampler:
        r = fcgi_request(sock, str(php_drover.workdir / "www" / "echo.php"), method="POST",
                         body=(block for _ in range(50)), body_len=50 * len(block),
                         content_type="application/octet-stream", on_stdout=on_stdout, timeout=120)
    assert r.status == 200 and r.app_status == 0, r
    assert received.hexdigest() == expected
    _assert_bounded_growth(before, sampler, "a direct 50 MB upload")
