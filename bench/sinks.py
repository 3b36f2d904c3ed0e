#!/usr/bin/env python3
"""Backfill cost per sink: user+sys CPU, wall time, events/s and peak RSS of one
`saltship backfill --no-checkpoint` of a corpus into receivers that answer at once.

    python3 bench/sinks.py --cache JOBS [--bin LABEL=PATH ...] [--sinks tcp,splunk-hec,...]
                           [--runs 3] [--format FMT]

Receivers, all on 127.0.0.1 and discarding what they get:
  - tcp, splunk-hec, elasticsearch, otlp: one Fluent Bit (../shared/receivers/fluent-bit) with
    its tcp (format json), splunk, elasticsearch and opentelemetry inputs and a `null` output;
  - kafka: tansu with `memory://` storage, topic salt-states with 3 partitions;
  - relp: rsyslog imrelp, its messages written to /dev/null (main queue Direct).
Several --bin are run alternately (A B A B ...) per sink, so that drift in the machine's load
hits each alike. CPU is saltship's user+sys from `/usr/bin/time -v`, the least load-sensitive
number; every row carries the load average sampled before its runs. Prints a Markdown table
on stdout, progress on stderr. A sink a binary does not know is reported as n/a.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

# The helpers restarts.py already has (this folder is on sys.path when a script runs).
from restarts import REPO, TOKEN, free_port, note


def wait_port(port, name, proc):
    deadline = time.time() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"{name} did not listen on {port}")
            time.sleep(0.05)


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Receivers:
    """Started once for all runs; each sink's target by name."""

    def __init__(self, shared, work, sinks):
        self.procs, self.targets = [], {}
        fb_sinks = [s for s in sinks if s in ("tcp", "splunk-hec", "elasticsearch", "otlp")]
        if fb_sinks:
            ports = {s: free_port() for s in fb_sinks}
            inputs = {"tcp": "tcp\n    format json", "splunk-hec": f"splunk\n    splunk_token {TOKEN}",
                      "elasticsearch": "elasticsearch", "otlp": "opentelemetry"}
            conf = "[SERVICE]\n    flush 0.2\n    log_level error\n    grace 1\n"
            for s in fb_sinks:
                conf += (f"[INPUT]\n    name {inputs[s]}\n    listen 127.0.0.1\n"
                         f"    port {ports[s]}\n    tag {s}\n")
            conf += "[OUTPUT]\n    name null\n    match *\n"
            path = os.path.join(work, "fluent-bit.conf")
            open(path, "w").write(conf)
            fb = subprocess.Popen([os.path.join(shared, "receivers", "fluent-bit"), "-c", path],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(fb)
            for s, p in ports.items():
                wait_port(p, "fluent-bit", fb)
                self.targets[s] = f"127.0.0.1:{p}" if s == "tcp" else f"http://127.0.0.1:{p}"
        if "kafka" in sinks:
            tansu = os.path.join(shared, "receivers", "tansu")
            port = free_port()
            url = f"tcp://127.0.0.1:{port}"
            proc = subprocess.Popen([tansu, "broker", "--listener-url", url,
                                     "--advertised-listener-url", url,
                                     "--storage-engine", "memory://tansu/"],
                                    cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(proc)
            wait_port(port, "tansu", proc)
            subprocess.run([tansu, "topic", "create", "salt-states", "--partitions", "3",
                            "--broker", url], check=True, stdout=subprocess.DEVNULL)
            self.targets["kafka"] = f"127.0.0.1:{port}"
        if "relp" in sinks:
            port = free_port()
            rdir = os.path.join(work, "rsyslog")
            os.mkdir(rdir)
            conf = os.path.join(rdir, "rsyslog.conf")
            open(conf, "w").write(
                f'global(workDirectory="{rdir}" maxMessageSize="128k")\n'
                'main_queue(queue.type="Direct")\nmodule(load="imrelp")\n'
                f'input(type="imrelp" address="127.0.0.1" port="{port}" maxDataSize="128k")\n'
                'action(type="omfile" file="/dev/null")\n')
            proc = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", conf, "-i",
                                     os.path.join(rdir, "pid")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(proc)
            wait_port(port, "rsyslogd", proc)
            self.targets["relp"] = f"127.0.0.1:{port}"

    def close(self):
        for p in self.procs:
            stop(p)


def knows(binary, sink):
    out = subprocess.run([binary, "backfill", "--help"], capture_output=True, text=True).stdout
    return f"- {sink}:" in out


def one_run(binary, jobs, sink, target, env, work, fmt=None):
    err = os.path.join(work, "time.err")
    cmd = ["/usr/bin/time", "-v", "-o", err, binary, "backfill", "--cache-dir", jobs,
           "--no-checkpoint", "-q", "--sink", sink, "--target", target]
    cmd += ["--format", fmt] if fmt else []
    t = time.time()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.time() - t
    if r.returncode != 0:
        raise SystemExit(f"{binary} --sink {sink} exited {r.returncode}: {r.stderr[-2000:]}")
    v = {}
    for line in open(err):
        k, _, val = line.strip().rpartition(": ")
        v[k] = val
    cpu = float(v["User time (seconds)"]) + float(v["System time (seconds)"])
    return cpu, wall, int(v["Maximum resident set size (kbytes)"]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True, help="the jobs folder to backfill")
    ap.add_argument("--bin", action="append", help="LABEL=PATH, repeatable (default: this repo's release build)")
    ap.add_argument("--sinks", default="tcp,splunk-hec,elasticsearch,kafka,relp,otlp")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--format", help="--format for every run (default: each sink's own)")
    args = ap.parse_args()
    bins = [b.split("=", 1) for b in (args.bin or [f"after={REPO}/target/release/saltship"])]
    sinks = args.sinks.split(",")
    shared = os.environ.get("SALTSHIP_SHARED", os.path.join(REPO, "..", "shared"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALTSHIP_") and k != "RUST_LOG"}
    env["SALTSHIP_HEC_TOKEN"] = TOKEN
    work = tempfile.mkdtemp(prefix="saltship-sinks-")
    events = subprocess.run(f"{bins[0][1]} backfill --dry-run -q --cache-dir {jobs_q(args.cache)} | wc -l",
                            shell=True, capture_output=True, text=True, check=True).stdout.strip()
    events = int(events)
    note(f"{events} events in the dry run")
    rec = Receivers(shared, work, sinks)
    rows = []
    try:
        for sink in sinks:
            load = open("/proc/loadavg").read().split()[0]
            res = {label: [] for label, _ in bins}
            for r in range(args.runs):
                for label, path in bins:
                    if not knows(path, sink):
                        continue
                    note(f"{sink} {label} run {r + 1}/{args.runs}")
                    res[label].append(one_run(path, args.cache, sink, rec.targets[sink], env, work,
                                              args.format))
            load_after = open("/proc/loadavg").read().split()[0]
            for label, _ in bins:
                rows.append((sink, label, res[label], f"{load}-{load_after}"))
    finally:
        rec.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"| sink | binary | CPU user+sys (median) | wall (median) | events/s | peak RSS | runs (CPU s) | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for sink, label, runs, load in rows:
        if not runs:
            print(f"| {sink} | {label} | n/a (no such sink) | | | | | |")
            continue
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        print(f"| {sink} | {label} | {cpu:.2f} s | {wall:.2f} s | {events / wall:,.0f} | {rss:.1f} MiB "
              f"| {' '.join(f'{r[0]:.2f}' for r in runs)} | {load} |")
    fmt = f"--format {args.format}" if args.format else "each sink's default format"
    print(f"\n{events:,} events from `{args.cache}`, {fmt}; medians of {args.runs} alternating runs.")


def jobs_q(path):
    return "'" + path.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    main()
