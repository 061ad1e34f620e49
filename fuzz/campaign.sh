#!/usr/bin/env bash
# A long campaign (not CI): every target (or those named) for RUNS executions each
# (default 10 million), niced, one libFuzzer job per target, all targets side by side.
# Build first (`RUSTC_BOOTSTRAP=1 cargo fuzz build -s none`). Each target's log is
# work/campaign/TARGET/fuzz-0.log; a summary line per target goes to work/campaign/summary.
# TIMEOUT (default 120 s) is per input: niced on a busy machine, a 6 MP photo can take 20 s.
#
#   bash fuzz/campaign.sh                 # 10M runs each
#   RUNS=1000000 bash fuzz/campaign.sh photo_decode
set -euo pipefail

FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$FUZZ_DIR"
RUNS="${RUNS:-10000000}"
BIN_DIR="$FUZZ_DIR/target/x86_64-unknown-linux-gnu/release"

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi
mkdir -p work/campaign
summary="$FUZZ_DIR/work/campaign/summary"

run_one() {
    local t=$1 dir="$FUZZ_DIR/work/campaign/$1"
    mkdir -p "$dir" "$FUZZ_DIR/work/$t" "$FUZZ_DIR/artifacts/$t"
    local start rc=0
    start=$(date +%s)
    (cd "$dir" && nice -n 19 "$BIN_DIR/$t" -jobs=1 -workers=1 -runs="$RUNS" \
        -rss_limit_mb=2048 -timeout="${TIMEOUT:-120}" -print_final_stats=1 \
        -artifact_prefix="$FUZZ_DIR/artifacts/$t/" \
        "$FUZZ_DIR/work/$t" "$FUZZ_DIR/corpus/$t" >"$dir/main.log" 2>&1) || rc=$?
    local runs
    runs=$(grep -h 'stat::number_of_executed_units' "$dir"/fuzz-0.log | awk '{print $2}' | tail -n 1)
    echo "$t runs=${runs:-?} seconds=$(($(date +%s) - start)) exit=$rc crashes=$(find "$FUZZ_DIR/artifacts/$t" -type f \( -name "crash-*" -o -name "timeout-*" -o -name "oom-*" -o -name "leak-*" \) | wc -l)" >>"$summary"
}

for t in "${targets[@]}"; do
    run_one "$t" &
done
wait
cat "$summary"
