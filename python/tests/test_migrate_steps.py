"""bifrost-migrate's live steps in parts: the comparisons of verify, shadow, cutover and rollback
on made-up readings, the time syntax, and the store tailer of dual-write against the cluster."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bifrost_client as bc
from bifrost_client import types as t
from bifrost_client.migrate import verify as v
from bifrost_client.migrate.sides import HOUR_US, GatewayStore, Row, parse_time, reading_id
from _cluster import Cluster

H0 = 1_714_561_200_000_000  # 2024-05-01T11:00:00Z, an hour's start


def test_times_absolute_relative_and_wrong() -> None:
    now = H0 + 123
    assert parse_time("2024-05-01T11:00:00Z") == H0
    assert parse_time("2024-05-01T11:00:00") == H0  # naive is UTC
    assert parse_time("2024-05-01T13:00:00+02:00") == H0
    assert parse_time(str(H0)) == H0
    assert parse_time("now", now) == now
    assert parse_time("now-10m", now) == now - 600_000_000 and parse_time("-1h", now) == now - HOUR_US
    assert parse_time("now+1.5s", now) == now + 1_500_000
    with pytest.raises(ValueError, match="--from 'yesterday'.*ISO 8601"):
        parse_time("yesterday", option="--from")
    with pytest.raises(ValueError, match="before 1973.*now-10s"):
        parse_time("-10")
    assert parse_time("2024-05-01t11:00:00z") == H0


def rows(tag: str, values: list[object], start: int = H0, step: int = 1_000_000, q: str = "good") -> list[Row]:
    return [Row(tag, start + i * step, None if x is None else (x if isinstance(x, str) else float(x)), q)
            for i, x in enumerate(values)]


def test_verify_finds_a_missing_a_changed_and_a_moved_reading_per_tag_hour() -> None:
    gw = rows("a", [1, 2, 3]) + rows("a", [7], start=H0 + HOUR_US) + rows("b", ["x", "y"]) + rows("c", [1, 2])
    same = v.compare(v.summarize(gw), v.summarize(list(reversed(gw))))
    assert same == []
    bf = rows("a", [1, 2]) + rows("a", [7], start=H0 + HOUR_US) + rows("b", ["x", "z"]) \
        + rows("c", [1, 2], start=H0 + 5)
    found = {(m.tag, m.hour_us): m for m in v.compare(v.summarize(gw), v.summarize(bf))}
    assert set(found) == {("a", H0), ("b", H0), ("c", H0)}  # a's second hour agrees
    assert found[("a", H0)].what() == "count 3 vs 2"
    assert found[("b", H0)].what().startswith("same numbers")  # text: no numbers to differ
    assert found[("c", H0)].what().startswith("same numbers")  # same values, other times
    cells = found[("a", H0)].gateway.cells()
    assert cells[:4] == ["3", "1", "3", "2"] and len(cells[4]) == 16
    table = v.mismatch_table(list(found.values()))
    assert "2024-05-01T11:00Z" in table and "count 3 vs 2" in table and "bifrost" in table


def test_gaps_and_counter_gaps() -> None:
    rs = rows("a", [1, 2, 3], step=1_000_000) + rows("a", [5, 6], start=H0 + 10_000_000) + rows("b", [])
    found = v.gaps(rs, ["a", "b"], H0, H0 + 12_000_000, max_gap_us=2_000_000)
    assert [(g.tag, g.after_us - H0, g.before_us - H0) for g in found] == [
        ("a", 2_000_000, 10_000_000), ("b", 0, 12_000_000)]
    # Bad readings do not fill a silence: the device was not reached.
    bad = rows("a", [1]) + rows("a", [None, None, None], start=H0 + 1_000_000, q="bad")
    assert [g.tag for g in v.gaps(bad, ["a"], H0, H0 + 4_000_000, 2_000_000)] == ["a"]
    # Two pollers: in time order the values interleave; in value order 4 is missing.
    two = rows("a", [1, 3, 2, 5, 6]) + rows("a", [None], q="bad")
    assert [(g.after, g.next) for g in v.counter_gaps(two, {"a": 1})] == [(3.0, 5.0)]
    assert v.counter_gaps(two, {"a": 2}) == []
    none = v.counter_gaps(two, {"c": 1})  # a counter without values proves nothing: a gap
    assert len(none) == 1 and none[0].tag == "c" and none[0].after != none[0].after
    assert v.parse_counter("line1.c") == ("line1.c", 1.0) and v.parse_counter("x:y:10") == ("x:y", 10.0)


def test_shadow_drift_rules() -> None:
    d = v.Drift()
    g, b = Row("a", H0, 5.0, "good"), Row("a", H0, 5.0, "good")
    v.sample(d, g, b, None, 1_000_000)  # the same reading on both sides
    v.sample(d, Row("a", H0 + 500_000, 6.0, "good"), b, None, 1_000_000)  # Bifrost a little behind: fine
    assert not d.failed() and (d.same_time, d.max_diff, d.max_lag_us) == (1, 1.0, 500_000)
    v.sample(d, Row("a", H0, 5.5, "good"), b, None, 1_000_000)  # same time, other value: copied wrong
    assert d.failed() and d.mismatched == 1
    lagging = v.Drift()
    v.sample(lagging, Row("a", H0 + 3_000_000, 5.0, "good"), b, 10.0, 1_000_000)
    assert lagging.failed() and lagging.stale == 1
    missing = v.Drift()
    v.sample(missing, g, None, None, 1_000_000)
    assert missing.failed()


def make_store(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE readings (id TEXT PRIMARY KEY, tag TEXT NOT NULL, ts_us INTEGER NOT NULL, value, "
                "quality TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '')")
    return con


def test_gateway_store_checks_its_file_and_copies_each_reading_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        GatewayStore(tmp_path / "nope.db")
    (tmp_path / "other.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ValueError, match="other.db"):
        GatewayStore(tmp_path / "other.db")
    con = make_store(tmp_path / "gw.db")
    con.execute("INSERT INTO readings VALUES (?, 'sw', ?, 1, 'good', '')", (reading_id("sw", H0), H0))
    con.commit()
    with GatewayStore(tmp_path / "gw.db", writable=True) as store:
        new = [Row("sw", H0, 1.0, "good", id=reading_id("sw", H0)),  # the gateway's own, already there
               Row("sw", H0 + 1, 0.0, "good", id="node2:77"), Row("t", H0, 2.5, "bad", "timeout"),
               Row("n", H0, 7.0, "good"), Row("n", H0 + 1, 2.0**53 + 2, "good")]
        assert store.add(new, bool_tags=["sw"], int_tags=["n"], batch=2) == 4
        assert store.add(new, bool_tags=["sw"], int_tags=["n"]) == 0
        assert [r.value for r in store.rows(["sw"], H0, H0 + 2)] == [1.0, 0.0]
        assert store.latest(["t", "u"]) == {"t": Row("t", H0, 2.5, "bad", "timeout", "bf:t:" + str(H0))}
    got = con.execute("SELECT id, typeof(value), value FROM readings WHERE tag IN ('sw', 'n') ORDER BY id").fetchall()
    assert got == [(f"bf:n:{H0}", "integer", 7), (f"bf:n:{H0 + 1}", "integer", 2**53 + 2),
                   (f"bf:sw:{H0 + 1}", "integer", 0), (f"gw:sw:{H0}", "integer", 1)]


def migrate(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bifrost_client.migrate.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_dual_write_tails_a_store_and_keeps_its_place(cluster: Cluster, client: bc.Client, tmp_path: Path) -> None:
    dev, tag, switch = "tailer-dev", "tailer/level", "tailer/run"
    client.put_device(bc.Device(name=dev, protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                                poll_interval_ms=1000, timeout_ms=500, enabled=False))
    client.put_tag(bc.Tag(name=tag, device=dev, address="hr:0", data_type="f64"))
    client.put_tag(bc.Tag(name=switch, device=dev, address="coil:0", data_type="bool"))
    con = make_store(tmp_path / "gw.db")
    base = time.time_ns() // 1000 - 60_000_000

    def add(first: int, n: int) -> None:
        """n readings of the level, then one of the switch (0 or 1, as SQLite keeps a bool), one of
        a tag Bifrost lacks, and one rollback copied from Bifrost (not to be sent back)."""
        con.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, 'good', '')",
                        [(reading_id(tag, base + i), tag, base + i, i * 0.5) for i in range(first, first + n)])
        ts = base + first
        con.execute("INSERT INTO readings VALUES (?, ?, ?, ?, 'good', '')",
                    (reading_id(switch, ts), switch, ts, (first // 100) % 2))
        con.execute("INSERT INTO readings VALUES (?, 'no/such/tag', ?, 1, 'good', '')", (f"gw:x:{ts}", ts))
        con.execute("INSERT INTO readings VALUES (?, ?, ?, 99, 'good', '')", (f"bf:{tag}:{ts + 1}", tag, ts + 1))
        con.commit()

    def count(name: str = tag) -> int:
        return len(client.history(name, t.us_to_ts(base), None))

    def wait(n: int) -> None:
        end = time.monotonic() + 30
        while count() < n and time.monotonic() < end:
            time.sleep(0.2)

    ctl = ["--endpoints", ",".join(cluster.endpoints), "--spool", str(tmp_path / "spool")]
    try:
        add(0, 500)
        p = migrate("dual-write", *ctl, "--store", str(tmp_path / "gw.db"))
        wait(500)
        add(500, 300)
        wait(800)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert count() == 800 and "804 submitted" in err and "2 rejected" in err, err
        assert [r.value for r in client.history(switch, t.us_to_ts(base), None)] == [False, True]
        assert (tmp_path / "spool" / "tail.checkpoint").read_text().strip() == "806"
        dead = (tmp_path / "spool" / "dead-letter.jsonl").read_text()
        assert dead.count("unknown_tag") == 2 and "no/such/tag" in dead

        # Started again it goes on from its place: nothing is sent twice.
        add(800, 10)
        p = migrate("dual-write", *ctl, "--store", str(tmp_path / "gw.db"))
        wait(810)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "from row 806" in err and "12 submitted" in err, err
        assert count() == 810 and count(switch) == 3

        # A new spool (no checkpoint) with --start end sends only what comes after.
        p = migrate("dual-write", *ctl[:-1], str(tmp_path / "spool2"), "--store", str(tmp_path / "gw.db"),
                    "--start", "end")
        time.sleep(1)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "from row 819" in err and "0 submitted" in err, err

        # Without --store it prints the gateway plug-in's config.
        p = migrate("dual-write", *ctl)
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "use: bifrost_client.migrate.feed:dual_write" in out, out + err
        assert f'endpoints: "{",".join(cluster.endpoints)}"' in out
    finally:
        for name in (tag, switch):
            client.delete_tag(name, purge=True)
        client.delete_device(dev)
