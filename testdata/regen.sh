#!/usr/bin/env bash
# Regenerates the saltship job-cache fixtures from REAL Salt runs.
#   bash testdata/regen.sh                 # everything
#   bash testdata/regen.sh --syndic-only   # only the syndic phase (testdata/syndic/)
#   bash testdata/regen.sh --fleet-only    # only the fleet phase (testdata/fleet/)
# Output (all under testdata/): jobs/, expected/, cases.json, legacy/, syndic/, fleet/.
# Everything runs on 127.0.0.1 with non-default ports (sshd for salt-ssh on a
# free port; the syndic's master on 127.0.0.2, same ports); states write only below
# /tmp/saltship-fixture (wiped before and after).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SALT_VERSION=3008.5
PUB_PORT=${SALTSHIP_PUB_PORT:-45505}
RET_PORT=${SALTSHIP_RET_PORT:-45506}
FIXTURE_BASE=/tmp/saltship-fixture
T0=$(date +%s)
case ${1:-} in
  "") MAIN=1; SYNDIC=1; FLEET=1 ;;
  --syndic-only) MAIN=; SYNDIC=1; FLEET= ;;
  --fleet-only) MAIN=; SYNDIC=; FLEET=1 ;;
  *) echo "usage: $0 [--syndic-only | --fleet-only]" >&2; exit 2 ;;
esac

log() { printf '[regen %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# ---------------------------------------------------------------- venv
# salt==3008.5 is pinned (salt-venv.sh says how it installs where the index lacks a certifi).
. "$HERE/salt-venv.sh"
BIN=$SALT_VENV/bin
PY=$BIN/python
HELPER="$PY $HERE/regen_helper.py"

# ---------------------------------------------------------------- temp root + configs
ROOT=$(mktemp -d /tmp/saltship-regen.XXXXXX)
PIDS=()
stop_pid() { # stop one daemon (and its process group, it was started with setsid)
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$FIXTURE_BASE"
  if [[ -n ${MADE_RUN_SSHD:-} ]]; then rmdir /run/sshd 2>/dev/null || true; fi
  if [[ -z ${SALTSHIP_KEEP_ROOT:-} ]]; then rm -rf "$ROOT"; else echo "kept $ROOT"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
rm -rf "$FIXTURE_BASE"

MCONF=$ROOT/master/conf
CACHEDIR=$ROOT/master/var/cache/salt/master
if [[ -n $MAIN ]]; then
mkdir -p "$MCONF"
cat > "$MCONF/master" <<EOF
id: testmaster
root_dir: $ROOT/master
user: root
interface: 127.0.0.1
publish_port: $PUB_PORT
ret_port: $RET_PORT
auto_accept: True
keep_jobs_seconds: 315360000
hash_type: sha256
file_roots:
  base:
    - $HERE/salt/states
pillar_roots:
  base:
    - $HERE/salt/pillar
log_file: $ROOT/master/master.log
log_level_logfile: info
ssh_log_file: $ROOT/master/ssh.log
# salt-ssh checks the fixture sshd's host key against this file (written once sshd's port is known).
known_hosts_file: $ROOT/sshd/known_hosts
enable_fqdns_grains: False
EOF
fi

mkminion() { # id [master address]
  mkdir -p "$ROOT/$1/conf"
  cat > "$ROOT/$1/conf/minion" <<EOF
id: $1
root_dir: $ROOT/$1
user: root
master: ${2:-127.0.0.1}
master_port: $RET_PORT
publish_port: $PUB_PORT
log_file: $ROOT/$1/minion.log
log_level_logfile: info
enable_fqdns_grains: False
acceptance_wait_time: 1
random_reauth_delay: 0
# Disabled schedule entries, triggered on demand with schedule.run_job force=True.
schedule:
  sched-return-job:
    function: state.sls
    args:
      - twice
    seconds: 86400
    enabled: False
  sched-no-return-job:
    function: test.ping
    seconds: 86400
    enabled: False
    return_job: False
  sched-nocache-return-job:
    function: test.ping
    seconds: 86400
    enabled: False
    return_job: nocache
EOF
}
if [[ -n $MAIN ]]; then for m in web1 db1 down1; do mkminion $m; done; fi

start_daemon() { # name env... -- cmd...   (sets LAST_PID)
  local name=$1; shift
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done; shift
  setsid env "${envs[@]}" "$@" > "$ROOT/$name.stdout" 2>&1 < /dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  log "started $name pid $LAST_PID"
}

SALT=("$BIN/salt" -c "$MCONF")
SALTRUN=("$BIN/salt-run" -c "$MCONF")

wait_ping() { # minion... ; pings until all answer (warm-up only, jobs are wiped after)
  local i
  for i in $(seq 1 60); do
    if out=$(timeout 30 "${SALT[@]}" -L "$(IFS=,; echo "$*")" test.ping -t 5 --out=json 2>/dev/null) &&
       [[ $(grep -c '": true' <<<"$out") -eq $# ]]; then return 0; fi
    sleep 1
  done
  echo "minions $* did not come up" >&2; exit 1
}

if [[ -n $MAIN ]]; then
start_daemon master -- "$BIN/salt-master" -c "$MCONF" -l quiet
MASTER_PID=$LAST_PID
sleep 3
start_daemon down1 -- "$BIN/salt-minion" -c "$ROOT/down1/conf" -l quiet
DOWN1_PID=$LAST_PID
start_daemon web1 -- "$BIN/salt-minion" -c "$ROOT/web1/conf" -l quiet
start_daemon db1 "TZ=<+0545>-5:45" -- "$BIN/salt-minion" -c "$ROOT/db1/conf" -l quiet
wait_ping web1 db1 down1
log "all minions answer; stopping down1 (its key stays accepted)"
stop_pid "$DOWN1_PID"
"$BIN/salt-key" -c "$MCONF" -L
# Drop the warm-up jobs so the fixture only holds the jobs below.
rm -rf "$CACHEDIR/jobs"
mkdir -p "$CACHEDIR/jobs"
fi

# ---------------------------------------------------------------- jobs
JSONL=$ROOT/cases.jsonl
: > "$JSONL"
mkdir -p "$ROOT/out"
N=0
run_case() { # SPEC... -- cmd...   (SPEC = case|expect|fun-regex|note)
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
last_jid() { tail -n 1 "$JSONL" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read())["jid"])'; }
case_jid() { "$PY" -c 'import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["case"]==sys.argv[2]: print(r["jid"])' "$JSONL" "$1"; }

W=(-L web1,db1)
J=(--out=json -t 60)   # NOT --static: in 3008 --static switches the CLI to batch mode (extra test.ping job + .batch.p)

if [[ -n $MAIN ]]; then
log "running jobs"
# --- non-state jobs
run_case "test-ping|nothing|test.ping|non-state job, both minions return true" -- "${SALT[@]}" "${W[@]}" test.ping "${J[@]}"
run_case "cmd-run|nothing|cmd.run|non-state job, string return" -- "${SALT[@]}" "${W[@]}" cmd.run 'echo hello from cmd.run' "${J[@]}"
run_case "grains-items|nothing|grains.items|non-state job, big dict return" -- "${SALT[@]}" web1 grains.items "${J[@]}"
run_case "module-exception|nothing|test.exception|module raised: string return, retcode 1, success false" -- "${SALT[@]}" web1 test.exception 'saltship boom' "${J[@]}"

# --- state runs
run_case "state-apply-highstate|states|state.apply|state.apply with no args = highstate via top.sls; first run, file changes; db1 start_time is in +05:45" -- "${SALT[@]}" "${W[@]}" state.apply "${J[@]}"
run_case "state-apply-web|states|state.apply|state.apply web: arg [web], no changes except cmd.run" -- "${SALT[@]}" web1 state.apply web "${J[@]}"
run_case "state-highstate|states|state.highstate|state.highstate; second run, files unchanged" -- "${SALT[@]}" "${W[@]}" state.highstate "${J[@]}"
run_case "state-sls-multi|states|state.sls|state.sls web,common (two sls in one arg)" -- "${SALT[@]}" web1 state.sls web,common "${J[@]}"
run_case "pillar-arg|states|state.sls|state.sls web with a pillar= kwarg: .load.p arg holds {pillar: {...}, __kwarg__: true}; the values must not be shipped" -- "${SALT[@]}" web1 state.sls web 'pillar={"db_password": "hunter2-secret", "api": {"token": "tok-secret"}}' "${J[@]}"
run_case "twice-first-changes|states|state.sls|state.sls twice, first run: results true with changes" -- "${SALT[@]}" "${W[@]}" state.sls twice "${J[@]}"
run_case "twice-second-no-changes|states|state.sls|state.sls twice, second run: results true, changes {}" -- "${SALT[@]}" "${W[@]}" state.sls twice "${J[@]}"
run_case "test-true-pending|states|state.sls|state.sls pending test=True: result null where changes are pending" -- "${SALT[@]}" "${W[@]}" state.sls pending test=True "${J[@]}"
run_case "test-true-apply-web|states|state.apply|state.apply web test=True: mix of true (no changes) and null" -- "${SALT[@]}" web1 state.apply web test=True "${J[@]}"
run_case "sls-id|states|state.sls_id|state.sls_id web-index web (existing id)" -- "${SALT[@]}" web1 state.sls_id web-index web "${J[@]}"
run_case "sls-id-missing|error-event|state.sls_id|state.sls_id with an id that does not exist: return is a list of error strings" -- "${SALT[@]}" web1 state.sls_id no-such-id web "${J[@]}"
run_case "state-single|states|state.single|state.single file.managed: one-key map, __sls__ null" -- "${SALT[@]}" web1 state.single file.managed name=$FIXTURE_BASE/web1/single.txt 'contents=written by state.single' "${J[@]}"
run_case "state-single-invalid|error-event|state.single|state.single with a state function that does not exist" -- "${SALT[@]}" web1 state.single file.no_such_function name=$FIXTURE_BASE/web1/x "${J[@]}"
run_case "template-str|states|state.template_str|state.template_str with an inline yaml template" -- "${SALT[@]}" web1 state.template_str "$(printf 'tmpl-ok:\n  test.succeed_with_changes:\n    - name: from template_str\n')" "${J[@]}"
run_case "failures|states|state.sls|state.sls fail: cmd.run exit 3, file.managed bad source, requisite failed, onfail handler ran, onfail/onchanges skips (__state_ran__ false)" -- "${SALT[@]}" "${W[@]}" state.sls fail "${J[@]}"
run_case "jinja-error|error-event|state.sls|state.sls jinja_error: render error list" -- "${SALT[@]}" "${W[@]}" state.sls jinja_error "${J[@]}"
run_case "yaml-error|error-event|state.sls|state.sls yaml_error: render error list" -- "${SALT[@]}" "${W[@]}" state.sls yaml_error "${J[@]}"
run_case "missing-sls|error-event|state.sls|state.sls does_not_exist: No matching sls found" -- "${SALT[@]}" "${W[@]}" state.sls does_not_exist "${J[@]}"
run_case "unicode|states|state.sls|unicode ids/names/comments/changes (fichier-é, 日本語, emoji); one failure" -- "${SALT[@]}" "${W[@]}" state.sls unicode "${J[@]}"
run_case "big-output|states|state.sls|cmd.run state with ~94 KB stdout in changes.stdout" -- "${SALT[@]}" web1 state.sls big "${J[@]}"
run_case "multi-function|states|test.ping,state.sls|fun is a list: return/retcode/success are maps keyed by function" -- "${SALT[@]}" web1 test.ping,state.sls ,twice "${J[@]}"

# --- batch mode (3008: the CLI first publishes a test.ping "gather" job, then the real job, and writes .batch.p into the real job's dir)
run_case "batch|states|state.sls|salt -b 1 state.sls twice: jid dir also holds .batch.p (msgpack batch state incl. a copy of every return) - ignore it" \
         "batch-gather-ping|nothing|test.ping|the test.ping job the batch CLI publishes first to gather minions" \
         "?batch-second|states|state.sls|second sub-batch (-b 1), if Salt gave it its own jid" \
  -- "${SALT[@]}" -b 1 "${W[@]}" state.sls twice "${J[@]}"

# --- state run refused because another one is running (async job + immediate second run)
run_case "slow-async|states|state.sls|state.sls slow started with --async; the CLI returns at once, the return arrives ~6 s later" -- "${SALT[@]}" web1 state.sls slow --async
SLOW_JID=$(last_jid)
run_case "already-running|error-event|state.sls|second state run while slow-async runs: list error 'The function \"state.sls\" is running as PID ...'" -- "${SALT[@]}" web1 state.sls common "${J[@]}"
$HELPER waitret "$CACHEDIR" "$SLOW_JID" web1 60
$HELPER settle "$CACHEDIR"

# --- minion down
run_case "minion-down|states|state.sls|targets web1,db1,down1 while down1 is stopped: .minions.p lists 3, only 2 return.p" \
         "minion-down-find-job|nothing|saltutil.find_job|after the -t timeout the CLI publishes saltutil.find_job to the minions that did not return (a real extra job)" \
         "?minion-down-find-job-2|nothing|saltutil.find_job|a second find_job round, if any" -- "${SALT[@]}" -L web1,db1,down1 state.sls common --out=json -t 15

# --- orchestrate
run_case "orchestrate|states|runner.state.orchestrate|salt-run state.orchestrate orch.deploy: testmaster/return.p (runner id = master id as set; no _master suffix when id is configured) = {return: {fun, fun_args, jid, user, _stamp, return: {data: {testmaster: <state map>}, outputter, retcode}, success}}" \
         "orchestrate-child-state|states|state.sls|child job of the salt.state step (web1,db1)" \
         "orchestrate-child-ping|nothing|test.ping|child job of a salt.function step" \
         "orchestrate-child-cmd|nothing|cmd.run|child job of a salt.function step" \
  -- "${SALTRUN[@]}" state.orchestrate orch.deploy --out=json

# --- nocache (no CLI flag exists; LocalClient kwargs nocache=True -> payload kwargs -> master _prep_jid)
run_case "nocache|nothing|state.sls|LocalClient.cmd(..., nocache=True): jid dir has a 'nocache' marker and .load.p, no return.p" \
  -- "$PY" -c "import salt.client,sys; c=salt.client.LocalClient(sys.argv[1]); print(c.cmd('web1','state.sls',['twice'],timeout=60,nocache=True))" "$MCONF/master"

# --- salt-call (non-local): returns with jid 'req', master allocates a jid and saves the whole load as .load.p
run_case "salt-call-req|states|state.sls|salt-call state.sls twice on web1 (not --local): jid 'req' -> master-allocated jid, .load.p = whole return load" \
  -- "$BIN/salt-call" -c "$ROOT/web1/conf" state.sls twice --out=json

# --- minion schedule
run_case "schedule-run-return-job|nothing|schedule.run_job|schedule.run_job for a job with default return_job" \
         "schedule-req-return|states|state.sls|scheduled state.sls twice returned with jid 'req' (no returner): master-allocated jid, .load.p = whole return load incl. schedule, pid" \
  -- bash -c '"$0" "$@"; sleep 8' "${SALT[@]}" web1 schedule.run_job sched-return-job force=True "${J[@]}"
run_case "schedule-run-no-return-job|nothing|schedule.run_job|schedule.run_job for return_job: False: the scheduled job itself leaves nothing in the master cache" \
  -- bash -c '"$0" "$@"; sleep 5' "${SALT[@]}" web1 schedule.run_job sched-no-return-job force=True "${J[@]}"
run_case "schedule-run-nocache|nothing|schedule.run_job|schedule.run_job for return_job: nocache: minion sends jid 'nocache', master stores nothing for it" \
  -- bash -c '"$0" "$@"; sleep 5' "${SALT[@]}" web1 schedule.run_job sched-nocache-return-job force=True "${J[@]}"

# --- one non-state runner job whose return holds state-shaped data (negative case)
LOOKUP_TARGET=$(case_jid state-sls-multi)
run_case "runner-lookup-jid|nothing|runner.jobs.lookup_jid|salt-run jobs.lookup_jid of the state-sls-multi job: a runner job whose return is state-shaped but is NOT a state run" \
  -- "${SALTRUN[@]}" jobs.lookup_jid "$LOOKUP_TARGET" --out=json

# --- state.* functions that show or check states but run none (negative cases)
run_case "show-sls|nothing|state.show_sls|state.show_sls web: the compiled high data, no state results" -- "${SALT[@]}" web1 state.show_sls web "${J[@]}"
run_case "show-highstate|nothing|state.show_highstate|state.show_highstate: high data, no state results" -- "${SALT[@]}" web1 state.show_highstate "${J[@]}"
run_case "show-lowstate|nothing|state.show_lowstate|state.show_lowstate: a list of low chunks (a list that is not an error)" -- "${SALT[@]}" web1 state.show_lowstate "${J[@]}"
run_case "show-top|nothing|state.show_top|state.show_top: {saltenv: [sls...]}" -- "${SALT[@]}" web1 state.show_top "${J[@]}"
run_case "sls-exists|nothing|state.sls_exists|state.sls_exists web: a bool" -- "${SALT[@]}" web1 state.sls_exists web "${J[@]}"
run_case "show-state-usage|nothing|state.show_state_usage|state.show_state_usage: per-saltenv usage counts" -- "${SALT[@]}" web1 state.show_state_usage "${J[@]}"

# --- orchestrate_single / orchestrate_high: return.return = {<master id>: {<state key>: {...}}}, no data level
run_case "orchestrate-single|states|runner.state.orchestrate_single|salt-run state.orchestrate_single test.succeed_with_changes: return.return = {testmaster: {state key: result}} (no data, no retcode)" \
  -- "${SALTRUN[@]}" state.orchestrate_single test.succeed_with_changes name=orch-single-ok --out=json
run_case "orchestrate-single-fail|states|runner.state.orchestrate_single|salt-run state.orchestrate_single test.fail_without_changes: one result false" \
  -- "${SALTRUN[@]}" state.orchestrate_single test.fail_without_changes name=orch-single-fail --out=json
run_case "orchestrate-high|nothing|runner.state.orchestrate_high|salt-run state.orchestrate_high with two inline states: 3008 runs none of them, return.return = {testmaster: {}} (same shape as orchestrate_single, no results)" \
  -- "${SALTRUN[@]}" state.orchestrate_high '{"high-one": {"test.succeed_without_changes": [{"name": "high one"}]}, "high-two": {"test.succeed_with_changes": [{"name": "high two"}, {"require": [{"test": "high-one"}]}]}}' --out=json

# --- salt-ssh: a real sshd on 127.0.0.1 (free port, generated keys), jobs go to this master's job cache
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SSHD_DIR=$ROOT/sshd # also in the master config's known_hosts_file
mkdir -p "$SSHD_DIR"
ssh-keygen -q -t ed25519 -N '' -C saltship-fixture-host -f "$SSHD_DIR/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C saltship-fixture-client -f "$SSHD_DIR/client_ed25519"
cp "$SSHD_DIR/client_ed25519.pub" "$SSHD_DIR/authorized_keys"
SSH_PORT=$(free_port)
DEAD_PORT=$(free_port) # nothing listens there: the unreachable host
# salt-ssh's --no-host-keys does not reach the state wrappers' own ssh calls in 3008; a
# known_hosts file (master option known_hosts_file) does, and checks the key for real.
printf '[127.0.0.1]:%s %s\n' "$SSH_PORT" "$(cut -d' ' -f1,2 "$SSHD_DIR/host_ed25519.pub")" > "$SSHD_DIR/known_hosts"
cat > "$SSHD_DIR/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $SSHD_DIR/host_ed25519
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
EOF
# sshd needs its privilege separation directory; it is removed again if this script made it.
if [[ ! -d /run/sshd ]]; then mkdir -p /run/sshd; MADE_RUN_SSHD=1; fi
start_daemon sshd -- /usr/sbin/sshd -D -e -f "$SSHD_DIR/sshd_config"
for i in $(seq 1 50); do
  if ssh -p "$SSH_PORT" -i "$SSHD_DIR/client_ed25519" -o BatchMode=yes \
       -o UserKnownHostsFile="$SSHD_DIR/known_hosts" root@127.0.0.1 true 2>/dev/null; then break; fi
  [[ $i -eq 50 ]] && { echo "sshd did not come up on port $SSH_PORT" >&2; exit 1; }
  sleep 0.2
done
# ssh-shimfail: its thin_dir is a regular file, so the shim exits 73 before any state runs.
: > "$SSHD_DIR/not-a-directory"
# set_path: the login shell's PATH may start with a pyenv shim (a shell script), which sends
# Salt's shim down a path that fails under `set -u`; the system python is what a host has.
SSH_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ROSTER=$ROOT/roster
cat > "$ROSTER" <<EOF
ssh1:
  host: 127.0.0.1
  port: $SSH_PORT
  user: root
  priv: $SSHD_DIR/client_ed25519
  set_path: $SSH_PATH
  thin_dir: $ROOT/ssh1-thin
ssh-shimfail:
  host: 127.0.0.1
  port: $SSH_PORT
  user: root
  priv: $SSHD_DIR/client_ed25519
  set_path: $SSH_PATH
  thin_dir: $SSHD_DIR/not-a-directory
ssh-unreachable:
  host: 127.0.0.1
  port: $DEAD_PORT
  user: root
  priv: $SSHD_DIR/client_ed25519
  timeout: 5
EOF
SSH=("$BIN/salt-ssh" -c "$MCONF" --roster-file "$ROSTER")
S=(--out=json)
run_case "ssh-state-apply|states|state.apply|salt-ssh ssh1 state.apply (highstate): return.p = {return: {jid: <the remote salt-call's own jid>, return: <state map>, retcode, id, fun: state.pkg, fun_args, out}}; .load.p fun state.apply" -- "${SSH[@]}" ssh1 state.apply "${S[@]}"
run_case "ssh-state-sls|states|state.sls|salt-ssh ssh1 state.sls twice" -- "${SSH[@]}" ssh1 state.sls twice "${S[@]}"
run_case "ssh-failures|states|state.sls|salt-ssh ssh1 state.sls fail: failed results, inner retcode 2" -- "${SSH[@]}" ssh1 state.sls fail "${S[@]}"
run_case "ssh-render-error|error-event|state.sls|salt-ssh ssh1 state.sls jinja_error: render error list" -- "${SSH[@]}" ssh1 state.sls jinja_error "${S[@]}"
run_case "ssh-shim-failure|error-event|state.apply|salt-ssh ssh-shimfail state.apply: the shim fails before any state runs: {return: {stdout, stderr, retcode, parsed, _error}}" -- "${SSH[@]}" ssh-shimfail state.apply "${S[@]}"
run_case "ssh-mixed|states|state.sls|salt-ssh -L ssh1,ssh-shimfail,ssh-unreachable state.sls common: one job, state results from ssh1, an error return from each of the other two" -- "${SSH[@]}" -L ssh1,ssh-shimfail,ssh-unreachable state.sls common "${S[@]}"
run_case "ssh-show-sls|nothing|state.show_sls|salt-ssh ssh1 state.show_sls web: nested like a salt-ssh state run, but high data, no state results" -- "${SSH[@]}" ssh1 state.show_sls web "${S[@]}"

# ---------------------------------------------------------------- copy the cache
log "copying jobs/ into testdata"
rm -rf "$HERE/jobs" "$HERE/expected" "$HERE/legacy"
cp -a "$CACHEDIR/jobs" "$HERE/jobs"
find "$HERE/jobs" -name '.___atomic_write*' -delete
$HELPER cases "$JSONL" "$HERE/cases.json"

log "writing expected/ (jobs.list_job for every jid)"
$HELPER expected "$MCONF" "$HERE/jobs" "$HERE/expected" 2> "$ROOT/expected.stderr"
# Cross-check one file against the real CLI.
CHECK_JID=$(case_jid state-sls-multi)
"${SALTRUN[@]}" jobs.list_job "$CHECK_JID" --out=json > "$ROOT/check.json"
if ! cmp -s "$ROOT/check.json" "$HERE/expected/$CHECK_JID.json"; then
  echo "expected/ output differs from salt-run jobs.list_job --out=json" >&2
  diff "$ROOT/check.json" "$HERE/expected/$CHECK_JID.json" | head -20 >&2
  exit 1
fi

log "stopping salt"
for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
PIDS=()

log "deriving legacy variants"
"$PY" "$HERE/derive-legacy.py" "$HERE"

# ---------------------------------------------------------------- summary
"$PY" - "$HERE" <<'EOF'
import json, os, sys
here = sys.argv[1]
cases = json.load(open(os.path.join(here, "cases.json"), encoding="utf-8"))
for c in cases:
    print("%-30s %-24s %-12s %-26s" % (c["case"], c["jid"], c["expect"], c["fun"]))
jids = sum(1 for top in os.listdir(os.path.join(here, "jobs")) for _ in os.listdir(os.path.join(here, "jobs", top)))
size = 0
for root, _, files in os.walk(here):
    size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
print("%d cases, %d jid dirs in jobs/, testdata is %.1f KB" % (len(cases), jids, size / 1024))
EOF
fi

# ---------------------------------------------------------------- syndic
# A master of masters (testmaster, order_masters) on 127.0.0.1, a second master
# (syndicmaster) on 127.0.0.2 with the same ports, its salt-syndic (reads
# $SYNCONF/master and $SYNCONF/minion), and one minion, app1, below it. All four
# use transport: tcp: with the default zeromq transport salt-syndic 3008.5 hangs
# for good in its first _fire_master (testdata/README.md, "Syndic").
if [[ -n $SYNDIC ]]; then
log "syndic phase"
SYN=$ROOT/syndic
TOPCONF=$SYN/top/conf
SYNCONF=$SYN/lower/conf
mkdir -p "$TOPCONF" "$SYNCONF"
synmaster() { # root id interface extra-lines
  cat <<EOF
id: $2
root_dir: $1
user: root
interface: $3
publish_port: $PUB_PORT
ret_port: $RET_PORT
transport: tcp
auto_accept: True
keep_jobs_seconds: 315360000
hash_type: sha256
file_roots:
  base:
    - $HERE/salt/states
pillar_roots:
  base:
    - $HERE/salt/pillar
log_file: $1/master.log
log_level_logfile: info
enable_fqdns_grains: False
$4
EOF
}
synmaster "$SYN/top" testmaster 127.0.0.1 "order_masters: True" > "$TOPCONF/master"
synmaster "$SYN/lower" syndicmaster 127.0.0.2 "syndic_master: 127.0.0.1
syndic_master_port: $RET_PORT
syndic_log_file: $SYN/lower/syndic.log
syndic_pidfile: $SYN/lower/syndic.pid" > "$SYNCONF/master"
# The syndic's minion side: its id, keys and transport come from here (a minion's defaults
# would say zeromq and root_dir /).
cat > "$SYNCONF/minion" <<EOF
id: syndicmaster
root_dir: $SYN/lower
user: root
transport: tcp
log_level_logfile: info
enable_fqdns_grains: False
acceptance_wait_time: 1
random_reauth_delay: 0
EOF
mkminion app1 127.0.0.2
echo "transport: tcp" >> "$ROOT/app1/conf/minion"
TOPCACHE=$SYN/top/var/cache/salt/master
LOWCACHE=$SYN/lower/var/cache/salt/master

start_daemon top-master -- "$BIN/salt-master" -c "$TOPCONF" -l quiet
start_daemon syndic-master -- "$BIN/salt-master" -c "$SYNCONF" -l quiet
sleep 3
start_daemon syndic -- "$BIN/salt-syndic" -c "$SYNCONF" -l quiet
start_daemon app1 -- "$BIN/salt-minion" -c "$ROOT/app1/conf" -l quiet
SALT=("$BIN/salt" -c "$TOPCONF")
wait_ping app1
rm -rf "$TOPCACHE/jobs" "$LOWCACHE/jobs"
mkdir -p "$TOPCACHE/jobs" "$LOWCACHE/jobs"

CACHEDIR=$TOPCACHE # run_case records the jobs of the master of masters
JSONL=$ROOT/syndic-cases.jsonl
: > "$JSONL"
run_case "syndic-state-apply|states|state.apply|state.apply (highstate) on app1 below the syndic: the same return.p in both caches; the top's .load.p adds Minions, its .minions.p is [] and .minions.syndicmaster.p lists app1" -- "${SALT[@]}" app1 state.apply "${J[@]}"
run_case "syndic-state-sls|states|state.sls|state.sls twice on app1 below the syndic" -- "${SALT[@]}" app1 state.sls twice "${J[@]}"
run_case "syndic-failures|states|state.sls|state.sls fail on app1 below the syndic: failed results" -- "${SALT[@]}" app1 state.sls fail "${J[@]}"
run_case "syndic-render-error|error-event|state.sls|state.sls jinja_error on app1 below the syndic: render error list" -- "${SALT[@]}" app1 state.sls jinja_error "${J[@]}"
run_case "syndic-test-ping|nothing|test.ping|test.ping on app1 below the syndic: not a state run" -- "${SALT[@]}" app1 test.ping "${J[@]}"
$HELPER settle "$LOWCACHE"

log "copying the syndic caches into testdata/syndic"
rm -rf "$HERE/syndic"
mkdir -p "$HERE/syndic/top" "$HERE/syndic/syndic"
cp -a "$TOPCACHE/jobs" "$HERE/syndic/top/jobs"
cp -a "$LOWCACHE/jobs" "$HERE/syndic/syndic/jobs"
find "$HERE/syndic" -name '.___atomic_write*' -delete
$HELPER cases "$JSONL" "$HERE/syndic/cases.json"
$HELPER expected "$TOPCONF" "$HERE/syndic/top/jobs" "$HERE/syndic/top/expected" 2> "$ROOT/syndic-top-expected.stderr"
$HELPER expected "$SYNCONF" "$HERE/syndic/syndic/jobs" "$HERE/syndic/syndic/expected" 2> "$ROOT/syndic-lower-expected.stderr"
CHECK_JID=$(case_jid syndic-failures)
for side in top:"$TOPCONF" syndic:"$SYNCONF"; do
  "$BIN/salt-run" -c "${side#*:}" jobs.list_job "$CHECK_JID" --out=json > "$ROOT/check.json"
  if ! cmp -s "$ROOT/check.json" "$HERE/syndic/${side%%:*}/expected/$CHECK_JID.json"; then
    echo "syndic/${side%%:*}/expected/ differs from salt-run jobs.list_job --out=json" >&2
    exit 1
  fi
done

log "stopping the syndic phase's daemons"
for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
PIDS=()
"$PY" -c 'import json,sys
for c in json.load(open(sys.argv[1])): print("%-22s %-24s %-12s %s" % (c["case"], c["jid"], c["expect"], c["fun"]))' "$HERE/syndic/cases.json"
log "done"
fi

# ---------------------------------------------------------------- fleet
# A fleet that changes under the master (issue 21): its own master (testmaster, same
# ports, 127.0.0.1) and minions f-web1, f-web2, f-killed (SIGKILLed mid-job, started
# again later), f-down (key accepted at warm-up, then stopped for good) and f-silent
# (an accepted key, put in pki_dir/minions by hand: its minion never runs).
# State tree: testdata/fleet/salt first, then testdata/salt/states (twice, slow).
# Output: testdata/fleet/{jobs,expected,pki/minions,cases.json}.
if [[ -n $FLEET ]]; then
log "fleet phase"
FL=$ROOT/fleet
FCONF=$FL/master/conf
FCACHE=$FL/master/var/cache/salt/master
FPKI=$FL/master/pki
FOUT=$HERE/fleet
mkdir -p "$FCONF"
cat > "$FCONF/master" <<EOF2
id: testmaster
root_dir: $FL/master
pki_dir: $FPKI
user: root
interface: 127.0.0.1
publish_port: $PUB_PORT
ret_port: $RET_PORT
auto_accept: True
keep_jobs_seconds: 315360000
hash_type: sha256
file_roots:
  base:
    - $FOUT/salt
    - $HERE/salt/states
log_file: $FL/master/master.log
log_level_logfile: info
enable_fqdns_grains: False
EOF2
for m in f-web1 f-web2 f-down f-killed; do mkminion $m; done
start_daemon fleet-master -- "$BIN/salt-master" -c "$FCONF" -l quiet
sleep 3
for m in f-web1 f-web2 f-down f-killed; do
  start_daemon $m -- "$BIN/salt-minion" -c "$ROOT/$m/conf" -l quiet
  eval "PID_${m//-/_}=\$LAST_PID"
done
SALT=("$BIN/salt" -c "$FCONF")
SALTRUN=("$BIN/salt-run" -c "$FCONF")
wait_ping f-web1 f-web2 f-down f-killed
log "fleet answers; stopping f-down for good, adding the key of f-silent (never runs)"
stop_pid "$PID_f_down"
# salt-key 3008.5 writes the pair, then fails printing its fingerprint (pem_finger gets a key
# object, AttributeError 'encode'): its exit code and output are ignored, the file is checked.
"$BIN/salt-key" -c "$FCONF" --gen-keys=f-silent --gen-keys-dir="$FL/silent-key" > /dev/null 2>&1 || true
[[ -s $FL/silent-key/f-silent.pub ]] || { echo "salt-key --gen-keys wrote no f-silent.pub" >&2; exit 1; }
cp "$FL/silent-key/f-silent.pub" "$FPKI/minions/f-silent"
"$BIN/salt-key" -c "$FCONF" -L
rm -rf "$FCACHE/jobs"
mkdir -p "$FCACHE/jobs"
CACHEDIR=$FCACHE
JSONL=$ROOT/fleet-cases.jsonl
: > "$JSONL"
FJ=(--out=json -t 10)
find_specs() { # CASE: optional specs for the CLI's own saltutil.find_job polls after a timeout
  printf "?%s-find-job%s|nothing|saltutil.find_job|the CLI's own saltutil.find_job poll to the minions that did not return in time (a job of its own)\n" \
    "$1" "" "$1" -2 "$1" -3 "$1" -4
}
mapfile -t FS_PING < <(find_specs fleet-ping-glob)
run_case "fleet-ping-glob|nothing|test.ping|salt '*' test.ping: the glob targets every accepted key; f-down (stopped) and f-silent (never ran) do not return" \
         "${FS_PING[@]}" -- "${SALT[@]}" '*' test.ping "${FJ[@]}"
run_case "fleet-cmd-run|nothing|cmd.run|cmd.run on f-web1,f-web2,f-killed: every minion returns" \
  -- "${SALT[@]}" -L f-web1,f-web2,f-killed cmd.run 'echo hello fleet' "${FJ[@]}"
mapfile -t FS_NOKEY < <(find_specs fleet-list-nokey)
run_case "fleet-list-nokey|states|state.sls|list target f-web1,f-nokey where f-nokey has no key: see .minions.p / list_job Minions" \
         "${FS_NOKEY[@]}" -- "${SALT[@]}" -L f-web1,f-nokey state.sls twice "${FJ[@]}"
mapfile -t FS_DOWN < <(find_specs fleet-minion-down)
run_case "fleet-minion-down|states|state.sls|state.sls twice on f-web1,f-web2,f-down while f-down is stopped: f-down never returns" \
         "${FS_DOWN[@]}" -- "${SALT[@]}" -L f-web1,f-web2,f-down state.sls twice "${FJ[@]}"

# --- a minion SIGKILLed mid-job (with its job process: the whole process group)
log "fleet: killing f-killed mid-job"
$HELPER jids "$CACHEDIR" > "$ROOT/before.txt"
KCMD=("${SALT[@]}" -L f-web1,f-killed state.sls fleetslow --out=json -t 15)
timeout 180 "${KCMD[@]}" > "$ROOT/out/killed.out" 2>&1 &
KCLI=$!
for i in $(seq 1 100); do
  if compgen -G "$ROOT/f-killed/var/cache/salt/minion/proc/*" > /dev/null; then break; fi
  [[ $i -eq 100 ]] && { echo "f-killed never started the slow job" >&2; exit 1; }
  sleep 0.1
done
sleep 1
kill -KILL -- "-$PID_f_killed"
log "f-killed (pgid $PID_f_killed) SIGKILLed while its job ran"
set +e; wait "$KCLI"; KRC=$?; set -e
$HELPER settle "$CACHEDIR"
mapfile -t FS_KILL < <(find_specs fleet-killed)
KSTR=$(printf '%q ' "${KCMD[@]}"); KSTR=${KSTR% }; KSTR=${KSTR//"$BIN/"/}; KSTR=${KSTR//"$ROOT"/'$ROOT'}
$HELPER record "$CACHEDIR" "$ROOT/before.txt" "$JSONL" "$KSTR" "$KRC" \
  "fleet-killed|states|state.sls|state.sls fleetslow on f-web1,f-killed; f-killed (minion and its job process) gets SIGKILL ~1 s into the 8 s state: only f-web1 returns" \
  "${FS_KILL[@]}"
rm -rf "$ROOT/f-killed/var/cache/salt/minion/proc"
$HELPER jids "$CACHEDIR" > "$ROOT/before.txt"
start_daemon f-killed-again -- "$BIN/salt-minion" -c "$ROOT/f-killed/conf" -l quiet
wait_ping f-killed # its warm-up ping is a real job: recorded below, not wiped
$HELPER settle "$CACHEDIR"
mapfile -t FS_BACK < <(find_specs fleet-killed-back-ping)
$HELPER record "$CACHEDIR" "$ROOT/before.txt" "$JSONL" "wait_ping f-killed" 0 \
  "fleet-killed-back-ping|nothing|test.ping|the script's readiness ping (salt -L f-killed test.ping -t 5, repeated until it answers) after f-killed is started again: the first may time out" \
  "?fleet-killed-back-ping-2|nothing|test.ping|readiness ping, another round" \
  "?fleet-killed-back-ping-3|nothing|test.ping|readiness ping, another round" \
  "${FS_BACK[@]}"

# --- batch, async, a return after the CLI gave up
mapfile -t FS_BATCH < <(find_specs fleet-batch)
run_case "fleet-batch-gather-ping|nothing|test.ping|the test.ping job the batch CLI publishes first to gather the minions (f-down does not answer)" \
         "fleet-batch|states|state.sls|salt -b 1 -L f-web1,f-web2,f-down state.sls twice: first sub-batch" \
         "?fleet-batch-2|states|state.sls|second sub-batch, if Salt gave it its own jid" \
         "?fleet-batch-3|states|state.sls|third sub-batch, if any" \
         "${FS_BATCH[@]}" -- "${SALT[@]}" -b 1 -L f-web1,f-web2,f-down state.sls twice "${FJ[@]}"
run_case "fleet-async|states|state.sls|salt --async -L f-web1,f-down state.sls twice: the CLI returns the jid at once; f-web1 returns later, f-down never" \
  -- "${SALT[@]}" -L f-web1,f-down state.sls twice --async
ASYNC_JID=$(last_jid)
$HELPER waitret "$CACHEDIR" "$ASYNC_JID" f-web1 60
$HELPER settle "$CACHEDIR"
mapfile -t FS_LATE < <(find_specs fleet-late-return)
run_case "fleet-late-return|states|state.sls|salt -t 2 f-web2 state.sls fleetslow, the CLI interrupted (SIGINT, as Ctrl-C) after 4 s: f-web2's return lands ~4 s after the CLI gave up" \
         "${FS_LATE[@]}" -- timeout -s INT 4 "${SALT[@]}" f-web2 state.sls fleetslow --out=json -t 2
LATE_JID=$(case_jid fleet-late-return)
$HELPER waitret "$CACHEDIR" "$LATE_JID" f-web2 60
$HELPER settle "$CACHEDIR"

# --- orchestration against a down minion
mapfile -t FS_ORCH < <(find_specs fleet-orch-child)
run_case "fleet-orch-down|states|runner.state.orchestrate|salt-run state.orchestrate orch.fleet: salt.state on f-web1,f-down (f-down never returns), salt.function test.ping on '*'" \
         "fleet-orch-child-state|states|state.sls|child job of the salt.state step: f-down is missing" \
         "fleet-orch-child-ping|nothing|test.ping|child job of the salt.function step on '*': f-down and f-silent are missing" \
         "${FS_ORCH[@]}" -- "${SALTRUN[@]}" state.orchestrate orch.fleet --out=json
run_case "fleet-ping-after|nothing|test.ping|salt '*' test.ping at the end: f-killed is back, f-down and f-silent still missing" \
         "${FS_PING[@]/fleet-ping-glob/fleet-ping-after}" -- "${SALT[@]}" '*' test.ping "${FJ[@]}"

log "copying the fleet cache into testdata/fleet"
rm -rf "$FOUT/jobs" "$FOUT/expected" "$FOUT/pki"
cp -a "$FCACHE/jobs" "$FOUT/jobs"
find "$FOUT/jobs" -name '.___atomic_write*' -delete
mkdir -p "$FOUT/pki/minions"
cp "$FPKI"/minions/* "$FOUT/pki/minions/" # public keys only (accepted keys)
$HELPER expected "$FCONF" "$FOUT/jobs" "$FOUT/expected" 2> "$ROOT/fleet-expected.stderr"
CHECK_JID=$(case_jid fleet-minion-down)
"${SALTRUN[@]}" jobs.list_job "$CHECK_JID" --out=json > "$ROOT/check.json"
cmp -s "$ROOT/check.json" "$FOUT/expected/$CHECK_JID.json" ||
  { echo "fleet/expected/ differs from salt-run jobs.list_job --out=json" >&2; exit 1; }
# cases.json: each record + Salt's view of who was targeted, who returned, who is missing
# (from expected/), checked against what this script did to the fleet.
"$PY" - "$JSONL" "$FOUT" <<'EOF2'
import json, os, sys
jsonl, out = sys.argv[1:3]
must_miss = {  # case -> the minions this script made miss it
    "fleet-ping-glob": ["f-down", "f-silent"],
    "fleet-list-nokey": [],
    "fleet-minion-down": ["f-down"],
    "fleet-killed": ["f-killed"],
    "fleet-batch-gather-ping": ["f-down"],
    "fleet-async": ["f-down"],
    "fleet-late-return": [],
    "fleet-orch-child-state": ["f-down"],
    "fleet-orch-child-ping": ["f-down", "f-silent"],
    "fleet-ping-after": ["f-down", "f-silent"],
}
rows, bad = [], []
for line in open(jsonl, encoding="utf-8"):
    r = json.loads(line)
    view = json.load(open(os.path.join(out, "expected", r["jid"] + ".json"), encoding="utf-8"))
    view = view.get(r["jid"], view)
    returned = sorted((view.get("Result") or {}).keys())
    # list_job has no Minions for a runner job (no .minions.p): count what returned (issue 21)
    r["list_job_minions"] = view.get("Minions")
    targeted = sorted(view["Minions"]) if view.get("Minions") is not None else returned
    r["minions_targeted"] = targeted
    r["minions_returned"] = returned
    r["minions_missing"] = sorted(set(targeted) - set(returned))
    if r["case"] in must_miss and r["minions_missing"] != must_miss[r["case"]]:
        bad.append("%s: missing %s, expected %s" % (r["case"], r["minions_missing"], must_miss[r["case"]]))
    rows.append(r)
with open(os.path.join(out, "cases.json"), "w", encoding="utf-8") as fh:
    json.dump(rows, fh, indent=2, ensure_ascii=False)
    fh.write("\n")
for r in rows:
    print("%-28s %-22s %-11s %-26s missing=%s" % (r["case"], r["jid"], r["expect"], r["fun"], ",".join(r["minions_missing"])))
if bad:
    sys.exit("fleet: " + "; ".join(bad))
EOF2
log "stopping the fleet phase's daemons"
for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
PIDS=()
log "fleet done ($(du -sk "$FOUT" | cut -f1) KB)"
fi
