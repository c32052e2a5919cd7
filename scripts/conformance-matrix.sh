#!/bin/bash
# libiscsi's whole conformance suite, once per kind of LUN a user configures, each with default
# options (no test-friendly tuning), scored honestly by ../shared/tools/iscsi-conformance.
# usage: scripts/conformance-matrix.sh [TARGET_BINARY]
#   KINDS="fileio-thin ram ..."   the kinds to run (default: all of them, ~1.5 min each)
#   EXPECT=FILE                   "KIND SUITE.TEST" lines that may fail, with the reason after a
#                                 "#" (default scripts/conformance-expected.txt); any other
#                                 failure fails the script
# Each run is one iscsi-test-cu invocation with the same URL twice (so the multipath tests run),
# on a 256 MiB LUN. One ordering choice: Sanitize.Reset runs before Sanitize.Reservations. With
# two URLs, libiscsi's Sanitize.Reservations takes a RESERVE(6) on the long-lived second session
# (mpath_sd2_get_or_clone returns mp_sds[1]) and never releases it, so any SANITIZE after it
# meets a RESERVATION CONFLICT, as SPC-2 requires; run first, Sanitize.Reset sees a real
# sanitize in progress. Sanitize.Reset needs a sanitize that lasts more than ~5 s: at the
# default rate (16 MiB/s) any LUN of 128 MiB or more.
# Kind rbd: a 256 MiB image on a Ceph cluster (SCST_CEPH_CONF=PATH names one; otherwise a
# single-node test cluster is started with scripts/ceph-cluster.sh and stopped at the end); needs
# a target built with the rbd feature (--all-features).
# Prints one table, kind x passed/failed/skipped, then every non-pass by name.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/iscsi-target}
TOOL=${CONFORMANCE_TOOL:-$HERE/../../shared/tools/iscsi-conformance}
[ -x "$TOOL" ] || { echo "no scorer at $TOOL (set CONFORMANCE_TOOL)"; exit 1; }
ALL_KINDS="fileio-thin fileio-thick fileio-direct-wt fileio-4k blockio-loop ram nullio rbd"
KINDS=${KINDS:-$ALL_KINDS}
EXPECT=${EXPECT-$HERE/conformance-expected.txt}
# O_DIRECT needs a real file system (tmpfs refuses it): /var/tmp, not /tmp.
W=$(mktemp -d /var/tmp/scst-matrix.XXXXXX)
PID= LOOP= CEPH_DIR= CEPH_CONF=${SCST_CEPH_CONF:-}
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
  [ -n "$CEPH_DIR" ] && "$HERE/ceph-cluster.sh" stop "$CEPH_DIR"
  rm -rf "$W"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
IQN=iqn.2026-11.rs.scst:matrix
URL=iscsi://127.0.0.1:$PORT/$IQN/0
start() {
  [ -n "$PID" ] && { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
  "$BIN" --listen "127.0.0.1:$PORT" --target "$IQN" --lun "0=$1" --log warn > "$W/target.out" 2>> "$W/target.err" &
  PID=$!
  for _ in $(seq 100); do grep -q iscsi:// "$W/target.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "target did not start"; cat "$W/target.err"; exit 1
}
spec() {
  case $1 in
    fileio-thin) echo "fileio:$W/thin.img,size=256M,thin" ;;
    fileio-thick) echo "fileio:$W/thick.img,size=256M" ;;
    fileio-direct-wt) echo "fileio:$W/direct.img,size=256M,direct,wt" ;;
    fileio-4k) echo "fileio:$W/4k.img,size=256M,bs=4096" ;;
    blockio-loop)
      truncate -s 256M "$W/loop.img"
      LOOP=$(losetup --find --show "$W/loop.img")
      echo "blockio:$LOOP" ;;
    ram) echo "ram:256M" ;;
    nullio) echo "nullio:256M" ;;
    rbd)
      local image=scst-matrix-$$
      rbd -c "$CEPH_CONF" create --size 256M "rbd/$image" >&2
      echo "rbd:rbd/$image,conf=$CEPH_CONF" ;;
    *) echo "unknown kind $1 (one of: $ALL_KINDS)" >&2; exit 2 ;;
  esac
}
# iscsi-test-cu takes a comma list of fnmatch patterns and runs them last first.
suites=$(iscsi-test-cu -l | sed -n 's/^ALL\.\([^.]*\)$/\1/p' | grep -vx Sanitize)
list="ALL.Sanitize.Reser*,ALL.Sanitize.Reset,ALL.Sanitize.Readonly,ALL.Sanitize.[!R]*"
for s in $suites; do list="ALL.$s,$list"; done
for kind in $KINDS; do
  if [ "$kind" = blockio-loop ] && [ "$(id -u)" != 0 ]; then
    echo "[$kind] skipped: needs root for a loop device"; continue
  fi
  if [ "$kind" = rbd ] && [ -z "$CEPH_CONF" ]; then
    CEPH_DIR=$W/ceph
    CEPH_CONF=$("$HERE/ceph-cluster.sh" start "$CEPH_DIR" 2> "$W/ceph.err") ||
      { echo "[rbd] no Ceph cluster:"; cat "$W/ceph.err"; exit 1; }
  fi
  start "$(spec "$kind")"
  echo "[$kind] running ($(date +%T))"
  "$TOOL" "$URL" "$URL" --tests "$list" --log "$W/$kind.log" --json "$W/$kind.json" --list > "$W/$kind.txt" || true
  tail -n 1 "$W/$kind.txt" | sed "s/^/[$kind] /"
  if [ -n "$LOOP" ]; then kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; losetup -d "$LOOP"; LOOP=; fi
done
python3 - "$W" "$EXPECT" $KINDS <<'PY'
import json, os, sys
w, expect_file, kinds = sys.argv[1], sys.argv[2], sys.argv[3:]
expected = set()
if expect_file:
    for line in open(expect_file):
        line = line.split("#", 1)[0].split()
        if len(line) == 2:
            expected.add((line[0], line[1]))
rows, notes, bad = [], [], 0
for k in kinds:
    path = os.path.join(w, k + ".json")
    if not os.path.exists(path):
        rows.append((k, "-", "-", "-"))
        continue
    res = json.load(open(path))
    n = {v: sum(1 for t in res if t["verdict"] == v) for v in ("passed", "failed", "skipped")}
    rows.append((k, n["passed"], n["failed"], n["skipped"]))
    for t in res:
        name = t["suite"] + "." + t["test"]
        if t["verdict"] == "passed":
            continue
        tag = ""
        if t["verdict"] == "failed":
            if (k, name) in expected:
                tag = " (expected)"
            else:
                bad += 1
        notes.append(f"{k:17} {t['verdict']:7} {name}{tag}: {t['reason'][:150]}")
print(f"\n{'LUN kind':17} {'passed':>6} {'failed':>6} {'skipped':>7}")
for r in rows:
    print(f"{r[0]:17} {r[1]:>6} {r[2]:>6} {r[3]:>7}")
print()
for n in notes:
    print(n)
if bad:
    print(f"FAIL: {bad} unexpected failure(s)")
    sys.exit(1)
print("PASS conformance matrix")
PY
