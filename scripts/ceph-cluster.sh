#!/bin/bash
# A throw-away single-node Ceph cluster for tests: one monitor and one OSD on memstore (RAM, no
# disk), authentication off, pools of size 1, everything under one directory and on 127.0.0.1.
# Fits a 2-core machine (the OSD holds at most MEMSTORE_BYTES of data, default 2 GiB).
#
# usage: scripts/ceph-cluster.sh start DIR    creates and starts it; prints DIR/ceph.conf
#        scripts/ceph-cluster.sh stop DIR     stops its daemons and removes DIR
#        MEMSTORE_BYTES=N  MON_PORT=N  POOL=rbd (created by start)
# Clients use it with `-c DIR/ceph.conf` (ceph, rbd) or conf=DIR/ceph.conf (our rbd: LUNs).
# Needs the Debian packages ceph-mon ceph-osd ceph-common (apt-get install).
set -euo pipefail
cmd=${1:?usage: ceph-cluster.sh start|stop DIR}
DIR=${2:?usage: ceph-cluster.sh start|stop DIR}
POOL=${POOL:-rbd}

stop() {
  local f p
  for f in "$DIR"/run/*.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    kill "$p" 2> /dev/null || true
  done
  for f in "$DIR"/run/*.pid; do
    [ -e "$f" ] || continue
    p=$(cat "$f")
    for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$p" 2> /dev/null || true
  done
  rm -rf "$DIR"
}

case $cmd in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: ceph-cluster.sh start|stop DIR" >&2; exit 2 ;;
esac

# Ceph 16's monitor client sometimes sends a command before it holds the cluster's fsid; the
# monitor refuses it ('wrong fsid', EPERM) and the command fails. Every command here is
# idempotent, so such a failure is retried.
retry() {
  local i
  for i in 1 2 3 4 5; do
    "$@" && return 0
    sleep 0.3
  done
  return 1
}

for c in ceph-mon ceph-osd ceph rados monmaptool ceph-authtool; do
  command -v $c > /dev/null || { echo "missing $c (apt-get install ceph-mon ceph-osd ceph-common)" >&2; exit 1; }
done
[ ! -e "$DIR/ceph.conf" ] || { echo "$DIR already holds a cluster (stop it first)" >&2; exit 1; }
mkdir -p "$DIR"/{mon,osd,run,log}
DIR=$(cd "$DIR" && pwd)
MON_PORT=${MON_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF=$DIR/ceph.conf
cat > "$CONF" << EOF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
osd objectstore = memstore
memstore device bytes = ${MEMSTORE_BYTES:-2147483648}
osd op num shards = 1
osd op num threads per shard = 2
ms bind ipv6 = false
run dir = $DIR/run
log file = $DIR/log/\$name.log
mon data = $DIR/mon/\$name
osd data = $DIR/osd/\$name
keyring = $DIR/keyring
[mon]
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
[osd]
pid file = $DIR/run/\$name.pid
admin socket = $DIR/run/\$name.asok
[client]
# Clients (ceph, rbd, our targets) share one name: no admin socket, no log file.
admin socket =
log file =
EOF
ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. > /dev/null
monmaptool --create --fsid "$FSID" --addv a "[v1:127.0.0.1:$MON_PORT]" "$DIR/monmap" > /dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring"
ceph-mon -c "$CONF" -i a 2>> "$DIR/log/daemons.err"
up=
for _ in $(seq 100); do ceph -c "$CONF" --connect-timeout 2 mon stat > /dev/null 2>&1 && { up=1; break; }; sleep 0.2; done
[ -n "$up" ] || { echo "monitor did not come up; log:" >&2; tail -20 "$DIR/log/mon.a.log" >&2; stop; exit 1; }
# `osd create UUID` is idempotent, so a retried command cannot make a second OSD.
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
id=$(retry ceph -c "$CONF" osd create "$OSD_UUID")
mkdir -p "$DIR/osd/osd.$id"
ceph-osd -c "$CONF" -i "$id" --mkfs --osd-uuid "$OSD_UUID" > "$DIR/log/osd-mkfs.log" 2>&1
# The OSD's first monitor commands sometimes leave before it has the cluster's fsid (the
# monitor answers 'wrong fsid' and the OSD exits at init, about 1 start in 6 here): try again.
for try in 1 2 3 4 5; do
  ceph-osd -c "$CONF" -i "$id" 2>> "$DIR/log/daemons.err" && break
  [ "$try" -lt 5 ] || { echo "OSD did not start; log:" >&2; tail -20 "$DIR/log/daemons.err" >&2; stop; exit 1; }
  sleep 0.5
done
for _ in $(seq 150); do
  ceph -c "$CONF" osd stat -f json 2> /dev/null | grep -q '"num_up_osds":1' && { up=2; break; }
  sleep 0.2
done
[ "$up" = 2 ] || {
  echo "OSD did not come up; log:" >&2; tail -20 "$DIR/log/osd.$id.log" >&2; stop; exit 1
}
retry ceph -c "$CONF" osd pool create "$POOL" 8 8 > /dev/null 2>&1
retry ceph -c "$CONF" osd pool application enable "$POOL" rbd > /dev/null 2>&1
# Placement groups active before anyone writes: an object write waits for them (`ceph pg
# stat` would need a manager, which this cluster does without).
probe=$DIR/run/probe
echo probe > "$probe"
timeout 60 rados -c "$CONF" -p "$POOL" put scst-probe "$probe" && rados -c "$CONF" -p "$POOL" rm scst-probe ||
  { echo "pool $POOL does not take writes; OSD log:" >&2; tail -20 "$DIR/log/osd.$id.log" >&2; stop; exit 1; }
echo "$CONF"
