"""The reading store: one SQLite table, ``readings(id, tag, ts_us, value, quality, reason)``."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    id      TEXT PRIMARY KEY,   -- gw:<tag>:<ts_us>, stable: storing it twice stores it once
    tag     TEXT NOT NULL,
    ts_us   INTEGER NOT NULL,   -- microseconds since 1970, UTC
    value,                      -- INTEGER, REAL, TEXT or NULL (Bad readings); bools as 0/1
    quality TEXT NOT NULL,      -- good | uncertain | bad
    reason  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS readings_tag_ts ON readings (tag, ts_us);
-- Devices whose polling was stopped (POST /polling, a cutover): still stopped after a restart.
CREATE TABLE IF NOT EXISTS stopped_devices (device TEXT PRIMARY KEY);
"""


@dataclass(frozen=True)
class Reading:
    id: str
    tag: str
    ts_us: int
    value: Any
    quality: str = "good"
    reason: str = ""

    @staticmethod
    def make(tag: str, ts_us: int, value: Any, quality: str = "good", reason: str = "") -> "Reading":
        return Reading(f"gw:{tag}:{ts_us}", tag, ts_us, value, quality, reason)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Store:
    """SQLite in WAL mode; the poll loops and the API share one connection under a lock."""

    def __init__(self, path: str, bool_tags: Iterable[str] = ()) -> None:
        # Other processes write too (a migration's rollback copies readings in): wait for them.
        self.db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()
        self.bool_tags = set(bool_tags)

    def add(self, batch: list[Reading]) -> None:
        rows = [(r.id, r.tag, r.ts_us, r.value, r.quality, r.reason) for r in batch]
        with self.lock, self.db:
            self.db.executemany("INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _reading(self, row: tuple[Any, ...]) -> Reading:
        r = Reading(*row)
        if r.tag in self.bool_tags and r.value is not None:
            r = Reading(r.id, r.tag, r.ts_us, bool(r.value), r.quality, r.reason)
        return r

    def current(self, tag: str) -> Optional[Reading]:
        with self.lock:
            row = self.db.execute("SELECT * FROM readings WHERE tag = ? ORDER BY ts_us DESC LIMIT 1",
                                  (tag,)).fetchone()
        return self._reading(row) if row else None

    def history(self, tag: str, start: Optional[int], end: Optional[int], limit: int) -> list[Reading]:
        """Readings with ``start <= ts_us < end``, oldest first."""
        q = "SELECT * FROM readings WHERE tag = ? AND ts_us >= ? AND ts_us < ? ORDER BY ts_us LIMIT ?"
        args = (tag, start if start is not None else -(2**62), end if end is not None else 2**62, limit)
        with self.lock:
            return [self._reading(row) for row in self.db.execute(q, args)]

    def stopped_devices(self) -> set[str]:
        with self.lock:
            return {r[0] for r in self.db.execute("SELECT device FROM stopped_devices")}

    def set_stopped(self, devices: Iterable[str], stopped: bool) -> None:
        rows = [(d,) for d in devices]
        sql = "INSERT OR IGNORE INTO stopped_devices VALUES (?)" if stopped else \
            "DELETE FROM stopped_devices WHERE device = ?"
        with self.lock, self.db:
            self.db.executemany(sql, rows)

    def close(self) -> None:
        with self.lock:
            self.db.close()
