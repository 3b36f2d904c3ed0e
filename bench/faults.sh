#!/usr/bin/env bash
# The scripted fault run (issue 10): on a generated cache, in one bounded run, it
#   - SIGKILLs `sync` three times mid-run,
#   - kills (SIGKILL) and restarts the receiver three times during a sync,
#   - runs every sync as `nobody` with one return and one jid file unreadable (mode 000 and
#     600), then readable again,
#   - puts a FIFO and a file over --max-return-bytes in the cache,
#   - fills the state folder (a 1 MiB tmpfs) while a new job waits to be shipped,
# checks that each run exited as documented, and at the end that every event_id of a dry run
# reached the receiver at least once. Prints one tally line; exit 0 when every check passed.
#
#   sudo bash bench/faults.sh        (root: it mounts a tmpfs and drops to nobody)
#
# Env: SALTSHIP_BIN (default: cargo build --release), SALTSHIP_BENCH_DIR, SALTSHIP_SHARED.
set -uo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
source "$HERE/lib.sh"

CAP=1M          # --max-return-bytes: the generated returns are ~15 KB, the oversize file 2 MiB
RATE=10000      # --max-rate, so that a sync lasts seconds and the kills land mid-run
TIMEOUT=180     # no run may take longer than this

PASSED=0
FAILED=0
FAILURES=()
RESTARTS=0
KILLS=0

check() { # what, ok (0/1)
    if [ "$2" = 1 ]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$1")
        note "FAILED: $1"
    fi
}

cleanup() {
    [ -n "${RECEIVER_PID:-}" ] && kill "$RECEIVER_PID" 2>/dev/null
    [ -n "${SYNC_PID:-}" ] && kill -9 "$SYNC_PID" 2>/dev/null
    mountpoint -q "$WORK/state" 2>/dev/null && umount "$WORK/state"
    [ -n "${WORK:-}" ] && rm -rf "$WORK"
}

start_receiver() {
    rm -f "$WORK/port"
    "$PY" "$HERE/discard.py" "$WORK/port" "${PORT:-0}" "$WORK/received" >>"$WORK/receiver.log" 2>&1 &
    RECEIVER_PID=$!
    local i
    for i in $(seq 100); do
        [ -s "$WORK/port" ] && break
        sleep 0.05
    done
    [ -s "$WORK/port" ] || die "the receiver did not start: $(cat "$WORK/receiver.log")"
    PORT="$(cat "$WORK/port")"
}

kill_receiver() {
    kill -9 "$RECEIVER_PID" 2>/dev/null
    wait "$RECEIVER_PID" 2>/dev/null
    RECEIVER_PID=
}

# saltship sync as nobody, in the background: setpriv execs it, so $SYNC_PID is saltship's.
sync_bg() { # log name, extra args...
    local log="$WORK/$1.log"; shift
    setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
        "$BIN" sync --cache-dir "$CACHE" --state-file "$WORK/state/state" \
        --target "127.0.0.1:$PORT" --max-return-bytes "$CAP" --max-rate "$RATE" \
        --deliver-timeout 60s --master-id faults "$@" >/dev/null 2>"$log" &
    SYNC_PID=$!
}

sync_wait() { # -> RC; a run past $TIMEOUT is killed, and then fails its check (137)
    local i
    for i in $(seq $((TIMEOUT * 10))); do
        kill -0 "$SYNC_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$SYNC_PID" 2>/dev/null && { note "sync ran past ${TIMEOUT}s: killed"; kill -9 "$SYNC_PID"; }
    wait "$SYNC_PID"
    RC=$?
    SYNC_PID=
}

sync_run() { # log name, extra args... -> RC
    sync_bg "$@"
    sync_wait
}

has() { grep -q -- "$2" "$WORK/$1.log"; }

main() {
    [ "$(id -u)" = 0 ] || die "run as root: it mounts a small tmpfs and runs saltship as nobody"
    BENCH_DIR="${SALTSHIP_BENCH_DIR:-$HOME/.cache/saltship/bench}"
    mkdir -p "$BENCH_DIR"
    BIN="${SALTSHIP_BIN:-}"
    clean_env
    find_shared
    find_python
    [ -n "$BIN" ] || build
    WORK="$(mktemp -d /tmp/saltship-faults.XXXXXX)"
    trap cleanup EXIT
    chmod 755 "$WORK"

    note "generating the cache"
    "$PY" "$SHARED/bench/make-corpus.py" "$WORK/gen" --jobs 6 --minions 100 --states 150 \
        --noise 1 >&2 || die "make-corpus.py failed"
    CACHE="$WORK/gen/jobs"
    mkdir "$WORK/state"
    mount -t tmpfs -o size=1M tmpfs "$WORK/state" || die "cannot mount a tmpfs"
    chmod 777 "$WORK/state"

    # The faults in the cache, in state jobs (the returns of other jobs are never read).
    # Returns sorted by path: the first is a FIFO, the second unreadable to nobody, another
    # minion folder of the second's job holds an oversize file.
    mapfile -t RETURNS < <(grep -la 'state\.' $(find "$CACHE" -name .load.p) | sed 's|/.load.p$||' |
        xargs -I{} find {} -name return.p | sort)
    local fifo="${RETURNS[0]}" locked="${RETURNS[1]}"
    local job_dir; job_dir="$(dirname "$(dirname "$locked")")"
    local other_jid="${RETURNS[-1]%/*/return.p}/jid"
    rm "$fifo" && mkfifo "$fifo"
    mkdir "$job_dir/oversize.example.com"
    head -c 2M /dev/zero >"$job_dir/oversize.example.com/return.p"
    chmod 000 "$locked"
    chmod 600 "$other_jid"

    start_receiver

    note "SIGKILL sync three times mid-run"
    local t
    for t in 1.0 1.5 2.0; do
        sync_bg "kill-$t"
        sleep "$t"
        kill -9 "$SYNC_PID" 2>/dev/null && KILLS=$((KILLS + 1))
        sync_wait
        check "sync killed after ${t}s exits 137 (got $RC)" "$([ "$RC" = 137 ] && echo 1 || echo 0)"
    done

    note "kill and restart the receiver three times during a sync"
    sync_bg flapping
    for t in 1 2 3; do
        sleep 0.8
        kill_receiver
        sleep 0.5
        start_receiver
        RESTARTS=$((RESTARTS + 1))
    done
    sync_wait
    local reconnects
    reconnects="$(grep -o '[0-9]* reconnects' "$WORK/flapping.log" | cut -d' ' -f1)"
    check "the receiver went away mid-sync (${reconnects:-no} reconnects)" \
        "$([ "${reconnects:-0}" -gt 0 ] && echo 1 || echo 0)"
    check "sync with files unreadable for now exits 1 (got $RC)" "$([ "$RC" = 1 ] && echo 1 || echo 0)"
    check "Permission denied named for the return and the jid" \
        "$(has flapping "$locked: unreadable: Permission denied" && has flapping "$other_jid: unreadable: Permission denied" && echo 1 || echo 0)"
    check "the oversize file named" "$(has flapping "more than --max-return-bytes" && echo 1 || echo 0)"
    local fifo_warned=0
    for f in "$WORK"/kill-*.log "$WORK/flapping.log"; do grep -q "$fifo: not a regular file (a FIFO)" "$f" && fifo_warned=1; done
    check "the FIFO named" "$fifo_warned"

    note "permissions back, sync again"
    chmod 644 "$locked" "$other_jid"
    sync_run readable
    check "sync with only the oversize file left exits 1 (got $RC)" "$([ "$RC" = 1 ] && echo 1 || echo 0)"
    check "nothing unreadable any more" "$(has readable "Permission denied" && echo 0 || echo 1)"
    check "the FIFO was recorded, not warned about again" "$(has readable "FIFO" && echo 0 || echo 1)"

    note "the oversize file and the FIFO removed; a new job lands; the state folder fills up"
    rm -r "$job_dir/oversize.example.com" "$fifo"
    local new_job="$(dirname "$job_dir")/faultsnewjob"
    cp -r "$job_dir" "$new_job"
    local jid; jid="$(cat "$job_dir/jid")"
    echo -n "${jid:0:14}999999" >"$new_job/jid"
    dd if=/dev/zero of="$WORK/state/fill" bs=64k 2>/dev/null
    sync_run full -q
    local lines; lines="$(grep -c . "$WORK/full.log")"
    FULL="exit $RC, $lines line(s) with -q"
    check "a full state folder: non-zero exit and one line with -q ($FULL)" \
        "$([ "$RC" != 0 ] && [ "$lines" = 1 ] && echo 1 || echo 0)"
    rm -f "$WORK/state/fill"
    sync_run last
    check "the last sync exits 0 (got $RC)" "$([ "$RC" = 0 ] && echo 1 || echo 0)"
    kill "$RECEIVER_PID" && wait "$RECEIVER_PID" 2>/dev/null
    RECEIVER_PID=

    note "every event of the dry run received?"
    "$BIN" backfill --dry-run --cache-dir "$CACHE" --master-id faults --max-return-bytes "$CAP" \
        2>"$WORK/dry.log" | grep -o '"event_id":"[0-9a-f]*"' | sort -u >"$WORK/expected"
    grep -ao '"event_id":"[0-9a-f]*"' "$WORK/received" | sort >"$WORK/got-all"
    sort -u "$WORK/got-all" >"$WORK/got"
    local want got missing dups
    want="$(wc -l <"$WORK/expected")"
    missing="$(comm -23 "$WORK/expected" "$WORK/got" | wc -l)"
    got=$((want - missing))
    dups=$(($(wc -l <"$WORK/got-all") - $(wc -l <"$WORK/got")))
    check "every event received ($got of $want)" "$([ "$want" -gt 0 ] && [ "$missing" = 0 ] && echo 1 || echo 0)"

    local verdict=PASS
    [ "$FAILED" = 0 ] || verdict=FAIL
    echo "faults: $verdict: $PASSED of $((PASSED + FAILED)) checks; $KILLS sync SIGKILLs, $RESTARTS receiver restarts; $got of $want events received ($dups duplicates); full state folder: $FULL"
    [ "$FAILED" = 0 ] || printf 'faults: failed: %s\n' "${FAILURES[@]}"
    [ "$FAILED" = 0 ]
}

main "$@"
