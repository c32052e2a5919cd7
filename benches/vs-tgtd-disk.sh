#!/bin/bash
# FILEIO on a real file system: iscsi-target against tgtd's aio backing store, and both against
# fio with io_uring on the same file system (the limit: no target, no network).
#
# usage: benches/vs-tgtd-disk.sh [ROUNDS]      (run as root: losetup, mount, tgtd)
#   ROUNDS=3               rounds per point (alternating tgtd, ours, fio); the table shows medians
#   POINTS="r4k32 w4k32 r4k1"   subset of those, plus `tcp` (see below; POINTS=tcp runs only it)
#   SCALE=1                multiply every point's command count
#   FS=ext4                or xfs
#   IMG_DIR=/var/tmp       where the sparse image lives (must be on a disk, not tmpfs)
#   OURS_OPTS=             appended to our LUN spec, e.g. OURS_OPTS=,aio=uring
#   CACHED_OPTS=$OURS_OPTS appended to the spec of the page-cached LUN of the `tcp` point
#   BIN=target/release/iscsi-target
#
# Set-up: a sparse image file in IMG_DIR, attached with `losetup --direct-io=on` (the loop
# device reads and writes the image with O_DIRECT, so the data is cached once, in the file
# system above it, not a second time in the image's page cache), mkfs, mounted on a temp dir.
# In it three 1 GiB files, written in full with dd (no holes, no unwritten extents): one for our
# fileio LUN (`,direct` = O_DIRECT), one for tgtd (`--bstype aio`, which always opens its backing
# file with O_DIRECT: bs_aio.c opens O_RDWR|O_LARGEFILE|O_DIRECT, --bsoflags is not needed; the
# script checks the open flags of both targets' files in /proc/PID/fdinfo), one for fio.
#
# Client: `qemu-img bench` (libiscsi, asynchronous, queue depth -d). It has no random mode; its
# requests go to offset, offset+step, ... modulo the image size. The step is 162013 blocks of
# 4 KiB (odd, so the offsets run through all 262144 blocks of the 1 GiB LUN before repeating;
# about 0.618 of the LUN, so any 32 requests in flight lie far apart from each other): no two
# consecutive requests are adjacent, nothing merges, nothing is read ahead. fio's `randread` /
# `randwrite` are truly random. (Debian's fio has no libiscsi engine; libiscsi's iscsi-perf
# does random reads but no writes.)
#
# Points: r4k32 / w4k32 = 4 KiB read / write at queue depth 32, r4k1 = 4 KiB read at QD1
# (latency). fio runs the same block size and depth on its own file for as long as our run took.
#   tcpu/io   the target process's CPU (utime+stime from /proc/PID/stat) per command, in us
#   fio cpu   fio's own CPU (usr+sys) per I/O, in us
# Goals (issue 19): ours >= 1.5x tgtd's IOPS, ours >= 0.8x fio's at the same queue depth.
#
# `tcp` point: one loopback TCP stream with iperf3 (5 s), then 1 MiB sequential READ at QD8 from
# a page-cached 1 GiB file (our fileio LUN without `direct`, on the same file system, read once
# before), MB/s and our CPU per MiB. Goal (issue 19): >= 0.75x the iperf3 stream.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$HERE/..
ROUNDS=${1:-${ROUNDS:-3}}
POINTS=${POINTS:-"r4k32 w4k32 r4k1"}
SCALE=${SCALE:-1}
FS=${FS:-ext4}
IMG_DIR=${IMG_DIR:-/var/tmp}
OURS_OPTS=${OURS_OPTS:-}
CACHED_OPTS=${CACHED_OPTS:-$OURS_OPTS}
BIN=${BIN:-$ROOT/target/release/iscsi-target}
[ "$(id -u)" = 0 ] || { echo "run as root (losetup, mount, tgtd)"; exit 1; }
for c in tgtd tgtadm qemu-img fio python3 losetup "mkfs.$FS"; do
  command -v "$c" > /dev/null || { echo "missing $c (apt-get install tgt qemu-utils qemu-block-extra fio xfsprogs)"; exit 1; }
done
case " $POINTS " in *" tcp "*) command -v iperf3 > /dev/null || { echo "missing iperf3"; exit 1; } ;; esac
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p scst-examples)
[ "$(stat -f -c %T "$IMG_DIR")" != tmpfs ] || { echo "IMG_DIR=$IMG_DIR is tmpfs; pick a directory on a disk"; exit 1; }

W=$(mktemp -d /tmp/vs-tgtd-disk.XXXXXX)
IMG=$IMG_DIR/vs-tgtd-disk.$$.img
MNT=$W/mnt
LOOP= TGTD= OURS= IPERF=
T0=$(date +%s)
cleanup() {
  set +e
  [ -n "$OURS" ] && kill "$OURS" 2> /dev/null
  # tgtd ignores SIGTERM.
  [ -n "$TGTD" ] && kill -9 "$TGTD" 2> /dev/null
  [ -n "$IPERF" ] && kill "$IPERF" 2> /dev/null
  wait 2> /dev/null
  mountpoint -q "$MNT" && umount "$MNT"
  [ -n "$LOOP" ] && losetup -d "$LOOP"
  rm -f "$IMG"
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# tgtadm takes control ports below 32768 only.
free_low_port() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randrange(10000, 32000)
    try:
        s = socket.socket(); s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        pass'
}
HZ=$(getconf CLK_TCK)
IQN_T=iqn.2026-11.rs.scst:vs-tgtd-disk
IQN_O=iqn.2026-11.rs.scst:vs-ours-disk
STEP=$((162013 * 4096))
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# has_point NAME
has_point() { case " $POINTS " in *" $1 "*) return 0 ;; esac; return 1; }
disk_points() { for p in $POINTS; do [ "$p" = tcp ] || echo "$p"; done; }

# --- the file system -------------------------------------------------------------------------
NFILES=3
has_point tcp && NFILES=4
[ -z "$(disk_points)" ] && NFILES=1
truncate -s $((NFILES * 1024 + 512))M "$IMG"
LOOP=$(losetup --find --show --direct-io=on "$IMG")
DIO=$(cat "/sys/block/$(basename "$LOOP")/loop/dio" 2> /dev/null || echo '?')
case $FS in
  xfs) mkfs.xfs -q -f "$LOOP" ;;
  *) mkfs."$FS" -q -F "$LOOP" ;;
esac
mkdir -p "$MNT"
mount "$LOOP" "$MNT"
F_OURS=$MNT/ours.img F_TGTD=$MNT/tgtd.img F_FIO=$MNT/fio.img F_CACHED=$MNT/cached.img
files=()
[ -n "$(disk_points)" ] && files+=("$F_OURS" "$F_TGTD" "$F_FIO")
has_point tcp && files+=("$F_CACHED")
for f in "${files[@]}"; do
  fallocate -l 1G "$f"
  # Written in full: fallocate alone leaves unwritten extents, which read as zeros without
  # touching the disk and turn the first write of every block into a metadata update.
  dd if=/dev/zero of="$f" bs=1M count=1024 conv=notrunc,fsync oflag=direct status=none
done
sync

# --- targets ---------------------------------------------------------------------------------
start_targets() {
  local tp op cp lo=()
  tp=$(free_port) op=$(free_port) cp=$(free_low_port)
  tgtd -f -C "$cp" --iscsi "portal=127.0.0.1:$tp" > "$W/tgtd.log" 2>&1 &
  TGTD=$!
  for _ in $(seq 50); do tgtadm -C "$cp" --lld iscsi --op show --mode target > /dev/null 2>&1 && break; sleep 0.1; done
  tgtadm -C "$cp" --lld iscsi --op new --mode target --tid 1 -T "$IQN_T"
  if [ -n "$(disk_points)" ]; then
    tgtadm -C "$cp" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype aio --backing-store "$F_TGTD"
    lo+=(--lun "0=fileio:$F_OURS,direct$OURS_OPTS")
  fi
  has_point tcp && lo+=(--lun "1=fileio:$F_CACHED$CACHED_OPTS")
  tgtadm -C "$cp" --lld iscsi --op bind --mode target --tid 1 -I ALL
  "$BIN" --listen "127.0.0.1:$op" --target "$IQN_O" "${lo[@]}" --log warn > "$W/ours.out" 2> "$W/ours.err" &
  OURS=$!
  for _ in $(seq 50); do grep -q iscsi:// "$W/ours.out" 2> /dev/null && break; sleep 0.1; done
  grep -q iscsi:// "$W/ours.out" || { echo "iscsi-target did not start:" >&2; cat "$W/ours.err" >&2; exit 1; }
  URL_T=iscsi://127.0.0.1:$tp/$IQN_T/1
  URL_O=iscsi://127.0.0.1:$op/$IQN_O/0
  URL_C=iscsi://127.0.0.1:$op/$IQN_O/1
}

# open_flags PID FILE -> the flags (octal) of PID's open descriptors of FILE, or "not open"
open_flags() {
  local fd out=
  for fd in /proc/"$1"/fd/*; do
    [ "$(readlink "$fd" 2> /dev/null)" = "$2" ] || continue
    out+=" $(awk '/^flags:/ {print $2}' "/proc/$1/fdinfo/${fd##*/}" 2> /dev/null)"
  done
  out=$(tr ' ' '\n' <<< "$out" | sort -u | tr '\n' ' ')
  echo "${out:-not open}"
}
# O_DIRECT is 040000 (octal) on x86-64 and arm64.
# has_odirect FLAGS... -> how many of the descriptors have it
has_odirect() { python3 -c 'import sys; fs=[int(f,8) for f in sys.argv[1:] if f.isdigit()]; print(f"{sum(1 for f in fs if f & 0o40000)} of {len(fs)}")' "$@"; }

# point NAME -> depth size write count
point() {
  case $1 in
    r4k32) echo "32 4096 0 150000" ;;
    w4k32) echo "32 4096 1 150000" ;;
    r4k1) echo "1 4096 0 40000" ;;
    r1m8) echo "8 1048576 0 6000" ;;
    *) echo "unknown point $1" >&2; exit 1 ;;
  esac
}
count_of() { python3 -c "import sys; print(max(1, int(int(sys.argv[1]) * float(sys.argv[2]))))" "$1" "$SCALE"; }

# run PID URL NAME STEP -> prints "rate tcpu_us_per_unit seconds" (rate: IOPS for 4 KiB, MB/s
# for 1 MiB; tcpu per command for 4 KiB, per MiB for 1 MiB)
run() {
  local pid=$1 url=$2 step=$4 depth size write count wflag=() t0 t1 s0 s1
  read -r depth size write count <<< "$(point "$3")"
  count=$(count_of "$count")
  [ "$write" = 1 ] && wflag=(-w --pattern=165)
  t0=$(ticks "$pid")
  s0=$(date +%s.%N)
  qemu-img bench -f raw -t none -n -c "$count" -d "$depth" -s "$size" -S "$step" "${wflag[@]}" "$url" > "$W/bench" 2>&1 || true
  s1=$(date +%s.%N)
  t1=$(ticks "$pid")
  grep -q "Run completed" "$W/bench" || { echo "client failed ($3 on $url):" >&2; cat "$W/bench" >&2; exit 1; }
  python3 - "$count" "$size" "$s0" "$s1" "$((t1 - t0))" "$HZ" << 'PY'
import sys
count, size = int(sys.argv[1]), int(sys.argv[2])
el, ticks, hz = float(sys.argv[4]) - float(sys.argv[3]), int(sys.argv[5]), int(sys.argv[6])
cpu_us = ticks / hz * 1e6
if size <= 4096:
    print(f"{count / el:.1f} {cpu_us / count:.2f} {el:.3f}")
else:
    print(f"{count * size / el / 1e6:.1f} {cpu_us / (count * size / 2**20):.2f} {el:.3f}")
PY
}

# run_fio NAME SECONDS -> prints "iops cpu_us_per_io"
run_fio() {
  local depth size write count rw=randread
  read -r depth size write count <<< "$(point "$1")"
  [ "$write" = 1 ] && rw=randwrite
  fio --name=limit --filename="$F_FIO" --ioengine=io_uring --direct=1 --rw=$rw --bs="$size" \
    --iodepth="$depth" --time_based --runtime="$2" --output-format=json > "$W/fio.json" 2> "$W/fio.err" \
    || { echo "fio failed:" >&2; cat "$W/fio.err" >&2; exit 1; }
  python3 - "$W/fio.json" "$rw" << 'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["read" if sys.argv[2] == "randread" else "write"]
ios, secs = d["total_ios"], d["runtime"] / 1000
cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] / 1000
print(f"{ios / secs:.1f} {cpu * 1e6 / ios:.2f}")
PY
}

med() { # FILE COLUMN(1-based) -> median
  python3 -c 'import statistics, sys; print(statistics.median(float(l.split()[int(sys.argv[2]) - 1]) for l in open(sys.argv[1]) if l.strip()))' "$1" "$2"
}

start_targets
printf '%s, %s cores, %s; tgtd %s; qemu-img %s; fio %s\n' "$(date -u +%F)" "$(nproc)" "$(uname -r)" \
  "$(tgtd -V 2> /dev/null | head -1)" "$(qemu-img --version | head -1 | awk '{print $3}')" "$(fio --version)"
printf 'image %s on %s (%s), %s, loop dio=%s; %s on %s; ours: fileio%s%s\n' "$IMG" \
  "$(findmnt -n -o SOURCE -T "$IMG_DIR")" "$(findmnt -n -o FSTYPE -T "$IMG_DIR")" "$LOOP" "$DIO" "$FS" "$MNT" \
  "${OURS_OPTS:+ $OURS_OPTS}" "$(has_point tcp && echo "; cached LUN: fileio$CACHED_OPTS")"

if [ -n "$(disk_points)" ]; then
  # Warm-up (the first login, the first touch of the files) and the O_DIRECT check.
  qemu-img bench -f raw -t none -n -c 2000 -d 32 -s 4096 -S "$STEP" "$URL_T" > /dev/null 2>&1 || true
  qemu-img bench -f raw -t none -n -c 2000 -d 32 -s 4096 -S "$STEP" "$URL_O" > /dev/null 2>&1 || true
  ft=$(open_flags "$TGTD" "$F_TGTD") fo=$(open_flags "$OURS" "$F_OURS")
  # Ours keeps a buffered descriptor next to the O_DIRECT one, for transfers that are not
  # 4 KiB-aligned; every request here is.
  printf 'open flags (octal): tgtd %s-> O_DIRECT on %s; ours %s-> O_DIRECT on %s\n' "$ft" \
    "$(has_odirect $ft)" "$fo" "$(has_odirect $fo)"
  grep -m1 -o 'open .*O_DIRECT[^,]*' "$W/tgtd.log" | sed 's/^/tgtd log: /' || true
  echo
  printf '%-6s | %9s %9s %9s | %9s %8s | %-24s | %s\n' point "tgtd IOPS" "ours IOPS" "fio IOPS" \
    ours/tgtd ours/fio "tcpu/io us: tgtd ours o/t" "fio cpu/io"
  goals=()
  for p in $(disk_points); do
    : > "$W/res.t"
    : > "$W/res.o"
    : > "$W/res.f"
    for _ in $(seq "$ROUNDS"); do
      run "$TGTD" "$URL_T" "$p" "$STEP" >> "$W/res.t"
      run "$OURS" "$URL_O" "$p" "$STEP" >> "$W/res.o"
      secs=$(tail -1 "$W/res.o" | awk '{s = int($3 + 0.5); print s < 1 ? 1 : s}')
      run_fio "$p" "$secs" >> "$W/res.f"
    done
    read -r ti tc oi oc fi fc <<< "$(med "$W/res.t" 1) $(med "$W/res.t" 2) $(med "$W/res.o" 1) $(med "$W/res.o" 2) $(med "$W/res.f" 1) $(med "$W/res.f" 2)"
    python3 - "$p" "$ti" "$tc" "$oi" "$oc" "$fi" "$fc" << 'PY'
import sys
p = sys.argv[1]
ti, tc, oi, oc, fi, fc = map(float, sys.argv[2:])
print(f"{p:6} | {ti:9.0f} {oi:9.0f} {fi:9.0f} | {oi / ti:8.2f}x {oi / fi:7.2f}x | {tc:7.2f} {oc:7.2f} {oc / tc:6.2f}x | {fc:7.2f}", flush=True)
if p.endswith("k1"):
    print(f"{'':6}   QD1 latency us: tgtd {1e6 / ti:.1f}, ours {1e6 / oi:.1f}, fio {1e6 / fi:.1f}", flush=True)
PY
    goals+=("$p $ti $oi $fi")
  done
  echo
  for g in "${goals[@]}"; do
    read -r p ti oi fi <<< "$g"
    python3 - "$p" "$ti" "$oi" "$fi" << 'PY'
import sys
p = sys.argv[1]
ti, oi, fi = map(float, sys.argv[2:])
m = lambda ok: "met" if ok else "NOT met"
print(f"goal {p:6} ours >= 1.5x tgtd IOPS: {oi / ti:5.2f}x  {m(oi >= 1.5 * ti)}")
print(f"goal {p:6} ours >= 0.8x fio IOPS:  {oi / fi:5.2f}x  {m(oi >= 0.8 * fi)}")
PY
  done
fi

if has_point tcp; then
  echo
  ip=$(free_port)
  iperf3 -s -B 127.0.0.1 -p "$ip" > "$W/iperf.srv" 2>&1 &
  IPERF=$!
  for _ in $(seq 50); do ss -ltn | grep -q "127.0.0.1:$ip " && break; sleep 0.1; done
  : > "$W/res.i"
  : > "$W/res.c"
  # Into the page cache (it was written with O_DIRECT, so it is not there yet).
  cat "$F_CACHED" > /dev/null
  qemu-img bench -f raw -t none -n -c 200 -d 8 -s 1M "$URL_C" > /dev/null 2>&1 || true
  for _ in $(seq "$ROUNDS"); do
    # The default (128 KiB writes), which the goal refers to, and 1 MiB writes, the size of our
    # Data-In bursts here.
    iperf3 -c 127.0.0.1 -p "$ip" -t 5 -J > "$W/iperf.json"
    iperf3 -c 127.0.0.1 -p "$ip" -t 5 -l 1M -J > "$W/iperf1m.json"
    python3 -c 'import json, sys; print(*(json.load(open(f))["end"]["sum_received"]["bits_per_second"] for f in sys.argv[1:]))' \
      "$W/iperf.json" "$W/iperf1m.json" >> "$W/res.i"
    run "$OURS" "$URL_C" r1m8 1048576 >> "$W/res.c"
  done
  kill "$IPERF" 2> /dev/null || true
  wait "$IPERF" 2> /dev/null || true
  IPERF=
  read -r bps bps1m cmb ccpu <<< "$(med "$W/res.i" 1) $(med "$W/res.i" 2) $(med "$W/res.c" 1) $(med "$W/res.c" 2)"
  python3 - "$bps" "$bps1m" "$cmb" "$ccpu" << 'PY'
import sys
bps, bps1m, cmb, ccpu = map(float, sys.argv[1:])
tcp, tcp1m = bps / 8 / 1e6, bps1m / 8 / 1e6
print(f"iperf3, one loopback TCP stream, 5 s:          {bps / 1e9:6.2f} Gbit/s = {tcp:6.0f} MB/s")
print(f"iperf3, one loopback TCP stream, 5 s, -l 1M:   {bps1m / 1e9:6.2f} Gbit/s = {tcp1m:6.0f} MB/s")
print(f"ours, 1 MiB QD8 sequential READ, page-cached:  {cmb * 8 / 1e3:6.2f} Gbit/s = {cmb:6.0f} MB/s, target CPU {ccpu:.0f} us/MiB")
print(f"goal tcp    ours >= 0.75x one TCP stream: {cmb / tcp:5.2f}x  {'met' if cmb >= 0.75 * tcp else 'NOT met'}"
      f"   (vs -l 1M: {cmb / tcp1m:.2f}x)")
PY
fi
echo
echo "rounds $ROUNDS, scale $SCALE, wall time $(($(date +%s) - T0)) s"
