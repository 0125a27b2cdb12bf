"""The migration rehearsal, with `bifrost-migrate` run as a plant would: the reference gateway
polls `bifrost sim` (the example config), dual-writes into a real three-node cluster through the
plug-in while a node is killed, then verify, shadow, cutover, rollback and verify again. The
simulator's counters (+1 per read) show whether any poll of either side was lost on the way."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import yaml

import bifrost_client as bc
from bifrost_client import types as t
from _cluster import GATEWAY_DIR, Cluster, free_port, start_gateway, start_sim

COUNTERS = ("line1.press1.cycles", "line1.press2.cycles")


def migrate(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bifrost_client.migrate.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} within {timeout}s (last: {last!r})")


def store_values(db: Path, tag: str) -> list[tuple[int, Any]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT ts_us, value FROM readings WHERE tag = ? AND quality = 'good' ORDER BY ts_us",
                           (tag,)).fetchall()
    finally:
        con.close()


def bifrost_readings(client: bc.Client, tag: str, since_us: int) -> list[t.Reading]:
    return client.history(tag, t.us_to_ts(since_us), None)


def assert_gap_free(values: list[Any], where: str) -> None:
    """Every count from 1 to the last, each once: no poll of either side lost or stored twice."""
    ints = sorted(int(v) for v in values)
    assert ints == list(range(1, len(ints) + 1)), f"{where}: counter values {ints[:5]}...{ints[-5:]} have gaps"


def test_gateway_to_bifrost_and_back(cluster: Cluster, client: bc.Client, tmp_path: Path) -> None:
    sim, sim_addr = start_sim(tmp_path, devices=2)
    host, port = sim_addr.split(":")
    # The example gateway's own config, pointed at this simulator, with the dual-write plug-in.
    config = yaml.safe_load((GATEWAY_DIR / "gateway.yaml").read_text())
    for d in config["devices"]:
        d.update(host=host, port=int(port))
    spool = tmp_path / "spool"
    config["hooks"] = [{"use": "bifrost_client.migrate.feed:dual_write",
                        "with": {"endpoints": ",".join(cluster.endpoints), "spool": str(spool),
                                 "flush_interval": 0.2, "timeout": 2.0}}]
    (tmp_path / "gateway.yaml").write_text(json.dumps(config))
    ctl = ["--endpoints", ",".join(cluster.endpoints)]
    state = str(tmp_path / "state.json")
    gw = None
    try:
        # 1. config: the gateway's devices and tags into Bifrost, devices not polled yet.
        doc = tmp_path / "doc.json"
        r = migrate("config", "gateway", str(tmp_path / "gateway.yaml"), "--disabled", "-o", str(doc))
        assert r.returncode == 0, r.stderr
        assert client.import_config(bc.ConfigDocument.from_json(doc.read_text())) == (2, 8)
        assert not any(d.enabled for d in client.list_devices() if d.name in ("press1", "press2"))

        # 2. dual-write: the gateway polls and its plug-in copies every reading into Bifrost.
        began = time.time_ns() // 1000
        gw, url, db = start_gateway(tmp_path, config)
        wait_for("dual-written readings in Bifrost",
                 lambda: len(bifrost_readings(client, COUNTERS[0], began)) >= 5)

        # ... while the leader dies and comes back.
        leader = cluster.wait_leader()
        cluster.kill(leader)
        time.sleep(4)
        cluster.restart(leader)
        cluster.wait_leader()
        wait_for("the gateway's newest counter in Bifrost", lambda: store_values(db, COUNTERS[0])[-1][0] in
                 {t.ts_to_us(x.ts) for x in bifrost_readings(client, COUNTERS[0], began)})
        time.sleep(2)

        # 3. verify: the same readings on both sides, hour by hour; shadow: no drift.
        r = migrate("verify", *ctl, "--store", str(db), "--from", str(began), "--to", "now-3s")
        assert r.returncode == 0 and ": 0 mismatches" in r.stdout, r.stdout + r.stderr
        assert "8 tags" in r.stdout, r.stdout
        r = migrate("shadow", *ctl, "--store", str(db), "--minutes", "0.05", "--every", "0.5")
        assert r.returncode == 0 and "0 drifted" in r.stdout, r.stdout + r.stderr

        # A reading Bifrost lacks is a mismatch that names its tag and hour (exit 1).
        con = sqlite3.connect(db)
        con.execute("INSERT INTO readings VALUES ('gw:extra', 'line1.press1.speed', ?, 1.5, 'good', '')",
                    (began + 1,))
        con.commit()
        con.close()
        r = migrate("verify", *ctl, "--store", str(db), "--from", str(began), "--to", "now-3s")
        assert r.returncode == 1 and "line1.press1.speed" in r.stdout and ": 1 mismatch" in r.stdout, r.stdout
        assert "count" in r.stdout
        con = sqlite3.connect(db)
        con.execute("DELETE FROM readings WHERE id = 'gw:extra'")
        con.commit()
        con.close()

        # A cutover Bifrost cannot poll for (here: press2 at a port nobody listens on) is
        # abandoned: Bifrost stops again, the gateway polls on, exit 1.
        counters = [a for c in COUNTERS for a in ("--counter", c)]
        press2 = next(d for d in client.list_devices() if d.name == "press2")
        endpoint, press2.endpoint = press2.endpoint, f"127.0.0.1:{free_port()}"
        press2 = client.put_device(press2)
        r = migrate("cutover", *ctl, "--gateway", url, "--store", str(db), "--overlap", "1", "--state", state,
                    "--ready-timeout", "5", *counters)
        assert r.returncode == 1 and "cutover abandoned" in r.stderr and "line1.press2" in r.stderr, r.stderr
        assert not any(d.enabled for d in client.list_devices() if d.name in ("press1", "press2"))
        assert json.loads(Path(state).read_text())["phase"] == "cutover abandoned"
        newest = store_values(db, COUNTERS[1])[-1][0]
        wait_for("the gateway polling on", lambda: store_values(db, COUNTERS[1])[-1][0] > newest)
        press2 = next(d for d in client.list_devices() if d.name == "press2")
        press2.endpoint = endpoint
        client.put_device(press2, expected_revision=press2.revision)
        r = migrate("cutover", *ctl, "--gateway", url, "--store", str(db), "--state", state, "--counter", "nope")
        assert r.returncode == 1 and "--counter nope: not a tag" in r.stderr, r.stderr

        # 4. cutover: Bifrost polls, the gateway stops, both overlapping; checked for gaps.
        r = migrate("cutover", *ctl, "--gateway", url, "--store", str(db), "--overlap", "3", "--state", state,
                    *counters)
        print(r.stdout)
        assert r.returncode == 0, r.stdout + r.stderr
        assert " 0 gaps over " in r.stdout and " 0 counter gaps" in r.stdout, r.stdout
        cut = json.loads(Path(state).read_text())
        stopped = cut["gateway_stopped_us"]
        assert all(d.enabled for d in client.list_devices() if d.name in ("press1", "press2"))
        time.sleep(3)  # Bifrost alone polls
        # No counter value lost or doubled across the switch: the gateway's (dual-written) and
        # Bifrost's own readings of each counter together count 1, 2, 3, ... in Bifrost.
        for tag in COUNTERS:
            readings = bifrost_readings(client, tag, began)
            good = [x.value for x in readings if x.quality.level == t.QualityLevel.GOOD]
            assert_gap_free(good, f"Bifrost's {tag} across the cutover")
            own = [x for x in readings if not x.id.startswith("gw:")]
            assert any(t.ts_to_us(x.ts) > stopped + 2_000_000 for x in own), "Bifrost polls after the cutover"
            late = [ts for ts, _ in store_values(db, tag) if ts > stopped + 1_500_000]
            assert not late, f"the gateway still polls {tag} after the cutover"

        # 5. rollback: the gateway polls again, Bifrost stops, its readings are copied back.
        r = migrate("rollback", *ctl, "--gateway", url, "--store", str(db), "--overlap", "2", "--state", state,
                    *counters)
        print(r.stdout)
        assert r.returncode == 0, r.stdout + r.stderr
        copied = int(r.stdout.split("copied ")[1].split()[0])
        assert copied > 0 and " 0 gaps over " in r.stdout and " 0 counter gaps" in r.stdout, r.stdout
        assert not any(d.enabled for d in client.list_devices() if d.name in ("press1", "press2"))
        for tag in COUNTERS:
            assert_gap_free([v for _, v in store_values(db, tag)], f"the gateway's {tag} after the rollback")
        # A cutover refuses to start over one not rolled back; this one was.
        assert json.loads(Path(state).read_text())["phase"] == "rolled back"
        time.sleep(3)

        # 6. verify again, the whole window: both hold every reading of either side.
        r = migrate("verify", *ctl, "--store", str(db), "--from", str(began), "--to", "now-3s")
        assert r.returncode == 0 and ": 0 mismatches" in r.stdout, r.stdout + r.stderr
        assert not (spool / "dead-letter.jsonl").read_text(), "no reading was refused"
    finally:
        if gw is not None:
            gw.kill(signal.SIGTERM)
        sim.kill()
        for d in ("press1", "press2"):
            for tag in client.list_tags(device=d):
                client.delete_tag(tag.name, purge=True)
            try:
                client.delete_device(d)
            except bc.NotFound:
                pass
