"""``verify`` and ``shadow``: do the gateway and Bifrost hold the same readings?

``verify`` summarizes both sides per tag and hour: the number of readings, the
min/max/avg of their numeric values and a hash of every reading's time, quality
and value (``Row``, normalized as ``sides.comparable`` says), and lists the hours
whose summaries differ. ``shadow`` samples both sides' current values for a while
and reports, per tag, how far they drifted apart in value and in time.

The checks of ``cutover`` and ``rollback`` (``gaps``, ``counter_gaps``) are here too:
over a window, one side's readings of a tag never leave a longer silence than
``max_gap``, and a counter's values leave out no number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Iterable, Optional

from .. import types as t
from ..client import Client
from .sides import HOUR_US, GatewayStore, Row, bifrost_rows, client_from, comparable, fmt_us, parse_time


@dataclass
class Summary:
    """One tag-hour of one side. The hash is of the multiset of readings (time, quality,
    value): a sum of each reading's own hash, so it needs no order and no memory."""

    count: int = 0
    numbers: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    _hash: int = 0

    def add(self, r: Row) -> None:
        self.count += 1
        if isinstance(r.value, float) and math.isfinite(r.value):
            self.numbers += 1
            self.total += r.value
            self.lo, self.hi = min(self.lo, r.value), max(self.hi, r.value)
        line = f"{r.ts_us}|{r.quality}|{r.value!r}".encode()
        self._hash = (self._hash + int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "big")) % 2**64

    @property
    def avg(self) -> Optional[float]:
        return self.total / self.numbers if self.numbers else None

    @property
    def digest(self) -> str:
        return f"{self._hash:016x}"

    def cells(self) -> list[str]:
        if not self.count:
            return ["0", "-", "-", "-", "-"]
        num = (lambda x: f"{x:.6g}") if self.numbers else (lambda x: "-")
        avg = self.avg
        return [str(self.count), num(self.lo), num(self.hi), num(avg) if avg is not None else "-", self.digest]


Key = tuple[str, int]  # tag, hour (start, microseconds since 1970)


def summarize(rows: Iterable[Row]) -> dict[Key, Summary]:
    out: dict[Key, Summary] = {}
    for r in rows:
        key = (r.tag, r.ts_us - r.ts_us % HOUR_US)
        out.setdefault(key, Summary()).add(r)
    return out


@dataclass
class Mismatch:
    tag: str
    hour_us: int
    gateway: Summary
    bifrost: Summary

    def what(self) -> str:
        g, b = self.gateway, self.bifrost
        if g.count != b.count:
            return f"count {g.count} vs {b.count}"
        if (g.lo, g.hi, g.avg) != (b.lo, b.hi, b.avg):
            return "values differ"
        return "same numbers, different readings (times, qualities or values)"


def compare(gateway: dict[Key, Summary], bifrost: dict[Key, Summary]) -> list[Mismatch]:
    out = []
    for key in sorted(set(gateway) | set(bifrost)):
        g, b = gateway.get(key, Summary()), bifrost.get(key, Summary())
        if g.count != b.count or g.digest != b.digest:
            out.append(Mismatch(key[0], key[1], g, b))
    return out


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]) + "\n"


def mismatch_table(mismatches: list[Mismatch]) -> str:
    header = ["TAG", "HOUR", "SIDE", "COUNT", "MIN", "MAX", "AVG", "HASH", "DIFFERENCE"]
    rows = []
    for m in mismatches:
        hour = fmt_us(m.hour_us)[:13] + ":00Z"
        rows.append([m.tag, hour, "gateway", *m.gateway.cells(), m.what()])
        rows.append(["", "", "bifrost", *m.bifrost.cells(), ""])
    return table(header, rows)


# -- the checks of cutover and rollback --------------------------------------


@dataclass(frozen=True)
class Gap:
    tag: str
    after_us: int
    before_us: int  # the next reading, or the window's end when none came

    @property
    def seconds(self) -> float:
        return (self.before_us - self.after_us) / 1e6


def gaps(rows: Iterable[Row], tags: Iterable[str], start_us: int, end_us: int, max_gap_us: int) -> list[Gap]:
    """Silences longer than ``max_gap_us`` between each tag's *good* readings over
    ``[start_us, end_us)``, the window's edges included: a device no poller reaches (only bad
    readings) is a gap, and so is a tag with no reading at all."""
    times: dict[str, list[int]] = {tag: [] for tag in tags}
    for r in rows:
        if r.tag in times and r.quality == "good":
            times[r.tag].append(r.ts_us)
    out = []
    for tag, ts in sorted(times.items()):
        edges = [start_us, *sorted(ts), end_us]
        out += [Gap(tag, a, b) for a, b in zip(edges, edges[1:]) if b - a > max_gap_us]
    return out


@dataclass(frozen=True)
class CounterGap:
    tag: str
    after: float
    next: float


def counter_gaps(rows: Iterable[Row], counters: dict[str, float]) -> list[CounterGap]:
    """Steps larger than ``counters[tag]`` between a counter tag's successive good values, in
    value order (two pollers' readings of one counter interleave in time, not in value). A
    counter with fewer than two good values is a gap too (``after`` = ``next`` = NaN): it
    proves nothing."""
    values: dict[str, set[float]] = {tag: set() for tag in counters}
    for r in rows:
        if r.tag in values and r.quality == "good" and isinstance(r.value, float):
            values[r.tag].add(r.value)
    out = []
    for tag, vs in sorted(values.items()):
        seq = sorted(vs)
        if len(seq) < 2:
            out.append(CounterGap(tag, math.nan, math.nan))
        out += [CounterGap(tag, a, b) for a, b in zip(seq, seq[1:]) if b - a > counters[tag]]
    return out


def parse_counter(spec: str) -> tuple[str, float]:
    """``TAG`` or ``TAG:STEP`` (the largest step between successive values; default 1)."""
    tag, sep, step = spec.rpartition(":")
    if sep and tag:
        try:
            return tag, float(step)
        except ValueError:
            pass
    return spec, 1.0


# -- shadow -------------------------------------------------------------------


@dataclass
class Drift:
    """``shadow``'s record of one tag: samples of both sides' current readings."""

    samples: int = 0
    missing: int = 0  # one side had no reading
    same_time: int = 0  # both had the reading of the same time ...
    mismatched: int = 0  # ... and its values differ (a reading copied wrong)
    max_diff: float = 0.0  # largest |gateway - bifrost| of numeric values, whatever their times
    over_tolerance: int = 0  # samples with a difference beyond --tolerance (when given)
    max_lag_us: int = 0  # largest |gateway time - bifrost time|
    stale: int = 0  # samples whose times were further apart than --max-lag

    def failed(self) -> bool:
        return bool(self.mismatched or self.over_tolerance or self.stale or self.missing == self.samples)


def sample(drift: Drift, g: Optional[Row], b: Optional[Row], tolerance: Optional[float], max_lag_us: int) -> None:
    drift.samples += 1
    if g is None or b is None:
        drift.missing += 1
        return
    lag = abs(g.ts_us - b.ts_us)
    drift.max_lag_us = max(drift.max_lag_us, lag)
    drift.stale += lag > max_lag_us
    numeric = isinstance(g.value, float) and isinstance(b.value, float)
    diff = abs(g.value - b.value) if numeric else (0.0 if g.value == b.value else math.inf)  # type: ignore[operator]
    if numeric:
        drift.max_diff = max(drift.max_diff, diff)
    if g.ts_us == b.ts_us:
        drift.same_time += 1
        drift.mismatched += (g.value, g.quality) != (b.value, b.quality)
    if tolerance is not None:
        drift.over_tolerance += diff > tolerance


def drift_table(drifts: dict[str, Drift]) -> str:
    header = ["TAG", "SAMPLES", "MISSING", "SAME_TIME", "MISMATCHED", "MAX_DIFF", "OVER_TOL", "MAX_LAG_S", "STALE"]
    rows = [[tag, str(d.samples), str(d.missing), str(d.same_time), str(d.mismatched), f"{d.max_diff:.6g}",
             str(d.over_tolerance), f"{d.max_lag_us / 1e6:.3f}", str(d.stale)] for tag, d in sorted(drifts.items())]
    return table(header, rows)


# -- the commands -------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    start, end = parse_time(args.from_, option="--from"), parse_time(args.to, option="--to")
    if start >= end:
        raise ValueError(f"--from {args.from_} is not before --to {args.to}")
    with client_from(args, deadline=300) as client, GatewayStore(args.store) as store:
        tags = args.tag or store.tags()
        gateway = summarize(store.rows(tags, start, end))
        bifrost = summarize(bifrost_rows(client, tags, start, end))
    mismatches = compare(gateway, bifrost)
    hours = len(set(gateway) | set(bifrost))
    if not hours:
        print(f"verify {fmt_us(start)} to {fmt_us(end)}: no reading of {len(tags)} tags on either side: "
              "nothing compared (check --from, --to and --tag)", file=sys.stderr)
        return 1
    counts = sum(s.count for s in gateway.values()), sum(s.count for s in bifrost.values())
    if args.format == "json":
        print(json.dumps({"from_us": start, "to_us": end, "tags": len(tags), "tag_hours": hours,
                          "gateway_readings": counts[0], "bifrost_readings": counts[1],
                          "mismatches": [{"tag": m.tag, "hour_us": m.hour_us, "difference": m.what(),
                                          "gateway": dict(zip(CELLS, m.gateway.cells())),
                                          "bifrost": dict(zip(CELLS, m.bifrost.cells()))} for m in mismatches]}))
    else:
        if mismatches:
            print(mismatch_table(mismatches), end="")
        print(f"verify {fmt_us(start)} to {fmt_us(end)}: {len(tags)} tags, {hours} tag-hours, "
              f"{counts[0]} readings in the gateway, {counts[1]} in Bifrost: {len(mismatches)} "
              f"{'mismatch' if len(mismatches) == 1 else 'mismatches'}")
    return 1 if mismatches else 0


CELLS = ("count", "min", "max", "avg", "hash")


def bifrost_current(client: Client, tags: list[str]) -> dict[str, Row]:
    out: dict[str, Row] = {}
    if not tags:
        return out
    for r in client.get(tags):
        out[r.tag] = Row(r.tag, t.ts_to_us(r.ts), comparable(r.value), r.quality.level.name.lower(),
                         r.quality.reason)
    return out


def run_shadow(args: argparse.Namespace) -> int:
    drifts: dict[str, Drift] = {}
    end = time.monotonic() + args.minutes * 60
    with client_from(args) as client, GatewayStore(args.store) as store:
        tags = args.tag or store.tags()
        if not tags:
            raise ValueError(f"gateway store {args.store}: no tag has a reading; nothing to watch")
        known = {tg.name for tg in client.list_tags()}
        unknown = [tg for tg in tags if tg not in known]
        if unknown:
            print(f"shadow: not in Bifrost (every sample counts as missing): {', '.join(unknown[:10])}"
                  + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""), file=sys.stderr)
        drifts = {tag: Drift() for tag in tags}
        while True:
            g, b = store.latest(tags), bifrost_current(client, [tg for tg in tags if tg in known])
            for tag in tags:
                sample(drifts[tag], g.get(tag), b.get(tag), args.tolerance, args.max_lag_us)
            if time.monotonic() + args.every > end:
                break
            time.sleep(args.every)
    print(drift_table(drifts), end="")
    failed = sorted(tag for tag, d in drifts.items() if d.failed())
    samples = max((d.samples for d in drifts.values()), default=0)
    print(f"shadow: {len(tags)} tags, {samples} samples each over {args.minutes:g} min: "
          f"{len(failed)} drifted" + (f" ({', '.join(failed[:10])})" if failed else ""))
    return 1 if failed else 0
