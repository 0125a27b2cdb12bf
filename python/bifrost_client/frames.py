"""Query results as Polars DataFrames, from the server's Arrow IPC stream.

``query_df`` and ``history_df`` (on ``Client`` and ``AsyncClient``) call
gRPC ``QueryArrow``: the server streams one Arrow IPC stream (schema, record
batches of up to 16,384 rows, end marker) cut into ``ArrowChunk`` messages,
the last one with the statistics. The messages' bytes are joined and read
with ``polars.read_ipc_stream``, so a million readings never become a
million Python objects. The ops here are run by the clients' usual call loop
(leader discovery, retries, deadline): the whole stream is read within one
attempt, and a stream broken half way is retried whole, as ``query`` is.

Polars is optional (``pip install 'bifrost-client[polars]'``); it is
imported when one of these methods is first called.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

from . import _ops as ops
from . import _policy as policy
from . import errors
from . import types as t
from ._proto import bifrost_pb2 as pb

if TYPE_CHECKING:  # pragma: no cover
    import polars

INSTALL_HINT = "pip install 'bifrost-client[polars]' (or: pip install polars)"

HISTORY_COLUMNS = ("tag", "ts", "value", "value_text", "quality", "reason")
"""Columns of ``history_df`` (``value_text`` only when a text value is among them)."""


def polars_module() -> Any:
    """The ``polars`` module, or an ImportError that names the extra to install."""
    try:
        import polars
    except ImportError as e:
        raise ImportError(f"query_df and history_df need polars: {INSTALL_HINT}") from e
    return polars


def sql_text(s: str) -> str:
    """``s`` as a SQL string literal (quotes doubled; the server's dialect has no backslash escapes)."""
    return "'" + s.replace("'", "''") + "'"


def sql_time(ts: ops.Time) -> str:
    """A datetime (naive means UTC) or epoch seconds as an RFC 3339 literal, to the microsecond."""
    us = t.ts_to_us(ts)
    return sql_text(t.us_to_ts(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))


def history_sql(
    tags: Union[str, Sequence[str]],
    start: Optional[ops.Time] = None,
    end: Optional[ops.Time] = None,
    extra_columns: Sequence[str] = (),
) -> str:
    """The query behind ``history_df``: readings of ``tags`` in ``[start, end)``, by tag then time
    (``extra_columns`` of ``readings``, such as ``id``, after the usual ones)."""
    names = [tags] if isinstance(tags, str) else list(dict.fromkeys(tags))
    if not names:
        raise ValueError("history_df needs at least one tag")
    if any(not isinstance(n, str) for n in names):
        raise TypeError("history_df takes tag names (str)")
    if len(names) == 1:
        where = [f"tag = {sql_text(names[0])}"]
    else:
        where = [f"tag IN ({', '.join(sql_text(n) for n in names)})"]
    if start is not None:
        where.append(f"ts >= {sql_time(start)}")
    if end is not None:
        where.append(f"ts < {sql_time(end)}")
    columns = ", ".join(["tag", "ts", "value", "quality", "reason", *extra_columns])
    return (
        f"SELECT {columns} FROM readings WHERE "
        + " AND ".join(where)
        + " ORDER BY tag, ts"
    )


def ipc_bytes(msgs: Sequence[pb.ArrowChunk]) -> bytes:
    """The whole Arrow IPC stream of a ``QueryArrow`` reply; a stream cut short is a ``ProtocolError``."""
    if not msgs or not msgs[-1].HasField("stats"):
        raise errors.ProtocolError("QueryArrow stream ended before its last message (no stats)")
    return b"".join(m.ipc for m in msgs)


def decode(msgs: Sequence[pb.ArrowChunk]) -> "polars.DataFrame":
    """The DataFrame of a ``QueryArrow`` reply; a ``quality`` column becomes Categorical."""
    pl = polars_module()
    data = ipc_bytes(msgs)
    try:
        df: "polars.DataFrame" = pl.read_ipc_stream(data)
    except Exception as e:  # polars raises its own ComputeError/OSError kinds
        raise errors.ProtocolError(f"QueryArrow: unreadable Arrow IPC stream: {e}") from e
    if "quality" in df.columns and df.schema["quality"] == pl.String:
        df = df.with_columns(pl.col("quality").cast(pl.Categorical))
    return df


def decode_history(msgs: Sequence[pb.ArrowChunk]) -> "polars.DataFrame":
    """``decode``, without ``value_text`` when no reading has a text value."""
    df = decode(msgs)
    if "value_text" in df.columns and df["value_text"].null_count() == df.height:
        df = df.drop("value_text")
    return df


def _kind(consistency: t.Consistency) -> policy.CallKind:
    # As ``_ops.query``: a local read goes to any node, the others find the leader.
    return policy.ANY if consistency == t.Consistency.LOCAL else policy.LONG


def _request(sql: str, consistency: t.Consistency) -> pb.QueryRequest:
    return pb.QueryRequest(sql=sql, consistency=ops._pb_consistency(consistency))


def query_df(sql: str, consistency: t.Consistency) -> "ops.Op[polars.DataFrame]":
    polars_module()  # fail before any call when polars is missing
    return ops.Op("QueryArrow", _request(sql, consistency), decode, _kind(consistency), streaming=True)


def history_df(
    tags: Union[str, Sequence[str]],
    start: Optional[Union[datetime, int, float]],
    end: Optional[Union[datetime, int, float]],
    consistency: t.Consistency,
) -> "ops.Op[polars.DataFrame]":
    polars_module()
    sql = history_sql(tags, start, end)
    return ops.Op("QueryArrow", _request(sql, consistency), decode_history, _kind(consistency), streaming=True)
