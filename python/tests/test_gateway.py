"""The reference gateway (examples/python-gateway) as a plant runs it: a subprocess polling
`bifrost sim --devices 2` into SQLite, serving readings over HTTP, writing to the device,
and handing every stored batch to a hook."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from _cluster import start_gateway, start_sim

HOOK = '''
import json, sqlite3

def make(out, db):
    def hook(batch):
        con = sqlite3.connect(db)
        stored = all(con.execute("SELECT 1 FROM readings WHERE id = ?", (r.id,)).fetchone() for r in batch)
        con.close()
        with open(out, "a") as f:
            f.write(json.dumps({"n": len(batch), "stored": stored, "tags": sorted({r.tag for r in batch})}) + "\\n")
    return hook
'''


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, sqlite3.Error) as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})")


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sim, sim_addr = start_sim(tmp_path, devices=2)
    host, port = sim_addr.split(":")
    db = tmp_path / "gateway.db"
    (tmp_path / "testhook.py").write_text(HOOK)
    config = {
        "devices": [
            {"name": "press1", "protocol": "modbus-tcp", "host": host, "port": int(port), "unit": 1, "interval": 0.1},
            {"name": "press2", "protocol": "modbus-tcp", "host": host, "port": int(port), "unit": 2, "interval": 0.1},
        ],
        "tags": [
            {"name": "line1.press1.cycles", "device": "press1", "address": "40001", "type": "u32"},
            {"name": "line1.press1.temperature", "device": "press1", "address": "hr:2", "type": "f32"},
            {"name": "line1.press1.setpoint", "device": "press1", "address": "40006", "type": "u16",
             "writable": True, "scale": {"raw": [0, 10000], "eng": [0, 100]}, "units": "%"},
            {"name": "line1.press1.mode_bit3", "device": "press1", "address": "hr:6.3", "type": "bool",
             "writable": True},
            {"name": "line1.press1.run", "device": "press1", "address": "00001", "type": "bool", "writable": True},
            {"name": "line1.press2.cycles", "device": "press2", "address": "hr:0", "type": "u32"},
        ],
        "hooks": [{"use": "testhook:make", "with": {"out": str(tmp_path / "hook.jsonl"), "db": str(db)}}],
    }
    gw, url, db = start_gateway(tmp_path, config, [tmp_path])
    try:
        with httpx.Client(base_url=url, timeout=5) as api:
            yield {"api": api, "db": db, "gw": gw.popen, "proc": gw, "hook": tmp_path / "hook.jsonl",
                   "log": gw.log}
    finally:
        gw.kill()
        sim.kill()


def rows(db: Path, tag: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, tag, ts_us, value, quality, reason FROM readings WHERE tag = ? ORDER BY ts_us",
                           (tag,)).fetchall()
    finally:
        con.close()


def test_gateway_polls_stores_serves_and_writes(plant: dict[str, Any]) -> None:
    api, db = plant["api"], plant["db"]
    health = wait_for("both devices connected",
                      lambda: (h := api.get("/health").json())["status"] == "ok" and len(h["devices"]) == 2 and h)
    assert set(health["devices"]) == {"press1", "press2"}

    # The counters (holding 0-1, +1 per read request) in the store: one read a poll, so no gap.
    for tag in ("line1.press1.cycles", "line1.press2.cycles"):
        got = wait_for(f"10 readings of {tag}", lambda: len(r := rows(db, tag)) >= 10 and r)
        assert all(r[0] == f"gw:{tag}:{r[2]}" and r[4:] == ("good", "") for r in got)
        values = [r[3] for r in got]
        assert values == list(range(values[0], values[0] + len(values))), values
        assert values[0] == 1  # the first poll is the first read of the counter

    # HTTP: tags, current, history (from inclusive, to exclusive; microseconds or ISO 8601).
    tags = api.get("/tags").json()
    assert [t["name"] for t in tags][:2] == ["line1.press1.cycles", "line1.press1.temperature"]
    assert tags[2] == {"name": "line1.press1.setpoint", "device": "press1", "address": "40006", "type": "u16",
                       "units": "%", "description": "", "writable": True}
    cur = api.get("/tags/line1.press2.cycles/current").json()
    stored = {r[0]: r for r in rows(db, "line1.press2.cycles")}
    assert (cur["ts_us"], cur["value"], cur["quality"]) == stored[cur["id"]][2:5]
    hist = rows(db, "line1.press1.cycles")
    got = api.get("/tags/line1.press1.cycles/history", params={"from": hist[2][2], "to": hist[6][2]}).json()
    assert [(h["id"], h["value"]) for h in got] == [(r[0], r[3]) for r in hist[2:6]]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(hist[2][2] // 1_000_000)) + f".{hist[2][2] % 1_000_000:06d}Z"
    assert api.get("/tags/line1.press1.cycles/history", params={"from": iso, "limit": 2}).json() == got[:2]
    assert isinstance(api.get("/tags/line1.press1.temperature/current").json()["value"], float)
    assert api.get("/tags/nope/current").status_code == 404

    # Writes go to the device and read back (scaled, a coil, a bit of a register).
    t0 = time.time_ns() // 1000
    w = api.post("/tags/line1.press1.setpoint/write", json={"value": 42.5}).json()
    assert (w["written"], w["read_back"], w["reading"]["quality"]) == (42.5, 42.5, "good")
    assert api.post("/tags/line1.press1.run/write", json={"value": True}).json()["read_back"] is True
    assert api.post("/tags/line1.press1.mode_bit3/write", json={"value": True}).json()["read_back"] is True
    for tag, value in (("line1.press1.setpoint", 42.5), ("line1.press1.run", True), ("line1.press1.mode_bit3", True)):
        wait_for(f"{tag} polled as {value}",
                 lambda: (c := api.get(f"/tags/{tag}/current").json())["ts_us"] > t0 and c["value"] == value)
    r = api.post("/tags/line1.press1.cycles/write", json={"value": 1})
    assert r.status_code == 403
    r = api.post("/tags/line1.press1.setpoint/write", json={"value": 1000})  # raw 100000 > u16
    assert r.status_code == 400 and "does not fit" in r.json()["detail"]

    # Every batch went to the hook after it was stored.
    batches = [json.loads(line) for line in plant["hook"].read_text().splitlines()]
    assert len(batches) >= 20 and all(b["stored"] for b in batches)
    assert {"n": 5, "stored": True, "tags": ["line1.press1.cycles", "line1.press1.mode_bit3", "line1.press1.run",
                                              "line1.press1.setpoint", "line1.press1.temperature"]} in batches
    assert {"n": 1, "stored": True, "tags": ["line1.press1.setpoint"]} in batches  # the write's read-back

    # SIGTERM stops it cleanly: polling stops, the store is closed (its WAL checkpointed and
    # removed), then uvicorn re-raises the signal.
    plant["gw"].send_signal(signal.SIGTERM)
    try:
        code = plant["gw"].wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the gateway did not stop on SIGTERM:\n{plant['log'].read_text()}") from None
    assert code in (0, -signal.SIGTERM), plant["log"].read_text()
    assert not db.with_name("gateway.db-wal").exists(), plant["log"].read_text()


def test_polling_stops_and_resumes_per_device_and_stays_stopped_across_a_restart(plant: dict[str, Any]) -> None:
    api, db = plant["api"], plant["db"]
    wait_for("both devices connected", lambda: api.get("/health").json()["status"] == "ok")
    r = api.post("/polling", json={"enabled": False, "devices": ["press1"]})
    assert r.status_code == 200 and r.json() == {"polling": {"press1": False, "press2": True}}
    time.sleep(0.5)  # a poll under way when it stopped is still stored
    before = {t: len(rows(db, t)) for t in ("line1.press1.cycles", "line1.press2.cycles")}
    time.sleep(1.0)
    after = {t: len(rows(db, t)) for t in before}
    assert after["line1.press1.cycles"] == before["line1.press1.cycles"], (before, after)
    assert after["line1.press2.cycles"] >= before["line1.press2.cycles"] + 5, (before, after)
    health = api.get("/health").json()
    assert health["status"] == "ok" and health["devices"]["press1"]["polling"] is False  # stopped is not degraded
    bad = api.post("/polling", json={"enabled": False, "devices": ["press9"]})
    assert bad.status_code == 404 and "press9" in bad.json()["detail"]

    # A restarted gateway keeps it stopped (a cutover must not be undone by a reboot).
    proc = plant["proc"]
    proc.kill(signal.SIGTERM)
    proc.start()
    wait_for("the restarted gateway", lambda: api.get("/health").json()["devices"]["press2"]["polls"] > 3)
    assert api.get("/health").json()["devices"]["press1"]["polling"] is False
    assert len(rows(db, "line1.press1.cycles")) == after["line1.press1.cycles"]

    # Resumed: the counter goes on where the device has it (nobody else read it meanwhile).
    assert api.post("/polling", json={"enabled": True}).json()["polling"] == {"press1": True, "press2": True}
    got = wait_for("press1 polled again", lambda: len(r := rows(db, "line1.press1.cycles")) > after[
        "line1.press1.cycles"] + 3 and r)
    values = [r[3] for r in got]
    assert values == list(range(1, len(values) + 1)), values
