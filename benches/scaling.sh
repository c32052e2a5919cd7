#!/bin/bash
# Scaling figures (issue 19): how iscsi-target's cost grows with sessions and LUNs, side by side
# with tgtd (STGT) on this machine.
#
# usage: benches/scaling.sh                   (run as root: tgtd needs it)
#   PARTS="sessions memory luns"   the parts to run
#   SESSIONS="1 4 16 64 256"       part sessions: session counts (QD8 each)
#   DEPTH=8 WRITE_PCT=50           part sessions: commands in flight per session, % writes
#   DURATION=10                    part sessions: seconds of load per point
#   ROUNDS=1                       part sessions: rounds per point (medians; tgtd and ours alternate)
#   IDLE_SESSIONS=1000             part memory: idle sessions logged in at once
#   LUNS=4096                      part luns: LUNs of the big target
#   LUN_SPEC=nullio:16M            part luns: our LUNs (tgtd: --bstype null)
#   REPEAT=7                       part luns: logins and REPORT LUNS per target (medians)
#   SCANS=3                        part luns: `iscsi-ls -s` runs per target (median)
#   BIN_DIR=target/release         iscsi-target and iscsi-soak
#
# Part sessions: `iscsi-soak` (a verifying load generator) with N sessions x DEPTH commands, its
# own mix of sizes (4 KiB 50%, 16 KiB 25%, 64 KiB 20%, 256 KiB 5%: it has no fixed-size option)
# and WRITE_PCT% writes. iscsi-soak checks every read of a slot it wrote, so a NULLIO LUN (reads
# give zeros) fails at once: ours serves a sparse 1 GiB RAM LUN, tgtd a 1 GiB file in /dev/shm
# (--bstype rdwr, written once beforehand). Columns:
#   IOPS        commands per second (iscsi-soak's SUMMARY iops), MiB/s its read+write rate
#   tcpu/io     the target process's CPU (utime+stime, /proc/PID/stat) per command, in us,
#               from the end of the logins to the end of the run
#   ccpu/io     iscsi-soak's CPU per command over the same window, in us
#   tcores      the target's CPU seconds per second of load (how many of the cores it kept busy)
#   lat         iscsi-soak's mean command latency, ms
# Part memory: a fresh target with a NULLIO LUN; RSS (VmRSS) with no session, with 1 idle
# session, and with IDLE_SESSIONS idle sessions (`iscsi-soak --idle`, logged in and doing
# nothing); KiB/sess = (RSS_N - RSS_1) / (N - 1); then RSS again after they disconnected.
# Part luns: a target with 1 LUN and one with LUNS LUNs (ours: repeated --lun; tgtd: tgtadm in
# a loop, LUN 0 being tgtd's controller LUN): setup time, RSS and threads, KiB/LUN against the
# 1-LUN target, the median time of one login (connect to Login Response; a small Python
# initiator, closing with Logout), the median REPORT LUNS (same initiator, one session, all LUNs
# in one response), and the median `iscsi-ls -s` (libiscsi: login, REPORT LUNS, then INQUIRY and
# READ CAPACITY per LUN, one at a time: an initiator's LUN scan).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
PARTS=${PARTS:-"sessions memory luns"}
SESSIONS=${SESSIONS:-"1 4 16 64 256"}
DEPTH=${DEPTH:-8}
WRITE_PCT=${WRITE_PCT:-50}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-1}
IDLE_SESSIONS=${IDLE_SESSIONS:-1000}
LUNS=${LUNS:-4096}
LUN_SPEC=${LUN_SPEC:-nullio:16M}
REPEAT=${REPEAT:-7}
SCANS=${SCANS:-3}
TARGET_BIN=$BIN_DIR/iscsi-target
SOAK=$BIN_DIR/iscsi-soak
[ "$(id -u)" = 0 ] || { echo "run as root (tgtd)"; exit 1; }
for c in tgtd tgtadm python3 iscsi-ls; do
  command -v $c > /dev/null || { echo "missing $c (apt-get install tgt libiscsi-bin python3)"; exit 1; }
done
for b in "$TARGET_BIN" "$SOAK"; do
  [ -x "$b" ] || { echo "missing $b (cargo build --release -p scst-examples, or set BIN_DIR)"; exit 1; }
done

# Every session is a socket in the target and in iscsi-soak (two once the load starts).
want_fds=$((2 * IDLE_SESSIONS + 4 * LUNS + 1024))
ulimit -n "$want_fds" 2> /dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_SESSIONS + 64)) ]; then
  echo "warning: ulimit -n is $(ulimit -n), too low for $IDLE_SESSIONS sessions" >&2
fi

W=$(mktemp -d /tmp/scaling.XXXXXX)
SHM=$(mktemp -d /dev/shm/scaling.XXXXXX)
TGTD= OURS= CLIENT=
cleanup() {
  [ -n "$CLIENT" ] && kill "$CLIENT" 2> /dev/null || true
  [ -n "$OURS" ] && kill "$OURS" 2> /dev/null || true
  # tgtd ignores SIGTERM.
  [ -n "$TGTD" ] && kill -9 "$TGTD" 2> /dev/null || true
  wait 2> /dev/null || true
  rm -rf "$W" "$SHM"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# tgtadm takes control ports below 32768 only.
free_low_port() {
  python3 -c '
import random, socket
for _ in range(200):
    p = random.randrange(10000, 32000)
    try:
        s = socket.socket(); s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        pass'
}
HZ=$(getconf CLK_TCK)
IQN_T=iqn.2026-11.rs.scst:scaling-tgtd
IQN_O=iqn.2026-11.rs.scst:scaling-ours
now() { date +%s.%N; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
nthreads() { awk '/^Threads/ {print $2}' "/proc/$1/status"; }

stop_targets() {
  if [ -n "$OURS" ]; then kill "$OURS" 2> /dev/null || true; wait "$OURS" 2> /dev/null || true; fi
  if [ -n "$TGTD" ]; then kill -9 "$TGTD" 2> /dev/null || true; wait "$TGTD" 2> /dev/null || true; fi
  OURS= TGTD=
}

# start_tgtd KIND [NLUNS]: KIND null (NLUNS LUNs 1..NLUNS) or rdwr (LUN 1: a 1 GiB /dev/shm file).
# Sets TGTD, PORT_T, SETUP_T (seconds from start to the target being bound).
start_tgtd() {
  local kind=$1 n=${2:-1} cp t0
  PORT_T=$(free_port) cp=$(free_low_port)
  t0=$(now)
  tgtd -f -C "$cp" --iscsi "portal=127.0.0.1:$PORT_T" > "$W/tgtd.log" 2>&1 &
  TGTD=$!
  for _ in $(seq 100); do tgtadm -C "$cp" --lld iscsi --op show --mode target > /dev/null 2>&1 && break; sleep 0.05; done
  tgtadm -C "$cp" --lld iscsi --op new --mode target --tid 1 -T "$IQN_T"
  case $kind in
    null)
      for l in $(seq 1 "$n"); do
        tgtadm -C "$cp" --lld iscsi --op new --mode logicalunit --tid 1 --lun "$l" --bstype null --backing-store /dev/null
      done ;;
    rdwr)
      if [ ! -f "$SHM/t.img" ]; then
        truncate -s 1G "$SHM/t.img"
        # Written once so that reads hit allocated pages.
        dd if=/dev/zero of="$SHM/t.img" bs=1M count=1024 conv=notrunc status=none
      fi
      tgtadm -C "$cp" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 --bstype rdwr --backing-store "$SHM/t.img" ;;
  esac
  tgtadm -C "$cp" --lld iscsi --op bind --mode target --tid 1 -I ALL
  SETUP_T=$(python3 -c "print($(now) - $t0)")
}

# start_ours --lun ... : sets OURS, PORT_O, SETUP_O (seconds until it printed its portal).
start_ours() {
  local t0
  PORT_O=$(free_port)
  rm -f "$W/ours.out"
  t0=$(now)
  "$TARGET_BIN" --listen "127.0.0.1:$PORT_O" --target "$IQN_O" "$@" --log warn > "$W/ours.out" 2> "$W/ours.err" &
  OURS=$!
  for _ in $(seq 1200); do
    grep -q iscsi:// "$W/ours.out" 2> /dev/null && break
    kill -0 "$OURS" 2> /dev/null || { echo "iscsi-target exited:" >&2; cat "$W/ours.err" >&2; exit 1; }
    sleep 0.05
  done
  SETUP_O=$(python3 -c "print($(now) - $t0)")
}

# ---------------------------------------------------------------------------------------------
# Part sessions
# ---------------------------------------------------------------------------------------------

# soak-run.py TARGET_PID HZ SOAK ARGS...: runs iscsi-soak with --idle 1, samples the target's and
# the client's CPU when it prints READY (all sessions logged in), waits for it, prints
# "iops mibs tcpu_us ccpu_us tcores lat_ms busy errors" (per command; nan on failure).
cat > "$W/soak-run.py" << 'PY'
import os, re, subprocess, sys, time
pid, hz, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ticks(p):
    f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
err = open(os.environ["SOAK_ERR"], "w")
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
t0 = c0 = s0 = None
summary = None
for line in p.stdout:
    if line.strip() == "READY" and t0 is None:
        t0, c0, s0 = ticks(pid), ticks(p.pid), time.monotonic()
    elif line.startswith("SUMMARY"):
        summary = dict(kv.split("=", 1) for kv in line.split()[1:])
_, status, ru = os.wait4(p.pid, 0)
s1, t1 = time.monotonic(), ticks(pid)
if t0 is None or summary is None or status != 0 or int(summary["ops"]) == 0:
    sys.stderr.write(f"iscsi-soak failed (status {status}): {' '.join(cmd)}\n")
    sys.stderr.write(open(os.environ["SOAK_ERR"]).read()[-2000:])
    print("nan nan nan nan nan nan nan nan")
    sys.exit(0)
ops = int(summary["ops"])
tcpu = (t1 - t0) / hz
ccpu = ru.ru_utime + ru.ru_stime - c0 / hz
print(f'{summary["iops"]} {summary["MiB/s"]} {tcpu * 1e6 / ops:.2f} {ccpu * 1e6 / ops:.2f} '
      f'{tcpu / max(s1 - s0 - 1, 0.1):.2f} {summary["avg_latency_ms"]} {summary["busy"]} {summary["errors"]}')
PY

# soak_point PID PORT IQN LUN SESSIONS
soak_point() {
  SOAK_ERR=$W/soak.err python3 "$W/soak-run.py" "$1" "$HZ" "$SOAK" --portal "127.0.0.1:$2" --target "$3" \
    --lun "$4" --sessions "$5" --depth "$DEPTH" --duration "$DURATION" --report "$DURATION" \
    --write-pct "$WRITE_PCT" --idle 1
}

part_sessions() {
  echo
  echo "== sessions: QD$DEPTH each, iscsi-soak's size mix, $WRITE_PCT% writes, ${DURATION}s per point;" \
    "ours ram:1G, tgtd rdwr on a 1 GiB /dev/shm file"
  printf '%-8s | %-46s | %-46s | %s\n' sessions "tgtd: IOPS MiB/s tcpu/io ccpu/io tcores lat" \
    "ours: IOPS MiB/s tcpu/io ccpu/io tcores lat" "ours/tgtd: IOPS tcpu/io"
  stop_targets
  start_tgtd rdwr
  start_ours --lun 0=ram:1G
  for s in $SESSIONS; do
    : > "$W/res.t"
    : > "$W/res.o"
    for _ in $(seq "$ROUNDS"); do
      soak_point "$TGTD" "$PORT_T" "$IQN_T" 1 "$s" >> "$W/res.t"
      soak_point "$OURS" "$PORT_O" "$IQN_O" 0 "$s" >> "$W/res.o"
    done
    python3 - "$s" "$W/res.t" "$W/res.o" << 'PY'
import math, statistics, sys
s = sys.argv[1]
def med(path):
    rows = [list(map(float, l.split())) for l in open(path) if l.strip()]
    return [statistics.median(c) for c in zip(*rows)]
t, o = med(sys.argv[2]), med(sys.argv[3])
f = lambda r: f"{r[0]:>8.0f} {r[1]:6.0f} {r[2]:7.2f} {r[3]:7.2f} {r[4]:6.2f} {r[5]:6.2f}"
ratio = lambda a, b: "  n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:4.2f}x"
extra = "" if t[6] + o[6] == 0 or math.isnan(t[6] + o[6]) else f"  (BUSY tgtd {t[6]:.0f} ours {o[6]:.0f})"
print(f"{s:>8} | {f(t)} | {f(o)} | {ratio(o[0], t[0])} {ratio(o[2], t[2])}{extra}", flush=True)
PY
  done
  stop_targets
}

# ---------------------------------------------------------------------------------------------
# Part memory
# ---------------------------------------------------------------------------------------------

# idle_login PORT IQN LUN N: logs N sessions in with iscsi-soak --idle and leaves them idle; sets
# CLIENT and LOGIN_S (iscsi-soak's own login time), or returns 1 (the reason in $W/idle.err).
idle_login() {
  rm -f "$W/idle.out"
  "$SOAK" --portal "127.0.0.1:$1" --target "$2" --lun "$3" --sessions "$4" --depth 1 --duration 1 \
    --idle 3600 > "$W/idle.out" 2> "$W/idle.err" &
  CLIENT=$!
  for _ in $(seq 3000); do
    grep -q READY "$W/idle.out" 2> /dev/null && break
    kill -0 "$CLIENT" 2> /dev/null || { wait "$CLIENT" 2> /dev/null || true; CLIENT=; return 1; }
    sleep 0.05
  done
  LOGIN_S=$(python3 - "$W/idle.err" << 'PY'
import re, sys
m = re.search(r"logged in after ([0-9.]+)(ns|µs|us|ms|s)\b", open(sys.argv[1]).read())
unit = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1}
print(f"{float(m.group(1)) * unit[m.group(2)]:.2f}" if m else "nan")
PY
)
  sleep 2
}
idle_logout() {
  kill "$CLIENT" 2> /dev/null || true
  wait "$CLIENT" 2> /dev/null || true
  CLIENT=
  sleep 2
}

# memory_row NAME PID PORT IQN LUN
memory_row() {
  local name=$1 pid=$2 port=$3 iqn=$4 lun=$5 r0 r1 rn th fds ra login
  sleep 0.5
  r0=$(rss "$pid")
  idle_login "$port" "$iqn" "$lun" 1 || { echo "$name: one session failed: $(tail -3 "$W/idle.err")"; return; }
  r1=$(rss "$pid")
  idle_logout
  if ! idle_login "$port" "$iqn" "$lun" "$IDLE_SESSIONS"; then
    printf '%-5s | %9s %9s | FAILED: %s\n' "$name" "$r0" "$r1" "$(tail -3 "$W/idle.err" | tr '\n' ' ')"
    return
  fi
  rn=$(rss "$pid") th=$(nthreads "$pid") fds=$(ls "/proc/$pid/fd" | wc -l) login=$LOGIN_S
  idle_logout
  ra=$(rss "$pid")
  printf '%-5s | %9s %9s %11s | %9.1f | %7s %6s | %8s | %9s\n' "$name" "$r0" "$r1" "$rn" \
    "$(python3 -c "print(($rn - $r1) / ($IDLE_SESSIONS - 1))")" "$th" "$fds" "$login" "$ra"
}

part_memory() {
  echo
  echo "== memory per idle session: $IDLE_SESSIONS sessions logged in and idle (iscsi-soak --idle), NULLIO LUN;" \
    "RSS in KiB"
  printf '%-5s | %9s %9s %11s | %9s | %7s %6s | %8s | %9s\n' target "RSS 0" "RSS 1" "RSS $IDLE_SESSIONS" \
    KiB/sess threads fds "login s" "RSS after"
  stop_targets
  start_tgtd null 1
  memory_row tgtd "$TGTD" "$PORT_T" "$IQN_T" 1
  stop_targets
  start_ours --lun 0=nullio:1G
  memory_row ours "$OURS" "$PORT_O" "$IQN_O" 0
  stop_targets
}

# ---------------------------------------------------------------------------------------------
# Part luns
# ---------------------------------------------------------------------------------------------

# lun-probe.py HOST PORT IQN REPEAT: a minimal iSCSI initiator (no digests, no authentication).
# REPEAT logins (connect .. final Login Response, each closed with Logout), then REPEAT REPORT
# LUNS in one session; prints "login_ms report_luns_ms luns" (medians; luns in the last answer).
cat > "$W/lun-probe.py" << 'PY'
import os, socket, statistics, struct, sys, time
host, port, iqn, reps = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
KEYS = [("InitiatorName", "iqn.2026-11.rs.scst:scaling-probe"), ("TargetName", iqn), ("SessionType", "Normal"),
        ("HeaderDigest", "None"), ("DataDigest", "None"), ("InitialR2T", "Yes"), ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"), ("FirstBurstLength", "65536"), ("MaxRecvDataSegmentLength", "262144"),
        ("MaxOutstandingR2T", "1"), ("DefaultTime2Wait", "0"), ("DefaultTime2Retain", "0"),
        ("ErrorRecoveryLevel", "0"), ("MaxConnections", "1")]
def pad(b):
    return b + b"\0" * (-len(b) % 4)
def recv_exact(s, n):
    b = bytearray()
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("connection closed")
        b += c
    return bytes(b)
def recv_pdu(s):
    h = recv_exact(s, 48)
    if h[4]:
        raise ValueError("unexpected AHS")
    dsl = int.from_bytes(h[5:8], "big")
    d = recv_exact(s, dsl + (-dsl % 4))[:dsl]
    return h, d
class Session:
    isid_seq = 0
    def __init__(self):
        Session.isid_seq += 1
        self.s = socket.create_connection((host, port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        isid = bytes([0x80]) + struct.pack(">HH", os.getpid() & 0xffff, Session.isid_seq & 0xffff) + b"\0"
        data = pad(b"".join(f"{k}={v}".encode() + b"\0" for k, v in KEYS))
        for _ in range(4):
            # Login Request (immediate), T=1, CSG=operational, NSG=full feature.
            h = struct.pack(">BBBBB3s6sHIHHII16x", 0x43, 0x87, 0, 0, 0, len(data).to_bytes(3, "big"), isid, 0, 1,
                            0, 0, 0, 0)
            self.s.sendall(h + data)
            rh, _ = recv_pdu(self.s)
            if rh[0] & 0x3f != 0x23 or rh[36] != 0:
                raise RuntimeError(f"login refused: opcode {rh[0]:#x} status {rh[36]:02x}{rh[37]:02x}")
            if rh[1] & 0x80 and rh[1] & 3 == 3:
                break
            data = b""
        else:
            raise RuntimeError("login not completed")
        self.stat_sn = struct.unpack(">I", rh[24:28])[0] + 1
        self.cmd_sn = struct.unpack(">I", rh[28:32])[0]
        self.itt = 0x10
    def command(self, cdb, alloc):
        self.itt += 1
        h = struct.pack(">BB2xB3s8sIIII16s", 0x01, 0xc1, 0, b"\0\0\0", b"\0" * 8, self.itt, alloc, self.cmd_sn,
                        self.stat_sn, cdb.ljust(16, b"\0"))
        self.cmd_sn += 1
        self.s.sendall(h)
        data = bytearray()
        while True:
            rh, d = recv_pdu(self.s)
            op = rh[0] & 0x3f
            if op == 0x25:  # Data-In
                data += d
                if rh[1] & 1:
                    self.stat_sn = struct.unpack(">I", rh[24:28])[0] + 1
                    return rh[3], bytes(data)
            elif op == 0x21:  # SCSI Response
                self.stat_sn = struct.unpack(">I", rh[24:28])[0] + 1
                return rh[3], bytes(data)
            elif op == 0x20:  # NOP-In: not expected in these few milliseconds
                continue
            else:
                raise RuntimeError(f"unexpected PDU opcode {op:#x}")
    def logout(self):
        h = bytearray(struct.pack(">BB46x", 0x46, 0x80))
        h[16:20] = struct.pack(">I", 0xffff0000)
        h[24:28] = struct.pack(">I", self.cmd_sn)
        h[28:32] = struct.pack(">I", self.stat_sn)
        self.s.sendall(bytes(h))
        try:
            while recv_pdu(self.s)[0][0] & 0x3f != 0x26:
                pass
        except (EOFError, OSError):
            pass
        self.s.close()
logins = []
for _ in range(reps):
    t0 = time.perf_counter()
    s = Session()
    logins.append(time.perf_counter() - t0)
    s.logout()
s = Session()
alloc = 1 << 20
cdb = bytes([0xa0, 0, 0, 0, 0, 0]) + alloc.to_bytes(4, "big")
times, luns = [], 0
for _ in range(reps + 1):
    t0 = time.perf_counter()
    st, d = s.command(cdb, alloc)
    dt = time.perf_counter() - t0
    if st != 0:
        continue  # a unit attention; the next one counts
    times.append(dt)
    luns = int.from_bytes(d[0:4], "big") // 8
times = times[-reps:] or [float("nan")]
s.logout()
print(f"{statistics.median(logins) * 1e3:.2f} {statistics.median(times) * 1e3:.2f} {luns}")
PY

# scan PORT IQN: median seconds of SCANS `iscsi-ls -s` runs; prints "seconds luns_listed".
scan() {
  local t0 t1 n
  : > "$W/scan.times"
  for _ in $(seq "$SCANS"); do
    t0=$(now)
    iscsi-ls -s "iscsi://127.0.0.1:$1" > "$W/scan.out" 2>&1 || true
    t1=$(now)
    python3 -c "print($t1 - $t0)" >> "$W/scan.times"
  done
  n=$(grep -c '^Lun:' "$W/scan.out" || true)
  python3 -c "import statistics,sys; print(f'{statistics.median(float(l) for l in open(sys.argv[1])):.3f}', $n)" "$W/scan.times"
}

# lun_row NAME PID PORT IQN NLUNS SETUP BASE_RSS: prints a row, sets ROW_RSS.
lun_row() {
  local name=$1 pid=$2 port=$3 iqn=$4 n=$5 setup=$6 base=$7 r th probe sc ra per
  sleep 0.5
  r=$(rss "$pid") th=$(nthreads "$pid")
  probe=$(python3 "$W/lun-probe.py" 127.0.0.1 "$port" "$iqn" "$REPEAT" 2> "$W/probe.err") \
    || probe="nan nan $(tail -1 "$W/probe.err")"
  sc=$(scan "$port")
  ra=$(rss "$pid")
  per=-
  [ -n "$base" ] && per=$(python3 -c "print(f'{($r - $base) / ($n - 1):.1f}')")
  read -r lms rms rl <<< "$probe"
  read -r ss sl <<< "$sc"
  printf '%-5s %5s | %7.2f | %9s %7s | %7s | %8s | %8s %5s | %8s %5s | %9s\n' "$name" "$n" "$setup" "$r" "$th" "$per" \
    "$lms" "$rms" "$rl" "$ss" "$sl" "$ra"
  ROW_RSS=$r
}

part_luns() {
  echo
  echo "== LUNs: 1 vs $LUNS LUNs on one target (ours --lun N=$LUN_SPEC, tgtd --bstype null); RSS in KiB," \
    "times median of $REPEAT (iscsi-ls: of $SCANS)"
  printf '%-5s %5s | %7s | %9s %7s | %7s | %8s | %8s %5s | %8s %5s | %9s\n' target luns "setup s" RSS threads KiB/LUN \
    "login ms" "RL ms" luns "ls -s s" luns "RSS after"
  local base
  stop_targets
  start_tgtd null 1
  lun_row tgtd "$TGTD" "$PORT_T" "$IQN_T" 1 "$SETUP_T" ""
  base=$ROW_RSS
  stop_targets
  start_tgtd null "$LUNS"
  lun_row tgtd "$TGTD" "$PORT_T" "$IQN_T" "$LUNS" "$SETUP_T" "$base"
  stop_targets
  start_ours --lun "0=$LUN_SPEC"
  lun_row ours "$OURS" "$PORT_O" "$IQN_O" 1 "$SETUP_O" ""
  base=$ROW_RSS
  stop_targets
  local args=()
  for l in $(seq 0 $((LUNS - 1))); do args+=(--lun "$l=$LUN_SPEC"); done
  start_ours "${args[@]}"
  lun_row ours "$OURS" "$PORT_O" "$IQN_O" "$LUNS" "$SETUP_O" "$base"
  stop_targets
}

T_START=$(now)
printf '%s, %s cores, %s; tgtd %s; %s\n' "$(date -u '+%F %H:%M UTC')" "$(nproc)" "$(uname -r)" \
  "$(tgtd -V 2> /dev/null | head -1)" "$("$TARGET_BIN" --version 2> /dev/null | head -1)"
for p in $PARTS; do
  case $p in
    sessions) part_sessions ;;
    memory) part_memory ;;
    luns) part_luns ;;
    *) echo "unknown part $p (sessions memory luns)" >&2; exit 1 ;;
  esac
done
echo
echo "wall time $(python3 -c "print(f'{$(now) - $T_START:.0f}')") s"
