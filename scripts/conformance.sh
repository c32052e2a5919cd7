#!/bin/bash
# libiscsi's conformance suite (iscsi-test-cu) against iscsi-target, scored honestly by
# ../shared/tools/iscsi-conformance (skips are not passes).
# usage: scripts/conformance.sh [TARGET_BINARY]
#   MIN_PASS=N     fail unless at least N tests really pass, combined (default 0)
#   TESTS=FILTER   run only FAMILY[.SUITE[.TEST]] (default ALL)
# Some tests need a LUN configured for them, and one is broken with two URLs, so the suite runs
# in several configurations; every test counts once, in the run listed for it:
#   1. every test but Sanitize.Reset on a thin FILEIO LUN (removable, 512-byte blocks, 64 MiB,
#      SANITIZE OVERWRITE at 4 MiB/s), with the same URL twice so the multipath tests run;
#   2. Sanitize.Reset with one URL (with two, Sanitize.Reservations leaves the second session's
#      RESERVE(6) in place until the suite ends, and the SANITIZE then meets a conflict);
#   3. ReadOnly on a read-only thin LUN (the suite needs a write-protected LUN for it);
#   4. the tests that need LOGICAL BLOCKS PER PHYSICAL BLOCK > 1 on a LUN with 4096-byte
#      physical blocks (CompareAndWrite.InvalidDataOutSize, WriteSame10/16.UnmapUnaligned and
#      .InvalidDataOutSize; they skip on run 1);
#   5. Read/Write/Verify/Residuals again with CRC32C header digests (not counted in the score).
# A test that fails in the run that counts it fails the script; the combined score is printed
# last ("conformance (combined): N passed, N failed, N skipped of 230").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/iscsi-target}
TOOL=${CONFORMANCE_TOOL:-$HERE/../../shared/tools/iscsi-conformance}
[ -x "$TOOL" ] || { echo "no scorer at $TOOL (set CONFORMANCE_TOOL)"; exit 1; }
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
# run NAME TESTS [URL...]: one invocation of the suite, verdicts in $W/NAME.json.
run() {
  local name=$1 tests=$2; shift 2
  "$TOOL" "$@" --tests "$tests" --log "$W/$name.log" --json "$W/$name.json" --list > "$W/$name.txt" || true
  grep -E '^(failed|skipped|conformance)' "$W/$name.txt" | sed "s/^/[$name] /" || true
  read -r p f s <<< "$(score "$W/$name.txt")"
  [ "${f:-1}" -eq 0 ] || { echo "FAIL: $name run had failures"; fails=$((fails + 1)); }
}

if [ "$TESTS" != ALL ]; then
  start --lun "0=fileio:$W/thin.img,size=64M,thin,removable,sanitize_rate=4M"
  run main "$TESTS" "$URL" "$URL"
else
  # iscsi-test-cu takes a comma list of fnmatch patterns and registers them last first.
  suites=$(iscsi-test-cu -l | sed -n 's/^ALL\.\([^.]*\)$/\1/p' | grep -vx Sanitize)
  list="ALL.Sanitize.[!R]*,ALL.Sanitize.Rea*,ALL.Sanitize.Reser*"
  for s in $suites; do list="ALL.$s,$list"; done
  start --lun "0=fileio:$W/thin.img,size=64M,thin,removable,sanitize_rate=4M"
  run main "$list" "$URL" "$URL"

  start --lun "0=fileio:$W/thin.img,size=64M,thin,removable,sanitize_rate=4M"
  run reset ALL.Sanitize.Reset "$URL"

  truncate -s 64M "$W/ro.img"
  start --lun "0=fileio:$W/ro.img,ro,thin"
  run readonly ALL.ReadOnly "$URL"

  start --lun "0=fileio:$W/pbs.img,size=64M,thin,pbs=4096"
  run pbs "ALL.CompareAndWrite.InvalidDataOutSize,ALL.WriteSame10.UnmapUnaligned,ALL.WriteSame10.InvalidDataOutSize,ALL.WriteSame16.UnmapUnaligned,ALL.WriteSame16.InvalidDataOutSize" "$URL"

  start --lun "0=ram:64M"
  run digest "ALL.Read10,ALL.Write10,ALL.Verify10,ALL.iSCSIResiduals" "$URL?header_digest=crc32c"
  read -r p f s <<< "$(score "$W/digest.txt")"
  [ "${p:-0}" -ge 10 ] || { echo "FAIL: header digest run"; fails=$((fails + 1)); }
fi

# Combined score: each test counts in the first run that lists it in this order (a test that
# runs in a special configuration counts there, not where it skipped).
python3 - "$W" "$MIN_PASS" <<'PY' || fails=$((fails + 1))
import json, os, sys
w, min_pass = sys.argv[1], int(sys.argv[2])
verdicts = {}
for name in ("pbs", "readonly", "reset", "main"):
    path = os.path.join(w, name + ".json")
    if not os.path.exists(path):
        continue
    for t in json.load(open(path)):
        verdicts.setdefault(t["suite"] + "." + t["test"], (t["verdict"], name, t["reason"]))
n = {v: sum(1 for x in verdicts.values() if x[0] == v) for v in ("passed", "failed", "skipped")}
for k, (v, name, why) in sorted(verdicts.items()):
    if v != "passed":
        print(f"{v:7} {k} [{name}]: {why}")
print(f"conformance (combined): {n['passed']} passed, {n['failed']} failed, {n['skipped']} skipped of {len(verdicts)}")
if n["passed"] < min_pass:
    print(f"FAIL: fewer than {min_pass} real passes")
    sys.exit(1)
PY
if [ $fails -ne 0 ]; then
  echo "--- target log (tail)"; tail -n 30 "$W/target.err"
  exit 1
fi
echo "PASS conformance"
