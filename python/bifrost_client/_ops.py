"""Each API call as an ``Op``: the RPC, its request, its kind and how to read the answer.

Both clients run the same ops (``Client._run`` blocks, ``AsyncClient._run``
awaits), so requests and conversions are written once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Generic, Iterable, Optional, Sequence, TypeVar, Union, cast

from . import _policy as policy
from . import errors
from . import types as t
from ._proto import bifrost_pb2 as pb

T = TypeVar("T")
Time = Union[datetime, int, float]


@dataclass(frozen=True)
class Op(Generic[T]):
    method: str
    """Name of the RPC on ``BifrostStub``."""
    request: Any
    convert: Callable[[Any], T]
    """Gets the response, or for a server-streaming RPC the list of responses."""
    kind: policy.CallKind = policy.NORMAL
    streaming: bool = False


def request_id() -> str:
    """Kept across an op's retries, so a retry of a committed config write is not applied twice."""
    return uuid.uuid4().hex


def _pb_consistency(c: t.Consistency) -> pb.Consistency:
    return cast(pb.Consistency, int(c))


def _field(name: str, what: str) -> Callable[[Any], Any]:
    def get(resp: Any) -> Any:
        if not resp.HasField(name):
            raise errors.ProtocolError(f"{what} reply without {name}")
        return getattr(resp, name)

    return get


def put_device(device: pb.Device, create_only: bool, expected_revision: Optional[int]) -> Op[pb.Device]:
    req = pb.PutDeviceRequest(device=device, create_only=create_only, request_id=request_id())
    if expected_revision is not None:
        req.expected_revision = expected_revision
    return Op("PutDevice", req, _field("device", "PutDevice"))


def delete_device(name: str) -> Op[int]:
    req = pb.DeleteDeviceRequest(name=name, request_id=request_id())
    return Op("DeleteDevice", req, lambda r: r.revision)


def list_devices(consistency: t.Consistency) -> Op[list[pb.Device]]:
    return Op("ListDevices", pb.ListDevicesRequest(consistency=_pb_consistency(consistency)), lambda r: list(r.devices))


def put_tag(tag: pb.Tag, create_only: bool, expected_revision: Optional[int]) -> Op[pb.Tag]:
    req = pb.PutTagRequest(tag=tag, create_only=create_only, request_id=request_id())
    if expected_revision is not None:
        req.expected_revision = expected_revision
    return Op("PutTag", req, _field("tag", "PutTag"))


def delete_tag(name: str, purge: bool) -> Op[int]:
    req = pb.DeleteTagRequest(name=name, purge=purge, request_id=request_id())
    return Op("DeleteTag", req, lambda r: r.revision)


def list_tags(device: Optional[str], consistency: t.Consistency) -> Op[list[pb.Tag]]:
    req = pb.ListTagsRequest(device=device or "", consistency=_pb_consistency(consistency))
    return Op("ListTags", req, lambda r: list(r.tags))


def import_config(doc: t.ConfigDocument) -> Op[tuple[int, int]]:
    req = pb.ImportRequest(devices=doc.devices, tags=doc.tags)
    return Op("Import", req, lambda r: (r.devices, r.tags), policy.LONG)


def snapshot(devices: list[pb.Device], tags: list[pb.Tag]) -> t.ConfigDocument:
    """An export: devices and tags sorted by name."""
    return t.ConfigDocument(sorted(devices, key=lambda d: d.name), sorted(tags, key=lambda x: x.name))


def needs_relist(devices: list[pb.Device], tags: list[pb.Tag]) -> bool:
    """A tag names a device the first listing lacked (created in between): list devices again."""
    names = {d.name for d in devices}
    return any(x.device not in names for x in tags)


def ingest(readings: Iterable[Union[t.Reading, pb.Reading]], partial: bool = False) -> Op[t.IngestResult]:
    msgs = [r if isinstance(r, pb.Reading) else t.reading_to_pb(r) for r in readings]
    return Op("Ingest", pb.IngestRequest(readings=msgs, partial=partial), _ingest_result)


def _ingest_result(r: pb.IngestResponse) -> t.IngestResult:
    rejected = [t.Rejected(x.index, x.id, x.code, x.reason) for x in r.rejected]
    return t.IngestResult(r.stored, r.duplicates, r.last_revision, rejected)


def get(tags: Sequence[str], consistency: t.Consistency) -> Op[list[t.Reading]]:
    req = pb.GetCurrentRequest(tags=list(tags), consistency=_pb_consistency(consistency))
    return Op("GetCurrent", req, lambda r: [t.reading_from_pb(x) for x in r.readings])


def history(
    tag: str, start: Optional[Time], end: Optional[Time], limit: int, consistency: t.Consistency
) -> Op[list[t.Reading]]:
    req = pb.HistoryRequest(tag=tag, limit=limit, consistency=_pb_consistency(consistency))
    if start is not None:
        req.from_us = t.ts_to_us(start)
    if end is not None:
        req.to_us = t.ts_to_us(end)
    conv = lambda chunks: [t.reading_from_pb(x) for c in chunks for x in c.readings]  # noqa: E731
    return Op("History", req, conv, policy.LONG, streaming=True)


def query(sql: str, consistency: t.Consistency) -> Op[t.QueryResult]:
    kind = policy.ANY if consistency == t.Consistency.LOCAL else policy.LONG
    return Op("Query", pb.QueryRequest(sql=sql, consistency=_pb_consistency(consistency)), _query_result, kind, streaming=True)


def _query_result(msgs: list[pb.QueryResponse]) -> t.QueryResult:
    if not msgs:
        raise errors.ProtocolError("query stream ended before its columns")
    result = t.QueryResult([t.Column(c.name, c.type) for c in msgs[0].columns])
    for m in msgs:
        result.rows.extend(tuple(t.cell_from_pb(c) for c in row.cells) for row in m.rows)
        if m.HasField("stats"):
            result.rows_scanned, result.elapsed_us = m.stats.scanned, m.stats.elapsed_us
    return result


def write(tag: str, value: t.PyValue) -> Op[t.WriteResult]:
    req = pb.WriteTagRequest(tag=tag, value=t.value_to_pb(value))
    return Op("WriteTag", req, t.write_result_from_pb, policy.WRITE)


def status() -> Op[pb.StatusResponse]:
    return Op("Status", pb.StatusRequest(), lambda r: r, policy.STATUS)


def login(user: str, password: str) -> Op[pb.LoginResponse]:
    return Op("Login", pb.LoginRequest(user=user, password=password), lambda r: r, policy.ANY)


def logout() -> Op[None]:
    return Op("Logout", pb.LogoutRequest(), lambda r: None)


def whoami() -> Op[pb.WhoAmIResponse]:
    return Op("WhoAmI", pb.WhoAmIRequest(), lambda r: r)


def set_retention(seconds: int) -> Op[int]:
    return Op("SetRetention", pb.SetRetentionRequest(seconds=seconds), lambda r: r.seconds)
