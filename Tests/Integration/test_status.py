"""ping and status pages (served by the workers themselves), directly on the
pool socket with droverctl / cgi-fcgi, and through nginx."""

import json
import os
import subprocess

import pytest

from conftest import (CGI_FCGI_BIN, DROVERCTL_BIN, http_request, parse_status_text, pid_alive,
                      status)

POOL_FIELDS = ["pool", "process manager", "start time", "start since", "accepted conn",
               "idle processes", "active processes", "total processes", "max active processes",
               "max children reached"]


def droverctl_get(sock, path, query=""):
    """Body of `droverctl request SOCK PATH [--query Q] --body-only`."""
    cmd = [DROVERCTL_BIN, "request", sock, path, "--body-only"]
    if query:
        cmd += ["--query", query]
    out = subprocess.run(cmd, capture_output=True, timeout=30)
    assert out.returncode == 0, out
    return out.stdout.decode()


def cgi_fcgi_get(sock, path, query=""):
    """Body of a request made with libfcgi's cgi-fcgi."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUEST_METHOD": "GET",
           "SCRIPT_FILENAME": path, "SCRIPT_NAME": path, "QUERY_STRING": query,
           "REQUEST_URI": path + ("?" + query if query else ""), "GATEWAY_INTERFACE": "CGI/1.1",
           "SERVER_PROTOCOL": "HTTP/1.1"}
    out = subprocess.run([CGI_FCGI_BIN, "-bind", "-connect", sock], capture_output=True, env=env,
                         timeout=30, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out
    raw = out.stdout.decode()
    head, sep, body = raw.partition("\r\n\r\n")
    assert sep, raw
    return body


CLIENTS = {
    "droverctl": (DROVERCTL_BIN, droverctl_get),
    "cgi-fcgi": (CGI_FCGI_BIN, cgi_fcgi_get),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_ping_and_status_directly(php_drover, client):
    binary, get = CLIENTS[client]
    if not binary or not os.access(binary, os.X_OK):
        pytest.skip(f"{client} is not available")
    sock = php_drover.sock("www")

    assert get(sock, "/ping").strip() == "pong"

    pool, rows = parse_status_text(get(sock, "/status"))
    for field in POOL_FIELDS:
        assert field in pool, (field, pool)
    assert pool["pool"] == "www"
    assert pool["process manager"] == "static"
    assert int(pool["total processes"]) == 2
    assert int(pool["idle processes"]) + int(pool["active processes"]) == 2
    assert rows == []

    doc = json.loads(get(sock, "/status", "json"))
    assert doc["pool"] == "www"
    assert doc["total processes"] == 2
    assert doc["accepted conn"] >= 2

    pool, rows = parse_status_text(get(sock, "/status", "full"))
    assert len(rows) == 2, rows
    for row in rows:
        assert pid_alive(int(row["pid"]))
        assert row["state"] in ("Idle", "Running", "Reading headers", "Finishing")
        assert int(row["requests"]) >= 0
        assert pid_alive(int(row["app pid"]))
    assert sum(row["state"] == "Running" for row in rows) == 1   # this very request

    doc = json.loads(get(sock, "/status", "json&full"))
    assert len(doc["processes"]) == 2
    assert {p["pid"] for p in doc["processes"]} == {int(r["pid"]) for r in rows}

    # the other formats answer too
    assert "<status>" in get(sock, "/status", "xml") or "<pool>" in get(sock, "/status", "xml")
    assert "<html" in get(sock, "/status", "html").lower() or "<table" in get(sock, "/status", "html")
    assert 'pool="www"' in get(sock, "/status", "openmetrics")

    # the fcgiwrap pool has its own paths
    assert get(php_drover.sock("cgi"), "/cgi-ping").strip() == "pong"
    doc = json.loads(get(php_drover.sock("cgi"), "/cgi-status", "json"))
    assert doc["pool"] == "cgi"


def test_ping_and_status_through_nginx(nginx, php_drover):
    r = http_request(nginx.port, "/ping")
    assert r.status == 200, r
    assert r.text.strip() == "pong"
    assert "no-cache" in r.headers.get("cache-control", "")

    r = http_request(nginx.port, "/status")
    assert r.status == 200, r
    assert r.headers["content-type"].startswith("text/plain")
    pool, rows = parse_status_text(r.text)
    assert pool["pool"] == "www" and int(pool["total processes"]) == 2

    r = http_request(nginx.port, "/status?json")
    assert r.status == 200, r
    assert "json" in r.headers["content-type"]
    doc = json.loads(r.body)
    assert doc["pool"] == "www" and doc["total processes"] == 2

    r = http_request(nginx.port, "/status?full")
    pool, rows = parse_status_text(r.text)
    assert len(rows) == 2
    assert all(pid_alive(int(row["pid"])) and pid_alive(int(row["app pid"])) for row in rows)
    running = [row for row in rows if row["state"] == "Running"]
    assert len(running) == 1 and running[0]["request URI"].startswith("/status")

    doc = json.loads(http_request(nginx.port, "/status?json&full").body)
    assert len(doc["processes"]) == 2

    # through the keep-alive server too
    r = http_request(nginx.keep_port, "/ping")
    assert r.status == 200 and r.text.strip() == "pong"
    doc = json.loads(http_request(nginx.keep_port, "/status?json").body)
    assert doc["pool"] == "www"
    assert status(php_drover.sock("www"))["accepted conn"] >= 5
