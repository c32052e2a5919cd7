#!/usr/bin/env bash
# Runs every cargo-fuzz target of this crate for N seconds (default 60) on its seed corpus and
# fails if one crashes, leaks, times out or runs out of memory. For CI:
#
#   bash fuzz/smoke.sh [SECONDS]
#
# Needs cargo-fuzz (installed here if missing) and a C++ compiler (libFuzzer is built from
# source). Only stable Rust is assumed: RUSTC_BOOTSTRAP=1 unlocks the flags cargo-fuzz passes.
# New inputs the fuzzer finds go to a scratch directory, not to the committed corpus; crash
# reproducers go to fuzz/artifacts/<target>/ (ignored by git).
set -euo pipefail

secs="${1:-60}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

status=0
for target in $(cargo fuzz list); do
    echo "== fuzz target $target: ${secs}s"
    mkdir -p "$scratch/$target" "corpus/$target"
    # -timeout: an input running for 10 s counts as a hang.
    if ! cargo fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1; then
        echo "== fuzz target $target FAILED (reproducer under fuzz/artifacts/$target/)"
        status=1
    fi
done
exit "$status"
