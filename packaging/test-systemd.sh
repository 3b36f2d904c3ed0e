#!/usr/bin/env bash
# The package under a real systemd (issue 30): a Debian 12 root booted with systemd-nspawn
# (systemd as its PID 1, its own network: only loopback), saltship installed with apt from a
# local repository, a job cache as Salt's packages leave it (salt:salt, folders 0750,
# return.p 0600), a TCP receiver inside (a line sink that stores what it read, with the time)
# and the real units. Checks: presets; watch ships everything, sandboxed, sees only
# <pki_dir>/minions (the silent minion gauge); a restart right after a job sends nothing
# twice; start with the receiver down returns at once and the backlog ships once it is up;
# an upgrade restarts onto the new binary without re-sending; the sync units on the default
# inotify limits through a busy minute (a job a second), each return shipped within 5 s;
# purge leaves no link; the Salt formula (salt-call --local) installs from the repository,
# configures from pillar, runs the service, changes nothing the second time, upgrades.
#
# As root; needs mmdebstrap, systemd-nspawn, nsenter, cargo-deb, and Debian's and PyPI's
# registries for the root, which is made once and kept (SALTSHIP_SYSTEMD_ROOT, default
# ~/.cache/saltship/systemd-root; a few minutes). Each run boots an overlay over it, so the
# kept root stays pristine. Usage: [NO_BUILD=1] [SALTSHIP_DEB=x.deb] bash packaging/test-systemd.sh
set -Eeuo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cache=${SALTSHIP_SYSTEMD_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/saltship/systemd-root}
# Bumped when the recipe below changes: a kept root of another recipe is made again.
recipe=1
salt_version=3008.5

fails=0
# A command that fails outside a check ends the run (set -e): say where, not silently (-E:
# in the helpers too).
trap 'echo "FAIL line $LINENO: $BASH_COMMAND (exit $?)" >&2' ERR
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; fails=$((fails + 1)); }
say() { echo "--   $*"; }

# --- The kept root ------------------------------------------------------------------------
make_root() {
    local tmp=$cache.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$(dirname "$cache")"
    say "making the Debian 12 root in $cache (once)"
    mmdebstrap --variant=minbase --quiet \
        --include=systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,procps,apt-utils,gcc,libc6-dev,python3-dev \
        bookworm "$tmp"
    mount -t proc proc "$tmp/proc"
    # pip inside the root trusts what this host trusts (a proxy's CA, say), for this step only.
    cp "$tmp/etc/ssl/certs/ca-certificates.crt" "$tmp/tmp/ca.keep"
    cp /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/ca-certificates.crt"
    # Salt from PyPI in a venv, as testdata/regen.sh: the index reachable here lacks the
    # certifi that salt's metadata asks for, so its requirements go in with that floor relaxed.
    if ! chroot "$tmp" env PIP_FIND_LINKS= sh -ec "
        python3 -m venv /opt/salt
        d=\$(mktemp -d); cd \$d
        /opt/salt/bin/pip install -q salt==$salt_version || {
            /opt/salt/bin/pip download -q --no-deps --no-binary=:all: salt==$salt_version -d .
            tar -xzf salt-$salt_version.tar.gz
            sed -e 's/^certifi>=.*/certifi/' salt-$salt_version/requirements/base.txt > r.txt
            cat salt-$salt_version/requirements/zeromq.txt >> r.txt
            /opt/salt/bin/pip install -q -r r.txt
            /opt/salt/bin/pip install -q --no-deps salt==$salt_version
        }
        cd /; rm -rf \$d
        /opt/salt/bin/salt-call --version"; then
        umount -l "$tmp/proc"
        echo "could not make the root" >&2
        exit 1
    fi
    mv "$tmp/tmp/ca.keep" "$tmp/etc/ssl/certs/ca-certificates.crt"
    umount -l "$tmp/proc"
    echo "$recipe" > "$tmp/.saltship-recipe"
    rm -rf "$cache"
    mv "$tmp" "$cache"
}
[ "$(cat "$cache/.saltship-recipe" 2>/dev/null)" = "$recipe" ] || make_root

# --- Two packages: this tree's (or SALTSHIP_DEB), and the same with the revision bumped ------
work=$(mktemp -d /tmp/saltship-systemd.XXXXXX)
if [ -n "${SALTSHIP_DEB:-}" ]; then
    first=$SALTSHIP_DEB
else
    command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
    rm -f target/debian/saltship_*.deb
    # NO_BUILD=1: package target/release/saltship as it is (CI has just built it).
    cargo deb -q ${NO_BUILD:+--no-build} > "$work/deb.log" 2>&1 || { cat "$work/deb.log" >&2; exit 1; }
    first=$(ls target/debian/saltship_*.deb)
fi
v1=$(dpkg-deb -f "$first" Version)
v2=${v1%-*}-$((${v1##*-} + 1))
dpkg-deb -R "$first" "$work/repack"
sed -i "s/^Version: .*/Version: $v2/" "$work/repack/DEBIAN/control"
second=$work/saltship_${v2}_amd64.deb
dpkg-deb -b "$work/repack" "$second" > /dev/null

# --- Boot ---------------------------------------------------------------------------------
root=$work/root nspawn= leader=
cleanup() {
    if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
        # nspawn passes SIGTERM on as systemd's halt; bounded, then killed.
        kill -TERM "$nspawn" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn" 2>/dev/null || true
        wait "$nspawn" 2>/dev/null || true
    fi
    mountpoint -q "$root" && umount -l "$root"
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/upper" "$work/ovl" "$root"
mount -t overlay overlay -o "lowerdir=$cache,upperdir=$work/upper,workdir=$work/ovl" "$root"
mkdir -p "$root/srv/repo" "$root/srv/test"
cp "$first" "$root/srv/repo/"
cp -a testdata/jobs "$root/srv/test/jobs"
cp -a contrib/salt/saltship "$root/srv/test/formula"

# The receiver: every line it read, with the time it read it; a connection is closed after
# its EOF, which is what saltship's tcp sink takes as the acknowledgement.
cat > "$root/srv/test/sink.py" <<'PY'
import socket, sys, time
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        conn, _ = srv.accept()
        with conn:
            rest = b""
            while data := conn.recv(65536):
                *lines, rest = (rest + data).split(b"\n")
                stamp = b"%.3f " % time.time()
                out.write(b"".join(stamp + line + b"\n" for line in lines))
PY
# A master's writes, as salt's local_cache makes them (run as salt, umask 027): the job folder
# jobs/<h[:2]>/<h[2:]> (h: sha256 of the jid), jid, .load.p, .minions.p, then each minion's
# return.p through a temp file (mode 0600) renamed into place; "jid minion time" per return.
cat > "$root/srv/test/land.py" <<'PY'
import hashlib, os, shutil, sys, tempfile, time
jobs, source, first, count, every, log = sys.argv[1:]
with open(log, "a") as out:
    for n in range(int(count)):
        jid = str(int(first) + n)
        h = hashlib.sha256(jid.encode()).hexdigest()
        d = os.path.join(jobs, h[:2], h[2:])
        os.makedirs(d)
        with open(os.path.join(d, "jid"), "w") as f:
            f.write(jid)
        for name in (".load.p", ".minions.p"):
            if os.path.exists(os.path.join(source, name)):
                shutil.copyfile(os.path.join(source, name), os.path.join(d, name))
        for minion in sorted(os.listdir(source)):
            if not os.path.isdir(os.path.join(source, minion)):
                continue
            os.makedirs(os.path.join(d, minion))
            with tempfile.NamedTemporaryFile(dir=os.path.join(d, minion), delete=False) as t:
                t.write(open(os.path.join(source, minion, "return.p"), "rb").read())
            os.rename(t.name, os.path.join(d, minion, "return.p"))
            out.write(f"{jid} {minion} {time.time():.3f}\n")
            out.flush()
        time.sleep(float(every))
PY

systemd-nspawn --quiet --boot --directory="$root" --keep-unit --register=no \
    --private-network --machine=saltship-test > "$work/nspawn.log" 2>&1 &
nspawn=$!
# The container's PID 1: the process below nspawn whose own pid namespace calls it 1.
for _ in $(seq 100); do
    for pid in $(pgrep -P "$nspawn") $(pgrep -P "$(pgrep -P "$nspawn" | head -1)" 2>/dev/null); do
        # Once it is systemd: before its exec it is still nspawn's child, not yet in the root.
        if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = systemd ] \
            && awk '/^NSpid:/ { exit !($NF == 1) }' "/proc/$pid/status" 2>/dev/null; then
            leader=$pid
            break 2
        fi
    done
    sleep 0.1
done
[ -n "$leader" ] || { cat "$work/nspawn.log" >&2; echo "the container did not start" >&2; exit 1; }
in_c() { nsenter --target "$leader" --all -- /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 "$@"; }
for _ in $(seq 120); do
    state=$(in_c timeout 30 systemctl is-system-running --wait 2>/dev/null || true)
    case $state in running | degraded) break ;; esac
    sleep 0.5
done
case $state in
    running | degraded) ok "booted: systemd $(in_c systemctl --version | head -1 | cut -d' ' -f2) as PID 1, $state" ;;
    *) tail -20 "$work/nspawn.log" >&2; echo "the container did not boot: '$state'" >&2; exit 1 ;;
esac

# --- Helpers inside -----------------------------------------------------------------------
port=6000
sink=/var/log/sink.log
sink_up() { in_c systemd-run --quiet --unit=test-sink python3 /srv/test/sink.py $port $sink; }
sink_down() { in_c systemctl stop test-sink; }
# Lines the receiver stored, and how many distinct event ids among them.
received() { in_c sh -c "cat $sink 2>/dev/null" | wc -l; }
distinct() { in_c sh -c "cut -d' ' -f2- $sink 2>/dev/null" | python3 -c '
import json, sys
print(len({json.loads(l)["event_id"] for l in sys.stdin if l.strip()}))'; }
wait_received() { # N SECONDS: true once the receiver has N lines
    local deadline=$((SECONDS + $2))
    while [ "$(received)" -lt "$1" ]; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}
jobs=/var/cache/salt/master/jobs
source_job=$(python3 - "$repo" <<'PY'
import json, os, sys
repo = sys.argv[1]
jid = next(c["jid"] for c in json.load(open(f"{repo}/testdata/cases.json")) if c["case"] == "failures")
for prefix in os.listdir(f"{repo}/testdata/jobs"):
    for job in os.listdir(f"{repo}/testdata/jobs/{prefix}"):
        if open(f"{repo}/testdata/jobs/{prefix}/{job}/jid").read() == jid:
            print(f"/srv/test/jobs/{prefix}/{job}")
PY
)
per_job=$(./target/release/saltship backfill --dry-run --cache-dir "testdata/jobs" --minion '*' 2>/dev/null \
    | python3 -c "
import json, sys
jid = open('$root$source_job/jid').read()
print(sum(json.loads(l)['jid'] == jid for l in sys.stdin))")
next_jid=20991201000000000000
land() { # COUNT EVERY: COUNT jobs of the source job, EVERY seconds apart, as salt
    in_c setpriv --reuid salt --regid salt --init-groups sh -c \
        "umask 027; exec python3 /srv/test/land.py $jobs $source_job $next_jid $1 $2 /var/log/landed.log"
    next_jid=$((next_jid + $1))
}
main_pid() { in_c systemctl show -p MainPID --value saltship-watch.service; }

# --- Install from a local repository ------------------------------------------------------
in_c sh -c 'cd /srv/repo && apt-ftparchive packages . > Packages'
# The container has no network: the local repository is its only source (the root holds
# every dependency already).
echo 'deb [trusted=yes] file:/srv/repo ./' > "$root/etc/apt/sources.list"
in_c apt-get update -qq -o APT::Update::Error-Mode=any > "$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
if in_c env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq saltship > "$work/apt.log" 2>&1; then
    ok "apt-get install saltship ($v1) from a local repository"
else
    cat "$work/apt.log" >&2; exit 1
fi
# Presets of these units only: preset-all would also enable the root's own units (among
# them systemd-networkd-wait-online, which holds network-online.target for two minutes).
in_c systemctl preset saltship-watch.service saltship-sync.service saltship-sync.timer saltship-sync.path >/dev/null 2>&1 || true
enabled=$(in_c systemctl is-enabled saltship-watch.service saltship-sync.service saltship-sync.timer saltship-sync.path 2>/dev/null | tr '\n' ' ')
[ "$enabled" = "disabled static disabled disabled " ] || [ "$enabled" = "disabled disabled disabled disabled " ] \
    && ok "systemctl preset enables no saltship unit ($enabled)" \
    || fail "after systemctl preset: $enabled"

# A master's cache and keys as Salt's packages leave them.
in_c sh -c 'groupadd --system salt && useradd --system -g salt salt && install -o salt -g salt -m 0644 /dev/null /var/log/landed.log'
mkdir -p "$root/var/cache/salt/master"
cp -a testdata/jobs "$root$jobs"
in_c chown -R salt:salt /var/cache/salt/master
in_c find /var/cache/salt/master -type d -exec chmod 0750 {} +
in_c find /var/cache/salt/master -type f -exec chmod 0600 {} +
mkdir -p "$root/etc/salt/pki/master/minions"
for m in $(ls -d testdata/jobs/*/*/*/ | xargs -n1 basename | sort -u) silent-one; do
    echo "-----BEGIN PUBLIC KEY-----" > "$root/etc/salt/pki/master/minions/$m"
done
echo "-----BEGIN RSA PRIVATE KEY-----" > "$root/etc/salt/pki/master/master.pem"
in_c sh -c 'chown -R salt:salt /etc/salt/pki; chmod 0700 /etc/salt/pki/master; chmod 0400 /etc/salt/pki/master/master.pem'
want=$(./target/release/saltship backfill --dry-run --cache-dir testdata/jobs 2>/dev/null | wc -l)
echo "target = [\"127.0.0.1:$port\"]" >> "$root/etc/saltship/saltship.toml"

# --- watch ----------------------------------------------------------------------------------
sink_up
t0=$SECONDS
in_c timeout 60 systemctl enable --now saltship-watch.service > "$work/enable.log" 2>&1 \
    || { fail "enable --now saltship-watch: $(tail -3 "$work/enable.log")"; }
wait_received "$want" 30 && ok "watch ships everything: $(received) of $want events ($((SECONDS - t0)) s)" \
    || fail "watch: $(received) of $want events"
for unit in saltship-watch.service saltship-sync.service; do
    score=$(in_c systemd-analyze security "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 1.5) }' && ok "$unit: systemd-analyze security $score" \
        || fail "$unit: exposure '$score', above 1.5"
done
# What the daemon sees of the master's keys: the accepted minions only.
seen=$(in_c nsenter --target "$(main_pid)" --mount sh -c 'ls -A /etc/salt/pki; ls -A /etc/salt/pki/master; ls /etc/salt/pki/master/minions | wc -l' | tr '\n' ' ')
keys=$(ls "$root/etc/salt/pki/master/minions" | wc -l)
[ "$seen" = "master minions $keys " ] && ok "under the unit, /etc/salt/pki holds master/minions only ($keys keys; master.pem unseen)" \
    || fail "under the unit, /etc/salt/pki shows: $seen"
prom=/var/lib/saltship/saltship.prom
for _ in $(seq 150); do
    in_c grep -q 'saltship_minion_silent{' "$prom" 2>/dev/null && break
    sleep 0.2
done
silent=$(in_c grep '^saltship_minion_silent{' "$prom" 2>/dev/null | tr '\n' ' ')
if grep -q 'minion="silent-one"} 1' <<<"$silent" && ! grep -q 'minion="web1"' <<<"$silent"; then
    ok "the silent minion gauge under the unit: $silent"
else
    fail "silent minion gauge: '$silent'; $(in_c journalctl -u saltship-watch -o cat | grep -i pki | head -2)"
fi

# --- restart right after a job (item 4) ----------------------------------------------------
total=$want
for try in 1 2 3; do
    sleep 1.5
    land 1 0
    total=$((total + per_job))
    wait_received "$total" 10 || fail "restart $try: the job did not ship"
    in_c systemctl restart saltship-watch.service
done
sleep 3
got=$(received) ids=$(distinct)
[ "$got" = "$total" ] && [ "$ids" = "$total" ] && ok "3 restarts right after a job: $got events, none twice" \
    || fail "restarts right after a job: $got lines for $ids events (want $total): $((got - ids)) sent twice"

# --- receiver down: start returns at once, the backlog ships once it is up (item 2) -----------
in_c systemctl stop saltship-watch.service
sink_down
land 5 0
total=$((total + 5 * per_job))
t0=$(date +%s%N)
in_c timeout 30 systemctl start saltship-watch.service && status=0 || status=$?
took=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
active=$(in_c systemctl is-active saltship-watch.service || true)
[ "$status" = 0 ] && [ "$active" = active ] && ok "systemctl start with the receiver down and a backlog: returned in ${took} s, $active" \
    || fail "systemctl start with the receiver down: exit $status (124: still waiting after 30 s), $active"
# kill -9 while the catch-up waits for the receiver: Restart=on-failure starts it again in 5 s.
dead=$(main_pid)
in_c kill -KILL "$dead"
for _ in $(seq 100); do
    again=$(main_pid)
    [ "$again" != 0 ] && [ "$again" != "$dead" ] && [ "$(in_c systemctl is-active saltship-watch.service || true)" = active ] && break
    sleep 0.2
done
[ "$again" != 0 ] && [ "$again" != "$dead" ] \
    && ok "kill -9 of watch mid catch-up (receiver down): Restart= started it again (pid $dead -> $again)" \
    || fail "after kill -9: watch is $(in_c systemctl is-active saltship-watch.service || true), pid $again"
sleep 2
sink_up
wait_received "$total" 60 && ok "the backlog ships once the receiver is up: $(received) events" \
    || fail "after the receiver came back: $(received) of $total"
[ "$(distinct)" = "$(received)" ] || fail "duplicates after the outage: $(received) lines, $(distinct) events"

# --- upgrade (item 3) -----------------------------------------------------------------------
sleep 1.5
land 1 0
total=$((total + per_job))
wait_received "$total" 10 || true
old=$(main_pid)
cp "$second" "$root/srv/repo/"
in_c sh -c 'cd /srv/repo && apt-ftparchive packages . > Packages'
in_c apt-get update -qq > /dev/null 2>&1
in_c env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq saltship > "$work/apt.log" 2>&1 || { fail "upgrade"; cat "$work/apt.log" >&2; }
sleep 1
new=$(main_pid)
exe=$(in_c readlink "/proc/$new/exe")
version=$(in_c dpkg-query -W -f='${Version}' saltship)
[ "$version" = "$v2" ] && [ "$new" != "$old" ] && [ "$new" != 0 ] && [ "$exe" = /usr/bin/saltship ] \
    && ok "apt-get install $v2 restarted watch onto the new binary (pid $old -> $new, exe $exe)" \
    || fail "after the upgrade to $version: pid $old -> $new, exe '$exe'"
land 1 0
total=$((total + per_job))
wait_received "$total" 10 && [ "$(distinct)" = "$total" ] && [ "$(received)" = "$total" ] \
    && ok "after the upgrade: a new job ships, nothing was sent twice ($total events)" \
    || fail "after the upgrade: $(received) lines, $(distinct) events, want $total"

# --- the sync units on the default limits, a busy minute (item 1) ---------------------------------
in_c systemctl disable --now saltship-watch.service > /dev/null 2>&1
limit=$(cat /proc/sys/fs/inotify/max_user_instances)
in_c systemctl enable --now saltship-sync.timer saltship-sync.path > /dev/null 2>&1 || fail "enable --now the sync units"
sleep 2
in_c truncate -s0 /var/log/landed.log
before=$(received)
land 60 1
sleep 6
states=$(in_c systemctl is-active saltship-sync.path saltship-sync.timer | tr '\n' ' ')
[ "$states" = "active active " ] && ok "fs.inotify.max_user_instances $limit: the path and timer units stay active through 60 jobs in a minute" \
    || fail "sync units after the busy minute: $states; $(in_c journalctl -u saltship-sync.path -o cat | tail -2)"
in_c cat /var/log/landed.log > "$work/landed"
in_c sh -c "tail -n +$((before + 1)) $sink" > "$work/busy"
lat=$(python3 - "$work/landed" "$work/busy" <<'PY'
import json, sys
landed = {}
for line in open(sys.argv[1]):
    jid, minion, t = line.split()
    landed[(jid, minion)] = float(t)
first = {}
for line in open(sys.argv[2]):
    t, event = line.split(" ", 1)
    e = json.loads(event)
    key = (e["jid"], e["minion_id"])
    first.setdefault(key, float(t))
late = [first[k] - landed[k] if k in first else float("inf") for k in landed]
print(f"{len(landed)} {sum(k in first for k in landed)} {max(late):.2f}")
PY
)
read -r returns shipped worst <<<"$lat"
awk -v w="$worst" 'BEGIN { exit !(w <= 5) }' && [ "$returns" = "$shipped" ] \
    && ok "busy minute under the sync units: $shipped of $returns returns shipped, the latest $worst s after landing" \
    || fail "busy minute: $shipped of $returns returns shipped, worst $worst s (want <= 5)"
{ in_c journalctl -u saltship-sync.path -u saltship-sync.service -o cat 2>/dev/null | grep -Ei 'fail|too many|limit' | head -3 | sed 's/^/     journal: /'; } || true
# The first job after a quiet spell, in a two-hex folder that exists (the path unit does not
# see it: inotify is not recursive): once sync --follow has exited, the timer must start the
# next within the issue's 5 s.
# The jid is picked first, so the job lands as soon as the sync is seen gone: the worst case.
while python3 -c "import hashlib, os, sys
sys.exit(not os.path.isdir('$root$jobs/' + hashlib.sha256(b'$next_jid').hexdigest()[:2]))"; [ $? != 0 ]; do
    next_jid=$((next_jid + 1))
done
before=$(received)
for _ in $(seq 750); do
    [ "$(in_c systemctl is-active saltship-sync.service || true)" = inactive ] && break
    sleep 0.2
done
t0=$(date +%s%N)
land 1 0
wait_received $((before + per_job)) 30 || true
quiet=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
awk -v w="$quiet" 'BEGIN { exit !(w <= 5) }' && [ "$(received)" = $((before + per_job)) ] \
    && ok "after a quiet spell (sync exited), a job in an existing two-hex folder shipped in $quiet s" \
    || fail "after a quiet spell: $(( $(received) - before )) of $per_job events in $quiet s (want <= 5 s)"
# watch and the sync units both enabled: sync never stands by (it exits at once while watch
# holds the lock) and nothing ships twice. Watch first: started while a sync follows, its
# start check fails (the lock is held on this host) and Restart= retries it every 5 s.
in_c systemctl disable --now saltship-sync.timer saltship-sync.path > /dev/null 2>&1
in_c systemctl stop saltship-sync.service
in_c systemctl enable --now saltship-watch.service > /dev/null 2>&1 || fail "enable --now watch with the sync units stopped"
for _ in $(seq 100); do
    [ "$(in_c systemctl is-active saltship-watch.service || true)" = active ] && break
    sleep 0.2
done
t0=$(date +%s%N)
in_c timeout 20 systemctl start saltship-sync.service && status=0 || status=$?
took=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
[ "$status" = 0 ] && awk -v w="$took" 'BEGIN { exit !(w <= 5) }' \
    && ok "sync started while watch runs: exits 0 in $took s (it does not stand by)" \
    || fail "sync while watch runs: exit $status after $took s (124: still running at 20 s)"
in_c systemctl enable --now saltship-sync.timer saltship-sync.path > /dev/null 2>&1
before=$(received)
land 3 1
total=$((before + 3 * per_job))
wait_received "$total" 15 || true
starts=$(in_c journalctl -u saltship-sync.service -o cat --since=-20s 2>/dev/null | grep -c '^Finished' || true)
[ "$(received)" = "$total" ] && [ "$(in_c systemctl is-active saltship-watch.service)" = active ] \
    && ok "watch with the sync units enabled too: 3 jobs shipped once by watch, sync started and exited $starts time(s) in 20 s" \
    || fail "watch with the sync units too: $(received) of $total events, watch $(in_c systemctl is-active saltship-watch.service || true)"
[ "$(distinct)" = "$(received)" ] || fail "both modes: $(received) lines, $(distinct) events"
in_c systemctl disable --now saltship-watch.service saltship-sync.timer saltship-sync.path > /dev/null 2>&1
in_c systemctl stop saltship-sync.service
in_c systemctl disable --now saltship-sync.timer saltship-sync.path > /dev/null 2>&1
in_c systemctl stop saltship-sync.service

# --- purge (item 5) -------------------------------------------------------------------------
in_c systemctl enable saltship-watch.service saltship-sync.timer saltship-sync.path > /dev/null 2>&1
in_c env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq saltship > "$work/apt.log" 2>&1 || fail "purge"
links=$(find "$root/etc/systemd/system" -name 'saltship*' | sed "s|^$root||" | tr '\n' ' ')
[ -z "$links" ] && ok "purge of units enabled by systemctl leaves no link in /etc/systemd/system" \
    || fail "purge left: $links"
in_c env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "saltship=$v1" > /dev/null 2>&1
enabled=$(in_c systemctl is-enabled saltship-watch.service 2>/dev/null || true)
[ "$enabled" = disabled ] && ok "a reinstall after purge comes back disabled" || fail "after reinstall: watch is $enabled"
in_c env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq saltship > /dev/null 2>&1
grep -n 'systemctl' packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm | grep -v '^\S*:\s*#' | grep -v daemon-reload \
    && fail "a maintainer script calls systemctl for more than daemon-reload" \
    || ok "the maintainer scripts use deb-systemd-helper and deb-systemd-invoke (systemctl only for daemon-reload)"

# --- the Salt formula (item 6) ---------------------------------------------------------------
mkdir -p "$root/srv/salt" "$root/srv/pillar" "$root/etc/salt/minion.d"
cp -a contrib/salt/saltship "$root/srv/salt/"
cat > "$root/etc/salt/minion.d/test.conf" <<'CONF'
id: saltship-master
file_client: local
file_roots: {base: [/srv/salt]}
pillar_roots: {base: [/srv/pillar]}
CONF
printf "base:\n  '*':\n    - saltship\n" > "$root/srv/pillar/top.sls"
pillar() { # VERSION
    cat > "$root/srv/pillar/saltship.sls" <<YAML
saltship:
  pkg:
    version: '$1'
  service: watch
  config:
    target:
      - 127.0.0.1:$port
    keep-jobs: 24h
YAML
}
apply() { # NAME: state.apply saltship; changed states listed in $work/NAME.changes
    in_c timeout 300 /opt/salt/bin/salt-call --local --retcode-passthrough --out=json state.apply saltship \
        > "$work/$1.json" 2> "$work/$1.err" && status=0 || status=$?
    python3 - "$work/$1.json" > "$work/$1.changes" <<'PY' || status=9
import json, sys
r = json.load(open(sys.argv[1]))["local"]
bad = [k for k, v in r.items() if not v["result"]]
assert not bad, bad
print(" ".join(sorted(k.split("_|-")[1] for k, v in r.items() if v["changes"])))
PY
    return $status
}
pillar "$v1"
if apply first; then
    ok "formula, first apply (pkg $v1 from the repository): changed $(cat "$work/first.changes")"
else
    fail "formula, first apply: exit $status"; tail -20 "$work/first.err" "$work/first.json" >&2
fi
grep -q "127.0.0.1:$port" "$root/etc/saltship/saltship.toml" && ok "config from pillar: $(grep target "$root/etc/saltship/saltship.toml")" \
    || fail "the config does not hold the pillar's target"
[ "$(in_c systemctl is-active saltship-watch.service)" = active ] && [ "$(in_c systemctl is-enabled saltship-watch.service)" = enabled ] \
    && ok "formula: saltship-watch enabled and running" || fail "formula: watch is $(in_c systemctl is-active saltship-watch.service)"
if apply again && [ -z "$(cat "$work/again.changes")" ]; then
    ok "formula, second apply: no changes"
else
    fail "formula, second apply changed: $(cat "$work/again.changes")"
fi
old=$(main_pid)
pillar latest
if apply upgrade; then
    new=$(main_pid)
    version=$(in_c dpkg-query -W -f='${Version}' saltship)
    exe=$(in_c readlink "/proc/$new/exe")
    [ "$version" = "$v2" ] && [ "$new" != "$old" ] && [ "$exe" = /usr/bin/saltship ] \
        && ok "formula, version: latest: upgraded to $version, watch restarted (pid $old -> $new, exe $exe); changed $(cat "$work/upgrade.changes")" \
        || fail "formula upgrade: $version, pid $old -> $new, exe '$exe'"
else
    fail "formula, upgrade apply: exit $status"; tail -20 "$work/upgrade.err" >&2
fi

[ "$fails" = 0 ] || { echo "systemd test: $fails failure(s)" >&2; exit 1; }
echo "systemd test: ok"
