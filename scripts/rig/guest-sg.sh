#!/bin/bash
# Runs INSIDE the rig's guest: SCSI pass-through (iscsi-target --lun 0=sg:/dev/sgN) over a
# scsi_debug disk, scored against LIO's pscsi over the same device, in the same guest.
# usage: guest-sg.sh TARGET_BINARY CONFORMANCE_TOOL RESULT_DIR TESTS [SUITE_TIMEOUT_SECS] [BENCH]
# (BENCH=1: after each suite, iscsi-perf random reads, 4 KiB at QD32 and 1 MiB at QD8, 10 s each,
# through our target and through LIO; printed as IOPS and ratios. TCG: compare ratios only.)
# 1. scsi_debug disk; our target on 127.0.0.1:3261 with the sg node as LUN 0; libiscsi's suite
#    (TESTS, a comma list of iscsi-test-cu patterns) with two initiator names;
# 2. LIO (targetcli, pscsi backstore on the scsi_debug block device) on 127.0.0.1:3260, the same
#    tests;
# 3. reservations from two initiators through the kernel initiator (sg_persist on two sessions
#    with different initiator names): the second one's WRITE gets RESERVATION CONFLICT;
# 4. error injection (scsi_debug opts=2: MEDIUM ERROR at LBA 0x1234): the device's sense,
#    byte for byte, reaches the initiator;
# 5. scsi_debug as a tape (ptype=1): the initiator sees a sequential-access device;
# 6. the scsi_debug device deleted under I/O: the target stays up, its RAM LUN 1 keeps
#    serving, LUN 0's commands fail with LOGICAL UNIT NOT SUPPORTED instead of hanging.
# Prints "SG PASSTHROUGH OK" at the end; results and logs in RESULT_DIR.
set -uo pipefail
bin=$1 tool=$2 out=$3 tests=$4 suite_timeout=${5:-900} bench=${6:-0}
IQN=iqn.2026-12.rs.scst:sg
LIQN=iqn.2024-01.rig.lio:pscsi
fail=0
step() { echo "=== $* ($(cut -d' ' -f1 /proc/uptime)s)"; }
bad() { echo "FAIL: $*"; fail=1; }
modprobe -a sg sd_mod iscsi_tcp target_core_mod target_core_pscsi iscsi_target_mod

# sg_of MODEL: the sg node of the scsi_debug device (and its block device, if any).
sg_node() {
  for d in /sys/class/scsi_generic/sg*; do
    grep -q scsi_debug "$d/device/model" 2>/dev/null && { echo "/dev/${d##*/}"; return 0; }
  done
  return 1
}
load_debug() {
  modprobe -r scsi_debug 2>/dev/null
  modprobe scsi_debug dev_size_mb=64 num_tgts=1 max_luns=1 "$@" || return 1
  for _ in $(seq 100); do sg_node > /dev/null && break; sleep 0.1; done
  SG=$(sg_node) || return 1
  SD=$(ls "/sys/class/scsi_generic/${SG#/dev/}/device/block" 2>/dev/null | head -n 1 || true)
  return 0
}
start_ours() {
  local opts=$1; shift
  "$bin" --listen 127.0.0.1:3261 --target "$IQN" --lun "0=sg:$SG$opts" "$@" --log warn \
    > "$out/target.out" 2>> "$out/target.err" &
  PID=$!
  for _ in $(seq 100); do grep -q iscsi:// "$out/target.out" 2>/dev/null && return 0; sleep 0.1; done
  bad "our target did not start"; cat "$out/target.err"; return 1
}
stop_ours() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; PID=; }
score() { tail -n 1 "$1"; }
# perf NAME URL BLOCKS QD: average IOPS of 10 s of random reads.
perf() {
  timeout 10 iscsi-perf -r -m "$4" -b "$3" "$2" > "$out/perf-$1.txt" 2>&1
  tr '\r' '\n' < "$out/perf-$1.txt" | sed -n 's/.*iops average \([0-9]*\).*/\1/p' | tail -n 1
}

step "1. scsi_debug disk, our pass-through target"
load_debug || { echo "FAIL: scsi_debug"; exit 1; }
echo "scsi_debug: $SG ($SD)"
start_ours ""
t0=$(date +%s)
"$tool" "iscsi://127.0.0.1:3261/$IQN/0" "iscsi://127.0.0.1:3261/$IQN/0" --tests "$tests" --timeout "$suite_timeout" --log "$out/ours.log" --json "$out/ours.json" --list \
  > "$out/ours.txt" 2>&1
echo "ours: $(( $(date +%s) - t0 )) s"
if [ "$bench" = 1 ]; then
  O4=$(perf ours-4k "iscsi://127.0.0.1:3261/$IQN/0" 8 32); O1M=$(perf ours-1m "iscsi://127.0.0.1:3261/$IQN/0" 2048 8)
fi
stop_ours

step "2. LIO pscsi on /dev/$SD"
mkdir -p /run/dbus && dbus-daemon --system --fork
targetcli > "$out/targetcli.log" 2>&1 <<TC
set global auto_save_on_exit=false
/backstores/pscsi create name=pt0 dev=/dev/$SD
/iscsi create $LIQN
/iscsi/$LIQN/tpg1/luns create /backstores/pscsi/pt0
/iscsi/$LIQN/tpg1 set attribute authentication=0 demo_mode_write_protect=0 generate_node_acls=1 cache_dynamic_acls=1
TC
t0=$(date +%s)
"$tool" "iscsi://127.0.0.1:3260/$LIQN/0" "iscsi://127.0.0.1:3260/$LIQN/0" --tests "$tests" --timeout "$suite_timeout" --log "$out/lio.log" --json "$out/lio.json" --list \
  > "$out/lio.txt" 2>&1
echo "lio: $(( $(date +%s) - t0 )) s"
if [ "$bench" = 1 ]; then
  L4=$(perf lio-4k "iscsi://127.0.0.1:3260/$LIQN/0" 8 32); L1M=$(perf lio-1m "iscsi://127.0.0.1:3260/$LIQN/0" 2048 8)
  echo "--- benchmark (random reads, IOPS; TCG guest, compare ratios only)"
  ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print(f'{int(a)/int(b):.2f}' if a and b and int(b) else 'n/a')" "$1" "$2"; }
  echo "4 KiB QD32: scst-rs ${O4:-?}  LIO ${L4:-?}  ratio $(ratio "${O4:-}" "${L4:-}")"
  echo "1 MiB QD8:  scst-rs ${O1M:-?}  LIO ${L1M:-?}  ratio $(ratio "${O1M:-}" "${L1M:-}")"
fi
targetcli clearconfig confirm=True > /dev/null 2>&1

echo "--- scores (tests: $tests)"
printf '%-22s %s\n' "scst-rs sg:" "$(score "$out/ours.txt")" "LIO pscsi:" "$(score "$out/lio.txt")"
python3 - "$out/ours.json" "$out/lio.json" <<'PY'
import json, sys
ours = {(r["suite"], r["test"]): r["verdict"] for r in json.load(open(sys.argv[1]))}
lio = {(r["suite"], r["test"]): r["verdict"] for r in json.load(open(sys.argv[2]))}
for k in sorted(set(ours) | set(lio)):
    a, b = ours.get(k, "-"), lio.get(k, "-")
    if a != "passed" or b != "passed":
        print(f"  {k[0]}.{k[1]}: scst-rs {a}, LIO {b}")
worse = [k for k in lio if lio[k] == "passed" and ours.get(k) != "passed"]
print(f"LIO passes, scst-rs does not: {len(worse)}")
sys.exit(1 if worse else 0)
PY
[ $? -eq 0 ] || bad "a test LIO passes does not pass through scst-rs"

step "3. reservations from two initiators (kernel initiator, sg_persist)"
start_ours ""
iscsid
for f in a b; do
  iscsiadm -m iface -I "if$f" -o new > /dev/null
  iscsiadm -m iface -I "if$f" -o update -n iface.initiatorname -v "iqn.2026-12.rs.scst:host-$f" > /dev/null
done
iscsiadm -m discovery -t st -p 127.0.0.1:3261 -I ifa -I ifb > /dev/null
iscsiadm -m node -T "$IQN" -p 127.0.0.1:3261 --login > /dev/null
sleep 1
mapfile -t DEVS < <(lsscsi -t | awk -v iqn="$IQN" 'index($0, iqn) {print $NF}')
echo "iSCSI disks: ${DEVS[*]}"
if [ "${#DEVS[@]}" -ne 2 ]; then
  bad "expected two sessions, got ${#DEVS[*]}"
else
  A=${DEVS[0]} B=${DEVS[1]}
  sg_persist -n --out --register --param-sark=0xa1 "$A"
  sg_persist -n --out --register --param-sark=0xb2 "$B"
  sg_persist -n --out --reserve --param-rk=0xa1 --prout-type=1 "$A"
  sg_persist -n --in --read-keys "$B" | tee "$out/pr-keys.txt"
  sg_persist -n --in --read-reservation "$B" | tee "$out/pr-res.txt"
  grep -q 0xa1 "$out/pr-keys.txt" && grep -q 0xb2 "$out/pr-keys.txt" || bad "READ KEYS from B lacks a key"
  grep -qi "Write Exclusive" "$out/pr-res.txt" || bad "READ RESERVATION from B: no Write Exclusive reservation"
  head -c 512 /dev/urandom > /tmp/blk
  if sg_raw -s 512 -i /tmp/blk "$B" 2a 00 00 00 00 10 00 00 01 00 > "$out/pr-write-b.txt" 2>&1; then
    bad "B's WRITE under A's Write Exclusive reservation succeeded"
  fi
  cat "$out/pr-write-b.txt"
  grep -qi "reservation conflict" "$out/pr-write-b.txt" || bad "B's WRITE: no RESERVATION CONFLICT"
  sg_raw -s 512 -i /tmp/blk "$A" 2a 00 00 00 00 10 00 00 01 00 || bad "the holder's WRITE failed"
  sg_raw -r 512 -o /dev/null "$B" 28 00 00 00 00 10 00 00 01 00 || bad "B's READ (Write Exclusive admits it) failed"
  # The device itself never saw a reservation: the core emulates them.
  sg_persist -n --in --read-keys "$SG" 2>&1 | tee "$out/pr-device.txt"
  # (scsi_debug has no PERSISTENT RESERVE at all: an invalid opcode proves it as well.)
  grep -qiE "no registered reservation keys|invalid opcode|not supported" "$out/pr-device.txt" \
    || bad "reservations reached the device"
  sg_persist -n --out --clear --param-rk=0xa1 "$A"

  step "4. error injection: MEDIUM ERROR from the device reaches the initiator intact"
  echo 2 > /sys/bus/pseudo/drivers/scsi_debug/opts
  sg_raw -vvv -r 512 "$SG" 28 00 00 00 12 34 00 00 01 00 > "$out/medium-direct.txt" 2>&1
  sg_raw -vvv -r 512 "$A" 28 00 00 00 12 34 00 00 01 00 > "$out/medium-iscsi.txt" 2>&1
  echo 0 > /sys/bus/pseudo/drivers/scsi_debug/opts
  cat "$out/medium-iscsi.txt"
  grep -qi "medium error" "$out/medium-iscsi.txt" || bad "no MEDIUM ERROR through the target"
  d=$(grep -iA3 "sense" "$out/medium-direct.txt" | grep -E '^ *[0-9a-f]{2} ' | head -n 2)
  i=$(grep -iA3 "sense" "$out/medium-iscsi.txt" | grep -E '^ *[0-9a-f]{2} ' | head -n 2)
  echo "device sense:    $d"; echo "initiator sense: $i"
  [ -n "$d" ] && [ "$d" = "$i" ] || bad "the sense bytes differ (or were not printed)"
fi
iscsiadm -m node --logout > /dev/null 2>&1
stop_ours

step "5. scsi_debug as a tape (ptype=1)"
load_debug ptype=1 || bad "scsi_debug ptype=1"
start_ours ",timeout=10"
iscsi-inq "iscsi://127.0.0.1:3261/$IQN/0" | tee "$out/tape-inq.txt"
grep -qi "sequential" "$out/tape-inq.txt" || grep -qi "type:0x01\|type:1\b" "$out/tape-inq.txt" || bad "not reported as a tape"
stop_ours

step "6. the device is deleted under I/O"
load_debug || bad "scsi_debug"
start_ours "" --lun 1=ram:16M
U="iscsi://127.0.0.1:3261/$IQN"
timeout 25 iscsi-perf -m 16 -b 8 -n "$U/0" > "$out/perf-delete.txt" 2>&1 &
PERF=$!
sleep 4
hctl=$(ls "/sys/class/scsi_generic/${SG#/dev/}/device/scsi_device/")
echo "deleting $hctl ($SG) under I/O"
echo 1 > "/sys/class/scsi_device/$hctl/device/delete"
sleep 2
kill -0 "$PID" 2>/dev/null || bad "the target died"
iscsi-inq "$U/1" > /dev/null || bad "LUN 1 (RAM) stopped serving"
timeout 20 iscsi-readcapacity16 "$U/0" > "$out/gone.txt" 2>&1
echo "rc=$? $(head -c 300 "$out/gone.txt")"
grep -qi "LOGICAL_UNIT_NOT_SUPPORTED\|not supported" "$out/gone.txt" || bad "LUN 0 after deletion: no LOGICAL UNIT NOT SUPPORTED"
wait "$PERF"; prc=$?
echo "iscsi-perf during the deletion: rc=$prc (124 = still running at 25 s), last lines:"; tail -n 3 "$out/perf-delete.txt"
iscsi-inq "$U/1" > /dev/null || bad "LUN 1 (RAM) stopped serving after the load"
stop_ours

[ $fail -eq 0 ] && echo "SG PASSTHROUGH OK"
exit $fail
