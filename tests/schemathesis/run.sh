#!/usr/bin/env bash
# API conformance: schemathesis (pinned, from PyPI into a venv under target/) sends generated
# requests, good and bad, to the real `tinbao` binary on loopback, and fails on any answer
# the OpenAPI document does not describe: a 5xx, a status the operation does not list, a
# body that does not match its schema, a content type it does not declare.
#
#   bash tests/schemathesis/run.sh            # tests/run.sh calls it after `cargo test`
#
# Bounded and reproducible: a fixed seed, ST_MAX_EXAMPLES cases per operation and phase
# (default 300), and the whole run under ST_TIMEOUT seconds (default 900, generous for a
# fresh machine; a typical run takes about a minute). The binary runs with rate limits off
# (TINBAO_RATE_LIMIT__ENABLED=false) so that generated requests are not all answered 429;
# 429 is documented and tested in tests/api/openapi.rs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

ST_VERSION=4.32.5
ST_MAX_EXAMPLES="${ST_MAX_EXAMPLES:-300}"
ST_SEED="${ST_SEED:-20261202}"
ST_TIMEOUT="${ST_TIMEOUT:-900}"
PYTHON="${TINBAO_PYTHON:-/usr/bin/python3}"
VENV="$ROOT/target/schemathesis-venv"
BIN="${TINBAO_BIN:-$ROOT/target/debug/tinbao}"

die() {
    printf 'tests/schemathesis/run.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# schemathesis, pinned, in its own venv (tests/run.sh installs Debian's python3-venv).
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "version $ST_VERSION\$"; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot make a venv with $PYTHON (Debian: apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION" ||
        die "pip install schemathesis==$ST_VERSION failed"
fi
"$VENV/bin/st" --version

# The real binary, as `cargo test` builds it for the integration tests (a no-op right after
# it; `cargo build` would rebuild many dependencies without the dev-dependencies' features).
if [ -z "${TINBAO_BIN:-}" ]; then
    cargo test --quiet --no-run --test api
fi
[ -x "$BIN" ] || die "no binary at $BIN"

WORK="$(mktemp -d)"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
(
    cd "$WORK"
    exec env -u TINBAO_DATABASE_URL -u TINBAO_KEYS \
        TINBAO_LISTEN="127.0.0.1:$PORT" \
        TINBAO_DATA_DIR="$WORK/var" \
        TINBAO_STATUS_FLOOR_MS=0 \
        TINBAO_RATE_LIMIT__ENABLED=false \
        TINBAO_METRICS_LISTEN=off \
        TINBAO_LOG=info \
        "$BIN" serve >"$WORK/server.out" 2>"$WORK/server.log"
) &
SERVER_PID=$!
for _ in $(seq 1 300); do
    curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "tinbao exited at start"; }
    sleep 0.2
done
curl -fsS "$BASE/healthz" >/dev/null || { cat "$WORK/server.log" >&2; die "tinbao did not answer /healthz"; }

status=0
# From the scratch folder: schemathesis leaves a .schemathesis/ cache where it runs.
cd "$WORK"
timeout --signal=INT --kill-after=30 "$ST_TIMEOUT" \
    "$VENV/bin/st" run "$BASE/api/v1/openapi.json" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --phases examples,coverage,fuzzing \
    --max-examples "$ST_MAX_EXAMPLES" \
    --seed "$ST_SEED" \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --no-color \
    --report junit --report-dir "$WORK/report" || status=$?

if grep -q 'panicked' "$WORK/server.log"; then
    grep -B2 -A10 'panicked' "$WORK/server.log" >&2
    die "the server panicked under schemathesis"
fi
if [ "$status" -eq 124 ] || [ "$status" -eq 130 ]; then
    die "schemathesis did not finish within ${ST_TIMEOUT}s"
fi
[ "$status" -eq 0 ] || die "schemathesis found answers the OpenAPI document does not describe (exit $status)"
echo "schemathesis: every answer conforms"
