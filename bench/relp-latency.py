#!/usr/bin/env python3
"""Latency of `saltship watch --sink relp` into rsyslog's imrelp: from a return's rename into
the cache to its first event's line in rsyslog's file.

rsyslogd (Debian's rsyslog + rsyslog-relp) runs with `main_queue(queue.type="Direct")`, so
imrelp answers `rsp 200` only after omfile wrote the line; this script polls that file every
millisecond, so the times carry up to ~1 ms of polling error. Returns are landed as
bench/watch-latency.py lands them (its `land`, real returns from testdata/jobs), RATE per
second, one per job. Prints p50/p90/p99/max.

    python3 bench/relp-latency.py [--rate 50] [--seconds 20] [--bin target/release/saltship]
        [--via-haproxy]
"""
import argparse
import importlib.util
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
spec = importlib.util.spec_from_file_location("watch_latency", os.path.join(HERE, "watch-latency.py"))
wl = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wl)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, what, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def start_rsyslog(work):
    port = free_port()
    conf = os.path.join(work, "rsyslog.conf")
    with open(conf, "w") as f:
        f.write(f'''global(workDirectory="{work}" maxMessageSize="128k")
main_queue(queue.type="Direct")
module(load="imrelp")
input(type="imrelp" address="127.0.0.1" port="{port}" maxDataSize="128k")
template(name="raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="{work}/relp.log" template="raw")
''')
    proc = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", conf, "-i", os.path.join(work, "rsyslogd.pid")],
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "rsyslogd.err"), "w"))
    wait_port(port, "rsyslogd")
    return proc, port


def start_haproxy(work, backend):
    port = free_port()
    cfg = os.path.join(work, "haproxy.cfg")
    with open(cfg, "w") as f:
        f.write(f"global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n"
                f"  timeout server 60s\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n"
                f"backend be\n  server s1 127.0.0.1:{backend}\n")
    proc = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, "haproxy")
    return proc, port


class Tail(threading.Thread):
    """Polls rsyslog's file every millisecond; notes when each return's first event arrived."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.first = {}
        self.lines = 0

    def run(self):
        while not os.path.exists(self.path):
            time.sleep(0.001)
        buf = b""
        with open(self.path, "rb") as f:
            while True:
                data = f.read()
                now = time.monotonic()
                if not data:
                    time.sleep(0.001)
                    continue
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    self.lines += 1
                    event = json.loads(line)
                    self.first.setdefault((event["jid"], event["minion_id"]), now)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=50.0, help="returns per second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "saltship"))
    ap.add_argument("--via-haproxy", action="store_true", help="HAProxy (tcp mode) in front of rsyslog")
    a = ap.parse_args()
    sources = wl.state_returns()
    work = tempfile.mkdtemp(prefix="saltship-relp-latency-")
    cache = os.path.join(work, "jobs")
    os.makedirs(cache)
    procs = []
    try:
        rsyslog, port = start_rsyslog(work)
        procs.append(rsyslog)
        if a.via_haproxy:
            proxy, port = start_haproxy(work, port)
            procs.append(proxy)
        tail = Tail(os.path.join(work, "relp.log"))
        tail.start()
        log = os.path.join(work, "watch.log")
        watch = subprocess.Popen(
            [a.bin, "watch", "--sink", "relp", "--cache-dir", cache, "--state-file", os.path.join(work, "state"),
             "--target", "127.0.0.1:%d" % port, "--master-id", "bench"],
            stderr=open(log, "w"),
            env={k: v for k, v in os.environ.items() if not k.startswith("SALTSHIP_")})
        procs.append(watch)
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
        while len(tail.first) < len(landed) and time.monotonic() < deadline:
            time.sleep(0.05)
        watch.terminate()
        watch.wait(timeout=20)
        lat = sorted((tail.first[j] - t) * 1000 for j, t in landed.items() if j in tail.first)
        missing = len(landed) - len(lat)
        q = statistics.quantiles(lat, n=100)
        via = " through HAProxy" if a.via_haproxy else ""
        print(f"saltship watch --sink relp latency{via}, rename -> line in rsyslog's file (imrelp, Direct queue),"
              f" {len(lat)} returns at {a.rate:g}/s (missing: {missing}):")
        print(f"  p50 {q[49]:.1f} ms   p90 {q[89]:.1f} ms   p99 {q[98]:.1f} ms   max {lat[-1]:.1f} ms")
        print(f"  watch exit status {watch.returncode}")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
