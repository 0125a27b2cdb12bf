"""An Ignition (8.x) tag export (JSON) to a Bifrost document.

Ignition exports a provider or folder as ``{"name", "tagType": "Provider"|"Folder",
"tags": [...]}``; folders nest, and the path of folder names is the Bifrost tag name.
Only ``AtomicTag`` s with ``valueSource: "opc"`` have a device behind them:

* ``opcItemPath`` ``ns=1;s=[Device]HR1`` on Ignition's own OPC UA server names a
  device connection of Ignition's Modbus driver. Its address is Ignition's: a
  designator (``C``, ``DI``, ``IR``/``HR`` Int16, ``..US`` UInt16, ``..I``/``..UI``
  32-bit, ``..F`` Float, ``..D`` Double, ``..I_64``, ``HRS<n>:<chars>`` String), an
  optional unit id prefix (``2.HR1``), an optional bit (``HR1.3``); one-based unless
  the connection is zero-based. The device's endpoint is an option
  (``--device Press3=10.0.1.5:502``): the export does not hold it.
* Any other OPC server (``opcServer``) maps to a Bifrost ``opcua`` device when given
  (``--opc-server Kepware=opc.tcp://host:49320``); the item path is the NodeId.

Memory, expression, derived, reference and query tags, and UDT instances, are
reported as skipped: they have no device, or Bifrost does not model them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from .document import Conversion, Issue, Skip, add_tag, clean_name, device, modbus_address, scale, tag

IGNITION_SERVER = "Ignition OPC UA Server"
TYPES = {"Boolean": "bool", "Int2": "i16", "Int4": "i32", "Int8": "i64", "Float4": "f32", "Float8": "f64",
         "String": "string"}
# Designator suffix (after HR/IR) -> Bifrost type.
REGISTER_TYPES = {"": "i16", "US": "u16", "I": "i32", "UI": "u32", "F": "f32", "D": "f64", "I_64": "i64",
                  "S": "string"}
FAMILY = {"bool": "bool", "string": "string"}
SOURCES = {"memory": "memory tag: its value is set by people or scripts, no device behind it",
           "expr": "expression tag (derived: {expression})",
           "derived": "derived tag (computed from {sourceTagPath})",
           "reference": "reference tag (an alias of {sourceTagPath})",
           "db": "query tag (its value comes from a database query)"}


@dataclass
class ModbusConnection:
    """An Ignition Modbus TCP device connection, as given with ``--device``."""

    name: str
    endpoint: str
    unit: int = 1
    zero_based: bool = False
    word_order: str = ""

    @staticmethod
    def parse(spec: str) -> "ModbusConnection":
        """``NAME=HOST:PORT[,unit=N][,zero-based][,word-order=little]``."""
        name, _, rest = spec.partition("=")
        endpoint, *opts = rest.split(",")
        if not name or not endpoint:
            raise ValueError(f"--device {spec!r}: expected NAME=HOST:PORT[,unit=N][,zero-based]")
        c = ModbusConnection(name, endpoint)
        for o in opts:
            key, _, value = o.partition("=")
            if key == "unit":
                c.unit = int(value)
            elif key == "zero-based":
                c.zero_based = True
            elif key == "word-order" and value in ("big", "little"):
                c.word_order = "" if value == "big" else "little"
            else:
                raise ValueError(f"--device {spec!r}: unknown option {o!r}")
        return c


class _Converter:
    def __init__(self, source: str, connections: dict[str, ModbusConnection], opc_servers: dict[str, str],
                 tag_groups: dict[str, int], interval_ms: int, prefix: str) -> None:
        self.source, self.connections, self.opc_servers = source, connections, opc_servers
        self.tag_groups, self.interval_ms, self.prefix = tag_groups, interval_ms, prefix
        self.conv = Conversion()
        self.devices: dict[tuple[str, int], str] = {}  # (connection or server, unit) -> device name

    def issue(self, item: str, reason: str, skipped: bool = True) -> None:
        self.conv.issues.append(Issue(self.source, item, reason, skipped))

    def device_for(self, key: str, unit: int, protocol: str, endpoint: str) -> str:
        """One Bifrost device per connection and unit id (Ignition reaches several units through
        one connection with ``2.HR1``; a Bifrost device has one): ``Press3``, ``Press3-unit2``."""
        if (key, unit) not in self.devices:
            conn = self.connections.get(key)
            name = clean_name(key) if conn is None or unit == conn.unit else f"{clean_name(key)}-unit{unit}"
            self.devices[(key, unit)] = name
            self.conv.devices.append(device(name, protocol, endpoint, unit_id=None if unit < 0 else unit,
                                            poll_interval_ms=self.interval_ms))
        return self.devices[(key, unit)]

    def walk(self, node: dict[str, Any], path: list[str]) -> None:
        kind = node.get("tagType") or ("AtomicTag" if "valueSource" in node or "opcItemPath" in node else "Folder")
        name = str(node.get("name") or "")
        here = path + [name] if name and kind != "Provider" else path
        item = "/".join(here) or "(root)"
        if kind in ("Provider", "Folder"):
            if name == "_types_":
                return  # UDT definitions, not tags
            for child in node.get("tags") or []:
                self.walk(child, here)
        elif kind == "UdtInstance":
            self.issue(item, f"UDT instance of {node.get('typeId', '?')!r}: UDT members are not expanded; "
                       "convert the instance to plain tags in Ignition first")
        elif kind == "UdtType":
            return
        elif kind == "AtomicTag":
            try:
                self.atomic(node, item)
            except Skip as e:
                self.issue(item, str(e))
        else:
            self.issue(item, f"unknown tagType {kind!r}")

    def atomic(self, t: dict[str, Any], item: str) -> None:
        source = t.get("valueSource", "memory")
        if source != "opc":
            why = SOURCES.get(source, f"valueSource {source!r} has no device behind it")
            raise Skip(why.format(expression=t.get("expression", "?"), sourceTagPath=t.get("sourceTagPath", "?")))
        if t.get("enabled") is False:
            raise Skip("disabled in Ignition")
        path = t.get("opcItemPath")
        if not isinstance(path, str) or not path:
            raise Skip(f"opcItemPath {path!r} is not a plain item path (bound to a parameter?)")
        server = t.get("opcServer") or IGNITION_SERVER
        ign_type = t.get("dataType", "Int4")
        writable = not t.get("readOnly", False)
        m = re.fullmatch(r"ns=1;s=\[([^\]]+)\](.*)", path)
        if server == IGNITION_SERVER and m:
            conn = self.connections.get(m.group(1))
            if conn is None:
                raise Skip(f"device connection [{m.group(1)}] is not given with --device (unknown driver "
                           "or device: only Ignition's Modbus TCP connections map)")
            dev, address, data_type, length, word_order, table = self.modbus(conn, m.group(2))
            if FAMILY.get(data_type, "number") != FAMILY.get(TYPES.get(ign_type, ""), "number"):
                self.issue(item, f"Ignition converts the register ({data_type}) to {ign_type}; Bifrost "
                           f"stores it as {data_type}", skipped=False)
            writable = writable and table in ("coil", "hr")
        elif server in self.opc_servers:
            if ign_type not in TYPES:
                raise Skip(f"data type {ign_type!r} has no Bifrost equivalent")
            data_type = TYPES[ign_type]
            dev = self.device_for(server, -1, "opcua", self.opc_servers[server])
            address, length, word_order = str(path), 0, ""
        else:
            raise Skip(f"OPC server {server!r} is not given with --opc-server (item {path!r})")

        sc = None
        mode = t.get("scaleMode", "Off")
        if mode == "Linear":
            sc = scale(t.get("rawLow", 0.0), t.get("rawHigh", 10.0), t.get("scaledLow", 0.0),
                       t.get("scaledHigh", 10.0))
        elif mode not in ("Off", None):
            raise Skip(f"scaleMode {mode!r} has no Bifrost equivalent (only Linear)")
        deadband = None
        if float(t.get("deadband", 0) or 0) > 0:
            percent = t.get("deadbandMode", "Absolute") == "Percent"
            if percent and sc is None:
                self.issue(item, "percent deadband dropped: Bifrost takes percent of a scale's range",
                           skipped=False)
            else:
                deadband = {"value": float(t["deadband"]), "percent": percent}
        group = t.get("tagGroup", "Default")
        scan = 0
        if group != "Default":
            if group in self.tag_groups:
                scan = self.tag_groups[group]
            else:
                self.issue(item, f"tag group {group!r} has no --tag-group rate: read at the device's "
                           "interval", skipped=False)
        if t.get("alarms"):
            self.issue(item, "alarms are not migrated", skipped=False)
        add_tag(self.conv, self.source, item, tag(
            self.prefix + item, dev, address, data_type, word_order=word_order, scale=sc, deadband=deadband,
            scan_rate_ms=scan, units=str(t.get("engUnit") or ""),
            description=str(t.get("documentation") or t.get("tooltip") or ""), writable=writable,
            length=length))

    def modbus(self, conn: ModbusConnection, address: str) -> tuple[str, str, str, int, str, str]:
        m = re.fullmatch(r"(?:(\d+)\.)?(C|DI|HR|IR)(UI_64|I_64|BCD_32|BCD|US|UI|I|F|D|S)?(\d+)(?:\.(\d+))?(?::(\d+))?", address)
        if not m:
            raise Skip(f"address {address!r} is not an Ignition Modbus address (HR1, HRF10, C5, 2.HR1)")
        unit = int(m.group(1)) if m.group(1) else conn.unit
        table, kind, number = m.group(2).lower(), m.group(3) or "", int(m.group(4))
        bit = int(m.group(5)) if m.group(5) is not None else None
        length = 0
        if table in ("c", "di"):
            table = "coil" if table == "c" else "di"
            if kind or bit is not None:
                raise Skip(f"address {address!r}: {table} holds single bits")
            data_type = "bool"
        elif kind in REGISTER_TYPES:
            data_type = REGISTER_TYPES[kind]
            if data_type == "string":
                if m.group(6) is None:
                    raise Skip(f"string address {address!r} needs a length (HRS1:20)")
                length = math.ceil(int(m.group(6)) / 2)
            if bit is not None:
                if data_type not in ("i16", "u16"):
                    raise Skip(f"address {address!r}: a bit of a {data_type}")
                data_type = "bool"
        else:
            raise Skip(f"address {address!r}: designator {m.group(2)}{kind} ({'BCD' if 'BCD' in kind else kind}) "
                       "has no Bifrost equivalent")
        offset = number if conn.zero_based else number - 1
        if offset < 0:
            raise Skip(f"address {address!r}: one-based addresses start at 1")
        addr = modbus_address(table, offset, data_type, length, bit)
        dev = self.device_for(conn.name, unit, "modbus-tcp", conn.endpoint)
        word_order = conn.word_order if data_type in ("i32", "u32", "f32", "i64", "f64") else ""
        return dev, addr, data_type, length, word_order, table


def convert(path: Union[str, Path], *, devices: Optional[list[ModbusConnection]] = None,
            opc_servers: Optional[dict[str, str]] = None, tag_groups: Optional[dict[str, int]] = None,
            interval_ms: int = 1000, prefix: str = "") -> Conversion:
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8-sig"))
    c = _Converter(f"ignition:{path.name}", {d.name: d for d in devices or []}, dict(opc_servers or {}),
                   dict(tag_groups or {}), interval_ms, prefix)
    for node in doc if isinstance(doc, list) else [doc]:
        c.walk(node, [])
    return c.conv
