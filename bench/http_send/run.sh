#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# HTTP send benchmark: wrk POSTs a ~1 KB JSON body over 50 connections for
# DURATION seconds, first against sendpipe, then against nginx (Debian
# nginx-light, started here on loopback, answering a static JSON body), and
# prints requests/s, p50 and p99 of both and their ratios as a Markdown table.
#
# sendpipe is measured on the real send route, POST /api/v1/emails of the
# api_usesend plugin, with a real API key (team, verified domain and key made
# with the CLI first; the per-team rate limit off): it answers 200
# {"emailId":...} only after the store commit is durable (store.sync: true,
# group commit). ROUTE=test measures POST /test/submit of the http_echo test
# plugin instead: the same durable submit without authentication and JSON
# validation.
#
#   ROUTE        api (default) or test
#   BUILD_DIR    build directory (default <repo>/build-bench, Release)
#   DURATION     seconds per run (default 10)
#   CONNECTIONS  wrk connections (default 50)
#   THREADS      wrk threads (default 2)
#   SYNC         store.sync for sendpipe (default true)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/bench/lib.sh"
HERE=$ROOT/bench/http_send
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-2}
SYNC=${SYNC:-true}
ROUTE=${ROUTE:-api}

need_pkgs=()
command -v wrk >/dev/null || need_pkgs+=(wrk)
[ -x /usr/sbin/nginx ] || need_pkgs+=(nginx-light)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "installing ${need_pkgs[*]}" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${need_pkgs[@]}" >/dev/null
fi

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target sendpipe ingress_http http_echo api_usesend egress_outbox \
    >/dev/null

TMP=$(mktemp -d /tmp/sp-bench-http.XXXXXX)
SP_PID=""
NGX_PID=""
cleanup() {
    [ -n "$SP_PID" ] && kill "$SP_PID" 2>/dev/null && wait "$SP_PID" 2>/dev/null || true
    [ -n "$NGX_PID" ] && kill "$NGX_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT


# wrk output -> "rps p50_ms p99_ms non2xx"
measure() {
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$HERE/post.lua" "$1")
    echo "$out" >"$TMP/wrk-$2.txt"
    echo "$out" | awk '
        function ms(v) {
            if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
            if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
            if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
            return v + 0
        }
        /^ +50%/ { p50 = ms($2) }
        /^ +99%/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { bad = $NF }
        END { printf "%s %.3f %.3f %d\n", rps, p50, p99, bad }'
}

# sendpipe: the HTTP ingress, the test route, the dev outbox.
SP_PORT=$(free_port)
cat >"$TMP/sendpipe.yaml" <<YAML
data_dir: $TMP/data
plugin_dir: $BUILD_DIR/plugins
log: { level: warn, file: $TMP/sendpipe.log }
store: { sync: $SYNC }
settings: { api_rate_limit: 0 }
plugins:
  - name: ingress_http
    config: { listen: "127.0.0.1:$SP_PORT" }
  - name: api_usesend
  - name: http_echo
    path: $BUILD_DIR/tests/integration/plugins/http_echo.so
  - name: egress_outbox
YAML
SP="$BUILD_DIR/sendpipe"
"$SP" teams create bench -c "$TMP/sendpipe.yaml" >/dev/null
"$SP" domains add --team bench example.com --verified -c "$TMP/sendpipe.yaml" >/dev/null
export SP_BENCH_KEY
SP_BENCH_KEY=$("$SP" keys create --team bench -c "$TMP/sendpipe.yaml" | grep -o 'us_[0-9a-z]*_[0-9a-f]*' | head -1)
if [ "$ROUTE" = api ]; then
    SP_PATH=/api/v1/emails
else
    SP_PATH=/test/submit
fi
"$SP" serve -c "$TMP/sendpipe.yaml" &
SP_PID=$!
wait_port "$SP_PORT"
code=$(curl -s -o "$TMP/first.json" -w '%{http_code}' -H "Authorization: Bearer $SP_BENCH_KEY" \
    -H 'Content-Type: application/json' \
    -d '{"from":"b@example.com","to":"s@example.com","subject":"s","text":"t"}' \
    "http://127.0.0.1:$SP_PORT$SP_PATH")
if [ "$code" != 200 ]; then
    echo "sendpipe answered $code to a first send: $(cat "$TMP/first.json")" >&2
    exit 1
fi
# Store counters around the run: how many commits the load took and how
# many write requests each one carried (submission, outbox copy, outcome).
store_counters() {
    curl -s "http://127.0.0.1:$SP_PORT/metrics" | awk '
        /^sendpipe_store_commits_total / { c = $2 }
        /^sendpipe_store_requests_total / { r = $2 }
        /^sendpipe_submitted_total / { m = $2 }
        END { printf "%d %d %d\n", c, r, m }'
}
read -r c0 r0 m0 < <(store_counters)
read -r sp_rps sp_p50 sp_p99 sp_bad < <(measure "http://127.0.0.1:$SP_PORT$SP_PATH" sendpipe)
read -r c1 r1 m1 < <(store_counters)
kill "$SP_PID"
wait "$SP_PID" || true
SP_PID=""

# nginx: one worker per core, a fixed JSON answer to the same POST.
NGX_PORT=$(free_port)
mkdir -p "$TMP/nginx"
cat >"$TMP/nginx/nginx.conf" <<NGINX
worker_processes auto;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            default_type application/json;
            return 200 '{"emailId":"0000000000000"}';
        }
    }
}
NGINX
/usr/sbin/nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" &
NGX_PID=$!
wait_port "$NGX_PORT"
read -r ng_rps ng_p50 ng_p99 ng_bad < <(measure "http://127.0.0.1:$NGX_PORT/v1/emails" nginx)
kill "$NGX_PID"
wait "$NGX_PID" 2>/dev/null || true
NGX_PID=""


echo "HTTP send: wrk, $CONNECTIONS connections, $THREADS threads, ${DURATION} s, ~1 KB JSON POST;"
echo "sendpipe route POST $SP_PATH (durable, store.sync: $SYNC); nginx: static JSON."
echo
echo "| server | requests/s | p50 ms | p99 ms | non-2xx |"
echo "|---|---:|---:|---:|---:|"
echo "| sendpipe | $sp_rps | $sp_p50 | $sp_p99 | $sp_bad |"
echo "| nginx-light | $ng_rps | $ng_p50 | $ng_p99 | $ng_bad |"
echo "| sendpipe / nginx | $(ratio "$sp_rps" "$ng_rps") | $(ratio "$sp_p50" "$ng_p50") |" \
    "$(ratio "$sp_p99" "$ng_p99") | |"
echo
echo "sendpipe store during the run: $((c1 - c0)) commits ($(ratio $((c1 - c0)) "$DURATION")/s)," \
    "$(ratio $((r1 - r0)) $((c1 - c0))) write requests per commit," \
    "$(ratio $((r1 - r0)) $((m1 - m0))) per stored message."
