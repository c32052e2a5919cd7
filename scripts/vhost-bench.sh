#!/bin/bash
# A benchmark, not a test: fio in ONE guest boot of the rig (../shared/rig or $RIG) against three
# RAM-backed SCSI disks, and the ratios between them:
#   vhost-user  our vhost-user-scsi-target --lun 0=ram:1G, guest -device vhost-user-scsi-pci
#   iSCSI       our iscsi-target --lun 0=ram:1G on 127.0.0.1, guest open-iscsi via slirp (10.0.2.2)
#   QEMU        QEMU's own virtio-scsi-pci + scsi-hd over a 1 GiB raw file in /dev/shm
#               (cache=none,aio=threads by default: O_DIRECT, so QEMU keeps no cache of its own
#               and the tmpfs pages are the storage, like our ram: LUN; tmpfs has no async I/O,
#               so aio=native would serialise in io_submit and aio=threads is QEMU's natural
#               mode for it. QEMU_CACHE=writeback / QEMU_AIO=io_uring to compare.)
# Points: 4 KiB random read and write at QD32, 1 MiB sequential read and write at QD8; fio in the
# guest, direct=1, libaio, time-based (RUNTIME s each, default 10), over the first SIZE (default
# 256M) of each disk, which is written once before the points. The three disks take turns at each
# point. Also the host CPU (utime+stime of /proc/PID/stat, all threads) of our two target
# processes per I/O, sampled when the guest starts and ends each fio run.
# The guest is TCG-emulated and its vCPU threads share the host's cores with the targets: absolute
# numbers are small and move with the machine's load; read the ratios within one run. iSCSI also
# pays for slirp (QEMU's user-mode TCP/IP), which is not what a real NIC costs; NET=tap (as root)
# gives the guest a second virtio-net NIC on a host tap device instead (192.168.77.0/24, QEMU's
# userspace virtio-net: /dev/vhost-net is not on every host), and the target listens there.
# By default the guest kernel picks each disk's request size limit, as a user's guest would: our
# targets report a 1 MiB optimal transfer length (Block Limits VPD), which Linux adopts as
# max_sectors_kb (1024), QEMU's scsi-hd none (1280 KiB); the guest prints what it chose.
# MAX_SECTORS_KB=N sets N on all three disks instead.
# usage: [NET=slirp|tap] [RUNTIME=10] [SIZE=256M] [BIN_DIR=target/release] [RIG=../shared/rig] scripts/vhost-bench.sh
# Exits non-zero if a disk is missing in the guest or a fio run fails. KEEP=1 keeps the work dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
RIG=${RIG:-$ROOT/../shared/rig}
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-256M}
QEMU_CACHE=${QEMU_CACHE:-none}
QEMU_AIO=${QEMU_AIO:-threads}
QUEUES=${QUEUES:-2}
MAX_SECTORS_KB=${MAX_SECTORS_KB:-}
NET=${NET:-slirp}
VHOST=$BIN_DIR/vhost-user-scsi-target ISCSI=$BIN_DIR/iscsi-target
[ -x "$RIG/run-vm.sh" ] || { echo "vhost-bench.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
for b in "$VHOST" "$ISCSI"; do
  [ -x "$b" ] || { echo "vhost-bench.sh: no $b (cargo build --release, or set BIN_DIR=)" >&2; exit 2; }
done
W=$(mktemp -d /tmp/scst-vhost-bench.XXXXXX)   # under /tmp: the guest sees it
RAW=$(mktemp /dev/shm/scst-vhost-bench.XXXXXX.raw)
VPID= IPID= HELPER= TAP=
cleanup() {
  local p
  for p in $HELPER $VPID $IPID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  [ -z "$TAP" ] || ip link del "$TAP" 2>/dev/null || true
  rm -f "$RAW"
  if [ -n "${KEEP:-}" ]; then echo "work dir kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
t0=$(date +%s)
truncate -s 1G "$RAW"
mkdir -p "$W/result"
SOCK=$W/vus.sock
"$VHOST" --socket "$SOCK" --lun 0=ram:1G --queues "$QUEUES" --log warn > "$W/vhost.out" 2> "$W/vhost.err" &
VPID=$!
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IQN=iqn.2026-12.rs.scst:vhost-bench
case $NET in
  slirp) LISTEN=127.0.0.1 PORTAL=10.0.2.2:$PORT GUESTNET=- NETQ=();;
  tap)
    TAP=scstvb$$
    ip tuntap add dev "$TAP" mode tap && ip addr add 192.168.77.1/24 dev "$TAP" && ip link set "$TAP" up ||
      { echo "vhost-bench.sh: NET=tap needs root and /dev/net/tun" >&2; TAP=; exit 2; }
    LISTEN=192.168.77.1 PORTAL=192.168.77.1:$PORT GUESTNET=52:54:00:77:00:02,192.168.77.2/24
    NETQ=(-q -netdev -q "tap,id=bn,ifname=$TAP,script=no,downscript=no"
          -q -device -q "virtio-net-pci,netdev=bn,mac=${GUESTNET%%,*}");;
  *) echo "vhost-bench.sh: NET=slirp or NET=tap" >&2; exit 2;;
esac
"$ISCSI" --listen "$LISTEN:$PORT" --target "$IQN" --lun 0=ram:1G --log warn > "$W/iscsi.out" 2> "$W/iscsi.err" &
IPID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && grep -q iscsi:// "$W/iscsi.out" 2>/dev/null && break; sleep 0.1; done
[ -S "$SOCK" ] || { echo "FAIL: vhost-user-scsi-target made no socket"; cat "$W/vhost.err"; exit 1; }
grep -q iscsi:// "$W/iscsi.out" || { echo "FAIL: iscsi-target not listening"; cat "$W/iscsi.err"; exit 1; }

# The guest's CPU snapshots: for each mark-N it creates, one line "N <mark> <vhost ticks> <iscsi
# ticks>" (utime+stime, fields 14 and 15 of /proc/PID/stat), then ack-N.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
(
  n=1
  while :; do
    if [ -e "$W/result/mark-$n" ]; then
      echo "$n $(cat "$W/result/mark-$n") $(ticks "$VPID") $(ticks "$IPID")" >> "$W/cpu.txt"
      : > "$W/result/ack-$n"
      n=$((n + 1))
    else
      sleep 0.05
    fi
  done
) &
HELPER=$!

# Boot, three disks' worth of filling and 12 fio runs; generous for a loaded machine.
TMO=$((RUNTIME * 12 * 3 + 600))
rc=0
"$RIG/run-vm.sh" -t "$TMO" --shared-mem -s "$W/result" \
  -q -chardev -q "socket,id=vus,path=$SOCK" -q -device -q "vhost-user-scsi-pci,chardev=vus,num_queues=$QUEUES" \
  -q -device -q "virtio-scsi-pci,id=vs0,num_queues=$QUEUES" \
  -d "file=$RAW,if=none,format=raw,id=d0,cache=$QEMU_CACHE,aio=$QEMU_AIO" \
  -q -device -q "scsi-hd,drive=d0,bus=vs0.0" ${NETQ[@]+"${NETQ[@]}"} \
  "bash $HERE/rig/guest-vhost-bench.sh $PORTAL $IQN $W/result $RUNTIME $SIZE ${MAX_SECTORS_KB:--} $GUESTNET" > "$W/guest.log" 2>&1 || rc=$?
kill "$HELPER" 2>/dev/null; wait "$HELPER" 2>/dev/null || true; HELPER=
t1=$(date +%s)
if [ $rc -ne 0 ] || ! grep -q "VHOST BENCH DONE" "$W/guest.log"; then
  echo "FAIL: guest run rc=$rc"; tail -n 40 "$W/guest.log"
  echo "--- vhost-user-scsi-target log"; tail -n 20 "$W/vhost.err"
  echo "--- iscsi-target log"; tail -n 20 "$W/iscsi.err"
  exit 1
fi
for p in "$VPID" "$IPID"; do kill -0 "$p" 2>/dev/null || { echo "FAIL: a target process died"; exit 1; }; done
sed 's/^/# /' "$W/result/disks.txt"
echo "# NET=$NET RUNTIME=${RUNTIME}s SIZE=$SIZE queues=$QUEUES max_sectors_kb=${MAX_SECTORS_KB:-kernel} QEMU drive cache=$QEMU_CACHE aio=$QEMU_AIO;" \
  "guest run $((t1 - t0))s wall"
python3 - "$W/result" "$W/cpu.txt" "$(getconf CLK_TCK)" <<'PY'
import json, os, sys
res, cpufile, hz = sys.argv[1], sys.argv[2], int(sys.argv[3])
roles = ["vhost", "iscsi", "qemu"]
points = [("4k_randread", "4 KiB rand read QD32"), ("4k_randwrite", "4 KiB rand write QD32"),
          ("1m_read", "1 MiB seq read QD8"), ("1m_write", "1 MiB seq write QD8")]
marks = {}  # (begin|end, role, point) -> (vhost ticks, iscsi ticks)
if os.path.exists(cpufile):
    for l in open(cpufile):
        f = l.split()
        if len(f) == 6:
            marks[(f[1], f[2], f[3])] = (int(f[4]), int(f[5]))
ok, rows = True, []
for p, label in points:
    r = {}
    for role in roles:
        try:
            j = json.load(open(f"{res}/fio-{role}-{p}.json"))["jobs"][0]
            d = j["read"] if j["read"]["io_bytes"] else j["write"]
            if j.get("error") or not d["total_ios"]:
                raise ValueError("fio error")
            r[role] = (d["iops"], d["bw"] / 1024, d["total_ios"])
        except Exception as e:
            print(f"FAIL: no fio result for {role} {p}: {e}", file=sys.stderr)
            ok = False
    cpu = {}
    for i, role in enumerate(["vhost", "iscsi"]):
        b, e = marks.get(("begin", role, p)), marks.get(("end", role, p))
        if b and e and role in r:
            cpu[role] = (e[i] - b[i]) * 1e6 / hz / r[role][2]
    rows.append((p, label, r, cpu))
def val(p, v):
    return v[0] if p.startswith("4k") else v[1]
def fmt(p, v):
    if v is None:
        return "-"
    return f"{v[0]:,.0f} IOPS" if p.startswith("4k") else f"{v[1]:,.1f} MiB/s"
def ratio(p, a, b):
    return f"{val(p, a) / val(p, b):.2f}x" if a and b and val(p, b) else "-"
def us(x):
    return f"{x:,.1f}" if x is not None else "-"
print()
print("| point | vhost-user (ours) | iSCSI (ours) | QEMU virtio-scsi | vhost/iSCSI | vhost/QEMU "
      "| vhost CPU µs/IO | iSCSI CPU µs/IO |")
print("|---|---|---|---|---|---|---|---|")
for p, label, r, cpu in rows:
    v, i, q = r.get("vhost"), r.get("iscsi"), r.get("qemu")
    print(f"| {label} | {fmt(p, v)} | {fmt(p, i)} | {fmt(p, q)} | {ratio(p, v, i)} | {ratio(p, v, q)} "
          f"| {us(cpu.get('vhost'))} | {us(cpu.get('iscsi'))} |")
print("\n(CPU µs/IO: host utime+stime of the target process over the fio run / I/Os completed;"
      f" {1e6 / hz:.0f} µs clock ticks)")
sys.exit(0 if ok else 1)
PY
