"""Partial ingest and the DualWriter: dead letters, a cluster down for a minute, replay after a crash."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import bifrost_client as bc
from bifrost_client import dualwrite
from _cluster import Cluster, free_port


def now() -> datetime:
    return datetime.now(timezone.utc)


def make_tags(client: bc.Client, prefix: str, n: int) -> list[str]:
    dev = f"{prefix}-dev"
    client.put_device(bc.Device(name=dev, protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                                poll_interval_ms=1000, timeout_ms=500, enabled=False))
    names = [f"{prefix}/t{k}" for k in range(n)]
    client.import_config(bc.ConfigDocument([], [bc.Tag(name=x, device=dev, address="hr:1", data_type="i64")
                                                for x in names]))
    return names


def stored_ids(client: bc.Client, prefix: str) -> list[str]:
    """Every stored reading id under ``prefix/``, as many times as stored."""
    rows = client.query(f"SELECT id FROM readings WHERE tag LIKE '{prefix}/%'").rows
    return [r[0] for r in rows]


def spool_segments(d: Path) -> list[str]:
    return sorted(n for n in os.listdir(d) if n.startswith("spool-"))


def dead_letters(d: Path) -> list[dict]:  # type: ignore[type-arg]
    p = d / dualwrite.DEAD_LETTER
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def test_partial_ingest_reports_rejections(client: bc.Client) -> None:
    prefix = f"pi{uuid.uuid4().hex[:6]}"
    tag = make_tags(client, prefix, 1)[0]
    batch = [bc.Reading(tag, now(), 1, id=f"{prefix}-a"), bc.Reading(f"{prefix}/nope", now(), 2, id=f"{prefix}-b"),
             bc.Reading(tag, now(), "hot", id=f"{prefix}-c"), bc.Reading(tag, now(), 3, id=f"{prefix}-d")]
    with pytest.raises(bc.InvalidArgument):  # all or nothing stays the default
        client.ingest(batch)
    res = client.ingest(batch, partial=True)
    assert (res.stored, res.duplicates) == (2, 0) and res.last_revision > 0
    assert [(r.index, r.id, r.code) for r in res.rejected] == [
        (1, f"{prefix}-b", "unknown_tag"), (2, f"{prefix}-c", "bad_value")]
    assert all(isinstance(r, bc.Rejected) and r.reason for r in res.rejected)
    again = client.ingest(batch, partial=True)
    assert (again.stored, again.duplicates, len(again.rejected)) == (0, 2, 2)
    assert client.ingest(batch[:1]).rejected == []

    async def via_async() -> bc.IngestResult:
        async with bc.AsyncClient(client.endpoints) as ac:
            return await ac.ingest(batch, partial=True)

    res = asyncio.run(via_async())
    assert (res.stored, res.duplicates, [r.code for r in res.rejected]) == (0, 2, ["unknown_tag", "bad_value"])


def test_dual_writer_dead_letters_rejected_readings(client: bc.Client, tmp_path: Path) -> None:
    prefix = f"dl{uuid.uuid4().hex[:6]}"
    tags = make_tags(client, prefix, 2)
    good = [bc.Reading(tags[k % 2], now(), k, id=f"{prefix}-g{k}") for k in range(20)]
    bad = [bc.Reading(f"{prefix}/missing", now(), 1, id=f"{prefix}-unknown"),
           bc.Reading(tags[0], now(), "hot", id=f"{prefix}-value"),
           bc.Reading(tags[1], now() + timedelta(days=3), 1, id=f"{prefix}-future")]
    spool = tmp_path / "spool"
    with bc.DualWriter(client, spool, batch_size=8, flush_interval=0.1) as w:
        with pytest.raises(ValueError):
            w.submit(bc.Reading(tags[0], now(), 1))  # no id: the gateway's bug
        for r in good[:10] + bad + good[10:]:
            w.submit(r)
        assert w.wait_drained(20), w.counters()
        c = w.counters()
    assert (c.submitted, c.acknowledged, c.duplicates, c.rejected, c.pending) == (23, 20, 0, 3, 0)
    assert (c.spooled, c.replayed, c.failures) == (0, 0, 0) and c.sent == 23
    dead = {d["reading"]["id"]: d for d in dead_letters(spool)}
    assert {k: d["code"] for k, d in dead.items()} == {
        f"{prefix}-unknown": "unknown_tag", f"{prefix}-value": "bad_value", f"{prefix}-future": "bad_timestamp"}
    assert all(d["reason"] and d["at"] for d in dead.values())
    assert dead[f"{prefix}-value"]["reading"]["value"] == "hot" and dead[f"{prefix}-value"]["reading"]["tag"] == tags[0]
    assert sorted(stored_ids(client, prefix)) == sorted(r.id for r in good)
    assert spool_segments(spool) == []
    with pytest.raises(RuntimeError):
        w.submit(good[0])


def test_dual_writer_spools_without_blocking_when_nothing_answers(tmp_path: Path) -> None:
    """No cluster at all: submit stays fast, a full queue overflows to the spool, close spools the
    rest, and the next writer on the directory finds every reading there (once)."""
    dead = bc.Client([f"127.0.0.1:{free_port()}"], timeout=0.3, deadline=0.6)
    spool = tmp_path / "spool"
    w = bc.DualWriter(dead, spool, batch_size=10, flush_interval=0.05, max_pending=25)
    slowest = 0.0
    for k in range(300):
        t0 = time.perf_counter()
        w.submit(bc.Reading("x/t", now(), k, id=f"o-{k}"))
        slowest = max(slowest, time.perf_counter() - t0)
    with pytest.raises(RuntimeError):
        bc.DualWriter(dead, spool)  # one writer per spool directory
    w.close(timeout=2)
    c = w.counters()
    assert slowest < 0.05 and c.overflowed > 0 and c.failures >= 1 and not w.healthy
    assert (c.submitted, c.spooled, c.acknowledged, c.pending) == (300, 300, 0, 300)
    lines = [json.loads(x) for n in spool_segments(spool) for x in (spool / n).read_text().splitlines()]
    assert sorted(x["id"] for x in lines) == sorted(f"o-{k}" for k in range(300))
    assert lines[0]["ts"].endswith("Z") and isinstance(lines[0]["value"], int)
    w2 = bc.DualWriter(dead, spool, batch_size=10)
    assert w2.counters().recovered == 300
    w2.close(timeout=1)
    dead.close()


def test_dual_writer_survives_the_cluster_down_for_a_minute(cluster: Cluster, client: bc.Client,
                                                             tmp_path: Path) -> None:
    prefix = f"dw{uuid.uuid4().hex[:6]}"
    tags = make_tags(client, prefix, 3)
    spool = tmp_path / "spool"
    gw_client = bc.Client(cluster.endpoints, timeout=2, deadline=4)
    w = bc.DualWriter(gw_client, spool, batch_size=500, flush_interval=0.2, max_backoff=2)
    submitted: list[str] = []
    durations: list[float] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:  # the gateway's polling loop, 50 readings a second
        try:
            k, due = 0, time.monotonic()
            while not stop.is_set():
                r = bc.Reading(tags[k % 3], now(), k, id=f"{prefix}-{k}")
                t0 = time.perf_counter()
                w.submit(r)
                durations.append(time.perf_counter() - t0)
                submitted.append(r.id)
                k += 1
                due += 0.02
                time.sleep(max(0.0, due - time.monotonic()))
        except BaseException as e:
            errors.append(e)

    began = time.monotonic()
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        time.sleep(5)
        before = w.counters()
        assert before.acknowledged > 0 and before.spooled == 0, before
        down = time.monotonic()
        cluster.stop()
        time.sleep(max(0.0, 60 - (time.monotonic() - down)))
        during = w.counters()
        assert during.spooled > 0 and not w.healthy and during.acknowledged < len(submitted), during
    finally:
        cluster.start()
    up = time.monotonic()
    time.sleep(max(0.0, began + 70 - time.monotonic()))
    stop.set()
    producer.join(5)
    assert not errors, errors
    assert w.wait_drained(60), (w.counters(), w.last_error)
    caught_up = time.monotonic() - up
    c = w.counters()
    w.close()
    gw_client.close()
    print(f"\ndown-for-a-minute: {len(submitted)} readings over {time.monotonic() - began:.0f}s, all acknowledged "
          f"{caught_up:.1f}s after the cluster was back, slowest submit {max(durations) * 1000:.2f} ms; {c}")
    # submit never waited on the network (generous: this is about blocking, not speed)
    assert max(durations) < 0.05, max(durations)
    assert c.submitted == c.acknowledged == len(submitted) and c.rejected == 0 and c.pending == 0
    assert c.spooled > 0 and c.replayed == c.spooled and c.failures > 0
    assert spool_segments(spool) == [] and dead_letters(spool) == []
    ids = stored_ids(client, prefix)
    assert len(ids) == len(submitted), "a reading was lost or stored twice"
    assert set(ids) == set(submitted)
    assert sum(len(client.history(t)) for t in tags) == len(submitted)


CRASHING_WRITER = """
import sys, time
from datetime import datetime, timezone
import bifrost_client as bc
spool, prefix, tag, n, endpoint = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
w = bc.DualWriter(bc.Client([endpoint], timeout=0.2, deadline=0.4), spool, batch_size=25, flush_interval=0.05)
for k in range(n):
    w.submit(bc.Reading(tag, datetime.now(timezone.utc), k, id=f"{prefix}-{k}"))
while w.counters().spooled < n:
    time.sleep(0.02)
print("spooled", flush=True)
time.sleep(120)
"""


def test_dual_writer_replays_a_crashed_writers_spool(client: bc.Client, tmp_path: Path) -> None:
    prefix = f"cr{uuid.uuid4().hex[:6]}"
    tag = make_tags(client, prefix, 1)[0]
    spool, n = tmp_path / "spool", 120
    # A gateway whose Bifrost is unreachable spools its readings, then dies (SIGKILL).
    env = dict(os.environ, PYTHONPATH=str(Path(bc.__file__).resolve().parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(spool), prefix, tag, str(n),
                             f"127.0.0.1:{free_port()}"], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "spooled"
    finally:
        proc.kill()
        proc.wait(10)
    segments = spool_segments(spool)
    assert segments
    # Some of them reached the cluster before the crash (the answer was lost), and the crash
    # tore a line it was writing.
    client.ingest([bc.Reading(tag, now(), k, id=f"{prefix}-{k}") for k in range(0, n, 3)])
    with open(spool / segments[-1], "a") as f:
        f.write('{"id":"torn","tag":"' + tag + '","ts":"2024-')
    with bc.DualWriter(client, spool, batch_size=50, flush_interval=0.1) as w:
        assert w.counters().recovered == n + 1
        w.submit(bc.Reading(tag, now(), -1, id=f"{prefix}-new"))
        assert w.wait_drained(20), w.counters()
        c = w.counters()
    assert (c.recovered, c.replayed, c.acknowledged, c.duplicates, c.rejected) == (n + 1, n + 1, n + 1, n // 3, 1)
    assert spool_segments(spool) == []
    assert [d["code"] for d in dead_letters(spool)] == ["spool_corrupt"]
    ids = stored_ids(client, prefix)
    assert len(ids) == n + 1 and set(ids) == {f"{prefix}-{k}" for k in range(n)} | {f"{prefix}-new"}
