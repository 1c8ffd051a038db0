"""The process manager at work: pm = dynamic and ondemand scaling,
pm.max_requests, request_terminate_timeout, the slow log, the back-off of a
broken app, the listen queue figures, php-fpm's scaling warnings and the
per-request CPU and memory columns of the status page.

Timings are never asserted tightly: the tests wait (with generous deadlines)
for what php-fpm's pool model promises to happen.
"""

import json
import re
import signal
import threading
import time

from conftest import (TIMEOUT, app_pids, children_of, descendants, fcgi_request, free_port, pid_alive,
                      pool_section, status, status_full, wait_for, wait_sleeping_app, worker_descendants,
                      worker_pids, workers_of)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def scaling_pool(name, listen, pm, max_children, extra="", **kwargs):
    """pool_section() with another process manager than static."""
    text = pool_section(name, listen, max_children=max_children, extra=extra, **kwargs)
    return text.replace("pm = static\n", f"pm = {pm}\n", 1)


def script_path(workdir, name):
    return str(workdir / "www" / name)


class Batch:
    """`len(queries)` requests sent at once, one thread each. `join()`
    returns what each got: its HTTP status, or the exception it raised."""

    def __init__(self, address, script, queries, timeout=60):
        self.results = [None] * len(queries)
        self.responses = [None] * len(queries)
        go = threading.Barrier(len(queries))

        def run(i, query):
            try:
                go.wait(timeout=10)
                r = fcgi_request(address, script, query=query, timeout=timeout)
                self.responses[i] = r
                self.results[i] = r.status
            except Exception as error:  # noqa: BLE001 - reported by the test
                self.results[i] = error

        self.threads = [threading.Thread(target=run, args=(i, q), daemon=True)
                        for i, q in enumerate(queries)]
        for t in self.threads:
            t.start()

    def running(self):
        return any(t.is_alive() for t in self.threads)

    def join(self, timeout=60):
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        assert not self.running(), "some requests never got an answer"
        return list(self.results)


def start_requests(address, script, query="", n=1, timeout=60):
    """Starts `n` concurrent requests; returns the running Batch."""
    return Batch(address, script, [query] * n, timeout=timeout)


def concurrent_requests(address, script, query="", n=1, timeout=60):
    """`n` concurrent requests; the list of their statuses (or exceptions)."""
    return start_requests(address, script, query, n, timeout).join(timeout)


def quick_status(address, query="json", timeout=5):
    """The status page with a short deadline (it is answered by a worker,
    and with every worker busy it waits in the queue)."""
    r = fcgi_request(address, "/status", query=query, timeout=timeout)
    assert r.status == 200, r
    return json.loads(r.body)


def started_lines(log, pool):
    return re.findall(rf"\[pool {re.escape(pool)}\] child \d+ started", log)


def wait_started(address, at_least=1):
    """For dynamic pools, where a status request can itself make the pool
    grow (it keeps a worker busy): waits for `at_least` workers with apps."""
    def ready():
        doc = status_full(address)
        rows = doc["processes"]
        return len(rows) >= at_least and all(r["app pid"] and pid_alive(r["app pid"]) for r in rows) \
            and doc
    return wait_for(ready, what=f"{at_least} workers with apps on {address}")


def pid_of(response):
    """The app pid printed by apps/pid.php."""
    m = re.search(r"pid=(\d+)", response.text)
    assert m, response
    return int(m.group(1))


# ---------------------------------------------------------------------------
# pm = dynamic, pm = ondemand
# ---------------------------------------------------------------------------

def test_dynamic_pool_grows_under_load_and_shrinks_back(drover_factory, workdir):
    """pm = dynamic: starts pm.start_servers workers, starts more when
    requests wait (up to pm.max_children, keeping pm.min_spare_servers idle
    so that the status page still answers), and afterwards stops surplus
    idle workers, one per second, down to pm.max_spare_servers."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([scaling_pool("www", sock, "dynamic", 10, extra="""
        pm.start_servers = 2
        pm.min_spare_servers = 1
        pm.max_spare_servers = 3
    """)])
    d.start(statuses=[(sock, 2)])
    doc = status_full(sock)
    assert doc["process manager"] == "dynamic", doc
    assert doc["total processes"] == 2, (doc, d.log_text())

    batch = start_requests(sock, script_path(workdir, "sleep.php"), "s=2", 8)
    seen = {"max total": 0, "while running": False}

    def grown():
        doc = quick_status(sock)
        seen["max total"] = max(seen["max total"], doc["total processes"])
        if doc["total processes"] >= 8 and batch.running():
            seen["while running"] = True
        return doc["total processes"] >= 8
    wait_for(grown, timeout=15, interval=0.2, what="the pool to grow to 8 workers")
    statuses = batch.join()
    assert statuses == [200] * 8, statuses
    assert seen["while running"], f"the pool grew only after the requests ended: {seen}"

    doc = status(sock)
    assert doc["max active processes"] >= 8, doc
    assert doc["spawns"] >= 8, doc
    assert doc["total processes"] <= 10, doc

    # Back to pm.max_spare_servers idle workers (the status request itself
    # keeps one of them busy while it is answered).
    def shrunk():
        doc = quick_status(sock)
        return doc["total processes"] == 3 and doc["idle processes"] + doc["active processes"] == 3 \
            and doc
    doc = wait_for(shrunk, timeout=20, interval=0.5, what="the pool to shrink to 3 workers")
    assert doc["idle processes"] >= 2, doc
    # ... and no further: it never goes below pm.max_spare_servers idle.
    time.sleep(2.5)
    doc = status(sock)
    assert doc["total processes"] == 3, doc
    stopped = re.findall(r"\[pool www\] child \d+ exited", d.log_text())
    assert len(stopped) >= 5, d.log_text()
    assert d.proc.poll() is None


def test_ondemand_pool_starts_workers_on_demand_and_stops_idle_ones(drover_factory, workdir):
    """pm = ondemand: no worker at start; a connection starts one; workers
    idle for pm.process_idle_timeout are stopped (the pool goes back to
    zero), and the next connection starts one again."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([scaling_pool("www", sock, "ondemand", 5, extra="""
        pm.process_idle_timeout = 2s
    """)])
    d.start(sockets=[sock])
    time.sleep(1.5)         # more than one tick of the master
    assert started_lines(d.log_text(), "www") == [], d.log_text()
    assert worker_descendants(d.pid) == [], "an ondemand pool started a worker without a request"

    hello = script_path(workdir, "hello.php")
    r = fcgi_request(sock, hello, query="name=first")
    assert r.status == 200 and "name=first" in r.text, r
    d.remember_pids()
    doc = status(sock)
    assert doc["process manager"] == "ondemand", doc
    assert 1 <= doc["total processes"] <= 5, doc
    assert len(started_lines(d.log_text(), "www")) >= 1

    wait_for(lambda: not workers_of(d.pid), timeout=10, interval=0.2,
             what="idle ondemand workers to be stopped")
    wait_for(lambda: not worker_descendants(d.pid), timeout=5, what="their apps to exit")
    assert d.proc.poll() is None

    # A new connection starts a worker again.
    r = fcgi_request(sock, hello, query="name=again")
    assert r.status == 200 and "name=again" in r.text, r


# ---------------------------------------------------------------------------
# pm.max_requests
# ---------------------------------------------------------------------------

def test_max_requests_replaces_the_app(drover_factory, workdir):
    """pm.max_requests: an app is replaced after serving that many requests
    (php-fpm respawns the worker; Drover replaces the worker's app), without
    losing a request."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=1, extra="pm.max_requests = 3")])
    d.start(statuses=[(sock, 1)])
    script = script_path(workdir, "pid.php")
    pids = []
    for i in range(10):
        r = fcgi_request(sock, script, query=f"i={i}")
        assert r.status == 200, (i, r)
        pids.append(pid_of(r))
    assert len(set(pids)) >= 3, pids
    assert max(pids.count(p) for p in set(pids)) <= 3, f"an app served more than 3 requests: {pids}"
    wait_for(lambda: "pm.max_requests" in d.log_text(), what=f"the recycling notice in:\n{d.log_text()}")
    # The apps that were replaced are gone.
    old = [p for p in set(pids) if p != pids[-1]]
    wait_for(lambda: not any(pid_alive(p) for p in old), timeout=10, what="replaced apps to exit")


def test_max_requests_under_concurrency_loses_nothing(drover_factory, workdir):
    """pm.max_requests = 2 with 2 workers and 4 clients sending 5 requests
    each: apps are replaced all the time and no request fails."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2, extra="pm.max_requests = 2")])
    d.start(statuses=[(sock, 2)])
    hello = script_path(workdir, "hello.php")
    failures = []
    lock = threading.Lock()

    def client(c):
        for i in range(5):
            name = f"c{c}r{i}"
            try:
                r = fcgi_request(sock, hello, query=f"name={name}")
                ok = r.status == 200 and f"name={name}" in r.text
            except Exception as error:  # noqa: BLE001 - counted as a failure
                ok, r = False, error
            if not ok:
                with lock:
                    failures.append((name, r))

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client never got its answers"
    assert failures == [], failures
    assert len(re.findall(r"pm\.max_requests", d.log_text())) >= 5, d.log_text()
    assert d.proc.poll() is None


# ---------------------------------------------------------------------------
# request_terminate_timeout, the slow log
# ---------------------------------------------------------------------------

def test_request_terminate_timeout_kills_the_app(drover_factory, workdir):
    """request_terminate_timeout: a request running longer has its app
    killed and logged as "execution timed out" (php-fpm's wording); the
    client gets 504 Gateway Timeout and the next request is served by a new
    app."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=1,
                                 extra="request_terminate_timeout = 1s")])
    d.start(statuses=[(sock, 1)])
    old_app = status_full(sock)["processes"][0]["app pid"]
    script = script_path(workdir, "sleep.php")

    started = time.monotonic()
    r = fcgi_request(sock, script, query="s=5", timeout=30)
    took = time.monotonic() - started
    assert r.status == 504, r
    assert b"done" not in r.body, r
    assert took < 4.5, f"the answer came after {took:.1f} s"

    line = wait_for(lambda: next((l for l in d.log_text().splitlines()
                                  if "execution timed out" in l), None),
                    timeout=10, what="'execution timed out' in the error log")
    assert script in line, line
    assert "[pool www]" in line, line

    r = fcgi_request(sock, script, query="s=0.1")
    assert r.status == 200 and "done" in r.text, r
    wait_for(lambda: not pid_alive(old_app), timeout=10, what=f"the old app {old_app} to be gone")
    new_app = status_full(sock)["processes"][0]["app pid"]
    assert new_app != old_app and pid_alive(new_app)


def test_slowlog_records_a_slow_request(drover_factory, workdir):
    """request_slowlog_timeout: a request running longer is logged once in
    the slowlog file with the worker's pid, the script and the request (and
    Drover's additions: the app's pid, elapsed time, wchan/syscall and the
    output of request_slowlog_trace_command); the error log says "executing
    too slow" and the status page counts it in "slow requests"."""
    d = drover_factory()
    sock = d.sock("www")
    slowlog = workdir / "slow.log"
    d.write_config([pool_section("www", sock, max_children=1, extra=f"""
        slowlog = {slowlog}
        request_slowlog_timeout = 1s
        request_slowlog_trace_command = /bin/echo traced {{pid}}
    """)])
    d.start(statuses=[(sock, 1)])
    row = status_full(sock)["processes"][0]
    worker, app = row["pid"], row["app pid"]
    script = script_path(workdir, "sleep.php")

    r = fcgi_request(sock, script, query="s=2.5", timeout=30)
    assert r.status == 200 and "done" in r.text, r

    expected = [f"[pool www] pid {worker}", f"(app {app})", f"script_filename = {script}",
                "request = GET /sleep.php?s=2.5", "elapsed = ", "wchan = ", "syscall = ",
                f"traced {app}"]

    def complete():
        text = slowlog.read_text(errors="replace")
        return all(e in text for e in expected) and text
    try:
        text = wait_for(complete, timeout=10, what="a complete slow log entry")
    except AssertionError:
        text = slowlog.read_text(errors="replace") if slowlog.exists() else "(no slow.log)"
        missing = [e for e in expected if e not in text]
        raise AssertionError(f"slow log lacks {missing}:\n{text}") from None
    assert text.count("[pool www] pid") == 1, text

    assert "executing too slow" in d.log_text(), d.log_text()
    doc = status(sock)
    assert doc["slow requests"] == 1, doc


# ---------------------------------------------------------------------------
# back-off
# ---------------------------------------------------------------------------

def test_app_that_exits_at_once_is_retried_with_back_off(drover_factory):
    """An app that exits at once is restarted with a growing delay (0.1 s,
    doubling), not in a loop; the master keeps running."""
    d = drover_factory()
    sock = d.sock("bad")
    d.write_config([pool_section("bad", sock, max_children=2, command="/bin/false")])
    d.start(sockets=[sock])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert d.proc.poll() is None, f"drover died:\n{d.log_text()}"
        time.sleep(0.25)
    log = d.log_text()
    started = len(started_lines(log, "bad"))
    print(f"{started} worker starts in 10 s")
    assert 2 <= started <= 10, f"{started} starts in 10 s:\n{log}"
    assert "back-off" in log, log
    d.send(signal.SIGTERM)
    assert d.wait_exit(timeout=TIMEOUT) == 0, d.log_text()


# ---------------------------------------------------------------------------
# listen queue
# ---------------------------------------------------------------------------

def test_listen_queue_figures(drover_factory, workdir):
    """php-fpm's "listen queue", "max listen queue" and "listen queue len":
    connections waiting for a busy pool are seen in the accept queue (the
    master samples it every second; the status page reads it live), for Unix
    and TCP listeners."""
    d = drover_factory()
    sock = d.sock("www")
    port = free_port()
    d.write_config([
        pool_section("www", sock, max_children=1),
        pool_section("tcp", f"127.0.0.1:{port}", max_children=1),
    ])
    d.start(statuses=[(sock, 1), (f"127.0.0.1:{port}", 1)])
    app = status_full(sock)["processes"][0]["app pid"]
    script = script_path(workdir, "sleep.php")

    # One request first (so the single worker is surely busy), then three
    # more that must wait in the accept queue.
    first = start_requests(sock, script, "s=2", 1)
    wait_sleeping_app([app])
    rest = start_requests(sock, script, "s=2", 3)
    assert first.join() == [200]
    assert rest.join() == [200] * 3

    doc = status(sock)
    assert doc["max listen queue"] >= 1, doc
    assert doc["listen queue"] == 0, doc
    assert doc["listen queue len"] > 0, doc

    doc = status(f"127.0.0.1:{port}")
    assert doc["pool"] == "tcp"
    assert doc["listen queue len"] > 0, doc
    assert doc["listen queue"] == 0, doc


# ---------------------------------------------------------------------------
# php-fpm's warnings
# ---------------------------------------------------------------------------

def burst_on_dynamic_pool(drover_factory, workdir, max_children, max_spare, seconds, n):
    """Starts a dynamic pool (start 1, min_spare 1) and sends it `n`
    concurrent sleep.php requests of `seconds` each; all must succeed.
    Returns the Drover and its socket."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([scaling_pool("www", sock, "dynamic", max_children, extra=f"""
        pm.start_servers = 1
        pm.min_spare_servers = 1
        pm.max_spare_servers = {max_spare}
    """)])
    d.start(sockets=[sock])
    wait_started(sock)
    statuses = concurrent_requests(sock, script_path(workdir, "sleep.php"), f"s={seconds}", n)
    assert d.proc.poll() is None, f"drover died:\n{d.log_text()}"
    assert statuses == [200] * n, statuses
    return d, sock


def test_max_children_reached_is_warned_once(drover_factory, workdir):
    """A dynamic pool that would grow beyond pm.max_children logs php-fpm's
    "server reached pm.max_children setting (N), consider raising it" once
    per episode, and counts it in "max children reached"."""
    d, sock = burst_on_dynamic_pool(drover_factory, workdir, max_children=2, max_spare=1, seconds=2, n=4)
    line = "[pool www] server reached pm.max_children setting (2), consider raising it"
    log = wait_for(lambda: line in d.log_text() and d.log_text(), timeout=10,
                   what="the max_children warning")
    assert log.count(line) == 1, log
    doc = status(sock)
    assert doc["max children reached"] == 1, doc


def test_seems_busy_is_warned(drover_factory, workdir):
    """A dynamic pool that must start many workers at once logs php-fpm's
    "seems busy (you may need to increase pm.start_servers, or
    pm.min/max_spare_servers), spawning N children, there are N idle, and N
    total children"."""
    d, _ = burst_on_dynamic_pool(drover_factory, workdir, max_children=30, max_spare=2, seconds=1, n=20)
    pattern = (r"\[pool www\] seems busy \(you may need to increase pm\.start_servers, or "
               r"pm\.min/max_spare_servers\), spawning \d+ children, there are \d+ idle, and "
               r"\d+ total children")
    wait_for(lambda: re.search(pattern, d.log_text()), timeout=10,
             what=f"the 'seems busy' warning in:\n{d.log_text()}")


# ---------------------------------------------------------------------------
# per-request CPU and memory
# ---------------------------------------------------------------------------

def _rows_after_two_app_requests(drover_factory, workdir):
    """A static pool of two workers where each worker's last request ran in
    its app (a 1 s sleep.php on one, hello.php on the other, side by side),
    so that whichever worker answers the status page, the other one is Idle
    and shows an app request's figures. Returns the status rows."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2)])
    d.start(statuses=[(sock, 2)])
    apps = app_pids(sock)
    slow = start_requests(sock, script_path(workdir, "sleep.php"), "s=1", 1)
    wait_sleeping_app(apps)
    r = fcgi_request(sock, script_path(workdir, "hello.php"), query="name=measure")
    assert r.status == 200, r
    assert slow.join() == [200]
    # A worker updates its row just after sending the response: poll.
    seen = {}

    def measured():
        rows = seen["rows"] = status_full(sock)["processes"]
        return any(row["state"] == "Idle" and row["requests"] >= 1 and row["last request memory"] > 0
                   for row in rows) and rows
    try:
        rows = wait_for(measured, timeout=10, interval=0.1,
                        what="an idle worker showing its last request's figures")
    except AssertionError as error:
        raise AssertionError(f"{error}; last rows: {seen.get('rows')}") from None
    assert len(rows) == 2, rows
    return rows


def test_last_request_cpu_and_memory(drover_factory, workdir):
    """php-fpm's "last request cpu" and "last request memory" columns of the
    full status: numbers, and the memory of a finished request is > 0."""
    rows = _rows_after_two_app_requests(drover_factory, workdir)
    for row in rows:
        assert isinstance(row["last request cpu"], (int, float)), row
        assert isinstance(row["last request memory"], int), row
        assert row["last request cpu"] >= 0 and row["last request memory"] >= 0, row
    idle = [row for row in rows if row["state"] == "Idle" and row["requests"] >= 1]
    assert idle and all(row["last request memory"] > 0 for row in idle), rows


def test_last_request_cpu_is_a_percentage_of_the_request(drover_factory, workdir):
    """php-fpm's "last request cpu" is the CPU time the request used, in
    percent of its duration. php-cgi is single-threaded, so it cannot exceed
    100 % by much (150 allows for the two clocks being read at slightly
    different moments): the app's start-up, or its time between requests,
    must not be counted in."""
    rows = _rows_after_two_app_requests(drover_factory, workdir)
    measured = [row for row in rows if row["state"] == "Idle" and row["last request memory"] > 0]
    for row in measured:
        assert 0 <= row["last request cpu"] <= 150, row


# ---------------------------------------------------------------------------
# emergency restart and process.max
# ---------------------------------------------------------------------------

def test_emergency_restart_after_segfaults(drover_factory, workdir):
    """emergency_restart_threshold = 2 within emergency_restart_interval:
    two apps dying of SIGSEGV log php-fpm's "failed processes threshold"
    line and every worker is replaced (gracefully); the pool keeps serving."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2)],
                   global_extra="emergency_restart_threshold = 2\nemergency_restart_interval = 30s\n")
    d.start(statuses=[(sock, 2)])
    before = set(worker_pids(sock))
    # Let each app serve a request first, so that its crash is not "died young".
    time.sleep(1.1)
    for _ in range(2):
        fcgi_request(sock, script_path(workdir, "segv.php"))
    line = "failed processes threshold (2 in 30 sec) is reached, initiating reload"
    wait_for(lambda: line in d.log_text(), timeout=10, what=f"the emergency restart in:\n{d.log_text()}")
    wait_for(lambda: not any(pid_alive(p) for p in before), timeout=10, what="the old workers to exit")
    r = fcgi_request(sock, script_path(workdir, "hello.php"), query="name=after")
    assert r.status == 200, r
    assert d.proc.poll() is None


def test_process_max_limits_workers(drover_factory, workdir):
    """process.max caps the workers of all pools together, with php-fpm's
    warning."""
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=4)], global_extra="process.max = 2\n")
    d.start(sockets=[sock])
    wait_for(lambda: "consider raising 'process.max'" in d.log_text(), timeout=10,
             what=f"the process.max warning in:\n{d.log_text()}")
    time.sleep(0.5)
    assert len(workers_of(d.proc.pid)) == 2, d.log_text()
    r = fcgi_request(sock, script_path(workdir, "hello.php"), query="name=capped")
    assert r.status == 200, r
