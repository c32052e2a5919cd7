#!/bin/bash
# Zero-copy READs against copying READs, side by side in one run: 1 MiB sequential READs at QD8
# (`qemu-img bench`, libiscsi) from a page-cached FILEIO LUN with `zerocopy=on` (LUN 0) and one
# with `zerocopy=off` (LUN 1), by an initiator that is NOT on this host's loopback: a guest of the
# rig (../shared/rig or $RIG) reaching the target through a tap device (192.168.78.0/24, QEMU's
# userspace virtio-net). Over loopback the receiver's TCP processing runs in the sender's
# context, which hides what the copies cost; through a tap, the bytes leave our process the way
# they leave for a NIC. Prints per LUN the median MB/s and target CPU per MiB (utime+stime of
# /proc/PID/stat between the guest's marks), and the ratios on/off. The guest is TCG-emulated and
# shares the two cores with the target: its rate is the guest's, the CPU per MiB is the target's.
# Goal (issue 19): target CPU per MiB with zero-copy <= 0.5x without.
# usage: [ROUNDS=3] [COUNT=1024] [BIN=target/release/iscsi-target] [RIG=../shared/rig] benches/zero-copy.sh
# Needs root (tap) and /dev/net/tun. KEEP=1 keeps the work dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN:-$ROOT/target/release/iscsi-target}
RIG=${RIG:-$ROOT/../shared/rig}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-1024}
IMG_DIR=${IMG_DIR:-/var/tmp}
[ "$(id -u)" = 0 ] || { echo "zero-copy.sh: run as root (tap)" >&2; exit 2; }
[ -x "$RIG/run-vm.sh" ] || { echo "zero-copy.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p scst-examples)
[ "$(stat -f -c %T "$IMG_DIR")" != tmpfs ] || { echo "IMG_DIR=$IMG_DIR is tmpfs; pick a directory on a disk" >&2; exit 2; }
W=$(mktemp -d /tmp/scst-zero-copy.XXXXXX)   # under /tmp: the guest sees it
F0=$IMG_DIR/scst-zero-copy.$$.0 F1=$IMG_DIR/scst-zero-copy.$$.1
TAP= IPID= HELPER=
cleanup() {
  local p
  for p in $HELPER $IPID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  [ -z "$TAP" ] || ip link del "$TAP" 2>/dev/null || true
  rm -f "$F0" "$F1"
  if [ -n "${KEEP:-}" ]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
mkdir -p "$W/result"
# Two 1 GiB files written in full and read once: every READ below finds its data cached.
for f in "$F0" "$F1"; do dd if=/dev/urandom of="$f" bs=1M count=1024 status=none; cat "$f" > /dev/null; done
TAP=scstzc$$
ip tuntap add dev "$TAP" mode tap && ip addr add 192.168.78.1/24 dev "$TAP" && ip link set "$TAP" up ||
  { echo "zero-copy.sh: cannot make a tap device (root, /dev/net/tun)" >&2; TAP=; exit 2; }
PORT=3262 IQN=iqn.2026-12.rs.scst:zero-copy MAC=52:54:00:78:00:02
"$BIN" --listen "192.168.78.1:$PORT" --target "$IQN" --lun "0=fileio:$F0,zerocopy=on" \
  --lun "1=fileio:$F1,zerocopy=off" --log warn > "$W/target.out" 2> "$W/target.err" &
IPID=$!
for _ in $(seq 100); do grep -q iscsi:// "$W/target.out" 2>/dev/null && break; sleep 0.1; done
grep -q iscsi:// "$W/target.out" || { echo "FAIL: iscsi-target not listening"; cat "$W/target.err"; exit 1; }
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
(
  n=1
  while :; do
    if [ -e "$W/result/mark-$n" ]; then
      echo "$(cat "$W/result/mark-$n") $(ticks "$IPID") $(date +%s.%N)" >> "$W/cpu.txt"
      : > "$W/result/ack-$n"
      n=$((n + 1))
    else
      sleep 0.02
    fi
  done
) &
HELPER=$!
rc=0
"$RIG/run-vm.sh" -t $((ROUNDS * 2 * 120 + 120)) -s "$W/result" \
  -q -netdev -q "tap,id=zn,ifname=$TAP,script=no,downscript=no" -q -device -q "virtio-net-pci,netdev=zn,mac=$MAC" \
  "bash $HERE/rig/guest-zero-copy.sh 192.168.78.1:$PORT $IQN $W/result $ROUNDS $COUNT $MAC,192.168.78.2/24" \
  > "$W/guest.log" 2>&1 || rc=$?
if [ $rc -ne 0 ] || ! grep -q "ZERO COPY BENCH DONE" "$W/guest.log" || grep -q FAIL "$W/guest.log"; then
  echo "FAIL: guest run rc=$rc"; tail -n 30 "$W/guest.log"; tail -n 20 "$W/target.err"; exit 1
fi
printf '%s, %s cores, %s; guest: rig (TCG), virtio-net on a tap; %s x %d MiB per run\n' "$(date -u +%F)" \
  "$(nproc)" "$(uname -r)" "$ROUNDS rounds" "$COUNT"
python3 - "$W/cpu.txt" "$(getconf CLK_TCK)" "$COUNT" << 'PY'
import statistics, sys
lines = [l.split() for l in open(sys.argv[1]) if l.strip()]
hz, count = int(sys.argv[2]), int(sys.argv[3])
begin = {(l[1], l[2]): (int(l[3]), float(l[4])) for l in lines if l[0] == "begin"}
runs = {"0": [], "1": []}
for l in lines:
    if l[0] == "end" and (l[1], l[2]) in begin:
        t0, s0 = begin[(l[1], l[2])]
        el, cpu = float(l[4]) - s0, (int(l[3]) - t0) / hz
        runs[l[1]].append((count * 2**20 / el / 1e6, cpu * 1e6 / count))
med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
on, off = med["0"], med["1"]
print(f"zerocopy=on   {on[0]:8.0f} MB/s  target CPU {on[1]:6.0f} us/MiB")
print(f"zerocopy=off  {off[0]:8.0f} MB/s  target CPU {off[1]:6.0f} us/MiB")
print(f"on/off        {on[0] / off[0]:8.2f}x rate    CPU/MiB {on[1] / off[1]:.2f}x"
      f"   goal CPU/MiB <= 0.5x: {'met' if on[1] <= 0.5 * off[1] else 'NOT met'}")
PY
