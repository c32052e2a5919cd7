#!/bin/bash
# TCMU + tcm_loop in the rig's VM (../shared/rig or $RIG): our tcmu-target serves a RAM LUN as a
# target_core_user backstore, tcm_loop makes it a guest /dev/sdX, and scripts/rig/guest-tcmu.sh
# checks it (sg_inq, ext4 with fsck and checksums after a remount, fio verify at QD16, configfs
# tear-down).
# usage: scripts/tcmu-loop.sh [TCMU_TARGET_BINARY]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/tcmu-target}
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$RIG/run-vm.sh" ] || { echo "tcmu-loop.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "tcmu-loop.sh: no $BIN (cargo build --release --bin tcmu-target)" >&2; exit 2; }
BIN=$(realpath "$BIN")
W=$(mktemp -d /tmp/scst-tcmu.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$W"' EXIT
mkdir -p "$W/result"
t0=$(date +%s)
rc=0
"$RIG/run-vm.sh" -t "${VM_TIMEOUT:-400}" -s "$W/result" "bash $HERE/rig/guest-tcmu.sh $BIN $W/result" \
  > "$W/guest.log" 2>&1 || rc=$?
if [ $rc -ne 0 ] || ! grep -q "TCMU LOOP OK" "$W/guest.log"; then
  echo "FAIL: guest rc=$rc"; tail -n 40 "$W/guest.log"
  echo "--- target log"; tail -n 20 "$W/result/target.err" 2>/dev/null || true
  exit 1
fi
grep -E "write: IOPS|read: IOPS" "$W/result/fio.txt" || true
echo "tcmu-loop: OK in $(($(date +%s) - t0)) s"
