#!/usr/bin/env bash
# saltship benchmark: wall time against the read floor and the reference peer, delivery
# over TCP, peak RSS, and (once it exists) a no-op sync. Prints a Markdown table for the
# "Performance" section of docs/performance.md. See bench/README.md.
#
#   bash bench/run.sh [--runs N] [--quick]
#
# Env: SALTSHIP_BENCH_DIR (corpora, venv; default ~/.cache/saltship/bench),
#      SALTSHIP_SHARED (folder holding bench/make-corpus.py and bench/peer.py).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# die, note, and the set-up (shared material, Python, corpora, build) shared with faults.sh.
source "$HERE/lib.sh"
INVOCATION="bash bench/run.sh${*:+ $*}"

RUNS=3
QUICK=0

parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --runs) [ $# -ge 2 ] || die "--runs needs a number"; RUNS="$2"; shift 2 ;;
            --runs=*) RUNS="${1#--runs=}"; shift ;;
            --quick) QUICK=1; shift ;;
            -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown option: $1 (try --help)" ;;
        esac
    done
    [[ "$RUNS" =~ ^[0-9]+$ ]] && [ "$RUNS" -ge 1 ] || die "--runs wants a positive integer"
    # A median of fewer than 3 runs is just one noisy sample.
    [ "$RUNS" -ge 3 ] || note "warning: --runs $RUNS < 3; medians will be noisy"
}

# --- the local receiver ----------------------------------------------------------------

start_receiver() {
    local port_file="$WORK/port"
    "$PY" "$HERE/discard.py" "$port_file" >"$WORK/discard.out" 2>&1 &
    RECEIVER_PID=$!
    local i
    for i in $(seq 100); do
        [ -s "$port_file" ] && break
        kill -0 "$RECEIVER_PID" 2>/dev/null || die "discard.py died: $(cat "$WORK/discard.out")"
        sleep 0.05
    done
    [ -s "$port_file" ] || die "discard.py did not start listening"
    PORT="$(cat "$port_file")"
}

stop_receiver() {
    if [ -n "${RECEIVER_PID:-}" ]; then
        kill "$RECEIVER_PID" 2>/dev/null || true
        wait "$RECEIVER_PID" 2>/dev/null || true
        RECEIVER_PID=
    fi
}

cleanup() {
    stop_receiver
    if [ -n "${WORK:-}" ]; then rm -rf "$WORK"; fi
}

# --- the measured commands -------------------------------------------------------------
# Each reads $JOBS. stderr goes to a log, shown if the command fails: saltship exits 1
# when some cache file could not be read, and a fast but incomplete run is no result.

cmd_floor()  { find "$JOBS" -name return.p -print0 | xargs -0 cat >/dev/null; }
cmd_dry()    { "$BIN" backfill --dry-run --cache-dir "$JOBS" >/dev/null; }
cmd_peer()   { "$PY" "$SHARED/bench/peer.py" "$JOBS" >/dev/null; }
cmd_target() { "$BIN" backfill --cache-dir "$JOBS" --target "127.0.0.1:$PORT"; }

# Wall-clock seconds of one run of cmd_$1, appended to $WORK/$1.times.
time_one() {
    local case="$1" t0 t1
    t0=$(date +%s.%N)
    if ! "cmd_$case" 2>"$WORK/$case.err"; then
        cat "$WORK/$case.err" >&2
        die "$case failed"
    fi
    t1=$(date +%s.%N)
    echo "$t0 $t1" | awk '{ printf "%.4f\n", $2 - $1 }' >>"$WORK/$case.times"
}

median() { # file of numbers -> median
    "$PY" -c 'import statistics,sys; print("%.3f" % statistics.median(float(l) for l in open(sys.argv[1])))' "$1"
}

# Alternate the cases within each round (A B C A B C ...), so drift in machine load hits
# every case alike instead of all runs of one.
time_rounds() { # cases...
    local r c
    for r in $(seq "$RUNS"); do
        for c in "$@"; do
            note "round $r/$RUNS: $c"
            time_one "$c"
        done
    done
}

# Peak RSS in MiB of `saltship backfill --dry-run` on a corpus: the largest of $RUNS runs.
peak_rss_mib() { # jobs dir
    local r kb max=0
    for r in $(seq "$RUNS"); do
        /usr/bin/time -v "$BIN" backfill --dry-run --cache-dir "$1" >/dev/null 2>"$WORK/rss.err" \
            || { cat "$WORK/rss.err" >&2; die "dry-run on $1 failed"; }
        kb=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/rss.err")
        [ -n "$kb" ] || die "no 'Maximum resident set size' in /usr/bin/time -v output"
        if [ "$kb" -gt "$max" ]; then max=$kb; fi
    done
    awk -v kb="$max" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# --- no-op sync vs full backfill ---------------------------------------------------------
# A sync that finds nothing new (its checkpoint already holds the whole corpus) should cost
# <= 5% of a full `backfill --dry-run` of the same corpus.

HAVE_SYNC=0
SYNC_STATE=
SYNC_NA="n/a (saltship sync --help failed)"

# Untimed catch-up: one real sync into the discarding receiver fills the checkpoint, so the
# timed `sync --dry-run` runs (which record nothing) each find nothing to ship.
prepare_sync() {
    "$BIN" sync --help >/dev/null 2>&1 || return 0
    SYNC_STATE="$WORK/sync-state"
    note "sync catch-up (untimed)"
    # Twice: the second sync finds every return recorded and settles the jobs, as the
    # every-minute cron or timer runs of an operator do.
    for _ in 1 2; do
        "$BIN" sync --quiet --cache-dir "$JOBS" --target "127.0.0.1:$PORT" --state-file "$SYNC_STATE" \
            2>"$WORK/sync.err" || { cat "$WORK/sync.err" >&2; sync_broken "catch-up failed"; return 0; }
    done
    # A "no-op" that still prints events measures something else: say so, skip the row.
    local left
    left=$("$BIN" sync --dry-run --quiet --cache-dir "$JOBS" --state-file "$SYNC_STATE" \
        2>"$WORK/sync.err" | wc -l) || { cat "$WORK/sync.err" >&2; sync_broken "dry run failed"; return 0; }
    if [ "$left" -ne 0 ]; then sync_broken "still $left events after catch-up"; return 0; fi
    HAVE_SYNC=1
}

# A broken sync costs its row, not the whole benchmark.
sync_broken() {
    note "warning: saltship sync: $1; skipping the no-op sync row"
    SYNC_NA="n/a (saltship sync: $1)"
}

cmd_sync() { "$BIN" sync --dry-run --cache-dir "$JOBS" --state-file "$SYNC_STATE" >/dev/null; }

# --- report ------------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" -v k="${3:-1}" 'BEGIN { printf "%.1f", k * a / b }'; }
meets() { awk -v v="$1" -v op="$2" -v lim="$3" 'BEGIN { ok = (op == "<=") ? v <= lim : v >= lim; print ok ? "yes" : "**no**" }'; }
runs_of() { paste -sd' ' "$WORK/$1.times"; }

report() {
    local floor_x peer_x target_x sync_cell sync_met
    floor_x=$(ratio "$DRY" "$FLOOR")
    peer_x=$(ratio "$PEER" "$DRY")
    target_x=$(ratio "$TARGET" "$FLOOR")
    if [ "$HAVE_SYNC" = 1 ]; then
        local pct; pct=$(ratio "$SYNC" "$DRY" 100)
        sync_cell="$SYNC s | ${pct}% of backfill --dry-run"
        sync_met=$(meets "$pct" "<=" 5)
    else
        sync_cell="$SYNC_NA |"
        sync_met="n/a"
    fi
    cat <<EOF

## saltship benchmark

Corpus: $CORPUS_DESC

| Measurement | Median | Ratio | Target | Met |
|---|---|---|---|---|
| read floor: \`find JOBS -name return.p -print0 \| xargs -0 cat\` (warm cache) | $FLOOR s | 1.0x floor | | |
| \`saltship backfill --dry-run\` > /dev/null | $DRY s | ${floor_x}x floor | <= 2x floor | $(meets "$floor_x" "<=" 2) |
| reference peer: \`python3 peer.py JOBS\` > /dev/null | $PEER s | ${peer_x}x saltship | saltship >= 15x faster | $(meets "$peer_x" ">=" 15) |
| \`saltship backfill --target 127.0.0.1:PORT\` (discarding receiver) | $TARGET s | ${target_x}x floor | <= 2.5x floor | $(meets "$target_x" "<=" 2.5) |
| peak RSS, \`backfill --dry-run\`, 1x corpus | $RSS1 MiB | | <= 32 MiB | $(meets "$RSS1" "<=" 32) |
| peak RSS, \`backfill --dry-run\`, 4x corpus | $RSS4 MiB | | <= 32 MiB | $(meets "$RSS4" "<=" 32) |
| no-op \`saltship sync\` vs full backfill | $sync_cell | <= 5% of a full backfill | $sync_met |

Medians of $RUNS alternating runs (wall clock); peak RSS is the largest of $RUNS runs (\`/usr/bin/time -v\`).
Machine: $(machine).
saltship: $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO" && [ -n "$(git status --porcelain 2>/dev/null)" ] && echo " (with uncommitted changes)" || true), \`cargo build --release\`.
Command: \`$INVOCATION\`

Raw runs (s): floor: $(runs_of floor); dry-run: $(runs_of dry); peer: $(runs_of peer); --target: $(runs_of target)$(if [ "$HAVE_SYNC" = 1 ]; then echo "; no-op sync: $(runs_of sync)"; fi)
Receiver: $(cat "$WORK/discard.out" 2>/dev/null || true)
EOF
}

# --- main ------------------------------------------------------------------------------

main() {
    parse_args "$@"
    local started; started=$(date +%s.%N)
    BENCH_DIR="${SALTSHIP_BENCH_DIR:-$HOME/.cache/saltship/bench}"
    mkdir -p "$BENCH_DIR"
    find_shared
    clean_env
    find_python
    need_gnu_time
    build
    WORK="$(mktemp -d)"
    trap cleanup EXIT

    local jobs4
    if [ "$QUICK" = 1 ]; then
        JOBS=$(ensure_corpus quick-1x --jobs 4)
        jobs4=$(ensure_corpus quick-4x --jobs 16)
    else
        JOBS=$(ensure_corpus corpus-1x)
        jobs4=$(ensure_corpus corpus-4x --jobs 80)
    fi

    # Untimed warm-up: the floor pass fills the page cache (the floor is defined warm),
    # and a dry-run pass counts the events for the report.
    note "warm-up"
    cmd_floor
    local events files mb
    events=$("$BIN" backfill --dry-run --quiet --cache-dir "$JOBS" | wc -l)
    files=$(find "$JOBS" -name return.p | wc -l)
    mb=$(find "$JOBS" -name return.p -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s / 1e6 }')
    CORPUS_DESC="\`$JOBS\`: $files return.p files ($mb MB of msgpack), $events state events"

    start_receiver
    prepare_sync
    local cases=(floor dry peer target)
    if [ "$HAVE_SYNC" = 1 ]; then cases+=(sync); fi
    time_rounds "${cases[@]}"
    FLOOR=$(median "$WORK/floor.times")
    DRY=$(median "$WORK/dry.times")
    PEER=$(median "$WORK/peer.times")
    TARGET=$(median "$WORK/target.times")

    note "peak RSS"
    RSS1=$(peak_rss_mib "$JOBS")
    RSS4=$(peak_rss_mib "$jobs4")

    if [ "$HAVE_SYNC" = 1 ]; then SYNC=$(median "$WORK/sync.times"); fi
    stop_receiver

    report
    echo
    echo "Whole run: $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s (corpus generation included when it happened)."
}

main "$@"
