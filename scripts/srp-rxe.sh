#!/bin/bash
# Linux's ib_srp against our srp-target over soft-RoCE (rdma_rxe), both in the rig's VM
# (../shared/rig or $RIG), and the same checks against LIO's ib_srpt in the same guest as the
# anchor (modelled on the rig's tests/srp-rxe.sh). Prints a table of which checks pass on each.
# usage: scripts/srp-rxe.sh [ours|lio|both] [SRP_TARGET_BINARY]      (default: both)
# Build first: cargo build --release -p scst-examples --features rdma --bin srp-target
# Checks (guest-srp.sh): RDMA/CM login and sg_inq; ext4 mkfs/write/fsck/remount/compare;
# disconnect (remote port deleted) and re-login, fsck and compare; fio verify QD32 with
# cmd_sg_entries=255 and =1, and with external descriptor tables (allow_ext_sg; skipped on
# LIO); LUN reset (sg_reset -d) under fio, then fio verify; multichannel
# (ch_count=4) fio verify; PERSISTENT RESERVE registration and READ FULL STATUS with the SRP
# TransportID; remote port deleted under I/O, then a new login. Our target: clean exit on SIGTERM.
# Then the daemon (scst-target, built with --features rdma beside the binary): one scst.conf with
# an iSCSI and an ib_srpt target on one FILEIO device; SRP writes, open-iscsi reads back; each
# port's relative target port id (VPD 83h); SIGHUP maps LUN 1 on the SRP target (seen after a
# rescan); scstctl sessions; clean exit.
# Fails unless every check passes on our target (LIO's results are reported, not required).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
WHICH=${1:-both}
BIN=${2:-$HERE/../target/release/srp-target}
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$RIG/run-vm.sh" ] || { echo "srp-rxe.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "srp-rxe.sh: no $BIN (cargo build --release -p scst-examples --features rdma)" >&2; exit 2; }
BIN=$(realpath "$BIN")
W=$(mktemp -d /tmp/scst-srp-rxe.XXXXXX)   # under /tmp: the guest sees it
[ -n "${SRP_RXE_KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
mkdir -p "$W/result"
rc=0
"$RIG/run-vm.sh" -t "${SRP_RXE_TIMEOUT:-600}" -s "$W/result" "bash $HERE/rig/guest-srp.sh $BIN $W/result $WHICH" \
  > "$W/guest.log" 2>&1 || rc=$?
if [ $rc -ne 0 ] || ! grep -q "SRP RXE DONE" "$W/guest.log"; then
  echo "FAIL: guest run rc=$rc"; tail -n 60 "$W/guest.log"; echo "--- target log"; tail -n 30 "$W/result/target.err" || true
  exit 1
fi
printf '%-32s %-6s %-6s\n' check ours lio
for c in $(grep '^CHECK' "$W/guest.log" | awk '{print $3}' | awk '!s[$0]++'); do
  o=$(awk -v c="$c" '$1=="CHECK" && $2=="ours" && $3==c {print $4}' "$W/guest.log")
  l=$(awk -v c="$c" '$1=="CHECK" && $2=="lio" && $3==c {print $4}' "$W/guest.log")
  printf '%-32s %-6s %-6s\n' "$c" "${o:--}" "${l:--}"
done
[ -n "${SRP_RXE_KEEP:-}" ] && echo "results kept in $W"
if [ "$WHICH" != lio ]; then
  # ib_srp without memory registration must have sent indirect descriptor tables.
  if sed 's/\x1b\[[0-9;]*m//g' "$W/result/target.err" | grep "SRP channel closed" | grep -q 'indirect=[1-9]'; then
    printf '%-32s %-6s %-6s\n' indirect_descriptors_seen PASS -
  else
    printf '%-32s %-6s %-6s\n' indirect_descriptors_seen FAIL -
    echo "CHECK ours indirect_descriptors_seen FAIL" >> "$W/guest.log"
  fi
  if sed 's/\x1b\[[0-9;]*m//g' "$W/result/target.err" | grep "SRP channel closed" | grep -q 'external_tables=[1-9]'; then
    printf '%-32s %-6s %-6s\n' external_tables_seen PASS -
  else
    printf '%-32s %-6s %-6s\n' external_tables_seen FAIL -
    echo "CHECK ours external_tables_seen FAIL" >> "$W/guest.log"
  fi
fi
if [ "$WHICH" != lio ] && grep -q '^CHECK ours .* FAIL' "$W/guest.log"; then
  echo "FAIL srp-rxe: a check failed on srp-target"
  sed 's/\x1b\[[0-9;]*m//g' "$W/result/target.err" | grep "SRP channel closed" || true
  if grep -q '^CHECK ours daemon_.* FAIL' "$W/guest.log"; then
    echo "--- scst-target log"; tail -n 30 "$W/result/daemon.err" || true
    grep -A12 "ours: daemon" "$W/guest.log" | tail -n 40
  fi
  exit 1
fi
sed 's/\x1b\[[0-9;]*m//g' "$W/result/target.err" 2>/dev/null | grep "SRP channel closed" | tail -n 3 || true
echo "PASS srp-rxe"
