#!/bin/bash
# Runs INSIDE the rig's guest (a Debian kernel under QEMU): Linux's own iSCSI initiator
# (open-iscsi + iscsi_tcp) against the scst-rs target on the host.
# usage: guest-iscsi.sh HOST:PORT IQN PATTERN_FILE RESULT_DIR [DIGEST]
# DIGEST: CRC32C (the default: header and data digests) or None.
# 1. discovery, login, the SCSI scan;
# 2. raw I/O: PATTERN_FILE written to the disk with O_DIRECT, read back and compared;
# 3. file system work: ext4 on the disk past the pattern (through a loop device at an offset),
#    files written, remounted, checked, fsck;
# 4. logout. Prints "ISCSI LINUX OK" at the end.
set -euxo pipefail
portal=$1 iqn=$2 pat=$3 out=$4 digest=${5:-CRC32C}
modprobe -a iscsi_tcp sd_mod sg loop ext4
iscsid
iscsiadm -m discovery -t st -p "$portal" | tee "$out/discovery.txt"
# The target reports the address the connection arrived on (127.0.0.1 seen from the host side
# of QEMU's user network); the guest reaches the host as 10.0.2.2.
iscsiadm -m node -o delete
iscsiadm -m node -o new -T "$iqn" -p "$portal"
# Header and data digests on by default: CRC32C over every PDU, both ways.
iscsiadm -m node -T "$iqn" -p "$portal" -o update -n node.conn[0].iscsi.HeaderDigest -v "$digest"
iscsiadm -m node -T "$iqn" -p "$portal" -o update -n node.conn[0].iscsi.DataDigest -v "$digest"
iscsiadm -m node -T "$iqn" -p "$portal" --login
iscsiadm -m session -P 2 | grep -iE "digest|MaxRecvDataSegmentLength|FirstBurst|MaxBurst" | tee "$out/session.txt"
grep -qi "HeaderDigest: $digest" "$out/session.txt"
grep -qi "DataDigest: $digest" "$out/session.txt"
for _ in $(seq 100); do [ -b /dev/sda ] && break; sleep 0.1; done
sg_inq /dev/sda | tee "$out/inquiry.txt"
sg_vpd -p di /dev/sda | tee "$out/vpd83.txt"
cat /sys/block/sda/queue/logical_block_size /sys/block/sda/size > "$out/geometry.txt"
# Raw data path, O_DIRECT both ways.
n=$(stat -c %s "$pat")
dd if="$pat" of=/dev/sda bs=1M oflag=direct status=none
cmp <(dd if=/dev/sda bs=1M count=$((n >> 20)) iflag=direct status=none) "$pat"
# A file system on the rest of the disk (offset 32 MiB), with a file check after remount.
losetup -o $((32 << 20)) /dev/loop0 /dev/sda
mkfs.ext4 -q -F /dev/loop0
mkdir -p /mnt/t
mount /dev/loop0 /mnt/t
for i in $(seq 8); do head -c 1M "$pat" > "/mnt/t/f$i"; done
sha256sum /mnt/t/f* > /tmp/sums
sync
umount /mnt/t
echo 3 > /proc/sys/vm/drop_caches
mount /dev/loop0 /mnt/t
sha256sum -c /tmp/sums
umount /mnt/t
e2fsck -fn /dev/loop0
losetup -d /dev/loop0
iscsiadm -m node -T "$iqn" -p "$portal" --logout
echo "ISCSI LINUX OK"
