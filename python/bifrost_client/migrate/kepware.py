"""A Kepware (KEPServerEX / Kepware Edge) Modbus device's tag CSV export to a Bifrost document.

The CSV is what *Export CSV* on a device writes: one row per tag with the columns
``Tag Name, Address, Data Type, Respect Data Type, Client Access, Scan Rate, Scaling,
Raw Low, Raw High, Scaled Low, Scaled High, Scaled Data Type, Clamp Low, Clamp High,
Eng Units, Description, Negate Value``. Tag groups are in the name (``Motor.Speed``).
The device's settings (IP, unit id, data encoding) are not in the file: they are
options here. Kepware's Modbus driver sends 32/64-bit values *first word low* by
default, hence ``word_order="little"`` unless told otherwise.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, Optional, Union

from .document import Conversion, Issue, Skip, add_tag, classic_reference, clean_name, device, gain_scale
from .document import modbus_address, scale, tag

TYPES = {"boolean": "bool", "short": "i16", "word": "u16", "long": "i32", "dword": "u32",
         "float": "f32", "double": "f64", "llong": "i64", "string": "string"}
UNSUPPORTED = {"char": "8-bit", "byte": "8-bit", "bcd": "BCD", "lbcd": "BCD", "qword": "unsigned 64-bit",
               "date": "date", "lbcd array": "BCD"}
INTEGER_SCALED = {"char", "byte", "short", "word", "long", "dword", "bcd", "lbcd", "llong", "qword"}


def _yes(text: Optional[str]) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes")


def _num(text: Optional[str], column: str) -> float:
    try:
        return float(text or "")
    except ValueError:
        raise Skip(f"{column} {text!r} is not a number") from None


def convert(path: Union[str, Path], *, endpoint: str, device_name: Optional[str] = None, unit: int = 1,
            interval_ms: int = 1000, timeout_ms: int = 1000, word_order: str = "little",
            prefix: Optional[str] = None) -> Conversion:
    path = Path(path)
    dev_name = clean_name(device_name or path.stem)
    source = f"kepware:{path.name}"
    prefix = f"{dev_name}/" if prefix is None else prefix
    conv = Conversion(devices=[device(dev_name, "modbus-tcp", endpoint, unit_id=unit,
                                      poll_interval_ms=interval_ms, timeout_ms=timeout_ms)])
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        kname = (row.get("Tag Name") or "").strip()
        item = f"line {n} {kname}"
        try:
            t = _tag(row, kname, prefix + kname.replace(".", "/"), dev_name, word_order, conv, source, item)
            add_tag(conv, source, item, t)
        except Skip as e:
            conv.issues.append(Issue(source, item, str(e)))
    return conv


def _tag(row: dict[str, str], kname: str, name: str, dev: str, word_order: str, conv: Conversion,
         source: str, item: str) -> dict[str, Any]:
    address = (row.get("Address") or "").strip()
    ktype = (row.get("Data Type") or "Default").strip()
    if not kname:
        raise Skip("no Tag Name")
    if ktype.lower().endswith("array") or "[" in address:
        raise Skip(f"array tag ({ktype} {address}): Bifrost tags hold one value; split it into tags")
    m = re.fullmatch(r"(\d{5,6})(?:\.(\d{1,3})([HLhl])?)?", address)
    if not m:
        raise Skip(f"address {address!r} is not a Modbus reference (e.g. 400001, 40001, 400001.3)")
    table, offset = classic_reference(m.group(1))
    suffix, byte_flag = m.group(2), m.group(3)
    if ktype.lower() == "default":
        ktype = "Boolean" if table in ("coil", "di") or (suffix and not byte_flag) else "Word"
    if ktype.lower() in UNSUPPORTED:
        raise Skip(f"data type {ktype} ({UNSUPPORTED[ktype.lower()]}) has no Bifrost equivalent")
    data_type = TYPES.get(ktype.lower())
    if data_type is None:
        raise Skip(f"unknown data type {ktype!r}")
    bit, length, byte_order = None, 0, ""
    if data_type == "string":
        if not suffix:
            raise Skip(f"string address {address!r} needs a length (400001.20H)")
        length = math.ceil(int(suffix) / 2)  # Kepware counts characters, Bifrost registers
        byte_order = "little" if (byte_flag or "H").upper() == "L" else ""
    elif suffix is not None:
        if data_type != "bool" or byte_flag:
            raise Skip(f"address {address!r}: a bit suffix needs data type Boolean")
        bit = int(suffix)
    elif data_type == "bool" and table not in ("coil", "di"):
        raise Skip(f"Boolean at {address!r}: a register's bit needs a suffix (.0-.15)")
    addr = modbus_address(table, offset, data_type, length, bit)

    writable = (row.get("Client Access") or "").strip().upper() in ("R/W", "RW", "READ/WRITE")
    if writable and table in ("di", "ir"):
        conv.issues.append(Issue(source, item, f"Client Access R/W on read-only {table}: read-only",
                                 skipped=False))
        writable = False
    sc = None
    mode = (row.get("Scaling") or "None").strip().lower()
    if mode == "linear":
        sc = scale(_num(row.get("Raw Low"), "Raw Low"), _num(row.get("Raw High"), "Raw High"),
                   _num(row.get("Scaled Low"), "Scaled Low"), _num(row.get("Scaled High"), "Scaled High"))
        if (row.get("Scaled Data Type") or "").strip().lower() in INTEGER_SCALED:
            conv.issues.append(Issue(source, item, f"Kepware rounds scaled values to {row['Scaled Data Type']}; "
                                     "Bifrost keeps the scaled value unrounded", skipped=False))
        if _yes(row.get("Clamp Low")) or _yes(row.get("Clamp High")):
            conv.issues.append(Issue(source, item, "clamping dropped: Bifrost extrapolates and marks raw values "
                                     "outside the raw range Uncertain out_of_range", skipped=False))
    elif mode not in ("", "none"):
        raise Skip(f"scaling {row.get('Scaling')!r} has no Bifrost equivalent (only Linear)")
    if _yes(row.get("Negate Value")):
        sc = ({**sc, "eng_lo": -sc["eng_lo"], "eng_hi": -sc["eng_hi"]} if sc
              else gain_scale(data_type, -1.0, 0.0))
    scan = (row.get("Scan Rate") or "").strip()
    return tag(name, dev, addr, data_type, byte_order=byte_order,
               word_order=word_order if data_type in ("i32", "u32", "f32", "i64", "f64") and word_order != "big"
               else "", scale=sc, scan_rate_ms=int(scan) if scan.isdigit() else 0,
               units=(row.get("Eng Units") or "").strip(), description=(row.get("Description") or "").strip(),
               writable=writable, length=length)
