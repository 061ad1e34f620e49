#!/usr/bin/env bash
# The rows ../shared/bench/side-by-side.sh cannot give (issue 15), measured the same way:
# the same wrk load, in turns, to the intake ceiling of tinbao's own stack
# (../shared/bench/intake-ceiling, as it is) and to tinbao, abuse limits off.
#
#   webhook   tinbao's Android SMS Gateway webhook (`POST /hooks/sms/android`, SQLite
#             default). Every request is a distinct, correctly signed `sms:received` event
#             (its own id and sender, X-Signature = HMAC-SHA256(secret, body + X-Timestamp)),
#             so each 200 is an event durable in the inbox, not a recognised retry. wrk
#             cannot compute an HMAC, so the events are signed beforehand (python3) and
#             each wrk thread sends its share in turn; the script says so if a run sent
#             more than were made (a repeat is answered without a write).
#   postgres  `POST /api/v1/tips` (the shared script's tip) on PostgreSQL: a fresh
#             database for each run at $PG_URL (default postgres://postgres@127.0.0.1:5432).
#   postgres2 the same with two `tinbao serve` processes on one fresh database (one data
#             folder, so one key file), half the connections to each; the rate is the sum.
#
# usage (from the project root, after `cargo build --release`):
#   bash benches/side-by-side-more.sh [path/to/tinbao] [seconds per run]
#   ROWS="webhook postgres postgres2" CONNS="16 64 256" ROUNDS=2 pick what runs;
#   SHARED_BENCH points at ../shared/bench.
set -euo pipefail
BIN=$(readlink -f "${1:-target/release/tinbao}")
S=${2:-10}
SHARED=$(cd "${SHARED_BENCH:-../shared/bench}" && pwd)
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
[ -x "$BIN" ] || { echo "no tinbao binary at $BIN (cargo build --release)" >&2; exit 1; }
CT=${CEILING_TARGET_DIR:-$PWD/target/intake-ceiling}
cargo build --release -q --manifest-path "$SHARED/intake-ceiling/Cargo.toml" --target-dir "$CT"
CEIL=$CT/release/intake-ceiling
SECRET=bench-webhook-secret-0042
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# One signed event a line: signature, timestamp, body.
make_events() { # count file
    python3 - "$1" "$2" "$SECRET" <<'PY'
import hashlib, hmac, json, sys, time, uuid
count, path, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
ts = str(int(time.time()))
with open(path, "w") as out:
    for i in range(count):
        body = json.dumps({
            "deviceId": "bench-phone-1",
            "event": "sms:received",
            "id": uuid.uuid4().hex,
            "payload": {
                "messageId": uuid.uuid4().hex[:16],
                "message": "Có người bán ma túy ở đầu thôn Nà Pàn, thường tụ tập buổi tối sau 9 giờ gần quán nước ven đường.",
                "phoneNumber": "+849%08d" % i,
                "simNumber": 1,
                "receivedAt": "2026-12-04T09:30:00.000+07:00",
            },
            "webhookId": "bench-webhook",
        }, ensure_ascii=False, separators=(",", ":"))
        sig = hmac.new(secret, body.encode() + ts.encode(), hashlib.sha256).hexdigest()
        out.write(f"{sig}\t{ts}\t{body}\n")
PY
}

cat >"$WORK/hook.lua" <<'LUA'
local threads, made = {}, 0
function setup(thread)
    thread:set("tid", #threads)
    table.insert(threads, thread)
end
function init(args)
    local n = tonumber(os.getenv("HOOK_THREADS"))
    reqs, i = {}, 0
    local line_no = 0
    for line in io.lines(os.getenv("HOOK_EVENTS")) do
        if line_no % n == tid then
            local sig, ts, body = line:match("^(%x+)\t(%d+)\t(.*)$")
            reqs[#reqs + 1] = wrk.format("POST", "/hooks/sms/android", {
                ["Content-Type"] = "application/json",
                ["X-Signature"] = sig,
                ["X-Timestamp"] = ts,
            }, body)
        end
        line_no = line_no + 1
    end
end
function request()
    i = i + 1
    if i > #reqs then
        if i == #reqs + 1 then io.stderr:write("more requests than events: repeats follow\n") end
        i = 1
    end
    return reqs[i]
end
LUA

load() { # url lua conns -> "rate p99 non2xx"
    HOOK_THREADS=2 HOOK_EVENTS="$WORK/events" wrk -t2 -c"$3" -d"${S}s" --latency -s "$2" "$1" |
        awk '/Requests\/sec/{r=$2} / 99%/{p=$2} /Non-2xx/{e=$NF} END{printf "%d %s %d", r, p, e}'
}
ceiling() {
    local d; d=$(mktemp -d); (cd "$d" && exec "$CEIL" >log 2>&1) & local p=$!; sleep 1
    load http://127.0.0.1:18090/tips "$SHARED/intake-ceiling/post.lua" "$1"
    kill $p; wait $p 2>/dev/null || true; rm -rf "$d"
}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432}
TIP_LUA="$WORK/tip.lua"
cat >"$TIP_LUA" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"category":"dealing","province":20,"commune":6001,"village":"Nà Pàn","description":"Có người bán ma túy ở đầu thôn Nà Pàn, thường tụ tập buổi tối sau 9 giờ gần quán nước ven đường; xe máy biển số không rõ, khoảng ba người, một người mặc áo khoác đen. Tôi thấy nhiều lần trong tuần này."}'
LUA
fresh_db() {
    psql "$PG_URL/postgres" -qc "DROP DATABASE IF EXISTS tinbao_side_by_side" -c "CREATE DATABASE tinbao_side_by_side" >/dev/null 2>&1
    echo "$PG_URL/tinbao_side_by_side"
}
start() { # dir port [env...] -> pid
    local d=$1 port=$2; shift 2
    (cd "$d" && exec env TINBAO_LISTEN=127.0.0.1:$port TINBAO_RATE_LIMIT__ENABLED=false "$@" \
        "$BIN" serve >>log 2>&1) &
    local p=$!
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
    echo $p
}
stop() { # pid...
    kill "$@" 2>/dev/null || true
    for p in "$@"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
}
postgres() {
    local d p url; d=$(mktemp -d); url=$(fresh_db)
    p=$(start "$d" 18091 TINBAO_DATABASE_URL="$url")
    load http://127.0.0.1:18091/api/v1/tips "$TIP_LUA" "$1"
    stop $p; rm -rf "$d"
}
postgres2() {
    local d p1 p2 url a b; d=$(mktemp -d); url=$(fresh_db)
    p1=$(start "$d" 18091 TINBAO_DATABASE_URL="$url")
    p2=$(start "$d" 18092 TINBAO_DATABASE_URL="$url" TINBAO_METRICS_LISTEN=off)
    load http://127.0.0.1:18091/api/v1/tips "$TIP_LUA" $(($1 / 2)) >"$d/a" &
    load http://127.0.0.1:18092/api/v1/tips "$TIP_LUA" $(($1 / 2)) >"$d/b"
    wait
    read -r ra pa ea <"$d/a"; read -r rb pb eb <"$d/b"
    printf '%d %s/%s %d' $((ra + rb)) "$pa" "$pb" $((ea + eb))
    stop $p1 $p2; rm -rf "$d"
}
webhook() {
    local d; d=$(mktemp -d)
    make_events $((S * 50000)) "$WORK/events"
    p=$(start "$d" 18091 TINBAO_SMS__ANDROID__ENABLED=true TINBAO_SMS__ANDROID__WEBHOOK_SECRET=$SECRET \
        TINBAO_SMS__ANDROID__API_URL=http://127.0.0.1:9)
    load http://127.0.0.1:18091/hooks/sms/android "$WORK/hook.lua" "$1"
    stop $p; rm -rf "$d"
}
printf '%-10s %-6s %-28s %-32s %s\n' row conns "ceiling (tips/s p99 non2xx)" "tinbao (per s, p99, non2xx)" share
for row in ${ROWS:-webhook postgres postgres2}; do
    for c in ${CONNS:-16 64 256}; do
        for round in $(seq "${ROUNDS:-2}"); do
            a=$(ceiling "$c"); b=$($row "$c")
            share=$(awk -v x="${a%% *}" -v y="${b%% *}" 'BEGIN{printf "%.0f %%", 100*y/x}')
            printf '%-10s %-6s %-28s %-32s %s\n' "$row" "$c" "$a" "$b" "$share"
        done
    done
done
