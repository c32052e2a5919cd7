#!/bin/bash
# Linux's own iSCSI initiator against iscsi-target, in the rig's VM (../shared/rig or $RIG).
# usage: scripts/linux-initiator.sh [TARGET_BINARY]
# Starts iscsi-target on a free port with a FILEIO LUN, boots the guest, runs
# scripts/rig/guest-iscsi.sh there, then checks on the host that the data is in the file.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../target/release/iscsi-target}
# ZERO_COPY=1: no digests, and the target sends READs of cached data with sendfile even to this
# initiator, which it reaches over the host's loopback (slirp): the run then also checks, from
# --metrics, that READs went out from the page cache.
ZERO_COPY=${ZERO_COPY:-}
RIG=${RIG:-$HERE/../../shared/rig}
[ -x "$RIG/run-vm.sh" ] || { echo "linux-initiator.sh: no rig at $RIG (set RIG=)" >&2; exit 2; }
W=$(mktemp -d /tmp/scst-linux-init.XXXXXX)   # under /tmp: the guest sees it
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIGEST=CRC32C EXTRA=()
if [ -n "$ZERO_COPY" ]; then
  MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  DIGEST=None EXTRA=(--zero-copy always --metrics "127.0.0.1:$MPORT")
fi
IQN=iqn.2026-11.rs.scst:linux-initiator
head -c 8M /dev/urandom > "$W/pattern"
"$BIN" --listen "127.0.0.1:$PORT" --target "$IQN" --lun "0=fileio:$W/lun.img,size=256M,thin" \
  ${EXTRA[@]+"${EXTRA[@]}"} --log info > "$W/target.out" 2> "$W/target.err" &
PID=$!
for _ in $(seq 100); do grep -q iscsi:// "$W/target.out" 2>/dev/null && break; sleep 0.1; done
mkdir -p "$W/result"
rc=0
"$RIG/run-vm.sh" -t 300 -s "$W/result" "bash $HERE/rig/guest-iscsi.sh 10.0.2.2:$PORT $IQN $W/pattern $W/result $DIGEST" \
  > "$W/guest.log" 2>&1 || rc=$?
if [ $rc -ne 0 ] || ! grep -q "ISCSI LINUX OK" "$W/guest.log"; then
  echo "FAIL: guest run rc=$rc"; tail -n 40 "$W/guest.log"; echo "--- target log"; tail -n 20 "$W/target.err"; exit 1
fi
# The pattern really reached the backing file.
cmp -n $((8 << 20)) "$W/pattern" "$W/lun.img" || { echo "FAIL: backing file differs from what the guest wrote"; exit 1; }
grep -E "Vendor|Product" "$W/result/inquiry.txt" || true
what="digests $DIGEST"
if [ -n "$ZERO_COPY" ]; then
  zc=$(python3 -c 'import sys, urllib.request; print(sum(float(l.split()[-1]) for l in urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().splitlines() if l.startswith("scst_device_zero_copy_read_bytes_total")))' \
    "http://127.0.0.1:$MPORT/metrics")
  python3 -c "import sys; sys.exit(0 if float('$zc') >= 8 << 20 else 1)" ||
    { echo "FAIL: only $zc bytes of READ data went out from the page cache (expected the 8 MiB read back at least)"; exit 1; }
  what="$what, ${zc%.*} bytes of READ data sent from the page cache (sendfile)"
fi
echo "PASS linux-initiator (open-iscsi: login, 8 MiB O_DIRECT round trip, ext4 write/remount/fsck, logout; $what)"
