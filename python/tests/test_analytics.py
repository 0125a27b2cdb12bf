"""``examples/analytics.py`` run as a user runs it, against a real cluster:
a day of readings in, per-shift statistics out, checked against numbers
computed here by hand."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bifrost_client as bc

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "analytics.py"
DAY = datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_a_day_of_readings_gives_per_shift_statistics(client: bc.Client, cluster, tmp_path: Path) -> None:
    client.put_device(bc.Device(name="shifts", protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                                poll_interval_ms=1000, timeout_ms=1000, retries=1, enabled=False))
    client.put_tag(bc.Tag(name="shifts/flow", device="shifts", address="hr:1", data_type="f64"))
    # One reading every 10 minutes from 06:00 to 06:00 the next day: the
    # value is the hour of the day, one reading of the late shift is Bad,
    # and one reading before 06:00 must not count.
    start = DAY + timedelta(hours=6)
    readings = [bc.Reading("shifts/flow", start + timedelta(minutes=10 * i), float((6 + i // 6) % 24), id=f"s{i}")
                for i in range(144)]
    readings[60] = bc.Reading("shifts/flow", readings[60].ts, None, bc.Quality(bc.QualityLevel.BAD, "timeout"), id="s60")
    readings.append(bc.Reading("shifts/flow", DAY + timedelta(hours=5), 99.0, id="before"))
    client.ingest(readings)

    out_csv = tmp_path / "shifts.csv"
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--endpoints", ",".join(cluster.endpoints), "--day", "2026-12-01",
         "--csv", str(out_csv), "shifts/flow"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "144 readings of 1 tag(s) on 2026-12-01" in run.stdout, run.stdout
    rows = {r["shift"]: r for r in csv.DictReader(out_csv.open())}
    assert list(rows) == ["early", "late", "night"]
    # early 06-14: hours 6..13, 48 readings, mean 9.5; late 14-22: 48 readings,
    # one Bad (reading 60 = 16:00, value missing); night 22-06: hours 22, 23, 0..5.
    assert (rows["early"]["readings"], rows["early"]["not_good"]) == ("48", "0")
    assert (float(rows["early"]["min"]), float(rows["early"]["mean"]), float(rows["early"]["max"])) == (6.0, 9.5, 13.0)
    assert (rows["late"]["readings"], rows["late"]["not_good"]) == ("48", "1")
    late_values = [float(14 + i // 6) for i in range(48) if i != 12]
    assert abs(float(rows["late"]["mean"]) - sum(late_values) / len(late_values)) < 1e-9
    night = [22.0] * 6 + [23.0] * 6 + [float(h) for h in range(6) for _ in range(6)]
    assert (rows["night"]["readings"], float(rows["night"]["max"])) == ("48", 23.0)
    assert abs(float(rows["night"]["mean"]) - sum(night) / len(night)) < 1e-9
