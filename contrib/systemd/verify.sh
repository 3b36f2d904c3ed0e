#!/usr/bin/env bash
# Checks the units with systemd-analyze verify, against the binary just built and the man
# pages in man/, without installing anything: copies of the units point at target/.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-$PWD/target/debug/saltship}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/units" "$tmp/man/man1"
cp man/*.1 "$tmp/man/man1/"
for unit in contrib/systemd/saltship-*.{service,timer,path}; do
    sed "s#/usr/local/bin/saltship#$bin#" "$unit" > "$tmp/units/$(basename "$unit")"
done
# verify only warns about settings it ignores (a misspelt value, an unknown key): any word
# from it is a failure here.
if ! out=$(MANPATH="$tmp/man" systemd-analyze verify "$tmp"/units/* 2>&1) || [ -n "$out" ]; then
    printf '%s\n' "$out" >&2
    exit 1
fi
echo "systemd units: ok"
