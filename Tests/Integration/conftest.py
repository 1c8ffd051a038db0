"""Shared fixtures and helpers for Drover's integration tests.

Everything here runs real programs: the `drover` binary, php-cgi, fcgiwrap,
perl, nginx and curl. Only the Python standard library and pytest are used.

Binaries are found through the environment (DROVER_BIN, DROVERCTL_BIN),
defaulting to the repository's `.build/debug/`.
"""

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
APPS = HERE / "apps"

DROVER_BIN = os.environ.get("DROVER_BIN") or str(REPO / ".build" / "debug" / "drover")
DROVERCTL_BIN = os.environ.get("DROVERCTL_BIN") or str(REPO / ".build" / "debug" / "droverctl")
NGINX_BIN = shutil.which("nginx") or "/usr/sbin/nginx"
FCGIWRAP_BIN = shutil.which("fcgiwrap") or "/usr/sbin/fcgiwrap"
PERL_BIN = shutil.which("perl") or "/usr/bin/perl"
CGI_FCGI_BIN = shutil.which("cgi-fcgi")
CURL_BIN = shutil.which("curl")

IS_ROOT = os.geteuid() == 0
READY_LINE = "ready to handle connections"

# Generous default: CI machines are slow and debug builds are slower.
TIMEOUT = 30.0


# ---------------------------------------------------------------------------
# small utilities
# ---------------------------------------------------------------------------

class GiveUp(AssertionError):
    """Raised inside a wait_for predicate: stop waiting, fail at once."""


def wait_for(predicate, timeout=TIMEOUT, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value; returns that value."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except GiveUp:
            raise
        except Exception as error:  # noqa: BLE001 - retried until the deadline
            last_error = error
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def big_pattern_sha256(mb):
    """SHA-256 of what apps/big.php writes for ?mb=MB."""
    h = hashlib.sha256()
    for i in range(mb * 16):
        h.update(bytes([i % 251]) * 65536)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

def proc_stat(pid):
    """(state, ppid, pgrp, starttime) from /proc/PID/stat, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[2]), int(rest[19])


def pid_alive(pid):
    """True if `pid` exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def all_pids():
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root):
    """Every live descendant of `root` (by parent links in /proc)."""
    children = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            children.setdefault(st[1], []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def children_of(pid):
    return [p for p in all_pids() if (st := proc_stat(p)) and st[1] == pid and st[0] != "Z"]


AGENT_COMM = "drover: agent"


def agent_of(master):
    """The agent process of a Drover master (its child named 'drover: agent')."""
    return next((p for p in children_of(master) if proc_comm(p) == AGENT_COMM), None)


def workers_of(master):
    """A master's worker processes: its children but the agent."""
    return [p for p in children_of(master) if proc_comm(p) != AGENT_COMM]


def worker_descendants(master):
    """Workers and everything below them (apps and their children), without the agent."""
    return [p for p in descendants(master) if p != agent_of(master)]


def rss_kib(pid):
    """(VmRSS, RssAnon) of `pid` in KiB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon"):
                values[key] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("RssAnon", 0)


def is_sleeping_in_nanosleep(pid):
    """Whether `pid` is blocked in (clock_)nanosleep, e.g. php's usleep()."""
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return "nanosleep" in f.read()
    except OSError:
        return False


def wait_sleeping_app(pids, timeout=TIMEOUT):
    """The first of `pids` found sleeping in nanosleep (a sleep.php request
    being run). Uses /proc, not the status page, so that it works even when
    every worker is busy."""
    def find():
        return next((pid for pid in pids if is_sleeping_in_nanosleep(pid)), None)
    return wait_for(find, timeout=timeout, interval=0.02, what="an app running sleep.php")


def kill_quietly(pid, sig=signal.SIGKILL):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def kill_group_quietly(pgid, sig=signal.SIGKILL):
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def unix_socket_path_of_fd(pid, fd):
    """The bound path of a listening Unix socket open as `fd` in `pid`."""
    target = os.readlink(f"/proc/{pid}/fd/{fd}")
    assert target.startswith("socket:["), target
    inode = target[len("socket:["):-1]
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[6] == inode and len(parts) >= 8:
                return parts[7]
    raise AssertionError(f"socket inode {inode} of pid {pid} has no path in /proc/net/unix")


def connect_unix_as(path, user, groups=()):
    """Tries to connect to Unix socket `path` as `user` (a pwd entry) with
    only the supplementary group ids `groups`, in a fork (needs root).
    Returns "connected", "denied" or "error"."""
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            os.setgroups(list(groups))
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                code = 0
            except PermissionError:
                code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return {0: "connected", 1: "denied"}.get(os.waitstatus_to_exitcode(status), "error")


class RSSSampler:
    """Samples the peak RSS of some pids in a background thread."""

    def __init__(self, pids, interval=0.02):
        self.pids = list(pids)
        self.interval = interval
        self.peak = {pid: (0, 0) for pid in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    rss, anon = rss_kib(pid)
                    old = self.peak[pid]
                    self.peak[pid] = (max(old[0], rss), max(old[1], anon))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------
# a FastCGI client (the protocol, written out, so that tests can also send
# garbage and watch the connection)
# ---------------------------------------------------------------------------

FCGI_BEGIN_REQUEST = 1
FCGI_ABORT_REQUEST = 2
FCGI_END_REQUEST = 3
FCGI_PARAMS = 4
FCGI_STDIN = 5
FCGI_STDOUT = 6
FCGI_STDERR = 7
FCGI_RESPONDER = 1
FCGI_KEEP_CONN = 1


def fcgi_record(rtype, request_id, content=b"", version=1):
    out = bytearray()
    view = memoryview(content)
    first = True
    while first or view:
        first = False
        chunk, view = view[:65535], view[65535:]
        padding = (-len(chunk)) % 8
        out += struct.pack(">BBHHBB", version, rtype, request_id, len(chunk), padding, 0)
        out += chunk
        out += b"\0" * padding
    return bytes(out)


def fcgi_name_value(name, value):
    name, value = name.encode(), value.encode()
    out = bytearray()
    for item in (name, value):
        n = len(item)
        out += bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)
    return bytes(out + name + value)


class FcgiResponse:
    def __init__(self, stdout, stderr, app_status, protocol_status):
        self.raw = stdout
        self.stderr = stderr
        self.app_status = app_status
        self.protocol_status = protocol_status
        head, sep, body = stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, body = stdout.partition(b"\n\n")
        self.headers = {}
        if sep:
            for line in head.decode("latin-1").splitlines():
                k, _, v = line.partition(":")
                self.headers[k.strip().lower()] = v.strip()
            self.body = body
        else:
            self.body = stdout
        status = self.headers.get("status", "200")
        self.status = int(status.split()[0]) if status.split() else 200

    @property
    def text(self):
        return self.body.decode(errors="replace")

    def __repr__(self):
        return (f"FcgiResponse(status={self.status}, app_status={self.app_status}, "
                f"protocol_status={self.protocol_status}, body={self.body[:200]!r})")


def connect_address(address, timeout=TIMEOUT):
    """Connects to a Unix path, 'host:port', '[v6]:port' or a (host, port) tuple."""
    if isinstance(address, tuple):
        return socket.create_connection(address, timeout=timeout)
    address = str(address)
    if address.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address)
        return s
    m = re.fullmatch(r"\[(.+)\]:(\d+)", address) or re.fullmatch(r"([^:]+):(\d+)", address)
    if not m:
        raise ValueError(f"bad address {address}")
    return socket.create_connection((m.group(1), int(m.group(2))), timeout=timeout)


def default_params(script, method="GET", query="", body_len=0, content_type=None, uri=None):
    # /var/www/x.php -> /x.php; /status and /ping stay what they are.
    script_name = "/" + os.path.basename(script)
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "drover-tests",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "localhost",
        "SERVER_ADDR": "127.0.0.1",
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "12345",
        "REQUEST_METHOD": method,
        "SCRIPT_FILENAME": script,
        "SCRIPT_NAME": script_name,
        "DOCUMENT_URI": script_name,
        "DOCUMENT_ROOT": os.path.dirname(script) or "/",
        "REQUEST_URI": uri or (script_name + ("?" + query if query else "")),
        "QUERY_STRING": query,
        "REDIRECT_STATUS": "200",
        "HTTP_HOST": "localhost",
    }
    if body_len or method == "POST":
        params["CONTENT_LENGTH"] = str(body_len)
        params["CONTENT_TYPE"] = content_type or "application/x-www-form-urlencoded"
    return params


def _read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def fcgi_exchange(sock, params, body=b"", request_id=1, keep_conn=False, on_stdout=None, one_write=False):
    """One request on an open socket. Returns FcgiResponse.

    `body` may be bytes or an iterable of byte chunks; it is sent from a
    thread so that large bodies and large responses can overlap.
    `on_stdout`, if given, receives STDOUT chunks instead of collecting them.
    `one_write` sends a small request in one write, as nginx does, instead
    of the head and each STDIN record apart.
    """
    payload = b"".join(fcgi_name_value(k, v) for k, v in params.items())
    head = fcgi_record(FCGI_BEGIN_REQUEST, request_id,
                       struct.pack(">HB5x", FCGI_RESPONDER, FCGI_KEEP_CONN if keep_conn else 0))
    head += fcgi_record(FCGI_PARAMS, request_id, payload) + fcgi_record(FCGI_PARAMS, request_id)
    chunks = [body] if isinstance(body, (bytes, bytearray)) else body
    send_error = []

    def send_all():
        try:
            if one_write:
                sock.sendall(head + b"".join(fcgi_record(FCGI_STDIN, request_id, c) for c in chunks if c)
                             + fcgi_record(FCGI_STDIN, request_id))
                return
            sock.sendall(head)
            for chunk in chunks:
                if chunk:
                    sock.sendall(fcgi_record(FCGI_STDIN, request_id, chunk))
            sock.sendall(fcgi_record(FCGI_STDIN, request_id))
        except OSError as error:
            send_error.append(error)

    small = isinstance(body, (bytes, bytearray)) and len(body) < 65536
    sender = None
    if small:
        send_all()
    else:
        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
    stdout, stderr = bytearray(), bytearray()
    try:
        while True:
            version, rtype, rid, clen, plen, _ = struct.unpack(">BBHHBB", _read_exact(sock, 8))
            content = _read_exact(sock, clen) if clen else b""
            if plen:
                _read_exact(sock, plen)
            if rid != request_id:
                continue
            if rtype == FCGI_STDOUT:
                if on_stdout is not None:
                    on_stdout(content)
                else:
                    stdout += content
            elif rtype == FCGI_STDERR:
                stderr += content
            elif rtype == FCGI_END_REQUEST:
                app_status, protocol_status = struct.unpack(">IB3x", content)
                return FcgiResponse(bytes(stdout), bytes(stderr), app_status, protocol_status)
    finally:
        if sender is not None:
            sender.join(timeout=TIMEOUT)


def fcgi_request(address, script, method="GET", query="", body=b"", params=None, timeout=TIMEOUT,
                 content_type=None, keep_conn=False, on_stdout=None, body_len=None, one_write=False):
    """Sends one FastCGI request to `address`; returns an FcgiResponse."""
    if body_len is None:
        body_len = len(body) if isinstance(body, (bytes, bytearray)) else 0
    p = default_params(script, method=method, query=query, body_len=body_len, content_type=content_type)
    if params:
        p.update(params)
    with contextlib.closing(connect_address(address, timeout)) as sock:
        return fcgi_exchange(sock, p, body, keep_conn=keep_conn, on_stdout=on_stdout, one_write=one_write)


# ---------------------------------------------------------------------------
# status pages
# ---------------------------------------------------------------------------

def parse_status_text(text):
    """php-fpm's text status: (pool fields, [per-process fields])."""
    blocks = re.split(r"\n\*{5,}\n", text.strip("\n"))
    def fields(block):
        out = {}
        for line in block.splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
        return out
    return fields(blocks[0]), [fields(b) for b in blocks[1:]]


def status(address, query="json", path="/status"):
    """The status page straight from the pool socket (parsed when JSON)."""
    r = fcgi_request(address, path, query=query)
    assert r.status == 200, r
    if "json" in query.split("&"):
        return json.loads(r.body)
    return r


def status_full(address, path="/status"):
    return status(address, "json&full", path)


def worker_pids(address, path="/status"):
    return sorted(p["pid"] for p in status_full(address, path)["processes"])


def app_pids(address, path="/status"):
    return sorted(p["app pid"] for p in status_full(address, path)["processes"])


# ---------------------------------------------------------------------------
# Drover
# ---------------------------------------------------------------------------

def pool_section(name, listen, max_children=2, command=None, status_path="/status",
                 ping_path="/ping", extra=""):
    lines = [f"[{name}]", f"listen = {listen}", "listen.mode = 0666", "pm = static",
             f"pm.max_children = {max_children}"]
    if status_path:
        lines.append(f"pm.status_path = {status_path}")
    if ping_path:
        lines.append(f"ping.path = {ping_path}")
    if command:
        lines.append(f"command = {command}")
    text = "\n".join(lines) + "\n"
    if extra:
        text += "\n".join(line.strip() for line in extra.strip("\n").splitlines()) + "\n"
    return text


class Drover:
    """One Drover instance (master + workers + apps) in a work directory."""

    def __init__(self, workdir, name="drover"):
        self.workdir = Path(workdir)
        self.name = name
        self.conf = self.workdir / f"{name}.conf"
        self.error_log = self.workdir / f"{name}-error.log"
        self.pid_file = self.workdir / f"{name}.pid"
        self.stderr_path = self.workdir / f"{name}-stderr.log"
        self.proc = None
        self.pid = None
        self.known_pids = set()
        self.returncode = None

    def sock(self, pool="www"):
        return str(self.workdir / f"{self.name}-{pool}.sock")

    def write_config(self, pools, global_extra="", error_log=True, pid=True, daemonize=False):
        lines = ["[global]"]
        if error_log:
            lines.append(f"error_log = {self.error_log}")
        lines.append(f"daemonize = {'yes' if daemonize else 'no'}")
        if pid:
            lines.append(f"pid = {self.pid_file}")
        lines.append("process_control_timeout = 10s")
        if global_extra:
            lines += [line.strip() for line in global_extra.strip("\n").splitlines()]
        text = "\n".join(lines) + "\n\n" + "\n".join(pools)
        self.conf.write_text(text)
        return self.conf

    def log_text(self):
        text = ""
        for path in (self.error_log, self.stderr_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace")
        return text

    def start(self, args=("-F",), wait_ready=True, sockets=(), statuses=(), extra_env=None):
        """Starts `drover ARGS -R -y CONF`; waits for the ready line, the
        listening sockets and (for `statuses`: [(address, max_children)]) for
        every worker to run its app."""
        cmd = [DROVER_BIN, *args]
        if IS_ROOT:
            cmd.append("-R")
        cmd += ["-y", str(self.conf)]
        env = dict(os.environ)
        env["DROVER_TEST_OUTER"] = "outer-environment"
        env.update(extra_env or {})
        self.stderr_file = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.stderr_file,
                                     stderr=self.stderr_file, env=env, cwd=self.workdir,
                                     start_new_session=True)
        self.pid = self.proc.pid
        if wait_ready:
            self.wait_ready(sockets=sockets, statuses=statuses)
        return self

    def wait_ready(self, sockets=(), statuses=()):
        def ready():
            if self.proc is not None and self.proc.poll() is not None:
                raise GiveUp(f"drover exited with {self.proc.returncode}:\n{self.log_text()}")
            return READY_LINE in self.log_text()
        wait_for(ready, what=f"'{READY_LINE}' from {self.name}")
        for path in sockets:
            wait_for(lambda: os.path.exists(path), what=f"socket {path}")
        for address, count in statuses:
            self.wait_workers(address, count)
        self.remember_pids()

    def wait_workers(self, address, count, path="/status"):
        """Waits until `count` workers each run an app (and answers status)."""
        def full():
            doc = status_full(address, path)
            rows = doc["processes"]
            return len(rows) == count and all(r["app pid"] and pid_alive(r["app pid"]) for r in rows) \
                and doc["total processes"] == count and doc
        return wait_for(full, what=f"{count} workers with apps on {address}")

    def remember_pids(self):
        if self.pid and pid_alive(self.pid):
            self.known_pids.update(descendants(self.pid))

    def send(self, sig):
        self.remember_pids()
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=TIMEOUT):
        self.returncode = self.proc.wait(timeout=timeout)
        self.stderr_file.close()
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=TIMEOUT):
        """Stops the master (if still running) and kills anything left."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.remember_pids()
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_quietly(self.pid)
                self.proc.wait(timeout=10)
        if self.returncode is None:
            self.returncode = self.proc.returncode
        with contextlib.suppress(Exception):
            self.stderr_file.close()
        self.kill_strays()
        return self.returncode

    def kill_strays(self):
        """Kills every process this instance ever started that is still alive."""
        for pid in sorted(self.known_pids):
            if pid_alive(pid):
                kill_group_quietly(pid)
                kill_quietly(pid)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "drover_bug(description): the test asserts correct behaviour that the current "
        "Drover does not have yet (a known, reported bug); it is expected to fail until fixed")


@pytest.fixture
def workdir():
    """A short, private temp dir (Unix socket paths must stay < 108 bytes),
    with the helper apps copied into www/."""
    path = Path(tempfile.mkdtemp(prefix="drv.", dir="/tmp"))
    os.chmod(path, 0o755)
    www = path / "www"
    shutil.copytree(APPS, www)
    (www / "cgi-bin").mkdir()
    for script in list(www.iterdir()):
        if script.suffix in (".cgi", ".pl"):
            script.chmod(0o755)
        if script.suffix == ".cgi":
            shutil.copy2(script, www / "cgi-bin" / script.name)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def drover_factory(workdir):
    """Returns new_drover(name="drover") -> Drover; every instance is stopped
    at teardown and its processes killed."""
    instances = []

    def new_drover(name="drover"):
        d = Drover(workdir, name)
        instances.append(d)
        return d

    yield new_drover
    for d in instances:
        d.stop()


@pytest.fixture
def php_drover(drover_factory, workdir):
    """A running Drover with a php-cgi pool `www` (2 workers) and a
    fcgiwrap pool `cgi` (2 workers)."""
    d = drover_factory()
    www, cgi = d.sock("www"), d.sock("cgi")
    d.write_config([
        pool_section("www", www, max_children=2, extra=PHP_LIMITS),
        pool_section("cgi", cgi, max_children=2, command=f"{FCGIWRAP_BIN} -f",
                     status_path="/cgi-status", ping_path="/cgi-ping"),
    ])
    d.start(statuses=[(www, 2)], sockets=[www, cgi])
    d.wait_workers(cgi, 2, path="/cgi-status")
    return d


PHP_LIMITS = """
php_admin_value[post_max_size] = 200M
php_admin_value[upload_max_filesize] = 200M
php_admin_value[memory_limit] = 256M
php_admin_value[output_buffering] = 0
"""


# ---------------------------------------------------------------------------
# nginx
# ---------------------------------------------------------------------------

# Everything but the servers: logs, pid and temporary files in the work directory.
NGINX_HEAD = """\
worker_processes 1;
error_log {dir}/nginx-error.log info;
pid {dir}/nginx.pid;
{user}
events {{ worker_connections 4096; }}

http {{
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/nginx-tmp/client_body;
    fastcgi_temp_path {dir}/nginx-tmp/fastcgi;
    proxy_temp_path {dir}/nginx-tmp/proxy;
    uwsgi_temp_path {dir}/nginx-tmp/uwsgi;
    scgi_temp_path {dir}/nginx-tmp/scgi;
    client_max_body_size 200m;
"""

NGINX_CONF = NGINX_HEAD + """\
    fastcgi_read_timeout 60s;
    fastcgi_send_timeout 60s;
    fastcgi_connect_timeout 10s;

    upstream drover_keepalive {{
        server unix:{www};
        keepalive 8;
    }}

    # The plain server: one connection to Drover per request.
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        root {root};

        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{www};
        }}
        location ~ ^/(status|ping)$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $fastcgi_script_name;
            fastcgi_pass unix:{www};
        }}
        location /cgi-bin/ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{cgi};
        }}
    }}

    # fastcgi_keep_conn on + upstream keepalive: connections to Drover are reused.
    server {{
        listen 127.0.0.1:{keep_port};
        server_name localhost;
        root {root};
        keepalive_requests 100000;

        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_keep_conn on;
            fastcgi_pass drover_keepalive;
        }}
        location ~ ^/(status|ping)$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $fastcgi_script_name;
            fastcgi_keep_conn on;
            fastcgi_pass drover_keepalive;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, workdir, www_sock, cgi_sock):
        self.dir = Path(workdir)
        self.port = free_port()
        self.keep_port = free_port()
        while self.keep_port == self.port:
            self.keep_port = free_port()
        self.conf = self.dir / "nginx.conf"
        (self.dir / "nginx-tmp").mkdir(exist_ok=True)
        self.conf.write_text(NGINX_CONF.format(
            dir=self.dir, www=www_sock, cgi=cgi_sock, port=self.port, keep_port=self.keep_port,
            root=self.dir / "www", user=""))
        self.proc = None

    def start(self):
        cmd = [NGINX_BIN, "-c", str(self.conf), "-p", str(self.dir), "-e", str(self.dir / "nginx-error.log"),
               "-g", "daemon off; master_process on;"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise GiveUp(f"nginx exited: {self.proc.stderr.read().decode()}\n"
                                     f"{self.error_log()}")
            for port in (self.port, self.keep_port):
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    pass
            return True
        wait_for(listening, what="nginx to listen")
        return self

    def error_log(self):
        with contextlib.suppress(OSError):
            return (self.dir / "nginx-error.log").read_text(errors="replace")
        return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                kill_group_quietly(self.proc.pid)
                self.proc.wait(timeout=10)
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()

    def url(self, path, keep=False):
        return f"http://127.0.0.1:{self.keep_port if keep else self.port}{path}"


SITE_CONF = NGINX_HEAD + """\
    include /etc/nginx/mime.types;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
{server}
    }}
}}
"""


class NginxSite(Nginx):
    """nginx with one server whose body (root, locations) the test writes,
    on a free port; `user` runs its workers as that user (root only)."""

    def __init__(self, workdir, server, user=None):
        self.dir = Path(workdir)
        self.port = self.keep_port = free_port()
        self.conf = self.dir / "nginx-site.conf"
        (self.dir / "nginx-tmp").mkdir(exist_ok=True)
        # Relative includes (Debian's snippets/fastcgi-php.conf includes
        # fastcgi.conf) are looked up beside the configuration file.
        for name in ("fastcgi.conf", "fastcgi_params", "snippets"):
            link = self.dir / name
            if os.path.exists(f"/etc/nginx/{name}") and not os.path.lexists(link):
                link.symlink_to(f"/etc/nginx/{name}")
        self.conf.write_text(SITE_CONF.format(dir=self.dir, port=self.port, server=server,
                                              user=f"user {user};" if user else ""))
        self.proc = None


@pytest.fixture
def nginx(php_drover, workdir):
    """nginx in front of `php_drover` (pools www and cgi)."""
    n = Nginx(workdir, php_drover.sock("www"), php_drover.sock("cgi")).start()
    yield n
    n.stop()


class HTTPResult:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self):
        return self.body.decode(errors="replace")

    def __repr__(self):
        return f"HTTPResult(status={self.status}, body={self.body[:200]!r})"


def http_request(port, path, method="GET", body=None, headers=None, timeout=TIMEOUT, conn=None,
                 sink=None):
    """One HTTP/1.1 request to 127.0.0.1:port. With `sink`, the body is passed
    to it in chunks instead of being collected. With `conn`, that
    http.client connection is reused (keep-alive)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        if sink is None:
            data = resp.read()
        else:
            data = b""
            while chunk := resp.read(1 << 20):
                sink(chunk)
        return HTTPResult(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        if own:
            conn.close()
