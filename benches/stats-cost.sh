#!/bin/bash
# What per-command statistics cost over iSCSI: iscsi-target with `--statistics on` (the default)
# against `--statistics off`, in paired, alternating rounds (benches/ab.sh), on a NULLIO LUN (where
# the command itself costs least, so counting weighs most), `qemu-img bench` 4 KiB at QD32, reads
# and writes. Prints the median IOPS and target CPU per command of each and how on differs from
# off. Goal (issue 16): < 2% of 4 KiB QD32 IOPS.
# (benches/benches/stats_cost.rs measures the same in-process, without TCP.)
# usage: [ROUNDS=5] [COUNT=150000] [BIN=target/release/iscsi-target] benches/stats-cost.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
A="--statistics on" B="--statistics off" LUN=nullio:1T POINTS="r4k32 w4k32" GOAL_IOPS_COST=0.02 \
  exec "$HERE/ab.sh"
