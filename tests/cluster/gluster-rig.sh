#!/usr/bin/env bash
# A real GlusterFS volume mounted twice on this host, as two masters of a Salt master cluster
# mount their shared cachedir (docs/operations.md "Master cluster"). Root only.
#
#   gluster-rig.sh up WORKDIR     volume `ssvol`, mounted at WORKDIR/a and WORKDIR/b
#   gluster-rig.sh down WORKDIR   unmounts, stops what `up` started (by its pids), removes the netns
#
# glusterd refuses a brick on a loopback address, so the rig makes a network namespace with a
# veth pair whose two ends both live in it (10.231.0.1 and .2): glusterd, the brick and both
# FUSE clients run in it (nsenter --net), while the mounts stay visible to the whole host.
# glusterd gets its own working directory; the mounts turn off the kernel's attribute, entry
# and negative caches, as a cluster's masters must to see each other's writes at once.
set -euo pipefail
cmd=${1:?up or down}
W=$(realpath -m "${2:?work dir}")
ns_of() { cat "$W/ns" 2>/dev/null; }

down() {
  for m in a b; do
    if mountpoint -q "$W/$m"; then umount "$W/$m" || umount -l "$W/$m"; fi
  done
  local ns; ns=$(ns_of) || true
  if [ -n "${ns:-}" ]; then
    # Every process of the rig lives in its netns: glusterd, the brick, the two clients.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  fi
  rm -f "$W/ns"
}

up() {
  command -v glusterd >/dev/null || { echo "SKIPPED: glusterd not installed" >&2; exit 77; }
  [ -e /dev/fuse ] && [ "$(id -u)" = 0 ] || { echo "SKIPPED: needs root and /dev/fuse" >&2; exit 77; }
  # One rig at a time: glusterd's CLI socket and run directory are the host's.
  if pgrep -x glusterd >/dev/null; then echo "SKIPPED: a glusterd is already running" >&2; exit 77; fi
  mkdir -p "$W/wd" "$W/brick" "$W/a" "$W/b" "$W/log"
  local ns="ssgl$$"
  echo "$ns" >"$W/ns"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add gla type veth peer name glb
  ip -n "$ns" addr add 10.231.0.1/24 dev gla
  ip -n "$ns" addr add 10.231.0.2/24 dev glb
  ip -n "$ns" link set gla up
  ip -n "$ns" link set glb up
  sed "s|/var/lib/glusterd|$W/wd|" /etc/glusterfs/glusterd.vol >"$W/glusterd.vol"
  local in=(nsenter "--net=/run/netns/$ns")
  "${in[@]}" glusterd -f "$W/glusterd.vol" -p "$W/glusterd.pid" -l "$W/log/glusterd.log"
  local g=("${in[@]}" gluster --mode=script)
  for _ in $(seq 100); do "${g[@]}" volume info >/dev/null 2>&1 && break; sleep 0.1; done
  "${g[@]}" volume create ssvol "10.231.0.1:$W/brick/b" force >/dev/null
  # Gluster's own "metadata-cache" profile (/var/lib/glusterd/groups/metadata-cache): each
  # client caches attributes and the brick tells the others when one changes (upcall), so a
  # stat costs no round trip and a write through one mount is seen at once through the other;
  # without it a client trusts its attributes for 1 s (md-cache-timeout), the floor of any latency.
  for kv in "features.cache-invalidation on" "features.cache-invalidation-timeout 600" \
    "performance.stat-prefetch on" "performance.cache-invalidation on" \
    "performance.md-cache-timeout 600" "network.inode-lru-limit 200000"; do
    # shellcheck disable=SC2086 # key and value, two words
    "${g[@]}" volume set ssvol $kv >/dev/null
  done
  "${g[@]}" volume start ssvol >/dev/null
  for m in a b; do
    "${in[@]}" glusterfs --attribute-timeout=0 --entry-timeout=0 --negative-timeout=0 \
      --volfile-server=10.231.0.1 --volfile-id=ssvol -l "$W/log/mount-$m.log" "$W/$m"
  done
  for _ in $(seq 100); do mountpoint -q "$W/a" && mountpoint -q "$W/b" && break; sleep 0.1; done
  mountpoint -q "$W/a" && mountpoint -q "$W/b"
}

case "$cmd" in
  up) trap 'down' ERR; up ;;
  down) down ;;
  *) echo "usage: $0 up|down WORKDIR" >&2; exit 2 ;;
esac
