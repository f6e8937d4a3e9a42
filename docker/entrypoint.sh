#!/bin/sh
# Container entry point: validate the configuration, then run sendpipe in
# the foreground as PID 1's only child so SIGTERM drains it gracefully.
set -e
if [ "$1" = "serve" ]; then
  sendpipe check-config "$SENDPIPE_CONFIG"
fi
exec sendpipe "$@"
