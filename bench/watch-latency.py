#!/usr/bin/env python3
"""Latency of `saltship watch`: from a return's rename into the cache to the first byte of its
events at a receiver on 127.0.0.1.

A writer lands returns the way a Salt master does (job folder, `jid` and `.load.p` written in
place, then `<minion>/return.p` by a temp file and a rename), RATE per second, one per job,
copying real returns from testdata/jobs. The receiver runs in this process, so the rename and
the arrival are timed on one clock. Prints p50/p90/p99/max. Needs only the Python stdlib.

    python3 bench/watch-latency.py [--rate 50] [--seconds 20] [--bin target/release/saltship]

The soak run, bounded in time: `--seconds 600 --rss --keep 60` also prints watch's resident
memory every minute while old jobs are cleaned up as a master does; the last sample should
equal the first within noise.

On a big master: `--cache DIR/jobs` follows that cache instead of an empty one (a generated
one, see bench/watch-scale.sh), waits until watch caught up with it, then lands returns and
also prints watch's peak RSS, its inotify watches and what a checkpoint save wrote (from its
metrics file). The returns landed are left in the cache.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def state_returns():
    """(load bytes, minion, return bytes) of the real state jobs in testdata."""
    cases = json.load(open(os.path.join(REPO, "testdata", "cases.json")))
    wanted = {c["jid"] for c in cases if c["expect"] == "states" and c["case"] != "big-output"}
    jobs = os.path.join(REPO, "testdata", "jobs")
    out = []
    for prefix in sorted(os.listdir(jobs)):
        for job in sorted(os.listdir(os.path.join(jobs, prefix))):
            d = os.path.join(jobs, prefix, job)
            if open(os.path.join(d, "jid")).read() not in wanted or not os.path.exists(os.path.join(d, ".load.p")):
                continue
            load = open(os.path.join(d, ".load.p"), "rb").read()
            for minion in sorted(os.listdir(d)):
                ret = os.path.join(d, minion, "return.p")
                if os.path.isfile(ret):
                    out.append((load, minion, open(ret, "rb").read()))
    return out


class Receiver(threading.Thread):
    """Reads newline-delimited events; notes when the first event of each return arrived."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.first = {}

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        buf = b""
        while True:
            data = conn.recv(65536)
            now = time.monotonic()
            if not data:
                conn.close()
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                event = json.loads(line)
                self.first.setdefault((event.get("jid"), event.get("minion_id")), now)


class HttpReceiver(threading.Thread):
    """HEC or `_bulk` on 127.0.0.1 that answers at once (`code: 0`, every item created) and
    notes when each return's first event arrived."""

    def __init__(self, sink):
        super().__init__(daemon=True)
        import http.server
        first = self.first = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                now = time.monotonic()
                lines = [json.loads(l) for l in body.split(b"\n") if l.strip()]
                if sink == "splunk-hec":
                    events = [l["event"] for l in lines]
                    reply = {"text": "Success", "code": 0}
                else:
                    events = lines[1::2]
                    items = [{"create": {"_id": a["create"]["_id"], "status": 201}} for a in lines[0::2]]
                    reply = {"took": 1, "errors": False, "items": items}
                for event in events:
                    first.setdefault((event.get("jid"), event.get("minion_id")), now)
                out = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def run(self):
        self.server.serve_forever()


def rss_kib(pid, field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def metrics(path):
    """The saltship_* values of a metrics file, by name."""
    out = {}
    try:
        for line in open(path):
            if line.startswith("saltship_"):
                name, value = line.split()
                out[name[len("saltship_"):]] = float(value)
    except FileNotFoundError:
        pass
    return out


def wait_caught_up(watch, log, deadline):
    """Until watch logs that it follows the cache (its catch-up is done)."""
    while time.monotonic() < deadline:
        if watch.poll() is not None:
            raise SystemExit(f"watch exited with {watch.returncode}: {open(log).read()}")
        if "following " in open(log).read():
            return
        time.sleep(0.2)
    raise SystemExit("watch did not catch up in time")


def land(cache, n, load, minion, ret, per_job=1, names=None):
    """A return as a master writes it, the first of its job with the job's folder, `jid` and
    `.load.p`; the return's key and the time of its rename. `names`: a format for the minion
    names from the return's place in its job (the fleet's own names)."""
    job = n // per_job
    jid = "2099%016d" % job
    d = os.path.join(cache, "%02x" % (job % 256), "bench%016d" % job)
    if names:
        minion = names % (n % per_job)
    elif per_job > 1:
        minion = "%s-%05d" % (minion, n % per_job)
    if n % per_job == 0:
        os.makedirs(d)
        with open(os.path.join(d, "jid"), "w") as f:
            f.write(jid)
        with open(os.path.join(d, ".load.p"), "wb") as f:
            f.write(load)
    os.makedirs(os.path.join(d, minion))
    tmp = os.path.join(d, minion, ".___atomic_writeXYZ")
    with open(tmp, "wb") as f:
        f.write(ret)
    renamed = time.monotonic()
    os.rename(tmp, os.path.join(d, minion, "return.p"))
    return (jid, minion), renamed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50.0, help="returns per second")
    ap.add_argument("--sink", default="tcp", choices=["tcp", "splunk-hec", "elasticsearch"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "saltship"))
    ap.add_argument("--rss", action="store_true", help="print watch's RSS every minute")
    ap.add_argument("--keep", type=float, default=0, help="delete jobs older than this many seconds, as the master's cleanup does")
    ap.add_argument("--cache", help="follow this cache (a jobs folder) instead of an empty one")
    ap.add_argument("--per-job", type=int, default=1, help="returns per job landed (minions of one highstate)")
    ap.add_argument("--events", help="watch's --events LIST (state, job, no-return, all); its default if not given")
    ap.add_argument("--names", help="minion names as a %%-format of the return's place in its job, e.g. web-%%04d.example.com")
    a = ap.parse_args()
    sources = state_returns()
    work = tempfile.mkdtemp(prefix="saltship-latency-")
    cache = a.cache or os.path.join(work, "jobs")
    os.makedirs(cache, exist_ok=True)
    receiver = Receiver() if a.sink == "tcp" else HttpReceiver(a.sink)
    receiver.start()
    if a.sink == "tcp":
        target = ["--target", "127.0.0.1:%d" % receiver.port]
    else:
        token = os.path.join(work, "token")
        with open(token, "w") as f:
            f.write("bench\n")
        target = ["--sink", a.sink, "--format", "json", "--hec-token-file", token,
                  "--target", "http://127.0.0.1:%d" % receiver.port]
    log = os.path.join(work, "watch.log")
    prom = os.path.join(work, "saltship.prom")
    watch = subprocess.Popen(
        [a.bin, "watch", "--cache-dir", cache, "--state-file", os.path.join(work, "state"),
         *target, "--master-id", "bench",
         "--metrics-file", prom, *(["--events", a.events] if a.events else [])],
        stderr=open(log, "w"),
        env={k: v for k, v in os.environ.items() if not k.startswith("SALTSHIP_")})
    try:
        caught_up = time.monotonic()
        wait_caught_up(watch, log, time.monotonic() + 1800)
        caught_up = time.monotonic() - caught_up
        catch_up_rss = rss_kib(watch.pid, "VmHWM")
        # The first save after the catch-up, so the save counters below measure only the run.
        time.sleep(11.0 if a.cache else 1.0)
        before = metrics(prom)
        landed = {}
        total = int(a.rate * a.seconds)
        start = time.monotonic()
        for n in range(total):
            # Paced against the start, so a slow write does not slow the rate down.
            time.sleep(max(0.0, start + n / a.rate - time.monotonic()))
            # One source per job: its load and its returns agree.
            load, minion, ret = sources[(n // a.per_job) % len(sources)]
            key, at = land(cache, n, load, minion, ret, a.per_job, a.names)
            landed[key] = at
            old = n - int(a.keep * a.rate)
            if a.keep and old >= 0 and old % a.per_job == a.per_job - 1:
                job = old // a.per_job
                shutil.rmtree(os.path.join(cache, "%02x" % (job % 256), "bench%016d" % job), ignore_errors=True)
            if a.rss and n % int(a.rate * 60) == int(a.rate * 60) - 1:
                print(f"  after {(n + 1) / a.rate / 60:.0f} min: RSS {rss_kib(watch.pid)} KiB", flush=True)
        deadline = time.monotonic() + 10
        while len(receiver.first) < len(landed) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Idle: the last confirm and save, then the metrics file's next write.
        time.sleep(11.0 if a.cache else 0)
        after = metrics(prom)
        peak = rss_kib(watch.pid, "VmHWM")
    finally:
        watch.terminate()
        watch.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    lat = sorted((receiver.first[j] - t) * 1000 for j, t in landed.items() if j in receiver.first)
    missing = len(landed) - len(lat)
    q = statistics.quantiles(lat, n=100)
    print(f"saltship watch latency, rename -> first byte at the receiver, {len(lat)} returns at {a.rate:g}/s"
          f" (missing: {missing}):")
    print(f"  p50 {q[49]:.1f} ms   p90 {q[89]:.1f} ms   p99 {q[98]:.1f} ms   max {lat[-1]:.1f} ms")
    print(f"  watch exit status {watch.returncode}")
    if a.cache:
        saves = after.get("checkpoint_saves_total", 0) - before.get("checkpoint_saves_total", 0)
        written = after.get("checkpoint_written_bytes_total", 0) - before.get("checkpoint_written_bytes_total", 0)
        print(f"  catch-up {caught_up:.1f} s, peak RSS {catch_up_rss / 1024:.1f} MiB after it,"
              f" {peak / 1024:.1f} MiB at the end")
        print(f"  inotify watches at the end: {after.get('watches', 0):.0f}")
        print(f"  checkpoint: {saves:.0f} saves while landing, {written / max(saves, 1):.0f} bytes written per save")


if __name__ == "__main__":
    main()
