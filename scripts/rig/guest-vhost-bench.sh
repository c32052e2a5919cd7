#!/bin/bash
# Guest side of scripts/vhost-bench.sh (runs INSIDE the rig's guest): fio against three RAM-backed
# disks seen in one boot, told apart by transport and INQUIRY vendor, not by name or scan order:
#   vhost  virtio_scsi host, vendor SCST_RS  (QEMU -device vhost-user-scsi-pci -> vhost-user-scsi-target)
#   iscsi  iscsi_tcp host,   vendor SCST_RS  (open-iscsi login to iscsi-target on the host, 10.0.2.2)
#   qemu   virtio_scsi host, vendor QEMU     (QEMU's own virtio-scsi-pci + scsi-hd over a raw file)
# Each disk's first SIZE is written once (sequential 1 MiB) so that no point reads holes, then
# every point runs on the three disks in turn (so slow drift of the machine hits all of them).
# Around each fio run the guest asks the host for a CPU snapshot of the target processes:
# it creates RESULT_DIR/mark-N (contents "begin|end DISK POINT") and waits for ack-N.
# Writes RESULT_DIR/disks.txt ("DISK role /dev/sdX H:C:T:L proc_name vendor model sectors
# max_sectors_kb"), fio-ROLE-POINT.json for every run, and "FAIL ..." lines to RESULT_DIR/fail.txt;
# exits non-zero if a disk is missing or a fio run failed. Prints "VHOST BENCH DONE" at the end.
# usage: guest-vhost-bench.sh ISCSI_PORTAL ISCSI_IQN RESULT_DIR RUNTIME SIZE [MAX_SECTORS_KB [NIC]]
# MAX_SECTORS_KB (if given and not "-"): the request size limit of all three disks (else the
# kernel's choice: our targets' Block Limits VPD says 1 MiB optimal transfer length, which Linux
# takes as max_sectors_kb; QEMU's scsi-hd gives none: 1280 KiB).
# NIC (if given and not "-"): "MAC,ADDR/PREFIX", the address given to the NIC with that MAC (the
# host's tap NIC of NET=tap) before the iSCSI login.
set -uo pipefail
portal=$1 iqn=$2 out=$3 runtime=$4 size=$5 maxkb=${6:--} nic=${7:--}
fail() { echo "FAIL $*" | tee -a "$out/fail.txt"; }
if [ "$nic" != - ]; then
  ifc=
  for i in /sys/class/net/*; do [ "$(cat "$i"/address)" = "${nic%%,*}" ] && ifc=${i##*/}; done
  [ -n "$ifc" ] && ip addr add "${nic#*,}" dev "$ifc" && ip link set "$ifc" up || fail "nic $nic"
fi
modprobe -a virtio_scsi iscsi_tcp sd_mod sg || { fail modprobe; exit 1; }
iscsid || { fail iscsid; exit 1; }
# The target reports the portal it was reached on (127.0.0.1 on the host's side of slirp): the
# node record is made by hand with the guest's address of the host, 10.0.2.2.
iscsiadm -m discovery -t st -p "$portal" > "$out/discovery.txt" 2>&1 || fail "iscsi discovery"
iscsiadm -m node -o delete > /dev/null 2>&1
iscsiadm -m node -o new -T "$iqn" -p "$portal" > /dev/null || fail "iscsi node"
iscsiadm -m node -T "$iqn" -p "$portal" --login > "$out/login.txt" 2>&1 || fail "iscsi login"

# role_of H:C:T:L -> vhost|iscsi|qemu|other
role_of() {
  local d=/sys/class/scsi_device/$1/device h=${1%%:*} proc vendor
  proc=$(cat /sys/class/scsi_host/host"$h"/proc_name 2>/dev/null)
  vendor=$(tr -d ' ' < "$d"/vendor)
  case "$proc/$vendor" in
    virtio_scsi/SCST_RS) echo vhost;;
    iscsi_tcp/SCST_RS) echo iscsi;;
    virtio_scsi/QEMU) echo qemu;;
    *) echo other;;
  esac
}
declare -A DEV
find_disks() {
  local d hctl r b
  DEV=()
  for d in /sys/class/scsi_disk/*; do
    [ -e "$d" ] || continue
    hctl=${d##*/}
    r=$(role_of "$hctl")
    b=$(ls "$d"/device/block 2>/dev/null | head -n 1)
    [ -n "$b" ] && [ -b /dev/"$b" ] || continue
    if [ -n "${DEV[$r]:-}" ]; then fail "two $r disks: ${DEV[$r]} and /dev/$b"; continue; fi
    DEV[$r]=/dev/$b
    HCTL[$r]=$hctl
  done
}
declare -A HCTL
for _ in $(seq 300); do
  find_disks 2> /dev/null
  [ -n "${DEV[vhost]:-}" ] && [ -n "${DEV[iscsi]:-}" ] && [ -n "${DEV[qemu]:-}" ] && break
  sleep 0.1
done
lsscsi -H > "$out/lsscsi.txt" 2>&1; lsscsi >> "$out/lsscsi.txt" 2>&1
: > "$out/disks.txt"
ROLES=()
for r in vhost iscsi qemu; do
  if [ -z "${DEV[$r]:-}" ]; then fail "disk $r missing"; continue; fi
  dev=${DEV[$r]} hctl=${HCTL[$r]} b=${DEV[$r]#/dev/}
  s=/sys/class/scsi_device/$hctl/device
  # The same I/O scheduler for all three: none (the disks are RAM; nothing to merge for).
  echo none > /sys/block/"$b"/queue/scheduler 2>/dev/null
  if [ "$maxkb" != - ]; then echo "$maxkb" > /sys/block/"$b"/queue/max_sectors_kb || fail "max_sectors_kb $r"; fi
  echo "DISK $r $dev $hctl $(cat /sys/class/scsi_host/host"${hctl%%:*}"/proc_name)" \
    "$(tr -d ' ' < $s/vendor) $(tr -d ' ' < $s/model) $(cat /sys/block/"$b"/size)" \
    "max_sectors_kb=$(cat /sys/block/"$b"/queue/max_sectors_kb) sched=$(grep -o '\[.*\]' /sys/block/"$b"/queue/scheduler)" >> "$out/disks.txt"
  ROLES+=("$r")
done
cat "$out/disks.txt"
[ ${#ROLES[@]} -eq 3 ] || { echo "VHOST BENCH DONE"; exit 1; }

seq=0
# mark begin|end ROLE POINT: the host snapshots the targets' CPU times, then acks.
mark() {
  seq=$((seq + 1))
  echo "$*" > "$out/mark-$seq.tmp" && mv "$out/mark-$seq.tmp" "$out/mark-$seq"
  for _ in $(seq 400); do [ -e "$out/ack-$seq" ] && return 0; sleep 0.05; done
  echo "no ack for mark $seq ($*): no CPU figures for it" >&2
}
# Fill the region fio uses, so reads never hit unallocated (cheaper) blocks of any backend.
for r in "${ROLES[@]}"; do
  fio --name=fill --filename="${DEV[$r]}" --direct=1 --ioengine=libaio --iodepth=8 --rw=write --bs=1M \
    --size="$size" --output="$out/fill-$r.txt" > /dev/null 2>&1 || fail "fill $r"
done
for spec in "4k_randread randread 4k 32" "4k_randwrite randwrite 4k 32" "1m_read read 1m 8" "1m_write write 1m 8"; do
  set -- $spec
  name=$1 rw=$2 bs=$3 qd=$4
  for r in "${ROLES[@]}"; do
    mark begin "$r" "$name"
    fio --name="$name" --filename="${DEV[$r]}" --direct=1 --ioengine=libaio --iodepth="$qd" --rw="$rw" \
      --bs="$bs" --size="$size" --norandommap --randrepeat=0 --time_based --runtime="$runtime" \
      --output-format=json --output="$out/fio-$r-$name.json" > /dev/null 2> "$out/fio-$r-$name.err" ||
      fail "fio $r $name"
    mark end "$r" "$name"
  done
done
iscsiadm -m node -T "$iqn" -p "$portal" --logout > /dev/null 2>&1
echo "VHOST BENCH DONE"
[ ! -s "$out/fail.txt" ]
