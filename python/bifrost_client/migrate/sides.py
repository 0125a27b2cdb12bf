"""The two sides of a migration as readings, and the options every live step shares.

- ``GatewayStore``: the reference gateway's SQLite store (``readings(id, tag, ts_us,
  value, quality, reason)``, see ``examples/python-gateway``), read while the gateway
  runs (SQLite WAL: readers never block its writer) and written only by ``rollback``.
- ``bifrost_rows``: Bifrost's history of some tags as the same ``Row`` tuples, through
  ``history_df`` (Arrow; needs polars).
- ``Row`` and ``comparable``: the one form both sides are compared in. Values are
  normalized so that the same reading looks the same on both sides: numbers (ints,
  scaled floats, bools as 0/1) as floats, text as text, no value as ``None``.
- ``reading_id``: the id a reading of ``tag`` at ``ts_us`` has on both sides
  (``gw:<tag>:<ts_us>``, the gateway's own), so copying either way stores it once.
- ``add_cluster_options``/``client_from``, ``parse_time``: the command line of the live
  steps (``dual-write``, ``verify``, ``shadow``, ``cutover``, ``rollback``).

Nothing here knows the steps themselves; it must not import them.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional, Sequence, Union

from .. import types as t
from ..client import Client

HOUR_US = 3_600_000_000


class Row(NamedTuple):
    """One reading as both sides are compared: ``quality`` is ``good|uncertain|bad``."""

    tag: str
    ts_us: int
    value: Union[float, str, None]
    quality: str
    reason: str = ""


def comparable(value: Any) -> Union[float, str, None]:
    """A value as both sides are compared: bools and ints as floats, text as text."""
    if value is None or isinstance(value, str):
        return value
    return float(value)


def reading_id(tag: str, ts_us: int) -> str:
    return f"gw:{tag}:{ts_us}"


def now_us() -> int:
    return time.time_ns() // 1000


_RELATIVE = re.compile(r"^(?:now)?\s*([+-])\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)$")
_UNIT_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": HOUR_US, "d": 24 * HOUR_US}


def parse_time(text: str, now: Optional[int] = None) -> int:
    """Microseconds since 1970 from ``now``, ``now-10m``/``-10m`` (us ms s m h d), an integer
    (microseconds since 1970), or ISO 8601 (naive means UTC). ``ValueError`` names the text."""
    s = text.strip()
    base = now_us() if now is None else now
    if s == "now":
        return base
    m = _RELATIVE.match(s)
    if m:
        delta = int(float(m.group(2)) * _UNIT_US[m.group(3)])
        return base + delta if m.group(1) == "+" else base - delta
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        ts = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r}: use ISO 8601 (2024-05-01T12:00:00Z), microseconds since 1970, "
                         "now, or now-DURATION (now-10m, -1h)") from None
    return t.ts_to_us(ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))


def fmt_us(ts_us: int) -> str:
    return t.us_to_ts(ts_us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class GatewayStore:
    """The gateway's reading store. Opened read-only unless ``writable``."""

    def __init__(self, path: Union[str, Path], writable: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"gateway store {self.path}: no such file")
        mode = "rw" if writable else "ro"
        self.db = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, timeout=30)
        try:
            cols = [r[1] for r in self.db.execute("PRAGMA table_info(readings)")]
        except sqlite3.DatabaseError as e:
            raise ValueError(f"gateway store {self.path}: not an SQLite database ({e})") from None
        if cols[:6] != ["id", "tag", "ts_us", "value", "quality", "reason"]:
            raise ValueError(f"gateway store {self.path}: no readings(id, tag, ts_us, value, quality, reason) "
                             f"table (found columns {cols})")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "GatewayStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tags(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT tag FROM readings ORDER BY tag")]

    def rows(self, tags: Sequence[str], start_us: int, end_us: int) -> Iterator[Row]:
        """Readings of ``tags`` with ``start_us <= ts_us < end_us``, by tag then time."""
        q = ("SELECT tag, ts_us, value, quality, reason FROM readings WHERE tag = ? AND ts_us >= ? "
             "AND ts_us < ? ORDER BY ts_us")
        for tag in sorted(set(tags)):
            for tag_, ts_us, value, quality, reason in self.db.execute(q, (tag, start_us, end_us)):
                yield Row(tag_, ts_us, comparable(value), quality, reason or "")

    def latest(self, tags: Sequence[str]) -> dict[str, Row]:
        """Each tag's newest reading (tags without one are left out)."""
        q = "SELECT tag, ts_us, value, quality, reason FROM readings WHERE tag = ? ORDER BY ts_us DESC LIMIT 1"
        out = {}
        for tag in tags:
            r = self.db.execute(q, (tag,)).fetchone()
            if r is not None:
                out[tag] = Row(r[0], r[1], comparable(r[2]), r[3], r[4] or "")
        return out

    def add(self, rows: Iterable[Row], bool_tags: Iterable[str] = ()) -> int:
        """Stores readings under their ``reading_id`` (once: one already there is kept);
        returns how many were new. Values of ``bool_tags`` are stored as 0/1, as the gateway does."""
        bools = set(bool_tags)
        data = [(reading_id(r.tag, r.ts_us), r.tag, r.ts_us,
                 int(r.value) if r.tag in bools and r.value is not None else r.value, r.quality, r.reason)
                for r in rows]
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?)", data)
            return self.db.total_changes - before


def bifrost_rows(client: Client, tags: Sequence[str], start_us: int, end_us: int,
                 chunk: int = 50) -> Iterator[Row]:
    """Bifrost's readings of ``tags`` with ``start_us <= ts < end_us``, by tag then time
    (Arrow through ``history_df``, ``chunk`` tags a query)."""
    names = sorted(set(tags))
    start, end = t.us_to_ts(start_us), t.us_to_ts(end_us)
    for i in range(0, len(names), chunk):
        df = client.history_df(names[i:i + chunk], start, end)
        if df.height == 0:
            continue
        texts = df["value_text"].to_list() if "value_text" in df.columns else [None] * df.height
        cols = zip(df["tag"].to_list(), df["ts"].dt.epoch("us").to_list(), df["value"].to_list(), texts,
                   df["quality"].cast(str).to_list(), df["reason"].to_list())
        for tag, ts_us, value, text, quality, reason in cols:
            yield Row(tag, ts_us, text if text is not None else value, quality, reason or "")


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """``bifrostctl``'s connection options (the same environment variables)."""
    p.add_argument("--endpoints", default=os.environ.get("BIFROST_ENDPOINTS", "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"),
                   help="Bifrost nodes, HOST:PORT,... (env BIFROST_ENDPOINTS; default bifrostctl's, 127.0.0.1:7001-7003)")
    p.add_argument("--ca", default=os.environ.get("BIFROST_CA"), help="CA certificate (PEM) of the cluster's "
                   "TLS (env BIFROST_CA); without it the connection is plain text")
    p.add_argument("--cert", default=os.environ.get("BIFROST_CERT"), help="client certificate (env BIFROST_CERT)")
    p.add_argument("--key", default=os.environ.get("BIFROST_KEY"), help="its key (env BIFROST_KEY)")
    p.add_argument("--token", default=os.environ.get("BIFROST_TOKEN"),
                   help="session token (env BIFROST_TOKEN; bifrostctl login prints one)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per call attempt (5)")


def client_from(args: argparse.Namespace, deadline: float = 30.0) -> Client:
    endpoints = [e for e in args.endpoints.split(",") if e.strip()]
    if not endpoints:
        raise ValueError("--endpoints: no node given")
    return Client(endpoints, ca=args.ca, cert=args.cert, key=args.key, token=args.token, timeout=args.timeout,
                  deadline=deadline)
