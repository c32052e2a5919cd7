#!/bin/bash
# Guest side of scripts/srp-rxe.sh: soft-RoCE on eth0, our srp-target listening on the guest's
# own address, Linux's ib_srp logging in over RDMA/CM; sg_inq, ext4 made, written, fscked and
# verified, then the remote port deleted (disconnect), a new login and the data verified again.
# usage: guest-srp.sh SRP_TARGET_BINARY RESULT_DIR
set -eux
BIN=$1 RES=$2
GUID=0002c90300abcdef
fail() { echo "FAIL: $*"; dmesg | tail -n 40; tail -n 40 "$RES/target.err" || true; exit 1; }
modprobe -a rdma_rxe ib_uverbs ib_umad rdma_cm
rdma link add rxe0 type rxe netdev eth0
ibv_devices
"$BIN" --listen 10.0.2.15:5555 --guid $GUID --lun 0=ram:256M --queue-depth 64 --log info \
  > /tmp/srp-target.out 2> "$RES/target.err" &
TPID=$!
for _ in $(seq 100); do grep -q dest= /tmp/srp-target.out && break; sleep 0.1; done
grep -q dest= /tmp/srp-target.out || fail "srp-target did not start"
modprobe -a sd_mod sg ib_srp
login() {
  echo "id_ext=$GUID,ioc_guid=$GUID,dest=10.0.2.15:5555" > /sys/class/infiniband_srp/srp-rxe0-1/add_target
  for _ in $(seq 200); do
    DEV=$(ls /sys/class/scsi_disk 2>/dev/null | head -n1)
    [ -n "$DEV" ] && [ -d /sys/class/scsi_disk/$DEV/device/block ] && break
    sleep 0.1
  done
  DEV=/dev/$(ls /sys/class/scsi_disk/$DEV/device/block | head -n1)
  for _ in $(seq 50); do [ -b "$DEV" ] && break; sleep 0.1; done
  [ -b "$DEV" ] || fail "no SCSI disk after add_target"
}
logout() {
  for p in /sys/class/srp_remote_ports/*; do echo 1 > "$p/delete"; done
  for _ in $(seq 100); do [ -z "$(ls /sys/class/scsi_disk 2>/dev/null)" ] && break; sleep 0.1; done
  [ -z "$(ls /sys/class/scsi_disk 2>/dev/null)" ] || fail "disk still there after deleting the remote port"
}
login
sg_inq "$DEV" | tee "$RES/inquiry.txt" | grep -E 'Vendor|Product'
sg_inq -p 0x83 "$DEV" > "$RES/vpd83.txt" || true
mkfs.ext4 -q -F "$DEV"
mkdir -p /mnt/srp
mount "$DEV" /mnt/srp
head -c 32M /dev/urandom > /tmp/pat
cp /tmp/pat /mnt/srp/pat
sync
umount /mnt/srp
fsck.ext4 -n -f "$DEV"
mount "$DEV" /mnt/srp
cmp /tmp/pat /mnt/srp/pat || fail "file differs after remount"
umount /mnt/srp
# Disconnect (ib_srp's logout) and log in again: the data is still there.
logout
login
fsck.ext4 -n -f "$DEV"
mount -o ro "$DEV" /mnt/srp
cmp /tmp/pat /mnt/srp/pat || fail "file differs after re-login"
umount /mnt/srp
logout
kill -TERM $TPID
wait $TPID || fail "srp-target exit status $?"
echo "SRP RXE OK"
