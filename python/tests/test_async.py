"""AsyncClient: the same basics as the blocking client, on grpc.aio."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest

import bifrost_client as bc
from _cluster import Cluster, free_port


async def basics(endpoints: list[str]) -> None:
    p = f"a{uuid.uuid4().hex[:6]}"
    dead = f"127.0.0.1:{free_port()}"
    async with bc.AsyncClient([dead, *endpoints], timeout=2, deadline=20) as c:
        dev = bc.Device(name=p, protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                        poll_interval_ms=1000, timeout_ms=500)
        assert (await c.put_device(dev, create_only=True)).revision > 0
        assert c.leader is not None and c.leader != f"http://{dead}"
        with pytest.raises(bc.AlreadyExists):
            await c.put_device(dev, create_only=True)
        await c.put_tag(bc.Tag(name=f"{p}/v", device=p, address="hr:1", data_type="f64"))
        doc = await c.export()
        assert f"{p}/v" in [t.name for t in doc.tags]

        t0 = datetime(2025, 6, 1, tzinfo=timezone.utc)
        watch = c.watch(f"{p}/*", from_revision=(await c.status()).revision, progress_ms=100)
        res = await c.ingest([bc.Reading(f"{p}/v", t0 + timedelta(seconds=s), s * 1.5, id=f"{p}-{s}")
                              for s in range(4)])
        assert res.stored == 4
        got = [r async for r in _take(watch, 4)]
        watch.close()
        assert [r.value for r in got] == [0.0, 1.5, 3.0, 4.5]
        assert [r.revision for r in got] == sorted(r.revision for r in got)

        cur = await c.get(f"{p}/v")
        assert cur[0].value == 4.5 and cur[0].ts == t0 + timedelta(seconds=3)
        assert [r.value for r in await c.history(f"{p}/v", t0, t0 + timedelta(seconds=2))] == [0.0, 1.5]
        q = await c.query(f"SELECT count(*) FROM readings WHERE tag = '{p}/v'")
        assert q.rows == [(4,)]
        with pytest.raises(bc.InvalidArgument) as e:
            await c.query("SELECT * FROM nowhere")
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and "nowhere" in e.value.message


async def _take(w: bc.AsyncWatch, n: int):  # type: ignore[no-untyped-def]
    async for r in w:
        yield r
        n -= 1
        if n == 0:
            return


def test_async_client_basics(cluster: Cluster) -> None:
    asyncio.run(asyncio.wait_for(basics(cluster.endpoints), 60))
