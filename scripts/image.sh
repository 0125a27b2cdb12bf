#!/usr/bin/env bash
# Builds the Docker image `bifrost:dev` (deploy/Dockerfile) FROM scratch:
# release `bifrost` and `bifrostctl` built on this host, the shared libraries
# `ldd` says they load (kept at their paths, the dynamic loader included), an
# empty /data and /tmp. No image is pulled, so it works without a registry.
#
#   ./scripts/image.sh [--tag NAME] [--debug | --bin-dir DIR]
#
#   --tag NAME     image name (default: bifrost:dev)
#   --debug        use the debug build instead of release (faster to build,
#                  much slower to run; for tests of the harness itself)
#   --bin-dir DIR  take bifrost and bifrostctl from DIR, build nothing
#
# CARGO_TARGET_DIR is respected (default as in scripts/test.sh); the staging
# directory is $CARGO_TARGET_DIR/image/<tag>, never inside the repository. A
# cold release build compiles RocksDB from source and takes about 15 minutes.
# Run it again at will: it rebuilds what changed and replaces the image.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tag=bifrost:dev
profile=release
bin_dir=
while [ $# -gt 0 ]; do
    case "$1" in
    --tag) tag=${2:?--tag needs a name}; shift 2 ;;
    --debug) profile=debug; shift ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

command -v docker >/dev/null 2>&1 || die "docker not found"
docker info >/dev/null 2>&1 || die "docker is installed but the daemon does not answer (docker info)"
command -v ldd >/dev/null 2>&1 || die "ldd not found (Debian: libc-bin)"

setup_target_dir
if [ -z "$bin_dir" ]; then
    ensure_build_deps
    flags=(--locked)
    [ "$profile" = release ] && flags+=(--release)
    banner "cargo build ${flags[*]} -p bifrost-server -p bifrost-client (target dir: $CARGO_TARGET_DIR)"
    (cd "$BIFROST_ROOT" && cargo build "${flags[@]}" -p bifrost-server -p bifrost-client)
    bin_dir="$CARGO_TARGET_DIR/$profile"
fi
for b in bifrost bifrostctl; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found or not executable"
done

stage="$CARGO_TARGET_DIR/image/${tag//[^A-Za-z0-9._-]/_}"
root="$stage/root"
mkdir -p "$stage"
# Two builds of one tag at once would stage over each other.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$stage.lock"
    flock 9
fi
banner "staging $root"
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/data" "$root/tmp"
chmod 1777 "$root/tmp"

for b in bifrost bifrostctl; do
    # Debug information is most of a debug binary's size and none of its use
    # in a container; symbols stay, so backtraces keep their names.
    if command -v objcopy >/dev/null 2>&1; then
        objcopy --strip-debug "$bin_dir/$b" "$root/usr/local/bin/$b"
    else
        cp "$bin_dir/$b" "$root/usr/local/bin/$b"
    fi
done

# ldd prints `name => /path (addr)`, or `/path (addr)` for the loader, or
# `name (addr)` for the vDSO (no file), or `name => not found`.
libs=()
for b in bifrost bifrostctl; do
    out=$(ldd "$bin_dir/$b") || die "ldd $bin_dir/$b failed (a static binary? then no libraries are needed; remove this loop)"
    if grep -q 'not found' <<<"$out"; then
        die "$b needs libraries this host lacks:"$'\n'"$(grep 'not found' <<<"$out")"
    fi
    while read -r path; do
        libs+=("$path")
    done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out")
done
for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    # -L: the file itself, at the path the loader asks for (symlinks in the
    # host's /lib are not needed inside).
    cp -L "$lib" "$root$lib"
    echo "  $lib"
done

banner "docker build -t $tag"
revision=$(git -C "$BIFROST_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
docker build -t "$tag" -f "$BIFROST_ROOT/deploy/Dockerfile" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.source=bifrost" \
    "$stage"

# The image must run: a missing library shows up here, not in a cluster.
docker run --rm --network none "$tag" --version
docker run --rm --network none --entrypoint /usr/local/bin/bifrostctl "$tag" --version
docker image ls "$tag"
