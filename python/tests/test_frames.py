"""query_df and history_df (Arrow IPC from QueryArrow into Polars) against a real cluster,
checked against the row API (query, history)."""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import grpc
import polars as pl
import pytest

import bifrost_client as bc
from bifrost_client import frames

T0 = datetime(2025, 3, 1, tzinfo=timezone.utc)
UTC_US = pl.Datetime("us", "UTC")


@dataclasses.dataclass
class Plant:
    prefix: str
    num: str
    """An f64 tag: 300 readings, one of them Bad without a value."""
    text: str
    """A string tag: 60 readings."""
    bad_at: datetime


@pytest.fixture(scope="module")
def plant(clusters: Any) -> Plant:
    p = f"df{uuid.uuid4().hex[:8]}"
    with bc.Client(clusters.get(tls=False).endpoints, timeout=5, deadline=30) as c:
        c.put_device(bc.Device(name=p, protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                               poll_interval_ms=1000, timeout_ms=500, enabled=False))
        num, text = f"{p}/flow", f"{p}/batch"
        c.put_tag(bc.Tag(name=num, device=p, address="hr:1", data_type="f64"))
        c.put_tag(bc.Tag(name=text, device=p, address="hr:10", data_type="string", length=8))
        readings = [bc.Reading(num, T0 + timedelta(seconds=s), s * 0.25 - 10, id=f"{p}-n{s}") for s in range(300)]
        bad_at = T0 + timedelta(seconds=150)
        readings[150] = bc.Reading(num, bad_at, None, bc.Quality(bc.QualityLevel.BAD, "comm_failure"), id=f"{p}-bad")
        readings += [bc.Reading(text, T0 + timedelta(seconds=5 * s), f"lot-{s}'x", id=f"{p}-t{s}") for s in range(60)]
        assert c.ingest(readings).stored == len(readings)
    return Plant(p, num, text, bad_at)


def rows_of_history(readings: list[bc.Reading]) -> list[tuple[Any, ...]]:
    """What history_df holds for each reading: tag, ts, value (number), value_text, quality, reason."""
    out = []
    for r in readings:
        num: Optional[float] = None if r.value is None or isinstance(r.value, str) else float(r.value)
        txt = r.value if isinstance(r.value, str) else None
        out.append((r.tag, r.ts, num, txt, r.quality.level.name.lower(), r.quality.reason or None))
    return out


def rows_of_frame(df: pl.DataFrame) -> list[tuple[Any, ...]]:
    text = df["value_text"] if "value_text" in df.columns else pl.Series([None] * df.height)
    return list(zip(df["tag"], df["ts"], df["value"], text, df["quality"], df["reason"]))


def test_history_df_has_typed_columns_and_the_rows_of_history(client: bc.Client, plant: Plant) -> None:
    df = client.history_df([plant.text, plant.num])  # any order in: by tag, then time out
    assert df.columns == ["tag", "ts", "value", "value_text", "quality", "reason"]
    assert dict(df.schema) == ({"tag": pl.String, "ts": UTC_US, "value": pl.Float64, "value_text": pl.String,
                                   "quality": pl.Categorical, "reason": pl.String})
    expected = rows_of_history(client.history(plant.text) + client.history(plant.num))
    assert sorted(expected, key=lambda r: (r[0], r[1])) == expected  # text tag name sorts first
    assert df.height == 360 and rows_of_frame(df) == expected
    assert df["ts"][0].tzinfo is not None and df["ts"][0] == T0
    bad = df.filter(pl.col("quality") == "bad")
    assert bad["ts"].to_list() == [plant.bad_at] and bad["value"].to_list() == [None]
    assert bad["reason"].to_list() == ["comm_failure"]
    assert df.filter(pl.col("tag") == plant.text)["value_text"][0] == "lot-0'x"


def test_history_df_of_numbers_drops_value_text_and_takes_a_range(client: bc.Client, plant: Plant) -> None:
    start, end = T0 + timedelta(seconds=100), T0 + timedelta(seconds=200.5)
    df = client.history_df(plant.num, start, end)
    assert df.columns == ["tag", "ts", "value", "quality", "reason"]
    assert df.schema["ts"] == UTC_US and df.schema["quality"] == pl.Categorical
    assert rows_of_frame(df) == rows_of_history(client.history(plant.num, start, end))
    assert df.height == 101 and df["ts"].is_sorted()
    # Epoch seconds and naive datetimes (UTC) work as in history().
    naive = client.history_df(plant.num, start.replace(tzinfo=None), end.timestamp())
    assert naive.equals(df)


def test_query_df_matches_query(client: bc.Client, plant: Plant) -> None:
    sql = (f"SELECT tag, ts, value, quality, reason, revision, id, server_ts FROM readings "
           f"WHERE tag IN ('{plant.num}', '{plant.text}') ORDER BY ts DESC, tag LIMIT 250")
    df, q = client.query_df(sql), client.query(sql)
    assert df.columns == ["tag", "ts", "value", "value_text", "quality", "reason", "revision", "id", "server_ts"]
    assert df.schema["ts"] == UTC_US and df.schema["server_ts"] == UTC_US
    assert df.schema["quality"] == pl.Categorical and df.schema["value"] == pl.Float64
    assert df.schema["revision"] == pl.Int64
    assert df.height == len(q.rows) == 250
    for got, row in zip(df.iter_rows(), q.rows):
        tag, ts, value, quality, reason, revision, id_, server_ts = row
        num = None if value is None or isinstance(value, str) else float(value)
        txt = value if isinstance(value, str) else None
        assert got == (tag, ts, num, txt, quality, reason, revision, id_, server_ts)
    agg = client.query_df(f"SELECT tag, count(*) AS n, avg(value) FROM readings WHERE glob(tag, '{plant.prefix}/*') "
                          "GROUP BY tag")
    assert agg.schema["n"] == pl.Int64
    assert dict(zip(agg["tag"], agg["n"])) == {plant.num: 299, plant.text: 60}  # the Bad reading is skipped


def test_empty_results_keep_their_schema(client: bc.Client, plant: Plant) -> None:
    empty = client.query_df(f"SELECT tag, ts, value, quality FROM readings WHERE tag = '{plant.num}' "
                            "AND ts < '2000-01-01T00:00:00Z'")
    assert empty.height == 0
    assert dict(empty.schema) == ({"tag": pl.String, "ts": UTC_US, "value": pl.Float64, "value_text": pl.String,
                                      "quality": pl.Categorical})
    none = client.history_df(plant.num, T0 - timedelta(days=1), T0)
    assert none.height == 0 and none.columns == ["tag", "ts", "value", "quality", "reason"]
    assert none.schema["ts"] == UTC_US


def test_bad_sql_raises_as_query_does(client: bc.Client) -> None:
    with pytest.raises(bc.InvalidArgument) as rows_err:
        client.query("SELECT nme FROM tags")
    with pytest.raises(bc.InvalidArgument) as df_err:
        client.query_df("SELECT nme FROM tags")
    assert df_err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert df_err.value.message == rows_err.value.message and "nme" in df_err.value.message
    with pytest.raises(ValueError):
        client.history_df([])


def test_async_client_frames(cluster: Any, plant: Plant) -> None:
    async def run() -> tuple[pl.DataFrame, pl.DataFrame]:
        async with bc.AsyncClient(cluster.endpoints, timeout=5, deadline=30) as c:
            return await c.history_df([plant.num, plant.text]), await c.query_df(
                f"SELECT count(*) AS n FROM readings WHERE tag = '{plant.num}' AND quality = 'bad'")

    hist, q = asyncio.run(run())
    with bc.Client(cluster.endpoints) as c:
        assert hist.equals(c.history_df([plant.num, plant.text]))
    assert hist.height == 360 and q["n"].to_list() == [1]


def test_history_sql_quotes_names_and_times() -> None:
    sql = frames.history_sql(["a/b", "it's", "a/b"], datetime(2025, 1, 2, 3, 4, 5, 600), 1_700_000_000.5)
    assert sql == ("SELECT tag, ts, value, quality, reason FROM readings WHERE tag IN ('a/b', 'it''s') "
                   "AND ts >= '2025-01-02T03:04:05.000600Z' AND ts < '2023-11-14T22:13:20.500000Z' "
                   "ORDER BY tag, ts")
    assert "tag = 'x'" in frames.history_sql("x")


def test_without_polars_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_polars(name: str, *args: Any, **kw: Any) -> Any:
        if name == "polars" or name.startswith("polars."):
            raise ImportError("No module named 'polars'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_polars)
    with bc.Client(["127.0.0.1:1"]) as c:  # fails before any call is made
        with pytest.raises(ImportError) as e:
            c.query_df("SELECT 1 FROM tags")
    assert "bifrost-client[polars]" in str(e.value)


def test_a_stream_without_its_last_message_is_a_protocol_error() -> None:
    from bifrost_client._proto import bifrost_pb2 as pb

    with pytest.raises(bc.ProtocolError):
        frames.decode([])
    with pytest.raises(bc.ProtocolError):
        frames.decode([pb.ArrowChunk(ipc=b"\xff\xff\xff\xff")])  # cut short: no stats
    with pytest.raises(bc.ProtocolError):
        frames.decode([pb.ArrowChunk(ipc=b"garbage", stats=pb.QueryStats())])
