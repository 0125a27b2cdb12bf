"""The reference gateway's config (``examples/python-gateway``, YAML) to a Bifrost document.

Devices: ``modbus-tcp`` (host, port, unit, interval/timeout in seconds, retries) and
``opcua`` (endpoint). Tags (names must already be Bifrost names: the readings the gateway dual-writes, and those
``verify`` compares, carry them, so a tag is skipped rather than renamed): ``address`` in the gateway's notation (classic ``40001``/
``400001``, or ``hr:N``/``ir:N``/``coil:N``/``di:N`` always zero-based, ``.N`` a bit),
``type``, ``scale`` (a gain, with ``offset``, or ``{raw: [lo, hi], eng: [lo, hi]}``),
``units``, ``description``, ``writable``, ``byte_order``/``word_order``, ``length``.
Tag names are kept (the readings' ``tag`` column), so readings map one to one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Union

from .document import Conversion, Issue, Skip, add_tag, classic_reference, clean_name, device, gain_scale
from .document import modbus_address, scale, tag

TYPES = ("bool", "i16", "u16", "i32", "u32", "i64", "f32", "f64", "string")


def _address(text: str, data_type: str, length: int) -> str:
    m = re.fullmatch(r"(?:(coil|di|ir|hr):)?(\d+)(?:\.(\d+))?", str(text).strip().lower())
    if not m:
        raise Skip(f"address {text!r} is not in the gateway's Modbus notation")
    table, number, bit = m.group(1), m.group(2), m.group(3)
    if table is None:
        table, offset = classic_reference(number)
    else:
        offset = int(number)  # the gateway's prefixed form is always zero-based
    b = int(bit) if bit is not None else None
    if b is not None and table in ("coil", "di"):
        raise Skip(f"address {text!r}: a bit of a coil or discrete input")
    if (table in ("coil", "di") or b is not None) != (data_type == "bool"):
        raise Skip(f"address {text!r}: type {data_type} does not fit the {table} table")
    return modbus_address(table, offset, data_type, length, b)


def _scale(t: dict[str, Any], data_type: str) -> Optional[dict[str, float]]:
    spec, offset = t.get("scale"), float(t.get("offset") or 0.0)
    if isinstance(spec, dict):
        (rlo, rhi), (elo, ehi) = spec["raw"], spec["eng"]
        return scale(rlo, rhi, elo, ehi)
    if spec is None and offset == 0.0:
        return None
    gain = 1.0 if spec is None else float(spec)
    return None if (gain, offset) == (1.0, 0.0) else gain_scale(data_type, gain, offset)


def _order(value: Any) -> str:
    value = (value or "big").lower()
    if value not in ("big", "little"):
        raise Skip(f"byte/word order {value!r} is not big or little")
    return "" if value == "big" else "little"


def convert(path: Union[str, Path], source: Optional[str] = None) -> Conversion:
    import yaml  # type: ignore[import-untyped,unused-ignore]  # PyYAML: pip install 'bifrost-client[migrate]'

    source = source or f"gateway:{Path(path).name}"
    raw = yaml.safe_load(Path(path).read_text()) or {}
    conv = Conversion()
    devices: dict[str, str] = {}  # gateway name -> Bifrost device name, protocol
    protocols: dict[str, str] = {}
    for i, d in enumerate(raw.get("devices") or []):
        name = str(d.get("name") or f"devices[{i}]")
        proto = d.get("protocol")

        def ms(key: str, default: float) -> int:
            return int(round(float(d.get(key, default)) * 1000))

        if proto == "modbus-tcp":
            endpoint = f"{d.get('host', '')}:{d.get('port', 502)}"
            dev = device(clean_name(name), proto, endpoint, unit_id=int(d.get("unit", 1)),
                         poll_interval_ms=ms("interval", 1.0), timeout_ms=ms("timeout", 1.0),
                         retries=int(d.get("retries", 1)))
        elif proto == "opcua":
            dev = device(clean_name(name), proto, str(d.get("endpoint", "")),
                         poll_interval_ms=ms("interval", 1.0), timeout_ms=ms("timeout", 1.0))
        else:
            conv.issues.append(Issue(source, f"device {name}", f"unknown driver {proto!r} (Bifrost "
                                     "maps the gateway's modbus-tcp and opcua)"))
            continue
        if dev["name"] != name:
            conv.issues.append(Issue(source, f"device {name}", f"renamed to {dev['name']!r}", skipped=False))
        devices[name], protocols[name] = dev["name"], proto
        conv.devices.append(dev)

    for i, t in enumerate(raw.get("tags") or []):
        name = str(t.get("name") or f"tags[{i}]")
        try:
            if clean_name(name) != name:
                raise Skip(f"not a Bifrost tag name (/-separated segments of letters, digits, '_', '.', '-'; "
                           f"it would be {clean_name(name)!r}): the gateway's readings carry the name, so "
                           "rename the tag in the gateway first")
            if t.get("device") not in devices:
                raise Skip(f"its device {t.get('device')!r} was not mapped")
            data_type, length = str(t.get("type")), int(t.get("length") or 0)
            if data_type not in TYPES:
                raise Skip(f"data type {data_type!r} has no Bifrost equivalent ({', '.join(TYPES)})")
            if protocols[t["device"]] == "modbus-tcp":
                address = _address(t.get("address", ""), data_type, length)
            else:
                address = str(t.get("address", ""))
            writable = bool(t.get("writable", False))
            add_tag(conv, source, name, tag(
                name, devices[t["device"]], address, data_type,
                byte_order=_order(t.get("byte_order")), word_order=_order(t.get("word_order")),
                scale=_scale(t, data_type), units=str(t.get("units") or ""),
                description=str(t.get("description") or ""), writable=writable,
                length=length if data_type == "string" else 0))
        except Skip as e:
            conv.issues.append(Issue(source, name, str(e)))
        except (KeyError, TypeError, ValueError) as e:
            conv.issues.append(Issue(source, name, f"malformed entry: {e!r}"))
    for h in raw.get("hooks") or []:
        conv.issues.append(Issue(source, f"hook {h if isinstance(h, str) else h.get('use')}",
                                 "gateway plug-in code is not migrated; run it against Bifrost's "
                                 "watch API instead", skipped=False))
    return conv
