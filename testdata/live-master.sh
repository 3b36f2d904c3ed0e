#!/usr/bin/env bash
# saltship `watch --events all` against a REAL, live Salt master (issue 28): a 3008.5 master and
# minions web1, db1 and down1 run as regen.sh runs them (root, 127.0.0.1, a temp root; down1
# answers once and is then stopped, its key accepted), saltship follows the master's cache while
# jobs are published, and every job and no_return event it ships (to a real rsyslog) is compared
# with `jobs.list_job` of the same jid once the jobs are final. Also says how long the master
# took from `.load.p` to `.minions.p` (inotify times). Not part of `cargo test` (a minute, root).
#   bash testdata/live-master.sh [SALTSHIP_BINARY]     (default: target/debug/saltship)
# Exit 0 when every job matches. SALTSHIP_KEEP_ROOT=1 keeps the temp root.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SALTSHIP=${1:-$HERE/../target/debug/saltship}
PUB_PORT=${SALTSHIP_PUB_PORT:-45525}
RET_PORT=${SALTSHIP_RET_PORT:-45526}
WAIT=${SALTSHIP_LIVE_WAIT:-20} # --return-wait, seconds
FIXTURE_BASE=/tmp/saltship-fixture
T0=$(date +%s)
log() { printf '[live %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
[[ -x $SALTSHIP ]] || { echo "no saltship binary at $SALTSHIP (cargo build)" >&2; exit 2; }

. "$HERE/salt-venv.sh"
BIN=$SALT_VENV/bin
PY=$BIN/python

ROOT=$(mktemp -d /tmp/saltship-live.XXXXXX)
PIDS=()
stop_pid() { # one daemon and its process group (started with setsid)
  local pid=$1 i
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  rm -rf "$FIXTURE_BASE"
  if [[ -z ${SALTSHIP_KEEP_ROOT:-} ]]; then rm -rf "$ROOT"; else echo "kept $ROOT"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
start_daemon() { # name cmd...   (sets LAST_PID)
  local name=$1; shift
  setsid "$@" > "$ROOT/$name.stdout" 2>&1 < /dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

MCONF=$ROOT/master/conf
JOBS=$ROOT/master/var/cache/salt/master/jobs
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
file_roots:
  base:
    - $HERE/salt/states
log_file: $ROOT/master/master.log
enable_fqdns_grains: False
EOF
for m in web1 db1 down1; do
  mkdir -p "$ROOT/$m/conf"
  cat > "$ROOT/$m/conf/minion" <<EOF
id: $m
root_dir: $ROOT/$m
user: root
master: 127.0.0.1
master_port: $RET_PORT
publish_port: $PUB_PORT
log_file: $ROOT/$m/minion.log
enable_fqdns_grains: False
acceptance_wait_time: 1
random_reauth_delay: 0
EOF
done
SALT=("$BIN/salt" -c "$MCONF" --out=json)

log "starting salt-master and minions web1, db1, down1"
start_daemon master "$BIN/salt-master" -c "$MCONF" -l quiet
sleep 3
start_daemon down1 "$BIN/salt-minion" -c "$ROOT/down1/conf" -l quiet
DOWN1=$LAST_PID
start_daemon web1 "$BIN/salt-minion" -c "$ROOT/web1/conf" -l quiet
start_daemon db1 "$BIN/salt-minion" -c "$ROOT/db1/conf" -l quiet
for i in $(seq 1 60); do
  n=$(timeout 30 "${SALT[@]}" -L web1,db1,down1 test.ping -t 5 2>/dev/null | grep -c '": true' || true)
  [[ $n -eq 3 ]] && break
  [[ $i -eq 60 ]] && { echo "minions did not come up" >&2; exit 1; }
  sleep 1
done
log "all minions answer; stopping down1 (its key stays accepted)"
stop_pid "$DOWN1"
rm -rf "$JOBS"
mkdir -p "$JOBS"
# Every two-hex folder made now, so inotify sees each job folder's first file.
for i in $(seq 0 255); do mkdir -p "$JOBS/$(printf %02x "$i")"; done

log "rsyslog on 127.0.0.1 and saltship watch --events all --return-wait ${WAIT}s"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$ROOT/rsyslog.conf" <<EOF
global(workDirectory="$ROOT" maxMessageSize="64k")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="saltship") { action(type="omfile" file="$ROOT/events.json" template="raw") }
input(type="imtcp" address="127.0.0.1" port="$PORT" ruleset="saltship")
EOF
start_daemon rsyslog /usr/sbin/rsyslogd -n -f "$ROOT/rsyslog.conf" -i "$ROOT/rsyslogd.pid"
start_daemon inotify "$PY" "$HERE/live_master.py" inotify "$JOBS" "$ROOT/inotify.log"
sleep 1
start_daemon saltship env SALTSHIP_RESCAN_INTERVAL=10m "$SALTSHIP" watch --cache-dir "$JOBS" \
  --target "127.0.0.1:$PORT" --events all --return-wait "${WAIT}s" --master-id testmaster \
  --jid-timezone utc --state-file "$ROOT/saltship.state"
SALTSHIP_PID=$LAST_PID
for i in $(seq 1 100); do grep -q following "$ROOT/saltship.stdout" && break; sleep 0.1; done

log "publishing jobs (down1 is down)"
"${SALT[@]}" -L web1,db1,down1 test.ping -t 5 > /dev/null || true
"${SALT[@]}" -L web1,db1 cmd.run 'echo live' -t 10 > /dev/null || true
"${SALT[@]}" '*' test.ping -t 5 > /dev/null || true
"${SALT[@]}" -L web1,db1,down1 state.sls common -t 20 > /dev/null || true
"${SALT[@]}" web1 test.ping,state.sls ,twice -t 30 > /dev/null || true
"$BIN/salt-run" -c "$MCONF" state.orchestrate_single test.succeed_with_changes name=live-orch --out=json > /dev/null || true
"$PY" -c "import salt.client,sys; salt.client.LocalClient(sys.argv[1]).cmd('web1','test.ping',timeout=10,nocache=True)" "$MCONF/master"
"${SALT[@]}" --async -L web1,db1,down1 test.sleep 3 > /dev/null
log "waiting for the last job's --return-wait"
sleep $((WAIT + 8))
stop_pid "$SALTSHIP_PID"
sleep 1 # rsyslog's omfile writes asynchronously
sed 's/^/  | /' "$ROOT/saltship.stdout"

"$PY" "$HERE/live_master.py" gaps "$JOBS" "$ROOT/inotify.log"
"$PY" "$HERE/live_master.py" compare "$MCONF/master" "$ROOT/events.json" "$JOBS"
