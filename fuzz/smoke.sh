#!/usr/bin/env bash
# Runs cargo-fuzz targets of this crate for SECONDS each (default 60) on their seed corpora and
# fails if one crashes, leaks, times out or runs out of memory. For CI:
#
#   bash fuzz/smoke.sh [SECONDS [TARGET...]]
#
# Without TARGETs every target `cargo fuzz list` reports runs (eleven: cdb, config, fc_frame, fip,
# login_text, mode_select, pdu_stream, prout, qla_iocb, srp_iu, unmap_xcopy), one after the other, so the
# total is about 11 x SECONDS plus the build (CI passes 30: 5.5 minutes of fuzzing). Targets run one at a time:
# several of them start threads of their own (the socket driver, device workers).
#
# Needs cargo-fuzz (installed here if missing) and a C++ compiler (libFuzzer is built from
# source). Only stable Rust is assumed: RUSTC_BOOTSTRAP=1 unlocks the flags cargo-fuzz passes.
# New inputs the fuzzer finds go to a scratch directory, not to the committed corpus; crash
# reproducers go to fuzz/artifacts/<target>/ (ignored by git). Each target's run count is printed;
# the output of a failed one is printed again at the end, with its name on the last line.
set -euo pipefail

secs="${1:-60}"
shift || true
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

# One build of every target up front, so each run's seconds are spent fuzzing.
cargo fuzz build

failed=()
for target in "${targets[@]}"; do
    echo "== fuzz target $target: ${secs}s"
    mkdir -p "$scratch/$target" "corpus/$target"
    # -timeout: an input running for 10 s counts as a hang. Each run's output goes to a log of
    # its own; a failure's log is printed again at the end, where a CI log's tail shows it.
    if ! cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 > "$scratch/$target.log" 2>&1; then
        echo "== fuzz target $target FAILED (reproducer under fuzz/artifacts/$target/)"
        failed+=("$target")
    fi
    grep -E '^(Done|stat::(number_of_executed_units|peak_rss_mb))' "$scratch/$target.log" || true
done
for target in "${failed[@]}"; do
    echo "==== fuzz target $target FAILED; the end of its output:"
    # The panic or sanitizer report with the first frames of its stacks, then the end.
    grep -a -m 4 -A 14 -E 'panicked at|ERROR: (LeakSanitizer|AddressSanitizer|libFuzzer)|(Direct|Indirect) leak of' \
        "$scratch/$target.log" | cut -c1-240 || true
    grep -av -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse)|^ +(#|[0-9]+:|at )' "$scratch/$target.log" | tail -n 30
    ls -l "artifacts/$target/" 2> /dev/null || true
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz smoke: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz smoke: all ${#targets[@]} targets ran ${secs}s without a finding"
