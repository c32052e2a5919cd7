#!/usr/bin/env bash
# Soak test of iscsi-target (not part of scripts/test.sh).
#
#   scripts/soak.sh [SECONDS]          default 180
#
# Starts iscsi-target with one LUN (FILEIO on a thin file by default, or RAM) and a small
# --buffer-memory, and runs iscsi-soak against it: SESSIONS sessions x DEPTH commands in flight
# of mixed, verified READs and WRITEs (4 KiB..256 KiB; writes above 64 KiB through R2Ts). While it
# runs, the target's RSS and thread count are sampled every SAMPLE seconds. Fails on:
#   - any error iscsi-soak reports (a failed command other than BUSY, a data mismatch, a protocol
#     error, a command unanswered for 30 s);
#   - RSS above R0 + BUFFER_MEMORY + SLACK_MB, where R0 is the RSS with every session logged in
#     and idle (for a RAM LUN the LUN's size is allowed on top: its blocks are allocated as they
#     are written);
#   - RSS growth: the highest sample of the last third of the run above the highest of the
#     middle third by more than GROWTH_MB;
#   - the target's thread count not back to its idle value once the sessions logged out, or the
#     target not exiting cleanly on SIGTERM.
#
# Environment: SESSIONS (64), DEPTH (32), BACKEND (fileio|ram), SIZE (1G), BUFFER_MEMORY (64M),
# SLACK_MB (64), GROWTH_MB (16), DIGESTS (0|1: CRC32C header and data digests), SAMPLE (5),
# WRITE_PCT (50), CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-${DURATION:-180}}
SESSIONS=${SESSIONS:-64}
DEPTH=${DEPTH:-32}
BACKEND=${BACKEND:-fileio}
SIZE=${SIZE:-1G}
BUFFER_MEMORY=${BUFFER_MEMORY:-64M}
SLACK_MB=${SLACK_MB:-64}
GROWTH_MB=${GROWTH_MB:-16}
DIGESTS=${DIGESTS:-0}
SAMPLE=${SAMPLE:-5}
WRITE_PCT=${WRITE_PCT:-50}
BIN=${CARGO_TARGET_DIR:-target}/release

# SIZE like 64M or 1G, in KiB.
kib() {
    local n=${1%[KkMmGgTt]} u=${1: -1}
    case $u in
        K|k) echo "$n" ;;
        M|m) echo $((n * 1024)) ;;
        G|g) echo $((n * 1024 * 1024)) ;;
        T|t) echo $((n * 1024 * 1024 * 1024)) ;;
        *) echo $((${1} / 1024)) ;;
    esac
}

cargo build --release -p scst-examples --bins >&2

WORK=$(mktemp -d /tmp/scst-soak.XXXXXX)
TPID=
SPID=
cleanup() {
    [ -n "$SPID" ] && kill "$SPID" 2>/dev/null || true
    [ -n "$TPID" ] && kill -9 "$TPID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

case $BACKEND in
    fileio) LUN="0=fileio:$WORK/soak.img,size=$SIZE,thin" ;;
    ram) LUN="0=ram:$SIZE" ;;
    *) echo "BACKEND must be fileio or ram" >&2; exit 2 ;;
esac

"$BIN/iscsi-target" --listen 127.0.0.1:0 --lun "$LUN" --buffer-memory "$BUFFER_MEMORY" --log warn \
    >"$WORK/url" 2>"$WORK/target.log" &
TPID=$!
for _ in $(seq 100); do
    [ -s "$WORK/url" ] && break
    sleep 0.1
done
URL=$(head -1 "$WORK/url")
PORTAL=${URL#iscsi://}
IQN=${PORTAL#*/}
IQN=${IQN%/*}
PORTAL=${PORTAL%%/*}
echo "target pid $TPID at $URL, LUN $LUN, buffer memory $BUFFER_MEMORY"

status() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
IDLE_THREADS=$(status "$TPID" Threads)
R_START=$(status "$TPID" VmRSS)

sampler() {
    local t0
    t0=$(date +%s)
    while kill -0 "$TPID" 2>/dev/null; do
        echo "$(($(date +%s) - t0)) $(status "$TPID" VmRSS) $(status "$TPID" Threads)"
        sleep "$SAMPLE"
    done
}

SOAK_ARGS=(--portal "$PORTAL" --target "$IQN" --sessions "$SESSIONS" --depth "$DEPTH" --duration "$DURATION"
    --report 30 --idle 3 --write-pct "$WRITE_PCT")
[ "$DIGESTS" = 1 ] && SOAK_ARGS+=(--digests)
"$BIN/iscsi-soak" "${SOAK_ARGS[@]}" >"$WORK/soak.out" 2>"$WORK/soak.err" &
LPID=$!
# The RSS with every session logged in and idle.
for _ in $(seq 600); do
    grep -q READY "$WORK/soak.out" 2>/dev/null && break
    kill -0 "$LPID" 2>/dev/null || break
    sleep 0.1
done
sleep 1
R0=$(status "$TPID" VmRSS)
SESSION_THREADS=$(status "$TPID" Threads)
sampler >"$WORK/samples" &
SPID=$!
SOAK_RC=0
wait "$LPID" || SOAK_RC=$?
kill "$SPID" 2>/dev/null || true
wait "$SPID" 2>/dev/null || true
SPID=
grep -v READY "$WORK/soak.out" || true
cat "$WORK/soak.err" >&2

# Back to idle: the sessions logged out, their threads end.
sleep 2
END_THREADS=$(status "$TPID" Threads)
END_RSS=$(status "$TPID" VmRSS)
kill -TERM "$TPID"
TARGET_RC=0
wait "$TPID" || TARGET_RC=$?
TPID=

LIMIT=$((R0 + $(kib "$BUFFER_MEMORY") + SLACK_MB * 1024))
[ "$BACKEND" = ram ] && LIMIT=$((LIMIT + $(kib "$SIZE")))
read -r N RMIN RMAX TMIN TMAX < <(awk 'NR == 1 { rmin = rmax = $2; tmin = tmax = $3 }
    { if ($2 < rmin) rmin = $2; if ($2 > rmax) rmax = $2; if ($3 < tmin) tmin = $3; if ($3 > tmax) tmax = $3 }
    END { print NR, rmin, rmax, tmin, tmax }' "$WORK/samples")
read -r MID LAST < <(awk -v n="$N" '{ third = int(3 * (NR - 1) / n) }
    third == 1 && $2 > m { m = $2 } third == 2 && $2 > l { l = $2 } END { print m + 0, l + 0 }' "$WORK/samples")

echo "RSS KiB: idle target $R_START, $SESSIONS sessions idle $R0, under load min $RMIN max $RMAX (limit $LIMIT), \
after logout $END_RSS; max of middle third $MID, of last third $LAST"
echo "threads: idle target $IDLE_THREADS, sessions logged in $SESSION_THREADS, under load $TMIN..$TMAX, after logout $END_THREADS"
echo "samples (seconds RSS_KiB threads):"
awk 'NR % 6 == 1' "$WORK/samples" | tr '\n' ';'
echo

FAIL=0
[ "$SOAK_RC" = 0 ] || { echo "FAIL: iscsi-soak exited with $SOAK_RC"; FAIL=1; }
grep -q "errors=0" "$WORK/soak.out" || { echo "FAIL: errors reported"; FAIL=1; }
[ "$RMAX" -le "$LIMIT" ] || { echo "FAIL: RSS $RMAX KiB above $LIMIT KiB"; FAIL=1; }
[ "$LAST" -le $((MID + GROWTH_MB * 1024)) ] || { echo "FAIL: RSS grew from $MID to $LAST KiB"; FAIL=1; }
[ "$END_THREADS" -le "$IDLE_THREADS" ] || { echo "FAIL: $END_THREADS threads after logout, $IDLE_THREADS idle"; FAIL=1; }
[ "$TARGET_RC" = 0 ] || { echo "FAIL: the target exited with $TARGET_RC on SIGTERM"; FAIL=1; }
if [ -s "$WORK/target.log" ]; then
    echo "target log (warnings and errors):"
    tail -20 "$WORK/target.log"
fi
[ "$FAIL" = 0 ] && echo "soak PASSED" || echo "soak FAILED"
exit "$FAIL"
