"""Python types for what the API carries, and their conversion to and from protobuf.

Readings, values, query results and write outcomes become dataclasses with
Python values (``bool``/``int``/``float``/``str``, timestamps as aware UTC
``datetime``). Devices and tags stay the generated protobuf messages
(``Device``, ``Tag``), which are already typed and are what import/export carry.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union, cast

from google.protobuf.message import Message

from ._proto import bifrost_pb2 as pb

Device = pb.Device
Tag = pb.Tag
Scale = pb.Scale
Deadband = pb.Deadband

PyValue = Union[bool, int, float, str]
"""A tag value as Python holds it."""

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Consistency(enum.IntEnum):
    """How fresh a read must be (see the README, "Consistency")."""

    LINEARIZABLE = pb.CONSISTENCY_LINEARIZABLE
    LOCAL = pb.CONSISTENCY_LOCAL
    LEADER = pb.CONSISTENCY_LEADER


class QualityLevel(enum.IntEnum):
    GOOD = pb.QUALITY_GOOD
    UNCERTAIN = pb.QUALITY_UNCERTAIN
    BAD = pb.QUALITY_BAD


@dataclass(frozen=True)
class Quality:
    level: QualityLevel = QualityLevel.GOOD
    reason: str = ""


GOOD = Quality()


@dataclass(frozen=True)
class Reading:
    """One reading. ``value`` is None for a reading without one (a Bad poll, say)."""

    tag: str
    ts: datetime
    value: Optional[PyValue]
    quality: Quality = GOOD
    id: str = ""
    revision: int = 0
    server_ts: Optional[datetime] = None


@dataclass(frozen=True)
class WriteResult:
    """Outcome of a device write: ``ok``, ``rejected`` or ``timeout``."""

    outcome: str
    message: str
    read_back: Optional[PyValue]
    node: int

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass(frozen=True)
class Column:
    name: str
    type: int


@dataclass
class QueryResult:
    """A query's columns, its rows as tuples of Python values, and the server's counts."""

    columns: list[Column]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rows_scanned: int = 0
    elapsed_us: int = 0

    def dicts(self) -> list[dict[str, Any]]:
        names = [c.name for c in self.columns]
        return [dict(zip(names, r)) for r in self.rows]


@dataclass(frozen=True)
class Rejected:
    """A reading a partial ingest did not store: its position in the batch (from 0), its id,
    a code (``unknown_tag``, ``bad_value``, ``bad_timestamp``, ``bad_reading``, ``tag_changed``:
    the tag changed on the way, send it again) and the server's reason."""

    index: int
    id: str
    code: str
    reason: str


@dataclass(frozen=True)
class IngestResult:
    stored: int
    duplicates: int
    last_revision: int
    rejected: list[Rejected] = field(default_factory=list)
    """Partial ingest only: the readings not stored, in batch order."""


@dataclass
class ConfigDocument:
    """All devices and tags: what ``export`` returns and ``import_config`` takes.

    ``to_json``/``from_json`` use the document format of ``bifrostctl export``.
    """

    devices: list[pb.Device] = field(default_factory=list)
    tags: list[pb.Tag] = field(default_factory=list)

    def to_json(self) -> str:
        doc = {"devices": [_msg_dict(d) for d in self.devices], "tags": [_msg_dict(t) for t in self.tags]}
        return json.dumps(doc, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ConfigDocument":
        doc = json.loads(text)
        devices = [_dict_msg(pb.Device(), d) for d in doc.get("devices") or []]
        tags = [_dict_msg(pb.Tag(), t) for t in doc.get("tags") or []]
        return cls(devices, tags)


def _msg_dict(m: Message) -> dict[str, Any]:
    """Every field of a Device/Tag by its proto name; unset sub-messages as None."""
    out: dict[str, Any] = {}
    for f in m.DESCRIPTOR.fields:
        v = getattr(m, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            out[f.name] = dict(v)
        elif f.message_type is not None:
            out[f.name] = _msg_dict(v) if m.HasField(f.name) else None
        else:
            out[f.name] = v
    return out


def _dict_msg(m: Message, d: dict[str, Any]) -> Any:
    """The inverse of ``_msg_dict``: ``None`` is absent; unknown fields are errors."""
    from google.protobuf import json_format

    clean = {k: v for k, v in d.items() if v is not None}
    return json_format.ParseDict(clean, m)


def ts_to_us(ts: Union[datetime, int, float]) -> int:
    """A datetime (naive means UTC), or seconds since the epoch, in microseconds."""
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        delta = ts - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return int(round(ts * 1_000_000))


def us_to_ts(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def value_to_pb(v: PyValue) -> pb.Value:
    """bool before int: ``True`` is a bool value, not 1."""
    if isinstance(v, bool):
        return pb.Value(bool_value=v)
    if isinstance(v, int):
        return pb.Value(int_value=v)
    if isinstance(v, float):
        return pb.Value(float_value=v)
    if isinstance(v, str):
        return pb.Value(string_value=v)
    raise TypeError(f"a tag value is bool, int, float or str, not {type(v).__name__}")


def value_from_pb(v: pb.Value) -> Optional[PyValue]:
    kind = v.WhichOneof("kind")
    return None if kind is None else getattr(v, kind)


def reading_from_pb(r: pb.Reading) -> Reading:
    return Reading(
        tag=r.tag,
        ts=us_to_ts(r.ts_us),
        value=value_from_pb(r.value) if r.HasField("value") else None,
        quality=Quality(QualityLevel(r.quality.level), r.quality.reason),
        id=r.id,
        revision=r.revision,
        server_ts=us_to_ts(r.server_ts_us) if r.server_ts_us else None,
    )


def reading_to_pb(r: Reading) -> pb.Reading:
    """A reading to ingest. An empty ``id`` gets a fresh random one here: retries of one
    ``ingest`` call stay safe, but ingesting the same object again stores it again."""
    import uuid

    msg = pb.Reading(
        id=r.id or uuid.uuid4().hex,
        tag=r.tag,
        ts_us=ts_to_us(r.ts),
        quality=pb.Quality(level=cast(pb.QualityLevel, int(r.quality.level)), reason=r.quality.reason),
    )
    if r.value is not None:
        msg.value.CopyFrom(value_to_pb(r.value))
    return msg


def cell_from_pb(c: pb.Cell) -> Any:
    kind = c.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "timestamp_us":
        return us_to_ts(c.timestamp_us)
    return getattr(c, kind)


def write_result_from_pb(r: pb.WriteTagResponse) -> WriteResult:
    back = value_from_pb(r.read_back) if r.HasField("read_back") else None
    return WriteResult(r.outcome, r.message, back, r.node)
