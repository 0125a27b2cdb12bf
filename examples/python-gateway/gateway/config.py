"""The gateway's config file (YAML): devices, tags, hooks. See README.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml  # type: ignore[import-untyped,unused-ignore]

# Registers per type (0: a single bit); strings take `length` registers.
REGISTERS = {"bool": 0, "i16": 1, "u16": 1, "i32": 2, "u32": 2, "f32": 2,
             "i64": 4, "u64": 4, "f64": 4, "string": 0}
TABLES = ("coil", "di", "ir", "hr")
CLASSIC = {"0": "coil", "1": "di", "3": "ir", "4": "hr"}
PROTOCOLS = ("modbus-tcp", "opcua")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Address:
    """A Modbus address: table, zero-based offset, optional bit (0 = LSB) of a register."""

    table: str
    offset: int
    bit: Optional[int] = None


def parse_address(text: str) -> Address:
    """``40001`` / ``400001`` (classic, 1-based) or ``hr:0`` / ``coil:5`` (zero-based); ``.N`` is a bit."""
    m = re.fullmatch(r"(?:(coil|di|ir|hr):)?(\d+)(?:\.(\d+))?", text.strip().lower())
    if not m:
        raise ConfigError(f"address {text!r}: expected e.g. 40001, 400001, hr:0, coil:5 or hr:10.3")
    table, number, bit = m.group(1), m.group(2), m.group(3)
    if table is None:  # classic reference: the first digit is the table
        if len(number) not in (5, 6) or number[0] not in CLASSIC:
            raise ConfigError(f"address {text!r}: a bare number is a 5- or 6-digit reference (40001)")
        table, offset = CLASSIC[number[0]], int(number[1:]) - 1
    else:
        offset = int(number)
    if not 0 <= offset <= 65535:
        raise ConfigError(f"address {text!r}: offset {offset} is outside 0-65535")
    b = int(bit) if bit is not None else None
    if b is not None and (table in ("coil", "di") or b > 15):
        raise ConfigError(f"address {text!r}: a bit is 0-15 of a register")
    return Address(table, offset, b)


@dataclass
class Device:
    name: str
    protocol: str  # modbus-tcp | opcua
    host: str = ""
    port: int = 502
    unit: int = 1
    endpoint: str = ""  # opc.tcp://HOST:PORT for OPC UA
    interval: float = 1.0  # seconds between polls
    timeout: float = 1.0
    retries: int = 1


@dataclass
class Tag:
    name: str
    device: str
    address: str  # Modbus address (see parse_address) or OPC UA NodeId
    type: str
    gain: float = 1.0  # value = raw * gain + offset
    offset: float = 0.0
    scale_range: Optional[tuple[float, float, float, float]] = None  # raw_lo, raw_hi, eng_lo, eng_hi
    units: str = ""
    description: str = ""
    writable: bool = False
    byte_order: str = "big"
    word_order: str = "big"
    length: int = 0  # registers, for strings
    modbus: Optional[Address] = None

    @property
    def registers(self) -> int:
        return self.length if self.type == "string" else REGISTERS[self.type]

    @property
    def scaled(self) -> bool:
        return self.gain != 1.0 or self.offset != 0.0


@dataclass
class Config:
    devices: dict[str, Device]
    tags: dict[str, Tag]
    hooks: list[Union[str, dict[str, Any]]] = field(default_factory=list)


def _scale(tag: Tag, spec: Any, offset: Any) -> None:
    if isinstance(spec, dict):
        (rlo, rhi), (elo, ehi) = spec["raw"], spec["eng"]
        if rlo == rhi:
            raise ConfigError(f"tag {tag.name}: scale raw range is empty")
        tag.scale_range = (float(rlo), float(rhi), float(elo), float(ehi))
        tag.gain = (ehi - elo) / (rhi - rlo)
        tag.offset = elo - rlo * tag.gain
    elif spec is not None:
        tag.gain, tag.offset = float(spec), float(offset or 0.0)


def load(path: Union[str, Path]) -> Config:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    devices: dict[str, Device] = {}
    for d in raw.get("devices") or []:
        dev = Device(**d)
        if dev.protocol not in PROTOCOLS:
            raise ConfigError(f"device {dev.name}: protocol {dev.protocol!r} is not one of {PROTOCOLS}")
        if dev.name in devices:
            raise ConfigError(f"device {dev.name} appears twice")
        devices[dev.name] = dev
    tags: dict[str, Tag] = {}
    for t in raw.get("tags") or []:
        t = dict(t)
        scale, offset = t.pop("scale", None), t.pop("offset", None)
        tag = Tag(**t)
        _scale(tag, scale, offset)
        if tag.device not in devices:
            raise ConfigError(f"tag {tag.name}: unknown device {tag.device!r}")
        if tag.type not in REGISTERS:
            raise ConfigError(f"tag {tag.name}: type {tag.type!r} is not one of {sorted(REGISTERS)}")
        if tag.name in tags:
            raise ConfigError(f"tag {tag.name} appears twice")
        if devices[tag.device].protocol == "modbus-tcp":
            a = tag.modbus = parse_address(tag.address)
            bitwise = a.table in ("coil", "di") or a.bit is not None
            if bitwise != (tag.type == "bool"):
                raise ConfigError(f"tag {tag.name}: coils, inputs and register bits are bool, and only they")
            if tag.type == "string" and not 1 <= tag.length <= 125:
                raise ConfigError(f"tag {tag.name}: a string needs length 1-125 (registers)")
            if a.offset + max(tag.registers, 1) > 65536:
                raise ConfigError(f"tag {tag.name}: does not fit below register 65536")
            if tag.writable and a.table in ("di", "ir"):
                raise ConfigError(f"tag {tag.name}: {a.table} is read-only")
        tags[tag.name] = tag
    return Config(devices, tags, list(raw.get("hooks") or []))
