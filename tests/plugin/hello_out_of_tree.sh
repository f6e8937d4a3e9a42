#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Builds sdk/examples/hello out of tree against an SDK installed from this
# build tree, once with CMake (find_package) and once with pkg-config and a
# single compiler call, and loads each hello.so through the real loader
# (the plugin.hello test binary, told where the .so is by SP_HELLO_SO).
# Usage: hello_out_of_tree.sh BUILD_DIR SOURCE_DIR TEST_BINARY CMAKE CC
set -eu
build=$1
src=$2
testbin=$3
cmake=$4
cc=$5

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sp_hello_oot.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
prefix="$tmp/prefix"

run() {
    log="$tmp/step.log"
    if ! "$@" >"$log" 2>&1; then
        echo "FAILED: $*" >&2
        cat "$log" >&2
        exit 1
    fi
}

run "$cmake" --install "$build" --prefix "$prefix"

# The SDK's CMake package requires the plugin directory to exist; an install
# that carried no plugin would not have created it.
plugindir=$(sed -n 's/^plugindir=\${prefix}\///p' "$(find "$prefix" -name sendpipe-sdk.pc | head -n 1)")
mkdir -p "$prefix/$plugindir"

# 1. CMake: find_package(SendpipeSDK) + sp_add_plugin()
run "$cmake" -S "$src/sdk/examples/hello" -B "$tmp/build" \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" -DCMAKE_BUILD_TYPE=Debug
run "$cmake" --build "$tmp/build"
test -f "$tmp/build/hello.so"
SP_HELLO_SO="$tmp/build/hello.so" "$testbin"

# 2. pkg-config and one compiler call, as the example's README says
pcdir=$(dirname "$(find "$prefix" -name sendpipe-sdk.pc | head -n 1)")
cflags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --define-variable=prefix="$prefix" \
    --cflags sendpipe-sdk)
case "$cflags" in
*"$prefix"*) ;;
*) echo "pkg-config cflags do not point into the install: $cflags" >&2; exit 1 ;;
esac
mkdir "$tmp/pc"
# shellcheck disable=SC2086
run "$cc" -shared -fPIC -fvisibility=hidden $cflags -Wl,-z,defs \
    -o "$tmp/pc/hello.so" "$src/sdk/examples/hello/hello.c"
SP_HELLO_SO="$tmp/pc/hello.so" "$testbin"
echo "hello out of tree: ok"
