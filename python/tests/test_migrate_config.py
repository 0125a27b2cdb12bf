"""bifrost-migrate config: the reference gateway's YAML, a Kepware CSV and an Ignition JSON
export (hand-made samples in tests/data, see its README) to Bifrost import documents, checked
field by field with the report, then imported into a real cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bifrost_client as bc
from _cluster import Cluster, bifrostctl_bin
from bifrost_client.migrate import Conversion, gateway, ignition, kepware
from bifrost_client.migrate.cli import main

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parents[2] / "examples" / "python-gateway" / "gateway.yaml"


def dev(name: str, endpoint: str, **kw: Any) -> dict[str, Any]:
    d = {"name": name, "protocol": "modbus-tcp", "endpoint": endpoint, "unit_id": 1, "poll_interval_ms": 1000,
         "timeout_ms": 1000, "retries": 3, "enabled": True, "labels": {}}
    return {**d, **kw}


def tag(name: str, device: str, address: str, data_type: str, **kw: Any) -> dict[str, Any]:
    t = {"name": name, "device": device, "address": address, "data_type": data_type, "byte_order": "",
         "word_order": "", "scale": None, "deadband": None, "scan_rate_ms": 0, "units": "", "description": "",
         "writable": False, "length": 0}
    assert set(kw) <= set(t), kw
    return {**t, **kw}


def sc(raw_lo: float, raw_hi: float, eng_lo: float, eng_hi: float) -> dict[str, float]:
    return {"raw_lo": raw_lo, "raw_hi": raw_hi, "eng_lo": eng_lo, "eng_hi": eng_hi}


def check(conv: Conversion, devices: list[dict[str, Any]], tags: list[dict[str, Any]],
          skipped: dict[str, str], warnings: dict[str, str]) -> None:
    assert conv.devices == devices
    by_name = {t["name"]: t for t in conv.tags}
    for want in tags:
        assert by_name.get(want["name"]) == want, want["name"]
    assert [t["name"] for t in conv.tags] == [t["name"] for t in tags]
    # Reasons are checked by a telling fragment; items exactly.
    assert {i.item for i in conv.skipped} == set(skipped)
    for i in conv.skipped:
        assert skipped[i.item] in i.reason, (i.item, i.reason)
    assert {i.item for i in conv.warnings} == set(warnings)
    for i in conv.warnings:
        assert warnings[i.item] in i.reason, (i.item, i.reason)
    # The Python client reads the document (every field present, no unknown field).
    doc = bc.ConfigDocument.from_json(conv.to_json())
    assert len(doc.devices) == len(devices) and len(doc.tags) == len(tags)


def test_gateway_config() -> None:
    conv = gateway.convert(DATA / "gateway.yaml")
    check(conv, [
        dev("press1", "127.0.0.1:15020", poll_interval_ms=500, timeout_ms=2000, retries=2),
        dev("press2", "127.0.0.1:15020", unit_id=2, retries=1),
        dev("oven1", "opc.tcp://127.0.0.1:4840", protocol="opcua", unit_id=0, poll_interval_ms=5000, retries=3),
    ], [
        tag("line1.press1.cycles", "press1", "hr:0", "u32", units="count", description="Cycle counter"),
        tag("line1.press1.temperature", "press1", "hr:2", "f32", word_order="little", units="degC"),
        # raw * 0.1 - 5 over the whole i16 range: nothing reads as out of range.
        tag("line1.press1.speed", "press1", "hr:4", "i16", units="rpm",
            scale=sc(-32768, 32767, -32768 * 0.1 - 5, 32767 * 0.1 - 5)),
        tag("line1.press1.setpoint", "press1", "hr:5", "u16", writable=True, units="%", scale=sc(0, 10000, 0, 100)),
        tag("line1.press1.alarm", "press1", "hr:6.3", "bool"),
        tag("line1.press1.run", "press1", "coil:0", "bool", writable=True),
        tag("line1.press1.door", "press1", "di:0", "bool"),
        # The gateway's hr:N is always an offset; Bifrost would read hr:40001 as the reference 40001.
        tag("line1.press1.far", "press1", "hr:040001", "u16"),
        tag("line1.press1.recipe", "press1", "hr:20", "string", length=8, byte_order="little"),
        tag("line1.press1.energy", "press1", "ir:10", "f64"),
        tag("line1.press2.cycles", "press2", "hr:0", "u32"),
        tag("oven1.zone1", "oven1", "ns=2;s=Zone1.Temperature", "f64", units="degC"),
    ], {
        "device hvac": "unknown driver 'bacnet'",
        "line1.press1.serial": "data type 'u64' has no Bifrost equivalent",
        "line1.press1.flow": "gain/offset scale on a f32 tag",
        "line1.press1.past": "outside the Modbus table",
        "hvac.supply_temp": "device 'hvac' was not mapped",
        "line1.press2.oil temp": "rename the tag in the gateway first",
    }, {"hook plant_hooks:historian": "not migrated"})


def test_kepware_csv() -> None:
    conv = kepware.convert(DATA / "press3.csv", endpoint="127.0.0.1:1502", unit=3, interval_ms=500)
    p = "press3/"
    check(conv, [dev("press3", "127.0.0.1:1502", unit_id=3, poll_interval_ms=500)], [
        tag(p + "Cycles", "press3", "hr:0", "u32", word_order="little", scan_rate_ms=100, units="count",
            description="Cycle counter"),
        tag(p + "Temperature", "press3", "hr:2", "f32", word_order="little", scan_rate_ms=500, units="degC",
            description="Platen temperature"),
        tag(p + "Pressure", "press3", "ir:0", "u16", scale=sc(0, 4095, 0, 250), scan_rate_ms=100, units="bar",
            description="Hydraulic pressure, 4-20 mA input"),
        tag(p + "Setpoint", "press3", "hr:9", "i16", writable=True, scan_rate_ms=100, description="Pressure setpoint"),
        tag(p + "Running", "press3", "coil:0", "bool", writable=True, scan_rate_ms=100, description="Motor running"),
        tag(p + "DoorOpen", "press3", "di:0", "bool", scan_rate_ms=100, description="Guard door switch"),
        tag(p + "Status/Alarm", "press3", "hr:10.3", "bool", scan_rate_ms=100,
            description="Alarm bit of the status word"),
        tag(p + "Status/Word", "press3", "hr:10", "u16", scan_rate_ms=100,
            description="Status word (5-digit reference)"),
        # 16 characters, high byte first: 8 registers, big byte order.
        tag(p + "Recipe", "press3", "hr:19", "string", length=8, writable=True, scan_rate_ms=1000,
            description="Recipe name, 16 characters"),
        tag(p + "Energy", "press3", "hr:29", "f64", word_order="little", scan_rate_ms=1000, units="kWh"),
        # Negate Value folds into the scale.
        tag(p + "Offset", "press3", "hr:39", "i32", word_order="little", scale=sc(-1000, 1000, 10, -10),
            writable=True, scan_rate_ms=100, units="mm", description="Clamped"),
        tag(p + "Speed_Ref", "press3", "hr:79", "u16", writable=True, scan_rate_ms=250, units="rpm",
            description="Name with a space"),
    ], {
        "line 13 SerialNo": "QWord (unsigned 64-bit) has no Bifrost equivalent",
        "line 14 Flow": "BCD",
        "line 15 Profile": "array tag",
        "line 16 Level": "scaling 'Square Root'",
        "line 17 Spare": "outside the Modbus table",
    }, {
        "line 12 Offset": "clamping dropped",
        "line 18 Speed Ref": "renamed to 'press3/Speed_Ref'",
    })
    # Big word order ("First word low" off) and another name and prefix.
    conv = kepware.convert(DATA / "press3.csv", endpoint="h:502", device_name="p3", word_order="big", prefix="")
    assert conv.devices[0]["name"] == "p3"
    assert {t["name"]: t["word_order"] for t in conv.tags}["Cycles"] == ""


def test_ignition_json() -> None:
    conv = ignition.convert(DATA / "plant-tags.json",
                            devices=[ignition.ModbusConnection.parse("Press3=127.0.0.1:1502")],
                            opc_servers={"Kepware": "opc.tcp://127.0.0.1:49320"}, tag_groups={"Fast": 250})
    p = "Line1/Press3/"
    check(conv, [
        dev("Press3", "127.0.0.1:1502"),
        dev("Press3-unit2", "127.0.0.1:1502", unit_id=2),
        dev("Kepware", "opc.tcp://127.0.0.1:49320", protocol="opcua", unit_id=0),
    ], [
        # HRUI1: one-based UInt32 at holding register 1, i.e. offset 0.
        tag(p + "Cycles", "Press3", "hr:0", "u32", units="count", description="Cycle counter"),
        tag(p + "Temperature", "Press3", "hr:2", "f32", units="°C", description="Platen temperature",
            deadband={"value": 0.5, "percent": False}, scan_rate_ms=250),
        tag(p + "Pressure", "Press3", "ir:0", "u16", scale=sc(0, 4095, 0, 250), units="bar", writable=False,
            deadband={"value": 1.0, "percent": True}),
        tag(p + "Setpoint", "Press3", "hr:9", "i16", writable=True),
        tag(p + "Running", "Press3", "coil:0", "bool", writable=True),
        tag(p + "Alarm", "Press3", "hr:10.3", "bool"),
        tag(p + "Recipe", "Press3", "hr:19", "string", length=8, writable=True),
        # Ignition's HR40001 is holding register 40001 (one-based), not a classic reference.
        tag(p + "Far_Register", "Press3", "hr:040000", "i16"),
        tag(p + "Aux_Temp", "Press3-unit2", "hr:0", "f32"),
        tag("Line1/Oven/Zone1", "Kepware", "ns=2;s=Oven.PLC.Zone1", "f64", units="degC"),
    ], {
        p + "Flow": "designator HRBCD",
        p + "TempF": "expression tag (derived: {[.]Temperature} * 1.8 + 32)",
        p + "Target": "memory tag",
        p + "Motor1": "UDT instance of 'Motor'",
        "Line1/Oven/Stack": "[OvenPLC] is not given with --device",
        "Line1/Oven/Log": "'DataSet' has no Bifrost equivalent",
    }, {
        p + "Alarm": "alarms are not migrated",
        p + "Far Register": "renamed",
        p + "Aux Temp": "renamed",
    })
    # Zero-based connection, little word order; without --opc-server the Kepware tags are skipped.
    conv = ignition.convert(DATA / "plant-tags.json",
                            devices=[ignition.ModbusConnection.parse("Press3=h:502,zero-based,word-order=little")])
    tags = {t["name"]: t for t in conv.tags}
    assert (tags[p + "Cycles"]["address"], tags[p + "Cycles"]["word_order"]) == ("hr:1", "little")
    assert tags[p + "Far_Register"]["address"] == "hr:040001"
    assert "Line1/Oven/Zone1" not in tags
    assert any(i.item == "Line1/Oven/Zone1" and "--opc-server" in i.reason for i in conv.skipped)
    assert any(i.item == p + "Temperature" and "tag group 'Fast'" in i.reason for i in conv.warnings)


def test_cli_exit_codes_and_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, rep = tmp_path / "doc.json", tmp_path / "report.json"
    assert main(["config", "gateway", str(EXAMPLE), "-o", str(out)]) == 0
    assert "skipped 0 item(s)" in capsys.readouterr().err
    assert len(json.loads(out.read_text())["tags"]) == 8

    argv = ["config", "kepware", str(DATA / "press3.csv"), "--endpoint", "h:502", "--interval", "250ms",
            "--report", str(rep), "--report-format", "json"]
    assert main(argv) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["devices"][0]["poll_interval_ms"] == 250
    report = json.loads(rep.read_text())
    assert (report["tags"], len(report["skipped"]), len(report["warnings"])) == (12, 5, 2)
    assert report["skipped"][0] == {"source": "kepware:press3.csv", "item": "line 13 SerialNo",
                                    "reason": "data type QWord (unsigned 64-bit) has no Bifrost equivalent",
                                    "skipped": True}

    # Errors exit 1 and write nothing: a missing option, a missing file, a bad --device.
    with pytest.raises(SystemExit) as e:
        main(["config", "kepware", str(DATA / "press3.csv")])
    assert e.value.code == 1
    assert main(["config", "gateway", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "x")]) == 1
    assert not (tmp_path / "x").exists()
    assert main(["config", "ignition", str(DATA / "plant-tags.json"), "--device", "Press3"]) == 1
    assert "expected NAME=HOST:PORT" in capsys.readouterr().err

    # The console script (pip install -e python) says what the exit codes mean.
    script = Path(sys.executable).with_name("bifrost-migrate")
    help_text = subprocess.run([str(script), "config", "--help"], capture_output=True, text=True, check=True).stdout
    assert "2 some items were skipped" in help_text


def test_documents_import_into_a_cluster(cluster: Cluster, client: bc.Client, tmp_path: Path) -> None:
    """What the server checks again (addresses, protocols, tag devices) accepts every document."""
    convs = {
        "gateway": gateway.convert(DATA / "gateway.yaml"),
        "kepware": kepware.convert(DATA / "press3.csv", endpoint="127.0.0.1:1502", unit=3),
        "ignition": ignition.convert(DATA / "plant-tags.json",
                                     devices=[ignition.ModbusConnection.parse("Press3=127.0.0.1:1503")],
                                     opc_servers={"Kepware": "opc.tcp://127.0.0.1:49320"}),
    }
    try:
        for kind in ("gateway", "kepware"):
            path = tmp_path / f"{kind}.json"
            path.write_text(convs[kind].to_json())
            r = subprocess.run([str(bifrostctl_bin()), "import", str(path), "--endpoints",
                                ",".join(cluster.endpoints)], capture_output=True, text=True, env=os.environ)
            assert r.returncode == 0, r.stderr
        conv = convs["ignition"]
        assert client.import_config(bc.ConfigDocument.from_json(conv.to_json())) == (3, 10)

        exported = json.loads(client.export().to_json())
        tags = {t["name"]: t for t in exported["tags"]}
        devices = {d["name"]: d for d in exported["devices"]}
        for c in convs.values():
            for d in c.devices:
                assert {k: v for k, v in devices[d["name"]].items() if k != "revision"} == d
            for t in c.tags:
                # The server stores an order not given ("") as big.
                want = {**t, **{k: t[k] or "big" for k in ("byte_order", "word_order")}}
                assert {k: v for k, v in tags[t["name"]].items() if k != "revision"} == want
    finally:
        for c in convs.values():
            for t in c.tags:
                client.delete_tag(t["name"], purge=True)
            for d in c.devices:
                client.delete_device(d["name"])
