#!/bin/bash
# What per-command statistics cost over iSCSI: iscsi-target with `--statistics on` (the default)
# against `--statistics off`, in alternating rounds, on a NULLIO LUN (where the command itself
# costs least, so counting weighs most), `qemu-img bench` 4 KiB at QD32, reads and writes.
# Prints the median IOPS and target CPU per command of each and the cost of counting: how much
# IOPS and CPU per I/O on differ from off. Goal (issue 16): < 2% of 4 KiB QD32 IOPS.
# (benches/benches/stats_cost.rs measures the same in-process, without TCP.)
# usage: [ROUNDS=5] [COUNT=150000] [BIN=target/release/iscsi-target] benches/stats-cost.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$HERE/..
ROUNDS=${ROUNDS:-5}
COUNT=${COUNT:-150000}
BIN=${BIN:-$ROOT/target/release/iscsi-target}
command -v qemu-img > /dev/null || { echo "missing qemu-img (apt-get install qemu-utils qemu-block-extra)"; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p scst-examples)
W=$(mktemp -d /tmp/stats-cost.XXXXXX)
PID=
cleanup() { [ -z "$PID" ] || { kill "$PID" 2> /dev/null; wait "$PID" 2> /dev/null || true; }; rm -rf "$W"; }
trap cleanup EXIT
IQN=iqn.2026-12.rs.scst:stats-cost
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HZ=$(getconf CLK_TCK)
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# one MODE POINT -> appends "iops cpu_us_per_io" to $W/MODE-POINT
one() {
  local mode=$1 p=$2 wflag=() t0 t1 s0 s1
  [ "$p" = w4k32 ] && wflag=(-w --pattern=165)
  "$BIN" --listen "127.0.0.1:$PORT" --target "$IQN" --lun 0=nullio:1T --statistics "$mode" --log warn \
    > "$W/out" 2> "$W/err" &
  PID=$!
  for _ in $(seq 50); do grep -q iscsi:// "$W/out" 2> /dev/null && break; sleep 0.1; done
  t0=$(ticks "$PID") s0=$(date +%s.%N)
  qemu-img bench -f raw -t none -n -c "$COUNT" -d 32 -s 4k "${wflag[@]}" "iscsi://127.0.0.1:$PORT/$IQN/0" > "$W/bench" 2>&1
  s1=$(date +%s.%N) t1=$(ticks "$PID")
  grep -q "Run completed" "$W/bench" || { echo "client failed:"; cat "$W/bench" "$W/err"; exit 1; }
  kill "$PID"; wait "$PID" 2> /dev/null || true; PID=
  python3 -c "import sys; c, el, t = $COUNT, $s1 - $s0, ($t1 - $t0) / $HZ; print(f'{c / el:.0f} {t * 1e6 / c:.3f}')" \
    >> "$W/$mode-$p"
}
for r in $(seq "$ROUNDS"); do
  for p in r4k32 w4k32; do
    # Alternate which goes first, so drift of the machine hits both.
    if [ $((r % 2)) = 1 ]; then one on "$p"; one off "$p"; else one off "$p"; one on "$p"; fi
  done
done
printf '%s, %s cores, %s; %s rounds of %s commands per point and mode, NULLIO, qemu-img bench QD32\n' \
  "$(date -u +%F)" "$(nproc)" "$(uname -r)" "$ROUNDS" "$COUNT"
python3 - "$W" << 'PY'
import statistics, sys
w = sys.argv[1]
def rows(f):
    return [tuple(map(float, l.split())) for l in open(f"{w}/{f}") if l.strip()]
print(f"{'point':7} | {'on: IOPS':>10} {'CPU/IO us':>9} | {'off: IOPS':>10} {'CPU/IO us':>9} "
      f"| cost, median of the rounds' pairs (min..max): IOPS, CPU/IO")
worst = -1.0
for p in ["r4k32", "w4k32"]:
    on, off = rows(f"on-{p}"), rows(f"off-{p}")
    iops = [1 - a[0] / b[0] for a, b in zip(on, off)]
    cpu = [a[1] / b[1] - 1 for a, b in zip(on, off)]
    m = statistics.median(iops)
    worst = max(worst, m)
    pct = lambda v: f"{100 * statistics.median(v):+.1f}% ({100 * min(v):+.1f}..{100 * max(v):+.1f})"
    print(f"{p:7} | {statistics.median(a[0] for a in on):10.0f} {statistics.median(a[1] for a in on):9.2f} "
          f"| {statistics.median(b[0] for b in off):10.0f} {statistics.median(b[1] for b in off):9.2f} | {pct(iops)}, {pct(cpu)}")
print(f"goal: statistics cost < 2% of 4 KiB QD32 IOPS: {'met' if worst < 0.02 else 'NOT met'} (worst median {100 * worst:+.1f}%)")
PY
