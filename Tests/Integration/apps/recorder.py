#!/usr/bin/env python3
"""A raw FastCGI app for protocol tests: appends what it sees to $RECORD_LOG
("connect", record type names, "abort"), answers each request with the
request id and, when the request has the param SLEEP=N, waits up to N seconds
for an FCGI_ABORT_REQUEST first. With the param EARLY=1 it answers as soon as
the params are complete, without reading the body (as apps that reject a
request early do). With CLOSE_EACH=1 it closes the connection
after every request, like apps that ignore FCGI_KEEP_CONN."""
import os, select, socket, struct, threading, time

LOG = os.environ.get("RECORD_LOG", "/dev/null")
CLOSE_EACH = os.environ.get("CLOSE_EACH") == "1"
NAMES = {1: "begin", 2: "abort", 4: "params", 5: "stdin"}


def note(text):
    with open(LOG, "a") as f:
        f.write(text + "\n")


def record(rtype, rid, content=b""):
    return struct.pack("!BBHHBB", 1, rtype, rid, len(content), 0, 0) + content


def params_of(blob):
    out, i = {}, 0
    while i < len(blob):
        lens = []
        for _ in range(2):
            n = blob[i]
            if n < 128:
                lens.append(n); i += 1
            else:
                lens.append(struct.unpack("!I", blob[i:i + 4])[0] & 0x7FFFFFFF); i += 4
        k = blob[i:i + lens[0]].decode(); i += lens[0]
        v = blob[i:i + lens[1]].decode(); i += lens[1]
        out[k] = v
    return out


def take_records(buf):
    """Splits complete records off `buf`: ([(type, id, content)], rest)."""
    out = []
    while len(buf) >= 8:
        _, t, r, cl, pl, _ = struct.unpack("!BBHHBB", buf[:8])
        if len(buf) < 8 + cl + pl:
            break
        out.append((t, r, buf[8:8 + cl]))
        buf = buf[8 + cl + pl:]
    return out, buf


def end_request(conn, rid, app_status):
    conn.sendall(record(3, rid, struct.pack("!IB3x", app_status, 0)))


def serve(conn):
    buf, params, rid, stdin_done, params_done = b"", b"", None, False, False
    while True:
        records, buf = take_records(buf)
        for t, r, content in records:
            note(NAMES.get(t, f"type{t}"))
            if t == 1:
                rid, params, stdin_done, params_done = r, b"", False, False
            elif t == 4:
                params += content
                params_done = not content
            elif t == 5 and not content:
                stdin_done = True
            elif t == 2 and rid is not None:
                end_request(conn, rid, 1)
                rid = None
        early = params_done and params_of(params).get("EARLY") == "1"
        if rid is not None and (stdin_done or early):
            deadline = time.time() + float(params_of(params).get("SLEEP", "0"))
            aborted = False
            while not aborted and time.time() < deadline:
                ready, _, _ = select.select([conn], [], [], max(0.0, deadline - time.time()))
                if not ready:
                    break
                more = conn.recv(65536)
                if not more:
                    note("client-closed")
                    return
                late, buf = take_records(buf + more)
                aborted = any(t == 2 for t, _, _ in late)
            if aborted:
                note("abort")
                end_request(conn, rid, 1)
            else:
                body = f"Content-Type: text/plain\r\n\r\nrequest {rid}\n".encode()
                conn.sendall(record(6, rid, body) + record(6, rid))
                end_request(conn, rid, 0)
            rid = None
            if CLOSE_EACH:
                return
            continue
        data = conn.recv(65536)
        if not data:
            return
        buf += data


def handle(c):
    try:
        serve(c)
    finally:
        c.close()


listener = socket.socket(fileno=0)
while True:
    c, _ = listener.accept()
    note("connect")
    threading.Thread(target=handle, args=(c,), daemon=True).start()
