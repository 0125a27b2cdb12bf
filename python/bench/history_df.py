"""Benchmark: one tag's history into a Polars DataFrame (history_df, Arrow IPC from
QueryArrow) against the same readings through the row API (history).

    python python/bench/history_df.py [--readings 1000000] [--runs 3] [--batch 10000]

Starts its own three-node cluster on loopback (the tests' helper, tests/_cluster.py)
from BIFROST_BIN, by default the release build if there is one, else the debug build;
ingests N readings of one f64 tag in batches, then times history_df(tag) and
history(tag) --runs times each and prints each run, the medians, and one summary line:

    history 1000000 readings: arrow 0.76 s (1.31M rows/s), rows 7.64 s (0.13M rows/s) [median of 5, release binary]

Needs polars (pip install './python[polars]'). The nodes get --query-max-rows above N
(the default, 1,000,000, bounds what one query may return).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
PYTHON_DIR = HERE.parent
sys.path[:0] = [str(PYTHON_DIR), str(PYTHON_DIR / "tests")]  # this checkout's client, the tests' cluster helper

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/cache/bifrost/target"))


def pick_binary() -> str:
    """Sets BIFROST_BIN when unset (release if built, else debug); says which."""
    if "BIFROST_BIN" not in os.environ:
        release = TARGET / "release" / "bifrost"
        os.environ["BIFROST_BIN"] = str(release if os.access(release, os.X_OK) else TARGET / "debug" / "bifrost")
    path = Path(os.environ["BIFROST_BIN"])
    kind = next((k for k in ("release", "debug") if k in path.parts), None)
    return f"{kind} binary" if kind else f"binary {path}"


def rate(n: int, secs: float) -> str:
    return f"{n / secs / 1e6:.2f}M rows/s" if secs > 0 else "inf rows/s"


def timed(label: str, runs: int, n: int, fn: Callable[[], int]) -> float:
    times = []
    for i in range(1, runs + 1):
        begun = time.perf_counter()
        got = fn()
        secs = time.perf_counter() - begun
        if got != n:
            raise SystemExit(f"{label} run {i}: {got} readings, expected {n}")
        times.append(secs)
        print(f"  {label} run {i}: {secs:.3f} s ({rate(n, secs)})", flush=True)
    med = statistics.median(times)
    print(f"  {label} median: {med:.3f} s ({rate(n, med)})", flush=True)
    return med


def ingest(c: Any, tag: str, n: int, batch: int) -> None:
    from bifrost_client._proto import bifrost_pb2 as pb

    step_us = 10_000  # 100 Hz, ending about now (so retention never touches it)
    start_us = int(time.time() * 1e6) - n * step_us
    begun = time.perf_counter()
    for lo in range(0, n, batch):
        hi = min(lo + batch, n)
        msgs = [pb.Reading(id=f"r{i}", tag=tag, ts_us=start_us + i * step_us,
                           value=pb.Value(float_value=(i % 3600) * 0.1)) for i in range(lo, hi)]
        c.ingest(msgs)
        if (hi // batch) % 10 == 0 or hi == n:
            secs = time.perf_counter() - begun
            print(f"  ingested {hi:>9,} / {n:,} ({hi / secs:,.0f} readings/s)", flush=True)


def breakdown(c: Any, tag: str, n: int) -> None:
    """One more history_df, split: the server's own time (QueryStats), the whole stream,
    and the client's join and Polars decode."""
    import bifrost_client as bc
    from bifrost_client import _ops as ops
    from bifrost_client import frames

    op = frames.history_df(tag, None, None, bc.Consistency.LINEARIZABLE)
    begun = time.perf_counter()
    msgs = c._run(ops.Op(op.method, op.request, lambda m: m, op.kind, streaming=True))
    got = time.perf_counter()
    df = frames.decode_history(msgs)
    done = time.perf_counter()
    assert df.height == n
    size = sum(len(m.ipc) for m in msgs)
    print(f"  arrow breakdown: server query {msgs[-1].stats.elapsed_us / 1e6:.3f} s, call and stream "
          f"{got - begun:.3f} s ({len(msgs)} messages, {size / 1e6:.1f} MB), join and decode {done - got:.3f} s",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10_000, help="readings per ingest call (at most 10,000)")
    ap.add_argument("--keep", action="store_true", help="keep the cluster's data and logs")
    a = ap.parse_args()
    n = a.readings

    which = pick_binary()
    import bifrost_client as bc
    from bifrost_client import frames
    from _cluster import Cluster

    frames.polars_module()  # fail now, not after the ingest, without polars
    print(f"bifrost: {os.environ['BIFROST_BIN']} ({which})", flush=True)
    root = Path(tempfile.mkdtemp(prefix="bifrost-bench-df-"))
    limits = ["--query-max-rows", str(max(2 * n, 1_000_000)), "--query-timeout-ms", "600000"]
    cluster = Cluster(root, tls=False, extra_args=limits)
    ok = False
    try:
        cluster.start()
        print(f"cluster of 3 nodes up ({root})", flush=True)
        with bc.Client(cluster.endpoints, timeout=30, deadline=600) as c:
            c.put_device(bc.Device(name="bench", protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                                   poll_interval_ms=1000, timeout_ms=500, enabled=False))
            tag = "bench/line1/flow"
            c.put_tag(bc.Tag(name=tag, device="bench", address="hr:1", data_type="f64"))
            print(f"ingesting {n:,} readings of {tag} in batches of {a.batch:,}", flush=True)
            ingest(c, tag, n, a.batch)

            print(f"history_df({tag!r}) -> polars.DataFrame (Arrow IPC)", flush=True)
            arrow = timed("arrow", a.runs, n, lambda: c.history_df(tag).height)
            breakdown(c, tag, n)
            print(f"history({tag!r}) -> list[Reading] (row API)", flush=True)
            rows = timed("rows", a.runs, n, lambda: len(c.history(tag)))
        print(f"history {n} readings: arrow {arrow:.2f} s ({n / arrow / 1e6:.2f}M rows/s), "
              f"rows {rows:.2f} s ({n / rows / 1e6:.2f}M rows/s) [median of {a.runs}, {which}]", flush=True)
        ok = True
    finally:
        cluster.stop()
        if ok and not a.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"cluster data and logs kept in {root}", file=sys.stderr)


if __name__ == "__main__":
    main()
