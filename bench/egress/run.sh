#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Egress benchmark. For each message size (1 KB and 100 KB of text):
#   1. HTTP ingest: wrk POSTs /api/v1/emails for DURATION seconds, every
#      message scheduled for the same instant a little later (durable
#      commits, store.sync true), so the ingest rate is measured alone;
#   2. egress: at that instant the queue drains through render, mime, dkim
#      and egress_smtp to Postfix's smtp-sink over pooled connections; the
#      rate is messages over the time from the due instant to the last SENT.
# The same sink fed by Postfix's smtp-source over as many reused connections
# is the peer: the sink's own ceiling on this machine. Then a paced run: PACED_RATE messages/s for PACED_SECONDS through the whole
# pipeline, end-to-end latency from accept to SENT (the sink's 250) p50/p99.
# Prints Markdown tables.
#
#   BUILD_DIR     build directory (default <repo>/build-bench, Release)
#   DURATION      seconds of ingest per size (default 5)
#   SIZES         message text sizes in bytes (default "1000 100000")
#   DKIM          rsa, ed25519 or none (default rsa: RSA-2048 signatures)
#   CONNECTIONS   relay pool size (default 8)
#   PACED_RATE    messages/s of the latency run (default 1000)
#   PACED_SECONDS seconds of the latency run (default 10)
#   EGRESS        smtp (default) or outbox: the dev outbox instead of the
#                 relay, to see what the pipeline drains without SMTP
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/bench/lib.sh"
HERE=$ROOT/bench/egress
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
DURATION=${DURATION:-5}
SIZES=${SIZES:-"1000 100000"}
DKIM=${DKIM:-rsa}
CONNECTIONS=${CONNECTIONS:-8}
PACED_RATE=${PACED_RATE:-1000}
PACED_SECONDS=${PACED_SECONDS:-10}
EGRESS=${EGRESS:-smtp}
case "$EGRESS" in smtp | outbox) ;; *) echo "EGRESS must be smtp or outbox" >&2; exit 2 ;; esac

for t in wrk smtp-sink; do
    if ! command -v $t >/dev/null && [ ! -x /usr/sbin/$t ]; then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            wrk postfix >/dev/null
    fi
done
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target sendpipe ingress_http api_usesend render mime dkim \
    egress_smtp egress_outbox >/dev/null

TMP=$(mktemp -d /tmp/sp-bench-egress.XXXXXX)
SP_PID=""
SINK_PID=""
cleanup() {
    [ -n "$SP_PID" ] && kill "$SP_PID" 2>/dev/null && wait "$SP_PID" 2>/dev/null || true
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT


metric() {
    curl -s "http://127.0.0.1:$SP_PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

now_ms() { date +%s%3N; }

SINK_PORT=$(free_port)
# smtp-sink: accepts everything, PIPELINING advertised, up to 1024 sessions.
"$SINK" -u nobody 127.0.0.1:"$SINK_PORT" 1024 &
SINK_PID=$!
wait_port "$SINK_PORT"

start_sendpipe() {
    rm -rf "$TMP/data"
    SP_PORT=$(free_port)
    local dkim_plugin=""
    if [ "$DKIM" != none ]; then dkim_plugin="  - name: dkim"; fi
    local egress="  - name: egress_outbox"
    if [ "$EGRESS" = smtp ]; then
        egress="  - name: egress_smtp
    config: { relay: \"127.0.0.1:$SINK_PORT\", tls: none, max_connections: $CONNECTIONS }"
    fi
    cat >"$TMP/sendpipe.yaml" <<YAML
data_dir: $TMP/data
plugin_dir: $BUILD_DIR/plugins
log: { level: warn, file: $TMP/sendpipe.log }
store: { sync: true, map_size: 8G }
scheduler: { concurrency: 512 }
settings: { api_rate_limit: 0 }
plugins:
  - name: ingress_http
    config: { listen: "127.0.0.1:$SP_PORT" }
  - name: api_usesend
  - name: render
  - name: mime
$dkim_plugin
$egress
YAML
    SP="$BUILD_DIR/sendpipe"
    "$SP" teams create bench -c "$TMP/sendpipe.yaml" >/dev/null
    local algo=()
    if [ "$DKIM" = ed25519 ]; then algo=(--dkim-algorithm ed25519); fi
    "$SP" domains add --team bench example.com --verified "${algo[@]}" -c "$TMP/sendpipe.yaml" \
        >/dev/null
    SP_BENCH_KEY=$("$SP" keys create --team bench -c "$TMP/sendpipe.yaml" |
        grep -o 'us_[0-9a-z]*_[0-9a-f]*' | head -1)
    export SP_BENCH_KEY
    "$SP" serve -c "$TMP/sendpipe.yaml" &
    SP_PID=$!
    wait_port "$SP_PORT"
}

stop_sendpipe() {
    kill "$SP_PID"
    wait "$SP_PID" || true
    SP_PID=""
}


# The sink's own ceiling, as a peer in the same run: Postfix's smtp-source
# sending the same number of messages of the same size over CONNECTIONS
# reused connections (-d), no pipeline behind it.
sink_ceiling() {
    local n=$1 size=$2 t0 t1
    t0=$(now_ms)
    smtp-source -d -s "$CONNECTIONS" -m "$n" -l "$size" -f bench@example.com \
        -t sink@example.net 127.0.0.1:"$SINK_PORT"
    t1=$(now_ms)
    awk -v n="$n" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / (ms > 0 ? ms : 1) }'
}

ROWS=()
for size in $SIZES; do
    start_sendpipe
    # Due a few seconds after the ingest run ends.
    due_ms=$(( $(now_ms) + (DURATION + 4) * 1000 ))
    export SP_BENCH_SIZE=$size
    SP_BENCH_AT=$(date -u -d "@$((due_ms / 1000))" +%Y-%m-%dT%H:%M:%S).$(printf %03d $((due_ms % 1000)))Z
    export SP_BENCH_AT
    out=$(wrk -t2 -c32 -d"${DURATION}s" -s "$HERE/post.lua" "http://127.0.0.1:$SP_PORT/api/v1/emails")
    in_rps=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
    bad=$(echo "$out" | awk '/Non-2xx or 3xx responses:/ { print $NF }')
    n=$(metric sendpipe_submitted_total)
    # Wait for the due instant, then for the last delivery.
    while [ "$(now_ms)" -lt "$due_ms" ]; do sleep 0.01; done
    last=0
    deadline=$(( due_ms + 300000 ))
    while :; do
        d=$(metric sendpipe_delivered_total)
        t=$(now_ms)
        if [ "${d:-0}" -ge "$n" ]; then last=$t; break; fi
        if [ "$t" -gt "$deadline" ]; then echo "egress did not finish: $d of $n" >&2; exit 1; fi
        sleep 0.02
    done
    failed=$(metric sendpipe_failed_total)
    out_rps=$(awk -v n="$n" -v ms=$((last - due_ms)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
    stop_sendpipe
    peer=-
    if [ "$EGRESS" = smtp ]; then peer=$(sink_ceiling "$n" "$size"); fi
    ROWS+=("| $size | $n | $in_rps | $out_rps | $(ratio "$out_rps" "$in_rps") | $peer | $(ratio "$out_rps" "$peer") | ${bad:-0} | ${failed:-0} |")
done

start_sendpipe
paced=$(python3 "$HERE/paced.py" "http://127.0.0.1:$SP_PORT" "$SP_BENCH_KEY" "$PACED_RATE" \
    "$PACED_SECONDS" 1000)
stop_sendpipe

if [ "$EGRESS" = smtp ]; then
    echo "Egress: render, mime, dkim ($DKIM), egress_smtp to smtp-sink over a pool of"
    echo "$CONNECTIONS connections (no TLS); ingest by wrk, 32 connections, ${DURATION} s, durable commits."
else
    echo "Egress: render, mime, dkim ($DKIM), egress_outbox (kept in the store, no SMTP);"
    echo "ingest by wrk, 32 connections, ${DURATION} s, durable commits."
fi
echo
echo "| text bytes | messages | HTTP ingest msg/s | egress msg/s | egress / ingest | smtp-source msg/s | egress / smtp-source | non-2xx | failed |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for r in "${ROWS[@]}"; do echo "$r"; done
echo
echo "Paced run, 1 KB messages, end-to-end (accept to SENT: the sink's 250, or the outbox's commit):"
echo
echo "| offered msg/s | sent | failed | unsent | p50 ms | p99 ms | max ms | API accept p99 ms |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
echo "$paced" | awk '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $8, $2, $4, $6, $10, $12, $14, $16 }'
