#!/usr/bin/env python3
"""Duplicates and throughput per sink: tcp, splunk-hec, elasticsearch against Fluent Bit,
kafka against tansu.

For one backfill of the 24,480-event cache that tests/it/delivery.rs builds (the state jobs of
testdata/jobs copied 240 times), per sink:
  - throughput: one backfill into a local Fluent Bit, no restarts (events / wall seconds);
  - duplicates: one backfill at --max-rate RATE while the receiver is stopped and started
    again five times, evenly spread over the run (Fluent Bit with SIGTERM; tansu with SIGKILL:
    its SQLite store holds what it acknowledged); duplicates = records stored minus distinct
    event_ids, and every event_id of the dry run must be there.

    python3 bench/restarts.py [--binary target/release/saltship] [--rate 3000] [--sinks kafka]

Needs ../shared/receivers/fluent-bit and ../shared/receivers/tansu (or under
SALTSHIP_SHARED/receivers). Prints a Markdown table on stdout, progress on stderr. Receivers
are stopped by their PID. The Kafka records are counted in tansu's SQLite store (its `record`
table, whose key is the event_id), after tansu stopped.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "BENCHTOKEN"


def note(msg):
    print(f"# {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_cache(dest, copies=240):
    """The state jobs of testdata/jobs (but the big output) copied `copies` times."""
    cases = json.load(open(os.path.join(REPO, "testdata", "cases.json")))
    wanted = {c["jid"] for c in cases if c["expect"] == "states" and c["case"] != "big-output"}
    src = os.path.join(REPO, "testdata", "jobs")
    for prefix in os.listdir(src):
        for job in os.listdir(os.path.join(src, prefix)):
            path = os.path.join(src, prefix, job)
            jid = open(os.path.join(path, "jid")).read()
            if jid not in wanted:
                continue
            for i in range(copies):
                out = os.path.join(dest, f"{i % 256:02x}", f"{jid}_{i}")
                shutil.copytree(path, out)
                with open(os.path.join(out, "jid"), "w") as f:
                    f.write(f"{jid}_{i}")


class FluentBit:
    def __init__(self, binary, workdir):
        self.binary, self.dir = binary, workdir
        self.ports = {"tcp": free_port(), "splunk-hec": free_port(), "elasticsearch": free_port()}
        conf = f"""[SERVICE]
    flush 0.2
    log_level error
    grace 1
[INPUT]
    name tcp
    listen 127.0.0.1
    port {self.ports['tcp']}
    format json
    tag tcp
[INPUT]
    name splunk
    listen 127.0.0.1
    port {self.ports['splunk-hec']}
    splunk_token {TOKEN}
    tag hec
[INPUT]
    name elasticsearch
    listen 127.0.0.1
    port {self.ports['elasticsearch']}
    tag es
"""
        for tag in ("tcp", "hec", "es"):
            conf += f"""[OUTPUT]
    name file
    match {tag}
    path {workdir}
    file {tag}.jsonl
    format plain
"""
        self.conf = os.path.join(workdir, "fluent-bit.conf")
        open(self.conf, "w").write(conf)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.binary, "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for port in self.ports.values():
            deadline = time.time() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise SystemExit(f"fluent-bit did not listen on {port}")
                    time.sleep(0.05)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def target(self, sink):
        port = self.ports[sink]
        return f"127.0.0.1:{port}" if sink == "tcp" else f"http://127.0.0.1:{port}"

    def lines(self, file):
        try:
            with open(os.path.join(self.dir, file)) as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def ids(self, file):
        out = []
        with open(os.path.join(self.dir, file)) as f:
            for line in f:
                r = json.loads(line)
                ev = r.get("event")
                if isinstance(ev, dict):
                    out.append(ev.get("event_id") or ev.get("id"))
                else:
                    out.append(r.get("event_id"))
        return out


FILES = {"tcp": "tcp.jsonl", "splunk-hec": "hec.jsonl", "elasticsearch": "es.jsonl"}


class Tansu:
    """tansu with SQLite storage in `workdir`; the topic salt-states with 3 partitions."""

    def __init__(self, binary, workdir):
        self.binary, self.dir = binary, workdir
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.proc = None
        self.created = False

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "broker", "--listener-url", self.url, "--advertised-listener-url",
             self.url, "--storage-engine", "sqlite://broker.db"],
            cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit(f"tansu did not listen on {self.port}")
                time.sleep(0.05)
        if not self.created:
            subprocess.run([self.binary, "topic", "create", "salt-states", "--partitions", "3",
                            "--broker", self.url], check=True, stdout=subprocess.DEVNULL)
            self.created = True

    def stop(self, kill=False):
        if self.proc:
            if kill:
                self.proc.kill()
            else:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def target(self, _sink):
        return f"127.0.0.1:{self.port}"

    def keys(self):
        db = sqlite3.connect(os.path.join(self.dir, "broker.db"))
        try:
            return [bytes(k).decode() for (k,) in db.execute("select k from record")]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def lines(self, _file):
        db = sqlite3.connect(os.path.join(self.dir, "broker.db"))
        try:
            return db.execute("select count(*) from record").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()

    def ids(self, _file):
        return self.keys()


def command(binary, jobs, fb, sink, extra):
    return [binary, "backfill", "--cache-dir", jobs, "--no-checkpoint", "-q",
            "--sink", sink, "--target", fb.target(sink), *extra]


def receiver(sink, shared, work):
    if sink == "kafka":
        return Tansu(os.path.join(shared, "receivers", "tansu"), work)
    return FluentBit(os.path.join(shared, "receivers", "fluent-bit"), work)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "saltship"))
    ap.add_argument("--rate", type=int, default=3000)
    ap.add_argument("--sinks", default="tcp,splunk-hec,elasticsearch,kafka")
    args = ap.parse_args()
    shared = os.environ.get("SALTSHIP_SHARED", os.path.join(REPO, "..", "shared"))
    env = dict(os.environ, SALTSHIP_HEC_TOKEN=TOKEN)
    env.pop("RUST_LOG", None)
    with tempfile.TemporaryDirectory() as tmp:
        jobs = os.path.join(tmp, "jobs")
        note("building the 24,480-event cache")
        build_cache(jobs)
        dry = subprocess.run([args.binary, "backfill", "--dry-run", "--cache-dir", jobs],
                             capture_output=True, check=True, env=env)
        want = {json.loads(l)["event_id"] for l in dry.stdout.splitlines()}
        note(f"{len(want)} events in the dry run")
        rows = []
        for sink in args.sinks.split(","):
            # Throughput: a fresh receiver, no faults.
            work = tempfile.mkdtemp(dir=tmp)
            fb = receiver(sink, shared, work)
            fb.start()
            t = time.time()
            subprocess.run(command(args.binary, jobs, fb, sink, []), check=True, env=env)
            wall = time.time() - t
            fb.stop()
            # Duplicates: five restarts spread over a paced run.
            work = tempfile.mkdtemp(dir=tmp)
            fb = receiver(sink, shared, work)
            fb.start()
            run = subprocess.Popen(command(args.binary, jobs, fb, sink,
                                           ["--max-rate", str(args.rate)]), env=env)
            restarts = 0
            for k in range(1, 6):
                mark = len(want) * k // 6
                while fb.lines(FILES.get(sink)) < mark and run.poll() is None:
                    time.sleep(0.02)
                if run.poll() is not None:
                    break
                fb.stop(kill=True) if sink == "kafka" else fb.stop()
                time.sleep(0.3)
                fb.start()
                restarts += 1
            code = run.wait()
            fb.stop()
            ids = fb.ids(FILES.get(sink))
            missing = len(want - set(ids))
            dups = len(ids) - len(set(ids))
            note(f"{sink}: {wall:.2f} s, {restarts} restarts, {len(ids)} stored, "
                 f"{dups} duplicates, {missing} missing, exit {code}")
            rows.append((sink, len(want) / wall, wall, restarts, len(ids), dups, missing, code))
        print("| sink | throughput (events/s) | wall (s) | restarts | records stored | duplicates | missing | exit |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for sink, rate, wall, restarts, stored, dups, missing, code in rows:
            print(f"| {sink} | {rate:,.0f} | {wall:.2f} | {restarts} | {stored:,} | {dups:,} | {missing} | {code} |")
        print(f"\n`python3 bench/restarts.py --rate {args.rate}`: {len(want):,} events; duplicates "
              f"with five receiver restarts (Fluent Bit: SIGTERM; tansu: SIGKILL) during a run paced at "
              f"--max-rate {args.rate}.")


if __name__ == "__main__":
    main()
