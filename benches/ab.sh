#!/bin/bash
# A/B of two iscsi-target command lines on one LUN, in paired, alternating rounds (so that the
# machine's drift hits both): `qemu-img bench` 4 KiB at QD32 (reads, writes) and at QD1 (reads).
# Prints, per point, the median IOPS, target CPU per command (utime+stime from /proc), target
# context switches per command and the client's latency of each side, and the median over the
# rounds' pairs of how A differs from B.
# usage: A="--poll-us 50" B="--poll-us 0" [LUN=nullio:1T] [POINTS="r4k32 w4k32 r4k1"]
#        [ROUNDS=5] [COUNT=150000] [QD1_COUNT=20000] [BIN=target/release/iscsi-target] benches/ab.sh
# Writes the table to stdout; with GOAL_IOPS_COST=0.02 the last line says whether A costs less than
# that share of B's IOPS at every point (benches/stats-cost.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$HERE/..
ROUNDS=${ROUNDS:-5}
COUNT=${COUNT:-150000}
QD1_COUNT=${QD1_COUNT:-20000}
POINTS=${POINTS:-"r4k32 w4k32 r4k1"}
LUN=${LUN:-nullio:1T}
BIN=${BIN:-$ROOT/target/release/iscsi-target}
read -r -a A_ARGS <<< "${A:?set A= to the first side's extra arguments}"
read -r -a B_ARGS <<< "${B?set B= to the second side's extra arguments (may be empty)}"
command -v qemu-img > /dev/null || { echo "missing qemu-img (apt-get install qemu-utils qemu-block-extra)"; exit 1; }
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p scst-examples)
W=$(mktemp -d /tmp/ab.XXXXXX)
PID=
cleanup() { [ -z "$PID" ] || { kill "$PID" 2> /dev/null; wait "$PID" 2> /dev/null || true; }; rm -rf "$W"; }
trap cleanup EXIT
IQN=iqn.2026-12.rs.scst:ab
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HZ=$(getconf CLK_TCK)
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# one SIDE POINT -> appends "iops cpu_us_per_io csw_per_io lat_us" to $W/SIDE-POINT
one() {
  local side=$1 p=$2 flags=() t0 t1 s0 s1 n=$COUNT d=32 args sampler
  case $p in
    w*) flags=(-w --pattern=165) ;;
  esac
  [ "$p" = r4k1 ] && { n=$QD1_COUNT; d=1; }
  if [ "$side" = A ]; then args=("${A_ARGS[@]}"); else args=(${B_ARGS[@]+"${B_ARGS[@]}"}); fi
  "$BIN" --listen "127.0.0.1:$PORT" --target "$IQN" --lun "0=$LUN" ${args[@]+"${args[@]}"} --log warn \
    > "$W/out" 2> "$W/err" &
  PID=$!
  for _ in $(seq 50); do grep -q iscsi:// "$W/out" 2> /dev/null && break; sleep 0.1; done
  python3 "$HERE/csw-sampler.py" "$PID" "$W/csw" &
  sampler=$!
  sleep 0.2
  t0=$(ticks "$PID") s0=$(date +%s.%N)
  qemu-img bench -f raw -t none -n -c "$n" -d "$d" -s 4k "${flags[@]}" "iscsi://127.0.0.1:$PORT/$IQN/0" > "$W/bench" 2>&1
  s1=$(date +%s.%N) t1=$(ticks "$PID")
  kill -TERM "$sampler"; wait "$sampler" || true
  grep -q "Run completed" "$W/bench" || { echo "client failed:"; cat "$W/bench" "$W/err"; exit 1; }
  kill "$PID"; wait "$PID" 2> /dev/null || true; PID=
  python3 -c "c, el, t = $n, $s1 - $s0, ($t1 - $t0) / $HZ; print(f'{c / el:.0f} {t * 1e6 / c:.3f} {$(cat "$W/csw") / c:.3f} {el * 1e6 / c * $d:.1f}')" \
    >> "$W/$side-$p"
}
for r in $(seq "$ROUNDS"); do
  for p in $POINTS; do
    if [ $((r % 2)) = 1 ]; then one A "$p"; one B "$p"; else one B "$p"; one A "$p"; fi
  done
done
printf '%s, %s cores, %s; %s rounds; LUN %s; qemu-img bench 4 KiB, %s commands at QD32, %s at QD1\n' \
  "$(date -u +%F)" "$(nproc)" "$(uname -r)" "$ROUNDS" "$LUN" "$COUNT" "$QD1_COUNT"
printf 'A: %s\nB: %s\n' "${A:-(none)}" "${B:-(none)}"
python3 - "$W" "$POINTS" "${GOAL_IOPS_COST:-}" << 'PY'
import statistics as st, sys
w, points, goal = sys.argv[1], sys.argv[2].split(), sys.argv[3]
def rows(f):
    return [tuple(map(float, l.split())) for l in open(f"{w}/{f}") if l.strip()]
print(f"{'point':6} | {'A: IOPS':>9} {'CPU/IO':>7} {'csw/IO':>6} {'lat us':>7} | {'B: IOPS':>9} {'CPU/IO':>7} "
      f"{'csw/IO':>6} {'lat us':>7} | A/B, median of the pairs (min..max): IOPS; CPU/IO; latency")
worst = -1.0
for p in points:
    a, b = rows(f"A-{p}"), rows(f"B-{p}")
    med = lambda v, i: st.median(x[i] for x in v)
    ratio = lambda i: [x[i] / y[i] for x, y in zip(a, b)]
    fmt = lambda v: f"{st.median(v):.3f}x ({min(v):.2f}..{max(v):.2f})"
    worst = max(worst, 1 - st.median(ratio(0)))
    print(f"{p:6} | {med(a, 0):9.0f} {med(a, 1):7.2f} {med(a, 2):6.3f} {med(a, 3):7.1f} | {med(b, 0):9.0f} "
          f"{med(b, 1):7.2f} {med(b, 2):6.3f} {med(b, 3):7.1f} | {fmt(ratio(0))}; {fmt(ratio(1))}; {fmt(ratio(3))}")
if goal:
    g = float(goal)
    print(f"goal: A costs < {100 * g:.0f}% of B's IOPS: {'met' if worst < g else 'NOT met'} (worst median {100 * worst:+.1f}%)")
PY
