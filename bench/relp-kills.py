#!/usr/bin/env python3
"""Why RELP exists: `saltship backfill` through HAProxy (tcp mode) into rsyslog, which is
SIGKILLed and restarted 5 times mid-run, once with `--sink relp` (imrelp) and once with
`--sink tcp` (imtcp). rsyslog runs with `main_queue(queue.type="Direct")`, so what it
acknowledged is in its file when it is killed. Prints, per sink: exit status, events sent,
event_ids stored, missing, duplicates.

    python3 bench/relp-kills.py [--copies 40] [--rate 4000] [--bin target/release/saltship]
        [--sinks relp,tcp] [--give-up]

With --give-up, rsyslog stays down after each kill until `sync` gives up (--deliver-timeout
5s, exit 3), and is started again for the next `sync` on the same checkpoint, until one exits
0: the duplicates are then what runs that gave up left unrecorded.

The cache is the state jobs of testdata/jobs copied COPIES times (as tests/relp.rs does).
Needs rsyslog, rsyslog-relp and haproxy (Debian packages).
"""
import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ID = re.compile(rb'"event_id":"([0-9a-f]+)"')


def multiplied_cache(dest, copies):
    cases = json.load(open(os.path.join(REPO, "testdata", "cases.json")))
    wanted = {c["jid"] for c in cases if c["expect"] == "states" and c["case"] != "big-output"}
    jobs = os.path.join(REPO, "testdata", "jobs")
    for prefix in os.listdir(jobs):
        for job in os.listdir(os.path.join(jobs, prefix)):
            d = os.path.join(jobs, prefix, job)
            jid = open(os.path.join(d, "jid")).read()
            if jid not in wanted:
                continue
            for i in range(copies):
                out = os.path.join(dest, "%02x" % (i % 256), f"{jid}_{i}")
                shutil.copytree(d, out)
                with open(os.path.join(out, "jid"), "w") as f:
                    f.write(f"{jid}_{i}")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, seconds=10):
    import socket
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on {port}")


class Rsyslog:
    def __init__(self, work, module):
        self.work, self.port, self.proc = work, free_port(), None
        inp = {
            "relp": f'module(load="imrelp")\ninput(type="imrelp" address="127.0.0.1" port="{self.port}" maxDataSize="128k")',
            "tcp": f'module(load="imtcp")\ninput(type="imtcp" address="127.0.0.1" port="{self.port}")',
        }[module]
        self.conf = os.path.join(work, "rsyslog.conf")
        self.out = os.path.join(work, "out.log")
        with open(self.conf, "w") as f:
            f.write(f'global(workDirectory="{work}" maxMessageSize="128k")\nmain_queue(queue.type="Direct")\n{inp}\n'
                    f'template(name="raw" type="string" string="%rawmsg%\\n")\n'
                    f'action(type="omfile" file="{self.out}" template="raw")\n')
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", self.conf, "-i", os.path.join(self.work, "pid")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def lines(self):
        try:
            with open(self.out, "rb") as f:
                return f.read().count(b"\n")
        except FileNotFoundError:
            return 0

    def ids(self):
        try:
            return collections.Counter(ID.findall(open(self.out, "rb").read()))
        except FileNotFoundError:
            return collections.Counter()


def give_up_runs(sink, a, jobs, want, rs, port, work):
    """`sync` runs on one checkpoint, rsyslog killed (and left down) once each run is a sixth
    further, until a run exits 0: (last exit, kills, runs)."""
    kills, runs, code = 0, 0, 3
    while code != 0 and runs < 8:
        target = (kills + 1) * len(want) // 6
        proc = subprocess.Popen([a.bin, "sync", "--cache-dir", jobs, "--master-id", "bench", "--sink", sink,
                                 "--target", f"127.0.0.1:{port}", "--state-file", os.path.join(work, "state"),
                                 "--max-rate", str(a.rate), "--deliver-timeout", "5s"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={k: v for k, v in os.environ.items() if not k.startswith("SALTSHIP_")})
        while proc.poll() is None:
            if kills < 5 and rs.lines() >= target and rs.proc.poll() is None:
                rs.kill()
                kills += 1
            time.sleep(0.005)
        code, runs = proc.returncode, runs + 1
        if rs.proc.poll() is not None:
            rs.start()
    return code, kills, runs


def run(sink, a, jobs, want):
    work = tempfile.mkdtemp(prefix=f"saltship-kills-{sink}-")
    try:
        rs = Rsyslog(work, sink)
        port = free_port()
        cfg = os.path.join(work, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 60s\n"
                    f"  timeout server 60s\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n"
                    f"backend be\n  server s1 127.0.0.1:{rs.port}\n")
        proxy = subprocess.Popen(["haproxy", "-db", "-f", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(port)
        if a.give_up:
            started = time.monotonic()
            code, kills, runs = give_up_runs(sink, a, jobs, want, rs, port, work)
            took = time.monotonic() - started
            time.sleep(0.5)
            got = rs.ids()
            missing = len(want - set(got))
            dups = sum(n - 1 for n in got.values())
            print(f"| `{sink}` | {code} ({runs} runs) | {kills} | {len(want)} | {len(want) - missing} | {missing} | {dups} | {took:.1f} s |", flush=True)
            proxy.kill()
            proxy.wait()
            rs.kill()
            return
        kills = []
        done = threading.Event()

        def killer():
            while len(kills) < 5 and not done.is_set():
                if rs.lines() >= (len(kills) + 1) * len(want) // 6:
                    rs.kill()
                    kills.append(rs.lines())
                    time.sleep(0.2)
                    rs.start()
                time.sleep(0.005)

        t = threading.Thread(target=killer)
        t.start()
        started = time.monotonic()
        p = subprocess.run([a.bin, "backfill", "--cache-dir", jobs, "--master-id", "bench", "--sink", sink,
                            "--target", f"127.0.0.1:{port}", "--state-file", os.path.join(work, "state"),
                            "--max-rate", str(a.rate), "--deliver-timeout", "60s"],
                           capture_output=True, text=True, env={k: v for k, v in os.environ.items() if not k.startswith("SALTSHIP_")})
        took = time.monotonic() - started
        done.set()
        t.join()
        time.sleep(0.5)
        got = rs.ids()
        missing = len(want - set(got))
        dups = sum(n - 1 for n in got.values())
        print(f"| `{sink}` | {p.returncode} | {len(kills)} | {len(want)} | {len(want) - missing} | {missing} | {dups} | {took:.1f} s |", flush=True)
        if p.returncode != 0:
            print("  stderr: " + p.stderr.strip().replace("\n", "\n  "))
        proxy.kill()
        proxy.wait()
        rs.kill()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=40)
    ap.add_argument("--rate", type=float, default=4000)
    ap.add_argument("--bin", default=os.path.join(REPO, "target", "release", "saltship"))
    ap.add_argument("--sinks", default="relp,tcp")
    ap.add_argument("--give-up", action="store_true", help="leave rsyslog down until each sync gives up")
    a = ap.parse_args()
    top = tempfile.mkdtemp(prefix="saltship-kills-cache-")
    try:
        jobs = os.path.join(top, "jobs")
        multiplied_cache(jobs, a.copies)
        dry = subprocess.run([a.bin, "backfill", "--dry-run", "--cache-dir", jobs, "--master-id", "bench"],
                             capture_output=True, check=True)
        want = set(ID.findall(dry.stdout))
        how = "left down until sync gives up" if a.give_up else "restarted"
        print(f"through HAProxy, rsyslog (Direct queue) SIGKILLed and {how} 5 times, --max-rate {a.rate:g}:")
        print()
        print("| sink | exit | kills | events | stored | missing | duplicates | time |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for sink in a.sinks.split(","):
            run(sink, a, jobs, want)
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
