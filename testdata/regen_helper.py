#!/usr/bin/env python3
"""Helper for regen.sh (run with the Salt venv's python).

Sub-commands:
  jids CACHEDIR                      print every jid found under CACHEDIR/jobs
  settle CACHEDIR [SECONDS]          wait until no file under jobs/ changed for ~1.5 s
  waitret CACHEDIR JID MINION [SEC]  wait until JID has MINION/return.p
  record CACHEDIR BEFORE CASES_JSONL CMD RC SPEC...
        SPEC = case|expect|fun-regex|note ; every jid that is new since BEFORE is
        matched against the specs in order (first unused spec whose regex matches
        the job's fun). Unmatched new jids are recorded as <first-case>-extra-N.
  cases CASES_JSONL OUT_JSON          turn the jsonl into the final cases.json
  expected CONFDIR JOBSDIR OUTDIR     write OUTDIR/<jid>.json = jobs.list_job output
"""
import json
import os
import re
import sys
import time

import msgpack


def load_p(path):
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        return None
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except UnicodeDecodeError:  # Python 2 masters (salt2019/) write non-UTF-8 raw strings
        return msgpack.unpackb(data, raw=False, strict_map_key=False, unicode_errors="replace")


def walk(cachedir):
    jobs = os.path.join(cachedir, "jobs")
    out = {}
    if not os.path.isdir(jobs):
        return out
    for top in sorted(os.listdir(jobs)):
        for rest in sorted(os.listdir(os.path.join(jobs, top))):
            d = os.path.join(jobs, top, rest)
            try:
                with open(os.path.join(d, "jid"), "rb") as fh:
                    jid = fh.read().decode()
            except OSError:
                continue
            out[jid] = d
    return out


def fun_of(d):
    fun = None
    lp = os.path.join(d, ".load.p")
    if os.path.exists(lp):
        try:
            fun = (load_p(lp) or {}).get("fun")
        except Exception:  # noqa
            pass
    if fun is None:
        for sub in sorted(os.listdir(d)):
            rp = os.path.join(d, sub, "return.p")
            if os.path.exists(rp):
                ret = load_p(rp)
                if isinstance(ret, dict) and isinstance(ret.get("return"), dict):
                    fun = ret["return"].get("fun")
                break
    if isinstance(fun, list):
        return ",".join(fun)
    return fun or ""


def snapshot(cachedir):
    sig = []
    for root, dirs, files in os.walk(os.path.join(cachedir, "jobs")):
        for f in files:
            p = os.path.join(root, f)
            try:
                st = os.stat(p)
            except OSError:
                continue
            sig.append((p, st.st_size, st.st_mtime_ns))
    return sorted(sig)


def main(argv):
    cmd = argv[1]
    if cmd == "jids":
        for jid in sorted(walk(argv[2])):
            print(jid)
    elif cmd == "settle":
        limit = float(argv[3]) if len(argv) > 3 else 30
        end = time.time() + limit
        last = snapshot(argv[2])
        stable_since = time.time()
        while time.time() < end:
            time.sleep(0.3)
            cur = snapshot(argv[2])
            if cur != last:
                last, stable_since = cur, time.time()
            elif time.time() - stable_since >= 1.5:
                return 0
        print("settle: cache still changing after %ss" % limit, file=sys.stderr)
    elif cmd == "waitret":
        cachedir, jid, minion = argv[2], argv[3], argv[4]
        limit = float(argv[5]) if len(argv) > 5 else 60
        end = time.time() + limit
        while time.time() < end:
            d = walk(cachedir).get(jid)
            if d and os.path.exists(os.path.join(d, minion, "return.p")):
                return 0
            time.sleep(0.3)
        print("waitret: no return from %s for %s" % (minion, jid), file=sys.stderr)
        return 1
    elif cmd == "record":
        cachedir, before, jsonl, cmdstr, rc = argv[2:7]
        specs = [s.split("|", 3) for s in argv[7:]]
        with open(before) as fh:
            old = set(fh.read().split())
        now = walk(cachedir)
        new = sorted(j for j in now if j not in old)
        used = set()
        with open(jsonl, "a") as out:
            extra = 0
            for jid in new:
                fun = fun_of(now[jid])
                hit = None
                for i, (case, expect, rx, note) in enumerate(specs):
                    if i not in used and re.fullmatch(rx, fun):
                        hit = i
                        break
                if hit is None:
                    extra += 1
                    case, expect, note = (
                        "%s-extra-%d" % (specs[0][0].lstrip("?"), extra),
                        "nothing",
                        "unexpected extra job produced by the same command",
                    )
                    print("record: unmatched jid %s fun=%s" % (jid, fun), file=sys.stderr)
                else:
                    used.add(hit)
                    case, expect, _, note = specs[hit]
                    case = case.lstrip("?")
                rec = {"case": case, "jid": jid, "fun": fun, "cmd": cmdstr,
                       "expect": expect, "note": note, "cli_exit_code": int(rc)}
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                print("  %-34s %s %s" % (case, jid, fun))
            for i, s in enumerate(specs):
                if i not in used and not s[0].startswith("?"):
                    print("record: spec %s matched no new job" % s[0], file=sys.stderr)
    elif cmd == "cases":
        rows = [json.loads(l) for l in open(argv[2], encoding="utf-8") if l.strip()]
        with open(argv[3], "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
    elif cmd == "expected":
        confdir, jobsdir, outdir = argv[2:5]
        import salt.config
        import salt.output
        import salt.runner

        opts = salt.config.master_config(os.path.join(confdir, "master"))
        opts["runner_returns"] = False  # do not add list_job jobs to the live cache
        opts["quiet"] = True
        runner = salt.runner.RunnerClient(opts)
        os.makedirs(outdir, exist_ok=True)
        fake = {"cachedir": os.path.dirname(jobsdir.rstrip("/"))}
        for jid in sorted(walk(fake["cachedir"])):
            ret = runner.cmd("jobs.list_job", [jid], print_event=False)
            # Same serializer and options as `salt-run ... --out=json`
            text = salt.output.string_format(ret, "json", opts)
            with open(os.path.join(outdir, jid + ".json"), "w", encoding="utf-8") as fh:
                fh.write(text + "\n")
    else:
        raise SystemExit("unknown command " + cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv) or 0)
