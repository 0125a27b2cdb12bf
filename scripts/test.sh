#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): installs what is
# missing, then checks formatting, lints, builds every target and runs every
# test. Exits non-zero on the first failing step.
#
#   ./scripts/test.sh
#
# CARGO_TARGET_DIR is respected; by default the shared cache
# /var/cache/bifrost/target is used (./target when that is not writable).
# A cold build compiles RocksDB from source and takes about 15 minutes.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_target_dir
cd "$BIFROST_ROOT"

ensure_build_deps
ensure_test_peers
for component in rustfmt clippy; do
    sub=${component/rustfmt/fmt}
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null 2>&1 || die "cargo $sub not found and no rustup to install $component"
        banner "installing the $component component"
        rustup component add "$component"
    fi
done

# In CI, use the nextest profile that reports every failure (and writes JUnit).
if [ -n "${CI:-}" ] && [ -z "${NEXTEST_PROFILE:-}" ]; then
    export NEXTEST_PROFILE=ci
fi

echo "target dir: $CARGO_TARGET_DIR"

banner "cargo fmt --all --check"
cargo fmt --all --check

banner "cargo clippy --workspace --all-targets --locked -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

banner "cargo build --workspace --all-targets --locked"
cargo build --workspace --all-targets --locked

if cargo nextest --version >/dev/null 2>&1; then
    banner "cargo nextest run --workspace --locked --no-fail-fast (profile ${NEXTEST_PROFILE:-default})"
    cargo nextest run --workspace --locked --no-fail-fast
else
    banner "cargo nextest not found: cargo test --workspace --locked --no-fail-fast"
    # The e2e tests start clusters of real processes: one test at a time.
    cargo test --workspace --locked --no-fail-fast -- --test-threads=1
fi

banner "all checks passed"
