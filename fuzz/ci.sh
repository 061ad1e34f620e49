#!/usr/bin/env bash
# Bounded fuzzing for CI (tests/run.sh calls it): builds the fuzz targets with cargo-fuzz
# (libFuzzer; stable toolchain with RUSTC_BOOTSTRAP=1, no sanitizer: the code under test is
# safe Rust, and a sanitizer doubles the cold build), then runs each target from its seed
# corpus in fuzz/corpus/TARGET for FUZZ_SECONDS (default 25). Any crash, panic, timeout or
# out-of-memory fails the run; the input is kept in fuzz/artifacts/TARGET/.
#
#   bash fuzz/ci.sh                    # every target
#   FUZZ_SECONDS=60 bash fuzz/ci.sh photo_decode
#
# Inputs the run finds go to fuzz/work/TARGET (ignored by git); the seeds stay as they are.
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR"

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS="${FUZZ_SECONDS:-25}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked --version "$CARGO_FUZZ_VERSION" cargo-fuzz
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
cargo fuzz build -s none
echo "fuzz build: $(($(date +%s) - start))s"

for t in "${targets[@]}"; do
    mkdir -p "work/$t"
    echo "--- $t: ${FUZZ_SECONDS}s"
    # -rss_limit_mb: a decoder that needs more than this is a bug (limits are ~100 MiB);
    # -timeout: one input taking longer than this is a hang.
    rc=0
    cargo fuzz run -s none "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=60 \
        -print_final_stats=1 >"work/$t.log" 2>&1 || rc=$?
    grep -E '^(INFO: seed corpus|#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
        "work/$t.log" || true
    if [ "$rc" -ne 0 ]; then
        tail -n 60 "work/$t.log" >&2
        echo "fuzz target $t failed (exit $rc): the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets, ${FUZZ_SECONDS}s each, no crash ($(($(date +%s) - start))s in all)"
