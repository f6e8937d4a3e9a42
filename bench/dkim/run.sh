#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# DKIM signatures per second, RSA-2048 and Ed25519, through the dkim plugin's
# signing code (plugins/dkim/dkim_sign.c, libopendkim), on 1..THREADS threads
# sharing one library handle as the plugin's pool threads do; plus OpenSSL's
# share of one signature (key parse, bare signature). A Markdown table.
#   BUILD_DIR  build directory (default: <repo>/build-bench, Release)
#   SECONDS_PER_ROW (default 3), THREADS (default: the CPU count), SIZE
#   (message bytes, default 2048)
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target bench_dkim >/dev/null
echo "$(nproc) CPUs, $(openssl version | cut -d' ' -f1-2), libopendkim $(pkg-config --modversion opendkim)"
echo
exec "$BUILD_DIR/plugins/dkim/bench_dkim" --seconds "${SECONDS_PER_ROW:-3}" \
    --threads "${THREADS:-$(nproc)}" --size "${SIZE:-2048}"
