#!/bin/bash
# Guest side of scripts/srp-bench.sh: fio through Linux's ib_srp over rxe against our srp-target
# and LIO's ib_srpt, both with a FILEIO LUN on the guest's tmpfs. Prints "BENCH <target> <load>
# <iops> <bw KiB/s>" lines and "SRP BENCH DONE".
# usage: guest-srp-bench.sh SRP_TARGET_BINARY RESULT_DIR SECONDS
set -u
BIN=$1 RES=$2 SECS=${3:-10}
GUID=0002c90300abcdef
modprobe -a rdma_rxe ib_uverbs ib_umad rdma_cm sd_mod sg ib_srp target_core_mod target_core_file ib_srpt || exit 1
rdma link add rxe0 type rxe netdev eth0 || exit 1
disks() { ls /sys/class/scsi_disk 2>/dev/null; }
login() { # GUID PORT
  local d
  for _ in $(seq 50); do
    echo "id_ext=$1,ioc_guid=$1,dest=10.0.2.15:$2" > /sys/class/infiniband_srp/srp-rxe0-1/add_target 2>/dev/null && break
    sleep 0.1
  done
  for _ in $(seq 200); do
    d=$(disks | head -n1)
    [ -n "$d" ] && [ -d /sys/class/scsi_disk/$d/device/block ] && break
    sleep 0.1
  done
  DEV=/dev/$(ls /sys/class/scsi_disk/$d/device/block | head -n1)
  for _ in $(seq 50); do [ -b "$DEV" ] && return 0; sleep 0.1; done
  return 1
}
logout() {
  for p in /sys/class/srp_remote_ports/*; do [ -e "$p/delete" ] && echo 1 > "$p/delete"; done
  for _ in $(seq 300); do [ -z "$(disks)" ] && [ -z "$(ls /sys/class/srp_remote_ports 2>/dev/null)" ] && return 0; sleep 0.1; done
}
bench() { # TARGET
  local t=$1 name rw bs qd out
  for spec in "4k_randread randread 4k 32" "4k_randwrite randwrite 4k 32" "1m_read read 1m 8" "1m_write write 1m 8"; do
    set -- $spec
    name=$1 rw=$2 bs=$3 qd=$4
    out=$RES/fio-$t-$name.json
    fio --name="$name" --filename="$DEV" --direct=1 --ioengine=libaio --iodepth="$qd" --rw="$rw" --bs="$bs" \
      --size=200M --time_based --runtime="$SECS" --ramp_time=1 --output-format=json --output="$out" > /dev/null 2>&1
    python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))["jobs"][0]
d=j["read"] if j["read"]["io_bytes"] else j["write"]
print("BENCH", sys.argv[2], sys.argv[3], int(d["iops"]), int(d["bw"]))' "$out" "$t" "$name"
  done
}
truncate -s 256M /tmp/ours.img
"$BIN" --listen 10.0.2.15:5555 --guid $GUID --lun 0=fileio:/tmp/ours.img --queue-depth 64 --log warn \
  > /tmp/srp-target.out 2> "$RES/target.err" &
TPID=$!
for _ in $(seq 100); do grep -q dest= /tmp/srp-target.out && break; sleep 0.1; done
login $GUID 5555 && bench ours
logout
kill -TERM $TPID; wait $TPID
C=/sys/kernel/config/target
truncate -s 256M /tmp/lio.img
mkdir -p $C/core/fileio_0/disk0
echo "fd_dev_name=/tmp/lio.img,fd_dev_size=$((256 << 20))" > $C/core/fileio_0/disk0/control
echo 1 > $C/core/fileio_0/disk0/enable
mkdir -p $C/srpt
echo 5556 > $C/srpt/discovery_auth/rdma_cm_port
gid=$(cat /sys/class/infiniband/rxe0/ports/1/gids/0)
port=${gid#fe80:0000:0000:0000:}
tpg=$C/srpt/$port/$port
mkdir -p $tpg/lun/lun_0
ln -s $C/core/fileio_0/disk0 $tpg/lun/lun_0/disk0
mkdir -p $tpg/acls/10.0.2.15/lun_0
ln -s $tpg/lun/lun_0 $tpg/acls/10.0.2.15/lun_0/lun0
echo 1 > $tpg/enable
LG=$(cat /sys/module/ib_srpt/parameters/srpt_service_guid)
login ${LG#0x} 5556 && bench lio
logout
echo "SRP BENCH DONE"
