"""``DualWriter``: a gateway's second copy of its readings, sent to Bifrost in the background.

A gateway that keeps writing to its own store (a historian, a PLC log, ...)
and also feeds Bifrost calls ``submit(reading)`` from its polling loop; that
call is O(1), never waits on the network and never fails because of the
cluster. A background thread sends batches with a partial ingest
(``ingest(..., partial=True)``); when Bifrost cannot be reached it appends
them to a spool on local disk and replays that spool, oldest first, once
Bifrost answers again (also after the process restarts). Readings Bifrost
refuses go to ``dead-letter.jsonl`` with their code and reason.

Exactly once rests on the server: every reading carries a stable id and the
cluster acknowledges a reading it already holds (within 24 h) as a duplicate
instead of storing it again. So a reading may be *sent* more than once (a
batch whose answer was lost is spooled and replayed; a crash between an
acknowledgement and the deletion of a spool segment replays it after the
restart), but it is *stored* once.

Files in ``spool_dir`` (README "Dual-writing from a gateway"):

- ``spool-NNNNNNNNNN.jsonl``: append-only segments, one reading per line in
  the ``bifrostctl ingest`` format (``{"id","tag","ts","value","quality"?,
  "reason"?}``, ``ts`` RFC 3339 in UTC with microseconds), replayed in
  sequence order and deleted once every reading in them was acknowledged or
  dead-lettered.
- ``dead-letter.jsonl``: ``{"reading": {...as above...}, "code", "reason",
  "at"}`` per refused reading (``{"line", "segment", "code": "spool_corrupt",
  ...}`` for a spool line that cannot be read back, e.g. torn by a crash).
- ``.lock``: held (``flock``) while a writer uses the directory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional, Union

from . import errors
from . import types as t
from ._proto import bifrost_pb2 as pb
from .client import Client

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock on the spool directory
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DEAD_LETTER = "dead-letter.jsonl"
LOCK_FILE = ".lock"
_SEGMENT = re.compile(r"^spool-(\d{10})\.jsonl$")
MAX_BATCH = 10_000
"""The server's limit of readings per ingest call."""
TAG_CHANGED_RESENDS = 3
"""A reading refused as ``tag_changed`` (its tag changed while the batch was on its way) is sent
again this often before it is dead-lettered."""

_QUALITY_NAMES = {int(q): q.name.lower() for q in t.QualityLevel}
_QUALITY_LEVELS = {v: k for k, v in _QUALITY_NAMES.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

Submittable = Union[t.Reading, pb.Reading]


@dataclass(frozen=True)
class DualWriterCounters:
    """Readings counted since the writer started (``DualWriter.counters()``)."""

    submitted: int
    """Accepted by ``submit``."""
    sent: int
    """Sent in ingest calls (a reading sent again after a failure counts again)."""
    acknowledged: int
    """Acknowledged by Bifrost: stored, or already stored (``duplicates``)."""
    duplicates: int
    """Of ``acknowledged``, those Bifrost already held (a re-send after a lost answer or a crash)."""
    spooled: int
    """Written to the spool: batches that failed, readings held while Bifrost is unreachable, and
    ``overflowed`` ones."""
    replayed: int
    """Read back from the spool and acknowledged or dead-lettered."""
    rejected: int
    """Written to the dead-letter file."""
    pending: int
    """Not yet acknowledged or dead-lettered: in memory, in flight or in the spool."""
    overflowed: int
    """Submitted while ``max_pending`` readings were already in memory: spooled by ``submit``."""
    recovered: int
    """Found in the spool when the writer started (left by an earlier process)."""
    failures: int
    """Ingest calls that failed (Bifrost unreachable, ...); see ``DualWriter.last_error``."""


class _Segment:
    """One spool segment open for appending, owned by one writer."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = open(path, "a", encoding="utf-8")
        self.count = 0
        self.dirty = False

    def write(self, data: str, n: int) -> None:
        self.file.write(data)
        self.count += n
        self.dirty = True

    def flush(self) -> bool:
        """Hands the buffered lines to the OS; whether there was anything to sync."""
        dirty, self.dirty = self.dirty, False
        if dirty:
            self.file.flush()
        return dirty

    def sync(self) -> None:
        if self.flush():
            os.fsync(self.file.fileno())

    def close(self) -> None:
        self.sync()
        self.file.close()


class DualWriter:
    """Sends readings to Bifrost in the background, spooling them to disk while it is unreachable.

    ``DualWriter(client, spool_dir, batch_size=1000, flush_interval=0.5, max_pending=100_000)``;
    ``submit(reading)`` from the gateway's loop (any thread, or the asyncio event loop: it never
    waits), ``counters()`` for monitoring, ``close(timeout)`` at the end (or ``with``).

    ``client`` is a blocking ``Client`` used only by the writer's thread; give it a short
    ``deadline`` (say 5 s): it bounds how long one attempt of a batch may take while Bifrost is
    down. Every reading needs a stable ``id`` (the same reading, the same id, also across restarts
    of the gateway); the cluster stores each id once, which is what makes replays safe.
    """

    def __init__(
        self,
        client: Client,
        spool_dir: Union[str, Path],
        batch_size: int = 1000,
        flush_interval: float = 0.5,
        max_pending: int = 100_000,
        *,
        segment_size: int = 10_000,
        min_backoff: float = 0.5,
        max_backoff: float = 5.0,
    ) -> None:
        if not isinstance(client, Client):
            raise TypeError("DualWriter needs a blocking bifrost_client.Client (its own thread calls it)")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}")
        if max_pending < 1 or segment_size < 1 or flush_interval <= 0 or not 0 < min_backoff <= max_backoff:
            raise ValueError("max_pending, segment_size, flush_interval and the backoffs must be positive")
        self._client = client
        self.spool_dir = Path(spool_dir)
        self._batch_size, self._flush_interval = batch_size, flush_interval
        self._max_pending, self._segment_size = max_pending, segment_size
        self._min_backoff, self._max_backoff = min_backoff, max_backoff

        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_lock()
        self._dead_file = open(self.spool_dir / DEAD_LETTER, "a", encoding="utf-8")

        # Readings in memory and the counters: ``_lock`` (``_cv`` wakes the sender).
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._queue: deque[pb.Reading] = deque()
        self._inflight: list[pb.Reading] = []
        self._n: dict[str, int] = dict.fromkeys(
            ("submitted", "sent", "acknowledged", "duplicates", "spooled", "replayed", "rejected",
             "overflowed", "recovered", "failures"), 0)
        self._last_error: Optional[BaseException] = None
        self._healthy = True
        self._closing = False
        self._closed = False
        self._abandoned = False

        # Spool segments: numbering and which are still being written (``_seg_lock``); the
        # segment ``submit`` overflows into (``_ovf_lock``); the sender's own (its thread only).
        self._seg_lock = threading.Lock()
        self._open: set[str] = set()
        existing = self._segments()
        self._seq = max((_seq_of(p) for p in existing), default=0) + 1
        self._n["recovered"] = sum(_count_lines(p) for p in existing)
        self._ovf_lock = threading.Lock()
        self._ovf: Optional[_Segment] = None
        self._ovf_full: list[_Segment] = []
        self._own: Optional[_Segment] = None
        # Per sealed segment: the lines already resolved by this process (a replay that failed
        # half way resumes after them), and the last segment read.
        self._resolved: dict[str, set[int]] = {}
        self._cache: Optional[tuple[str, list[Union[pb.Reading, str]]]] = None

        self._backoff = min_backoff
        self._next_probe = 0.0
        self._thread = threading.Thread(target=self._run, name="bifrost-dualwriter", daemon=True)
        self._thread.start()

    # -- the gateway's side ------------------------------------------------

    def submit(self, reading: Submittable) -> None:
        """Queues one reading; O(1), never waits on Bifrost, never raises because of it.

        With ``max_pending`` readings already in memory the reading is appended to the spool
        instead (no fsync here; the writer's thread syncs it within ``flush_interval``).
        Raises ``ValueError`` for a reading without ``id``, ``TypeError`` for a value that is
        not bool/int/float/str/None and ``RuntimeError`` after ``close``: the gateway's bugs.
        """
        if not reading.id:
            raise ValueError(f"a reading for DualWriter needs a stable id (tag {reading.tag!r})")
        if isinstance(reading, pb.Reading):
            msg = pb.Reading()
            msg.CopyFrom(reading)
        else:
            msg = t.reading_to_pb(reading)
        with self._lock:
            if self._closing:
                raise RuntimeError("DualWriter is closed")
            self._n["submitted"] += 1
            if len(self._queue) < self._max_pending:
                self._queue.append(msg)
                if len(self._queue) == self._batch_size:
                    self._cv.notify()
                return
            self._n["overflowed"] += 1
        line = _spool_line(msg)
        with self._ovf_lock:
            if self._ovf is not None and self._ovf.count >= self._segment_size:
                self._ovf_full.append(self._ovf)  # sealed (fsync) by the sender, not here
                self._ovf = None
            if self._ovf is None:
                self._ovf = self._new_segment(sync_dir=False)
            self._ovf.write(line, 1)
        self._count(spooled=1)

    def counters(self) -> DualWriterCounters:
        with self._lock:
            n = dict(self._n)
        n["pending"] = n["submitted"] + n["recovered"] - n["acknowledged"] - n["rejected"]
        return DualWriterCounters(**n)

    @property
    def healthy(self) -> bool:
        """Whether the last ingest call succeeded (False: spooling, retrying with backoff)."""
        return self._healthy

    @property
    def last_error(self) -> Optional[BaseException]:
        """Why the last failed ingest call failed."""
        return self._last_error

    def wait_drained(self, timeout: float) -> bool:
        """Waits until nothing is pending (all acknowledged or dead-lettered, the spool empty)."""
        end = time.monotonic() + timeout
        while self.counters().pending > 0:
            if time.monotonic() >= end:
                return False
            time.sleep(0.05)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Stops accepting readings, sends what is in memory (or spools it while Bifrost is
        unreachable) for up to ``timeout`` seconds, then spools whatever is left. The spool
        stays for the next writer on ``spool_dir``; ``submit`` raises afterwards."""
        with self._cv:
            if self._closing:
                return
            self._closing = True
            self._cv.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():  # stuck in a call: spool its batch too (a duplicate at worst)
            self._abandoned = True
            with self._lock:
                rest = list(self._inflight) + list(self._queue)
                self._queue.clear()
            if rest:
                seg = self._new_segment()
                self._append(seg, rest)
                self._seal(seg)
        self._seal_overflow()
        self._dead_file.close()
        if self._lock_file is not None:
            self._lock_file.close()
        self._closed = True

    def __enter__(self) -> "DualWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the sender thread -------------------------------------------------

    def _run(self) -> None:
        while not self._abandoned:
            try:
                if self._healthy:
                    self._step_healthy()
                else:
                    self._step_unhealthy()
            except Exception as e:  # a local failure (disk full, a bug): keep going, in backoff
                log.exception("DualWriter: %s", e)
                self._failed(e)
            with self._lock:
                done = self._closing and not self._queue and not self._inflight
            if done:
                break
        if not self._abandoned:
            if self._own is not None:
                self._seal(self._own)
                self._own = None

    def _step_healthy(self) -> None:
        self._sync_overflow()
        if not self._closing and not self._replay():
            return
        with self._cv:
            if len(self._queue) < self._batch_size and not self._closing:
                self._cv.wait(self._flush_interval)
            n = min(self._batch_size, len(self._queue))
            batch = [self._queue.popleft() for _ in range(n)]
            self._inflight = batch
        if not batch:
            self._seal_overflow()  # idle: overflowed readings become replayable
            return
        left = self._send(batch, replay=False)
        if left:
            self._spool_own([batch[i] for i in left])
        with self._lock:
            self._inflight = []

    def _step_unhealthy(self) -> None:
        # Keep memory for new readings: what waits goes to disk every flush_interval.
        with self._lock:
            held = self._inflight + list(self._queue)
            self._queue.clear()
            self._inflight = held
        if held:
            self._spool_own(held)
        with self._lock:
            self._inflight = []
        self._sync_overflow()
        if self._closing:
            return
        now = time.monotonic()
        if now < self._next_probe:
            with self._cv:
                if not self._closing:
                    self._cv.wait(min(self._flush_interval, self._next_probe - now))
            return
        # Probe by replaying the spool, oldest first (everything held is in it now).
        if self._own is not None:
            self._seal(self._own)
            self._own = None
        self._seal_overflow()
        if self._replay():
            self._healthy = True
            self._backoff = self._min_backoff
            log.info("DualWriter: Bifrost answers again; spool replayed")

    def _failed(self, e: BaseException) -> None:
        with self._lock:
            self._n["failures"] += 1
        self._last_error = e
        if self._healthy:
            log.warning("DualWriter: Bifrost unreachable, spooling to %s: %s", self.spool_dir, e)
        self._healthy = False
        self._next_probe = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._max_backoff)

    def _send(self, msgs: list[pb.Reading], replay: bool) -> list[int]:
        """Ingests ``msgs``; the positions of those neither acknowledged nor dead-lettered
        (empty unless the call failed)."""
        return self._send_some(msgs, list(range(len(msgs))), replay, 0)

    def _send_some(self, msgs: list[pb.Reading], idx: list[int], replay: bool, resends: int) -> list[int]:
        self._count(sent=len(idx))
        try:
            res = self._client.ingest([msgs[i] for i in idx], partial=True)
        except errors.InvalidArgument as e:
            # A partial ingest names bad readings one by one; a refused batch means a server
            # without partial ingest (all or nothing): halve it until the culprit is alone.
            if len(idx) == 1:
                self._dead_letter([(msgs[idx[0]], "refused", e.message)], replay)
                return []
            mid = len(idx) // 2
            left = self._send_some(msgs, idx[:mid], replay, resends)
            if left:
                return left + idx[mid:]
            return self._send_some(msgs, idx[mid:], replay, resends)
        except Exception as e:  # unreachable, timed out, overloaded, refused credentials, ...
            self._failed(e)
            return idx
        again: list[int] = []
        dead: list[tuple[pb.Reading, str, str]] = []
        seen: set[int] = set()
        for r in res.rejected:
            if not 0 <= r.index < len(idx) or r.index in seen:
                continue
            seen.add(r.index)
            if r.code == "tag_changed" and resends < TAG_CHANGED_RESENDS:
                again.append(idx[r.index])
            else:
                dead.append((msgs[idx[r.index]], r.code, r.reason))
        self._dead_letter(dead, replay)
        acked = len(idx) - len(seen)
        self._count(acknowledged=acked, duplicates=res.duplicates, replayed=acked if replay else 0)
        if again:
            return self._send_some(msgs, again, replay, resends + 1)
        return []

    def _replay(self) -> bool:
        """Sends every sealed segment, oldest first, deleting each once resolved; False when
        Bifrost failed on the way."""
        for path in self._segments(sealed=True):
            if self._abandoned:
                return False
            records = self._load(path)
            done = self._resolved.setdefault(path.name, set())
            for i, rec in enumerate(records):
                if isinstance(rec, str) and i not in done:
                    self._dead_letter_line(path.name, rec)
                    done.add(i)
            todo = [i for i in range(len(records)) if i not in done]
            for k in range(0, len(todo), self._batch_size):
                chunk = todo[k : k + self._batch_size]
                msgs: list[pb.Reading] = [records[i] for i in chunk]  # type: ignore[misc]
                left = set(self._send(msgs, replay=True))
                done.update(i for j, i in enumerate(chunk) if j not in left)
                if left:
                    return False
            path.unlink()
            _sync_dir(self.spool_dir)
            self._resolved.pop(path.name, None)
            self._cache = None
        return True

    # -- the spool ---------------------------------------------------------

    def _segments(self, sealed: bool = False) -> list[Path]:
        # Listed before the open ones are looked at: a segment is marked open before it is
        # created, so one being written is never taken for a sealed one.
        names = [n for n in os.listdir(self.spool_dir) if _SEGMENT.match(n)]
        with self._seg_lock:
            open_ = set(self._open) if sealed else set()
        names = [n for n in names if n not in open_]
        return [self.spool_dir / n for n in sorted(names)]

    def _new_segment(self, sync_dir: bool = True) -> _Segment:
        with self._seg_lock:
            name = f"spool-{self._seq:010d}.jsonl"
            self._seq += 1
            self._open.add(name)
        seg = _Segment(self.spool_dir / name)
        if sync_dir:
            _sync_dir(self.spool_dir)
        return seg

    def _seal(self, seg: _Segment) -> None:
        """Closes a segment (fsync); from now on the replay may take it."""
        seg.close()
        _sync_dir(self.spool_dir)
        with self._seg_lock:
            self._open.discard(seg.path.name)

    def _append(self, seg: _Segment, msgs: list[pb.Reading]) -> None:
        seg.write("".join(_spool_line(m) for m in msgs), len(msgs))
        seg.sync()
        self._count(spooled=len(msgs))

    def _spool_own(self, msgs: list[pb.Reading]) -> None:
        """Appends to the sender's segment and syncs it (durable when this returns)."""
        if self._own is not None and self._own.count >= self._segment_size:
            self._seal(self._own)
            self._own = None
        if self._own is None:
            self._own = self._new_segment()
        self._append(self._own, msgs)

    def _sync_overflow(self) -> None:
        """Makes what ``submit`` overflowed durable; seals its full segments."""
        with self._ovf_lock:
            full, self._ovf_full = self._ovf_full, []
            seg = self._ovf
            dirty = seg is not None and seg.flush()
        if dirty:
            assert seg is not None
            os.fsync(seg.file.fileno())  # only the sender closes it, so the file stays open
        for f in full:
            self._seal(f)

    def _seal_overflow(self) -> None:
        with self._ovf_lock:
            full, self._ovf_full = self._ovf_full, []
            seg, self._ovf = self._ovf, None
        for f in full + ([seg] if seg is not None else []):
            self._seal(f)

    def _load(self, path: Path) -> list[Union[pb.Reading, str]]:
        """A segment's readings in order; a line that cannot be read stays as its text."""
        if self._cache is not None and self._cache[0] == path.name:
            return self._cache[1]
        out: list[Union[pb.Reading, str]] = []
        for line in path.read_text(encoding="utf-8", errors="replace").split("\n"):
            if line.strip():
                try:
                    out.append(_parse_line(line))
                except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
                    out.append(line)
        self._cache = (path.name, out)
        return out

    # -- dead letters and counters -----------------------------------------

    def _dead_letter(self, items: list[tuple[pb.Reading, str, str]], replay: bool) -> None:
        if not items:
            return
        at = _now()
        text = "".join(
            json.dumps({"reading": _spool_dict(m), "code": code, "reason": reason, "at": at}) + "\n"
            for m, code, reason in items
        )
        self._write_dead(text)
        for m, code, reason in items:
            log.warning("DualWriter: reading %s (tag %s) refused, dead-lettered: %s: %s",
                        m.id, m.tag, code, reason)
        self._count(rejected=len(items), replayed=len(items) if replay else 0)

    def _dead_letter_line(self, segment: str, line: str) -> None:
        rec = {"line": line, "segment": segment, "code": "spool_corrupt",
               "reason": "spool line cannot be read back (torn by a crash?)", "at": _now()}
        self._write_dead(json.dumps(rec) + "\n")
        self._count(rejected=1, replayed=1)

    def _write_dead(self, text: str) -> None:
        self._dead_file.write(text)
        self._dead_file.flush()
        os.fsync(self._dead_file.fileno())

    def _count(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                self._n[k] += v

    def _take_lock(self) -> Any:
        f = open(self.spool_dir / LOCK_FILE, "a")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                raise RuntimeError(f"spool directory {self.spool_dir} is used by another DualWriter") from None
        return f


# -- the line format (``bifrostctl ingest``) --------------------------------


def _fmt_ts(us: int) -> str:
    d = _EPOCH + timedelta(microseconds=us)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
            f".{d.microsecond:06d}Z")


def _spool_dict(m: pb.Reading) -> dict[str, Any]:
    d: dict[str, Any] = {"id": m.id, "tag": m.tag}
    try:
        d["ts"] = _fmt_ts(m.ts_us)
    except OverflowError:  # beyond datetime's range: kept exact (the server refuses it anyway)
        d["ts_us"] = m.ts_us
    d["value"] = t.value_from_pb(m.value) if m.HasField("value") else None
    level = int(m.quality.level)
    if level != int(t.QualityLevel.GOOD):
        d["quality"] = _QUALITY_NAMES.get(level, str(level))
    if m.quality.reason:
        d["reason"] = m.quality.reason
    return d


def _spool_line(m: pb.Reading) -> str:
    return json.dumps(_spool_dict(m), separators=(",", ":")) + "\n"


def _parse_line(line: str) -> pb.Reading:
    d = json.loads(line)
    if "ts" in d:
        ts = datetime.fromisoformat(d["ts"].replace("Z", "+00:00"))
        ts_us = t.ts_to_us(ts)
    else:
        ts_us = int(d["ts_us"])
    q = d.get("quality") or "good"
    name, _, inline_reason = q.partition(":")
    level = _QUALITY_LEVELS[name]
    msg = pb.Reading(id=str(d["id"]), tag=str(d["tag"]), ts_us=ts_us,
                     quality=pb.Quality(level=level, reason=d.get("reason") or inline_reason))  # type: ignore[arg-type]
    if d.get("value") is not None:
        msg.value.CopyFrom(t.value_to_pb(d["value"]))
    return msg


def _seq_of(p: Path) -> int:
    m = _SEGMENT.match(p.name)
    return int(m.group(1)) if m else 0


def _count_lines(p: Path) -> int:
    with open(p, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.strip())


def _sync_dir(d: Path) -> None:
    """Makes a file's creation or deletion in ``d`` durable."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - not POSIX
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
