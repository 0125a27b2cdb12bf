#!/usr/bin/env bash
# Measures what Bifrost costs an edge box, and prints each figure:
#
#   - the size of the release `bifrost` and `bifrostctl` binaries;
#   - the size of the image scripts/image.sh builds from them (FROM scratch),
#     as Docker counts it and gzip-compressed (`docker save | gzip`: about
#     what a registry stores and a pull moves);
#   - an idle single node's memory (VmRSS after it has been ready for 5 s,
#     with an empty store);
#   - start-up to a 200 from /readyz when a node restarts on its data
#     (50,000 readings in it; median of 5 restarts);
#   - with --rebuild, the time `cargo build --release -p bifrost-server`
#     takes after a one-line change to server/src/lib.rs (reverted after).
#
#   ./scripts/footprint.sh [--bin-dir DIR] [--rebuild] [--no-image]
#
#   --bin-dir DIR  measure the binaries in DIR, build nothing (default: a
#                  release build)
#   --rebuild      also time the rebuild after a one-line change
#   --no-image     skip the image (no Docker)
#
# Ends with one line: `footprint: bifrost B MB, bifrostctl C MB, image I MB
# (G MB compressed), idle rss R MB, ready after restart T ms, rebuild S s`. The node runs on
# loopback ports in a temporary directory, removed at the end.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bin_dir=
rebuild=0
image=1
while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --rebuild) rebuild=1; shift ;;
    --no-image) image=0; shift ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done
command -v curl >/dev/null 2>&1 || die "curl not found (Debian: apt-get install curl)"

setup_target_dir
build() {
    (cd "$BIFROST_ROOT" && cargo build --locked --release -p bifrost-server -p bifrost-client)
}
if [ -z "$bin_dir" ]; then
    ensure_build_deps
    banner "cargo build --release (target dir: $CARGO_TARGET_DIR)"
    build
    bin_dir="$CARGO_TARGET_DIR/release"
fi
for b in bifrost bifrostctl; do
    [ -x "$bin_dir/$b" ] || die "$bin_dir/$b not found or not executable"
done

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
bifrost_mb=$(mb "$(stat -c %s "$bin_dir/bifrost")")
ctl_mb=$(mb "$(stat -c %s "$bin_dir/bifrostctl")")
echo "binary bifrost: $bifrost_mb MB"
echo "binary bifrostctl: $ctl_mb MB"

image_mb=n/a
image_gz_mb=n/a
if [ "$image" = 1 ]; then
    "$BIFROST_ROOT/scripts/image.sh" --bin-dir "$bin_dir" --tag bifrost:footprint >/dev/null
    image_mb=$(mb "$(docker image inspect -f '{{.Size}}' bifrost:footprint)")
    image_gz_mb=$(mb "$(docker save bifrost:footprint | gzip -c | wc -c)")
    echo "image bifrost:footprint: $image_mb MB ($image_gz_mb MB gzip-compressed)"
fi

work=$(mktemp -d -t bifrost-footprint-XXXXXX)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
grpc=127.0.0.1:$(free_port)
peer=127.0.0.1:$(free_port)
http=127.0.0.1:$(free_port)

start_node() {
    "$bin_dir/bifrost" serve --single --insecure --id 1 --data-dir "$work/data" \
        --listen "$grpc" --peer-listen "$peer" --http "$http" >>"$work/node.log" 2>&1 &
    pid=$!
}
stop_node() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
}
# Milliseconds from now until /readyz answers 200 (fails after 60 s).
wait_ready_ms() {
    local t0 now
    t0=$(date +%s%N)
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$http/readyz")" = 200 ]; do
        kill -0 "$pid" 2>/dev/null || die "the node exited: $(tail -5 "$work/node.log")"
        now=$(date +%s%N)
        [ $(((now - t0) / 1000000)) -lt 60000 ] || die "not ready within 60 s: $(tail -5 "$work/node.log")"
        sleep 0.002
    done
    now=$(date +%s%N)
    echo $(((now - t0) / 1000000))
}

start_node
wait_ready_ms >/dev/null
sleep 5
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status")
idle_mb=$(mb $((rss_kb * 1024)))
echo "idle node (empty store) rss: $idle_mb MB"

# Data to restart on: a device, a tag and 50,000 readings.
ctl() { "$bin_dir/bifrostctl" "$@" --endpoints "$grpc"; }
ctl device add plc --protocol modbus-tcp --endpoint 127.0.0.1:1 --disabled >/dev/null
ctl tag add plc/temp --device plc --address hr:0 --type f64 >/dev/null
python3 - "$work/readings.jsonl" <<'EOF'
import datetime, json, sys
t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
with open(sys.argv[1], "w") as f:
    for i in range(50_000):
        ts = (t0 + datetime.timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        f.write(json.dumps({"id": f"r{i}", "tag": "plc/temp", "ts": ts, "value": 20 + (i % 100) / 10}) + "\n")
EOF
ctl ingest --batch 10000 "$work/readings.jsonl" >/dev/null
stop_node

times=()
for _ in 1 2 3 4 5; do
    start_node
    times+=("$(wait_ready_ms)")
    stop_node
done
ready_ms=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "ready after restart with 50000 readings: ${times[*]} ms (median $ready_ms ms)"

rebuild_s=n/a
if [ "$rebuild" = 1 ]; then
    lib="$BIFROST_ROOT/server/src/lib.rs"
    cp "$lib" "$work/lib.rs.orig"
    echo "// footprint.sh: a one-line change $(date +%s%N)" >>"$lib"
    t0=$(date +%s%N)
    if ! (cd "$BIFROST_ROOT" && cargo build --locked --release -p bifrost-server >/dev/null 2>&1); then
        cp "$work/lib.rs.orig" "$lib"
        die "the rebuild failed"
    fi
    t1=$(date +%s%N)
    cp "$work/lib.rs.orig" "$lib"
    rebuild_s=$(((t1 - t0) / 1000000000))
    echo "rebuild of bifrost-server after a one-line change: $rebuild_s s"
fi

echo "footprint: bifrost $bifrost_mb MB, bifrostctl $ctl_mb MB, image $image_mb MB ($image_gz_mb MB compressed), idle rss $idle_mb MB, ready after restart $ready_ms ms, rebuild $rebuild_s s"
