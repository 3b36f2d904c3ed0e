#!/usr/bin/env python3
"""Derive small job caches that look like OLDER Salt versions (or broken files)
from REAL files in testdata/jobs. Deterministic: same input -> same output.

Usage: python derive-legacy.py TESTDATA_DIR      (regen.sh runs it with the venv python)

Every variant is testdata/legacy/<variant>/ with
  jobs/<h[:2]>/<h[2:]>/{jid,.load.p,.minions.p,<minion>/return.p,<minion>/out.p}
  expected.json  {"variant", "description", "hash_type", "jobs": {jid: list_job view}, ...}
The list_job view is the real `salt-run jobs.list_job <jid> --out=json` output of the
source job (testdata/expected/<jid>.json), adjusted the way the transform changes it.
Sources: case "state-sls-multi" (A, web1 only) and case "failures" (B, web1+db1).
"""
import copy
import datetime
import hashlib
import json
import os
import shutil
import sys

import msgpack

MONTHS = ["", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def jid_to_time(jid):  # same as salt.utils.jid.jid_to_time
    jid = str(jid)
    if len(jid) != 20 and (len(jid) <= 21 or jid[20] != "_"):
        return ""
    return "{}, {} {} {}:{}:{}.{}".format(
        jid[:4], MONTHS[int(jid[4:6])], jid[6:8], jid[8:10], jid[10:12], jid[12:14], jid[14:20])


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def pack3(obj):  # what Salt 3000+ on py3 writes
    return msgpack.packb(obj, use_bin_type=True)


def pack_py2(obj):  # py2 Salt: every str is old "raw" (fixstr/str16/str32, never str8)
    return msgpack.packb(obj, use_bin_type=False)


def replace_value(obj, old, new):
    if isinstance(obj, dict):
        return {replace_value(k, old, new): replace_value(v, old, new) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_value(v, old, new) for v in obj]
    if obj == old:
        return new
    return obj


class Job:
    """A real job read from testdata/jobs: decoded files + its list_job view."""

    def __init__(self, testdata, case):
        cases = json.load(open(os.path.join(testdata, "cases.json"), encoding="utf-8"))
        row = next(c for c in cases if c["case"] == case)
        self.case = case
        self.jid = row["jid"]
        h = hashlib.sha256(self.jid.encode()).hexdigest()
        self.dir = os.path.join(testdata, "jobs", h[:2], h[2:])
        self.load = unpack(open(os.path.join(self.dir, ".load.p"), "rb").read())
        self.minions = unpack(open(os.path.join(self.dir, ".minions.p"), "rb").read())
        self.returns, self.outs = {}, {}
        for m in sorted(os.listdir(self.dir)):
            p = os.path.join(self.dir, m)
            if os.path.isdir(p) and os.path.exists(os.path.join(p, "return.p")):
                self.returns[m] = unpack(open(os.path.join(p, "return.p"), "rb").read())
                if os.path.exists(os.path.join(p, "out.p")):
                    self.outs[m] = unpack(open(os.path.join(p, "out.p"), "rb").read())
        self.expected = json.load(open(os.path.join(testdata, "expected", self.jid + ".json"), encoding="utf-8"))

    def with_jid(self, new_jid):
        j = copy.deepcopy(self)
        old = j.jid
        j.jid = new_jid
        j.load = replace_value(j.load, old, new_jid)
        j.returns = replace_value(j.returns, old, new_jid)
        j.expected = replace_value(j.expected, old, new_jid)
        j.expected["StartTime"] = jid_to_time(new_jid)
        return j


def write_job(root, job, hash_type="sha256", pack=pack3, bare_return=False, skip=()):
    h = getattr(hashlib, hash_type)(job.jid.encode()).hexdigest()
    d = os.path.join(root, "jobs", h[:2], h[2:])
    os.makedirs(d)
    with open(os.path.join(d, "jid"), "wb") as fh:
        fh.write(job.jid.encode())
    if ".load.p" not in skip:
        with open(os.path.join(d, ".load.p"), "wb") as fh:
            fh.write(pack(job.load))
    with open(os.path.join(d, ".minions.p"), "wb") as fh:
        fh.write(pack(job.minions))
    for m, ret in job.returns.items():
        os.makedirs(os.path.join(d, m))
        with open(os.path.join(d, m, "return.p"), "wb") as fh:
            fh.write(pack(ret["return"] if bare_return else ret))
        if m in job.outs:
            with open(os.path.join(d, m, "out.p"), "wb") as fh:
                fh.write(pack(job.outs[m]))
    return d


def write_expected(root, variant, description, hash_type, jobs, **extra):
    doc = {"variant": variant, "description": description, "hash_type": hash_type}
    doc.update(extra)
    doc["jobs"] = {j.jid: j.expected for j in jobs}
    with open(os.path.join(root, "expected.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, ensure_ascii=False, sort_keys=True)
        fh.write("\n")


def first_state(ret_map, pred):
    for key in sorted(ret_map, key=lambda k: ret_map[k].get("__run_num__", 0)):
        if pred(ret_map[key]):
            return key
    raise SystemExit("no matching state in source job")


def main():
    testdata = os.path.abspath(sys.argv[1])
    out = os.path.join(testdata, "legacy")
    shutil.rmtree(out, ignore_errors=True)
    A = Job(testdata, "state-sls-multi")
    B = Job(testdata, "failures")
    H = Job(testdata, "state-apply-highstate")  # first run: file.managed with a "diff"

    def variant(name):
        d = os.path.join(out, name)
        os.makedirs(d)
        return d

    # --- bare-return: return.p is the bare `return` value (Salt <= 2017.7)
    d = variant("bare-return")
    jobs = []
    for j in (A, B):
        j = copy.deepcopy(j)
        write_job(d, j, bare_return=True)
        # local_cache.get_jid wraps a bare value as {"return": x}: retcode/success are gone
        for m, r in j.expected["Result"].items():
            j.expected["Result"][m] = {k: v for k, v in r.items() if k in ("return", "out")}
        jobs.append(j)
    write_expected(d, "bare-return", "return.p holds the bare return value (pre-2018.3); no retcode/success", "sha256", jobs)

    # --- py2-raw-strings: every str packed as old raw (use_bin_type=False)
    d = variant("py2-raw-strings")
    for j in (A, B):
        write_job(d, j, pack=pack_py2)
    write_expected(d, "py2-raw-strings", "all .p files packed with use_bin_type=False (py2 Salt): str are fixstr/str16/str32, never str8/bin", "sha256", [A, B])

    # --- py2-invalid-utf8: same + invalid UTF-8 bytes in a comment and a changes diff
    d = variant("py2-invalid-utf8")
    j = copy.deepcopy(H)
    bad_comment_key = first_state(j.returns["web1"]["return"], lambda s: True)
    bad_diff_key = first_state(j.returns["web1"]["return"], lambda s: isinstance(s.get("changes"), dict) and isinstance(s["changes"].get("diff"), str))
    raw = j.returns["web1"]["return"]
    c_old = raw[bad_comment_key]["comment"]
    d_old = raw[bad_diff_key]["changes"]["diff"]
    # bytes objects packed with use_bin_type=False become raw str with these exact bytes
    raw[bad_comment_key]["comment"] = c_old.encode() + b" latin1:caf\xe9 bad:\xff\xfe"
    raw[bad_diff_key]["changes"]["diff"] = d_old.encode() + b"\n+r\xe9sum\xe9 \xc3(\n"
    write_job(d, j, pack=pack_py2)
    exp = j.expected["Result"]["web1"]["return"]
    exp[bad_comment_key]["comment"] = (c_old.encode() + b" latin1:caf\xe9 bad:\xff\xfe").decode("utf-8", "replace")
    exp[bad_diff_key]["changes"]["diff"] = (d_old.encode() + b"\n+r\xe9sum\xe9 \xc3(\n").decode("utf-8", "replace")
    write_expected(d, "py2-invalid-utf8",
                   "py2 raw strings; web1's return has invalid UTF-8 in one comment and one changes.diff. "
                   "Expected strings are decoded lossily (invalid bytes -> U+FFFD, Python errors='replace'). "
                   "Salt itself (raw=False) would fail and fall back to bytes for the whole file.",
                   "sha256", [j],
                   invalid_utf8_fields={"minion": "web1", "comment_of": bad_comment_key, "changes_diff_of": bad_diff_key})

    # --- md5-jid-dirs: hash_type md5 (Salt <= 2016.3)
    d = variant("md5-jid-dirs")
    for j in (A, B):
        write_job(d, j, hash_type="md5")
    write_expected(d, "md5-jid-dirs", "jid dirs named from md5(jid) instead of sha256(jid)", "md5", [A, B])

    # --- local-time-jids: jid in master local time (+02:00), Salt <= 2019.2
    d = variant("local-time-jids")
    jobs = []
    for j in (A, B):
        utc = datetime.datetime.strptime(j.jid, "%Y%m%d%H%M%S%f")
        local = utc + datetime.timedelta(hours=2)
        nj = j.with_jid(local.strftime("%Y%m%d%H%M%S%f"))
        nj.expected["_true_start_utc"] = utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        write_job(d, nj)
        jobs.append(nj)
    write_expected(d, "local-time-jids", "jids written in master local time; the master was at UTC+02:00, so jid time - 2h = UTC", "sha256", jobs, master_utc_offset="+02:00")

    # --- pid-suffix-jid: unique_jid: True -> jid "<20 digits>_<pid>"
    d = variant("pid-suffix-jid")
    jobs = []
    for j in (A, B):
        nj = j.with_jid(j.jid + "_12345")
        write_job(d, nj)
        jobs.append(nj)
    write_expected(d, "pid-suffix-jid", "unique_jid jids: '<jid>_12345'; StartTime still from the first 20 digits", "sha256", jobs)

    # --- ext78-datetimes: msgpack ext type 78 datetimes inside a state's changes
    d = variant("ext78-datetimes")
    j = copy.deepcopy(A)
    key = first_state(j.returns["web1"]["return"], lambda s: True)
    stamp = datetime.datetime.strptime(j.jid, "%Y%m%d%H%M%S%f")
    payload = stamp.strftime("%Y%m%dT%H:%M:%S.%f").encode()
    j.returns["web1"]["return"][key]["changes"] = {
        "modified": msgpack.ExtType(78, payload),
        "when": {"old": msgpack.ExtType(78, b"20200101T00:00:00.000000"), "new": msgpack.ExtType(78, payload)},
    }
    write_job(d, j)
    # The payload's own precision is kept (always six fraction digits), unlike isoformat().
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")
    j.expected["Result"]["web1"]["return"][key]["changes"] = {
        "modified": iso, "when": {"old": "2020-01-01T00:00:00.000000", "new": iso}}
    write_expected(d, "ext78-datetimes",
                   "one state's changes holds msgpack ext 78 values (Salt's datetime encoding, payload b'%Y%m%dT%H:%M:%S.%f'). "
                   "In expected they are shown as ISO-8601 strings with six fraction digits, as saltship renders them (salt-run would print repr(datetime)).",
                   "sha256", [j], ext78={"minion": "web1", "state": key, "payloads": [payload.decode(), "20200101T00:00:00.000000"]})

    # --- no-load-p: jid dir without .load.p (minion-generated jid, 2018.3.4-3006.2)
    d = variant("no-load-p")
    j = copy.deepcopy(A)
    write_job(d, j, skip=(".load.p",))
    j.expected.update({"Function": "unknown-function", "Arguments": [], "Target": "unknown-target",
                       "Target-type": "list", "User": "root"})  # salt.utils.jid.format_job_instance({})
    write_expected(d, "no-load-p", "jid dir without .load.p; fun/tgt unknown (list_job shows the defaults of format_job_instance({}))", "sha256", [j])

    # --- bad-input variants: one broken job (from B) next to one good job (A)
    def bad(name, description, breaker):
        d = variant(name)
        write_job(d, A)
        bd = write_job(d, B)
        what = breaker(bd)
        write_expected(d, name, description + " The good job must still ship.", "sha256", [A],
                       good_jid=A.jid, bad_jid=B.jid, bad_file=what,
                       bad_job_note="Salt 3008 local_cache.get_jid loops forever on an unreadable return.p "
                                    "(retry `while fn_ not in ret` swallowing the exception), so there is no "
                                    "salt-run view of the bad job. The readable minion (db1) of the bad job may ship.")

    def cut(path, n):
        data = open(path, "rb").read()
        with open(path, "wb") as fh:
            fh.write(data[: n if n is not None else len(data) // 2])

    def empty_return(bd):
        cut(os.path.join(bd, "web1", "return.p"), 0)
        return "web1/return.p (empty file = None)"

    def truncated_return(bd):
        cut(os.path.join(bd, "web1", "return.p"), None)
        return "web1/return.p (first half only)"

    def not_msgpack(bd):
        with open(os.path.join(bd, "web1", "return.p"), "wb") as fh:
            fh.write(b"this is not msgpack\nreturn: {}\n")
        return "web1/return.p (a text file)"

    def truncated_load(bd):
        cut(os.path.join(bd, ".load.p"), None)
        return ".load.p (first half only)"

    bad("empty-return", "bad job's web1/return.p is empty.", empty_return)
    bad("truncated-return", "bad job's web1/return.p is cut in half.", truncated_return)
    bad("not-msgpack-return", "bad job's web1/return.p is a text file.", not_msgpack)
    bad("truncated-load", "bad job's .load.p is cut in half (returns are fine).", truncated_load)

    n = sum(1 for _ in os.listdir(out))
    print("derive-legacy: %d variants under %s" % (n, out))


if __name__ == "__main__":
    main()
