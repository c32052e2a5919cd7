#!/bin/bash
# Where the commands of a 4 KiB QD32 disk point are: ours through iSCSI (qemu-img bench) against
# fio io_uring on the same ext4-on-loop file system, with the whole machine accounted for:
# machine busy time (/proc/stat), the client's CPU (time), our CPU, the loop device's mean queue
# and time per I/O (/proc/diskstats), our receipt-to-response histogram (--metrics, kept in
# $W/metrics.N). docs/performance.md, "where the 32 commands of a disk write are".
#
# usage: benches/disk-breakdown.sh     (root: losetup, mount)
#   MODE=w|r  COUNT=100000  ROUNDS="1 2"  OPTS=,aio=uring (appended to our LUN spec)
#   STRACE=1  also count our system calls (strace -c; slows the target)
#   PERF=1    also perf record our target in round 1 (perf.data in $W)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../target/release/iscsi-target}
MODE=${MODE:-w}
COUNT=${COUNT:-100000}
STRACE=${STRACE:-0}
W=${W:-/tmp/disk-breakdown}; rm -rf $W; mkdir -p $W/mnt
IMG=/var/tmp/disk-breakdown.$$.img
cleanup(){ set +e; [ -n "${OURS:-}" ] && kill $OURS; wait 2>/dev/null; umount $W/mnt; losetup -d $LOOP; rm -f $IMG; }
trap cleanup EXIT
truncate -s 2600M $IMG
LOOP=$(losetup --find --show --direct-io=on $IMG)
mkfs.ext4 -q -F $LOOP; mount $LOOP $W/mnt
for f in ours fio; do fallocate -l 1G $W/mnt/$f.img; dd if=/dev/zero of=$W/mnt/$f.img bs=1M count=1024 conv=notrunc,fsync oflag=direct status=none; done
sync
LD=$(basename $LOOP)
PD=$(lsblk -no pkname $(df --output=source /var/tmp | tail -1) 2>/dev/null || true)
[ -z "$PD" ] && PD=$(basename $(df --output=source /var/tmp | tail -1))
$BIN --listen 127.0.0.1:3299 --target iqn.2026-12.rs.scst:breakdown --lun "0=fileio:$W/mnt/ours.img,direct${OPTS:-}" --metrics 127.0.0.1:9299 --log warn > $W/out 2>$W/err &
OURS=$!
sleep 1
stat_busy(){ awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
dstat(){ awk -v d=$1 '$3==d{print $4+$8, $14, $13}' /proc/diskstats; }  # ios, weighted ms, io_ticks
measure(){ # label cmd...
  local l=$1; shift
  read b0 t0 <<<"$(stat_busy)"; read i0 q0 k0 <<<"$(dstat $LD)"; read pi0 pq0 pk0 <<<"$(dstat $PD)"
  local c0=$(awk '{print $14+$15}' /proc/$OURS/stat)
  local s0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o $W/time "$@" > $W/cmdout 2>&1
  local s1=$(date +%s.%N)
  local c1=$(awk '{print $14+$15}' /proc/$OURS/stat)
  read b1 t1 <<<"$(stat_busy)"; read i1 q1 k1 <<<"$(dstat $LD)"; read pi1 pq1 pk1 <<<"$(dstat $PD)"
  python3 - "$l" $s0 $s1 $b0 $b1 $t0 $t1 $i0 $i1 $q0 $q1 $pi0 $pi1 $pq0 $pq1 $c0 $c1 $(cat $W/time) <<'PY'
import sys
a=sys.argv; l=a[1]; s0,s1=float(a[2]),float(a[3]); el=s1-s0
b=int(a[5])-int(a[4]); t=int(a[7])-int(a[6])
ios=int(a[9])-int(a[8]); q=int(a[11])-int(a[10]); pios=int(a[13])-int(a[12]); pq=int(a[15])-int(a[14])
tc=(int(a[17])-int(a[16]))/100
cu,cs=float(a[18]),float(a[19])
print(f"{l}: {ios/el:.0f} IOPS(loop) sysbusy={b/t*200:.0f}% of 200  loopQ={q/1000/el:.1f} physQ={pq/1000/el:.1f} phys iops={pios/el:.0f}  client cpu/io={(cu+cs)/ios*1e6:.1f}us  target cpu/io={tc/max(ios,1)*1e6:.1f}us  loop lat={q/max(ios,1)*1000:.0f}us")
PY
}
if [ $MODE = w ]; then WF="-w --pattern=165"; FRW=randwrite; else WF=""; FRW=randread; fi
for r in ${ROUNDS:-1 2}; do
if [ ${PERF:-0} = 1 ] && [ $r = 1 ]; then perf record -F 4999 -g -e cpu-clock -o $W/perf.data -p $OURS 2>/dev/null & PP=$!; sleep 0.5; fi
if [ $STRACE = 1 ]; then strace -f -c -o $W/strace -p $OURS & SP=$!; sleep 1; fi
measure "ours" qemu-img bench -f raw -t none -n -c $COUNT -d 32 -s 4096 -S $((162013*4096)) $WF iscsi://127.0.0.1:3299/iqn.2026-12.rs.scst:breakdown/0
curl -s 127.0.0.1:9299/metrics > $W/metrics.$r; if [ ${PERF:-0} = 1 ] && [ $r = 1 ]; then kill -INT $PP; wait $PP || true; fi; if [ $STRACE = 1 ]; then kill -INT $SP; wait $SP || true; head -25 $W/strace; fi
measure "fio " fio --name=f --filename=$W/mnt/fio.img --rw=$FRW --bs=4k --iodepth=32 --ioengine=io_uring --direct=1 --number_ios=$COUNT --size=1G --norandommap --randrepeat=0
done
