#!/usr/bin/env python3
"""Latency of `saltship watch`: from a return's rename into the cache to the first byte of its
events at a receiver on 127.0.0.1.

A writer lands returns the way a Salt master does (job folder, `jid` and `.load.p` written in
place, then `<minion>/return.p` by a temp file and a rename), RATE per second, one per job,
copying real returns from testdata/jobs. The receiver runs in this process, so the rename and
the arrival are timed on one clock. Prints p50/p90/p99/max. Needs only the Python stdlib.
One return lands first, not counted: watch opens its connection at its first event.

    python3 bench/watch-latency.py [--rate 50] [--seconds 20] [--bin target/release/saltship]
        [--sink tcp|splunk-hec|elasticsearch|kafka] [--arg=--linger=5ms ...]

`--sink splunk-hec|elasticsearch`: an HTTP receiver in this process that answers at once.
`--sink kafka`: tansu (../shared/receivers/tansu, SQLite storage) behind a relay in this
process that reads the Kafka framing; it also prints when the broker's answer came back.

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
            # Its head and body go in two writes: with Nagle's algorithm the body waits for
            # the client's delayed ACK of the head (40 ms on Linux), which every real receiver
            # avoids (Fluent Bit, Splunk and Elasticsearch answer in one write or with NODELAY).
            disable_nagle_algorithm = True

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


class KafkaReceiver(threading.Thread):
    """tansu (../shared/receivers/tansu, SQLite storage in `work`) behind a pass-through relay
    in this process, which it advertises, so every connection of the producer goes through it.
    The relay reads the Kafka framing both ways: per (jid, minion), when the produce request
    carrying its first record arrived whole (`first`) and when the broker's answer to it came
    back (`acked`). Records are not compressed, so each value's JSON is in the request as is."""

    KEY = re.compile(rb'"minion_id":"([^"\\]+)","jid":"(\d+)"')

    def __init__(self, work):
        super().__init__(daemon=True)
        self.first, self.acked = {}, {}
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        broker = socket.socket()
        broker.bind(("127.0.0.1", 0))
        self.upstream = broker.getsockname()[1]
        broker.close()
        binary = os.path.join(REPO, "..", "shared", "receivers", "tansu")
        url = "tcp://127.0.0.1:%d" % self.upstream
        self.proc = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url",
             "tcp://127.0.0.1:%d" % self.port, "--storage-engine", "sqlite://broker.db"],
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.upstream), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("tansu did not listen")
                time.sleep(0.05)
        subprocess.run([binary, "topic", "create", "salt-states", "--partitions", "3",
                        "--broker", url], check=True, stdout=subprocess.DEVNULL)

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def run(self):
        while True:
            conn, _ = self.sock.accept()
            up = socket.create_connection(("127.0.0.1", self.upstream))
            for s in (conn, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            produced = {}
            threading.Thread(target=self.pump, args=(conn, up, produced, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(up, conn, produced, False), daemon=True).start()

    def pump(self, src, dst, produced, requests):
        """Passes bytes on as they come; reads the size-prefixed frames they make."""
        buf = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            now = time.monotonic()
            if not data:
                dst.close()
                return
            buf += data
            while len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[:4], "big"):
                size = int.from_bytes(buf[:4], "big")
                frame, buf = buf[4:4 + size], buf[4 + size:]
                if requests and int.from_bytes(frame[:2], "big") == 0:  # Produce
                    keys = [(j.decode(), m.decode()) for m, j in self.KEY.findall(frame)]
                    for k in keys:
                        self.first.setdefault(k, now)
                    produced[int.from_bytes(frame[4:8], "big")] = keys
                elif not requests:
                    for k in produced.pop(int.from_bytes(frame[:4], "big"), []):
                        self.acked.setdefault(k, now)
            # Passed on once read: the answer must not overtake the request's bookkeeping.
            dst.sendall(data)


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
    ap.add_argument("--sink", default="tcp", choices=["tcp", "splunk-hec", "elasticsearch", "kafka"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "saltship"))
    ap.add_argument("--rss", action="store_true", help="print watch's RSS every minute")
    ap.add_argument("--keep", type=float, default=0, help="delete jobs older than this many seconds, as the master's cleanup does")
    ap.add_argument("--cache", help="follow this cache (a jobs folder) instead of an empty one")
    ap.add_argument("--arg", action="append", default=[], help="one more argument for saltship watch (repeatable), e.g. --arg=--linger=5ms")
    ap.add_argument("--per-job", type=int, default=1, help="returns per job landed (minions of one highstate)")
    ap.add_argument("--events", help="watch's --events LIST (state, job, no-return, all); its default if not given")
    ap.add_argument("--names", help="minion names as a %%-format of the return's place in its job, e.g. web-%%04d.example.com")
    a = ap.parse_args()
    sources = state_returns()
    work = tempfile.mkdtemp(prefix="saltship-latency-")
    cache = a.cache or os.path.join(work, "jobs")
    os.makedirs(cache, exist_ok=True)
    if a.sink == "tcp":
        receiver = Receiver()
    elif a.sink == "kafka":
        receiver = KafkaReceiver(work)
    else:
        receiver = HttpReceiver(a.sink)
    receiver.start()
    if a.sink == "tcp":
        target = ["--target", "127.0.0.1:%d" % receiver.port]
    elif a.sink == "kafka":
        target = ["--sink", "kafka", "--target", "127.0.0.1:%d" % receiver.port]
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
         *target, *a.arg, "--master-id", "bench",
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
        total = int(a.rate * a.seconds)
        # One return first, not counted: watch opens its connection (Kafka: its producer, whose
        # producer id can take librdkafka's 500 ms retry timer) at its first event.
        warm = (total // a.per_job + 1) * a.per_job
        load, minion, ret = sources[0]
        key, _ = land(cache, warm, load, minion, ret, a.per_job, a.names)
        deadline = time.monotonic() + 10
        while key not in receiver.first and time.monotonic() < deadline:
            time.sleep(0.01)
        landed = {}
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
        seen = receiver.acked if a.sink == "kafka" else receiver.first
        while any(k not in seen for k in landed) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Idle: the last confirm and save, then the metrics file's next write.
        time.sleep(11.0 if a.cache else 0)
        after = metrics(prom)
        peak = rss_kib(watch.pid, "VmHWM")
    finally:
        watch.terminate()
        watch.wait(timeout=20)
        if a.sink == "kafka":
            receiver.stop()
        shutil.rmtree(work, ignore_errors=True)
    lat = sorted((receiver.first[j] - t) * 1000 for j, t in landed.items() if j in receiver.first)
    missing = len(landed) - len(lat)
    q = statistics.quantiles(lat, n=100)
    print(f"saltship watch latency, rename -> first byte at the receiver, {len(lat)} returns at {a.rate:g}/s"
          f" (missing: {missing}):")
    print(f"  p50 {q[49]:.1f} ms   p90 {q[89]:.1f} ms   p99 {q[98]:.1f} ms   max {lat[-1]:.1f} ms")
    if a.sink == "kafka":
        acked = sorted((receiver.acked[j] - t) * 1000 for j, t in landed.items() if j in receiver.acked)
        qa = statistics.quantiles(acked, n=100)
        print(f"  acknowledged (the broker's produce response passed back), {len(acked)} returns:")
        print(f"  p50 {qa[49]:.1f} ms   p90 {qa[89]:.1f} ms   p99 {qa[98]:.1f} ms   max {acked[-1]:.1f} ms")
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
