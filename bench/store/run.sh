#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Build the store benchmark if needed and run it: durable commits per second
# with group commit against one fsync per message (a Markdown table on stdout).
#   BUILD_DIR   build directory (default: <repo>/build-bench, Release)
#   SP_BENCH_DIR, SP_BENCH_SECONDS, or bench_store's options (--help) pass through.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target bench_store >/dev/null
exec "$BUILD_DIR/bench/bench_store" "$@"
