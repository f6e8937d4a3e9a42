#!/usr/bin/env bash
# Installs what building and testing sendpipe needs on Debian 12 (as root or
# through sudo). Safe to run again.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config git ca-certificates python3 \
  libuv1-dev liblmdb-dev lmdb-utils libmsgpack-dev libyaml-dev \
  libcurl4-openssl-dev libssl-dev libcmocka-dev \
  clang libclang-rt-14-dev >/dev/null
# ingress_http: libhttp-parser (Debian ships no pkg-config file for it); its tests
# use curl.
$SUDO apt-get install -y -qq --no-install-recommends libhttp-parser-dev curl >/dev/null
# api_usesend: JSON through jansson.
$SUDO apt-get install -y -qq --no-install-recommends libjansson-dev >/dev/null
# The SDK tests (tests/sdk) run the official useSend JavaScript SDKs.
if ! command -v node >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
echo "sendpipe build dependencies installed"
# ingress_smtp: MIME parsing through GMime 3; its tests use swaks (TLS through
# Net::SSLeay and IO::Socket::SSL).
$SUDO apt-get install -y -qq --no-install-recommends libgmime-3.0-dev swaks \
  libnet-ssleay-perl libio-socket-ssl-perl >/dev/null
# Delivery: DKIM signing through libopendkim, html-to-text through libxml2's
# HTML parser; the tests verify signatures with dkimpy and OpenDKIM, and relay
# to a private Postfix and to Postfix's smtp-sink (the package's own service is
# not started in containers; tests and benches run private instances only).
$SUDO apt-get install -y -qq --no-install-recommends libopendkim-dev opendkim \
  python3-dkim libxml2-dev postfix >/dev/null
# The package may start its own instance where services run; it is not used.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet postfix 2>/dev/null; then
  $SUDO systemctl stop postfix || true
fi
