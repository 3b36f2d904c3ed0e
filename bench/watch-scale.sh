#!/usr/bin/env bash
# `saltship watch` on a big master: a generated cache of 100 jobs x 2,000 minions (200,000
# returns, 600,000 state events), caught up, then returns landed like a master every 20 ms
# (the minions of one highstate job after another).
# Reports latency p50/p99 (rename -> first byte at the receiver), inotify watches, peak RSS
# and bytes written per checkpoint save. See bench/README.md.
#
#   bash bench/watch-scale.sh [--seconds N] [--jobs N] [--events LIST] [--keep-corpus]
#
# --jobs N: N jobs x 2,000 minions (default 100); --jobs 500 makes the 1,000,000-return cache
# (about 12 GB: the script refuses unless the disk keeps 20 GB free besides it). --events LIST
# is passed to `watch --events` (state, job, no-return, all; watch's default if not given).
# The corpus (about 2.4 GB on disk at 100 jobs, mostly minion folders) goes to
# ${SALTSHIP_BENCH_DIR:-/tmp/saltship-watch-scale} and is deleted afterwards unless
# --keep-corpus. SALTSHIP_SHARED as for run.sh.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# die, note, and the set-up (shared material, Python, corpora, build) shared with run.sh.
source "$HERE/lib.sh"

SECONDS_LANDING=60
JOB_COUNT=100
EVENTS=state
KEEP=0
EVENTS=
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) [ $# -ge 2 ] || die "--seconds needs a number"; SECONDS_LANDING="$2"; shift 2 ;;
        --jobs) [ $# -ge 2 ] || die "--jobs needs a number"; JOB_COUNT="$2"; shift 2 ;;
        --events) [ $# -ge 2 ] || die "--events needs a list"; EVENTS="$2"; shift 2 ;;
        --keep-corpus) KEEP=1; shift ;;
        -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option: $1 (try --help)" ;;
    esac
done

BENCH_DIR="${SALTSHIP_BENCH_DIR:-/tmp/saltship-watch-scale}"
mkdir -p "$BENCH_DIR"
find_shared
clean_env
find_python
build
case "$JOB_COUNT" in ''|*[!0-9]*) die "--jobs needs a number" ;; esac
CORPUS="corpus-$(( JOB_COUNT * 2 ))k"
# About 24 MB a job on disk (mostly minion folders); keep 20 GB free for everyone else.
if [ ! -d "$BENCH_DIR/$CORPUS/jobs" ]; then
    need_kb=$(( JOB_COUNT * 24 * 1024 + 20 * 1024 * 1024 ))
    free_kb=$(df -Pk "$BENCH_DIR" | awk 'NR == 2 { print $4 }')
    [ "$free_kb" -ge "$need_kb" ] || die "$BENCH_DIR has $(( free_kb / 1024 / 1024 )) GB free; --jobs $JOB_COUNT needs about $(( JOB_COUNT * 24 / 1024 )) GB plus 20 GB to spare"
fi
# Renamed before it is deleted: a deletion cut short must not leave a part of the corpus that
# the next run would take for the whole one (it did: 612,850 of 1,000,000 returns).
if [ "$KEEP" = 0 ]; then
    trap 'mv "$BENCH_DIR/$CORPUS" "$BENCH_DIR/$CORPUS.deleting" 2>/dev/null; rm -rf "$BENCH_DIR/$CORPUS.deleting"' EXIT
fi

started=$(date +%s)
JOBS=$(ensure_corpus "$CORPUS" --jobs "$JOB_COUNT" --minions 2000 --states 3 --noise 0)
note "corpus ready after $(( $(date +%s) - started )) s; watch catches up, then returns land every 20 ms for $SECONDS_LANDING s"
echo "## saltship watch on a big master"
echo
echo "Cache: \`$JOBS\`, $(find "$JOBS" -mindepth 3 -maxdepth 3 -type d | wc -l) minion folders;" \
    "fs.inotify.max_user_watches $(cat /proc/sys/fs/inotify/max_user_watches)."
echo "Machine: $(machine). saltship: $(cd "$REPO" && git rev-parse --short HEAD)."
echo "Command: \`bash bench/watch-scale.sh --seconds $SECONDS_LANDING --jobs $JOB_COUNT${EVENTS:+ --events $EVENTS}\`"
echo
# Landed like a highstate of the cache's 2,000 minions: one job, a return every 20 ms.
"$PY" "$HERE/watch-latency.py" --cache "$JOBS" --per-job 2000 --names 'web-%04d.example.com' \
    --rate 50 --seconds "$SECONDS_LANDING" --bin "$BIN" ${EVENTS:+--events "$EVENTS"}
