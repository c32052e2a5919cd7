#!/bin/bash
# Guest side of scripts/fcoe-vn2vn.sh: fc-target and Linux's fcoe initiator (VN2VN mode) on the
# two ends of a veth pair, then scst-target (beside FC_TARGET_BINARY) serving fcst and iSCSI
# targets from one scst.conf. usage: guest-fcoe.sh FC_TARGET_BINARY PATTERN_FILE RESULT_DIR
set -u
BIN=$1 PATTERN=$2 OUT=$3
WWPN=${FC_WWPN:-0x2000001122334455}
fail() { echo "FAIL: $*"; echo "--- target log"; tail -n 60 "$OUT/target.log"; echo "--- dmesg"; dmesg | grep -iE "fc|fcoe|scsi|sd " | tail -n 40; exit 1; }
modprobe -a veth fcoe sd_mod sg ext4 || fail "modprobe"
ip link add fcv0 type veth peer name fcv1 || fail "veth"
ip link set fcv0 mtu 9000 up && ip link set fcv1 mtu 9000 up
if [ -n "${FC_PCAP:-}" ]; then tcpdump -i fcv1 -s 200 -U -w "$OUT/fc.pcap" 2>/dev/null & sleep 0.5; fi
"$BIN" --interface fcv1 --wwpn $WWPN --lun 0=ram:64M --log "${FC_LOG:-debug}" > "$OUT/target.log" 2>&1 &
TPID=$!
sleep 1
kill -0 $TPID 2>/dev/null || fail "fc-target did not start"
echo fcv0 > /sys/bus/fcoe/ctlr_create || fail "ctlr_create"
C=$(ls -d /sys/bus/fcoe/devices/ctlr_* | head -n 1)
echo vn2vn > "$C/mode" || fail "mode vn2vn"
echo 1 > "$C/enabled" || fail "enable"
DEV=
for _ in $(seq 120); do
  DEV=$(ls /sys/block 2>/dev/null | grep '^sd' | head -n 1)
  [ -n "$DEV" ] && break
  sleep 0.5
done
[ -n "$DEV" ] || fail "no SCSI disk appeared"
echo "disk /dev/$DEV"
grep -H . /sys/class/fc_remote_ports/*/port_name /sys/class/fc_remote_ports/*/roles 2>/dev/null
grep -qi "${WWPN#0x}" /sys/class/fc_remote_ports/*/port_name || fail "rport with our WWPN not found"
cat /sys/block/$DEV/device/vendor /sys/block/$DEV/device/model
echo "size $(cat /sys/block/$DEV/size) sectors"
# 8 MiB O_DIRECT round trip.
dd if="$PATTERN" of=/dev/$DEV bs=1M count=8 oflag=direct status=none || fail "dd write"
dd if=/dev/$DEV of="$OUT/readback" bs=1M count=8 iflag=direct status=none || fail "dd read"
cmp "$PATTERN" "$OUT/readback" || fail "read back differs"
echo "8 MiB O_DIRECT round trip OK"
# Persistent reservations: the initiator is known by its WWPN (FC TransportID, protocol 0).
HOST_WWPN=$(cat /sys/class/fc_host/host*/port_name | head -n 1)
sg_persist -n --out --register --param-sark=0x1234 /dev/$DEV || fail "PR register"
sg_persist -n --out --reserve --param-rk=0x1234 --prout-type=1 /dev/$DEV || fail "PR reserve"
sg_persist -n --in --read-full-status /dev/$DEV > "$OUT/pr.txt" 2>&1 || fail "PR read full status"
cat "$OUT/pr.txt"
tr -d " \n" < "$OUT/pr.txt" | grep -qi "${HOST_WWPN#0x}" || fail "TransportID does not name $HOST_WWPN"
sg_persist -n --out --release --param-rk=0x1234 --prout-type=1 /dev/$DEV || fail "PR release"
sg_persist -n --out --register --param-rk=0x1234 --param-sark=0 /dev/$DEV || fail "PR unregister"
echo "persistent reservation with the FC TransportID ($HOST_WWPN) OK"
# A LUN reset (FCP task management) and I/O after it.
sg_reset -d /dev/$DEV || fail "sg_reset -d"
dd if=/dev/$DEV of=/dev/null bs=1M count=1 iflag=direct status=none || fail "read after LUN reset"
echo "LUN reset OK"
# Verified random writes at queue depth 16.
fio --name=verify --eta=never --filename=/dev/$DEV --direct=1 --ioengine=libaio --iodepth=16 --rw=randwrite \
  --bs=4k --size=16M --verify=crc32c --verify_fatal=1 --output="$OUT/fio-verify.txt" || fail "fio verify: $(tail -n 20 "$OUT/fio-verify.txt")"
echo "fio 16 MiB verified random writes OK"
fio --name=seqread --eta=never --filename=/dev/$DEV --direct=1 --ioengine=libaio --iodepth=8 --rw=read --bs=1M --size=64M \
  --output-format=terse --output="$OUT/fio-read.txt" || fail "fio read"
echo "sequential 1 MiB QD8 read: $(awk -F';' '{print $7}' "$OUT/fio-read.txt") KiB/s (TCG guest)"
# ext4: make, write, unmount, fsck, remount, verify.
mkfs.ext4 -q -F /dev/$DEV || fail "mkfs"
mkdir -p /mnt/fc && mount /dev/$DEV /mnt/fc || fail "mount"
cp "$PATTERN" /mnt/fc/pattern && sync
umount /mnt/fc || fail "umount"
fsck.ext4 -fn /dev/$DEV > "$OUT/fsck.txt" 2>&1 || fail "fsck: $(tail -n 5 "$OUT/fsck.txt")"
mount /dev/$DEV /mnt/fc && cmp "$PATTERN" /mnt/fc/pattern || fail "file differs after remount"
umount /mnt/fc
echo "ext4 write/fsck/remount OK"
# LOGO and re-login: disable and re-enable the initiator's controller.
echo 0 > "$C/enabled"
for _ in $(seq 30); do grep -qx Online /sys/class/fc_remote_ports/*/port_state 2>/dev/null || break; sleep 1; done
grep -H . /sys/class/fc_remote_ports/*/port_state
echo 1 > "$C/enabled"
ok=
for _ in $(seq 90); do
  if grep -qx Online /sys/class/fc_remote_ports/*/port_state 2>/dev/null; then ok=1; break; fi
  sleep 1
done
[ -n "$ok" ] || fail "rport not Online again after re-enable: $(grep -H . /sys/class/fc_remote_ports/*/port_state)"
DEV=$(ls /sys/block | grep '^sd' | head -n 1)
timeout 30 mount /dev/$DEV /mnt/fc || fail "mount after re-login"
cmp "$PATTERN" /mnt/fc/pattern || fail "file differs after re-login"
umount /mnt/fc
echo "re-login OK"
echo 0 > "$C/enabled"
kill $TPID; wait $TPID
# The daemon: scst-target serving one FILEIO device through an fcst target on this interface
# and an iSCSI target on the guest's loopback, from one scst.conf. What FC writes, open-iscsi
# reads back; each port has its own relative target port id (iSCSI 1, FC 3 by default).
D=$(dirname "$BIN")/scst-target
DWWPN=0x2000001122334466
# The disk behind the remote port named WWPN (the previous target's stale disks may linger
# until their rport's dev_loss_tmo runs out, so "the first sd*" is not it).
rport_disk() {
  local r
  for r in /sys/class/fc_remote_ports/rport-*; do
    grep -qi "${1#0x}" "$r/port_name" 2> /dev/null || continue
    ls "$r"/device/target*/*/block 2> /dev/null | head -n 1
    return
  done
}
truncate -s 64M /tmp/fd0.img
cat > /tmp/fc-scst.conf << CONF
HANDLER vdisk_fileio {
	DEVICE d0 {
		filename /tmp/fd0.img
	}
}
TARGET_DRIVER iscsi {
	TARGET iqn.2026-12.rs.scst:fc-daemon {
		LUN 0 d0
		enabled 1
	}
}
TARGET_DRIVER fcst {
	TARGET $DWWPN {
		LUN 0 d0
		enabled 1
	}
}
CONF
"$D" -c /tmp/fc-scst.conf --listen 127.0.0.1:3263 --fcoe-interface fcv1 --control /tmp/fc-scst.sock \
  --log info > "$OUT/daemon.out" 2> "$OUT/daemon.err" &
DPID=$!
for _ in $(seq 50); do grep -q '^fc:' "$OUT/daemon.out" && break; sleep 0.1; done
grep -q "^fc:wwpn=20:00:00:11:22:33:44:66,interface=fcv1" "$OUT/daemon.out" || fail "scst-target: $(cat "$OUT/daemon.out" "$OUT/daemon.err")"
echo 1 > "$C/enabled"
FDEV=
for _ in $(seq 120); do
  FDEV=$(rport_disk "$DWWPN")
  [ -n "$FDEV" ] && [ -b "/dev/$FDEV" ] && break
  sleep 0.5
done
[ -n "$FDEV" ] || fail "no disk from scst-target's fcst port: $(tail -n 20 "$OUT/daemon.err")"
pgrep -x iscsid > /dev/null || iscsid
iscsiadm -m discovery -t st -p 127.0.0.1:3263 > /dev/null &&
  iscsiadm -m node -T iqn.2026-12.rs.scst:fc-daemon -p 127.0.0.1:3263 --login > /dev/null || fail "iSCSI login to scst-target"
IDEV=
for _ in $(seq 100); do
  IDEV=$(ls /sys/class/iscsi_session/session*/device/target*/*/block 2> /dev/null | head -n 1)
  [ -n "$IDEV" ] && [ -b "/dev/$IDEV" ] && break
  sleep 0.1
done
[ -n "$IDEV" ] || fail "no iSCSI disk from scst-target"
dd if="$PATTERN" of=/dev/$FDEV bs=1M count=4 oflag=direct status=none || fail "dd write over FC"
dd if=/dev/$IDEV of="$OUT/d-back" bs=1M count=4 iflag=direct status=none || fail "dd read over iSCSI"
cmp -n $((4 << 20)) "$PATTERN" "$OUT/d-back" || fail "what FC wrote, iSCSI did not read back"
sg_vpd -p di /dev/$FDEV | grep -qi "relative target port: 0x3" || fail "FC port's relative id: $(sg_vpd -p di /dev/$FDEV)"
sg_vpd -p di /dev/$IDEV | grep -qi "relative target port: 0x1" || fail "iSCSI port's relative id"
# Management: the FC session in detail (what its login gave), then closed from the target side
# (LOGO): that session goes away; the initiator's own recovery may log in again.
CTL="$(dirname "$BIN")/scstctl --socket /tmp/fc-scst.sock"
HOST_WWPN=$(cat /sys/class/fc_host/host*/port_name | head -n 1)
FSID=$($CTL sessions | awk -F'\t' -v t="$DWWPN" 'tolower($2) == tolower(t) { print $1 }' | head -n 1)
[ -n "$FSID" ] || fail "no FC session in scstctl sessions: $($CTL sessions)"
$CTL session "$FSID" > "$OUT/fc-session.txt" || fail "scstctl session $FSID"
cat "$OUT/fc-session.txt"
grep -q "^MaxPayload" "$OUT/fc-session.txt" && tr -d ':' < "$OUT/fc-session.txt" | grep -qi "^WWPN.${HOST_WWPN#0x}" ||
  fail "FC session parameters: $(cat "$OUT/fc-session.txt")"
$CTL close-session "$FSID" | grep -q "closing" || fail "scstctl close-session $FSID"
gone=
for _ in $(seq 100); do
  $CTL sessions | awk -F'\t' '{print $1}' | grep -qx "$FSID" || { gone=1; break; }
  sleep 0.1
done
[ -n "$gone" ] || fail "FC session $FSID still there after close-session: $($CTL sessions)"
echo "scstctl: FC session $FSID shown and closed (LOGO)"
iscsiadm -m node -T iqn.2026-12.rs.scst:fc-daemon -p 127.0.0.1:3263 --logout > /dev/null
echo 0 > "$C/enabled"
kill -TERM $DPID; wait $DPID || fail "scst-target did not exit cleanly"
echo "scst-target: fcst and iSCSI targets on one device, FC write / iSCSI read, relative ports 3 and 1 OK"
echo "FCOE VN2VN OK"
