#!/bin/bash
# Linux's virtio_scsi driver against vhost-user-scsi-target, in the rig's VM (../shared/rig or $RIG).
# usage: scripts/vhost-user-scsi.sh [TARGET_BINARY]
# Starts vhost-user-scsi-target on a fresh socket with a FILEIO LUN 0, a RAM LUN 1 and an (empty)
# --lun-file, boots the guest with -device vhost-user-scsi-pci (guest RAM shared) and runs
# scripts/rig/guest-vhost-scsi.sh main there; when the guest asks, hot-adds LUN 2 (SIGHUP) and
# grows LUN 0's file. A second boot (reconnect to the same target process) runs the script's
# reconnect checks, a third one with a second controller on the target's second socket the
# two-path and persistent reservation checks. Then the target is stopped (SIGTERM, exit 0) and the host checks that the
# pattern the guest wrote is in the backing file. Last, a fourth boot against scst-target (beside
# TARGET_BINARY) serving one FILEIO device through an scst_local target (its vhost-user socket)
# and an iSCSI target from one scst.conf: the guest writes through virtio-scsi, the host reads
# the backing file and asks the iSCSI target; a SIGHUP maps LUN 1, which the guest sees appear.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/vhost-user-scsi-target}
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$RIG/run-vm.sh" ] || { echo "vhost-user-scsi.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "vhost-user-scsi.sh: no $BIN (cargo build --release --bin vhost-user-scsi-target)" >&2; exit 2; }
DAEMON=$(dirname "$BIN")/scst-target
[ -x "$DAEMON" ] || { echo "vhost-user-scsi.sh: no $DAEMON beside $BIN" >&2; exit 2; }
W=$(mktemp -d /tmp/scst-vhost-scsi.XXXXXX)   # under /tmp: the guest sees it
PID= DPID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
t0=$(date +%s)
head -c 8M /dev/urandom > "$W/pattern"
SOCK=$W/vus.sock SOCK2=$W/vus2.sock
: > "$W/luns"
"$BIN" --socket "$SOCK" --socket "$SOCK2" --port-group 1=active,pref --port-group 2=active --tpg 1 --tpg 2 \
  --explicit-alua --lun "0=fileio:$W/lun.img,size=256M,thin" --lun 1=ram:64M --queues 2 \
  --lun-file "$W/luns" --rescan-interval 1 --log info > "$W/target.out" 2> "$W/target.err" &
PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "FAIL: no socket"; cat "$W/target.err"; exit 1; }
mkdir -p "$W/result"
# The host side of the guest's hot-plug and capacity steps.
(
  for _ in $(seq 3000); do [ -e "$W/result/ready-hotplug" ] && break; sleep 0.1; done
  echo "2=ram:32M" >> "$W/luns"; kill -HUP "$PID"
  for _ in $(seq 3000); do [ -e "$W/result/ready-grow" ] && break; sleep 0.1; done
  truncate -s 384M "$W/lun.img"
) &
HELPER=$!
boot() {   # boot MODE [QEMU ARG...]: one guest run of guest-vhost-scsi.sh MODE
  local rc=0 mode=$1
  shift
  "$RIG/run-vm.sh" -t 400 --shared-mem -s "$W/result" \
    -q -chardev -q "socket,id=vus,path=${BOOT_SOCK:-$SOCK}" -q -device -q vhost-user-scsi-pci,chardev=vus,num_queues=2 "$@" \
    "bash $HERE/rig/guest-vhost-scsi.sh $mode $W/pattern $W/result" > "$W/guest-$mode.log" 2>&1 || rc=$?
  if [ $rc -ne 0 ] || ! grep -q "VHOST SCSI OK" "$W/guest-$mode.log"; then
    echo "FAIL: guest run ($mode) rc=$rc"; tail -n 40 "$W/guest-$mode.log"; echo "--- target log"; tail -n 20 "${BOOT_LOG:-$W/target.err}"
    exit 1
  fi
}
boot main
kill "$HELPER" 2>/dev/null || true
t1=$(date +%s)
boot reconnect
t2=$(date +%s)
boot paths -q -chardev -q "socket,id=vus2,path=$SOCK2" -q -device -q vhost-user-scsi-pci,chardev=vus2,num_queues=1
kill "$PID"
trc=0; wait "$PID" || trc=$?; PID=
[ $trc -eq 0 ] || { echo "FAIL: target exit status $trc"; tail -n 20 "$W/target.err"; exit 1; }
# Multiqueue: both request queues of the first socket served commands (chains=[ctl, evt, q2, q3]).
chains=$(sed 's/\x1b\[[0-9;]*m//g' "$W/target.err" | grep -F "socket=$SOCK " | grep -o 'chains=\[[0-9, ]*\]' | head -n 1)
echo "multiqueue: $chains"
echo "$chains" | grep -qE '^chains=\[[0-9]+, [0-9]+, [1-9][0-9]*, [1-9][0-9]*' ||
  { echo "FAIL: not every request queue served commands: $chains"; exit 1; }
cmp -n $((8 << 20)) "$W/pattern" "$W/lun.img" || { echo "FAIL: backing file differs from what the guest wrote"; exit 1; }
grep -E "Vendor|Product" "$W/result/inquiry.txt" || true
grep -E "IOPS" "$W/result/fio-qd32.txt" | head -n 2 || true
sed 's/^/reset: /' "$W/result/reset-dmesg.txt"
sed 's/^/grow: /' "$W/result/grow-dmesg.txt"
grep -i "relative target port" "$W/result/vpd83-a.txt" "$W/result/vpd83-b.txt" | sed 's/^/paths: /'
grep -i "conflict" "$W/result/write-b.txt" | sed 's/^/paths: /'
grep -i "asymmetric access state changed" "$W/result/rtpg-ua.txt" | sed 's/^/alua: /'
grep -A1 "target port group id : 0x2" "$W/result/rtpg-after.txt" | sed 's/^/alua: /'
grep -iE "standby|not ready" "$W/result/read-standby.txt" | sed 's/^/alua: /'
sed -n 1,6p "$W/result/multipath.txt" 2>/dev/null | sed 's/^/multipath: /'
cat "$W/result/multipath-ok.txt"
mp=; grep -q "multipath: OK" "$W/result/multipath-ok.txt" && mp=" + dm-multipath"
tp=$(( $(date +%s) - t2 ))
# scst-target: TARGET_DRIVER scst_local (a vhost-user socket) and iscsi on one device.
truncate -s 64M "$W/d0.img"
mkdir -p "$W/vu"
conf() {   # conf EXTRA_LUN_LINE [SIZE_MB]
  cat > "$W/scst.conf" << CONF
HANDLER vdisk_fileio {
	DEVICE d0 {
		filename $W/d0.img
		size_mb ${2:-64}
	}
}
HANDLER vdisk_nullio {
	DEVICE n1 {
		size_mb 64
	}
}
TARGET_DRIVER iscsi {
	TARGET iqn.2026-12.rs.scst:vhost-daemon {
		LUN 0 d0
		enabled 1
	}
}
TARGET_DRIVER scst_local {
	TARGET vm1 {
		session_name guest-vm1
		LUN 0 d0
		$1
		enabled 1
	}
}
CONF
}
conf ""
"$DAEMON" -c "$W/scst.conf" --listen 127.0.0.1:3266 --vhost-user-dir "$W/vu" --control "$W/ctl.sock" \
  --log info > "$W/daemon.out" 2> "$W/daemon.err" &
DPID=$!
for _ in $(seq 100); do grep -q '^vhost-user-scsi:' "$W/daemon.out" && break; sleep 0.1; done
grep -qx "vhost-user-scsi:$W/vu/vm1.sock" "$W/daemon.out" || { echo "FAIL: scst-target"; cat "$W/daemon.out" "$W/daemon.err"; exit 1; }
(
  for _ in $(seq 3000); do [ -e "$W/result/ready-daemon-lun" ] && break; sleep 0.1; done
  conf "LUN 1 n1"; kill -HUP "$DPID"
  for _ in $(seq 3000); do [ -e "$W/result/ready-daemon-grow" ] && break; sleep 0.1; done
  conf "LUN 1 n1" 96; kill -HUP "$DPID"
) &
HELPER=$!
BOOT_SOCK=$W/vu/vm1.sock BOOT_LOG=$W/daemon.err boot daemon
kill "$HELPER" 2>/dev/null || true
cmp -n $((4 << 20)) "$W/pattern" "$W/d0.img" || { echo "FAIL: scst-target's backing file differs from what the guest wrote"; exit 1; }
sessions=$("$(dirname "$BIN")/scstctl" --socket "$W/ctl.sock" sessions)
echo "$sessions" | sed 's/^/daemon: /'
echo "$sessions" | grep "guest-vm1" | grep -q "luns=2" || { echo "FAIL: no session named by session_name with 2 LUNs"; exit 1; }
iscsi-inq -e 1 -c 0x83 iscsi://127.0.0.1:3266/iqn.2026-12.rs.scst:vhost-daemon/0 > "$W/iscsi-vpd83.txt" ||
  { echo "FAIL: iSCSI target of scst-target"; cat "$W/daemon.err"; exit 1; }
kill -TERM "$DPID"
drc=0; wait "$DPID" || drc=$?; DPID=
[ $drc -eq 0 ] || { echo "FAIL: scst-target exit status $drc"; tail -n 20 "$W/daemon.err"; exit 1; }
[ ! -e "$W/vu/vm1.sock" ] || { echo "FAIL: scst-target left its vhost-user socket"; exit 1; }
[ "$(stat -c %s "$W/d0.img")" = $((96 << 20)) ] || { echo "FAIL: d0.img not grown to 96 MiB"; exit 1; }
echo "daemon: scst_local target vm1 (session guest-vm1, relative port 4) and iSCSI on one FILEIO device; SIGHUP hot-added LUN 1, then grew d0 64 -> 96 MiB (the guest saw it)"
echo "PASS vhost-user-scsi (virtio_scsi: 2 LUNs, VPD 83h, 8 MiB O_DIRECT round trip, ext4 remount/verify/fsck," \
  "fio verify QD32, sg_reset -d under fio verify, hot-add, capacity change, reconnect, two paths + PR + ALUA$mp, both request queues used; scst-target scst_local + iSCSI) in" \
  "$(( $(date +%s) - t0 ))s (reconnect boot $(( t2 - t1 ))s, two-path boot ${tp}s)"
