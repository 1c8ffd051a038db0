"""Fault injection under load, and slow-loris clients (issue 5).

Every fault test runs a static php-cgi pool of N = 3 workers with an access
log (one line per request: `GET /hello.php?seq=000042 200 <worker pid>`) and
the agent's status server (`status.listen`, which answers while workers are
busy), while two client threads loop hello.php?seq=NNNNNN on the pool socket
(one FastCGI connection per request; each request's outcome and times are
recorded). A third request, the victim, is a sleep.php on the remaining
worker, and the fault hits the process serving it: so which request is in
flight in the killed process is known, and failures are counted exactly.

For each fault the test asserts:
- failures: exactly the victim's request (none for the agent), every load
  request 200;
- recovery: the pool is whole again (N workers, each with one live, running
  app, the agent answering, the process tree agreeing with `?json&full`)
  within a bound; the time from the fault is measured and printed;
- logs: the access log holds exactly one line per request that completed
  (none twice, none missing), the error log names what happened.

Faults: `kill -9` of an app, a worker, the agent, the master (workers finish
their request and exit, everything is gone, a new start on the same config
serves again); SIGSTOP of an app with request_terminate_timeout (504) and
without it (bounded by the client's own timeout plus the 5 s abort grace).

Slow loris: 10 x N connections that never send a whole record, against N
workers: each is parked after 20 ms, so a legitimate request is served at
once; the master's descriptors do not grow; each is dropped 30 s after its
accept (the worker's first-record timeout, a constant in
Sources/DroverWorker/Relay.swift) with an error-log line.
"""

import collections
import contextlib
import http.client
import itertools
import json
import os
import re
import signal
import socket
import struct
import threading
import time

import pytest

from conftest import (FCGI_BEGIN_REQUEST, READY_LINE, TIMEOUT, agent_of, children_of, connect_address,
                      descendants, fcgi_record, fcgi_request, free_port, pid_alive, pool_section, proc_stat,
                      wait_for, wait_sleeping_app, workers_of)

N = 3                       # workers in the fault tests' pool
LOAD_THREADS = 2            # client threads; the third worker serves the victim
VICTIM_SEQ = 900000
SENTINEL_SEQ = 990000

ACCESS_FORMAT = '"%m %r%Q%q %s %p"'
ACCESS_LINE = re.compile(r"GET /(?:hello|sleep)\.php\?seq=(\d{6})(?:&\S*)? (\d{3}) (\d+)")
FIRST_RECORD_TIMEOUT = 30   # Sources/DroverWorker/Relay.swift: Worker.firstRecordTimeout
LORIS_LINE = f"closing a connection that sent no complete record in {FIRST_RECORD_TIMEOUT} s"


# ---------------------------------------------------------------------------
# clients
# ---------------------------------------------------------------------------

Outcome = collections.namedtuple("Outcome", "seq start end result response")


def timed_request(address, script, seq, extra_query="", timeout=60):
    """One request; its outcome is the status, or the exception's name."""
    start = time.monotonic()
    response = None
    try:
        response = fcgi_request(address, script, query=f"seq={seq:06d}{extra_query}", timeout=timeout)
        result = response.status
    except Exception as error:  # noqa: BLE001 - the outcome is what is tested
        result = type(error).__name__
    return Outcome(seq, start, time.monotonic(), result, response)


class Load:
    """`threads` clients each looping hello.php?seq=NNNNNN on `address` (a
    new connection per request) until stop(); every request's Outcome is
    kept. After `halt` no new request starts."""

    def __init__(self, address, script, threads=LOAD_THREADS):
        self.address, self.script = address, script
        self.lock = threading.Lock()
        self.seqs = itertools.count()
        self.outcomes = []
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        while not self.halt.is_set():
            with self.lock:
                seq = next(self.seqs)
            outcome = timed_request(self.address, self.script, seq)
            if outcome.result == 200 and b"method=GET" not in outcome.response.body:
                outcome = outcome._replace(result="200 with a wrong body")
            with self.lock:
                self.outcomes.append(outcome)

    def done(self):
        with self.lock:
            return len(self.outcomes)

    def wait_more(self, k, timeout=TIMEOUT):
        """Waits until `k` more requests completed than now."""
        target = self.done() + k
        wait_for(lambda: self.done() >= target, timeout=timeout, interval=0.01, what=f"{k} more load requests")

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in self.threads), "a load client never finished its request"
        return list(self.outcomes)


class Background:
    """One request in a thread of its own (the victim)."""

    def __init__(self, address, script, seq, extra_query="", timeout=60):
        self.outcome = None
        self.thread = threading.Thread(
            target=lambda: setattr(self, "outcome", timed_request(address, script, seq, extra_query, timeout)),
            daemon=True)
        self.thread.start()

    def join(self, timeout=90):
        self.thread.join(timeout=timeout)
        assert not self.thread.is_alive(), "the victim request never ended"
        return self.outcome


def failures(outcomes):
    return [o for o in outcomes if o.result != 200]


# ---------------------------------------------------------------------------
# the pool under test
# ---------------------------------------------------------------------------

def process_age(pid):
    """Seconds since `pid` started (/proc/uptime and the start time in /proc/PID/stat)."""
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return uptime - proc_stat(pid)[3] / os.sysconf("SC_CLK_TCK")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def http_json(port, path, timeout=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body[:200])
        return json.loads(body)
    finally:
        conn.close()


class FaultPool:
    """A running Drover: pool `www` (static, `n` workers, access log) and
    the agent's status server on a free port."""

    def __init__(self, drover_factory, workdir, n=N, pool_extra="", name="drover", env=None):
        self.workdir = workdir
        self.n = n
        self.drover = drover_factory(name)
        self.sock = self.drover.sock("www")
        self.access_log = workdir / f"{name}-access.log"
        self.port = free_port()
        extra = (f"access.log = {self.access_log}\naccess.format = {ACCESS_FORMAT}\n"
                 "access.suppress_path[] = /status\n" + pool_extra)
        self.drover.write_config([pool_section("www", self.sock, max_children=n, extra=extra)],
                                 global_extra=f"status.listen = 127.0.0.1:{self.port}\n")
        self.hello = str(workdir / "www" / "hello.php")
        self.sleep = str(workdir / "www" / "sleep.php")
        self.env = env

    def start(self):
        self.drover.start(statuses=[(self.sock, self.n)], extra_env=self.env)
        self.wait_whole(time.monotonic(), what="the pool at start")
        return self

    @property
    def pid(self):
        return self.drover.pid

    def status(self):
        """`/status?json&full` from the agent's status server."""
        return http_json(self.port, "/status?json&full")

    def whole(self, gone=()):
        """The status document when the pool is whole: n rows, all Idle or
        Running, each worker a child of the master with exactly one child,
        its app, alive and not stopped; the agent alive and answering; none
        of `gone` among them. Else None."""
        doc = self.status()
        rows = doc["processes"]
        if doc["total processes"] != self.n or len(rows) != self.n:
            return None
        if doc["idle processes"] + doc["active processes"] != self.n:
            return None
        if any(r["state"] not in ("Idle", "Running") for r in rows):
            return None
        workers = {r["pid"] for r in rows}
        apps = {r["app pid"] for r in rows}
        if workers != set(workers_of(self.pid)) or (workers | apps) & set(gone):
            return None
        for r in rows:
            st = proc_stat(r["app pid"]) if r["app pid"] else None
            if st is None or st[0] in ("T", "t", "Z", "X") or children_of(r["pid"]) != [r["app pid"]]:
                return None
        agent = agent_of(self.pid)
        return doc if agent and agent not in gone else None

    def wait_whole(self, since, gone=(), timeout=TIMEOUT, what="the pool to be whole again"):
        """Polls until whole(); returns (seconds since `since`, status document)."""
        doc = wait_for(lambda: self.whole(gone), timeout=timeout, interval=0.02, what=what)
        return time.monotonic() - since, doc

    def sleeping_victim(self, seconds, seq=VICTIM_SEQ, timeout=60):
        """Starts sleep.php?s=SECONDS as the victim; returns (Background,
        worker pid, app pid) once its app sleeps in it."""
        rows = self.status()["processes"]
        victim = Background(self.sock, self.sleep, seq, extra_query=f"&s={seconds}", timeout=timeout)
        app = wait_sleeping_app([r["app pid"] for r in rows])
        worker = next(r["pid"] for r in rows if r["app pid"] == app)
        return victim, worker, app

    # logs

    def access_lines(self):
        """[(seq, status, worker pid)] of the access log; every line must parse."""
        try:
            text = self.access_log.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            m = ACCESS_LINE.fullmatch(line)
            assert m, f"unexpected access log line {line!r}"
            out.append((int(m.group(1)), int(m.group(2)), int(m.group(3))))
        return out

    def settled_access_lines(self, expected_lines):
        """Sends a sentinel request and waits for its line and for
        `expected_lines` others. The channel keeps the order of records, so
        once the sentinel's line is written, so is every line sent before it."""
        r = fcgi_request(self.sock, self.hello, query=f"seq={SENTINEL_SEQ}")
        assert r.status == 200, r

        def arrived():
            lines = self.access_lines()
            seqs = [seq for seq, _, _ in lines]
            return SENTINEL_SEQ in seqs and len(lines) >= expected_lines + 1 and lines
        try:
            lines = wait_for(arrived, interval=0.05, what="the sentinel's access log line")
        except AssertionError as error:
            raise AssertionError(f"{error}: {len(self.access_lines())} lines for {expected_lines} requests "
                                 f"+ the sentinel") from None
        return [line for line in lines if line[0] != SENTINEL_SEQ]

    def wait_log(self, pattern, what):
        return wait_for(lambda: re.search(pattern, self.drover.log_text()), interval=0.05,
                        what=f"{what} in the error log:\n{self.drover.log_text()[-3000:]}")


ANY = object()


def check_access_log(fp, load_outcomes, victim=None, victim_status=None):
    """Exactly one line per completed request and none for another: every
    200 of the load has its line with 200, the failed ones have none; the
    victim's line has `victim_status` (None: no line; ANY: at most one
    line, whatever its status). Returns the lines."""
    completed = {o.seq: 200 for o in load_outcomes if o.result == 200}
    lines = fp.settled_access_lines(len(completed) + (victim_status not in (None, ANY)))
    if victim_status is ANY:
        victim_lines = [status for seq, status, _ in lines if seq == victim.seq]
        assert len(victim_lines) <= 1, victim_lines
        victim_status = victim_lines[0] if victim_lines else None
    if victim_status is not None:
        completed[victim.seq] = victim_status
    counts = collections.Counter(seq for seq, _, _ in lines)
    twice = sorted(seq for seq, c in counts.items() if c > 1)
    assert not twice, f"requests logged more than once: {twice[:10]}"
    logged = {seq: status for seq, status, _ in lines}
    missing = sorted(set(completed) - set(logged))
    extra = sorted(set(logged) - set(completed))
    assert not extra, f"lines for requests that did not complete: {[(s, logged[s]) for s in extra[:10]]}"
    wrong = [(s, logged[s], completed[s]) for s in completed if s in logged and logged[s] != completed[s]]
    assert not wrong, f"(seq, logged status, expected) {wrong[:10]}"
    assert not missing, f"{len(missing)} completed requests have no access log line: {missing[:10]}"
    return lines


Hit = collections.namedtuple("Hit", "victim worker app outcomes recovery doc at")


def hit_the_victim(fp, seconds, sig, target="app", victim_timeout=60, meanwhile=None):
    """Under load: runs the victim (sleep.php?s=SECONDS), sends `sig` to its
    app (or its worker), waits for the victim's outcome (then calls
    `meanwhile`, if given) and for the pool to be whole again, lets 20 more
    requests pass and stops the load."""
    load = Load(fp.sock, fp.hello)
    load.wait_more(20)
    victim, worker, app = fp.sleeping_victim(seconds, timeout=victim_timeout)
    os.kill(worker if target == "worker" else app, sig)
    at = time.monotonic()
    outcome = victim.join()
    if meanwhile:
        meanwhile(worker, app)
    recovery, doc = fp.wait_whole(at, gone={worker, app} if target == "worker" else {app})
    load.wait_more(20)
    return Hit(outcome, worker, app, load.stop(), recovery, doc, at)


def report(fault, outcomes, recovery, label="whole again after", **figures):
    more = "".join(f", {k.replace('_', ' ')} {v}" for k, v in figures.items())
    print(f"\n[faults] {fault}: {len(outcomes)} requests, {len(failures(outcomes))} failed "
          f"({[(o.seq, o.result) for o in failures(outcomes)]}), {label} {recovery * 1000:.0f} ms{more}")


# ---------------------------------------------------------------------------
# kill -9 of an app, a worker, the agent
# ---------------------------------------------------------------------------

def test_app_killed_under_load_fails_only_its_request(drover_factory, workdir):
    fp = FaultPool(drover_factory, workdir).start()
    hit, worker, app, outcomes, recovery, doc, _ = hit_the_victim(fp, 5, signal.SIGKILL)

    assert hit.result == 502, hit
    assert not failures(outcomes), failures(outcomes)[:5]
    assert worker in {r["pid"] for r in doc["processes"]}, "the worker itself must survive its app"
    assert recovery < 10, f"{recovery:.1f} s to replace an app"
    check_access_log(fp, outcomes, hit, victim_status=502)
    fp.wait_log(rf"app {app} of worker {worker} closed the connection before END_REQUEST "
                r"\(it exited on signal 9 \(SIGKILL\)\); answering 502", "the app's death")
    report("kill -9 app", outcomes + [hit], recovery)


def test_idle_app_killed_under_load_fails_no_request(drover_factory, workdir):
    """kill -9 of apps whose worker is idle (30 times, each after the pool is
    whole again): no request was in flight in them, so none may fail but one
    that was in flight by the time the signal landed (502). Each app killed
    is over 1 s old: one killed younger, before it served anything, counts
    as a crash loop and its pool backs off (0.1 s doubling), which a fast
    kill loop on a busy machine turns into waits past any timeout."""
    fp = FaultPool(drover_factory, workdir).start()
    load = Load(fp.sock, fp.hello)
    load.wait_more(20)
    kills = 0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        for _ in range(60):
            if kills == 30:
                break
            idle = [r["app pid"] for r in fp.status()["processes"] if r["state"] == "Idle"]
            started = {pid: st[3] / tick for pid in idle if (st := proc_stat(pid))}
            if not started:
                continue
            app = min(started, key=started.get)
            uptime = float(open("/proc/uptime").read().split()[0])
            time.sleep(max(0.0, started[app] + 1.2 - uptime))
            os.kill(app, signal.SIGKILL)
            kills += 1
            fp.wait_whole(time.monotonic(), gone={app})
            with load.lock:
                if any(o.result == 503 for o in load.outcomes):
                    break
            load.wait_more(5)
    finally:
        outcomes = load.stop()
    refused = [o.seq for o in outcomes if o.result == 503]
    text = fp.drover.log_text()
    assert not refused, (f"{len(refused)} requests answered 503 after {kills} kills of idle apps: {refused[:5]}; "
                         f"{re.findall(r'cannot reach the app: .*', text)[:2]}")
    assert all(o.result in (200, 502) for o in outcomes), collections.Counter(o.result for o in outcomes)


def test_worker_killed_under_load_fails_only_its_request(drover_factory, workdir):
    fp = FaultPool(drover_factory, workdir).start()
    workers = workers_of(fp.pid)
    hit, worker, app, outcomes, recovery, doc, _ = hit_the_victim(fp, 5, signal.SIGKILL, target="worker")

    # The connection is cut before END_REQUEST: the client sees it closed.
    assert hit.result in ("ConnectionError", "ConnectionResetError"), hit
    assert not failures(outcomes), failures(outcomes)[:5]
    assert not pid_alive(app), "the killed worker's app outlived it"
    assert recovery < 10, f"{recovery:.1f} s to replace a worker"
    # The killed worker could not log its request; everything else is there.
    check_access_log(fp, outcomes, hit, victim_status=None)
    fp.wait_log(rf"\[pool www\] child {worker} exited on signal 9 \(SIGKILL\)", "the worker's death")
    new = {r["pid"] for r in doc["processes"]} - set(workers)
    assert len(new) == 1, (workers, doc["processes"])
    fp.wait_log(r"\[pool www\] child (%s) started" % "|".join(map(str, new)), "the replacement")
    report("kill -9 worker", outcomes + [hit], recovery)


def test_agent_killed_under_load_fails_nothing(drover_factory, workdir):
    fp = FaultPool(drover_factory, workdir).start()
    agent = agent_of(fp.pid)
    # An agent younger than 1 s is restarted after a back-off: not this case.
    wait_for(lambda: process_age(agent) > 1.2, what="the agent to be older than 1 s")
    load = Load(fp.sock, fp.hello)
    load.wait_more(20)
    os.kill(agent, signal.SIGKILL)
    killed_at = time.monotonic()
    recovery, _ = fp.wait_whole(killed_at, gone={agent})
    load.wait_more(20)
    outcomes = load.stop()

    assert not failures(outcomes), failures(outcomes)[:5]
    assert recovery < 10, f"{recovery:.1f} s to restart the agent"
    # Lines sent while no agent ran waited in the channel.
    check_access_log(fp, outcomes)
    fp.wait_log(rf"agent {agent} exited on signal 9 \(SIGKILL\) after [\d.]+ seconds from start; restarting it",
                "the agent's death")
    report("kill -9 agent", outcomes, recovery)


# ---------------------------------------------------------------------------
# kill -9 of the master
# ---------------------------------------------------------------------------

def kill_master(fp):
    """kill -9 of the master with a 1 s request (the victim) in flight and
    the load running; the load starts no request after the kill. Returns
    (victim outcome, load outcomes, kill time, every pid there was)."""
    load = Load(fp.sock, fp.hello)
    load.wait_more(20)
    victim, _, _ = fp.sleeping_victim(1)
    everything = set(descendants(fp.pid)) | {fp.pid}
    fp.drover.remember_pids()
    os.kill(fp.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    load.halt.set()
    hit = victim.join()
    outcomes = load.stop()
    return hit, outcomes, killed_at, everything


def test_master_killed_workers_finish_their_request_and_everything_exits(drover_factory, workdir):
    """Workers exit when the master dies after finishing their request
    (PR_SET_PDEATHSIG: SIGQUIT); their apps follow, the agent drains and
    exits; a new start on the same configuration replaces the stale socket
    file and serves."""
    fp = FaultPool(drover_factory, workdir).start()
    hit, outcomes, killed_at, everything = kill_master(fp)
    assert fp.drover.proc.wait(timeout=10) == -signal.SIGKILL

    # The 1 s request in flight when the master died completed.
    assert hit.result == 200, hit
    assert hit.response.text.startswith("slept 1\n") and hit.response.text.endswith("done\n"), hit
    assert hit.end > killed_at
    # Load requests: those a worker had taken completed. A connection that
    # was still in the accept queue when the workers stopped accepting is
    # reset when the last one closes the listening socket (that is not a
    # request in flight; with two client threads and two free workers, at
    # most one per thread, and usually none).
    cut = failures(outcomes)
    assert all(o.result in ("ConnectionError", "ConnectionResetError") for o in cut), cut
    assert len(cut) <= LOAD_THREADS, cut

    # Nothing is left: workers, apps, agent.
    wait_for(lambda: not any(pid_alive(p) for p in everything), interval=0.02,
             what=f"every process to exit: {[p for p in everything if pid_alive(p)]}")
    gone_after = time.monotonic() - killed_at

    # A new start on the same configuration: the stale socket file is replaced.
    assert os.path.exists(fp.sock), "the master was killed: its socket file stays behind"
    with pytest.raises(ConnectionRefusedError):
        connect_address(fp.sock).close()
    fp.drover = drover_factory(fp.drover.name)
    started = time.monotonic()
    fp.drover.start(wait_ready=False)
    first = wait_for(lambda: (r := fcgi_request(fp.sock, fp.hello, query="seq=800000", timeout=5)).status == 200
                     and r, interval=0.01, what="the first response after the restart")
    first_ok = time.monotonic() - started
    assert "method=GET" in first.text
    fp.wait_whole(started, what="the restarted pool")
    text = fp.drover.error_log.read_text()
    assert text.count(READY_LINE) == 2, text[-3000:]
    after = text[text.index(READY_LINE) + len(READY_LINE):]
    # The agent says the master is gone (and writes its workers' last lines);
    # nothing else goes wrong.
    assert re.search(r"\] ALERT: the master \(pid \d+\) is gone", after), after
    assert not re.search(r"\] (ERROR|ALERT): (?!the master \(pid)", after), after
    in_flight = [o for o in outcomes if o.start < killed_at < o.end]
    report("kill -9 master", outcomes + [hit], gone_after, label="every process gone after",
           load_requests_in_flight_at_the_kill=f"{len(in_flight)} ({[o.result for o in in_flight]})",
           reset_in_the_accept_queue=len(cut), first_response_after_restart=f"{first_ok * 1000:.0f} ms")


def test_master_killed_keeps_the_access_log_line_of_the_request_finished_after(drover_factory, workdir):
    fp = FaultPool(drover_factory, workdir).start()
    hit, outcomes, killed_at, everything = kill_master(fp)
    assert hit.result == 200, hit
    wait_for(lambda: not any(pid_alive(p) for p in everything), interval=0.02, what="every process to exit")
    logged = {seq: status for seq, status, _ in fp.access_lines()}
    missing = [o.seq for o in outcomes + [hit] if o.result == 200 and o.seq not in logged]
    assert not missing, (f"{len(missing)} requests that completed with 200 have no access log line: "
                         f"{missing} (the victim, {VICTIM_SEQ}, finished {hit.end - killed_at:.2f} s after the kill)")


def test_master_killed_leaves_no_app_socket_directory(drover_factory, workdir):
    tmp = workdir / "tmp"
    tmp.mkdir()
    fp = FaultPool(drover_factory, workdir, env={"TMPDIR": str(tmp)}).start()
    assert [p.name for p in tmp.iterdir() if p.name.startswith("drover.")], "no app socket directory in TMPDIR"
    hit, _, _, everything = kill_master(fp)
    assert hit.result == 200, hit
    wait_for(lambda: not any(pid_alive(p) for p in everything), interval=0.02, what="every process to exit")
    left = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
    assert not left, f"left behind in TMPDIR after every Drover process exited: {left}"


# ---------------------------------------------------------------------------
# SIGSTOP of an app
# ---------------------------------------------------------------------------

def test_app_stopped_is_ended_by_request_terminate_timeout(drover_factory, workdir):
    timeout = 3
    fp = FaultPool(drover_factory, workdir, pool_extra=f"request_terminate_timeout = {timeout}s\n").start()
    hit, worker, app, outcomes, recovery, doc, _ = hit_the_victim(fp, 1, signal.SIGSTOP)

    assert hit.result == 504, hit
    took = hit.end - hit.start
    # The timeout, then SIGTERM (pending on a stopped process) and SIGKILL 1 s later.
    assert timeout <= took < timeout + 5, f"the 504 came after {took:.1f} s"
    assert not failures(outcomes), failures(outcomes)[:5]
    assert not pid_alive(app), "the stopped app was left behind"
    assert worker in {r["pid"] for r in doc["processes"]}
    assert recovery < timeout + 10, f"{recovery:.1f} s"
    check_access_log(fp, outcomes, hit, victim_status=504)
    fp.wait_log(rf"\[pool www\] child {worker}, script '[^']*sleep\.php' \(request: \"GET /sleep\.php\?[^\"]*\"\) "
                rf"execution timed out \([\d.]+ sec\), terminating app {app}", "the timeout")
    report("SIGSTOP app, request_terminate_timeout = 3s", outcomes + [hit], recovery,
           answer_504_after=f"{took * 1000:.0f} ms")


def test_app_stopped_without_terminate_timeout_holds_its_worker_until_the_client_leaves(drover_factory, workdir):
    """Without request_terminate_timeout nothing ends the stopped app's
    request but the client: the worker stays busy with it as long as the
    client waits (nginx: fastcgi_read_timeout, 60 s by default). When the
    client leaves, the app gets FCGI_ABORT_REQUEST and 5 s; then it is
    replaced (SIGTERM, SIGKILL 1 s later). So the bound is the client's
    timeout + 5 s + 1 s + an app start."""
    client_timeout, abort_grace = 2.0, 5
    fp = FaultPool(drover_factory, workdir).start()

    def still_held(worker, app):
        # The client left; the stopped app is still the worker's, its row runs.
        row = next(r for r in fp.status()["processes"] if r["pid"] == worker)
        assert row["app pid"] == app and row["state"] == "Running", row
    hit, worker, app, outcomes, recovery, _, stopped_at = hit_the_victim(
        fp, 1, signal.SIGSTOP, victim_timeout=client_timeout, meanwhile=still_held)
    left_at = hit.end

    assert hit.result == "TimeoutError", hit
    assert not failures(outcomes), failures(outcomes)[:5]
    assert not pid_alive(app), "the stopped app was left behind"
    replaced_after_leaving = stopped_at + recovery - left_at
    assert abort_grace <= replaced_after_leaving < abort_grace + 10, f"{replaced_after_leaving:.1f} s"
    fp.wait_log(rf"app {app} of worker {worker} did not finish within {abort_grace} s after the client left; "
                "replacing it", "the abort grace")
    lines = check_access_log(fp, outcomes, hit, victim_status=ANY)
    victim_line = [line for line in lines if line[0] == VICTIM_SEQ]
    report("SIGSTOP app, no request_terminate_timeout, client timeout 2 s", outcomes + [hit], recovery,
           replaced_after_the_client_left=f"{replaced_after_leaving * 1000:.0f} ms",
           victim_access_line=victim_line)


def test_abandoned_request_of_a_replaced_app_is_not_logged_as_200(drover_factory, workdir):
    fp = FaultPool(drover_factory, workdir, n=2).start()
    victim, worker, app = fp.sleeping_victim(1, timeout=1)
    os.kill(app, signal.SIGSTOP)
    assert victim.join().result == "TimeoutError"
    fp.wait_log(rf"app {app} of worker {worker} did not finish within 5 s after the client left", "the abort grace")
    line = wait_for(lambda: [line for line in fp.access_lines() if line[0] == VICTIM_SEQ],
                    what="the abandoned request's access log line")
    assert line[0][1] == 499, f"the abandoned request is logged as {line}: its app never answered"


# ---------------------------------------------------------------------------
# slow loris
# ---------------------------------------------------------------------------

LORIS_WORKERS = 2
LORIS_CONNECTIONS = 10 * LORIS_WORKERS


class Loris:
    """`count` connections to `address` that never send a whole record:
    even ones send nothing, odd ones the first 3 bytes of a BEGIN_REQUEST
    header at once and then one more byte every 3 s up to 7 of its 8."""

    def __init__(self, address, count):
        self.header = fcgi_record(FCGI_BEGIN_REQUEST, 1, struct.pack(">HB5x", 1, 0))[:7]
        self.socks = [connect_address(address) for _ in range(count)]
        for i, s in enumerate(self.socks):
            if i % 2:
                s.sendall(self.header[:3])
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)
        self.thread.start()

    def _trickle(self):
        for sent in range(4, len(self.header) + 1):
            if self.halt.wait(3):
                return
            for s in self.socks[1::2]:
                with contextlib.suppress(OSError):
                    s.send(self.header[sent - 1:sent])

    def close(self):
        self.halt.set()
        self.thread.join(timeout=10)
        for s in self.socks:
            s.close()


def loris_pool(drover_factory, workdir):
    fp = FaultPool(drover_factory, workdir, n=LORIS_WORKERS).start()
    return fp, {w: fd_count(w) for w in workers_of(fp.pid)}


def held_connections(fp, base):
    """Descriptors each worker holds beyond its idle count (its client connection)."""
    return {w: fd_count(w) - n for w, n in base.items()}


def test_slow_loris_is_bounded(drover_factory, workdir):
    """10 x N loris connections against N workers: a worker waits 20 ms for
    a new connection's first request, then parks it beside its listening
    sockets and goes on accepting, so legitimate requests are served at
    once; the master's descriptors do not grow; each parked connection is
    closed 30 s after its accept with an error-log line. Measured and
    printed: how long the legitimate request sent right after them took."""
    fp, base = loris_pool(drover_factory, workdir)
    master_fds = fd_count(fp.pid)
    loris = Loris(fp.sock, LORIS_CONNECTIONS)
    opened = time.monotonic()
    legit = Background(fp.sock, fp.hello, 700000, timeout=600)
    peaks = {"master": master_fds, "held": 0, "per worker": 0}

    def sample():
        held = held_connections(fp, base)
        peaks["master"] = max(peaks["master"], fd_count(fp.pid))
        peaks["held"] = max(peaks["held"], sum(held.values()))
        peaks["per worker"] = max(peaks["per worker"], max(held.values()))
        return held

    try:
        hit = legit.join()
        assert hit.result == 200, hit
        # Every loris connection was taken off the queue and parked.
        wait_for(lambda: fp.status()["listen queue"] == 0 and sum(sample().values()) == LORIS_CONNECTIONS,
                 what="every loris connection parked")
        for i in range(10):
            r = fcgi_request(fp.sock, fp.hello, query=f"seq={700001 + i}", timeout=10)
            assert r.status == 200, r
        # The first-record timeout, counted from each accept: all are closed.
        wait_for(lambda: sample() is not None and fp.drover.log_text().count(LORIS_LINE) == LORIS_CONNECTIONS,
                 timeout=FIRST_RECORD_TIMEOUT + 20, interval=0.1, what="the first-record timeouts")
        timed_out = time.monotonic() - opened
        wait_for(lambda: sum(sample().values()) == 0, what="the workers to let go of them")
    finally:
        loris.close()
    assert hit.end - hit.start < 2, f"the legitimate request took {hit.end - hit.start:.1f} s"
    assert FIRST_RECORD_TIMEOUT - 1 <= timed_out < FIRST_RECORD_TIMEOUT + 10, timed_out
    assert peaks["master"] == master_fds, f"the master's descriptors grew from {master_fds} to {peaks['master']}"
    assert peaks["held"] <= LORIS_CONNECTIONS, peaks
    text = fp.drover.log_text()
    assert re.search(rf"WARNING: \[pool www\] worker \d+: {LORIS_LINE}", text), text[-3000:]
    print(f"\n[faults] slow loris: {LORIS_CONNECTIONS} connections, {LORIS_WORKERS} workers: "
          f"parked at most {peaks['held']} ({peaks['per worker']} by one worker), master fds {master_fds} -> "
          f"{peaks['master']}; all closed after {timed_out:.1f} s; the legitimate request sent after them "
          f"took {(hit.end - hit.start) * 1000:.0f} ms")
