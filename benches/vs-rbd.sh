#!/bin/bash
# An RBD image over iSCSI: iscsi-target's rbd: LUN against tgtd's bs_rbd (the tgt-rbd package),
# and both against `rbd bench` on the same image (the limit: librbd with no target, no network).
#
# usage: benches/vs-rbd.sh [ROUNDS]      (as root; needs tgt tgt-rbd qemu-utils qemu-block-extra
#                                         ceph-mon ceph-osd ceph-common, and a target built with
#                                         `cargo build --release -p scst-examples --features rbd`)
#   ROUNDS=2                rounds per point (alternating rbd bench, tgtd, ours); medians shown
#   POINTS="w4k32 r4k32 w1m8 r1m8"
#   SCALE=1                 multiply every point's command count
#   CEPH_CONF=PATH          use this cluster (default: a throw-away one from scripts/ceph-cluster.sh:
#                           one monitor, one memstore OSD, on this machine's cores)
#   BIN=target/release/iscsi-target
#
# One 1 GiB image, written in full first (so reads touch stored objects, not holes), serves all
# three in turn: `rbd bench --io-pattern rand` (4 KiB) / `seq` (1 MiB) with --io-threads as the
# queue depth; tgtd and ours are driven by `qemu-img bench` (libiscsi) at the same depth, its
# requests 162013 blocks apart (4 KiB; no two adjacent) or sequential (1 MiB).
#   tcpu/io    the target process's CPU (utime+stime) per command, in us (librbd's threads
#              included); for rbd bench its own process's CPU: what librbd alone costs
#   osd cpu/io the OSD's and the monitor's CPU per command, in us (the cluster's share)
# Goals (issue 17): ours >= tgtd's bs_rbd; ours close to rbd bench (the librbd limit).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$HERE/..
ROUNDS=${1:-${ROUNDS:-2}}
POINTS=${POINTS:-"w4k32 r4k32 w1m8 r1m8"}
SCALE=${SCALE:-1}
BIN=${BIN:-$ROOT/target/release/iscsi-target}
[ "$(id -u)" = 0 ] || { echo "run as root (tgtd)"; exit 1; }
for c in tgtd tgtadm qemu-img rbd python3; do
  command -v "$c" > /dev/null || { echo "missing $c (apt-get install tgt tgt-rbd qemu-utils qemu-block-extra ceph-common)"; exit 1; }
done
[ -e /usr/lib/tgt/backing-store/bs_rbd.so ] || { echo "missing tgtd's bs_rbd (apt-get install tgt-rbd)"; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p scst-examples --features rbd)

W=$(mktemp -d /tmp/vs-rbd.XXXXXX)
TGTD= OURS= OWN_CLUSTER=
cleanup() {
  set +e
  [ -n "$OURS" ] && kill "$OURS" 2> /dev/null
  [ -n "$TGTD" ] && kill -9 "$TGTD" 2> /dev/null
  wait 2> /dev/null
  [ -n "$OWN_CLUSTER" ] && "$ROOT/scripts/ceph-cluster.sh" stop "$W/ceph"
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -z "${CEPH_CONF:-}" ]; then
  OWN_CLUSTER=1
  MEMSTORE_BYTES=$((1536 << 20)) "$ROOT/scripts/ceph-cluster.sh" start "$W/ceph" > /dev/null 2> "$W/ceph.err" \
    || { echo "no Ceph cluster:"; cat "$W/ceph.err"; exit 1; }
  CEPH_CONF=$W/ceph/ceph.conf
fi
IMAGE=vs-rbd-$$
rbd -c "$CEPH_CONF" create --size 1G "rbd/$IMAGE"
rbd -c "$CEPH_CONF" bench --io-type write --io-size 4M --io-threads 4 --io-total 1G --io-pattern seq "rbd/$IMAGE" > /dev/null
cluster_pids() { pgrep -f "ceph-(osd|mon) .*${CEPH_CONF%/ceph.conf}" || pgrep -x ceph-osd; }
HZ=$(getconf CLK_TCK)
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tp=$(free_port) op=$(free_port) cp=$((20000 + $$ % 10000))
tgtd -f -C "$cp" --iscsi "portal=127.0.0.1:$tp" > "$W/tgtd.log" 2>&1 &
TGTD=$!
for _ in $(seq 50); do tgtadm -C "$cp" --lld iscsi --op show --mode target > /dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$cp" --lld iscsi --op new --mode target --tid 1 -T iqn.2026-12.rs.scst:vs-rbd-tgtd
tgtadm -C "$cp" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype rbd \
  --backing-store "rbd/$IMAGE" --bsopts "conf=$CEPH_CONF"
tgtadm -C "$cp" --lld iscsi --op bind --mode target --tid 1 -I ALL
"$BIN" --listen "127.0.0.1:$op" --target iqn.2026-12.rs.scst:vs-rbd-ours --lun "0=rbd:rbd/$IMAGE,conf=$CEPH_CONF" \
  --log warn > "$W/ours.out" 2> "$W/ours.err" &
OURS=$!
for _ in $(seq 100); do grep -q iscsi:// "$W/ours.out" 2> /dev/null && break; sleep 0.1; done
grep -q iscsi:// "$W/ours.out" || { echo "iscsi-target did not start:"; cat "$W/ours.err"; exit 1; }
URL_T=iscsi://127.0.0.1:$tp/iqn.2026-12.rs.scst:vs-rbd-tgtd/1
URL_O=iscsi://127.0.0.1:$op/iqn.2026-12.rs.scst:vs-rbd-ours/0
mapfile -t CLUSTER < <(cluster_pids)

# point NAME -> depth size write count
point() {
  case $1 in
    w4k32) echo "32 4096 1 30000" ;;
    r4k32) echo "32 4096 0 30000" ;;
    w1m8) echo "8 1048576 1 1500" ;;
    r1m8) echo "8 1048576 0 1500" ;;
    *) echo "unknown point $1" >&2; exit 1 ;;
  esac
}

# measure WHO POINT -> "rate tcpu_per_unit cluster_cpu_per_unit" (rate IOPS for 4 KiB, MB/s for
# 1 MiB; CPU per command for 4 KiB, per MiB for 1 MiB)
measure() {
  local who=$1 depth size write count t0 c0 s0 s1 t1 c1 pid=
  read -r depth size write count <<< "$(point "$2")"
  count=$(python3 -c "print(max(1, int($count * $SCALE)))")
  case $who in tgtd) pid=$TGTD ;; ours) pid=$OURS ;; esac
  t0=0; [ -n "$pid" ] && t0=$(ticks "$pid")
  c0=$(ticks "${CLUSTER[@]}")
  s0=$(date +%s.%N)
  case $who in
    rbd)
      local type=read pat=rand
      [ "$write" = 1 ] && type=write
      [ "$size" -gt 4096 ] && pat=seq
      /usr/bin/time -f "%U %S" -o "$W/time" rbd -c "$CEPH_CONF" bench --io-type "$type" --io-size "$size" --io-threads "$depth" \
        --io-total $((count * size)) --io-pattern "$pat" "rbd/$IMAGE" > "$W/bench" 2>&1 \
        || { echo "rbd bench failed:"; cat "$W/bench"; exit 1; } >&2 ;;
    *)
      local url=$URL_O wflag=() step=$size
      [ "$who" = tgtd ] && url=$URL_T
      [ "$write" = 1 ] && wflag=(-w --pattern=165)
      [ "$size" = 4096 ] && step=$((162013 * 4096))
      qemu-img bench -f raw -t none -n -c "$count" -d "$depth" -s "$size" -S "$step" "${wflag[@]}" "$url" \
        > "$W/bench" 2>&1 || true
      grep -q "Run completed" "$W/bench" || { echo "client failed ($2 on $url):"; cat "$W/bench"; exit 1; } >&2 ;;
  esac
  s1=$(date +%s.%N)
  t1=0; [ -n "$pid" ] && t1=$(ticks "$pid")
  # rbd bench's own CPU (librbd without a target) stands in for the target's.
  [ "$who" = rbd ] && t1=$(awk -v hz="$HZ" '{printf "%d", ($1 + $2) * hz}' "$W/time")
  c1=$(ticks "${CLUSTER[@]}")
  python3 - "$count" "$size" "$s0" "$s1" "$((t1 - t0))" "$((c1 - c0))" "$HZ" << 'PY'
import sys
count, size = int(sys.argv[1]), int(sys.argv[2])
el = float(sys.argv[4]) - float(sys.argv[3])
t, c, hz = int(sys.argv[5]) / int(sys.argv[7]) * 1e6, int(sys.argv[6]) / int(sys.argv[7]) * 1e6, 1
units = count if size <= 4096 else count * size / 2**20
rate = count / el if size <= 4096 else count * size / el / 1e6
print(f"{rate:.1f} {t / units:.2f} {c / units:.2f}")
PY
}
median() { python3 -c 'import sys, statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

echo "RBD image rbd/$IMAGE (1 GiB), $ROUNDS rounds per point; rate: IOPS (4 KiB) or MB/s (1 MiB)"
printf '| %-6s | %-10s | %-10s | %-10s | %-9s | %-9s | %-24s | %-16s |\n' point "rbd bench" tgtd ours ours/tgtd ours/rbd "tcpu ours/tgtd/rbd bench" "osd cpu ours/tgtd"
echo '|---|---|---|---|---|---|---|---|'
for p in $POINTS; do
  declare -a R=() RC=() T=() O=() TC=() OC=() TO=() OO=()
  for _ in $(seq "$ROUNDS"); do
    read -r r c _ <<< "$(measure rbd "$p")"; R+=("$r"); RC+=("$c")
    read -r r c o <<< "$(measure tgtd "$p")"; T+=("$r"); TC+=("$c"); TO+=("$o")
    read -r r c o <<< "$(measure ours "$p")"; O+=("$r"); OC+=("$c"); OO+=("$o")
  done
  python3 - "$p" "$(median "${R[@]}")" "$(median "${T[@]}")" "$(median "${O[@]}")" "$(median "${RC[@]}")" \
    "$(median "${TC[@]}")" "$(median "${OC[@]}")" "$(median "${TO[@]}")" "$(median "${OO[@]}")" << 'PY'
import sys
p, r, t, o, rc, tc, oc, to, oo = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {p:<6} | {r:>10,.0f} | {t:>10,.0f} | {o:>10,.0f} | {o / t:>8.2f}x | {o / r:>8.2f}x | "
      f"{oc:.0f} / {tc:.0f} / {rc:.0f} us | {oo:.1f} / {to:.1f} us |")
PY
done
