#!/bin/bash
# Linux's own FCoE initiator (fcoe.ko + libfc in VN2VN mode) against fc-target, in the rig's VM
# (../shared/rig or $RIG): both ends of a veth pair (MTU 9000) inside one guest; then
# scst-target (beside FC_TARGET_BINARY) serving a TARGET_DRIVER fcst and an iSCSI target on one
# device from one scst.conf (FC writes, open-iscsi reads back).
# usage: scripts/fcoe-vn2vn.sh [FC_TARGET_BINARY]
# Env: FC_PCAP=1 captures the target side's frames to the result dir (fc.pcap, for tshark);
# FC_LOG sets fc-target's log filter (default info); FC_KEEP=DIR keeps the results;
# FC_COMPARE=1 then runs the same sequential read against LIO's tcm_fc in a second guest
# (scripts/rig/guest-tcmfc.sh). The guest runs scripts/rig/guest-fcoe.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/debug/fc-target}
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$RIG/run-vm.sh" ] || { echo "fcoe-vn2vn.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "fcoe-vn2vn.sh: no $BIN (cargo build --bin fc-target)" >&2; exit 2; }
for b in scst-target scstctl; do [ -x "$(dirname "$BIN")/$b" ] || { echo "fcoe-vn2vn.sh: no $b beside $BIN" >&2; exit 2; }; done
W=$(mktemp -d /tmp/scst-fcoe.XXXXXX)   # under /tmp: the guest sees it
trap 'rm -rf "$W"' EXIT
head -c 8M /dev/urandom > "$W/pattern"
mkdir -p "$W/result"
rc=0
"$RIG/run-vm.sh" -t "${FC_TIMEOUT:-420}" -s "$W/result" \
  "FC_WWPN=${FC_WWPN:-} FC_PCAP=${FC_PCAP:-} FC_LOG=${FC_LOG:-info} bash $HERE/rig/guest-fcoe.sh $BIN $W/pattern $W/result" \
  > "$W/guest.log" 2>&1 || rc=$?
if [ -n "${FC_KEEP:-}" ]; then mkdir -p "$FC_KEEP" && cp -r "$W/result" "$W/guest.log" "$FC_KEEP/"; fi
if [ $rc -ne 0 ] || ! grep -q "FCOE VN2VN OK" "$W/guest.log"; then
  echo "FAIL: guest run rc=$rc"; grep -v '^\[ ' "$W/guest.log" | tail -n 60; exit 1
fi
grep -E "OK$|KiB/s" "$W/guest.log"
if [ -n "${FC_COMPARE:-}" ]; then
  mkdir -p "$W/tcm"
  "$RIG/run-vm.sh" -t 300 -s "$W/tcm" "bash $HERE/rig/guest-tcmfc.sh $W/tcm" > "$W/tcm.log" 2>&1 \
    && grep -E "KiB/s" "$W/tcm.log" || { echo "tcm_fc comparison failed:"; grep -v '^\[ ' "$W/tcm.log" | tail -n 20; }
fi
echo "PASS fcoe-vn2vn (Linux fcoe VN2VN: discovery, 8 MiB O_DIRECT round trip, ext4 write/fsck/remount, re-login; scst-target fcst + iSCSI on one device)"
