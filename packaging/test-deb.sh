#!/usr/bin/env bash
# Installs target/debian/saltship_*.deb into a fresh Debian 12 root and checks what the
# package promises (docs/install.md). As root; needs mmdebstrap and the Debian mirror of
# /etc/apt/sources.list*. Usage: bash packaging/test-deb.sh [a pristine minbase root to copy]
# (without one it runs `mmdebstrap --variant=minbase bookworm`, a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(ls -t target/debian/saltship_*.deb | head -1)
work=$(mktemp -d /tmp/saltship-deb-test.XXXXXX)
root=$work/root
watch= receiver=
cleanup() {
    for pid in $watch $receiver; do kill "$pid" 2>/dev/null || true; done
    for m in "$root/proc" "$root/dev"; do mountpoint -q "$m" && umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${1:-}" ]; then
    cp -a "$1" "$root"
else
    mmdebstrap --variant=minbase --quiet bookworm "$root"
fi
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
fails=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; fails=$((fails + 1)); }

in_root apt-get update -qq
if in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./tmp/$(basename "$deb")" > "$work/install.log" 2>&1; then
    ok "apt-get install ./$(basename "$deb") (dependencies: $(dpkg-deb -f "$deb" Depends))"
else
    fail "apt-get install"; cat "$work/install.log" >&2; exit 1
fi
user=$(in_root getent passwd saltship || true)
[ -n "$user" ] && ok "user: $user" || fail "no saltship user"
owner=$(in_root stat -c '%U:%G %a' /var/lib/saltship 2>/dev/null || true)
[ "$owner" = "saltship:saltship 755" ] && ok "/var/lib/saltship: $owner" || fail "/var/lib/saltship: '$owner'"
conffiles=$(in_root dpkg-query -W -f='${Conffiles}' saltship)
for f in /etc/saltship/saltship.toml /etc/default/saltship; do
    grep -q " $f " <<<"$conffiles" && ok "conffile $f" || fail "$f is not a conffile"
done
mode=$(in_root stat -c '%a' /etc/default/saltship)
[ "$mode" = 600 ] && ok "/etc/default/saltship mode 600" || fail "/etc/default/saltship mode $mode"
if grep -qv '^\s*\(#\|$\)' "$root/etc/saltship/saltship.toml"; then
    fail "saltship.toml has a line that is not a comment"
else
    ok "saltship.toml: every line a comment ($(grep -c '^#[a-z]' "$root/etc/saltship/saltship.toml") commented keys)"
fi
for unit in saltship-watch.service saltship-sync.service saltship-sync.timer saltship-sync.path; do
    [ -f "$root/lib/systemd/system/$unit" ] || fail "no /lib/systemd/system/$unit"
done
grep -q '^ExecStart=/usr/bin/saltship watch' "$root/lib/systemd/system/saltship-watch.service" \
    && ok "units in /lib/systemd/system, ExecStart=/usr/bin/saltship" || fail "ExecStart"
if find "$root/etc/systemd/system" -name 'saltship*' 2>/dev/null | grep -q .; then
    fail "a unit is enabled: $(find "$root/etc/systemd/system" -name 'saltship*')"
else
    ok "no unit enabled"
fi
pages=$(in_root sh -c 'ls /usr/share/man/man1/saltship*.1.gz' | wc -l)
want_pages=$(ls man/*.1 | wc -l)
[ "$pages" = "$want_pages" ] && ok "$pages man pages, gzipped (every man/*.1)" \
    || fail "$pages gzipped man pages, want $want_pages (man/*.1)"

# A job cache as Salt's packages leave it: salt:salt, folders 0750, return.p 0600.
in_root sh -c 'getent group salt >/dev/null || groupadd --system salt; getent passwd salt >/dev/null || useradd --system -g salt salt'
mkdir -p "$root/var/cache/salt/master"
cp -a testdata/jobs "$root/var/cache/salt/master/jobs"
in_root chown -R salt:salt /var/cache/salt/master
in_root find /var/cache/salt/master -type d -exec chmod 0750 {} +
in_root find /var/cache/salt/master -name return.p -exec chmod 0600 {} +
want=$(./target/release/saltship backfill --dry-run --cache-dir testdata/jobs 2>/dev/null | wc -l)
got=$(in_root /usr/bin/saltship backfill --dry-run 2>"$work/root.err" | wc -l)
[ "$got" = "$want" ] && [ "$got" -gt 0 ] && ok "as root, the installed binary reads /var/cache/salt/master/jobs: $got events ($want from testdata/jobs)" \
    || { fail "as root: $got events, want $want"; cat "$work/root.err" >&2; }
# As the units run it: the saltship user with CAP_DAC_READ_SEARCH only.
as_unit=(setpriv --reuid saltship --regid saltship --init-groups --inh-caps +dac_read_search --ambient-caps +dac_read_search)
got=$(in_root "${as_unit[@]}" /usr/bin/saltship backfill --dry-run 2>"$work/unit.err" | wc -l)
[ "$got" = "$want" ] && ok "as saltship with CAP_DAC_READ_SEARCH: $got events" \
    || { fail "as saltship with CAP_DAC_READ_SEARCH: $got events, want $want"; cat "$work/unit.err" >&2; }
# Without the capability the user reads nothing: the capability is what grants access.
in_root setpriv --reuid saltship --regid saltship --init-groups /usr/bin/saltship backfill --dry-run \
    > "$work/nocap.out" 2> "$work/nocap.err" && status=0 || status=$?
[ "$status" != 0 ] && ok "as saltship without the capability: refused (exit $status: $(head -1 "$work/nocap.err"))" \
    || fail "as saltship without the capability: exit 0, $(wc -l < "$work/nocap.out") events"
# A key set in the installed config applies (only the failures), and a flag overrides it.
sed -i 's/^#only-failures = false$/only-failures = true/' "$root/etc/saltship/saltship.toml"
failures=$(./target/release/saltship backfill --dry-run --only-failures --cache-dir testdata/jobs 2>/dev/null | wc -l)
got=$(in_root /usr/bin/saltship backfill --dry-run 2>/dev/null | wc -l)
[ "$got" = "$failures" ] && [ "$got" -lt "$want" ] && ok "only-failures = true in /etc/saltship/saltship.toml: $got events" \
    || fail "only-failures = true in the config: $got events, want $failures"
got=$(in_root env SALTSHIP_ONLY_FAILURES=false /usr/bin/saltship backfill --dry-run 2>/dev/null | wc -l)
[ "$got" = "$want" ] && ok "SALTSHIP_ONLY_FAILURES=false overrides it: $got events" \
    || fail "SALTSHIP_ONLY_FAILURES=false: $got events, want $want"
in_root /usr/bin/saltship config 2>/dev/null | grep -E '^only-failures' | sed 's/^/     saltship config: /'
# The watch unit's start check (ExecStartPre), with a target set as an operator would.
in_root env SALTSHIP_TARGET=127.0.0.1:6514 "${as_unit[@]}" /usr/bin/saltship check --offline \
    > "$work/check.out" 2>&1 && status=0 || status=$?
[ "$status" = 0 ] && ok "saltship check --offline as the unit runs it, a target set:" \
    || fail "saltship check --offline as the unit runs it (exit $status):"
sed 's/^/       /' "$work/check.out"

# The README's "A first service", but for systemd (not PID 1 here): the target set in the
# installed config, `saltship check` as root, then the unit's ExecStartPre and ExecStart as its
# user with its capability, until every event reached a TCP receiver on 127.0.0.1.
sed -i 's/^only-failures = true$/#only-failures = false/' "$root/etc/saltship/saltship.toml"
python3 - "$work/port" "$work/received" <<'PY' &
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(60)
open(sys.argv[1] + ".tmp", "w").write(str(srv.getsockname()[1]))
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
with open(sys.argv[2], "ab", buffering=0) as out:
    try:
        while True:  # one connection at a time, read to its end, then closed: an acknowledgement
            conn, _ = srv.accept()
            conn.settimeout(30)
            while data := conn.recv(65536):
                out.write(data)
            conn.close()
    except OSError:
        pass
PY
receiver=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
echo "target = [\"127.0.0.1:$(cat "$work/port")\"]" >> "$root/etc/saltship/saltship.toml"
if in_root /usr/bin/saltship check > "$work/first.out" 2>&1; then
    ok "README first service: saltship check as root passes with target set in saltship.toml"
else
    fail "README first service: saltship check"; cat "$work/first.out" >&2
fi
prom=/var/lib/saltship/saltship.prom
if in_root "${as_unit[@]}" /usr/bin/saltship check --offline --metrics-file $prom > "$work/pre.out" 2>&1; then
    ok "the unit's ExecStartPre passes as saltship"
else
    fail "the unit's ExecStartPre"; cat "$work/pre.out" >&2
fi
# chroot, env and setpriv each exec the next: $! is saltship itself, for SIGTERM.
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    "${as_unit[@]}" /usr/bin/saltship watch --metrics-file $prom 2> "$work/watch.err" &
watch=$!
for _ in $(seq 300); do
    [ "$(wc -l < "$work/received" 2>/dev/null || echo 0)" -ge "$want" ] && break
    sleep 0.1
done
kill -TERM "$watch"; wait "$watch" && status=0 || status=$?
watch=
kill "$receiver" 2>/dev/null; wait "$receiver" 2>/dev/null || true
receiver=
got=$(wc -l < "$work/received" 2>/dev/null || echo 0)
[ "$got" = "$want" ] && [ "$status" = 0 ] && ok "the unit's ExecStart as saltship: $got events received, exit $status on SIGTERM; $(grep -o 'saltship: [0-9]* jobs.*' "$work/watch.err" | tail -1)" \
    || { fail "the unit's ExecStart: $got events received (want $want), exit $status"; cat "$work/watch.err" >&2; }
[ -s "$root$prom" ] && ok "metrics written to $prom" || fail "no $prom"

in_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq saltship > "$work/purge.log" 2>&1 || fail "apt-get purge"
if [ -e "$root/var/lib/saltship" ] || [ -e "$root/etc/saltship/saltship.toml" ] || [ -e "$root/usr/bin/saltship" ]; then
    fail "purge left files"
else
    ok "apt-get purge removes the binary, the conffiles and /var/lib/saltship"
fi
[ "$fails" = 0 ] || { echo "deb test: $fails failure(s)" >&2; exit 1; }
echo "deb test: ok"
