# Shared by the bench scripts (run.sh, faults.sh, watch-scale.sh): finding the shared material, a Python
# with msgpack, the corpora, the release build. Source it after setting HERE and REPO.

die() { echo "${0##*/}: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }   # progress goes to stderr, so stdout is just the report

# The shared material lives outside the repo: /work/shared here, ../shared beside the
# clone in CI. An explicit SALTSHIP_SHARED wins; then the CI layout; then /work/shared.
has_bench() { [ -f "$1/bench/make-corpus.py" ] && [ -f "$1/bench/peer.py" ]; }

find_shared() {
    local c
    if [ -n "${SALTSHIP_SHARED:-}" ]; then
        # Asked for explicitly: a wrong path is an error, not a reason to look elsewhere.
        has_bench "$SALTSHIP_SHARED" || die "SALTSHIP_SHARED=$SALTSHIP_SHARED has no bench/make-corpus.py and bench/peer.py"
        SHARED="$(cd "$SALTSHIP_SHARED" && pwd)"
        return
    fi
    for c in "$REPO/../shared" /work/shared; do
        if has_bench "$c"; then
            SHARED="$(cd "$c" && pwd)"
            return
        fi
    done
    die "shared bench material not found; set SALTSHIP_SHARED=/path/to/shared"
}

# make-corpus.py and peer.py need msgpack. Use the system python if it has it, else a
# venv kept in the bench dir (created once).
find_python() {
    if python3 -c 'import msgpack' 2>/dev/null; then
        PY="$(command -v python3)"
    else
        if ! "$BENCH_DIR/venv/bin/python" -c 'import msgpack' 2>/dev/null; then
            note "creating $BENCH_DIR/venv with msgpack"
            python3 -m venv "$BENCH_DIR/venv"
            "$BENCH_DIR/venv/bin/pip" install -q msgpack
        fi
        PY="$BENCH_DIR/venv/bin/python"
    fi
}

# Peak RSS comes from GNU time's -v report; the shell builtin has no such thing.
need_gnu_time() {
    if ! /usr/bin/time -v true >/dev/null 2>&1; then
        note "installing GNU time (Debian package 'time')"
        apt-get install -y time >/dev/null || die "need /usr/bin/time: apt-get install -y time"
    fi
}

# Corpora are expensive to generate (minutes), so they are kept and reused. Generate into
# a .tmp folder and rename, so an interrupted run never leaves a half corpus to reuse.
ensure_corpus() { # name, make-corpus args...
    local name="$1"; shift
    local dir="$BENCH_DIR/$name"
    if [ ! -d "$dir/jobs" ]; then
        note "generating $dir ($*); this takes a while, once"
        rm -rf "$dir.tmp" "$dir.deleting"
        "$PY" "$SHARED/bench/make-corpus.py" "$dir.tmp" "$@" >&2
        mv "$dir.tmp" "$dir"
    fi
    echo "$dir/jobs"
}

build() {
    note "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    BIN="$REPO/target/release/saltship"
    [ -x "$BIN" ] || die "no $BIN after the build"
}

# SALTSHIP_* settings in the caller's environment (a --since, a --max-rate...) would
# silently change what is measured; drop them, except this script's own two.
clean_env() {
    local v
    for v in $(compgen -e | grep '^SALTSHIP_' || true); do
        case "$v" in SALTSHIP_BENCH_DIR|SALTSHIP_SHARED) ;; *) unset "$v" ;; esac
    done
}

machine() {
    local cpu
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    echo "$(nproc) cores, ${cpu:-unknown CPU}, $(uname -sr)"
}
