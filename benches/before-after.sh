#!/usr/bin/env bash
# Runs each benchmark on two trees in turns (before, then after), so that both meet the
# same machine: benches/before-after.sh BEFORE_TREE AFTER_TREE [OUT_DIR]
# e.g.  git worktree add ../before 2e79fbb && benches/before-after.sh ../before .
# Each tree builds into its own target folder (TREE/target-bench); the logs go to
# OUT_DIR (default /tmp): before.log and after.log. BENCHES picks the benchmarks
# (default: intake channels console broadcast); ROUNDS repeats them (default 1).
set -u
before="$(cd "$1" && pwd)"
after="$(cd "$2" && pwd)"
out="${3:-/tmp}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
run() { # tree bench log
    echo "===== $2 in $1 $(date +%T)" >>"$3"
    (
        cd "$1" || exit 1
        export CARGO_TARGET_DIR="$1/target-bench"
        case $2 in
            channels) BENCH_ENGINES=sqlite cargo bench --bench channels ;;
            *) cargo bench --bench "$2" ;;
        esac
    ) >>"$3" 2>&1
    echo "===== $2 done $(date +%T) rc=$?" >>"$3"
}
for _ in $(seq 1 "${ROUNDS:-1}"); do
    for b in ${BENCHES:-intake channels console broadcast}; do
        run "$before" "$b" "$out/before.log"
        run "$after" "$b" "$out/after.log"
    done
done
