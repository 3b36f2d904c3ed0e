#!/usr/bin/env python3
"""Latency of `saltship watch --sink otlp` into Fluent Bit's opentelemetry input: from a
return's rename into the cache to (1) its log records reaching Fluent Bit and (2) Fluent Bit's
2xx acknowledging them.

Lands returns as bench/watch-latency.py does (RATE per second, one per job). Between saltship
and Fluent Bit sits a pass-through HTTP/1.1 relay in this process, so the rename, the request's
last byte and the acknowledgement are timed on one clock; the relay finds which returns a
request carries from the events in it (protobuf keeps each body's JSON as it is). Prints
p50/p90/p99/max of both. Needs the Python stdlib and ../shared/receivers/fluent-bit.

    python3 bench/otlp-latency.py [--rate 50] [--seconds 20] [--bin target/release/saltship]
"""
import argparse
import importlib.util
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
spec = importlib.util.spec_from_file_location("wl", os.path.join(HERE, "watch-latency.py"))
wl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wl)

# The body's JSON as it is (protobuf) or escaped in a JSON string (OTLP/JSON).
KEY = re.compile(rb'\\?"minion_id\\?":\\?"([^"\\]+)\\?",\\?"jid\\?":\\?"(\d+)')


def read_message(f):
    """One HTTP/1.1 message (head and a Content-Length body) from a file, or None at EOF."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + f.read(length)


class Relay(threading.Thread):
    """Passes requests to `upstream` and answers back; notes per (jid, minion) when its
    request arrived whole and when its acknowledgement (a 2xx) came back."""

    def __init__(self, upstream):
        super().__init__(daemon=True)
        self.upstream = upstream
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.arrived, self.acked = {}, {}
        self.statuses = {}

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        up = socket.create_connection(("127.0.0.1", self.upstream))
        cin, uin = conn.makefile("rb"), up.makefile("rb")
        while True:
            request = read_message(cin)
            if request is None:
                break
            arrived = time.monotonic()
            up.sendall(request)
            answer = read_message(uin)
            acked = time.monotonic()
            if answer is None:
                break
            status = int(answer.split(b" ", 2)[1])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            for minion, jid in KEY.findall(request):
                key = (jid.decode(), minion.decode())
                self.arrived.setdefault(key, arrived)
                if 200 <= status < 300:
                    self.acked.setdefault(key, acked)
            conn.sendall(answer)
        conn.close()
        up.close()


def fluent_bit(work, port):
    conf = os.path.join(work, "fluent-bit.conf")
    with open(conf, "w") as f:
        f.write(f"""[SERVICE]
    flush 0.2
    log_level warn
    grace 1
[INPUT]
    name opentelemetry
    listen 127.0.0.1
    port {port}
    tag otlp
[OUTPUT]
    name file
    match otlp
    path {work}
    file otlp.jsonl
    format plain
""")
    shared = os.environ.get("SALTSHIP_SHARED", os.path.join(REPO, "..", "shared"))
    proc = subprocess.Popen([os.path.join(shared, "receivers", "fluent-bit"), "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("fluent-bit did not start")


def quantiles(name, lat, total):
    q = statistics.quantiles(lat, n=100)
    print(f"  {name} ({len(lat)} of {total}): p50 {q[49]:.1f} ms   p90 {q[89]:.1f} ms"
          f"   p99 {q[98]:.1f} ms   max {max(lat):.1f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50.0, help="returns per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "saltship"))
    ap.add_argument("--encoding", default="protobuf", choices=["protobuf", "json"])
    a = ap.parse_args()
    sources = wl.state_returns()
    work = tempfile.mkdtemp(prefix="saltship-otlp-latency-")
    cache = os.path.join(work, "jobs")
    os.makedirs(cache)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    fb_port = probe.getsockname()[1]
    probe.close()
    fb = fluent_bit(work, fb_port)
    relay = Relay(fb_port)
    relay.start()
    log = os.path.join(work, "watch.log")
    watch = subprocess.Popen(
        [a.bin, "watch", "--cache-dir", cache, "--state-file", os.path.join(work, "state"),
         "--sink", "otlp", "--otlp-encoding", a.encoding,
         "--target", "http://127.0.0.1:%d" % relay.port, "--master-id", "bench"],
        stderr=open(log, "w"),
        env={k: v for k, v in os.environ.items() if not k.startswith("SALTSHIP_")})
    try:
        wl.wait_caught_up(watch, log, time.monotonic() + 60)
        time.sleep(1.0)
        landed = {}
        total = int(a.rate * a.seconds)
        start = time.monotonic()
        for n in range(total):
            time.sleep(max(0.0, start + n / a.rate - time.monotonic()))
            load, minion, ret = sources[n % len(sources)]
            key, at = wl.land(cache, n, load, minion, ret)
            landed[key] = at
        deadline = time.monotonic() + 10
        while len(relay.acked) < len(landed) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.terminate()
        watch.wait(timeout=20)
        fb.terminate()
        fb.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    print(f"saltship watch --sink otlp ({a.encoding}) into Fluent Bit's opentelemetry input,"
          f" {len(landed)} returns at {a.rate:g}/s; HTTP statuses {relay.statuses}:")
    for name, times in [("rename -> request at Fluent Bit", relay.arrived),
                        ("rename -> Fluent Bit's 2xx", relay.acked)]:
        lat = sorted((times[k] - t) * 1000 for k, t in landed.items() if k in times)
        quantiles(name, lat, len(landed))
    print(f"  watch exit status {watch.returncode}")


if __name__ == "__main__":
    main()
