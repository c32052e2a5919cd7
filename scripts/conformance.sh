#!/bin/bash
# libiscsi's conformance suite (iscsi-test-cu) against iscsi-target, scored honestly by
# ../shared/tools/iscsi-conformance (skips are not passes).
# usage: scripts/conformance.sh [TARGET_BINARY]
#   MIN_PASS=N     fail unless at least N tests really pass (default 0)
#   TESTS=FILTER   run only FAMILY[.SUITE[.TEST]] (default ALL)
# Runs:
#   1. the whole suite on a thin FILEIO LUN (removable, 512-byte blocks, 64 MiB), with the same
#      URL twice so the multipath tests run: every failure fails the script;
#   2. ALL.ReadOnly on a read-only LUN (the suite needs a write-protected LUN for it);
#   3. Read/Write suites again with CRC32C header digests.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/iscsi-target}
TOOL=${CONFORMANCE_TOOL:-$HERE/../../shared/tools/iscsi-conformance}
[ -x "$TOOL" ] || TOOL=$HERE/iscsi-conformance
TESTS=${TESTS:-ALL}
MIN_PASS=${MIN_PASS:-0}
W=$(mktemp -d /tmp/scst-conformance.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IQN=iqn.2026-11.rs.scst:conformance
start() {
  [ -n "$PID" ] && { kill "$PID"; wait "$PID" 2>/dev/null || true; }
  "$BIN" --listen "127.0.0.1:$PORT" --target "$IQN" "$@" --log warn > "$W/target.out" 2>> "$W/target.err" &
  PID=$!
  for _ in $(seq 100); do grep -q iscsi:// "$W/target.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "target did not start"; cat "$W/target.err"; exit 1
}
score() { tail -n 1 "$1" | sed -n 's/^conformance: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p'; }
fails=0
URL=iscsi://127.0.0.1:$PORT/$IQN/0

start --lun "0=fileio:$W/thin.img,size=64M,thin,removable"
"$TOOL" "$URL" "$URL" --tests "$TESTS" --log "$W/full.log" --list | tee "$W/full.txt" | grep -E '^(failed|conformance)' || true
read -r pass fail skip <<< "$(score "$W/full.txt")"
echo "full suite (thin FILEIO LUN): $pass passed, $fail failed, $skip skipped"
[ "${fail:-1}" -eq 0 ] || fails=$((fails + 1))
[ "${pass:-0}" -ge "$MIN_PASS" ] || { echo "FAIL: fewer than $MIN_PASS real passes"; fails=$((fails + 1)); }

if [ "$TESTS" = ALL ]; then
  truncate -s 64M "$W/ro.img"
  start --lun "0=fileio:$W/ro.img,ro"
  "$TOOL" "$URL" --tests ALL.ReadOnly --list > "$W/ro.txt" || true
  cat "$W/ro.txt"
  read -r p f s <<< "$(score "$W/ro.txt")"
  [ "${f:-1}" -eq 0 ] && [ "${p:-0}" -ge "${MIN_READONLY_PASS:-0}" ] || { echo "FAIL: ReadOnly on a read-only LUN"; fails=$((fails + 1)); }

  start --lun "0=ram:64M"
  "$TOOL" "$URL?header_digest=crc32c" --tests "ALL.Read10,ALL.Write10,ALL.Verify10,ALL.iSCSIResiduals" --list > "$W/hd.txt" || true
  grep -E '^(failed|conformance)' "$W/hd.txt" || true
  read -r p f s <<< "$(score "$W/hd.txt")"
  [ "${f:-1}" -eq 0 ] && [ "${p:-0}" -ge 10 ] || { echo "FAIL: header digest run"; fails=$((fails + 1)); }
fi
if [ $fails -ne 0 ]; then
  echo "--- target log (tail)"; tail -n 30 "$W/target.err"
  exit 1
fi
echo "PASS conformance"
