#!/usr/bin/env bash
# Compares the files of the .deb and the .rpm (built by `cargo deb` and packaging/rpm.sh):
# the same paths, but for the units' folder (/lib/systemd/system in the .deb,
# /usr/lib/systemd/system in the .rpm) and the Debian changelog; folders are not compared.
# Prints the list and exits 1 on a difference. Usage: bash packaging/same-files.sh
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -t target/debian/saltship_*.deb | head -1)
rpm=$(ls -t target/generate-rpm/saltship-*.rpm | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./|/|; s|^/lib/systemd/|/usr/lib/systemd/|' \
    | grep -v '^/usr/share/doc/saltship/changelog.Debian.gz$' | sort > "$tmp/deb"
rpm -qlp "$rpm" 2>/dev/null | sort > "$tmp/rpm"
if diff -u --label "$(basename "$deb")" --label "$(basename "$rpm")" "$tmp/deb" "$tmp/rpm"; then
    echo "same $(wc -l < "$tmp/deb") files in $(basename "$deb") and $(basename "$rpm"):"
    sed 's/^/  /' "$tmp/deb"
else
    echo "the packages differ (above)" >&2
    exit 1
fi
