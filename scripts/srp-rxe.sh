#!/bin/bash
# Linux's ib_srp against our srp-target over soft-RoCE (rdma_rxe), both in the rig's VM
# (../shared/rig or $RIG), modelled on the rig's tests/srp-rxe.sh (which runs LIO's ib_srpt).
# usage: scripts/srp-rxe.sh [SRP_TARGET_BINARY]
# Build first: cargo build --release -p scst-examples --features rdma --bin srp-target
# Checks: RDMA/CM login (id_ext/ioc_guid/dest), sg_inq, mkfs.ext4, 32 MiB written, fsck,
# remount and compare, remote port deleted (disconnect) and a new login, fsck and compare again.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/srp-target}
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$RIG/run-vm.sh" ] || { echo "srp-rxe.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "srp-rxe.sh: no $BIN (cargo build --release -p scst-examples --features rdma)" >&2; exit 2; }
BIN=$(realpath "$BIN")
W=$(mktemp -d /tmp/scst-srp-rxe.XXXXXX)   # under /tmp: the guest sees it
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/result"
rc=0
"$RIG/run-vm.sh" -t ${SRP_RXE_TIMEOUT:-420} -s "$W/result" "bash $HERE/rig/guest-srp.sh $BIN $W/result" \
  > "$W/guest.log" 2>&1 || rc=$?
if [ $rc -ne 0 ] || ! grep -q "SRP RXE OK" "$W/guest.log"; then
  echo "FAIL: guest run rc=$rc"; tail -n 60 "$W/guest.log"; echo "--- target log"; tail -n 30 "$W/result/target.err" || true
  exit 1
fi
grep -E "Vendor|Product" "$W/result/inquiry.txt" || true
echo "PASS srp-rxe (ib_srp over rxe: login, sg_inq, ext4 write/fsck/verify, disconnect and re-login, verify)"
