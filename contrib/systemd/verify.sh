#!/usr/bin/env bash
# Checks the units with systemd-analyze verify, against the binary just built and the man
# pages in man/, without installing anything: copies of the units point at target/. Then
# checks what the package relies on: each service runs as the saltship user, reads the cache
# through a '-' path (a host without a cache yet still starts), and keeps its
# `systemd-analyze security` exposure at 1.5 or lower (issue 30).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-$PWD/target/debug/saltship}
max_exposure=1.5
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/units" "$tmp/man/man1"
cp man/*.1 "$tmp/man/man1/"
for unit in contrib/systemd/saltship-*.{service,timer,path}; do
    sed "s#/usr/bin/saltship#$bin#" "$unit" > "$tmp/units/$(basename "$unit")"
done
# verify only warns about settings it ignores (a misspelt value, an unknown key): any word
# from it is a failure here.
if ! out=$(MANPATH="$tmp/man" systemd-analyze verify "$tmp"/units/* 2>&1) || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    exit 1
fi
fail=0
for unit in contrib/systemd/saltship-*.service; do
    name=$(basename "$unit")
    for line in 'User=saltship' 'ReadOnlyPaths=-/var/cache/salt/master/jobs' \
        'AmbientCapabilities=CAP_DAC_READ_SEARCH' 'CapabilityBoundingSet=CAP_DAC_READ_SEARCH'; do
        grep -qx -- "$line" "$unit" || { echo "$name: no $line" >&2; fail=1; }
    done
    grep -q '^ExecStart=/usr/bin/saltship ' "$unit" || { echo "$name: ExecStart is not /usr/bin/saltship" >&2; fail=1; }
    # --offline needs systemd 250 or later (Debian 12 has 252).
    score=$(systemd-analyze security --offline=true "$unit" 2>&1 \
        | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -z "$score" ] || ! awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s <= m) }'; then
        echo "$name: systemd-analyze security exposure '${score}' is above $max_exposure" >&2
        fail=1
    else
        echo "$name: exposure $score (at most $max_exposure)"
    fi
done
grep -q '^ExecStartPre=/usr/bin/saltship check --offline' contrib/systemd/saltship-watch.service \
    || { echo "saltship-watch.service: no ExecStartPre=saltship check --offline" >&2; fail=1; }
[ "$fail" = 0 ] || exit 1
echo "systemd units: ok"
