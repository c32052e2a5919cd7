#!/bin/bash
# Guest side of benches/zero-copy.sh (runs INSIDE the rig's guest): gives the tap NIC its address,
# then ROUNDS times, for LUN 0 (zero-copy on) and LUN 1 (off) in turn, one `qemu-img bench` of
# COUNT 1 MiB sequential READs at QD8 over libiscsi. Around each run it asks the host for a CPU
# snapshot of the target: it creates OUT/mark-N ("begin|end LUN ROUND") and waits for ack-N.
# Writes OUT/bench-LUN-ROUND.txt (qemu-img's output). Prints "ZERO COPY BENCH DONE" at the end.
# usage: guest-zero-copy.sh PORTAL IQN OUT ROUNDS COUNT MAC,ADDR/PREFIX
set -uo pipefail
portal=$1 iqn=$2 out=$3 rounds=$4 count=$5 nic=$6
ifc=
for i in /sys/class/net/*; do [ "$(cat "$i"/address)" = "${nic%%,*}" ] && ifc=${i##*/}; done
[ -n "$ifc" ] && ip addr add "${nic#*,}" dev "$ifc" && ip link set "$ifc" up || { echo "FAIL nic $nic"; exit 1; }
n=1
mark() {
  echo "$*" > "$out/mark-$n"
  for _ in $(seq 600); do [ -e "$out/ack-$n" ] && break; sleep 0.05; done
  n=$((n + 1))
}
for _ in $(seq 100); do (echo > /dev/tcp/"${portal%:*}"/"${portal#*:}") 2> /dev/null && break; sleep 0.1; done
for r in $(seq "$rounds"); do
  for lun in 0 1; do
    mark begin "$lun" "$r"
    qemu-img bench -f raw -t none -n -c "$count" -d 8 -s 1M -S 1M "iscsi://$portal/$iqn/$lun" \
      > "$out/bench-$lun-$r.txt" 2>&1 || echo "FAIL bench lun $lun round $r"
    mark end "$lun" "$r"
  done
done
echo "ZERO COPY BENCH DONE"
