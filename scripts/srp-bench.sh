#!/bin/bash
# A benchmark, not a test: fio through Linux's ib_srp over soft-RoCE against our srp-target and
# LIO's ib_srpt in one guest run of the rig (../shared/rig or $RIG), FILEIO LUNs on the guest's
# tmpfs, and the ratios ours/LIO. rxe under TCG emulation is slow and noisy: read the ratios only.
# usage: scripts/srp-bench.sh [SECONDS_PER_LOAD] [SRP_TARGET_BINARY]     (default 10 s)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SECS=${1:-10}
BIN=$(realpath "${2:-$HERE/../target/release/srp-target}")
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$BIN" ] || { echo "srp-bench.sh: no $BIN (cargo build --release -p scst-examples --features rdma)" >&2; exit 2; }
W=$(mktemp -d /tmp/scst-srp-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/result"
"$RIG/run-vm.sh" -t $((SECS * 8 + 240)) -s "$W/result" "bash $HERE/rig/guest-srp-bench.sh $BIN $W/result $SECS" \
  > "$W/guest.log" 2>&1 || { tail -n 40 "$W/guest.log"; exit 1; }
grep -q "SRP BENCH DONE" "$W/guest.log" || { tail -n 40 "$W/guest.log"; exit 1; }
python3 - "$W/guest.log" <<'PY'
import sys
r = {}
for l in open(sys.argv[1]):
    f = l.split()
    if f[:1] == ["BENCH"]:
        r[(f[1], f[2])] = (int(f[3]), int(f[4]))
print(f"{'load':14} {'srp-target':>22} {'LIO ib_srpt':>22} {'ratio':>6}")
for load in ["4k_randread", "4k_randwrite", "1m_read", "1m_write"]:
    o, l = r.get(("ours", load)), r.get(("lio", load))
    if not o or not l:
        print(f"{load:14} missing"); continue
    k = 0 if load.startswith("4k") else 1
    fmt = (lambda v: f"{v[0]} IOPS") if k == 0 else (lambda v: f"{v[1] // 1024} MiB/s")
    ratio = o[k] / l[k] if l[k] else float("nan")
    print(f"{load:14} {fmt(o):>22} {fmt(l):>22} {ratio:6.2f}x")
PY
