"""Device connections: Modbus TCP (pymodbus) and OPC UA (asyncua), read and write."""

from __future__ import annotations

import asyncio
import struct
from typing import Any, Protocol

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from .config import Device, Tag

Value = Any  # bool | int | float | str | None
FORMATS = {"i16": "h", "u16": "H", "i32": "i", "u32": "I", "f32": "f",
           "i64": "q", "u64": "Q", "f64": "d"}


class DeviceError(Exception):
    """A failed read or write; ``reason`` is the quality reason stored with Bad readings."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _bytes(tag: Tag, registers: list[int]) -> bytes:
    regs = list(reversed(registers)) if tag.word_order == "little" else registers
    data = b"".join(struct.pack(">H", r) for r in regs)
    if tag.byte_order == "little":
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    return data


def _registers(tag: Tag, data: bytes) -> list[int]:
    if tag.byte_order == "little":
        data = b"".join(data[i + 1:i + 2] + data[i:i + 1] for i in range(0, len(data), 2))
    regs = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    return list(reversed(regs)) if tag.word_order == "little" else regs


def decode(tag: Tag, registers: list[int]) -> Value:
    """Raw registers to the tag's engineering value (scale applied)."""
    if tag.modbus is not None and tag.modbus.bit is not None:
        return bool((int.from_bytes(_bytes(tag, registers[:1]), "big") >> tag.modbus.bit) & 1)
    data = _bytes(tag, registers)
    if tag.type == "string":
        return data.split(b"\0", 1)[0].decode("latin-1")
    raw = struct.unpack(">" + FORMATS[tag.type], data)[0]
    if tag.type == "f32":
        raw = shortest_f32(raw)
    if not tag.scaled:
        return raw
    value = raw * tag.gain + tag.offset
    return round(value, 9) if tag.type.startswith(("i", "u")) else value


def shortest_f32(x: float) -> float:
    """The shortest decimal that is the same f32 (123.456, not 123.45600128173828)."""
    for digits in range(6, 10):
        y = float(f"{x:.{digits}g}")
        if struct.pack(">f", y) == struct.pack(">f", x):
            return y
    return x


def encode(tag: Tag, value: Value) -> list[int]:
    """An engineering value to registers (inverse scale, rounded for integer types)."""
    if tag.type == "string":
        data = str(value).encode("latin-1")[: tag.length * 2].ljust(tag.length * 2, b"\0")
        return _registers(tag, data)
    raw = (float(value) - tag.offset) / tag.gain if tag.scaled else value
    if tag.type not in ("f32", "f64"):
        raw = int(round(raw))
    try:
        return _registers(tag, struct.pack(">" + FORMATS[tag.type], raw))
    except struct.error as e:
        raise ValueError(f"{value!r} does not fit a {tag.type} tag: {e}") from None


class Connection(Protocol):
    async def read(self, tags: list[Tag]) -> dict[str, Value]: ...
    async def write(self, tag: Tag, value: Value) -> Value: ...
    async def close(self) -> None: ...


class ModbusConnection:
    """One pymodbus client per device; one request per tag, serialized by a lock."""

    def __init__(self, dev: Device) -> None:
        self.dev = dev
        self.client = AsyncModbusTcpClient(dev.host, port=dev.port, timeout=dev.timeout, retries=dev.retries)
        self.lock = asyncio.Lock()

    async def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        if not self.client.connected and not await self.client.connect():
            raise DeviceError("not_connected", f"{self.dev.host}:{self.dev.port}")
        try:
            rr = await fn(*args, device_id=self.dev.unit, **kw)
        except asyncio.TimeoutError:
            raise DeviceError("timeout") from None
        except ModbusException as e:
            self.client.close()
            raise DeviceError("timeout" if "timeout" in str(e).lower() else "comm_failure", str(e)) from None
        if rr.isError():
            raise DeviceError(f"device_exception:{getattr(rr, 'exception_code', 0)}")
        return rr

    async def _read(self, tag: Tag) -> Value:
        a, c = tag.modbus, self.client
        assert a is not None
        if a.table in ("coil", "di"):
            fn = c.read_coils if a.table == "coil" else c.read_discrete_inputs
            return bool((await self._call(fn, a.offset, count=1)).bits[0])
        fn = c.read_holding_registers if a.table == "hr" else c.read_input_registers
        return decode(tag, (await self._call(fn, a.offset, count=max(tag.registers, 1))).registers)

    async def read(self, tags: list[Tag]) -> dict[str, Value]:
        async with self.lock:
            return {t.name: await self._read(t) for t in tags}

    async def write(self, tag: Tag, value: Value) -> Value:
        a = tag.modbus
        assert a is not None
        async with self.lock:
            if a.table == "coil":
                await self._call(self.client.write_coil, a.offset, bool(value))
            elif a.bit is not None:  # read-modify-write of one register (not atomic)
                reg = (await self._call(self.client.read_holding_registers, a.offset, count=1)).registers[0]
                word = int.from_bytes(_bytes(tag, [reg]), "big")
                word = word | (1 << a.bit) if value else word & ~(1 << a.bit)
                await self._call(self.client.write_register, a.offset, _registers(tag, word.to_bytes(2, "big"))[0])
            else:
                await self._call(self.client.write_registers, a.offset, encode(tag, value))
            return await self._read(tag)

    async def close(self) -> None:
        self.client.close()


class OpcUaConnection:
    """Reads variables by NodeId with asyncua; writes are not offered by this gateway."""

    def __init__(self, dev: Device) -> None:
        from asyncua import Client

        self.dev = dev
        self.client: Any = Client(dev.endpoint, timeout=dev.timeout)
        self.connected = False

    async def read(self, tags: list[Tag]) -> dict[str, Value]:
        try:
            if not self.connected:
                await self.client.connect()
                self.connected = True
            values = await self.client.read_values([self.client.get_node(t.address) for t in tags])
        except (OSError, asyncio.TimeoutError) as e:
            await self.close()
            raise DeviceError("comm_failure", str(e)) from None
        return {t.name: (v * t.gain + t.offset if t.scaled else v) for t, v in zip(tags, values)}

    async def write(self, tag: Tag, value: Value) -> Value:
        raise DeviceError("not_supported", "this gateway writes to Modbus devices only")

    async def close(self) -> None:
        if self.connected:
            self.connected = False
            try:
                await self.client.disconnect()
            except Exception:  # noqa: BLE001 - the connection is gone either way
                pass


def connect(dev: Device) -> Connection:
    return ModbusConnection(dev) if dev.protocol == "modbus-tcp" else OpcUaConnection(dev)


