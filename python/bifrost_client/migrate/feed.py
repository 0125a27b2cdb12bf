"""``dual-write``: the gateway's readings also go to Bifrost, through a ``DualWriter``.

Two ways, both ending in ``DualWriter.submit`` (so both spool while Bifrost is
unreachable, dead-letter what it refuses, and store each reading once):

- **the plug-in** (``DualWriteHook``), for the gateway's ``hooks:``; the gateway
  calls it with every batch it stores, in its event loop, and ``submit`` never waits::

      hooks:
        - use: bifrost_client.migrate.feed:dual_write
          with: {endpoints: "10.0.0.1:7001,10.0.0.2:7001", spool: /var/lib/gateway/bifrost-spool}

- **the tailer** (``tail``, ``bifrost-migrate dual-write --store FILE``), for a gateway
  that cannot load plug-ins: it follows the store's table by rowid (SQLite gives
  each new row the next one) and keeps its place in ``SPOOL/tail.checkpoint``, moved
  only once everything before it was acknowledged, so a restart sends again at
  worst what Bifrost then counts as duplicates.

A reading keeps the gateway's id (``gw:<tag>:<ts_us>``), time, value, quality and
reason. Must not depend on the gateway's code: batches are duck-typed (``.id .tag
.ts_us .value .quality .reason``).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .. import types as t
from ..client import Client
from ..dualwrite import DualWriter, DualWriterCounters
from .sides import COPIED_PREFIX, client_from

log = logging.getLogger(__name__)

CHECKPOINT = "tail.checkpoint"
QUALITY = {"good": t.QualityLevel.GOOD, "uncertain": t.QualityLevel.UNCERTAIN, "bad": t.QualityLevel.BAD}


def to_reading(tag: str, ts_us: int, value: Any, quality: str, reason: str, rid: str) -> t.Reading:
    """A gateway reading as Bifrost takes it; an unknown quality is ``ValueError``."""
    level = QUALITY.get(quality)
    if level is None:
        raise ValueError(f"reading {rid}: quality {quality!r} is not good, uncertain or bad")
    return t.Reading(tag=tag, ts=t.us_to_ts(ts_us), value=value, quality=t.Quality(level, reason or ""), id=rid)


def _endpoints(endpoints: Union[str, Sequence[str]]) -> list[str]:
    return [e.strip() for e in endpoints.split(",")] if isinstance(endpoints, str) else list(endpoints)


class DualWriteHook:
    """The gateway plug-in: ``hook(batch)`` submits every reading; ``close()`` at the gateway's stop.
    ``report_every`` seconds (0: never) the counters are logged."""

    def __init__(self, writer: DualWriter, report_every: float = 60.0) -> None:
        self.writer = writer
        self._report_every, self._next_report = report_every, time.monotonic() + report_every

    def __call__(self, batch: Sequence[Any]) -> None:
        for r in batch:
            try:
                self.writer.submit(to_reading(r.tag, r.ts_us, r.value, r.quality, r.reason, r.id))
            except (ValueError, TypeError) as e:  # one malformed reading must not drop the batch
                log.error("dual-write: %s", e)
        if self._report_every and time.monotonic() >= self._next_report:
            self._next_report = time.monotonic() + self._report_every
            log.info("dual-write: %s", self.counters())

    def counters(self) -> DualWriterCounters:
        return self.writer.counters()

    def close(self) -> None:
        self.writer.close()
        log.info("dual-write closed: %s", self.writer.counters())


def dual_write(endpoints: Union[str, Sequence[str]], spool: str, *, ca: Optional[str] = None,
               cert: Optional[str] = None, key: Optional[str] = None, token: Optional[str] = None,
               token_file: Optional[str] = None, batch_size: int = 1000, flush_interval: float = 0.5,
               max_pending: int = 100_000, timeout: float = 5.0, report_every: float = 60.0) -> DualWriteHook:
    """The factory named in the gateway's ``hooks:`` (``with:`` gives these arguments)."""
    if token_file:
        token = Path(token_file).read_text().strip()
    client = Client(_endpoints(endpoints), ca=ca, cert=cert, key=key, token=token, timeout=timeout,
                    deadline=timeout)
    writer = DualWriter(client, spool, batch_size=batch_size, flush_interval=flush_interval,
                        max_pending=max_pending)
    return DualWriteHook(writer, report_every)


class Tailer:
    """Follows ``readings`` of a gateway store by rowid into ``writer`` until ``stop()``.

    Rows ``rollback`` copied from Bifrost (ids ``bf:...``) are not sent back. A bool is 0 or 1
    in SQLite, which Bifrost's bool tags take as false and true. ``start_at_end``: without a
    checkpoint, begin after the rows already there instead of with the first (the gateway's
    whole history)."""

    def __init__(self, store: Union[str, Path], writer: DualWriter, poll: float = 0.2, batch: int = 5000,
                 start_at_end: bool = False) -> None:
        self.path, self.writer, self.poll, self.batch = Path(store), writer, poll, batch
        self.checkpoint_file = writer.spool_dir / CHECKPOINT
        self.stopped = threading.Event()
        self.skipped = 0
        saved = self._load_checkpoint()
        self.position = saved if saved is not None else (self._last_row() if start_at_end else 0)
        self.saved = saved if saved is not None else -1

    def _load_checkpoint(self) -> Optional[int]:
        try:
            text = self.checkpoint_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise ValueError(f"{self.checkpoint_file}: {text!r} is not a row number; remove the file to "
                             "start again (Bifrost stores a reading it has once)")
        return int(text)

    def _last_row(self) -> int:
        with closing(self._open()) as db:
            return int(db.execute("SELECT coalesce(max(rowid), 0) FROM readings").fetchone()[0])

    def _open(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise ValueError(f"gateway store {self.path}: no such file")
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)

    def _save_checkpoint(self) -> None:
        tmp = self.checkpoint_file.with_suffix(".tmp")
        tmp.write_text(f"{self.position}\n")
        tmp.replace(self.checkpoint_file)
        self.saved = self.position

    def _keep_place(self) -> None:
        """Everything submitted so far is acknowledged (or dead-lettered): the place is safe to keep."""
        if self.position != self.saved and self.writer.counters().pending == 0:
            self._save_checkpoint()

    def step(self, db: sqlite3.Connection) -> int:
        """Submits the rows after ``position`` (at most ``batch``); returns how many were read."""
        self._keep_place()  # before submitting more: a busy gateway never leaves nothing pending after
        rows = db.execute("SELECT rowid, id, tag, ts_us, value, quality, reason FROM readings WHERE rowid > ? "
                          "ORDER BY rowid LIMIT ?", (self.position, self.batch)).fetchall()
        for rowid, rid, tag, ts_us, value, quality, reason in rows:
            self.position = rowid
            if rid.startswith(COPIED_PREFIX):
                self.skipped += 1
                continue
            try:
                self.writer.submit(to_reading(tag, ts_us, value, quality, reason, rid))
            except (ValueError, TypeError) as e:
                log.error("dual-write: store row %d: %s", rowid, e)
        return len(rows)

    def run(self, report_every: float = 60.0) -> None:
        next_report = time.monotonic() + report_every
        with closing(self._open()) as db:
            while not self.stopped.is_set():
                if self.step(db) < self.batch:
                    self.stopped.wait(self.poll)
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + report_every
                    log.info("dual-write at row %d: %s", self.position, self.writer.counters())

    def stop(self) -> None:
        self.stopped.set()

    def finish(self, timeout: float) -> None:
        """After ``run`` returned: sends what is pending (spooling the rest), keeps the place."""
        self.writer.wait_drained(timeout)
        self._keep_place()
        self.writer.close()


HOOK_YAML = """\
hooks:
  - use: bifrost_client.migrate.feed:dual_write
    with: {{endpoints: "{endpoints}", spool: "{spool}"{extra}}}
"""


def run_dual_write(args: argparse.Namespace) -> int:
    if args.store is None:
        extra = "".join(f", {k}: \"{v}\"" for k, v in (("ca", args.ca), ("cert", args.cert), ("key", args.key))
                        if v)
        print(HOOK_YAML.format(endpoints=args.endpoints, spool=args.spool, extra=extra), end="")
        print("# add this to the gateway's config (and bifrost-client to its Python), then restart it; "
              "the token, if any: token_file: PATH", file=sys.stderr)
        return 0
    writer = DualWriter(client_from(args, deadline=args.timeout), args.spool)
    tailer = Tailer(args.store, writer, start_at_end=args.start == "end")
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: tailer.stop())
    print(f"dual-write: following {args.store} from row {tailer.position} into Bifrost (spool {args.spool}); "
          "SIGINT or SIGTERM stops", file=sys.stderr, flush=True)
    try:
        tailer.run()
    finally:
        tailer.finish(args.drain_timeout)
    c = writer.counters()
    print(f"dual-write stopped at row {tailer.position}: {c.submitted} submitted, {c.acknowledged} acknowledged "
          f"({c.duplicates} already there), {c.rejected} rejected, {c.pending} left in the spool",
          file=sys.stderr)
    return 0
