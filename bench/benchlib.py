"""bench/benchlib.py: what bench/run and bench/scaling share.

Finding or building Drover (with retries: the tree is edited concurrently),
the generated php.ini every PHP backend loads, Drover and php-fpm
configurations, nginx configuration and start, backend start with socket
waiting, stopping one backend, cleanup of every process a run started (the
script is a child subreaper), CPU and memory figures from /proc, wrk output
parsing, and the main() wrapper that turns errors, Ctrl-C, SIGTERM and SIGHUP
into a clean exit. Python 3 standard library only.
"""

import argparse
import ctypes
import datetime
import hashlib
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
PR_SET_CHILD_SUBREAPER = 36

HELLO_PHP = '<?php echo "Hello, World!\\n";\n'
HELLO_PHP_BODY = "Hello, World!\n"

FASTCGI_PARAMS = """\
fastcgi_param  QUERY_STRING       $query_string;
fastcgi_param  REQUEST_METHOD     $request_method;
fastcgi_param  CONTENT_TYPE       $content_type;
fastcgi_param  CONTENT_LENGTH     $content_length;
fastcgi_param  SCRIPT_NAME        $fastcgi_script_name;
fastcgi_param  REQUEST_URI        $request_uri;
fastcgi_param  DOCUMENT_URI       $document_uri;
fastcgi_param  DOCUMENT_ROOT      $document_root;
fastcgi_param  SERVER_PROTOCOL    $server_protocol;
fastcgi_param  REQUEST_SCHEME     $scheme;
fastcgi_param  GATEWAY_INTERFACE  CGI/1.1;
fastcgi_param  SERVER_SOFTWARE    nginx/$nginx_version;
fastcgi_param  REMOTE_ADDR        $remote_addr;
fastcgi_param  REMOTE_PORT        $remote_port;
fastcgi_param  SERVER_ADDR        $server_addr;
fastcgi_param  SERVER_PORT        $server_port;
fastcgi_param  SERVER_NAME        $server_name;
fastcgi_param  REDIRECT_STATUS    200;
"""

# Debian's php.ini; cgi/ and fpm/ ship the same file, the SAPIs read different paths.
BASE_PHP_INI = "/etc/php/8.2/cgi/php.ini"
FPM_PHP_INI = "/etc/php/8.2/fpm/php.ini"


class BenchError(Exception):
    pass


def log(msg=""):
    print(msg, flush=True)


def now():
    return time.monotonic()


def which(name, hint=None):
    path = shutil.which(name)
    if not path:
        raise BenchError(f"{name} not found on PATH" + (f" (apt-get install -y {hint})" if hint else ""))
    return path


def read(path, default=""):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return default


def write(path, text, mode=None):
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)


def tail(path, n=25):
    lines = read(path).splitlines()
    return "\n".join("    " + l for l in lines[-n:])


def cmdline_str(argv, env=None):
    parts = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join(parts + [shlex.join(argv)])


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def duration_seconds(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", text)
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 10s, 1m)")
    return float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


def first_line(argv):
    """First line of a tool's version output (stdout or stderr)."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return ((r.stdout or "") + (r.stderr or "")).strip().splitlines()[0]
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


def git_state():
    """(short HEAD, number of uncommitted changes in Sources/ and Package.swift)."""
    git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "Sources", "Package.swift"],
                           capture_output=True, text=True).stdout.strip().splitlines()
    return git, len(dirty)


def host_line():
    """One line about the machine: name, kernel, CPUs, RAM."""
    import platform
    cpu = ""
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_total = read("/proc/meminfo").splitlines()[0].split()[1] if read("/proc/meminfo") else "?"
    return (f"host: {platform.node()}  kernel {platform.release()}  {os.cpu_count()} CPU(s) {cpu}  "
            f"RAM {int(mem_total) // 1024 if mem_total.isdigit() else '?'} MiB")


# ---------------------------------------------------------------- /proc helpers

def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        out += [int(x) for x in read(f"/proc/{pid}/task/{task}/children").split()]
    return out


def descendants(pid):
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def alive(pid):
    st = read(f"/proc/{pid}/stat")
    if not st:
        return False
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def proc_mem(pid):
    """kB figures from /proc/PID/status and /proc/PID/smaps_rollup."""
    m = {"pid": pid, "comm": read(f"/proc/{pid}/comm").strip(),
         "cmd": read(f"/proc/{pid}/cmdline").replace("\0", " ").strip()}
    for line in read(f"/proc/{pid}/status").splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            m[k] = int(v.split()[0])
    for line in read(f"/proc/{pid}/smaps_rollup").splitlines():
        k, _, v = line.partition(":")
        if k in ("Pss", "Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty"):
            m[k] = int(v.split()[0])
    m["Private"] = m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
    return m


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """utime + stime of the given processes, in seconds (from /proc/PID/stat)."""
    total = 0
    for pid in pids:
        st = read(f"/proc/{pid}/stat")
        if st:
            f = st.rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def sched_seconds(pid):
    """Time on a CPU of every thread of `pid`, in seconds, from
    /proc/PID/task/*/schedstat (nanoseconds; finer than stat's clock ticks)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for t in tasks:
        f = read(f"/proc/{pid}/task/{t}/schedstat").split()
        if f:
            total += int(f[0])
    return total / 1e9


def kb(v):
    return f"{v:,} kB" if isinstance(v, int) else "n/a"


# ------------------------------------------------------------------ wrk output

def parse_wrk(text):
    def to_ms(v, unit):
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    r = {"rps": None, "lat": {}, "requests": None, "non2xx": 0,
         "sock": {"connect": 0, "read": 0, "write": 0, "timeout": 0}, "bytes_per_req": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        r["lat"][int(m.group(1))] = to_ms(m.group(2), m.group(3))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", text)
    if m:
        r["requests"] = int(m.group(1))
        scale = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}.get(m.group(5), 1)
        if r["requests"]:
            r["bytes_per_req"] = float(m.group(4)) * scale / r["requests"]
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["sock"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups())))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        r["non2xx"] = int(m.group(1))
    return r


# ------------------------------------------------------------- config text

def drover_conf(header, logfile, sock, pm_lines, command=None, php_ini=None, php_scan_dir=None,
                pool="bench", global_lines=()):
    """A Drover configuration with one pool. Without `command` the pool runs
    php-cgi, pointed at `php_ini` and `php_scan_dir` through env[]."""
    lines = [header, "[global]", "daemonize = no", f"error_log = {logfile}", *global_lines, "",
             f"[{pool}]", f"listen = {sock}", "listen.mode = 0666", *pm_lines]
    if command:
        lines.append(f"command = {command}")
    else:
        lines.append("; no command: php-cgi (Drover sets PHP_FCGI_MAX_REQUESTS=0 for it)")
        lines += [f"env[PHPRC] = {php_ini}", f"env[PHP_INI_SCAN_DIR] = {php_scan_dir}"]
    return "\n".join(lines) + "\n"


def php_fpm_conf(header, pidfile, logfile, sock, pm_lines, pool="bench", global_lines=()):
    """A php-fpm configuration with one pool (php.ini comes from -c)."""
    return "\n".join([header, "[global]", f"pid = {pidfile}", f"error_log = {logfile}", "daemonize = no",
                      *global_lines, "", f"[{pool}]", f"listen = {sock}", "listen.mode = 0666",
                      *pm_lines, ""])


# ------------------------------------------------------------------ harness

class Harness:
    """Starts processes and always stops them again. Subclasses set `self.a`
    (parsed options; `no_build`, `build_attempts`, `build_retry_wait` for
    build_drover) and may override extra_pids() / socket_paths() so cleanup
    finds processes whose parent exited and sockets to remove."""

    name = "bench"

    def __init__(self, prefix="run"):
        self.stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.outroot = os.path.join(BENCH, "out")
        self.out = os.path.join(self.outroot, f"{prefix}-{self.stamp}")
        self.started = []       # (name, Popen) in start order
        self.commands = []      # (what, command line)
        self.notes = []         # anomalies / remarks for the report
        self.t0 = now()
        self.phase_times = {}
        self.is_root = os.geteuid() == 0
        self.current = None     # a running client (wrk, build), if any
        self.cleaned = False
        self.nginx_proc = None

    # ------------------------------------------------------------ processes

    def spawn(self, name, argv, logfile, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.commands.append((name, cmdline_str(argv, env)))
        f = open(logfile, "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                             env=full_env, cwd=self.out, start_new_session=True)
        f.close()
        self.started.append((name, p))
        return p

    def wait_for(self, what, cond, timeout, proc=None, logfile=None):
        deadline = now() + timeout
        while now() < deadline:
            if cond():
                return
            if proc is not None and proc.poll() is not None:
                raise BenchError(f"{what} exited with status {proc.returncode} while starting"
                                 + (f"; {logfile}:\n{tail(logfile)}" if logfile else ""))
            time.sleep(0.05)
        raise BenchError(f"{what} not ready after {timeout:.0f}s" + (f"; {logfile}:\n{tail(logfile)}" if logfile else ""))

    def extra_pids(self):
        """Processes to stop that are not children of a started process."""
        return []

    def socket_paths(self):
        """Unix sockets to remove after cleanup."""
        return []

    def stop(self, proc, timeout=8):
        """Stops one started process (SIGTERM, SIGKILL after `timeout`) and
        every process below it; returns once all of them are gone."""
        tree = [proc.pid] + descendants(proc.pid) if proc.poll() is None else []
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = now() + timeout
        while now() < deadline and any(alive(pid) for pid in tree):
            self.reap()
            time.sleep(0.05)
        for pid in tree:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            proc.wait(timeout=2)
        except Exception:  # noqa: BLE001
            pass
        self.reap()

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            targets = []
            if self.current is not None and self.current.poll() is None:
                targets.append(self.current.pid)
            # nginx first (stops new requests), then the backends.
            for name, p in reversed(self.started):
                if p.poll() is None:
                    targets.append(p.pid)
            targets += [pid for pid in self.extra_pids() if alive(pid)]
            for pid in targets:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = now() + 8
            while now() < deadline and any(alive(pid) for pid in targets):
                self.reap()
                time.sleep(0.05)
            # Anything still around below us (we are a child subreaper, so
            # orphans such as spawn-fcgi's children and apps land here).
            for _ in range(2):
                left = [pid for pid in set(targets) | set(descendants(os.getpid())) if alive(pid)]
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.2)
                self.reap()
            for name, p in self.started:
                try:
                    p.wait(timeout=1)
                except Exception:  # noqa: BLE001
                    pass
            self.reap()
            for path in self.socket_paths():
                if path and os.path.exists(path):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            left = [pid for pid in descendants(os.getpid()) if alive(pid)]
            if left:
                log(f"WARNING: processes still running after cleanup: {left}")
        finally:
            signal.signal(signal.SIGINT, old_int)

    @staticmethod
    def reap():
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    # ---------------------------------------------------------------- Drover

    def build_drover(self, build_log):
        """Sets self.drover (DROVER_BIN, or .build/release/drover built with
        `swift build -c release --product drover` unless --no-build, retried
        because the tree is edited concurrently), drover_sha, drover_mtime."""
        a = self.a
        env_bin = os.environ.get("DROVER_BIN")
        if env_bin:
            self.drover = os.path.abspath(env_bin)
            self.commands.append(("drover binary", f"DROVER_BIN={self.drover} (no build)"))
        else:
            self.drover = os.path.join(REPO, ".build", "release", "drover")
            argv = ["swift", "build", "-c", "release", "--product", "drover"]
            self.commands.append(("build drover", f"cd {REPO} && {shlex.join(argv)}"))
            if a.no_build:
                log("skipping the build (--no-build)")
            else:
                for attempt in range(1, a.build_attempts + 1):
                    log(f"building Drover (release), attempt {attempt}: {shlex.join(argv)}")
                    with open(build_log, "ab") as f:
                        p = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
                        self.current = p
                        rc = p.wait()
                        self.current = None
                    if rc == 0:
                        break
                    log(f"  build failed (status {rc}); last lines of {build_log}:\n{tail(build_log, 15)}")
                    if attempt == a.build_attempts:
                        raise BenchError("release build failed (someone's edit in progress? retry later, "
                                         "or set DROVER_BIN)")
                    log(f"  retrying in {a.build_retry_wait:.0f}s (the tree is edited concurrently)")
                    time.sleep(a.build_retry_wait)
        if not os.access(self.drover, os.X_OK):
            raise BenchError(f"no Drover binary at {self.drover}")
        h = hashlib.sha256()
        with open(self.drover, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        self.drover_sha = h.hexdigest()[:16]
        self.drover_mtime = datetime.datetime.fromtimestamp(os.path.getmtime(self.drover)).strftime("%Y-%m-%d %H:%M:%S")

    def drover_version(self):
        git, dirty = git_state()
        return (f"{first_line([self.drover, '-v'])} ({self.drover}, sha256 {self.drover_sha}…, built {self.drover_mtime}; "
                f"git {git}{f' + {dirty} uncommitted change(s) in Sources/' if dirty else ''})")

    def start_drover(self, key, what, conf, logfile, sock, min_workers, stdout_file=None, env=None):
        """Starts `drover -F [-R] -y CONF` (with `env` added to the
        environment); returns once its log says it is ready, the socket
        exists and it has at least `min_workers` children."""
        root_flag = ["-R"] if self.is_root else []
        p = self.spawn(key, [self.drover, "-F", *root_flag, "-y", conf],
                       stdout_file or os.path.join(self.out, f"{key}.stdout"), env=env)
        self.wait_for(f"{what} (drover)",
                      lambda: "ready to handle connections" in read(logfile) and os.path.exists(sock),
                      20, p, logfile)
        if min_workers:
            self.wait_for(f"{what} workers", lambda: len(children(p.pid)) >= min_workers, 10, p, logfile)
        return p

    # --------------------------------------------------------------- php-fpm

    def start_php_fpm(self, key, what, conf, logfile, sock, min_workers, stdout_file=None, launcher=()):
        """Starts `php-fpm -F [-R] -c OUT/php.ini -y CONF` with the bench's
        PHP_INI_SCAN_DIR (after `launcher`, a command that execs it, such as
        chrt); returns once ready, like start_drover."""
        root_flag = ["-R"] if self.is_root else []
        env = {"PHP_INI_SCAN_DIR": self.php_scan_dir}
        p = self.spawn(key, [*launcher, self.php_fpm, "-F", *root_flag, "-c", self.php_ini, "-y", conf],
                       stdout_file or os.path.join(self.out, f"{key}.stdout"), env=env)
        self.wait_for(what, lambda: "ready to handle connections" in read(logfile)
                      and os.path.exists(sock), 20, p, logfile)
        if min_workers:
            self.wait_for(f"{what} workers", lambda: len(children(p.pid)) >= min_workers, 10, p, logfile)
        return p

    # ------------------------------------------------------------------- PHP

    def make_php_ini(self, opcache, scan_dir, tag):
        """One php.ini for every PHP backend: Debian's php.ini (cgi and fpm
        ship the same file) plus the bench's explicit settings; the same
        conf.d. Sets php_ini, php_scan_dir, ini_note, php_env."""
        self.php_ini = os.path.join(self.out, "php.ini")
        self.php_scan_dir = scan_dir
        base = read(BASE_PHP_INI)
        if not base:
            raise BenchError(f"cannot read {BASE_PHP_INI}")
        fpm_ini = read(FPM_PHP_INI)
        self.ini_note = (f"{BASE_PHP_INI} copied to {self.php_ini}"
                         + (" (identical to fpm/php.ini on this machine)" if fpm_ini == base else
                            " (NOTE: differs from fpm/php.ini; both backends use this copy)"))
        opc = "1" if opcache == "on" else "0"
        write(self.php_ini, base + f"\n\n; ---- {tag}: identical for php-fpm and every php-cgi ----\n"
              f"opcache.enable = {opc}\nopcache.enable_cli = 0\n")
        self.php_env = {"PHPRC": self.php_ini, "PHP_INI_SCAN_DIR": self.php_scan_dir}

    def socket_dir(self, longest_name):
        """The out dir, unless a socket path there would be too long for sun_path."""
        if len(os.path.join(self.out, longest_name)) > 100:
            d = tempfile.mkdtemp(prefix="drover-bench-")
            self.notes.append(f"sockets are in {d} (out dir path too long for a Unix socket)")
            return d
        return self.out

    # ----------------------------------------------------------------- nginx

    def write_nginx(self, header, worker_processes, servers):
        """Writes OUT/nginx.conf and OUT/fastcgi_params. `servers`: list of
        (label, port, root, locations); each location is (match, sock,
        with_script_filename)."""
        self.nginx_dir = os.path.join(self.out, "nginx")
        for d in ("body", "fastcgi", "proxy", "scgi", "uwsgi"):
            os.makedirs(os.path.join(self.nginx_dir, "tmp", d), exist_ok=True)
        params = os.path.join(self.out, "fastcgi_params")
        write(params, FASTCGI_PARAMS)
        self.nginx_conf = os.path.join(self.out, "nginx.conf")
        self.nginx_log = os.path.join(self.out, "nginx-error.log")
        t = os.path.join(self.nginx_dir, "tmp")
        conf = [
            header,
            "daemon off;", "master_process on;",
            f"worker_processes {worker_processes};",
            f"pid {os.path.join(self.out, 'nginx.pid')};",
            f"error_log {self.nginx_log} warn;",
        ]
        if self.is_root:
            conf.append("user root root;")
        conf += ["events { worker_connections 4096; }", "http {", "    access_log off;",
                 "    keepalive_requests 1000000;", "    keepalive_timeout 65s;",
                 f"    client_body_temp_path {t}/body;", f"    fastcgi_temp_path {t}/fastcgi;",
                 f"    proxy_temp_path {t}/proxy;", f"    scgi_temp_path {t}/scgi;", f"    uwsgi_temp_path {t}/uwsgi;"]
        for label, port, root, locations in servers:
            conf += [f"    server {{  # {label}", f"        listen 127.0.0.1:{port};",
                     f"        root {root};"]
            for match, sock, script_filename in locations:
                conf += [f"        location {match} {{", f"            include {params};"]
                if script_filename:
                    conf.append("            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;")
                conf += [f"            fastcgi_pass unix:{sock};", "        }"]
            conf.append("    }")
        conf.append("}")
        write(self.nginx_conf, "\n".join(conf) + "\n")

    def start_nginx(self, ports):
        """Checks (nginx -t) and starts nginx; returns once every port accepts."""
        nginx_argv = [self.nginx, "-p", self.nginx_dir + "/", "-e", self.nginx_log, "-c", self.nginx_conf]
        r = subprocess.run(nginx_argv + ["-t", "-q"], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"nginx -t failed:\n{r.stdout}{r.stderr}")
        p = self.spawn("nginx", nginx_argv, os.path.join(self.out, "nginx.stdout"))
        self.nginx_proc = p

        def listening():
            for port in ports:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                except OSError:
                    return False
            return True
        self.wait_for("nginx", listening, 15, p, self.nginx_log)
        return p

    def nginx_errors(self):
        """nginx [error]/[crit]/... lines: (count, {upstream socket: count}, first line)."""
        errs = [l for l in read(self.nginx_log).splitlines() if re.search(r"\[(error|crit|alert|emerg)\]", l)]
        by_sock = {}
        for l in errs:
            m = re.search(r'upstream: "fastcgi://unix:([^:"]+)', l)
            k = os.path.basename(m.group(1)) if m else "?"
            by_sock[k] = by_sock.get(k, 0) + 1
        return len(errs), by_sock, (errs[0] if errs else "")


def http_get(port, path, timeout=10):
    """GET http://127.0.0.1:PORT/PATH on a fresh connection: (status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def run_main(prog, harness, run):
    """Runs `run()` with every exit path leading through harness.cleanup():
    errors (BenchError), Ctrl-C, SIGTERM, SIGHUP. Returns the exit status."""
    # Orphans (spawn-fcgi's children, apps of a dying worker) become our
    # children, so cleanup can find and reap every process the run started.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # noqa: BLE001
        pass

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored
    # (e.g. as a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rc = 0
    try:
        rc = run() or 0
    except BenchError as e:
        log(f"\n{prog}: ERROR: {e}")
        rc = 1
    except KeyboardInterrupt:
        log(f"\n{prog}: interrupted")
        rc = 130
    except SystemExit as e:
        log(f"\n{prog}: terminated")
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        log("cleaning up")
        harness.cleanup()
    return rc


def add_build_options(ap):
    ap.add_argument("--no-build", action="store_true", help="use the existing .build/release/drover")
    ap.add_argument("--build-attempts", type=int, default=3, help="release build attempts (3)")
    ap.add_argument("--build-retry-wait", type=duration_seconds, default=60.0, help="wait between attempts (60s)")


if __name__ == "__main__":
    sys.exit("benchlib.py is a library for bench/run and bench/scaling")
