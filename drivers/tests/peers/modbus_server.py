#!/usr/bin/env python3
"""A pymodbus server holding known values, for Bifrost's Modbus driver tests.

    modbus_server.py tcp [--host 127.0.0.1] [--port 0]
    modbus_server.py rtu --serial /dev/pts/N [--baud 19200] [--framing 8N1]

When it serves it prints one line, `READY <port>` (TCP: the bound port) or
`READY <serial path>` (RTU), and flushes; it runs until killed. Unit id: any
(a single context answers every unit id).

The values are encoded here with Python's `struct`, independently of the
Rust encoder, so a test that reads them back checks the driver against
another implementation.

Holding registers (zero-based offsets). For each order O in
ABCD (big byte, big word), CDAB (big byte, little word),
BADC (little byte, big word), DCBA (little byte, little word),
a block starts at BASE = 0, 100, 200, 300 respectively:

    BASE+0   i16    -12345
    BASE+1   u16    54321
    BASE+2   i32    -123456789              (2 registers)
    BASE+4   u32    3000000000              (2)
    BASE+6   f32    123.456                 (2)
    BASE+8   i64    -1234567890123456789    (4)
    BASE+12  f64    -9876.54321             (4)
    BASE+16  string "Bifrost!"              (4 registers; byte order applies,
                                             word order does not)
    BASE+20  u16    0xA005 (bits 0, 2, 13, 15 set; byte order applies)

Scaled values (big/big):

    400  u16  16000   (scale 0:32000 -> 0:100 gives 50.0)
    401  i16  -500    (scale -1000:1000 -> -10:10 gives -5.0)
    402  u16  40000   (outside raw 0:32000: out_of_range)

    500-599  zeros, for write tests

Registers 1000 and up do not exist: reading them gives exception 2.

Coils:            0-7 = 1 0 1 1 0 0 0 1, then zeros up to 99 (writable)
Discrete inputs:  0-4 = 0 1 1 0 1, then zeros up to 99
Input registers:  0 = u16 777, 1-2 = f32 -1.5 (ABCD), then zeros up to 99

Read Device Identification (43/14, TCP): vendor "Bifrost Test Vendor",
product code "BTV-PLC-1", revision "3.11.4".
"""

import argparse
import asyncio
import struct
import sys

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus import ModbusDeviceIdentification
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]


def registers(packed: bytes, byte_order: str, word_order: str) -> list:
    """Registers holding `packed` (big-endian bytes of a value) in an order."""
    words = []
    for i in range(0, len(packed), 2):
        hi, lo = packed[i], packed[i + 1]
        if byte_order == "little":
            hi, lo = lo, hi
        words.append(hi << 8 | lo)
    if word_order == "little":
        words.reverse()
    return words


def string_registers(text: str, n: int, byte_order: str) -> list:
    data = text.encode().ljust(2 * n, b"\0")
    return registers(data, byte_order, "big")


def holding() -> list:
    hr = [0] * 1000
    for k, (bo, wo) in enumerate(ORDERS):
        base = 100 * k

        def put(offset, packed):
            words = registers(packed, bo, wo)
            hr[base + offset : base + offset + len(words)] = words

        put(0, struct.pack(">h", -12345))
        put(1, struct.pack(">H", 54321))
        put(2, struct.pack(">i", -123456789))
        put(4, struct.pack(">I", 3000000000))
        put(6, struct.pack(">f", 123.456))
        put(8, struct.pack(">q", -1234567890123456789))
        put(12, struct.pack(">d", -9876.54321))
        hr[base + 16 : base + 20] = string_registers("Bifrost!", 4, bo)
        put(20, struct.pack(">H", 0xA005))
    hr[400] = 16000
    hr[401] = struct.unpack(">H", struct.pack(">h", -500))[0]
    hr[402] = 40000
    return hr


def context() -> ModbusServerContext:
    coils = [True, False, True, True, False, False, False, True] + [False] * 92
    inputs = [False, True, True, False, True] + [False] * 95
    ir = [777] + registers(struct.pack(">f", -1.5), "big", "big") + [0] * 97
    # pymodbus adds 1 to the wire address before looking in a block, so a
    # block starting at 1 puts wire offset 0 at index 0.
    device = ModbusDeviceContext(
        co=ModbusSequentialDataBlock(1, coils),
        di=ModbusSequentialDataBlock(1, inputs),
        ir=ModbusSequentialDataBlock(1, ir),
        hr=ModbusSequentialDataBlock(1, holding()),
    )
    return ModbusServerContext(devices=device, single=True)


# Answered to Read Device Identification (function 43/14), for discovery.
IDENTITY = ModbusDeviceIdentification(
    info_name={
        "VendorName": "Bifrost Test Vendor",
        "ProductCode": "BTV-PLC-1",
        "MajorMinorRevision": "3.11.4",
    }
)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["tcp", "rtu"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--serial")
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--framing", default="8N1")
    a = p.parse_args()

    if a.mode == "tcp":
        server = ModbusTcpServer(context(), identity=IDENTITY, address=(a.host, a.port))
        await server.serve_forever(background=True)
        port = server.transport.sockets[0].getsockname()[1]
        print(f"READY {port}", flush=True)
    else:
        if not a.serial:
            sys.exit("rtu needs --serial PATH")
        server = ModbusSerialServer(
            context(),
            port=a.serial,
            baudrate=a.baud,
            bytesize=int(a.framing[0]),
            parity=a.framing[1].upper(),
            stopbits=int(a.framing[2]),
        )
        await server.serve_forever(background=True)
        print(f"READY {a.serial}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
