"""The blocking Client against a real three-node cluster."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest

import bifrost_client as bc
from _cluster import Cluster, free_port


def uniq(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def device(name: str, endpoint: str = "127.0.0.1:1502", **kw: object) -> bc.Device:
    return bc.Device(name=name, protocol="modbus-tcp", endpoint=endpoint, unit_id=1,
                     poll_interval_ms=1000, timeout_ms=500, retries=1, enabled=False, **kw)  # type: ignore[arg-type]


def test_device_and_tag_crud(client: bc.Client) -> None:
    d = uniq("press")
    stored = client.put_device(device(d, labels={"line": "1"}), create_only=True)
    assert stored.revision > 0 and stored.labels["line"] == "1"
    with pytest.raises(bc.AlreadyExists) as e:
        client.put_device(device(d), create_only=True)
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS and d in e.value.message
    with pytest.raises(bc.FailedPrecondition):
        client.put_device(device(d, endpoint="127.0.0.1:1503"), expected_revision=stored.revision - 1)
    moved = client.put_device(device(d, endpoint="127.0.0.1:1503"), expected_revision=stored.revision)
    assert [x.endpoint for x in client.list_devices() if x.name == d] == ["127.0.0.1:1503"]

    tag = bc.Tag(name=f"{d}/temp", device=d, address="hr:10", data_type="f32", units="degC",
                 scale=bc.Scale(raw_lo=0, raw_hi=100, eng_lo=0, eng_hi=10))
    t = client.put_tag(tag, create_only=True)
    assert t.revision > moved.revision and t.HasField("scale") and t.scale.eng_hi == 10
    assert [x.name for x in client.list_tags(device=d)] == [f"{d}/temp"]
    assert client.delete_tag(t.name) > t.revision
    assert client.list_tags(device=d) == []
    client.delete_device(d)
    assert d not in [x.name for x in client.list_devices()]
    with pytest.raises(bc.NotFound) as nf:
        client.delete_device(d)
    assert str(nf.value).startswith("NotFound: ")


def test_import_export_round_trip(client: bc.Client) -> None:
    p = uniq("imp")
    doc = bc.ConfigDocument(
        devices=[device(f"{p}-a"), device(f"{p}-b", labels={"zone": "3"})],
        tags=[bc.Tag(name=f"{p}/a/{k}", device=f"{p}-a", address=f"hr:{k}", data_type="u16", writable=True)
              for k in range(3)]
        + [bc.Tag(name=f"{p}/b/s", device=f"{p}-b", address="hr:20", data_type="f32",
                  deadband=bc.Deadband(value=5, percent=True), scale=bc.Scale(raw_hi=10, eng_hi=100))],
    )
    assert client.import_config(doc) == (2, 4)
    text = client.export().to_json()
    back = bc.ConfigDocument.from_json(text)
    mine = lambda names: sorted(n for n in names if n.startswith(p))  # noqa: E731
    assert mine(d.name for d in back.devices) == [f"{p}-a", f"{p}-b"]
    assert mine(t.name for t in back.tags) == sorted(t.name for t in doc.tags)
    s = next(t for t in back.tags if t.name == f"{p}/b/s")
    assert (s.deadband.value, s.deadband.percent, s.scale.eng_hi) == (5, True, 100)
    assert not next(t for t in back.tags if t.name == f"{p}/a/0").HasField("scale")
    # The exported document imports unchanged, and a bad one is refused whole.
    assert client.import_config(back)[1] == len(back.tags)
    bad = bc.ConfigDocument([], [bc.Tag(name=f"{p}/x", device="no-such-device", address="hr:1", data_type="u16")])
    with pytest.raises(bc.BifrostError) as e:
        client.import_config(bad)
    assert e.value.code is not None and "no-such-device" in e.value.message


def test_ingest_then_get_history_and_query(client: bc.Client) -> None:
    d = uniq("ing")
    client.put_device(device(d))
    kinds = {"b": ("bool", True), "i": ("i64", -7), "f": ("f64", 2.5), "s": ("string", "hello")}
    for k, (ty, _) in kinds.items():
        addr = "coil:1" if ty == "bool" else "hr:1"
        client.put_tag(bc.Tag(name=f"{d}/{k}", device=d, address=addr, data_type=ty, length=8 if ty == "string" else 0))
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc)
    readings = [bc.Reading(f"{d}/f", t0 + timedelta(seconds=s), 1.0 + s) for s in range(5)]
    readings += [bc.Reading(f"{d}/{k}", t0, v) for k, (_, v) in kinds.items() if k != "f"]
    readings.append(bc.Reading(f"{d}/i", t0 + timedelta(seconds=1), None,
                               bc.Quality(bc.QualityLevel.BAD, "comm_failure")))
    readings = [dataclasses.replace(r, id=f"{d}-{n}") for n, r in enumerate(readings)]
    res = client.ingest(readings)
    assert (res.stored, res.duplicates) == (len(readings), 0) and res.last_revision > 0

    current = client.get([f"{d}/{k}" for k in "bifs"])
    got = {r.tag.rsplit("/", 1)[1]: r for r in current}
    assert type(got["b"].value) is bool and got["b"].value is True
    assert got["i"].value is None and got["i"].quality == bc.Quality(bc.QualityLevel.BAD, "comm_failure")
    assert type(got["f"].value) is float and got["f"].value == 5.0
    assert got["s"].value == "hello" and got["s"].ts == t0 and got["s"].ts.tzinfo is not None
    assert all(r.revision > 0 and r.server_ts is not None for r in current)

    hist = client.history(f"{d}/f", t0 + timedelta(seconds=1), t0 + timedelta(seconds=4))
    assert [r.value for r in hist] == [2.0, 3.0, 4.0]
    assert [r.ts for r in hist] == [t0 + timedelta(seconds=s) for s in (1, 2, 3)]
    assert [r.value for r in client.history(f"{d}/f", limit=2)] == [1.0, 2.0]

    q = client.query(f"SELECT ts, value FROM readings WHERE tag = '{d}/f' ORDER BY ts DESC LIMIT 2")
    assert [c.name for c in q.columns] == ["ts", "value"]
    assert q.rows == [(t0 + timedelta(seconds=4), 5.0), (t0 + timedelta(seconds=3), 4.0)]
    agg = client.query(f"SELECT count(*), max(value) FROM readings WHERE tag = '{d}/f'").rows
    assert agg == [(5, 5.0)] and type(agg[0][0]) is int

    # Same ids again: acknowledged, not stored twice.
    again = client.ingest(readings)
    assert (again.stored, again.duplicates) == (0, len(readings))


def test_a_refused_call_carries_code_and_message(client: bc.Client) -> None:
    with pytest.raises(bc.InvalidArgument) as e:
        client.query("SELECT nme FROM tags")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "nme" in e.value.message and str(e.value).startswith("InvalidArgument: ")
    with pytest.raises(bc.BifrostError) as e2:
        client.ingest([bc.Reading("no/such/tag", datetime.now(timezone.utc), 1.0)])
    assert e2.value.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION)
    assert "no/such/tag" in e2.value.message


def test_leader_found_from_a_follower_and_past_a_dead_node(cluster: Cluster) -> None:
    leader_id = cluster.wait_leader()
    follower = next(i for i in (1, 2, 3) if i != leader_id)
    with bc.Client([cluster.grpc[follower]]) as c:
        c.put_device(device(uniq("via-follower")))
        assert c.leader == f"http://{cluster.grpc[leader_id]}"
        assert len(c.endpoints) == 2  # the leader was learnt from the follower
    dead = f"127.0.0.1:{free_port()}"
    with bc.Client([dead, *cluster.endpoints], timeout=2, deadline=20) as c:
        started = time.monotonic()
        c.put_device(device(uniq("past-dead")))
        assert c.leader == f"http://{cluster.grpc[leader_id]}"
        assert time.monotonic() - started < 5


def test_gives_up_at_the_deadline_naming_the_last_node() -> None:
    dead = f"127.0.0.1:{free_port()}"
    with bc.Client([dead], timeout=0.5, deadline=1.0) as c:
        with pytest.raises(bc.Unavailable) as e:
            c.list_devices()
    assert e.value.gave_up and e.value.attempts > 1 and e.value.endpoint == f"http://{dead}"
    assert "gave up after" in str(e.value)


def test_write_to_a_simulated_device_reads_back(client: bc.Client, sim: tuple[object, str]) -> None:
    _, addr = sim
    d = uniq("sim")
    dev = device(d, endpoint=addr)
    dev.enabled, dev.poll_interval_ms = True, 200
    doc = bc.ConfigDocument([dev], [
        bc.Tag(name=f"{d}/setpoint", device=d, address="hr:5", data_type="u16", writable=True),
        bc.Tag(name=f"{d}/counter", device=d, address="hr:0", data_type="u32"),
    ])
    client.import_config(doc)
    end = time.monotonic() + 30
    while time.monotonic() < end and d not in [a.device for a in client.status().assignments]:
        time.sleep(0.2)  # until a node polls the device
    result = client.write(f"{d}/setpoint", 1234)
    assert result.ok, result
    assert result.read_back == 1234 and result.node in (1, 2, 3)
    for _ in range(50):  # the next polls see the value
        cur = client.get(f"{d}/setpoint")
        if cur and cur[0].value == 1234:
            break
        time.sleep(0.2)
    assert cur and cur[0].value == 1234
    with pytest.raises(bc.BifrostError) as e:
        client.write(f"{d}/counter", 1)
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION and "writable" in e.value.message
    with pytest.raises(bc.BifrostError) as e2:
        client.write(f"{d}/setpoint", "not a number")
    assert e2.value.code == grpc.StatusCode.INVALID_ARGUMENT
