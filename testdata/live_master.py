#!/usr/bin/env python3
"""Helper of live-master.sh (run by the Salt venv's python).

  live_master.py inotify JOBS OUT      record, with monotonic times, when each job folder's
                                       files appear and are closed (until SIGTERM)
  live_master.py gaps OUT              how long the master took from .load.p to .minions.p
  live_master.py compare MASTER_CONF EVENTS JOBS
                                       every job and no_return event against jobs.list_job
"""
import ctypes
import json
import os
import signal
import struct
import sys
import time

IN_CLOSE_WRITE, IN_CREATE, IN_ISDIR = 0x8, 0x100, 0x40000000


def inotify(jobs, out):
    """Watches jobs/, each two-hex folder and each job folder, and writes one line per event:
    `<ns> <event> <path>`. Watches are added as folders appear; a file made in a job folder
    before its watch was added is found by listing it right after."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(0)
    wds = {}

    def add(path):
        wd = libc.inotify_add_watch(fd, path.encode(), IN_CREATE | IN_CLOSE_WRITE)
        if wd >= 0:
            wds[wd] = path
        return wd

    log = open(out, "w", buffering=1)
    add(jobs)
    for top in os.listdir(jobs):
        add(os.path.join(jobs, top))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        buf = os.read(fd, 65536)
        now = time.monotonic_ns()
        at = 0
        while at < len(buf):
            wd, mask, _, size = struct.unpack_from("iIII", buf, at)
            name = buf[at + 16 : at + 16 + size].rstrip(b"\0").decode()
            at += 16 + size
            path = os.path.join(wds.get(wd, "?"), name)
            kind = "close" if mask & IN_CLOSE_WRITE else "create"
            log.write("%d %s %s\n" % (now, kind, path))
            depth = os.path.relpath(path, jobs).count(os.sep)
            if mask & IN_ISDIR and depth <= 1:
                add(path)
                if depth == 1:
                    for f in os.listdir(path):
                        log.write("%d early %s\n" % (time.monotonic_ns(), os.path.join(path, f)))


def gaps(out):
    """Per job folder: ms from .load.p's close to .minions.p's creation (inotify times)."""
    seen = {}
    for line in open(out):
        ns, kind, path = line.split(" ", 2)
        path = path.strip()
        seen.setdefault((os.path.dirname(path), os.path.basename(path), kind), int(ns))
    rows = []
    for (job, name, kind), ns in seen.items():
        if name == ".load.p" and kind == "close":
            minions = seen.get((job, ".minions.p", "create"))
            if minions is not None:
                rows.append((minions - ns) / 1e6)
    rows.sort()
    if not rows:
        print("gaps: no job with both files seen by inotify")
        return
    print(
        "master: .load.p closed -> .minions.p created: %d jobs, min %.3f ms, median %.3f ms, max %.3f ms"
        % (len(rows), rows[0], rows[len(rows) // 2], rows[-1])
    )


def compare(conf, events_path, jobs):
    import salt.config
    import salt.runner

    opts = salt.config.master_config(conf)
    runner = salt.runner.RunnerClient(opts)
    events = [json.loads(l) for l in open(events_path) if l.strip()]
    jids = set()
    for top in os.listdir(jobs):
        for job in os.listdir(os.path.join(jobs, top)):
            with open(os.path.join(jobs, top, job, "jid")) as fh:
                jids.add(fh.read().strip())
    bad = 0
    for jid in sorted(jids):
        view = runner.cmd("jobs.list_job", [jid], print_event=False)
        fun = view.get("Function")
        mine = [e for e in events if e.get("jid") == jid and e["event_type"] == "job"]
        no_return = sorted(e["minion_id"] for e in events if e.get("jid") == jid and e["event_type"] == "no_return")
        if fun == "saltutil.find_job":
            ok = not mine and not no_return
            print("%s %-22s skipped (the CLI's polling)%s" % (jid, fun, "" if ok else "  MISMATCH"))
            bad += not ok
            continue
        returned = sorted(view.get("Result", {}))
        targeted = sorted(view.get("Minions") or returned)
        missing = sorted(set(targeted) - set(returned))
        problems = []
        if len(mine) != 1:
            problems.append("%d job events" % len(mine))
        else:
            ev = mine[0]
            for field, key in [("fun", "Function"), ("tgt", "Target"), ("tgt_type", "Target-type"), ("user", "User")]:
                if ev.get(field) != view.get(key):
                    problems.append("%s %r != %r" % (field, ev.get(field), view.get(key)))
            if ev.get("minions_targeted") != len(targeted):
                problems.append("targeted %s != %d" % (ev.get("minions_targeted"), len(targeted)))
            if ev.get("returns_cached") is False:
                # nocache: Salt kept no return, list_job shows none.
                if returned or no_return or ev.get("minions_returned") is not None:
                    problems.append("nocache job with returns")
            else:
                if ev.get("minions_returned") != len(returned):
                    problems.append("returned %s != %d" % (ev.get("minions_returned"), len(returned)))
                if ev.get("minions_missing") != missing:
                    problems.append("missing %s != %s" % (ev.get("minions_missing"), missing))
                if no_return != missing:
                    problems.append("no_return %s != %s" % (no_return, missing))
        status = "MISMATCH " + "; ".join(problems) if problems else "ok"
        print("%s %-22s targeted %d, returned %d, missing %s: %s" % (jid, fun, len(targeted), len(returned), missing or "-", status))
        bad += bool(problems)
    print("%d jobs compared with jobs.list_job, %d mismatches" % (len(jids), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "inotify":
        inotify(sys.argv[2], sys.argv[3])
    elif cmd == "gaps":
        gaps(sys.argv[2])
    elif cmd == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4]))
