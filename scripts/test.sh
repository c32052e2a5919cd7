#!/bin/bash
# Runs every test of scst-rs. On a fresh Debian machine, run as root: it installs what the
# tests need first (apt-get). Steps (each can be skipped with SKIP_<STEP>=1):
#   FMT      cargo fmt --check
#   CLIPPY   cargo clippy --all-targets -D warnings
#   UNIT     cargo test --workspace (unit, integration, doc tests; BLOCKIO on a loop device)
#   CONF     libiscsi conformance suite against iscsi-target (scripts/conformance.sh)
#   MATRIX   the whole suite on default LUN kinds (scripts/conformance-matrix.sh; CI runs
#            MATRIX_KINDS, a cheap subset with an RBD image on a single-node Ceph cluster;
#            KINDS= of that script runs them all)
#   LINUX    Linux's own initiators in the rig VM: open-iscsi (scripts/linux-initiator.sh),
#            virtio_scsi through vhost-user-scsi-target (scripts/vhost-user-scsi.sh), ib_srp
#            over soft-RoCE against srp-target and LIO's ib_srpt (scripts/srp-rxe.sh), fcoe/libfc
#            VN2VN against fc-target and LIO's tcm_fc (scripts/fcoe-vn2vn.sh), pass-through of a
#            scsi_debug disk scored against LIO's pscsi (scripts/sg-passthrough.sh), a TCMU
#            backstore as a tcm_loop /dev/sdX (scripts/tcmu-loop.sh)
#   FUZZ     a short run of every fuzz target (fuzz/smoke.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
step() { local v="SKIP_$1"; [ -z "${!v:-}" ]; }
banner() { printf '\n==== %s ====\n' "$*"; }

if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  banner "system packages"
  # qemu-img (benches only) is not needed here: qemu-block-extra must match qemu-utils' Debian
  # version, which differs between machine images.
  # libibverbs-dev/librdmacm-dev: the SRP driver (feature rdma, built by --all-features).
  # multipath-tools: dm-multipath in the guest over two vhost-user paths (scripts/vhost-user-scsi.sh).
  # librbd-dev/librados-dev: the RBD store (feature rbd); ceph-mon/ceph-osd/ceph-common: the
  # single-node test cluster its tests and the matrix's rbd kind start (scripts/ceph-cluster.sh).
  pkgs="libiscsi-bin sg3-utils python3 util-linux e2fsprogs clang libibverbs-dev librdmacm-dev multipath-tools
    librbd-dev librados-dev ceph-mon ceph-osd ceph-common"
  missing=$(for p in $pkgs; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done)
  if [ -n "$missing" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
  fi
fi

if step FMT; then banner "cargo fmt"; cargo fmt --all -- --check; fi
if step CLIPPY; then banner "cargo clippy"; cargo clippy --workspace --all-targets --all-features -- -D warnings; fi
if step UNIT; then banner "cargo test"; cargo test --workspace --all-features; fi
if step CONF || step MATRIX || step LINUX; then banner "release build"; cargo build --release -p scst-examples --all-features; fi
if step CONF; then banner "libiscsi conformance"; MIN_PASS=${MIN_PASS:-230} scripts/conformance.sh; fi
if step MATRIX; then
  banner "conformance matrix"
  KINDS=${MATRIX_KINDS:-fileio-thick blockio-loop nullio rbd} scripts/conformance-matrix.sh
fi
if step LINUX; then
  banner "Linux initiator (rig)"
  RIG=${RIG:-$PWD/../shared/rig}
  "$RIG/build-initramfs.sh" > /tmp/scst-rig-build.log 2>&1 || { tail -n 30 /tmp/scst-rig-build.log; exit 1; }
  RIG=$RIG scripts/linux-initiator.sh
  RIG=$RIG ZERO_COPY=1 scripts/linux-initiator.sh
  banner "virtio-scsi over vhost-user (rig)"
  RIG=$RIG scripts/vhost-user-scsi.sh
  banner "SRP: Linux ib_srp over soft-RoCE, ours and LIO ib_srpt (rig)"
  RIG=$RIG scripts/srp-rxe.sh both
  banner "FCoE: Linux fcoe/libfc in VN2VN mode against fc-target, then LIO tcm_fc (rig)"
  RIG=$RIG FC_COMPARE=1 scripts/fcoe-vn2vn.sh target/release/fc-target
  banner "SCSI pass-through over scsi_debug: ours vs LIO pscsi (rig)"
  RIG=$RIG scripts/sg-passthrough.sh
  banner "TCMU + tcm_loop: a LUN of ours as the guest's /dev/sdX (rig)"
  RIG=$RIG scripts/tcmu-loop.sh
fi
if step FUZZ && [ -x fuzz/smoke.sh ]; then banner "fuzz smoke"; fuzz/smoke.sh "${FUZZ_SECONDS:-30}"; fi
banner "all tests passed"
