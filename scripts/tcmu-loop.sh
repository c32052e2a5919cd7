#!/bin/bash
# TCMU + tcm_loop in the rig's VM (../shared/rig or $RIG): our tcmu-target serves a RAM LUN as a
# target_core_user backstore, tcm_loop makes it a guest /dev/sdX, and scripts/rig/guest-tcmu.sh
# checks it (sg_inq, ext4 with fsck and checksums after a remount, fio verify at QD16, configfs
# tear-down), once with a RAM LUN and once with a BLOCKIO LUN on a loop device.
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
for mode in ram blockio; do   # blockio: completions from device workers, out of order
  R=$W/result/$mode
  mkdir -p "$R"
  rc=0
  "$RIG/run-vm.sh" -t "${VM_TIMEOUT:-400}" -s "$R" "bash $HERE/rig/guest-tcmu.sh $BIN $R $mode" \
    > "$W/guest-$mode.log" 2>&1 || rc=$?
  if [ $rc -ne 0 ] || ! grep -q "TCMU LOOP OK" "$W/guest-$mode.log"; then
    echo "FAIL ($mode): guest rc=$rc"; tail -n 40 "$W/guest-$mode.log"
    echo "--- target log"; tail -n 20 "$R/target.err" 2>/dev/null || true
    exit 1
  fi
  echo "$mode:"; grep -E "write: IOPS|read: IOPS" "$R/fio.txt" || true
done
echo "tcmu-loop: OK in $(($(date +%s) - t0)) s"
