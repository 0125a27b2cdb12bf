# shellcheck shell=bash
# Helpers shared by scripts/test.sh and scripts/demo.sh. Source it; do not run it.
#
# What a fresh Debian machine lacks for this workspace is the libclang that
# bindgen needs to build RocksDB (librocksdb-sys) from source: it is installed
# with apt-get. A Rust toolchain (rustup, cargo) is expected to be there.

BIFROST_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# A banner before each step, so a CI log reads as a list of steps.
banner() {
    printf '\n==> %s\n' "$*"
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

_bifrost_apt_updated=
apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found: install these packages by hand: $*"
    if [ -z "$_bifrost_apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        _bifrost_apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@" </dev/null
}

# Installs what building the workspace needs and is missing.
ensure_build_deps() {
    command -v cargo >/dev/null 2>&1 ||
        die "cargo not found: install Rust (https://rustup.rs), then run this again"
    local missing=()
    # bindgen (for RocksDB) loads libclang at build time.
    # (libclang-cpp, which other packages bring, is not it: ask dpkg.)
    if [ -z "${LIBCLANG_PATH:-}" ]; then
        if command -v dpkg >/dev/null 2>&1; then
            dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
        elif ! compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null; then
            missing+=(libclang-dev)
        fi
    fi
    # RocksDB is C++, compiled by the cc crate.
    if ! command -v c++ >/dev/null 2>&1; then
        missing+=(g++)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        banner "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

# Sets and exports CARGO_TARGET_DIR unless it is already set: the shared warm
# cache /var/cache/bifrost/target when its parent is writable or can be
# created, else ./target in the repository. A relative value is made absolute
# (relative to the directory the script was started from), so that cargo and
# the paths printed afterwards agree.
setup_target_dir() {
    if [ -z "${CARGO_TARGET_DIR:-}" ]; then
        local cache=/var/cache/bifrost
        if mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] &&
            { [ ! -e "$cache/target" ] || [ -w "$cache/target" ]; }; then
            CARGO_TARGET_DIR="$cache/target"
        else
            CARGO_TARGET_DIR="$BIFROST_ROOT/target"
        fi
    fi
    case "$CARGO_TARGET_DIR" in
    /*) ;;
    *) CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR" ;;
    esac
    export CARGO_TARGET_DIR
}

# The web UI's tests drive a real headless Chromium over WebDriver
# (server/tests/web_ui.rs): Debian's chromium and its matching
# chromium-driver (/usr/bin/chromedriver).
ensure_browser() {
    if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
        banner "installing chromium and chromium-driver (the web UI's browser tests)"
        apt_install chromium chromium-driver
    fi
}

# The driver tests talk to real device simulators written by others
# (pymodbus, asyncua, cpppo, python-snap7 from PyPI) and need socat for a serial pseudo-terminal
# pair; the packaging test needs systemd-analyze. Installs them into a virtualenv next to the target dir, together with
# the Python client (python/, installed editable from this checkout) and its
# test dependencies (python/requirements-test.txt), and exports
# BIFROST_PYTHON. The venv is re-used while drivers/tests/requirements.txt,
# python/requirements-test.txt, python/pyproject.toml and the checkout's path
# are unchanged.
ensure_test_peers() {
    if ! command -v socat >/dev/null 2>&1; then
        banner "installing socat"
        apt_install socat
    fi
    # The packaging test checks the unit with systemd's own systemd-analyze.
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        banner "installing systemd (systemd-analyze, for the packaging test)"
        apt_install systemd
    fi
    local py
    py=$(command -v python3) || die "python3 not found: the driver tests need Python 3 with pip"
    local venv
    venv="$(dirname "$CARGO_TARGET_DIR")/venv"
    local req="$BIFROST_ROOT/drivers/tests/requirements.txt"
    local py_req="$BIFROST_ROOT/python/requirements-test.txt"
    local stamp="$venv/.requirements.sha256"
    local want
    want=$({ cat "$req" "$py_req" "$BIFROST_ROOT/python/pyproject.toml"; echo "$BIFROST_ROOT"; } |
        sha256sum | cut -d' ' -f1)
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        banner "installing the test peers from PyPI into $venv"
        if ! "$py" -m venv "$venv" 2>/dev/null; then
            apt_install python3-venv
            "$py" -m venv "$venv"
        fi
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" -r "$py_req" \
            -e "$BIFROST_ROOT/python"
        echo "$want" >"$stamp"
    fi
    export BIFROST_PYTHON="$venv/bin/python"
}

# The Docker fault tests (bifrost-jepsen's smoke and docker_faults) need a
# Docker daemon that answers, Compose (the plugin or docker-compose) and
# root (partitions are iptables rules). They fail when one is missing; this
# makes sure the daemon runs before they start: dockerd is started in the
# background when it is installed but not running (as on a fresh CI
# machine), and docker.io is installed with apt only when there is no
# docker at all. Dies naming what is missing when that cannot be done.
ensure_docker() {
    [ "$(id -u)" -eq 0 ] ||
        die "the Docker fault tests need root (partitions are iptables rules): run as root, or set BIFROST_SKIP_DOCKER=1 to leave them out on purpose"
    if ! command -v docker >/dev/null 2>&1; then
        banner "installing docker.io (no docker found)"
        apt_install docker.io iptables
        command -v docker >/dev/null 2>&1 || die "docker not found after installing docker.io"
    fi
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then
        banner "installing docker-compose (no Compose found)"
        apt_install docker-compose
    fi
    command -v iptables >/dev/null 2>&1 || apt_install iptables
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    command -v dockerd >/dev/null 2>&1 ||
        die "docker is installed but its daemon does not answer and there is no dockerd to start: start Docker, or set BIFROST_SKIP_DOCKER=1 to leave the Docker tests out on purpose"
    local log="${TMPDIR:-/tmp}/bifrost-dockerd.log"
    banner "starting dockerd in the background (log: $log)"
    nohup dockerd >"$log" 2>&1 </dev/null &
    local pid=$! waited=0
    until docker info >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "dockerd exited at start-up (log above, whole log in $log)"
        fi
        if [ "$waited" -ge 60 ]; then
            tail -n 20 "$log" >&2 || true
            die "dockerd did not answer \`docker info\` within 60 s (log above, whole log in $log)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    echo "dockerd is up (pid $pid) after ${waited}s"
}

# The directory holding the librocksdb.a that the last debug build of the
# workspace compiled (the newest, if stale ones from older versions remain).
built_rocksdb_lib_dir() {
    local lib
    lib=$(ls -t "$CARGO_TARGET_DIR"/debug/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1)
    [ -n "$lib" ] || die "no librocksdb.a under $CARGO_TARGET_DIR/debug/build: build the workspace first"
    dirname "$lib"
}
