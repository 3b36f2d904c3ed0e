#!/usr/bin/env python3
"""Helper of live-master.sh (run by the Salt venv's python).

  live_master.py inotify JOBS OUT      record, with monotonic times, when each job folder's
                                       files appear and are closed (until SIGTERM)
  live_master.py gaps JOBS OUT         how long the master took from .load.p to .minions.p
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

IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_ISDIR = 0x8, 0x80, 0x100, 0x40000000


def inotify(jobs, out):
    """Watches jobs/, each two-hex folder and each job folder, and writes one line per event:
    `<ns> <event> <path>`. Watches are added as folders appear; a file made in a job folder
    before its watch was added is found by listing it right after."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(0)
    wds = {}

    def add(path):
        wd = libc.inotify_add_watch(fd, path.encode(), IN_CREATE | IN_CLOSE_WRITE | IN_MOVED_TO)
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
            kind = "close" if mask & IN_CLOSE_WRITE else "moved" if mask & IN_MOVED_TO else "create"
            log.write("%d %s %s\n" % (now, kind, path))
            depth = os.path.relpath(path, jobs).count(os.sep)
            if mask & IN_ISDIR and depth <= 1:
                add(path)
                if depth == 1:
                    for f in os.listdir(path):
                        log.write("%d early %s\n" % (time.monotonic_ns(), os.path.join(path, f)))


def gaps(jobs, out):
    """Per job folder, in ms (inotify times): from the folder's creation to its `.load.p` being
    there (renamed into place by 3008's atomic_open, or closed when written in place), and
    from then to its `.minions.p` being there."""
    seen = {}
    for line in open(out):
        ns, kind, path = line.split(" ", 2)
        path = path.strip()
        seen.setdefault((path, kind), int(ns))

    def there(path):
        found = [seen.get((path, k)) for k in ("moved", "close")]
        found = [t for t in found if t is not None]
        return min(found) if found else None

    folder_to_load, load_to_minions = [], []
    for (path, kind), ns in seen.items():
        # A job folder: jobs/<2 hex>/<rest>.
        if kind != "create" or os.path.relpath(path, jobs).count(os.sep) != 1:
            continue
        load, minions = there(os.path.join(path, ".load.p")), there(os.path.join(path, ".minions.p"))
        if load is not None:
            folder_to_load.append((load - ns) / 1e6)
            if minions is not None:
                load_to_minions.append((minions - load) / 1e6)
    for what, rows in [("job folder made -> .load.p there", folder_to_load), (".load.p there -> .minions.p there", load_to_minions)]:
        rows.sort()
        if rows:
            print(
                "master: %s: %d jobs, min %.3f ms, median %.3f ms, max %.3f ms"
                % (what, len(rows), rows[0], rows[len(rows) // 2], rows[-1])
            )
        else:
            print("master: %s: not seen" % what)


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
        if mine and mine[0].get("returns_cached") is False:
            missing = "(nocache: returns not kept)"
        print("%s %-22s targeted %d, returned %d, missing %s: %s" % (jid, fun, len(targeted), len(returned), missing or "-", status))
        bad += bool(problems)
    print("%d jobs compared with jobs.list_job, %d mismatches" % (len(jids), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "inotify":
        inotify(sys.argv[2], sys.argv[3])
    elif cmd == "gaps":
        gaps(sys.argv[2], sys.argv[3])
    elif cmd == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3], sys.argv[4]))
