#!/usr/bin/env bash
# Builds `bifrost` as it was at the previous release, for the rolling-upgrade
# test (server/tests/upgrade.rs), and prints the binary's path on stdout.
#
#   ./scripts/previous-release.sh [COMMIT]
#
# COMMIT defaults to the one named in packaging/previous-release (the last
# commit of the release before this one; move it forward when a release is
# cut). Its source comes from this repository's history (`git archive`), so
# a shallow clone that lacks it fails, saying so. The build goes to
# $CARGO_TARGET_DIR/previous/COMMIT and is kept: a second run only prints the
# path. It links the RocksDB library the workspace build made instead of
# compiling RocksDB again, so build the workspace first.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_target_dir

commit=${1:-$(grep -v '^#' "$BIFROST_ROOT/packaging/previous-release" | head -n 1)}
[ -n "$commit" ] || die "no commit given and none in packaging/previous-release"
git -C "$BIFROST_ROOT" cat-file -e "$commit^{commit}" 2>/dev/null ||
    die "commit $commit (the previous release) is not in the history of $BIFROST_ROOT: a shallow clone? fetch it"

dir="$CARGO_TARGET_DIR/previous/$commit"
bin="$dir/target/debug/bifrost"
if [ ! -x "$bin" ]; then
    rocksdb=$(built_rocksdb_lib_dir)
    rm -rf "$dir/src"
    mkdir -p "$dir/src"
    git -C "$BIFROST_ROOT" archive "$commit" | tar -x -C "$dir/src"
    echo "building bifrost at $commit (the previous release) in $dir" >&2
    # librocksdb-sys links the C++ runtime only when it compiles RocksDB
    # itself; with a given library the link needs it named.
    (cd "$dir/src" &&
        ROCKSDB_LIB_DIR="$rocksdb" ROCKSDB_STATIC=1 CARGO_TARGET_DIR="$dir/target" \
            RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-lstdc++" \
            cargo build --locked --offline -p bifrost-server --bin bifrost >&2)
fi
echo "$bin"
