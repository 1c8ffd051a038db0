"""FastCGI protocol behaviour of the worker with a recording app
(apps/recorder.py), access control, and root-only rules."""
import os
import pwd
import grp
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest import (DROVER_BIN, FCGI_ABORT_REQUEST, FCGI_BEGIN_REQUEST, FCGI_END_REQUEST,
                      FCGI_PARAMS, FCGI_RESPONDER, FCGI_STDIN, FCGI_STDOUT, IS_ROOT, TIMEOUT,
                      _read_exact, connect_address, default_params, fcgi_name_value, fcgi_record,
                      fcgi_request, free_port, pool_section, status_full, wait_for)

FCGI_GET_VALUES = 9
FCGI_GET_VALUES_RESULT = 10
FCGI_UNKNOWN_TYPE = 11
FCGI_CANT_MPX_CONN = 1


def read_record(sock):
    _, rtype, rid, clen, plen, _ = struct.unpack(">BBHHBB", _read_exact(sock, 8))
    content = _read_exact(sock, clen) if clen else b""
    if plen:
        _read_exact(sock, plen)
    return rtype, rid, content


def request_head(rid, params, keep_conn=False):
    payload = b"".join(fcgi_name_value(k, v) for k, v in params.items())
    return (fcgi_record(FCGI_BEGIN_REQUEST, rid, struct.pack(">HB5x", FCGI_RESPONDER, 1 if keep_conn else 0))
            + fcgi_record(FCGI_PARAMS, rid, payload) + fcgi_record(FCGI_PARAMS, rid)
            + fcgi_record(FCGI_STDIN, rid))


def parse_pairs(blob):
    out, i = {}, 0
    while i < len(blob):
        n1, n2 = blob[i], blob[i + 1]
        i += 2
        out[blob[i:i + n1].decode()] = blob[i + n1:i + n1 + n2].decode()
        i += n1 + n2
    return out


@pytest.fixture
def recorder(drover_factory, workdir):
    """A Drover pool of one worker running apps/recorder.py; returns (drover, sock, log path)."""
    def start(close_each=False, max_children=1, extra=""):
        d = drover_factory()
        sock = d.sock("rec")
        log = workdir / "records.log"
        env = f"env[RECORD_LOG] = {log}\n" + ("env[CLOSE_EACH] = 1\n" if close_each else "")
        d.write_config([pool_section("rec", sock, max_children=max_children,
                                     command=f"{sys.executable} {workdir / 'www' / 'recorder.py'}",
                                     extra=env + extra)])
        d.start(statuses=[(sock, max_children)])
        return d, sock, log
    return start


def log_lines(log):
    return log.read_text().split() if log.exists() else []


def test_get_values_is_answered_by_the_worker(recorder):
    _, sock, log = recorder(max_children=3)
    names = b"".join(fcgi_name_value(n, "") for n in ("FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"))
    with connect_address(sock) as s:
        s.sendall(fcgi_record(FCGI_GET_VALUES, 0, names))
        rtype, rid, content = read_record(s)
    assert (rtype, rid) == (FCGI_GET_VALUES_RESULT, 0)
    assert parse_pairs(content) == {"FCGI_MAX_CONNS": "3", "FCGI_MAX_REQS": "3", "FCGI_MPXS_CONNS": "0"}
    assert "type9" not in log_lines(log)      # never reached the app


def test_unknown_management_record_gets_unknown_type(recorder):
    _, sock, _ = recorder()
    with connect_address(sock) as s:
        s.sendall(fcgi_record(42, 0, b"x"))
        rtype, rid, content = read_record(s)
    assert (rtype, rid) == (FCGI_UNKNOWN_TYPE, 0)
    assert content[0] == 42


def test_second_request_on_a_busy_connection_is_refused(recorder):
    _, sock, _ = recorder()
    with connect_address(sock) as s:
        s.sendall(request_head(1, {**default_params("/x"), "SLEEP": "1"}, keep_conn=True))
        time.sleep(0.2)
        s.sendall(fcgi_record(FCGI_BEGIN_REQUEST, 2, struct.pack(">HB5x", FCGI_RESPONDER, 1)))
        seen = {}
        while 1 not in seen:
            rtype, rid, content = read_record(s)
            if rtype == FCGI_END_REQUEST:
                seen[rid] = struct.unpack(">IB3x", content)
    assert seen[2][1] == FCGI_CANT_MPX_CONN
    assert seen[1] == (0, 0)


def test_abort_request_is_forwarded_to_the_app(recorder):
    _, sock, log = recorder()
    with connect_address(sock) as s:
        s.sendall(request_head(1, {**default_params("/x"), "SLEEP": "20"}))
        wait_for(lambda: "stdin" in log_lines(log), what="the request to reach the app")
        started = time.monotonic()
        s.sendall(fcgi_record(FCGI_ABORT_REQUEST, 1))
        rtype, rid, content = read_record(s)
    assert (rtype, rid) == (FCGI_END_REQUEST, 1)
    assert time.monotonic() - started < 10
    assert "abort" in log_lines(log)


def test_client_that_leaves_mid_request_aborts_it_in_the_app(recorder):
    _, sock, log = recorder()
    s = connect_address(sock)
    s.sendall(request_head(1, {**default_params("/x"), "SLEEP": "20"}))
    wait_for(lambda: "stdin" in log_lines(log), what="the request to reach the app")
    s.close()
    wait_for(lambda: "abort" in log_lines(log), what="FCGI_ABORT_REQUEST at the app")
    r = fcgi_request(sock, "/x")
    assert r.text == "request 1\n"


def test_app_that_ignores_keep_conn_gets_a_new_connection_each_time(recorder):
    _, sock, log = recorder(close_each=True)
    for _ in range(5):
        assert fcgi_request(sock, "/x").text == "request 1\n"
        time.sleep(0.05)
    for _ in range(5):   # back to back: the closed connection is found by a failed write
        assert fcgi_request(sock, "/x").text == "request 1\n"
    assert log_lines(log).count("connect") == 10


def test_app_keeps_one_connection_when_it_honours_keep_conn(recorder):
    _, sock, log = recorder()
    for _ in range(10):
        assert fcgi_request(sock, "/x").text == "request 1\n"
    assert log_lines(log).count("connect") == 1


def test_allowed_clients_accepts_and_drops_by_cidr(drover_factory, workdir):
    d = drover_factory()
    open_port, closed_port = free_port(), free_port()
    d.write_config([
        pool_section("open", f"127.0.0.1:{open_port}", max_children=1,
                     extra="listen.allowed_clients = 10.0.0.0/8, 127.0.0.0/8"),
        pool_section("closed", f"127.0.0.1:{closed_port}", max_children=1,
                     extra="listen.allowed_clients = 192.0.2.1, 10.0.0.0/8"),
    ])
    d.start(sockets=[])
    wait_for(lambda: d.log_text().count("started") >= 2, what="workers")
    assert fcgi_request(f"127.0.0.1:{open_port}", "/ping").text == "pong\n"
    with socket.create_connection(("127.0.0.1", closed_port), timeout=TIMEOUT) as s:
        s.sendall(request_head(1, default_params("/ping")))
        s.settimeout(TIMEOUT)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass   # closed with our request unread: the kernel sends RST
    wait_for(lambda: "Connection disallowed: IP address '127.0.0.1' has been dropped." in d.log_text(),
             what="the disallowed-client log line")


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_root_needs_user_or_R(drover_factory, workdir):
    d = drover_factory()
    d.write_config([pool_section("www", d.sock("www"), max_children=1)])
    r = subprocess.run([DROVER_BIN, "-t", "-y", str(d.conf)], capture_output=True, text=True)
    assert r.returncode == 78
    assert "[pool www] please specify user and group other than root" in r.stderr
    assert subprocess.run([DROVER_BIN, "-t", "-R", "-y", str(d.conf)], capture_output=True).returncode == 0


@pytest.mark.skipif(not IS_ROOT, reason="needs root")
def test_pool_user_and_listen_owner_group_mode(drover_factory, workdir):
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    d = drover_factory()
    sock = d.sock("www")
    os.chmod(workdir, 0o755)
    d.write_config([pool_section("www", sock, max_children=1, extra=f"""
        user = nobody
        group = {group}
        listen.owner = nobody
        listen.group = {group}
        listen.mode = 0660
    """).replace("listen.mode = 0666\n", "")])
    r = subprocess.run([DROVER_BIN, "-t", "-y", str(d.conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d.start(args=("-F",), statuses=[(sock, 1)])
    st = os.stat(sock)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid, 0o660)
    full = status_full(sock)["processes"][0]
    for pid in (full["pid"], full["app pid"]):
        with open(f"/proc/{pid}/status") as f:
            ids = {l.split(":")[0]: l.split()[1:] for l in f if l.startswith(("Uid", "Gid"))}
        assert ids["Uid"][0] == str(nobody.pw_uid) and ids["Gid"][0] == str(nobody.pw_gid)


def test_app_that_answers_before_reading_the_body(recorder):
    """The app ends the request while body records are still queued for it:
    they are dropped, the rest of the client's body is read and dropped, and
    the kept connection and the pool go on working."""
    _, sock, _ = recorder()
    body = b"x" * (4 << 20)
    with connect_address(sock) as s:
        s.settimeout(TIMEOUT)
        params = {**default_params("/x", method="POST", body_len=len(body)), "EARLY": "1"}
        first = threading.Thread(target=lambda: s.sendall(
            request_head(1, params, keep_conn=True)[:-8] + fcgi_record(FCGI_STDIN, 1, body) + fcgi_record(FCGI_STDIN, 1)))
        first.start()
        got = []
        while True:
            rtype, rid, content = read_record(s)
            if rtype == FCGI_STDOUT:
                got.append(content)
            if rtype == FCGI_END_REQUEST:
                break
        first.join(timeout=TIMEOUT)
        assert b"request 1" in b"".join(got)
        started = time.monotonic()
        s.sendall(request_head(2, default_params("/x"), keep_conn=True))
        while True:
            rtype, rid, content = read_record(s)
            if rtype == FCGI_END_REQUEST and rid == 2:
                break
        assert time.monotonic() - started < 5
    assert fcgi_request(sock, "/x").text == "request 1\n"


def test_record_interleaved_with_held_params_closes_the_connection(recorder):
    """Nothing can be flushed while BEGIN and PARAMS are held back, so a
    management record in between would wait forever: the connection is
    closed instead, and the worker serves the next one."""
    _, sock, _ = recorder()
    with connect_address(sock) as s:
        s.settimeout(TIMEOUT)
        s.sendall(fcgi_record(FCGI_BEGIN_REQUEST, 1, struct.pack(">HB5x", FCGI_RESPONDER, 0))
                  + fcgi_record(FCGI_GET_VALUES, 0, fcgi_name_value("FCGI_MPXS_CONNS", "")))
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
    assert fcgi_request(sock, "/x").text == "request 1\n"
