#!/bin/bash
# Guest side of scripts/tcmu-loop.sh: our tcmu-target as a TCMU backstore behind tcm_loop, the
# LUN as /dev/sdX: sg_inq, ext4 (mkfs, files, fsck, remount, checksums), fio verify at QD16,
# then SIGTERM and a check that the configfs objects are gone.
# usage: guest-tcmu.sh TCMU_TARGET_BINARY RESULT_DIR [ram|blockio]
# blockio: the LUN is a loop device, whose commands run on device workers, so completions reach
# the ring from other threads and out of order.
set -eux
trap '[ $? -eq 0 ] || dmesg | grep -v evm | tail -n 25' EXIT
BIN=$1 OUT=$2 MODE=${3:-ram}
modprobe -a target_core_mod target_core_user tcm_loop sd_mod sg
SPEC=0=ram:128M
if [ "$MODE" = blockio ]; then
  modprobe loop
  truncate -s 128M /tmp/tcmu-backing.img
  SPEC=0=blockio:$(losetup -f --show /tmp/tcmu-backing.img)
fi
"$BIN" --lun "$SPEC" --name scst0 --loopback --core-pr-alua --log info > "$OUT/target.out" 2> "$OUT/target.err" &
PID=$!
for _ in $(seq 300); do grep -q READY "$OUT/target.out" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$OUT/target.out" || { cat "$OUT/target.err"; exit 1; }
DEV=
for _ in $(seq 150); do
  for h in /sys/class/scsi_host/host*; do
    [ "$(cat "$h/proc_name")" = tcm_loopback ] || continue
    for b in "$h"/device/target*/*/block/sd*; do [ -e "$b" ] && DEV=/dev/$(basename "$b"); done
  done
  [ -n "$DEV" ] && [ -b "$DEV" ] && break
  sleep 0.1
done
if [ ! -b "$DEV" ]; then
  echo "no tcm_loop disk"; cat /sys/class/uio/uio*/event; cat /proc/$PID/task/*/wchan; echo
  ls -R /sys/class/scsi_host/host*/device/ | head -20
  kill -TERM "$PID"; sleep 3; cat "$OUT/target.err"; exit 1
fi
sg_inq "$DEV" | tee "$OUT/inq"
grep -q "Vendor identification: SCST_RS" "$OUT/inq"   # our core answered INQUIRY, not LIO
sg_inq -p 0x83 "$DEV" | tee "$OUT/vpd83"
[ "$(blockdev --getsize64 "$DEV")" = $((128 << 20)) ]
# --core-pr-alua: PERSISTENT RESERVE reaches our core (registered key and reservation read back).
# The kernel's own PR state is out of the way (pr/res_holder says Passthrough, not a holder).
[ "$(cat /sys/kernel/config/target/core/user_1/scst0/pr/res_holder)" = Passthrough ]
sg_persist -n -o -G -S 0xabc "$DEV"
sg_persist -n -k "$DEV" | tee "$OUT/pr-keys" | grep -q 0xabc
sg_persist -n -o -R -K 0xabc -T 5 "$DEV"
sg_persist -n -r "$DEV" | tee "$OUT/pr-res" | grep -q "Write Exclusive, registrants only"
sg_persist -n -o -L -K 0xabc -T 5 "$DEV"
sg_persist -n -o -C -K 0xabc "$DEV"
mkfs.ext4 -q -F "$DEV"
mkdir -p /mnt/t
mount "$DEV" /mnt/t
for i in 1 2 3; do head -c $((3 << 20)) /dev/urandom > /mnt/t/f$i; done
(cd /mnt/t && sha256sum f1 f2 f3 > /tmp/sums)
sync
umount /mnt/t
fsck.ext4 -fn "$DEV"
mount "$DEV" /mnt/t
(cd /mnt/t && sha256sum -c /tmp/sums)
umount /mnt/t
fio --name=verify --filename="$DEV" --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
  --size=32M --offset=64M --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$OUT/fio.txt"
grep -q "err= 0" "$OUT/fio.txt"
kill -TERM "$PID"
rc=0; wait "$PID" || rc=$?
[ $rc -eq 0 ] || { echo "target exit status $rc"; cat "$OUT/target.err"; exit 1; }
[ ! -e /sys/kernel/config/target/core/user_1/scst0 ] || { echo "user device left in configfs"; exit 1; }
[ -z "$(ls /sys/kernel/config/target/loopback 2>/dev/null)" ] || { echo "tcm_loop target left in configfs"; exit 1; }
[ ! -b "$DEV" ] || { echo "$DEV still present after tear-down"; exit 1; }
! grep -q ERROR "$OUT/target.err" || { echo "errors in the target log"; cat "$OUT/target.err"; exit 1; }
sed 's/\x1b\[[0-9;]*m//g' "$OUT/target.err" > "$OUT/target.log"
grep "ring stopped" "$OUT/target.log" | grep -q "bad_entries=0"
if [ "$MODE" = blockio ]; then   # completions really came from the device workers
  grep "ring stopped" "$OUT/target.log" | grep -q "async_completions=[1-9]"
fi
tail -n 3 "$OUT/target.log"
echo "TCMU LOOP OK"
