#!/bin/bash
# Runs INSIDE the rig's guest: Linux's virtio_scsi driver against vhost-user-scsi-target on the
# host (QEMU -device vhost-user-scsi-pci). LUN 0 is the FILEIO disk under test, LUN 1 a RAM disk.
# usage: guest-vhost-scsi.sh main|reconnect|paths|daemon PATTERN_FILE RESULT_DIR
# main (the first boot):
# 1. the SCSI scan finds both LUNs; INQUIRY and VPD 83h;
# 2. raw I/O: PATTERN_FILE written to LUN 0 with O_DIRECT, read back and compared;
# 3. ext4 past the pattern (loop device at 32 MiB): files written, synced, remounted after a cache
#    drop, checksums verified, fsck;
# 4. fio with verification at iodepth 32 (4 KiB random writes, crc32c), on LUN 1;
# 5. sg_reset -d (LOGICAL UNIT RESET through the control queue) while fio runs with
#    verification on LUN 1: fio must still verify everything;
# 6. the pattern written to LUN 1 (RAM) for the reconnect boot;
# 7. hot-add: the guest asks the host (file ready-hotplug in RESULT_DIR) to add LUN 2 and
#    waits for 0:0:0:2 to appear without a rescan of its own (TRANSPORT_RESET event);
# 8. capacity: the guest asks the host (ready-grow) to grow LUN 0's file and waits for the disk
#    size to change (PARAM_CHANGE event, Linux revalidates).
# reconnect (a second boot against the same target process): LUN 1 still holds the pattern,
# LUN 2 is there from the start, LUN 0 has its new size.
# paths (a third boot with two controllers, i.e. two sockets of the target): LUN 1 through both
# HBAs has the same logical unit designator and different relative target ports; a persistent
# reservation (WRITE EXCLUSIVE) taken through path 1 makes a write through path 2 a RESERVATION
# CONFLICT while reads still work; after the release, path 2 writes again; ALUA: a port group
# put in standby through path 1 is seen (unit attention, RTPG, NOT READY) through path 2; then
# dm-multipath (when multipath-tools is installed) maps both paths and survives the path in use
# going offline.
# daemon (a fourth boot, against scst-target serving a TARGET_DRIVER scst_local target from an
# scst.conf): the pattern written to LUN 0 and read back; VPD 83h names relative target port 4
# (iSCSI's 1 plus 3, the first scst_local default); then the guest asks the host
# (ready-daemon-lun) to map LUN 1 in the file and SIGHUP the daemon, and waits for 0:0:0:1;
# then (ready-daemon-grow) to grow LUN 0's device from 64 to 96 MiB, and waits for the new size.
# Prints "VHOST SCSI OK" at the end.
set -euxo pipefail
mode=$1 pat=$2 out=$3
modprobe -a virtio_scsi sd_mod sg loop ext4
dev_of() {   # the block device of SCSI address $1
  for _ in $(seq 100); do
    for b in /sys/class/scsi_device/"$1"/device/block/*; do
      [ -e "$b" ] && { echo "/dev/${b##*/}"; return 0; }
    done
    sleep 0.1
  done
  return 1
}
if [ "$mode" = paths ]; then
  pa=$(dev_of 0:0:0:1)
  pb=$(dev_of 1:0:0:1)
  lsscsi | tee "$out/lsscsi-paths.txt"
  sg_vpd -p di "$pa" | tee "$out/vpd83-a.txt"
  sg_vpd -p di "$pb" | tee "$out/vpd83-b.txt"
  # The same logical unit (its NAA designator), two target ports.
  lu() { sed -n '/Addressed logical unit/,/Target port/p' "$1" | grep -A1 -i "NAA" ; }
  [ -n "$(lu "$out/vpd83-a.txt")" ]
  [ "$(lu "$out/vpd83-a.txt")" = "$(lu "$out/vpd83-b.txt")" ]
  grep -i "relative target port: 0x1" "$out/vpd83-a.txt"
  grep -i "relative target port: 0x2" "$out/vpd83-b.txt"
  sg_persist --out --register --param-sark=0xabc "$pa"
  sg_persist --out --reserve --param-rk=0xabc --prout-type=1 "$pa"
  sg_persist --in --read-reservation "$pb" | tee "$out/pr-b.txt"
  grep -i "0xabc" "$out/pr-b.txt"
  # WRITE(10) of one block through path 2: RESERVATION CONFLICT; READ(10) is allowed.
  head -c 512 /dev/zero > /tmp/blk
  rc=0; sg_raw -s 512 -i /tmp/blk "$pb" 2a 00 00 00 00 00 00 00 01 00 > "$out/write-b.txt" 2>&1 || rc=$?
  cat "$out/write-b.txt"
  [ $rc -ne 0 ] && grep -qi "reservation conflict" "$out/write-b.txt"
  sg_raw -r 512 "$pb" 28 00 00 00 00 00 00 00 01 00
  sg_raw -s 512 -i /tmp/blk "$pa" 2a 00 00 00 00 00 00 00 01 00
  sg_persist --out --release --param-rk=0xabc --prout-type=1 "$pa"
  sg_raw -s 512 -i /tmp/blk "$pb" 2a 00 00 00 00 00 00 00 01 00
  sg_persist --out --register --param-rk=0xabc --param-sark=0 "$pa"
  # ALUA: port group 1 (path 1) and 2 (path 2) both active/optimized; SET TARGET PORT GROUPS
  # through path 1 puts group 2 in standby: path 2 gets the state-change unit attention, then
# REPORT TARGET PORT GROUPS through path 2 shows the new state,
  # a READ through path 2 is NOT READY (04h/0Bh), through path 1 it works; then back.
  sg_rtpg -d "$pb" | tee "$out/rtpg-before.txt"
  sg_stpg --standby --tp=2 "$pa"
  # Path 2's nexus first gets the unit attention ASYMMETRIC ACCESS STATE CHANGED (2Ah/06h).
  rc=0; sg_rtpg -d "$pb" > "$out/rtpg-ua.txt" 2>&1 || rc=$?
  cat "$out/rtpg-ua.txt"
  [ $rc -ne 0 ] && grep -qi "asymmetric access state changed" "$out/rtpg-ua.txt"
  sg_rtpg -d "$pb" | tee "$out/rtpg-after.txt"
  grep -A1 "target port group id : 0x2" "$out/rtpg-after.txt" | grep -qi "standby"
  rc=0; sg_raw -r 512 "$pb" 28 00 00 00 00 00 00 00 01 00 > "$out/read-standby.txt" 2>&1 || rc=$?
  cat "$out/read-standby.txt"
  [ $rc -ne 0 ] && grep -qi "standby" "$out/read-standby.txt"
  sg_raw -r 512 "$pa" 28 00 00 00 00 00 00 00 01 00
  sg_stpg --optimized --tp=2 "$pa"
  # Again the state-change unit attention first, then path 2 reads.
  { sg_raw -r 512 "$pb" 28 00 00 00 00 00 00 00 01 00 2>&1 || true; } | grep -qi "asymmetric access state changed"
  sg_raw -r 512 "$pb" 28 00 00 00 00 00 00 00 01 00
  # dm-multipath over the two paths (multipath-tools; udev gives it the devices): one map with
  # both paths and the ALUA handler; a write through the map, the path it used taken offline,
  # the data read back through the map (the other path only), a second write read back
  # directly from the other path, the first path back.
  if command -v multipath > /dev/null; then
    modprobe -a dm_multipath dm_round_robin dm_service_time
    # /etc is the host's, read-only: a private writable copy for multipath's files.
    mkdir -p /tmp/etc && cp -a /etc/. /tmp/etc/ 2> /dev/null; mount --bind /tmp/etc /etc
    mkdir -p /etc/multipath /run/udev
    printf 'defaults {\n  find_multipaths no\n  user_friendly_names no\n}\n' > /etc/multipath.conf
    /lib/systemd/systemd-udevd --daemon
    udevadm trigger --action=add; udevadm settle -t 30
    multipath -v2 > "$out/multipath-create.txt" 2>&1
    # The map of LUN 1 (LUN 0 gets one too): the dm device holding path 1.
    dm=$(ls /sys/block/"${pa#/dev/}"/holders/ | head -n 1)
    [ -n "$dm" ] && dm=/dev/$dm
    [ -b "$dm" ]
    map=$(cat /sys/block/"${dm#/dev/}"/dm/name)
    mpll() { multipath -ll "$map" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g'; }
    mpll | tee "$out/multipath.txt"
    grep -q "hwhandler='1 alua'" "$out/multipath.txt"
    [ "$(grep -cE "[0-9]+:0:0:1 sd[a-z]+ .*active ready running" "$out/multipath.txt")" = 2 ]
    head -c $((4 << 20)) /dev/urandom > /tmp/mp1
    dd if=/tmp/mp1 of="$dm" bs=1M oflag=direct status=none
    # The path of the group the write went through (status=active), and the other one.
    used=$(mpll | awk '/status=active/ { getline; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+:0:0:1$/) print $i }')
    case $used in 0:0:0:1) spare=$pb;; 1:0:0:1) spare=$pa;; *) echo "no active path: $used"; exit 1;; esac
    echo offline > /sys/class/scsi_device/"$used"/device/state
    dd if="$dm" of=/tmp/mp1.back bs=1M count=4 iflag=direct status=none
    cmp /tmp/mp1 /tmp/mp1.back
    dd if=/tmp/mp1 of="$dm" bs=1M seek=4 oflag=direct status=none
    dmsetup status "$map" | tee "$out/multipath-degraded.txt"
    # The offline path failed (F) under the read; the other one carried it.
    grep -q " F " "$out/multipath-degraded.txt"
    echo running > /sys/class/scsi_device/"$used"/device/state
    dd if="$spare" of=/tmp/mp2.back bs=1M skip=4 count=4 iflag=direct status=none
    cmp /tmp/mp1 /tmp/mp2.back
    multipath -F
    echo "multipath: OK" > "$out/multipath-ok.txt"
  else
    echo "multipath: skipped (no multipath-tools)" | tee "$out/multipath-ok.txt"
  fi
  echo "VHOST SCSI OK"
  exit 0
fi
if [ "$mode" = daemon ]; then
  d0=$(dev_of 0:0:0:0)
  for _ in $(seq 100); do [ -b "$d0" ] && break; sleep 0.1; done
  lsscsi | tee "$out/lsscsi-daemon.txt"
  head -c 4M "$pat" | dd of="$d0" bs=1M oflag=direct status=none
  cmp <(dd if="$d0" bs=1M count=4 iflag=direct status=none) <(head -c 4M "$pat")
  sg_vpd -p di "$d0" | tee "$out/vpd83-daemon.txt"
  grep -qi "relative target port: 0x4" "$out/vpd83-daemon.txt"
  [ ! -e /sys/class/scsi_device/0:0:0:1 ]
  touch "$out/ready-daemon-lun"
  for _ in $(seq 300); do [ -e /sys/class/scsi_device/0:0:0:1 ] && break; sleep 0.1; done
  d1=$(dev_of 0:0:0:1)
  sg_inq "$d1" | tee "$out/inquiry-daemon-lun1.txt"
  dd if="$d1" of=/dev/null bs=1M count=1 iflag=direct status=none
  # The host grows d0 (size_mb 64 -> 96) and SIGHUPs: a PARAM_CHANGE event, Linux revalidates.
  [ "$(cat /sys/block/"${d0#/dev/}"/size)" = $((64 << 11)) ]
  touch "$out/ready-daemon-grow"
  for _ in $(seq 300); do [ "$(cat /sys/block/"${d0#/dev/}"/size)" = $((96 << 11)) ] && break; sleep 0.1; done
  [ "$(cat /sys/block/"${d0#/dev/}"/size)" = $((96 << 11)) ]
  echo "VHOST SCSI OK"
  exit 0
fi
d0=$(dev_of 0:0:0:0)
d1=$(dev_of 0:0:0:1)
for _ in $(seq 100); do [ -b "$d0" ] && [ -b "$d1" ] && break; sleep 0.1; done
if [ "$mode" = reconnect ]; then
  lsscsi | tee "$out/lsscsi-reconnect.txt"
  cmp <(dd if="$d1" bs=1M count=4 iflag=direct status=none) <(head -c 4M "$pat")
  d2=$(dev_of 0:0:0:2)
  [ "$(cat /sys/block/"${d0#/dev/}"/size)" = $((384 << 11)) ]
  echo "VHOST SCSI OK"
  exit 0
fi
lsscsi | tee "$out/lsscsi.txt"
sg_inq "$d0" | tee "$out/inquiry.txt"
sg_vpd -p di "$d0" | tee "$out/vpd83.txt"
cat /sys/block/"${d0#/dev/}"/queue/logical_block_size /sys/block/"${d0#/dev/}"/size > "$out/geometry.txt"
cat /sys/class/scsi_host/host0/proc_name > "$out/host.txt" 2>/dev/null || true
# Raw data path, O_DIRECT both ways.
n=$(stat -c %s "$pat")
dd if="$pat" of="$d0" bs=1M oflag=direct status=none
cmp <(dd if="$d0" bs=1M count=$((n >> 20)) iflag=direct status=none) "$pat"
# A file system on the rest of the disk, checked after a remount.
losetup -o $((32 << 20)) /dev/loop0 "$d0"
mkfs.ext4 -q -F /dev/loop0
mkdir -p /mnt/t
mount /dev/loop0 /mnt/t
for i in $(seq 8); do head -c 1M "$pat" > "/mnt/t/f$i"; done
dd if=/dev/urandom of=/mnt/t/big bs=1M count=16 status=none
sha256sum /mnt/t/f* /mnt/t/big > /tmp/sums
sync
umount /mnt/t
echo 3 > /proc/sys/vm/drop_caches
mount /dev/loop0 /mnt/t
sha256sum -c /tmp/sums
umount /mnt/t
e2fsck -fn /dev/loop0
losetup -d /dev/loop0
# Each vCPU submits through its own request queue (the host checks both served commands).
taskset -c 0 dd if="$d1" of=/dev/null bs=4k count=256 iflag=direct status=none
taskset -c 1 dd if="$d1" of=/dev/null bs=4k count=256 iflag=direct status=none
# Several commands in flight on one queue, with verification.
fio --name=qd32 --filename="$d1" --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite --bs=4k \
  --size=32M --verify=crc32c --verify_fatal=1 --do_verify=1 --output="$out/fio-qd32.txt"
grep -E "IOPS|err=" "$out/fio-qd32.txt"
grep -q "err= 0" "$out/fio-qd32.txt"
# LOGICAL UNIT RESET while I/O is in flight: the aborted commands are retried by the guest.
fio --name=reset --filename="$d1" --direct=1 --ioengine=libaio --iodepth=32 --rw=randwrite --bs=4k \
  --size=16M --verify=crc32c --verify_fatal=1 --do_verify=1 --loops=3 --output="$out/fio-reset.txt" &
fpid=$!
sleep 2
sg_reset -d "$d1"
wait $fpid
grep -q "err= 0" "$out/fio-reset.txt"
# virtio_scsi logs the LUN reset it sent; sg_reset fails unless the TMF answered OK.
dmesg | grep -iE "device reset|abort" | tail -n 5 | tee "$out/reset-dmesg.txt"
grep -q "device reset" "$out/reset-dmesg.txt"
# Data that must survive the reconnect.
head -c 4M "$pat" | dd of="$d1" bs=1M oflag=direct status=none
# Hot-add: the host maps LUN 2; the event queue tells the guest.
touch "$out/ready-hotplug"
for _ in $(seq 300); do [ -e /sys/class/scsi_device/0:0:0:2 ] && break; sleep 0.1; done
[ -e /sys/class/scsi_device/0:0:0:2 ]
d2=$(dev_of 0:0:0:2)
sg_inq "$d2" | grep -i "product identification"
# Capacity change: the host grows LUN 0's file from 256 MiB to 384 MiB.
s0=$(cat /sys/block/"${d0#/dev/}"/size)
[ "$s0" = $((256 << 11)) ]
touch "$out/ready-grow"
for _ in $(seq 300); do [ "$(cat /sys/block/"${d0#/dev/}"/size)" != "$s0" ] && break; sleep 0.1; done
[ "$(cat /sys/block/"${d0#/dev/}"/size)" = $((384 << 11)) ]
dmesg | grep -iE "capacity|detected capacity|sd 0:0:0:0" | tail -n 3 | tee "$out/grow-dmesg.txt" || true
echo "VHOST SCSI OK"
