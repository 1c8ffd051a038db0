"""systemd integration without libsystemd: socket activation under the real
`systemd-socket-activate`, and sd_notify messages read from a NOTIFY_SOCKET
the test binds itself."""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from conftest import (DROVER_BIN, IS_ROOT, PHP_LIMITS, TIMEOUT, fcgi_request, pool_section, wait_for)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
needs_socket_activate = pytest.mark.skipif(SOCKET_ACTIVATE is None,
                                           reason="systemd-socket-activate not installed (Debian package systemd)")

SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")

SYSENV_PHP = "<?php\nheader('Content-Type: text/plain');\nforeach ([%s] as $v) {\n" \
    "  $x = getenv($v); echo $v, '=', $x === false ? '(unset)' : $x, \"\\n\";\n}\n" \
    % ", ".join(f"'{v}'" for v in SYSTEMD_VARIABLES)


def write_sysenv(workdir):
    script = workdir / "www" / "sysenv.php"
    script.write_text(SYSENV_PHP)
    return str(script)


def assert_app_sees_no_systemd_variables(address, workdir):
    r = fcgi_request(address, write_sysenv(workdir))
    assert r.status == 200, r
    for name in SYSTEMD_VARIABLES:
        assert f"{name}=(unset)" in r.text, r.text


def start_activated(d, listen, fdname=None):
    """Runs `systemd-socket-activate -l LISTEN drover -F -y CONF`: the tool
    binds LISTEN, waits for a first connection, then execs Drover in place
    (same pid) with LISTEN_FDS=1, LISTEN_PID and LISTEN_FDNAMES."""
    cmd = [SOCKET_ACTIVATE, "-l", listen, "-E", "PATH", "-E", "HOME"]
    if fdname:
        cmd.append(f"--fdname={fdname}")
    cmd += [DROVER_BIN, "-F"]
    if IS_ROOT:
        cmd.append("-R")
    cmd += ["-y", str(d.conf)]
    env = dict(os.environ)
    env.setdefault("HOME", "/root")
    d.stderr_file = open(d.stderr_path, "ab")
    d.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=d.stderr_file, stderr=d.stderr_file,
                              env=env, cwd=d.workdir, start_new_session=True)
    d.pid = d.proc.pid
    wait_for(lambda: os.path.exists(listen), what=f"systemd-socket-activate to bind {listen}")


def first_request_in_background(address, script):
    """The connection that makes systemd-socket-activate start Drover; it
    waits in the socket's queue until Drover serves it."""
    result = {}

    def run():
        try:
            result["r"] = fcgi_request(address, script, query="name=first", timeout=60)
        except Exception as error:  # noqa: BLE001
            result["error"] = error
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def is_socket(path):
    return os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode)


@needs_socket_activate
def test_socket_activation_matches_the_pool_by_address(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)])
    start_activated(d, sock)
    hello = str(workdir / "www" / "hello.php")
    t, result = first_request_in_background(sock, hello)
    d.wait_ready()
    t.join(timeout=60)
    assert "error" not in result, (result, d.log_text())
    assert result["r"].status == 200 and "name=first" in result["r"].text, result["r"]
    inode = os.stat(sock).st_ino
    for i in range(10):
        r = fcgi_request(sock, hello, query=f"name=n{i}")
        assert r.status == 200 and f"name=n{i}" in r.text, r
    assert os.stat(sock).st_ino == inode, "Drover must use the inherited socket, not bind a new one"
    assert_app_sees_no_systemd_variables(sock, workdir)
    log = d.log_text()
    assert "cannot listen" not in log and "another instance" not in log, log
    assert "matches no pool" not in log, log
    # A reload hands the inherited socket on: same inode, still never unlinked.
    d.send(signal.SIGUSR2)
    wait_for(lambda: "reload complete" in d.log_text(), what="reload complete")
    r = fcgi_request(sock, hello, query="name=reloaded")
    assert r.status == 200 and "name=reloaded" in r.text, r
    assert os.stat(sock).st_ino == inode
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0, d.log_text()
    assert is_socket(sock), "the socket systemd owns must survive Drover's exit"
    assert os.stat(sock).st_ino == inode


@needs_socket_activate
def test_socket_activation_matches_the_pool_by_name(drover_factory, workdir):
    d = drover_factory()
    configured = d.sock("www")
    activated = str(workdir / "activated.sock")
    d.write_config([pool_section("www", configured, max_children=1, extra=PHP_LIMITS)])
    start_activated(d, activated, fdname="www")
    hello = str(workdir / "www" / "hello.php")
    t, result = first_request_in_background(activated, hello)
    d.wait_ready()
    t.join(timeout=60)
    assert "error" not in result, (result, d.log_text())
    assert result["r"].status == 200, result["r"]
    assert not os.path.exists(configured), "the named socket replaces the configured address"
    assert f"is used for listen = {configured}" in d.log_text()
    d.send(signal.SIGQUIT)
    assert d.wait_exit() == 0, d.log_text()
    assert is_socket(activated)


@needs_socket_activate
def test_socket_activation_closes_sockets_no_pool_wants(drover_factory, workdir):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=1, extra=PHP_LIMITS)])
    stray = str(workdir / "stray.sock")
    start_activated(d, stray)
    # The pool opens its own socket; the inherited one is closed with a warning.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(stray)    # starts Drover
        d.wait_ready(sockets=[sock])
        assert "matches no pool's listen address; closing it" in d.log_text()
    r = fcgi_request(sock, str(workdir / "www" / "hello.php"))
    assert r.status == 200, r
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0, d.log_text()
    assert not os.path.exists(sock), "Drover's own socket is still removed"


class NotifyReader:
    """A NOTIFY_SOCKET bound by the test (AF_UNIX, SOCK_DGRAM)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self.messages.append(fields)

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def wait(self, predicate, what):
        return wait_for(lambda: next((i for i, m in enumerate(self.snapshot()) if predicate(m)), None) is not None,
                        what=what)

    def index(self, predicate, start=0):
        return next(i for i, m in enumerate(self.snapshot()) if i >= start and predicate(m))

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def notify_reader(workdir):
    reader = NotifyReader(str(workdir / "notify.sock"))
    yield reader
    reader.close()


def test_notify_ready_status_stopping_in_order(drover_factory, workdir, notify_reader):
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra=PHP_LIMITS)],
                   global_extra="systemd_interval = 1")
    d.start(statuses=[(sock, 2)], extra_env={"NOTIFY_SOCKET": notify_reader.path,
                                             "WATCHDOG_USEC": "1000000"})
    notify_reader.wait(lambda m: m.get("READY") == "1", "READY=1")
    ready = notify_reader.index(lambda m: m.get("READY") == "1")
    message = notify_reader.snapshot()[ready]
    assert message.get("MAINPID") == str(d.pid), message
    assert message.get("STATUS", "").startswith("Processes active: "), message
    for _ in range(3):
        assert fcgi_request(sock, str(workdir / "www" / "hello.php")).status == 200
    # The periodic status line, php-fpm's wording, with the requests counted.
    notify_reader.wait(lambda m: "STATUS" in m and "READY" not in m
                       and " Requests: " in m["STATUS"] and "Requests: 0," not in m["STATUS"],
                       "a periodic STATUS= with the requests")
    status_index = notify_reader.index(lambda m: "STATUS" in m and "READY" not in m, start=ready + 1)
    text = notify_reader.snapshot()[status_index]["STATUS"]
    assert re.fullmatch(r"Processes active: \d+, idle: \d+, Requests: \d+, slow: \d+, Traffic: [0-9.e+]+ req/sec",
                        text), text
    # WATCHDOG_USEC=1s: WATCHDOG=1 every half second.
    notify_reader.wait(lambda m: m.get("WATCHDOG") == "1", "WATCHDOG=1")
    assert_app_sees_no_systemd_variables(sock, workdir)
    # A reload: RELOADING=1 with the monotonic clock, then READY=1 again
    # once the new generation serves (systemd's notify-reload protocol).
    before_reload = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.send(signal.SIGUSR2)
    notify_reader.wait(lambda m: m.get("RELOADING") == "1", "RELOADING=1")
    reloading = notify_reader.index(lambda m: m.get("RELOADING") == "1")
    notify_reader.wait(lambda m: m.get("READY") == "1" and notify_reader.snapshot().index(m) > reloading,
                       "READY=1 after the reload")
    ready_again = notify_reader.index(lambda m: m.get("READY") == "1", start=reloading + 1)
    usec = int(notify_reader.snapshot()[reloading]["MONOTONIC_USEC"])
    assert before_reload <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert fcgi_request(sock, str(workdir / "www" / "hello.php")).status == 200
    d.send(signal.SIGTERM)
    notify_reader.wait(lambda m: m.get("STOPPING") == "1", "STOPPING=1")
    assert d.wait_exit() == 0, d.log_text()
    messages = notify_reader.snapshot()
    stopping = notify_reader.index(lambda m: m.get("STOPPING") == "1")
    assert ready < status_index < reloading < ready_again < stopping, messages
    assert sum(1 for m in messages if m.get("STOPPING") == "1") == 1, messages
    assert sum(1 for m in messages if m.get("READY") == "1") == 2, messages
    assert sum(1 for m in messages if m.get("RELOADING") == "1") == 1, messages


def test_notify_on_an_abstract_socket(drover_factory, workdir):
    name = f"drover-test-notify-{os.getpid()}-{time.monotonic_ns()}"
    reader = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    reader.bind("\0" + name)
    reader.settimeout(TIMEOUT)
    try:
        d = drover_factory()
        sock = d.sock("www")
        d.write_config([pool_section("www", sock, max_children=1, extra=PHP_LIMITS)])
        d.start(extra_env={"NOTIFY_SOCKET": "@" + name})
        first = reader.recv(65536).decode()
        assert "READY=1" in first.split("\n") and f"MAINPID={d.pid}" in first.split("\n"), first
        d.send(signal.SIGQUIT)
        assert "STOPPING=1" in reader.recv(65536).decode().split("\n")
        assert d.wait_exit() == 0, d.log_text()
    finally:
        reader.close()
