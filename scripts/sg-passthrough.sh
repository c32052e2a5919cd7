#!/bin/bash
# SCSI pass-through (iscsi-target --lun 0=sg:/dev/sgN) over scsi_debug, in the rig's VM
# (../shared/rig or $RIG), scored with libiscsi's suite side by side with LIO's pscsi over the
# same device; then reservations from two initiators, scsi_debug error injection and a tape.
# usage: scripts/sg-passthrough.sh [TARGET_BINARY]     (build: cargo build --release -p scst-examples)
#   TESTS=PATTERNS   iscsi-test-cu patterns, comma-separated (default: the subset below; ALL for
#                    the whole suite, which under TCG takes much longer)
#   SUITE_TIMEOUT=SECS  for each of the two suite runs (default 900)
#   VM_TIMEOUT=SECS  for the whole guest run (default 2 * SUITE_TIMEOUT + 300)
#   KEEP=DIR         copy the guest's results and logs there
#   BENCH=1          also iscsi-perf random reads (4 KiB QD32, 1 MiB QD8) through both targets,
#                    printed as ratios (not a pass/fail criterion)
# Fails if a test LIO passes does not pass through scst-rs, or a check of steps 3-5 fails.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:-$HERE/../target/release/iscsi-target}")
RIG=${RIG:-$HERE/../../shared/rig}
TOOL=$(realpath "${CONFORMANCE_TOOL:-$HERE/../../shared/tools/iscsi-conformance}")
[ -x "$RIG/run-vm.sh" ] || { echo "sg-passthrough.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "sg-passthrough.sh: no target binary $BIN" >&2; exit 2; }
DEFAULT_TESTS="ALL.TestUnitReady,ALL.Inquiry,ALL.Mandatory,ALL.Read10,ALL.Write10,ALL.Read16,ALL.Write16,ALL.ReadCapacity10,ALL.ReadCapacity16,ALL.Verify10,ALL.PrinReadKeys,ALL.PrinReportCapabilities,ALL.ProutRegister,ALL.ProutReserve,ALL.ProutClear,ALL.ProutPreempt,ALL.Reserve6,ALL.iSCSIResiduals,ALL.ReportSupportedOpcodes,ALL.ModeSense6,ALL.StartStopUnit,ALL.PreventAllow"
TESTS=${TESTS:-$DEFAULT_TESTS}
W=$(mktemp -d /tmp/scst-sg.XXXXXX)   # under /tmp: the guest sees it
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/result"
start=$(date +%s)
rc=0
SUITE_TIMEOUT=${SUITE_TIMEOUT:-900}
"$RIG/run-vm.sh" -t "${VM_TIMEOUT:-$((2 * SUITE_TIMEOUT + 300))}" -s "$W/result" \
  "bash $HERE/rig/guest-sg.sh $BIN $TOOL $W/result '$TESTS' $SUITE_TIMEOUT ${BENCH:-0}" > "$W/guest.log" 2>&1 || rc=$?
cat "$W/guest.log"
if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp -r "$W/result/." "$KEEP/"; fi
echo "sg-passthrough: $(( $(date +%s) - start )) s wall"
if [ $rc -ne 0 ] || ! grep -q "SG PASSTHROUGH OK" "$W/guest.log"; then
  echo "FAIL sg-passthrough (guest rc=$rc)"; exit 1
fi
echo "PASS sg-passthrough"
