#!/usr/bin/env bash
# The project's test command (CI runs it through .ci/run): installs what is
# missing, then checks formatting, lints, builds every target and runs every
# test (the Rust tests, then the Python client's). Exits non-zero on the first
# failing step.
#
#   ./scripts/test.sh
#
# The Docker fault tests need Docker and root: dockerd is started if it is
# installed and not running (docker.io installed if there is no docker). Set
# BIFROST_SKIP_DOCKER=1 to leave them out on purpose; the summary says so.
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
ensure_browser
# Tests that need Docker and root; they fail, never skip, when it is missing.
docker_tests='package(bifrost-jepsen) and (binary(smoke) or binary(docker_faults))'
docker_test_names=(a_minute_of_every_fault_under_every_workload_passes_every_checker
    partitions_kills_and_pauses_really_happen_and_really_end)
if [ "${BIFROST_SKIP_DOCKER:-}" = 1 ]; then
    skipped="the Docker fault tests (bifrost-jepsen smoke and docker_faults), because BIFROST_SKIP_DOCKER=1 is set"
else
    skipped=
    ensure_docker
fi
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

banner "cargo build --workspace --all-targets --locked"
cargo build --workspace --all-targets --locked

# Clippy's check build would run RocksDB's build script again and compile
# its C++ a second time (~10 minutes cold): check-mode units do not share
# build-script outputs with the build above. Pointing librocksdb-sys at the
# library just built makes that second run only generate bindings.
banner "cargo clippy --workspace --all-targets --locked -- -D warnings"
ROCKSDB_LIB_DIR=$(built_rocksdb_lib_dir) ROCKSDB_STATIC=1 \
    cargo clippy --workspace --all-targets --locked -- -D warnings

# The rolling-upgrade test (server/tests/upgrade.rs) runs the previous
# release's binary: built once into the target dir, linking the RocksDB just
# built.
banner "building the previous release's bifrost (scripts/previous-release.sh)"
BIFROST_PREVIOUS_BIN=$("$BIFROST_ROOT/scripts/previous-release.sh")
export BIFROST_PREVIOUS_BIN

nextest_filter=()
libtest_skips=()
if [ -n "$skipped" ]; then
    nextest_filter=(-E "not ($docker_tests)")
    for name in "${docker_test_names[@]}"; do libtest_skips+=(--skip "$name"); done
fi
if cargo nextest --version >/dev/null 2>&1; then
    banner "cargo nextest run --workspace --locked --no-fail-fast ${nextest_filter[*]} (profile ${NEXTEST_PROFILE:-default})"
    cargo nextest run --workspace --locked --no-fail-fast "${nextest_filter[@]}"
else
    banner "cargo nextest not found: cargo test --workspace --locked --no-fail-fast"
    # The e2e tests start clusters of real processes: one test at a time.
    cargo test --workspace --locked --no-fail-fast -- --test-threads=1 "${libtest_skips[@]}"
fi

# The Python client (python/) against real clusters of the binary just built.
banner "python -m pytest python/tests (bifrost-client)"
BIFROST_BIN="$CARGO_TARGET_DIR/debug/bifrost" "$BIFROST_PYTHON" -m pytest python/tests -q

if [ -n "$skipped" ]; then
    banner "all checks passed, except: skipped $skipped"
else
    banner "all checks passed"
fi
