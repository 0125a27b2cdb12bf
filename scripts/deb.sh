#!/usr/bin/env bash
# Builds the Debian package bifrost_VERSION_ARCH.deb: `bifrost` and
# `bifrostctl` in /usr/bin, the systemd unit, the default settings file
# /etc/bifrost/bifrost.toml (a conffile: an upgrade keeps the operator's
# edits), man pages made from the binaries' own help (`bifrost man`), the
# README and the Grafana dashboard. Installing it creates the system user
# `bifrost` (in group dialout, for serial lines); the service is enabled
# but not started, since the settings file must name the node first.
#
#   ./scripts/deb.sh [--out DIR] [--bin-dir DIR] [--version V] [--compression C]
#
#   --out DIR      where the .deb goes (default: $CARGO_TARGET_DIR/deb)
#   --bin-dir DIR  take bifrost and bifrostctl from DIR, build nothing
#                  (default: a release build)
#   --version V    package version (default: the workspace's version)
#   --compression C  xz (default), gzip or none (dpkg-deb -Z; tests use
#                  none for debug binaries of hundreds of MB)
#
# Needs dpkg-deb (Debian: dpkg). Prints the package's path last.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out=
bin_dir=
version=
compression=xz
while [ $# -gt 0 ]; do
    case "$1" in
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --version) version=${2:?--version needs a version}; shift 2 ;;
    --compression) compression=${2:?--compression needs xz, gzip or none}; shift 2 ;;
    -h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb not found (Debian: apt-get install dpkg)"
setup_target_dir
if [ -z "$bin_dir" ]; then
    ensure_build_deps
    banner "cargo build --release -p bifrost-server -p bifrost-client (target dir: $CARGO_TARGET_DIR)"
    (cd "$BIFROST_ROOT" && cargo build --locked --release -p bifrost-server -p bifrost-client)
    bin_dir="$CARGO_TARGET_DIR/release"
fi
for b in bifrost bifrostctl; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found or not executable"
done
if [ -z "$version" ]; then
    version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$BIFROST_ROOT/Cargo.toml" | head -1)
fi
[ -n "$version" ] || die "no version: pass --version"
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
out=${out:-$CARGO_TARGET_DIR/deb}
stage="$out/bifrost_${version}_${arch}"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/bifrost" \
    "$stage/usr/share/doc/bifrost" "$stage/usr/share/man/man1"

install -m 0755 "$bin_dir/bifrost" "$bin_dir/bifrostctl" "$stage/usr/bin/"
install -m 0644 "$BIFROST_ROOT/packaging/bifrost.service" "$stage/lib/systemd/system/"
install -m 0640 "$BIFROST_ROOT/packaging/bifrost.toml" "$stage/etc/bifrost/"
install -m 0644 "$BIFROST_ROOT/README.md" "$BIFROST_ROOT/packaging/grafana/bifrost-dashboard.json" \
    "$stage/usr/share/doc/bifrost/"
"$bin_dir/bifrost" man "$stage/usr/share/man/man1"
"$bin_dir/bifrostctl" --help >"$stage/usr/share/doc/bifrost/bifrostctl.txt"
gzip -9n "$stage"/usr/share/man/man1/*.1

size_kb=$(du -sk "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: bifrost
Version: $version
Architecture: $arch
Maintainer: Bifrost developers <bifrost@localhost>
Installed-Size: $size_kb
Depends: libc6, libstdc++6, adduser
Section: database
Priority: optional
Homepage: file:///usr/share/doc/bifrost/README.md
Description: clustered, replicated tag database for plant floors
 Bifrost polls PLCs and other devices (Modbus TCP/RTU, OPC UA,
 EtherNet/IP, S7), keeps device configuration and every reading in RocksDB
 replicated with Raft, and serves SQL-like queries over gRPC and live
 subscriptions over WebSocket. Run three nodes for a plant, or one.
EOF
echo /etc/bifrost/bifrost.toml >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd bifrost >/dev/null; then
        adduser --system --group --home /var/lib/bifrost --no-create-home bifrost
    fi
    adduser bifrost dialout >/dev/null 2>&1 || true
    chown root:bifrost /etc/bifrost /etc/bifrost/bifrost.toml
    chmod 0750 /etc/bifrost
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
        systemctl enable bifrost.service >/dev/null 2>&1 || true
    fi
    echo "bifrost: edit /etc/bifrost/bifrost.toml (id, addresses, peers, certificates), check it with"
    echo "bifrost: 'bifrost config check /etc/bifrost/bifrost.toml', then 'systemctl start bifrost'"
fi
EOF
cat >"$stage/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop bifrost.service >/dev/null 2>&1 || true
    systemctl disable bifrost.service >/dev/null 2>&1 || true
fi
EOF
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm"

deb="$out/bifrost_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compression" --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "$deb"
