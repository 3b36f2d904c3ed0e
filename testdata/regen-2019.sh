#!/usr/bin/env bash
# Regenerates testdata/salt2019/ from a REAL Salt 2019.2.8 master on Python 2.7,
# running in a non-UTC zone so its jids are in local time (issue 21).
#   bash testdata/regen-2019.sh
# Output: testdata/salt2019/{jobs,expected,cases.json}. The state tree is
# testdata/salt2019/salt (hand-written). Master + minions old1, old2 on
# 127.0.0.1 with their own ports (45545/45546), everything under one temp root;
# states write only below /tmp/saltship-fixture-2019 (wiped before and after).
# Needs: pyenv's Python 2.7 (~/.pyenv/versions/2.7.*) and a Python >= 3.9; a small
# Python 3 tool venv (virtualenv 20.21 + msgpack, for regen_helper.py) is made too.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$HERE/salt2019
MASTER_TZ=${SALTSHIP_2019_TZ:-Asia/Kolkata}
OLD_VENV=${SALT2019_VENV:-$HOME/.cache/saltship/salt2019-venv}
TOOL_VENV=$HOME/.cache/saltship/venv-tool
PUB_PORT=${SALTSHIP_2019_PUB_PORT:-45545}
RET_PORT=${SALTSHIP_2019_RET_PORT:-45546}
FIXTURE_BASE=/tmp/saltship-fixture-2019
T0=$(date +%s)
log() { printf '[regen-2019 %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# ---------------------------------------------------------------- venvs
# Salt 2019.2.8 on Python 2.7: virtualenv 20.21 still makes 2.7 envs (pip 20.3.4).
# Pins: Salt's own PyYAML<5.1 and pycrypto; msgpack<1.0, pyzmq 19, tornado 4.5
# (Salt 2019.2 needs tornado<5), Jinja2<3 / MarkupSafe<2 / requests<2.28 (last on 2.7).
if ! "$TOOL_VENV/bin/python" -c "import msgpack, virtualenv, zoneinfo" 2>/dev/null; then
  python3 -m venv "$TOOL_VENV"
  "$TOOL_VENV/bin/pip" install -q 'virtualenv==20.21.1' msgpack
fi
if ! "$OLD_VENV/bin/python" -c "import salt.version,sys; sys.exit(salt.version.__version__ != '2019.2.8')" 2>/dev/null; then
  PY27=$(ls -d "$HOME"/.pyenv/versions/2.7.* 2>/dev/null | tail -n 1)
  [[ -n $PY27 ]] || { echo "no Python 2.7 under ~/.pyenv/versions" >&2; exit 1; }
  log "creating $OLD_VENV (Salt 2019.2.8 on $PY27)"
  "$TOOL_VENV/bin/virtualenv" -q -p "$PY27/bin/python2.7" "$OLD_VENV"
  "$OLD_VENV/bin/pip" install -q 'salt==2019.2.8' 'PyYAML<5.1' 'msgpack<1.0' 'pyzmq==19.0.2' \
    'tornado==4.5.3' 'Jinja2<3' 'MarkupSafe<2' 'pycrypto' 'requests<2.28' 'futures'
fi
BIN=$OLD_VENV/bin
HELPER="$TOOL_VENV/bin/python $HERE/regen_helper.py"

# ---------------------------------------------------------------- temp root
ROOT=$(mktemp -d /tmp/saltship-regen2019.XXXXXX)
PIDS=()
stop_pid() {
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$FIXTURE_BASE"
  if [[ -z ${SALTSHIP_KEEP_ROOT:-} ]]; then rm -rf "$ROOT"; else echo "kept $ROOT"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
rm -rf "$FIXTURE_BASE"
export TZ=$MASTER_TZ # master, minions and every CLI run in this zone

MCONF=$ROOT/master/conf
CACHEDIR=$ROOT/master/var/cache/salt/master
mkdir -p "$MCONF"
cat > "$MCONF/master" <<EOF
id: testmaster
root_dir: $ROOT/master
user: root
interface: 127.0.0.1
publish_port: $PUB_PORT
ret_port: $RET_PORT
auto_accept: True
keep_jobs: 87600
hash_type: sha256
file_roots:
  base:
    - $OUT/salt
log_file: $ROOT/master/master.log
log_level_logfile: info
enable_fqdns_grains: False
EOF
for m in old1 old2; do
  mkdir -p "$ROOT/$m/conf"
  cat > "$ROOT/$m/conf/minion" <<EOF
id: $m
root_dir: $ROOT/$m
user: root
master: 127.0.0.1
master_port: $RET_PORT
publish_port: $PUB_PORT
log_file: $ROOT/$m/minion.log
log_level_logfile: info
enable_fqdns_grains: False
acceptance_wait_time: 1
random_reauth_delay: 0
EOF
done

start_daemon() { # name cmd...
  local name=$1; shift
  setsid "$@" > "$ROOT/$name.stdout" 2>&1 < /dev/null &
  PIDS+=("$!")
  log "started $name pid $!"
}
SALT=("$BIN/salt" -c "$MCONF")
SALTRUN=("$BIN/salt-run" -c "$MCONF")

start_daemon master "$BIN/salt-master" -c "$MCONF" -l quiet
sleep 4
start_daemon old1 "$BIN/salt-minion" -c "$ROOT/old1/conf" -l quiet
start_daemon old2 "$BIN/salt-minion" -c "$ROOT/old2/conf" -l quiet
for i in $(seq 1 60); do
  if out=$(timeout 30 "${SALT[@]}" -L old1,old2 test.ping -t 5 --out=json 2>/dev/null) &&
     [[ $(grep -c '": true' <<<"$out") -eq 2 ]]; then break; fi
  [[ $i -eq 60 ]] && { echo "minions old1, old2 did not come up" >&2; exit 1; }
  sleep 1
done
log "minions answer"
rm -rf "$CACHEDIR/jobs"
mkdir -p "$CACHEDIR/jobs"

# ---------------------------------------------------------------- jobs
JSONL=$ROOT/cases.jsonl
: > "$JSONL"
mkdir -p "$ROOT/out"
N=0
run_case() { # SPEC... -- cmd...   (SPEC = case|expect|fun-regex|note), as in regen.sh
  local specs=() cmdstr rc
  while [[ $1 != -- ]]; do specs+=("$1"); shift; done; shift
  N=$((N + 1))
  $HELPER jids "$CACHEDIR" > "$ROOT/before.txt"
  cmdstr=$(printf '%q ' "$@"); cmdstr=${cmdstr% }
  cmdstr=${cmdstr//"$BIN/"/}; cmdstr=${cmdstr//"$ROOT"/'$ROOT'}
  set +e
  timeout 180 "$@" > "$ROOT/out/$N.out" 2>&1
  rc=$?
  set -e
  $HELPER settle "$CACHEDIR"
  $HELPER record "$CACHEDIR" "$ROOT/before.txt" "$JSONL" "$cmdstr" "$rc" "${specs[@]}"
}
W=(-L old1,old2)
J=(--out=json -t 60)
log "running jobs (TZ=$TZ)"
run_case "old-test-ping|nothing|test.ping|test.ping on both minions" -- "${SALT[@]}" "${W[@]}" test.ping "${J[@]}"
run_case "old-state-apply|states|state.apply|state.apply (highstate via top.sls): file, test and cmd changes" -- "${SALT[@]}" "${W[@]}" state.apply "${J[@]}"
run_case "old-state-sls|states|state.sls|state.sls ok on old1, second run: files unchanged" -- "${SALT[@]}" old1 state.sls ok "${J[@]}"
run_case "old-failures|states|state.sls|state.sls fail: cmd.run exit 3, test.fail_without_changes, a requisite failure, one success" -- "${SALT[@]}" "${W[@]}" state.sls fail "${J[@]}"
run_case "old-missing-sls|error-event|state.sls|state.sls does_not_exist: render error list" -- "${SALT[@]}" old2 state.sls does_not_exist "${J[@]}"
run_case "old-sync-all|nothing|saltutil.sync_all|saltutil.sync_all: brings salt://_modules and _states (saltship_bytes) to the minions" -- "${SALT[@]}" "${W[@]}" saltutil.sync_all "${J[@]}"
run_case "old-bytes-state|states|state.sls|state.sls bytes: bytes-out (cmd.run printing \\351\\377\\376: the 2019.2 minion already replaced them with U+FFFD, valid UTF-8 in return.p) and bytes-raw (custom state returning Python 2 byte strings: comment and changes.stdout are non-UTF-8 msgpack raw in return.p)" -- "${SALT[@]}" old1 state.sls bytes "${J[@]}"
run_case "old-bytes-cmd|nothing|cmd.run|cmd.run printing non-UTF-8 bytes: the minion returns U+FFFD already (valid UTF-8)" -- "${SALT[@]}" old1 cmd.run "printf 'caf\\351 \\377\\376 end'" "${J[@]}"
run_case "old-bytes-module|nothing|saltship_bytes.latin1|custom module returning a Python 2 byte string: return.p's return is non-UTF-8 msgpack raw" -- "${SALT[@]}" old1 saltship_bytes.latin1 "${J[@]}"
run_case "old-orchestrate|states|runner.state.orchestrate|salt-run state.orchestrate orch.run: 2019.2 writes no .load.p for it; fun_args are in testmaster/return.p" \
         "old-orchestrate-child-state|states|state.sls|child job of the salt.state step (old1)" \
         "old-orchestrate-child-ping|nothing|test.ping|child job of the salt.function step (old*)" \
  -- "${SALTRUN[@]}" state.orchestrate orch.run --out=json
$HELPER settle "$CACHEDIR"

# ---------------------------------------------------------------- copy + expected
log "copying jobs/ into testdata/salt2019"
rm -rf "$OUT/jobs" "$OUT/expected"
cp -a "$CACHEDIR/jobs" "$OUT/jobs"
find "$OUT/jobs" -name '.___atomic_write*' -delete
mkdir -p "$OUT/expected"
# Salt's own view, from the real 2019.2 CLI (salt-run on Python 2), one call per jid.
# These salt-run calls add runner jobs to the live cache only: jobs/ is already copied.
for jid in $($HELPER jids "$CACHEDIR" | sort); do
  grep -q "\"$jid\"" "$JSONL" || continue
  "${SALTRUN[@]}" jobs.list_job "$jid" --out=json > "$OUT/expected/$jid.json" 2> "$ROOT/expected-$jid.stderr" ||
    { echo "salt-run jobs.list_job $jid failed:" >&2; cat "$ROOT/expected-$jid.stderr" >&2; exit 1; }
done
# cases.json: the records, plus the zone, its offset, each jid's true UTC instant and the
# mtimes of the jid file (= the last return) and .load.p (= the publish) from the run
# (git does not keep mtimes; a test can restore them).
"$TOOL_VENV/bin/python" - "$JSONL" "$OUT" "$MASTER_TZ" <<'EOF'
import datetime, json, os, sys, zoneinfo
jsonl, out, tzname = sys.argv[1:4]
tz = zoneinfo.ZoneInfo(tzname)
dirs = {}
for top in os.listdir(os.path.join(out, "jobs")):
    for rest in os.listdir(os.path.join(out, "jobs", top)):
        d = os.path.join(out, "jobs", top, rest)
        with open(os.path.join(d, "jid")) as fh:
            dirs[fh.read()] = d
rows = []
for line in open(jsonl, encoding="utf-8"):
    r = json.loads(line)
    local = datetime.datetime.strptime(r["jid"][:20], "%Y%m%d%H%M%S%f").replace(tzinfo=tz)
    off = local.utcoffset()
    r["master_tz"] = tzname
    r["utc_offset"] = "%+03d:%02d" % divmod(int(off.total_seconds()) // 60, 60)
    r["utc_offset_seconds"] = int(off.total_seconds())
    r["jid_utc"] = local.astimezone(datetime.timezone.utc).isoformat()
    r["jid_file_mtime"] = os.stat(os.path.join(dirs[r["jid"]], "jid")).st_mtime
    lp = os.path.join(dirs[r["jid"]], ".load.p")  # written once, at publish (absent for orchestrations)
    r["load_p_mtime"] = os.stat(lp).st_mtime if os.path.exists(lp) else None
    rows.append(r)
with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as fh:
    json.dump(rows, fh, indent=2, ensure_ascii=False)
    fh.write("\n")
for r in rows:
    print("%-28s %-22s %-12s %-26s %s" % (r["case"], r["jid"], r["expect"], r["fun"], r["jid_utc"]))
EOF
log "done ($(du -sk "$OUT" | cut -f1) KB in $OUT)"
