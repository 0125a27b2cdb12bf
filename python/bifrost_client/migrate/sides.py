"""The two sides of a migration as readings, and the options every live step shares.

- ``GatewayStore``: the reference gateway's SQLite store (``readings(id, tag, ts_us,
  value, quality, reason)``, see ``examples/python-gateway``), read while the gateway
  runs (SQLite WAL: readers never block its writer) and written only by ``rollback``.
- ``bifrost_rows``: Bifrost's history of some tags as the same ``Row`` tuples, through
  ``query_df`` (Arrow; needs polars), an hour and a few tags a query, so a long window
  never meets the server's limit of rows per query nor fills memory.
- ``Row`` and ``comparable``: the one form both sides are compared in. Values are
  normalized so that the same reading looks the same on both sides: numbers (ints,
  scaled floats, bools as 0/1) as floats, text as text, no value as ``None``.
- ``reading_id``: the id a reading of the gateway has on both sides (``gw:<tag>:<ts_us>``,
  the gateway's own), so copying it either way stores it once; a reading Bifrost polled
  is copied into the gateway's store as ``bf:<tag>:<ts_us>`` (``copied_id``), which tells
  the dual-write tailer not to send it back.
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
from ..frames import history_sql

HOUR_US = 3_600_000_000


class Row(NamedTuple):
    """One reading as both sides are compared: ``quality`` is ``good|uncertain|bad``."""

    tag: str
    ts_us: int
    value: Union[float, str, None]
    quality: str
    reason: str = ""
    id: str = ""


def comparable(value: Any) -> Union[float, str, None]:
    """A value as both sides are compared: bools and ints as floats, text as text."""
    if value is None or isinstance(value, str):
        return value
    return float(value)


def reading_id(tag: str, ts_us: int) -> str:
    return f"gw:{tag}:{ts_us}"


COPIED_PREFIX = "bf:"


def copied_id(r: Row) -> str:
    """The id ``r`` gets in the gateway's store: its own if it came from the gateway."""
    return r.id if r.id.startswith("gw:") else f"{COPIED_PREFIX}{r.tag}:{r.ts_us}"


def now_us() -> int:
    return time.time_ns() // 1000


_RELATIVE = re.compile(r"^(?:now)?\s*([+-])\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)$")
_UNIT_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": HOUR_US, "d": 24 * HOUR_US}


def parse_time(text: str, now: Optional[int] = None, option: str = "time") -> int:
    """Microseconds since 1970 from ``now``, ``now-10m``/``-10m`` (us ms s m h d), an integer
    (microseconds since 1970), or ISO 8601 (naive means UTC). ``ValueError`` names the
    ``option`` and the text."""
    s = text.strip()
    base = now_us() if now is None else now
    if s == "now":
        return base
    m = _RELATIVE.match(s)
    if m:
        delta = int(float(m.group(2)) * _UNIT_US[m.group(3)])
        return base + delta if m.group(1) == "+" else base - delta
    if re.fullmatch(r"-?\d+", s):
        if abs(int(s)) < 10**14:  # before 1973 in microseconds: seconds, a year, a duration without unit?
            raise ValueError(f"{option} {text!r}: a number is microseconds since 1970, and this one is "
                             "before 1973; for a duration write now-10s, for a date ISO 8601")
        return int(s)
    try:
        ts = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", s))
    except ValueError:
        raise ValueError(f"{option} {text!r}: use ISO 8601 (2024-05-01T12:00:00Z), microseconds since 1970, "
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
            raise ValueError(f"gateway store {self.path}: cannot read it: {e}") from None
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
        q = ("SELECT tag, ts_us, value, quality, reason, id FROM readings WHERE tag = ? AND ts_us >= ? "
             "AND ts_us < ? ORDER BY ts_us")
        for tag in sorted(set(tags)):
            for tag_, ts_us, value, quality, reason, rid in self.db.execute(q, (tag, start_us, end_us)):
                yield Row(tag_, ts_us, comparable(value), quality, reason or "", rid)

    def latest(self, tags: Sequence[str]) -> dict[str, Row]:
        """Each tag's newest reading (tags without one are left out)."""
        q = ("SELECT tag, ts_us, value, quality, reason, id FROM readings WHERE tag = ? "
             "ORDER BY ts_us DESC LIMIT 1")
        out = {}
        for tag in tags:
            r = self.db.execute(q, (tag,)).fetchone()
            if r is not None:
                out[tag] = Row(r[0], r[1], comparable(r[2]), r[3], r[4] or "", r[5])
        return out

    def add(self, rows: Iterable[Row], bool_tags: Iterable[str] = (), int_tags: Iterable[str] = (),
            batch: int = 500) -> int:
        """Stores readings under ``copied_id`` (once: one already there is kept), ``batch`` a
        transaction so the gateway, writing too, never waits long; returns how many were new.
        Values of ``bool_tags`` are stored as 0/1 and of ``int_tags`` as integers, as the gateway
        stores them."""
        bools, ints = set(bool_tags), set(int_tags)

        def value(r: Row) -> Any:
            if r.value is None or isinstance(r.value, str):
                return r.value
            return int(r.value) if r.tag in bools or r.tag in ints else r.value

        added, data = 0, []
        for r in rows:
            data.append((copied_id(r), r.tag, r.ts_us, value(r), r.quality, r.reason))
            if len(data) >= batch:
                added, data = added + self._insert(data), []
        return added + self._insert(data)

    def _insert(self, data: list[tuple[Any, ...]]) -> int:
        with self.db:
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?)", data)
            return self.db.total_changes - before


def bifrost_rows(client: Client, tags: Sequence[str], start_us: int, end_us: int,
                 chunk: int = 10) -> Iterator[Row]:
    """Bifrost's readings of ``tags`` with ``start_us <= ts < end_us``: hour by hour, ``chunk``
    tags a query (Arrow through ``query_df``), by tag then time within each."""
    names = sorted(set(tags))
    hour = start_us - start_us % HOUR_US
    while hour < end_us:
        lo, hi = max(start_us, hour), min(end_us, hour + HOUR_US)
        for i in range(0, len(names), chunk):
            yield from _bifrost_query(client, names[i:i + chunk], lo, hi)
        hour += HOUR_US


def _bifrost_query(client: Client, names: list[str], start_us: int, end_us: int) -> Iterator[Row]:
    sql = history_sql(names, t.us_to_ts(start_us), t.us_to_ts(end_us), extra_columns=("id",))
    df = client.query_df(sql)
    if df.height == 0:
        return
    texts = df["value_text"].to_list() if "value_text" in df.columns else [None] * df.height
    cols = zip(df["tag"].to_list(), df["ts"].dt.epoch("us").to_list(), df["value"].to_list(), texts,
               df["quality"].cast(str).to_list(), df["reason"].to_list(), df["id"].to_list())
    for tag, ts_us, value, text, quality, reason, rid in cols:
        yield Row(tag, ts_us, text if text is not None else value, quality, reason or "", rid or "")


def seconds(text: str) -> float:
    """An argparse type: a number of seconds, 0 or more (its name is what argparse shows)."""
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def positive_seconds(text: str) -> float:
    value = seconds(text)
    if value == 0:
        raise ValueError(text)
    return value


def micros(text: str) -> int:
    """An argparse type: seconds (0 or more) given, microseconds kept."""
    return int(seconds(text) * 1e6)


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
