#!/usr/bin/env python3
"""A Salt master cluster on a real GlusterFS volume: one saltship per "master", each following
the shared cache through its own FUSE mount, one state file on the volume (issue 31).

tests/cluster/gluster-rig.sh makes the volume and mounts it twice (A and B). watch A follows
mount A and ships; watch B follows mount B and stands by. A writer lands returns in Salt's
order (bench/watch-latency.py's `land`) through mount B, so A sees them only by polling.
Checked and printed, each with the issue's target:

1. latency, rename (through B) -> first byte at the receiver, p50/p99 (target p99 <= 1 s);
2. an idle watch on a cache of --jobs jobs (older than an hour, as most of a master's are):
   CPU of saltship, both FUSE clients and the brick over --idle seconds (target <= 2% of a core);
3. takeover after SIGKILL of the holder (target: shipping again within 5 s), returns landing
   throughout;
4. takeover after SIGSTOP of the holder (target <= 30 s); after SIGCONT the old holder must
   stop without writing the checkpoint;
5. no return missing at the receiver (duplicates counted, allowed only around a takeover).

    sudo python3 bench/cluster.py [--bin target/release/saltship] [--jobs 10000] [--idle 60] [--ci]

Exit status 0 when every check passed, 1 otherwise, 77 when the rig cannot be made here.
"""
import argparse
import importlib.util
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RIG = os.path.join(REPO, "tests", "cluster", "gluster-rig.sh")

spec = importlib.util.spec_from_file_location("latency", os.path.join(HERE, "watch-latency.py"))
latency = importlib.util.module_from_spec(spec)
spec.loader.exec_module(latency)

CHECKS = []
# --ci: the latency and CPU targets are printed, not checked (a shared CI host's load is not
# saltship's); takeover, the old holder's stop and nothing missing are checked always.
TIMED_ONLY_SHOWN = False


def check(ok, what, timed=False):
    if timed and TIMED_ONLY_SHOWN:
        print(f"  {'ok  ' if ok else 'over'} {what} (--ci: not checked)", flush=True)
        return
    CHECKS.append(ok)
    print(f"  {'ok  ' if ok else 'FAIL'} {what}", flush=True)


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rig_pids(work):
    """The brick and the two FUSE clients, by their command lines."""
    ns = open(os.path.join(work, "ns")).read().strip()
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
    pids = {}
    for pid in out:
        try:
            cmd = open(f"/proc/{pid}/cmdline").read().split("\0")
        except OSError:
            continue
        name = os.path.basename(cmd[0])
        if name == "glusterfsd":
            pids["brick"] = int(pid)
        elif name == "glusterfs" and cmd[-2:-1] and cmd[-2].endswith(("/a", "/b")):
            pids["fuse " + cmd[-2][-1]] = int(pid)
        elif name == "glusterfs" and any(c.endswith(("/a", "/b")) for c in cmd):
            mount = [c for c in cmd if c.endswith(("/a", "/b"))][-1]
            pids["fuse " + mount[-1]] = int(pid)
    return pids


class Watch:
    def __init__(self, binary, mount, name, port, extra=()):
        self.log = os.path.join(os.path.dirname(mount), f"watch-{name}.log")
        self.proc = subprocess.Popen(
            [binary, "watch", "--cache-dir", os.path.join(mount, "jobs"),
             "--state-file", os.path.join(mount, "state", "saltship.state"),
             "--target", f"127.0.0.1:{port}", "--master-id", name, "--cluster-id", "bench",
             "--stats-interval", "1h", *extra],
            stderr=open(self.log, "a"),
            env={k: v for k, v in os.environ.items() if not k.startswith("SALTSHIP_")})

    def text(self):
        return open(self.log).read()

    def wait_for(self, words, within):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if words in self.text():
                return time.monotonic()
            if self.proc.poll() is not None:
                return None
            time.sleep(0.05)
        return None


def populate(cache, n, sources):
    """n jobs of one return each, their folders made an hour and a half old (8 writers: one
    FUSE round trip at a time would take a quarter of an hour for 10,000)."""
    from concurrent.futures import ThreadPoolExecutor
    old = time.time() - 5400

    def one(i):
        n = 10_000_000 + i
        load, minion, ret = sources[i % len(sources)]
        latency.land(cache, n, load, minion, ret)
        d = os.path.join(cache, "%02x" % (n % 256), "bench%016d" % n)
        os.utime(os.path.join(d, minion), (old, old))
        os.utime(d, (old, old))

    for i in range(256):
        os.makedirs(os.path.join(cache, "%02x" % i), exist_ok=True)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "saltship"))
    ap.add_argument("--jobs", type=int, default=10000, help="jobs in the cache for the idle check")
    ap.add_argument("--idle", type=float, default=60, help="seconds the idle CPU is measured over")
    ap.add_argument("--rate", type=float, default=10, help="returns landed per second")
    ap.add_argument("--seconds", type=float, default=20, help="how long the latency run lands")
    ap.add_argument("--work", help="work folder (default: a temp folder, removed)")
    ap.add_argument("--ci", action="store_true", help="print the latency and CPU, do not check them")
    a = ap.parse_args()
    # `timeout` (.ci/run) sends SIGTERM: exit through the finally below, so the rig (glusterd,
    # the mounts, the netns) is taken down, not left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    global TIMED_ONLY_SHOWN
    TIMED_ONLY_SHOWN = a.ci
    work = a.work or tempfile.mkdtemp(prefix="saltship-cluster-")
    up = subprocess.run(["bash", RIG, "up", work])
    if up.returncode:
        sys.exit(up.returncode)
    watches = []
    receiver = latency.Receiver()
    receiver.start()
    try:
        ma, mb = os.path.join(work, "a"), os.path.join(work, "b")
        for d in ("jobs", "state"):
            os.makedirs(os.path.join(mb, d))
        sources = latency.state_returns()
        t = time.monotonic()
        populate(os.path.join(mb, "jobs"), a.jobs, sources)
        print(f"cache of {a.jobs} jobs written through mount B in {time.monotonic() - t:.0f} s", flush=True)
        A = Watch(a.bin, ma, "master-a", receiver.port)
        watches.append(A)
        t = time.monotonic()
        check(A.wait_for("shipped catching up", 1800) is not None, "watch A caught up and follows")
        print(f"  catch-up {time.monotonic() - t:.1f} s", flush=True)
        B = Watch(a.bin, mb, "master-b", receiver.port)
        watches.append(B)
        check(B.wait_for("standing by", 10) is not None, "watch B stands by")

        # 2. Idle CPU.
        time.sleep(5)
        pids = {"saltship A": A.proc.pid, "saltship B": B.proc.pid, **rig_pids(work)}
        before = {k: cpu_ticks(p) for k, p in pids.items()}
        time.sleep(a.idle)
        tick = os.sysconf("SC_CLK_TCK")
        used = {k: (cpu_ticks(p) - before[k]) / tick / a.idle * 100 for k, p in pids.items()}
        total = sum(used.values())
        parts = ", ".join(f"{k} {v:.2f}%" for k, v in sorted(used.items()))
        check(total <= 2.0, f"idle on {a.jobs} jobs: {total:.2f}% of a core ({parts}); target <= 2%", True)

        # 1. Latency through the other mount.
        cache_b = os.path.join(mb, "jobs")
        landed = {}
        n0 = 0

        def land_for(seconds, start_n):
            start = time.monotonic()
            total = int(a.rate * seconds)
            for i in range(total):
                time.sleep(max(0.0, start + i / a.rate - time.monotonic()))
                n = start_n + i
                load, minion, ret = sources[n % len(sources)]
                key, at = latency.land(cache_b, n, load, minion, ret)
                landed[key] = at
            return start_n + total

        n0 = land_for(a.seconds, n0)
        deadline = time.monotonic() + 10
        while any(k not in receiver.first for k in landed) and time.monotonic() < deadline:
            time.sleep(0.05)
        lat = sorted((receiver.first[k] - t) * 1000 for k, t in landed.items() if k in receiver.first)
        # Fewer than two arrived within 10 s: over the target (and step 5 says whether lost).
        q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [float("inf")] * 99
        lat = lat or [float("inf")]
        check(q[98] <= 1000, f"latency through the other mount, {len(lat)} returns at {a.rate:g}/s: "
              f"p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, max {lat[-1]:.0f} ms; target p99 <= 1 s", True)

        # 3. SIGKILL of the holder, returns landing throughout.
        killed = time.monotonic()
        A.proc.kill()
        A.proc.wait()
        took = B.wait_for("took over the lease of", 30)
        # That it took over is checked always, how fast only without --ci (a loaded host).
        check(took is not None, "B took over after SIGKILL of A")
        check(took is not None and took - killed <= 5,
              f"B took over {took - killed if took else float('nan'):.1f} s after SIGKILL of A; target <= 5 s", True)
        n0 = land_for(5, n0)
        A = Watch(a.bin, ma, "master-a", receiver.port)
        watches.append(A)
        check(A.wait_for("standing by", 10) is not None, "restarted A stands by")

        # 4. SIGSTOP of the holder (B now).
        time.sleep(2)
        stopped = time.monotonic()
        B.proc.send_signal(signal.SIGSTOP)
        n0 = land_for(3, n0)
        took = A.wait_for("took over the lease of", 60)
        check(took is not None, "A took over after SIGSTOP of B")
        check(took is not None and took - stopped <= 30,
              f"A took over {took - stopped if took else float('nan'):.1f} s after SIGSTOP of B; target <= 30 s", True)
        n0 = land_for(3, n0)
        B.proc.send_signal(signal.SIGCONT)
        try:
            code = B.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        check(code not in (None, 0) and "stopping before writing" in B.text(),
              f"B, continued, stopped without writing the checkpoint (exit {code})")

        # 5. Nothing missing: waited for up to 60 s (only while some are missing), as the new
        # holder's catch-up over FUSE is slow; a return still missing then is a failure.
        deadline = time.monotonic() + 60
        while any(k not in receiver.first for k in landed) and time.monotonic() < deadline:
            time.sleep(0.1)
        missing = [k for k in landed if k not in receiver.first]
        check(not missing, f"every one of {len(landed)} returns landed reached the receiver "
              f"(missing {len(missing)})")
    finally:
        for w in watches:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGCONT)
                w.proc.terminate()
                try:
                    w.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
        subprocess.run(["bash", RIG, "down", work])
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{sum(CHECKS)}/{len(CHECKS)} checks passed")
    sys.exit(0 if all(CHECKS) else 1)


if __name__ == "__main__":
    main()
