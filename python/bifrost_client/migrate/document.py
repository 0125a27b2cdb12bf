"""What every source converter produces: a Bifrost import document and a report.

The document is the ``bifrostctl export``/``import`` JSON (``client/src/document.rs``),
every field written out with ``device add``/``tag add``'s defaults, so it also
loads with :meth:`bifrost_client.ConfigDocument.from_json` (which fills in no
defaults) and imports unchanged with ``bifrostctl import`` or ``Client.import_config``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

DATA_TYPES = ("bool", "i16", "u16", "i32", "u32", "i64", "f32", "f64", "string")
# Registers a type spans in Modbus; strings span their `length`.
SPAN = {"bool": 1, "i16": 1, "u16": 1, "i32": 2, "u32": 2, "f32": 2, "i64": 4, "f64": 4}
INT_RANGE = {"i16": (-(2**15), 2**15 - 1), "u16": (0, 2**16 - 1), "i32": (-(2**31), 2**31 - 1),
             "u32": (0, 2**32 - 1)}
TABLE_DIGIT = {"coil": "0", "di": "1", "ir": "3", "hr": "4"}
DIGIT_TABLE = {v: k for k, v in TABLE_DIGIT.items()}


@dataclass
class Issue:
    """One item of the report: ``skipped`` items are not in the document; the others
    (warnings) are, changed as ``reason`` says."""

    source: str
    item: str
    reason: str
    skipped: bool = True

    def line(self) -> str:
        return f"{'skipped' if self.skipped else 'warning'}  {self.source}  {self.item}: {self.reason}"


@dataclass
class Conversion:
    """Devices and tags (document objects) and what could not be mapped."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)

    @property
    def skipped(self) -> list[Issue]:
        return [i for i in self.issues if i.skipped]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if not i.skipped]

    def document(self) -> dict[str, Any]:
        return {"devices": self.devices, "tags": self.tags}

    def to_json(self) -> str:
        return json.dumps(self.document(), indent=2) + "\n"

    def report_text(self) -> str:
        head = (f"mapped {len(self.devices)} device(s) and {len(self.tags)} tag(s); "
                f"skipped {len(self.skipped)} item(s); {len(self.warnings)} warning(s)")
        return "\n".join([head, *(i.line() for i in self.skipped), *(i.line() for i in self.warnings)]) + "\n"

    def report_json(self) -> str:
        return json.dumps({"devices": len(self.devices), "tags": len(self.tags),
                           "skipped": [asdict(i) for i in self.skipped],
                           "warnings": [asdict(i) for i in self.warnings]}, indent=2) + "\n"

    def extend(self, other: "Conversion") -> None:
        self.devices += other.devices
        self.tags += other.tags
        self.issues += other.issues


class Skip(Exception):
    """Raised by a converter for an item it cannot map; becomes a skipped Issue."""


def device(name: str, protocol: str, endpoint: str, *, unit_id: Optional[int] = None,
           poll_interval_ms: int = 1000, timeout_ms: int = 1000, retries: int = 3, enabled: bool = True,
           labels: Optional[dict[str, str]] = None) -> dict[str, Any]:
    if unit_id is None:
        unit_id = 1 if protocol.startswith("modbus") else 0
    return {"name": name, "protocol": protocol, "endpoint": endpoint, "unit_id": unit_id,
            "poll_interval_ms": max(1, int(poll_interval_ms)), "timeout_ms": max(1, int(timeout_ms)),
            "retries": retries, "enabled": enabled, "labels": dict(labels or {})}


def tag(name: str, device: str, address: str, data_type: str, *, byte_order: str = "", word_order: str = "",
        scale: Optional[dict[str, float]] = None, deadband: Optional[dict[str, Any]] = None,
        scan_rate_ms: int = 0, units: str = "", description: str = "", writable: bool = False,
        length: int = 0) -> dict[str, Any]:
    assert data_type in DATA_TYPES, data_type
    return {"name": name, "device": device, "address": address, "data_type": data_type,
            "byte_order": byte_order, "word_order": word_order, "scale": scale, "deadband": deadband,
            "scan_rate_ms": int(scan_rate_ms), "units": units, "description": description,
            "writable": writable, "length": length}


def scale(raw_lo: float, raw_hi: float, eng_lo: float, eng_hi: float) -> dict[str, float]:
    if raw_lo == raw_hi:
        raise Skip(f"scale raw range {raw_lo}..{raw_hi} is empty")
    return {"raw_lo": float(raw_lo), "raw_hi": float(raw_hi), "eng_lo": float(eng_lo), "eng_hi": float(eng_hi)}


def gain_scale(data_type: str, gain: float, offset: float) -> dict[str, float]:
    """``value = raw * gain + offset`` as Bifrost's range scale over the type's whole raw range
    (so no raw value reads as out of range). Float and 64-bit types have no such range."""
    if data_type not in INT_RANGE:
        raise Skip(f"a gain/offset scale on a {data_type} tag has no Bifrost equivalent "
                   "(Bifrost scales map a raw range; give the raw and engineering ranges)")
    lo, hi = INT_RANGE[data_type]
    return scale(lo, hi, lo * gain + offset, hi * gain + offset)


def modbus_address(table: str, offset: int, data_type: str, length: int = 0, bit: Optional[int] = None) -> str:
    """Bifrost's zero-based notation (``hr:0``, ``coil:5``, ``hr:10.3``), checked against the
    tables. An offset that Bifrost would read as a classic reference (five digits starting
    with the table's digit, e.g. holding offset 40000) gets a leading zero: ``hr:040000``."""
    span = length if data_type == "string" else SPAN[data_type]
    if table in ("coil", "di") and data_type != "bool":
        raise Skip(f"{table} holds bits; type {data_type} needs registers")
    if bit is not None and not 0 <= bit <= 15:
        raise Skip(f"bit {bit} is not 0-15")
    if not 0 <= offset or offset + max(span, 1) > 65536:
        raise Skip(f"{table} offset {offset} (+{span} registers) is outside the Modbus table (0-65535)")
    digits = str(offset)
    if len(digits) == 5 and digits[0] == TABLE_DIGIT[table]:
        digits = "0" + digits
    return f"{table}:{digits}" + (f".{bit}" if bit is not None else "")


def classic_reference(text: str) -> tuple[str, int]:
    """A classic 1-based reference (``40001``, ``400001``, ``00001``) as (table, zero-based offset)."""
    if not re.fullmatch(r"\d{5,6}", text) or text[0] not in DIGIT_TABLE:
        raise Skip(f"address {text!r} is not a Modbus reference (00001-09999, 100001-165536, 3..., 4...)")
    offset = int(text[1:]) - 1
    if offset < 0:
        raise Skip(f"address {text!r}: references start at 1")
    if offset > 65535:
        raise Skip(f"address {text!r} is outside the Modbus table (offset {offset} > 65535)")
    return DIGIT_TABLE[text[0]], offset


NAME_SEGMENT = re.compile(r"[^A-Za-z0-9_.-]")


def clean_name(name: str) -> str:
    """A Bifrost name (``/``-separated segments of letters, digits, ``_.-``): other characters
    become ``_``, empty segments are dropped."""
    segs = [NAME_SEGMENT.sub("_", s.strip()) for s in name.split("/")]
    segs = ["_" if s in (".", "..") else s for s in segs if s]
    return "/".join(segs)


def add_tag(conv: Conversion, source: str, original: str, t: dict[str, Any]) -> None:
    """Adds a tag under a cleaned name; a renamed tag is a warning, a duplicate is skipped."""
    name = clean_name(t["name"])
    if not name:
        conv.issues.append(Issue(source, original, "no usable name"))
        return
    if any(x["name"] == name for x in conv.tags):
        conv.issues.append(Issue(source, original, f"tag name {name!r} is already taken by another tag"))
        return
    if name != t["name"]:
        conv.issues.append(Issue(source, original, f"renamed to {name!r} (Bifrost names are "
                                 "/-separated segments of letters, digits, '_', '.', '-')", skipped=False))
    conv.tags.append({**t, "name": name})


def parse_duration_ms(text: str) -> int:
    """``500ms``, ``1s``, ``1.5s``, ``2m`` or a plain number of milliseconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"bad duration {text!r}: use e.g. 500ms, 1s, 2m")
    factor = {"ms": 1, None: 1, "s": 1000, "m": 60_000, "h": 3_600_000}[m.group(2)]
    return int(round(float(m.group(1)) * factor))
