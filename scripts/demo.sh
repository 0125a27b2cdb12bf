#!/usr/bin/env bash
# Runs a local three-node Bifrost cluster: installs what is missing, builds
# `bifrost` and `bifrostctl`, then runs `bifrost demo` until Ctrl-C.
#
#   ./scripts/demo.sh [--data-dir DIR] [--base-port N]
#
# Arguments go to `bifrost demo` (defaults: ./demo-data, gRPC on
# 127.0.0.1:7001-7003, HTTP on 127.0.0.1:8001-8003). A cold build compiles
# RocksDB from source and takes about 15 minutes.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_target_dir
ensure_build_deps

banner "cargo build -p bifrost-server -p bifrost-client --locked (target dir: $CARGO_TARGET_DIR)"
(cd "$BIFROST_ROOT" && cargo build -p bifrost-server -p bifrost-client --locked)

bin="$CARGO_TARGET_DIR/debug"
banner "starting the demo cluster"
echo "bifrostctl is $bin/bifrostctl; to use it by name: export PATH=\"$bin:\$PATH\""
# Run from the caller's directory, so a relative --data-dir means what it says.
exec "$bin/bifrost" demo "$@"
