#!/bin/bash
# Every benchmark of performance round 2 (issue 19) in one run, then one table of its goals with
# the measured ratio of each and whether it is met. Each part is one of the side-by-side scripts
# of this directory; their full output is kept in OUT (default a new /tmp/round2.* directory)
# and repeated here as it runs.
#
# usage: benches/round2.sh [ROUNDS]            (as root: tgtd, losetup, mount, tap)
#   PARTS="nullio disk zerocopy scaling"   parts to run (zerocopy needs the rig: RIG=, default
#                                          ../shared/rig; skipped with a note when it is absent)
#   BIN_DIR=target/release                 iscsi-target and iscsi-soak
#   OUT=DIR                                where each part's output is written
#
# Parts and the goals read from them:
#   nullio    benches/vs-tgtd.sh, NULLIO and a tmpfs FILEIO LUN, every point, then the NULLIO QD1
#             read point again with `--poll-us 200` (polling is off by default: that row says what
#             it buys). Goals of issue 19: 4 KiB QD32 write CPU per I/O <= 0.5x tgtd's, QD1
#             latency <= 0.8x tgtd's; and round 1's, re-measured (none may regress): 4 KiB QD32
#             read CPU per I/O <= 0.5x, rate >= 1.5x with 4 clients and at 1 MiB, QD1 latency <=
#             0.7x, FILEIO ahead of tgtd's rdwr at every point.
#   disk      benches/vs-tgtd-disk.sh with the tcp point: FILEIO O_DIRECT on ext4 over a loop
#             device, 4 KiB QD32 reads and writes: >= 1.5x tgtd's IOPS and >= 0.8x fio's; 1 MiB
#             QD8 page-cached reads: >= 0.75x one loopback TCP stream (iperf3).
#   zerocopy  benches/zero-copy.sh: 1 MiB QD8 page-cached reads by a guest over a tap, target CPU
#             per MiB with zero-copy <= 0.5x without.
#   scaling   benches/scaling.sh: sessions, idle-session memory, 4,096 LUNs (figures, no goal).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${1:-${ROUNDS:-3}}
PARTS=${PARTS:-"nullio disk zerocopy scaling"}
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
RIG=${RIG:-$ROOT/../shared/rig}
OUT=${OUT:-$(mktemp -d /tmp/round2.XXXXXX)}
mkdir -p "$OUT"
[ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
[ -x "$BIN_DIR/iscsi-target" ] && [ -x "$BIN_DIR/iscsi-soak" ] ||
  (cd "$ROOT" && cargo build --release -p scst-examples) || exit 1
T0=$(date +%s)
failed=()

# part NAME CMD...: runs one part, its output to $OUT/NAME.txt and here.
part() {
  local name=$1
  shift
  echo "=== $name: $*"
  if ! "$@" 2>&1 | tee "$OUT/$name.txt"; then
    failed+=("$name")
  fi
  echo
}

for p in $PARTS; do
  case $p in
    nullio)
      part nullio env LUNS="nullio fileio" BIN="$BIN_DIR/iscsi-target" "$HERE/vs-tgtd.sh" "$ROUNDS"
      part nullio-poll env LUNS=nullio POINTS=r4k1 OURS_ARGS="--poll-us 200" BIN="$BIN_DIR/iscsi-target" \
        "$HERE/vs-tgtd.sh" "$ROUNDS" ;;
    disk)
      part disk env POINTS="r4k32 w4k32 r4k1 tcp" BIN="$BIN_DIR/iscsi-target" "$HERE/vs-tgtd-disk.sh" "$ROUNDS" ;;
    zerocopy)
      if [ -x "$RIG/run-vm.sh" ]; then
        part zerocopy env ROUNDS="$ROUNDS" RIG="$RIG" BIN="$BIN_DIR/iscsi-target" "$HERE/zero-copy.sh"
      else
        echo "=== zerocopy: skipped, no rig at $RIG (set RIG=)" | tee "$OUT/zerocopy.txt"
        echo
      fi ;;
    scaling)
      part scaling env BIN_DIR="$BIN_DIR" "$HERE/scaling.sh" ;;
    *) echo "unknown part $p (nullio disk zerocopy scaling)" >&2; exit 1 ;;
  esac
done

echo "=== goals of issue 19 (and round 1's, re-measured), $(date -u +%F), $(nproc) cores"
python3 - "$OUT" << 'PY'
import os, re, sys
out = sys.argv[1]
def rows(name, lun):
    """vs-tgtd.sh rows of one LUN type: point -> (rate, tcpu, lat) ratios ours/tgtd."""
    r = {}
    path = os.path.join(out, name + ".txt")
    if not os.path.exists(path):
        return r
    for line in open(path):
        m = re.match(r"(\w+)\s+(\w+)\s+\|.*\|\s+([\d.]+)x ([\d.]+)x ([\d.]+)x\s*$", line)
        if m and m.group(1) == lun:
            r[m.group(2)] = tuple(map(float, m.group(3, 4, 5)))
    return r
goals = []
def goal(text, value, ok):
    goals.append(f"{text:62} {value:>7}  {'met' if ok else 'NOT met'}")
n, poll, f = rows("nullio", "nullio"), rows("nullio-poll", "nullio"), rows("nullio", "fileio")
if "w4k32" in n:
    goal("nullio 4K QD32 write: CPU/IO <= 0.5x tgtd", f"{n['w4k32'][1]:.2f}x", n["w4k32"][1] <= 0.5)
if "r4k1" in n:
    goal("nullio 4K QD1 read: latency <= 0.8x tgtd (default)", f"{n['r4k1'][2]:.2f}x", n["r4k1"][2] <= 0.8)
if "r4k1" in poll:
    goal("nullio 4K QD1 read: latency <= 0.8x tgtd (--poll-us 200)", f"{poll['r4k1'][2]:.2f}x", poll["r4k1"][2] <= 0.8)
if "r4k32" in n:
    goal("round 1: nullio 4K QD32 read: CPU/IO <= 0.5x tgtd", f"{n['r4k32'][1]:.2f}x", n["r4k32"][1] <= 0.5)
for p, (rate, tcpu, lat) in n.items():
    if p.endswith("x4") or "1m" in p:
        goal(f"round 1: nullio {p} rate >= 1.5x tgtd", f"{rate:.2f}x", rate >= 1.5)
for label, r in (("default", n), ("--poll-us 200", poll)):
    if "r4k1" in r:
        goal(f"round 1: nullio 4K QD1 latency <= 0.7x tgtd ({label})", f"{r['r4k1'][2]:.2f}x", r["r4k1"][2] <= 0.7)
if f:
    worst = min(f, key=lambda p: f[p][0])
    goal(f"round 1: tmpfs FILEIO rate > tgtd rdwr at every point (worst {worst})", f"{f[worst][0]:.2f}x",
         all(v[0] > 1.0 for v in f.values()))
for name in ("disk", "zerocopy"):
    path = os.path.join(out, name + ".txt")
    if not os.path.exists(path):
        continue
    for line in open(path):
        m = re.match(r"goal (\w+)\s+(.*?):\s+([\d.]+x)\s+(met|NOT met)", line)
        if m:
            goals.append(f"{name + ' ' + m.group(1) + ' ' + m.group(2):62} {m.group(3):>7}  {m.group(4)}")
        m = re.search(r"on/off .*CPU/MiB ([\d.]+)x\s+goal CPU/MiB <= 0.5x: (met|NOT met)", line)
        if m:
            goals.append(f"{'zerocopy 1M QD8 cached read: CPU/MiB <= 0.5x copying':62} {m.group(1) + 'x':>7}  {m.group(2)}")
print("\n".join(goals) if goals else "(no goal lines found)")
met = sum(g.endswith(" met") and not g.endswith("NOT met") for g in goals)
print(f"{met} of {len(goals)} goals met")
PY
echo "outputs in $OUT; wall time $(($(date +%s) - T0)) s"
[ ${#failed[@]} -eq 0 ] || { echo "parts that failed: ${failed[*]}"; exit 1; }
