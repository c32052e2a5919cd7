#!/bin/bash
# Guest side of the tcm_fc comparison: LIO's in-kernel FCoE target (tcm_fc on its own fcoe
# VN2VN port) and Linux's fcoe initiator on the two ends of a veth pair, with the same I/O as
# guest-fcoe.sh measures. usage: guest-tcmfc.sh RESULT_DIR
set -u
OUT=$1
fail() { echo "FAIL: $*"; dmesg | grep -iE "fc|fcoe|tcm|target" | tail -n 40; exit 1; }
modprobe -a veth fcoe sd_mod target_core_mod tcm_fc || fail "modprobe"
ip link add fcv0 type veth peer name fcv1 || fail veth
ip link set fcv0 mtu 9000 up && ip link set fcv1 mtu 9000 up
CFS=/sys/kernel/config/target
[ -d $CFS ] || { mount -t configfs configfs /sys/kernel/config 2>/dev/null; }
[ -d $CFS ] || fail "no configfs target dir"
mkdir -p $CFS/core/rd_mcp_0/ram0 || fail "rd_mcp"
echo rd_pages=16384 > $CFS/core/rd_mcp_0/ram0/control
echo 1 > $CFS/core/rd_mcp_0/ram0/enable || fail "ramdisk enable"
# The target side: its own fcoe instance (VN2VN) on fcv1.
echo fcv1 > /sys/bus/fcoe/ctlr_create || fail "ctlr_create fcv1"
echo fcv0 > /sys/bus/fcoe/ctlr_create || fail "ctlr_create fcv0"
T=$(ls -d /sys/bus/fcoe/devices/ctlr_* | sort | head -n 1) I=$(ls -d /sys/bus/fcoe/devices/ctlr_* | sort | tail -n 1)
TW=$(cat /sys/class/fc_host/host0/port_name) IW=$(cat /sys/class/fc_host/host1/port_name)
colon() { echo "${1#0x}" | sed 's/../&:/g; s/:$//'; }
echo "target lport $TW, initiator lport $IW"
mkdir -p $CFS/fc/$(colon $TW)/tpgt_1/lun/lun_0 || fail "tcm_fc wwn $TW"
ln -s $CFS/core/rd_mcp_0/ram0 $CFS/fc/$(colon $TW)/tpgt_1/lun/lun_0/ram0 || fail "lun link"
mkdir -p $CFS/fc/$(colon $TW)/tpgt_1/acls/$(colon $IW)/lun_0 || fail "acl"
ln -s $CFS/fc/$(colon $TW)/tpgt_1/lun/lun_0 $CFS/fc/$(colon $TW)/tpgt_1/acls/$(colon $IW)/lun_0/lun0 || fail "acl lun"
for c in $T $I; do echo vn2vn > $c/mode; echo 1 > $c/enabled; done
DEV=
for _ in $(seq 120); do
  for d in $(ls /sys/block | grep '^sd'); do
    grep -q LIO /sys/block/$d/device/vendor 2>/dev/null && DEV=$d
  done
  [ -n "$DEV" ] && break
  sleep 0.5
done
[ -n "$DEV" ] || fail "no tcm_fc disk appeared"
echo "tcm_fc disk /dev/$DEV: $(cat /sys/block/$DEV/device/vendor) $(cat /sys/block/$DEV/device/model)"
fio --name=seqread --eta=never --filename=/dev/$DEV --direct=1 --ioengine=libaio --iodepth=8 --rw=read --bs=1M \
  --size=64M --output-format=terse --output="$OUT/fio-read-tcmfc.txt" || fail "fio read"
echo "tcm_fc sequential 1 MiB QD8 read: $(awk -F';' '{print $7}' "$OUT/fio-read-tcmfc.txt") KiB/s (TCG guest)"
echo "TCM_FC OK"
