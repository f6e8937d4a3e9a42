#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# SMTP ingest benchmark: Postfix's smtp-source sends the same load to sendpipe
# (ingress_smtp, durable commits), a private Postfix instance (every transport
# discard:, queue fsync'd as Postfix does by default), Haraka (queue hook that
# accepts and discards) and smtp-sink (accepts and discards without parsing),
# and prints messages/s, server CPU microseconds per message and ratios as a
# Markdown table.
#
# Each server gets four runs: 1 KB and 10 KB bodies, a new connection per
# message and reused connections (smtp-source -d). The server's CPU is
# utime+stime from /proc/<pid>/stat (summed over the server's process tree for
# Postfix and Haraka, whose work spreads over several processes) before and
# after each run.
#
#   MESSAGES     messages per run (default 20000)
#   SESSIONS     parallel SMTP sessions (default 20)
#   SIZES        body sizes in bytes (default "1024 10240")
#   SERVERS      subset of "sendpipe postfix haraka sink" (default all)
#   BUILD_DIR    build directory (default <repo>/build-bench, Release)
#   SYNC         store.sync for sendpipe (default true)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$ROOT/bench/lib.sh"
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
MESSAGES=${MESSAGES:-20000}
SESSIONS=${SESSIONS:-20}
SIZES=${SIZES:-"1024 10240"}
SERVERS=${SERVERS:-"sendpipe postfix haraka sink"}
SYNC=${SYNC:-true}
SENDER=bench@example.com
RCPT=rcpt@example.net

if [ ! -x /usr/sbin/smtp-source ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "installing postfix (for smtp-source, smtp-sink and the comparison)" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        postfix >/dev/null
fi
# The package may have started the system instance (where services may
# start): stop it, only private instances run here.
if /usr/sbin/postfix status >/dev/null 2>&1; then
    echo "stopping the system Postfix the package started" >&2
    /usr/sbin/postfix stop >/dev/null 2>&1 || true
fi

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target sendpipe ingress_smtp >/dev/null

TMP=$(mktemp -d /tmp/sp-bench-smtp.XXXXXX)
chmod 755 "$TMP"
SP_PID=""
SINK_PID=""
HARAKA_PID=""
PF_MASTER=""
cleanup() {
    [ -n "$SP_PID" ] && kill "$SP_PID" 2>/dev/null && wait "$SP_PID" 2>/dev/null || true
    [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null && wait "$SINK_PID" 2>/dev/null || true
    [ -n "$HARAKA_PID" ] && kill "$HARAKA_PID" 2>/dev/null && wait "$HARAKA_PID" 2>/dev/null || true
    [ -n "$PF_MASTER" ] && kill "$PF_MASTER" 2>/dev/null && wait "$PF_MASTER" 2>/dev/null || true
    [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT


# CPU ticks (utime+stime) of a process and all its descendants, with the
# children they have reaped (cutime+cstime): Postfix's smtpd/cleanup processes may end
# during a run, their CPU then moves to the parent's cutime/cstime.
tree_ticks_all() {
    local pids=("$1") p sum=0 kids st
    while [ ${#pids[@]} -gt 0 ]; do
        p=${pids[0]}
        pids=("${pids[@]:1}")
        st=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null) || continue
        set -- $st
        sum=$((sum + ${12} + ${13} + ${14} + ${15}))
        kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
        for k in $kids; do pids+=("$k"); done
    done
    echo "$sum"
}
HZ=$(getconf CLK_TCK)

# run NAME PORT PID SIZE MODE -> "msgs_per_s cpu_us_per_msg"
run_load() {
    local name=$1 port=$2 pid=$3 size=$4 mode=$5 flags=() t0 t1 c0 c1
    [ "$mode" = reuse ] && flags+=(-d)
    c0=$(tree_ticks_all "$pid")
    t0=$(date +%s.%N)
    if ! /usr/sbin/smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$size" "${flags[@]}" \
        -f "$SENDER" -t "$RCPT" -M bench.example.com -S bench \
        "127.0.0.1:$port" >"$TMP/src-$name-$size-$mode.log" 2>&1; then
        echo "smtp-source against $name failed: $(tail -3 "$TMP/src-$name-$size-$mode.log")" >&2
        echo "- -"
        return
    fi
    t1=$(date +%s.%N)
    c1=$(tree_ticks_all "$pid")
    awk -v m="$MESSAGES" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$HZ" \
        'BEGIN { printf "%.0f %.0f\n", m / (t1 - t0), c * 1e6 / hz / m }'
}

declare -A RES
run_all() {
    local name=$1 port=$2 pid=$3 size mode
    for size in $SIZES; do
        for mode in new reuse; do
            RES[$name,$size,$mode]=$(run_load "$name" "$port" "$pid" "$size" "$mode")
            echo "$name ${size}B $mode: ${RES[$name,$size,$mode]}" >&2
        done
    done
}

NOTES=()

# ---- sendpipe --------------------------------------------------------------
if [[ " $SERVERS " == *" sendpipe "* ]]; then
    SP_PORT=$(free_port)
    SP="$BUILD_DIR/sendpipe"
    cat >"$TMP/sendpipe.yaml" <<YAML
data_dir: $TMP/sp-data
plugin_dir: $BUILD_DIR/plugins
log: { level: warn, file: $TMP/sendpipe.log }
store: { sync: $SYNC, map_size: 32G }
plugins:
  - name: ingress_smtp
    config: { listen: "127.0.0.1:$SP_PORT", hostname: bench.sendpipe.test, max_sessions: 1024 }
YAML
    team=$("$SP" teams create bench -c "$TMP/sendpipe.yaml" | grep -o 'created team [0-9]*' | grep -o '[0-9]*$')
    "$SP" domains add --team "$team" example.com --verified -c "$TMP/sendpipe.yaml" >/dev/null
    sed -i "s|max_sessions: 1024 }|max_sessions: 1024, trusted_networks: \"127.0.0.0/8\", trusted_team: $team }|" \
        "$TMP/sendpipe.yaml"
    "$SP" serve -c "$TMP/sendpipe.yaml" &
    SP_PID=$!
    wait_port "$SP_PORT"
    before=$("$SP" messages list --limit 100000000 -c "$TMP/sendpipe.yaml" | wc -l)
    run_all sendpipe "$SP_PORT" "$SP_PID"
    kill "$SP_PID"
    wait "$SP_PID" || true
    SP_PID=""
    stored=$("$SP" messages list --limit 100000000 -c "$TMP/sendpipe.yaml" | wc -l)
    NOTES+=("sendpipe stored $((stored - before)) messages (store.sync: $SYNC).")
fi

# ---- private Postfix -------------------------------------------------------
if [[ " $SERVERS " == *" postfix "* ]]; then
    PF_PORT=$(free_port)
    PF=$TMP/postfix
    mkdir -p "$PF/etc" "$PF/data" "$PF/spool"
    chown postfix "$PF/data"
    cp /etc/postfix/master.cf "$PF/etc/master.cf"
    # Only the loopback listener on PF_PORT, no system port 25.
    sed -i "s|^smtp      inet  n       -       y       -       -       smtpd|127.0.0.1:$PF_PORT inet n - n - - smtpd|" \
        "$PF/etc/master.cf"
    grep -q "^127.0.0.1:$PF_PORT" "$PF/etc/master.cf" || {
        echo "could not set the Postfix listener in master.cf" >&2; exit 1; }
    # The chroot flag in Debian's master.cf needs a populated chroot: run
    # every service unchrooted in this private instance.
    awk 'BEGIN { OFS = " " }
         /^[a-z0-9.:]+ +(inet|unix|unix-dgram|fifo|pass) / && NF >= 8 { $5 = "n" }
         { print }' "$PF/etc/master.cf" >"$PF/etc/master.cf.new"
    mv "$PF/etc/master.cf.new" "$PF/etc/master.cf"
    cat >"$PF/etc/main.cf" <<PFCF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.postfix.test
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = loopback-only
inet_protocols = ipv4
smtpd_relay_restrictions = permit_mynetworks, reject
default_transport = discard:
relay_transport = discard:
local_transport = discard:
virtual_transport = discard:
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
default_process_limit = 100
alias_maps =
alias_database =
maillog_file = /dev/stdout
PFCF
    PF_CONF=$PF/etc
    # "postfix check" creates the queue directories. The master runs in the
    # foreground (-d) as a child of this script, so that its PID is known and
    # no postfix-script or syslog is involved; in a session of its own, so
    # that on SIGTERM it takes its smtpd and cleanup processes down with it.
    /usr/sbin/postfix -c "$PF_CONF" check >&2 || true
    setsid /usr/lib/postfix/sbin/master -c "$PF_CONF" -d >"$PF/master.log" 2>&1 &
    PF_MASTER=$!
    wait_port "$PF_PORT"
    run_all postfix "$PF_PORT" "$PF_MASTER"
    kill "$PF_MASTER"
    wait "$PF_MASTER" 2>/dev/null || true
    PF_MASTER=""
    NOTES+=("Postfix $(/usr/sbin/postconf -h mail_version 2>/dev/null): private instance, queue under a temp dir, every transport discard:, default fsync.")
fi

# ---- Haraka ----------------------------------------------------------------
if [[ " $SERVERS " == *" haraka "* ]]; then
    HK=$TMP/haraka
    mkdir -p "$HK/npm"
    haraka_why=""
    HARAKA_NPM=${HARAKA_NPM:-$HK/npm}
    if [ ! -x "$HARAKA_NPM/node_modules/.bin/haraka" ]; then
        if ! command -v npm >/dev/null; then
            haraka_why="npm is not installed"
        elif ! (cd "$HARAKA_NPM" && npm install --no-audit --no-fund --loglevel=error Haraka \
                >"$HK/npm.log" 2>&1); then
            haraka_why="npm install Haraka failed: $(tail -2 "$HK/npm.log" | tr '\n' ' ')"
        fi
    fi
    if [ -z "$haraka_why" ]; then
        HK_PORT=$(free_port)
        "$HARAKA_NPM/node_modules/.bin/haraka" -i "$HK/srv" >"$HK/init.log" 2>&1 || true
        mkdir -p "$HK/srv/config" "$HK/srv/plugins"
        # Accept every recipient and discard every message: nothing is persisted.
        cat >"$HK/srv/plugins/bench_discard.js" <<'JS'
exports.register = function () {
    this.register_hook('rcpt', 'accept_rcpt');
    this.register_hook('queue', 'discard');
};
exports.accept_rcpt = function (next) { next(OK); };
exports.discard = function (next) { next(OK, 'discarded'); };
JS
        printf 'bench_discard\n' >"$HK/srv/config/plugins"
        cat >"$HK/srv/config/smtp.ini" <<INI
listen=127.0.0.1:$HK_PORT
nodes=1
INI
        printf 'bench.haraka.test\n' >"$HK/srv/config/me"
        printf 'LOGWARN\n' >"$HK/srv/config/loglevel"
        printf '20000000\n' >"$HK/srv/config/databytes"
        "$HARAKA_NPM/node_modules/.bin/haraka" -c "$HK/srv" >"$HK/haraka.log" 2>&1 &
        HARAKA_PID=$!
        if wait_port "$HK_PORT"; then
            run_all haraka "$HK_PORT" "$HARAKA_PID"
            NOTES+=("Haraka $(node -p "require('$HARAKA_NPM/node_modules/Haraka/package.json').version"): nodes=1 (a master and one cluster worker, CPU of both counted), queue hook discards.")
        else
            haraka_why="Haraka did not listen: $(tail -3 "$HK/haraka.log" | tr '\n' ' ')"
        fi
        kill "$HARAKA_PID" 2>/dev/null || true
        wait "$HARAKA_PID" 2>/dev/null || true
        HARAKA_PID=""
    fi
    if [ -n "$haraka_why" ]; then
        NOTES+=("Haraka not measured: $haraka_why")
    fi
fi

# ---- smtp-sink -------------------------------------------------------------
if [[ " $SERVERS " == *" sink "* ]]; then
    SINK_PORT=$(free_port)
    # -c counts; -u runs as postfix; backlog 256.
    /usr/sbin/smtp-sink -u postfix "127.0.0.1:$SINK_PORT" 256 >"$TMP/sink.log" 2>&1 &
    SINK_PID=$!
    wait_port "$SINK_PORT"
    run_all sink "$SINK_PORT" "$SINK_PID"
    kill "$SINK_PID"
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
fi

# ---- table -----------------------------------------------------------------
get() { local v=${RES[$1,$2,$3]:-"- -"}; set -- $v; echo "$1 $2"; }

echo "SMTP ingest: smtp-source, $SESSIONS sessions, $MESSAGES messages per run, one recipient;"
echo "msg/s = messages per second, cpu = server CPU microseconds per message (user+system)."
echo
echo "| body | connections | sendpipe msg/s | cpu | Postfix msg/s | cpu | Haraka msg/s | cpu | smtp-sink msg/s | cpu | sendpipe/Postfix | sendpipe/Haraka | sendpipe/smtp-sink |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for size in $SIZES; do
    for mode in new reuse; do
        read -r s_r s_c < <(get sendpipe "$size" "$mode")
        read -r p_r p_c < <(get postfix "$size" "$mode")
        read -r h_r h_c < <(get haraka "$size" "$mode")
        read -r k_r k_c < <(get sink "$size" "$mode")
        label="per message"
        [ "$mode" = reuse ] && label="reused (-d)"
        echo "| $((size / 1024)) KB | $label | $s_r | $s_c | $p_r | $p_c | $h_r | $h_c | $k_r | $k_c |" \
            "$(ratio "$s_r" "$p_r") | $(ratio "$s_r" "$h_r") | $(ratio "$s_r" "$k_r") |"
    done
done
echo
for n in "${NOTES[@]}"; do
    echo "- $n"
done
