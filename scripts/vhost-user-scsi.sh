#!/bin/bash
# Linux's virtio_scsi driver against vhost-user-scsi-target, in the rig's VM (../shared/rig or $RIG).
# usage: scripts/vhost-user-scsi.sh [TARGET_BINARY]
# Starts vhost-user-scsi-target on a fresh socket with a FILEIO LUN 0 and a RAM LUN 1, boots the
# guest with -device vhost-user-scsi-pci (guest RAM shared), runs scripts/rig/guest-vhost-scsi.sh
# there, then checks on the host that the pattern the guest wrote is in the backing file.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/vhost-user-scsi-target}
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$RIG/run-vm.sh" ] || { echo "vhost-user-scsi.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "vhost-user-scsi.sh: no $BIN (cargo build --release --bin vhost-user-scsi-target)" >&2; exit 2; }
W=$(mktemp -d /tmp/scst-vhost-scsi.XXXXXX)   # under /tmp: the guest sees it
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
t0=$(date +%s)
head -c 8M /dev/urandom > "$W/pattern"
SOCK=$W/vus.sock
"$BIN" --socket "$SOCK" --lun "0=fileio:$W/lun.img,size=256M,thin" --lun 1=ram:64M --queues 2 --once \
  --log info > "$W/target.out" 2> "$W/target.err" &
PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "FAIL: no socket"; cat "$W/target.err"; exit 1; }
mkdir -p "$W/result"
rc=0
"$RIG/run-vm.sh" -t 400 --shared-mem -s "$W/result" \
  -q -chardev -q "socket,id=vus,path=$SOCK" -q -device -q vhost-user-scsi-pci,chardev=vus,num_queues=2 \
  "bash $HERE/rig/guest-vhost-scsi.sh $W/pattern $W/result" > "$W/guest.log" 2>&1 || rc=$?
if [ $rc -ne 0 ] || ! grep -q "VHOST SCSI OK" "$W/guest.log"; then
  echo "FAIL: guest run rc=$rc"; tail -n 40 "$W/guest.log"; echo "--- target log"; tail -n 20 "$W/target.err"; exit 1
fi
# The target ends with the guest's connection (--once) and flushes its devices.
for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then echo "FAIL: target still running after the guest left"; exit 1; fi
trc=0; wait "$PID" || trc=$?; PID=
[ $trc -eq 0 ] || { echo "FAIL: target exit status $trc"; tail -n 20 "$W/target.err"; exit 1; }
cmp -n $((8 << 20)) "$W/pattern" "$W/lun.img" || { echo "FAIL: backing file differs from what the guest wrote"; exit 1; }
grep -E "Vendor|Product" "$W/result/inquiry.txt" || true
grep -E "IOPS" "$W/result/fio-qd32.txt" | head -n 2 || true
sed 's/^/reset: /' "$W/result/reset-dmesg.txt"
echo "PASS vhost-user-scsi (virtio_scsi: 2 LUNs, VPD 83h, 8 MiB O_DIRECT round trip, ext4 remount/verify/fsck," \
  "fio verify QD32, sg_reset -d under fio verify) in $(( $(date +%s) - t0 ))s"
