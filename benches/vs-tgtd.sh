#!/bin/bash
# Side-by-side: iscsi-target against tgtd (STGT) on this machine, same clients, same LUN type.
#
# usage: benches/vs-tgtd.sh [ROUNDS]           (run as root: tgtd needs it)
#   LUNS="nullio fileio"   LUN types to compare (fileio: a 1 GiB file in /dev/shm, tgtd's rdwr)
#   POINTS="..."           subset of: r4k32 w4k32 r4k32x4 w4k32x4 r1m8 w1m8 r4k1
#   SCALE=1                multiply every point's command count (shorter or longer runs)
#   BIN=target/release/iscsi-target
#   OURS_ARGS="..."        extra arguments of iscsi-target (e.g. "--poll-us 200")
#
# Each point runs `qemu-img bench` (an asynchronous initiator with a queue depth) against tgtd
# and iscsi-target in alternating rounds; the table shows medians over the rounds:
#   rate        IOPS (4 KiB) or MB/s (1 MiB) summed over the clients
#   tcpu/io     the target process's CPU (utime+stime from /proc/PID/stat) per command, in us
#   ccpu/io     the clients' CPU per command, in us
#   csw/io      the target's context switches per command (sampled from /proc/PID/task)
#   lat         QD1 points: microseconds per command; below each QD1 point, our target-side
#               time per command (the core's receipt to response ready, from our --metrics
#               latency histogram) as a distribution, beside the client's latency
# and, per point, the ratio ours/tgtd for each. Goals (issue 6): tcpu/io <= 0.5x, rate >= 1.5x
# with 4 clients and at 1 MiB, QD1 latency <= 0.7x.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$HERE/..
ROUNDS=${1:-3}
LUNS=${LUNS:-"nullio fileio"}
POINTS=${POINTS:-"r4k32 w4k32 r4k32x4 w4k32x4 r1m8 w1m8 r4k1"}
SCALE=${SCALE:-1}
BIN=${BIN:-$ROOT/target/release/iscsi-target}
read -r -a OURS_ARGS <<< "${OURS_ARGS:-}"
[ "$(id -u)" = 0 ] || { echo "run as root (tgtd)"; exit 1; }
for c in tgtd tgtadm qemu-img python3; do command -v $c > /dev/null || { echo "missing $c (apt-get install tgt qemu-utils qemu-block-extra)"; exit 1; }; done
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p scst-examples)

W=$(mktemp -d /tmp/vs-tgtd.XXXXXX)
SHM=$(mktemp -d /dev/shm/vs-tgtd.XXXXXX)
TGTD= OURS=
cleanup() {
  [ -n "$OURS" ] && kill "$OURS" 2> /dev/null || true
  # tgtd ignores SIGTERM.
  [ -n "$TGTD" ] && kill -9 "$TGTD" 2> /dev/null || true
  wait 2> /dev/null || true
  rm -rf "$W" "$SHM"
}
trap cleanup EXIT
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
IQN_T=iqn.2026-11.rs.scst:vs-tgtd
IQN_O=iqn.2026-11.rs.scst:vs-ours

start_targets() { # LUN type
  local lun=$1
  [ -n "$OURS" ] && { kill "$OURS"; wait "$OURS" 2> /dev/null || true; }
  [ -n "$TGTD" ] && { kill -9 "$TGTD"; wait "$TGTD" 2> /dev/null || true; }
  local tp op cp
  tp=$(free_port) op=$(free_port) cp=$(free_low_port)
  tgtd -f -C "$cp" --iscsi "portal=127.0.0.1:$tp" > "$W/tgtd.log" 2>&1 &
  TGTD=$!
  for _ in $(seq 50); do tgtadm -C "$cp" --lld iscsi --op show --mode target > /dev/null 2>&1 && break; sleep 0.1; done
  tgtadm -C "$cp" --lld iscsi --op new --mode target --tid 1 -T "$IQN_T"
  case $lun in
    nullio)
      tgtadm -C "$cp" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype null --backing-store /dev/null
      spec=0=nullio:1T ;;
    fileio)
      truncate -s 1G "$SHM/t.img" "$SHM/o.img"
      # Written once so that reads hit allocated pages on both.
      dd if=/dev/zero of="$SHM/t.img" bs=1M count=1024 conv=notrunc status=none
      dd if=/dev/zero of="$SHM/o.img" bs=1M count=1024 conv=notrunc status=none
      tgtadm -C "$cp" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype rdwr --backing-store "$SHM/t.img"
      spec=0=fileio:$SHM/o.img ;;
  esac
  tgtadm -C "$cp" --lld iscsi --op bind --mode target --tid 1 -I ALL
  mp=$(free_port)
  "$BIN" --listen "127.0.0.1:$op" --target "$IQN_O" --lun "$spec" --metrics "127.0.0.1:$mp" \
    ${OURS_ARGS[@]+"${OURS_ARGS[@]}"} --log warn > "$W/ours.out" 2> "$W/ours.err" &
  OURS=$!
  for _ in $(seq 50); do grep -q iscsi:// "$W/ours.out" 2> /dev/null && break; sleep 0.1; done
  URL_T=iscsi://127.0.0.1:$tp/$IQN_T/1
  URL_O=iscsi://127.0.0.1:$op/$IQN_O/0
  METRICS_O=http://127.0.0.1:$mp/metrics
}

# scrape FILE: our latency histograms (GET /metrics), kept for `histogram`.
scrape() {
  python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "$METRICS_O" > "$1"
}

# histogram BEFORE AFTER POINT CLIENT_LAT_US: the target's own time per command between two
# scrapes (from the core's receipt of a command to its response being ready to send), as a
# distribution, beside the client's latency per command: what the target owns of a round trip.
histogram() {
  python3 - "$@" << 'PY'
import re, sys
def load(path):
    b, s, c = {}, 0.0, 0
    for l in open(path):
        m = re.match(r'scst_device_latency_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)', l)
        if not m:
            continue
        kind, labels, v = m.group(1), m.group(2), float(m.group(3))
        if kind == "bucket":
            le = re.search(r'le="([^"]+)"', labels).group(1)
            b[le] = b.get(le, 0) + v
        elif kind == "sum":
            s += v
        else:
            c += v
    return b, s, c
(b0, s0, c0), (b1, s1, c1) = load(sys.argv[1]), load(sys.argv[2])
n = c1 - c0
if n <= 0:
    print(f"  {sys.argv[3]}: no commands counted (statistics off?)")
    sys.exit()
les = sorted(b1, key=lambda x: float("inf") if x == "+Inf" else float(x))
prev, lo, parts = 0.0, 0, []
for le in les:
    cum = b1[le] - b0.get(le, 0)
    k = cum - prev
    prev = cum
    hi = "inf" if le == "+Inf" else f"{float(le) * 1e6:.0f}"
    if k > 0:
        parts.append(f"{lo}-{hi} us {100 * k / n:.1f}%")
    lo = hi
mean = (s1 - s0) / n * 1e6
lat = float(sys.argv[4])
print(f"  {sys.argv[3]} ours, target-side time per command: mean {mean:.1f} us of the client's {lat:.1f} us "
      f"({100 * mean / lat:.0f}%); " + ", ".join(parts))
PY
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# point NAME -> clients depth size write count
point() {
  local n=$((SCALE))
  case $1 in
    r4k32) echo "1 32 4096 0 $((150000 * n))" ;;
    w4k32) echo "1 32 4096 1 $((150000 * n))" ;;
    r4k32x4) echo "4 32 4096 0 $((50000 * n))" ;;
    w4k32x4) echo "4 32 4096 1 $((50000 * n))" ;;
    r1m8) echo "1 8 1048576 0 $((6000 * n))" ;;
    w1m8) echo "1 8 1048576 1 $((4000 * n))" ;;
    r4k1) echo "1 1 4096 0 $((40000 * n))" ;;
    *) echo "unknown point $1" >&2; exit 1 ;;
  esac
}

# run PID URL NAME -> prints "rate tcpu_us ccpu_us csw lat_us"
run() {
  local pid=$1 url=$2
  read -r clients depth size write count <<< "$(point "$3")"
  local wflag=() pids=() sampler
  [ "$write" = 1 ] && wflag=(-w)
  # Context switches: the target's threads come and go with connections, so a sampler keeps
  # the last count seen of every thread (a thread's final few switches may be missed).
  python3 "$HERE/csw-sampler.py" "$pid" "$W/csw" &
  sampler=$!
  sleep 0.2
  local t0 s0 s1 t1
  t0=$(ticks "$pid")
  s0=$(date +%s.%N)
  for c in $(seq "$clients"); do
    /usr/bin/time -f "%U %S" -o "$W/client.$c" \
      qemu-img bench -f raw -t none -c "$count" -d "$depth" -s "$size" "${wflag[@]}" "$url" > "$W/bench.$c" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  s1=$(date +%s.%N)
  t1=$(ticks "$pid")
  kill -TERM "$sampler"
  wait "$sampler" || true
  for c in $(seq "$clients"); do
    grep -q "Run completed" "$W/bench.$c" || { echo "client failed:" >&2; cat "$W/bench.$c" >&2; exit 1; }
  done
  local ccpu csw
  ccpu=$(cat "$W"/client.* | awk '{s += $1 + $2} END {print s}')
  rm -f "$W"/client.* "$W"/bench.*
  csw=$(cat "$W/csw" 2> /dev/null || true)
  python3 - "$clients" "$count" "$size" "$s0" "$s1" "$((t1 - t0))" "$HZ" "$ccpu" "${csw:-nan}" << 'PY'
import sys
clients, count, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s0, s1, ticks, hz, ccpu = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
try:
    csw = float(sys.argv[9])
except ValueError:
    csw = float("nan")
ops = clients * count
el = s1 - s0
rate = ops / el if size <= 4096 else ops * size / el / 1e6
print(f"{rate:.1f} {ticks / hz * 1e6 / ops:.2f} {ccpu * 1e6 / ops:.2f} {csw / ops:.3f} {el * 1e6 / count:.1f}")
PY
}

printf '%s, %s cores, %s; tgtd %s; qemu-img %s\n' "$(date -u +%F)" "$(nproc)" "$(uname -r)" \
  "$(tgtd -V 2> /dev/null | head -1)" "$(qemu-img --version | head -1 | awk '{print $3}')"
printf '%-7s %-8s | %-38s | %-38s | %s\n' lun point "tgtd: rate tcpu/io ccpu/io csw/io lat" \
  "ours: rate tcpu/io ccpu/io csw/io lat" "ours/tgtd: rate tcpu lat"
for lun in $LUNS; do
  start_targets "$lun"
  for p in $POINTS; do
    : > "$W/res.t"
    : > "$W/res.o"
    scrape "$W/m0"
    for _ in $(seq "$ROUNDS"); do
      run "$TGTD" "$URL_T" "$p" >> "$W/res.t"
      run "$OURS" "$URL_O" "$p" >> "$W/res.o"
    done
    python3 - "$lun" "$p" "$W/res.t" "$W/res.o" << 'PY'
import statistics, sys
lun, p = sys.argv[1], sys.argv[2]
def med(path):
    rows = [list(map(float, l.split())) for l in open(path) if l.strip()]
    return [statistics.median(c) for c in zip(*rows)]
t, o = med(sys.argv[3]), med(sys.argv[4])
unit = "MB/s" if "1m" in p else "IOPS"
f = lambda r: f"{r[0]:>9.0f} {unit:4} {r[1]:6.2f} {r[2]:6.2f} {r[3]:5.2f} {r[4]:7.1f}"
print(f"{lun:7} {p:8} | {f(t)} | {f(o)} | {o[0] / t[0]:4.2f}x {o[1] / t[1]:4.2f}x {o[4] / t[4]:4.2f}x", flush=True)
PY
    scrape "$W/m1"
    read -r _ depth _ <<< "$(point "$p")"
    if [ "$depth" = 1 ]; then
      histogram "$W/m0" "$W/m1" "$lun $p" "$(awk '{print $5}' "$W/res.o" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')"
    fi
  done
done
