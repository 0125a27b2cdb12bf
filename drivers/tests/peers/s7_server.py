#!/usr/bin/env python3
"""python-snap7's S7 server holding known values, for Bifrost's S7 driver
tests (drivers/tests/s7_snap7.rs).

    s7_server.py [--port 0]

Prints `READY <port>` once listening; runs until killed. The values are
packed here with Python's `struct`, independently of the Rust encoder.

DB1 (100 bytes):
    DBB0   BYTE   0xA5 (bits 0, 2, 5, 7 set)
    DBB1   BYTE   200
    DBW2   INT    -12345
    DBW4   WORD   54321
    DBD6   DINT   -123456789
    DBD10  DWORD  3000000000
    DBD14  REAL   123.456
    DBB18  LREAL  -9876.54321            (8 bytes)
    DBB26  STRING[16] 'Bifrost!'         (18 bytes)
    DBB60  BYTE   0xA5, for bit writes
    DBB61-99 zeros, for writes
DB10 (2048 bytes):
    DBD4   REAL   21.5
    DBW(40*i)+100  INT  i * 10 for i in 0..25  (25 tags 40 bytes apart)
Merkers (64 bytes):  MB0 0x02 (M0.1 set), MW10 INT 4242, MD20 REAL 1.5
Inputs (16 bytes):   IB0 0x81 (I0.0, I0.7 set), IW2 INT 1000
Outputs (16 bytes):  QB0 0x00, QW2 INT 7
DB5 does not exist.

DB99 (16 bytes) is the server's own bookkeeping, updated before each
request is answered:
    DBD0   Read Var requests received (this one included)
    DBD4   items in the latest Read Var request
    DBD8   most items seen in one Read Var request
    DBD12  single-BIT Write Var items received

Deviation from python-snap7 3.3.0, on purpose: its server writes the data
byte of a BIT item over the whole byte (`DB1.DBX60.1 := 1` stores 0x01 in
DBB60). A PLC sets or clears the one bit, so this script handles BIT write
items itself, as a PLC does.
"""

import argparse
import struct
import sys
import time

from snap7.datatypes import S7Area
from snap7.server import Server
from snap7.type import SrvArea


def db1():
    b = bytearray(100)
    b[0] = 0xA5
    b[1] = 200
    struct.pack_into(">hHiIf", b, 2, -12345, 54321, -123456789, 3000000000, 123.456)
    struct.pack_into(">d", b, 18, -9876.54321)
    text = b"Bifrost!"
    b[26] = 16
    b[27] = len(text)
    b[28 : 28 + len(text)] = text
    b[60] = 0xA5
    return b


def db10():
    b = bytearray(2048)
    struct.pack_into(">f", b, 4, 21.5)
    for i in range(25):
        struct.pack_into(">h", b, 100 + 40 * i, i * 10)
    return b


def merkers():
    b = bytearray(64)
    b[0] = 0x02
    struct.pack_into(">h", b, 10, 4242)
    struct.pack_into(">f", b, 20, 1.5)
    return b


def inputs():
    b = bytearray(16)
    b[0] = 0x81
    struct.pack_into(">h", b, 2, 1000)
    return b


def outputs():
    b = bytearray(16)
    struct.pack_into(">h", b, 2, 7)
    return b


STATS = (S7Area.DB, 99)


class CountingServer(Server):
    """Counts requests into DB99 and writes BIT items as a PLC does."""

    def _stats(self, update):
        with self.area_locks[STATS]:
            s = self.memory_areas[STATS]
            values = list(struct.unpack_from(">IIII", s, 0))
            update(values)
            struct.pack_into(">IIII", s, 0, *values)

    def _handle_read_area(self, request, client_address):
        n = (request.get("parameters") or {}).get("item_count", 1)

        def count(v):
            v[0] += 1
            v[1] = n
            v[2] = max(v[2], n)

        self._stats(count)
        return super()._handle_read_area(request, client_address)

    def _handle_write_area(self, request, client_address):
        raw = request.get("raw_parameters", b"")
        if len(raw) >= 14 and raw[5] == 0x01:  # transport size BIT
            return self._write_bit(request, raw)
        return super()._handle_write_area(request, client_address)

    def _write_bit(self, request, raw):
        db = struct.unpack(">H", raw[8:10])[0]
        area = raw[10]
        address = int.from_bytes(raw[11:14], "big")
        data = (request.get("data") or {}).get("data", b"")
        if area not in (0x81, 0x82, 0x83, 0x84):
            return self._build_error_response(request, 0x8404)
        key = (S7Area(area), db if area == 0x84 else 0)
        if key not in self.memory_areas or len(data) != 1:
            return self._build_error_response(request, 0x8404)
        byte, bit = divmod(address, 8)
        with self.area_locks[key]:
            mem = self.memory_areas[key]
            if byte >= len(mem):
                return self._build_error_response(request, 0x8404)
            if data[0] & 1:
                mem[byte] |= 1 << bit
            else:
                mem[byte] &= ~(1 << bit) & 0xFF

        def count(v):
            v[3] += 1

        self._stats(count)
        header = struct.pack(">BBHHHHBB", 0x32, 0x03, 0, request["sequence"], 2, 1, 0, 0)
        return header + bytes([0x05, 0x01, 0xFF])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = CountingServer(log=False)
    server.register_area(SrvArea.DB, 1, db1())
    server.register_area(SrvArea.DB, 10, db10())
    server.register_area(SrvArea.DB, 99, bytearray(16))
    server.register_area(SrvArea.MK, 0, merkers())
    server.register_area(SrvArea.PE, 0, inputs())
    server.register_area(SrvArea.PA, 0, outputs())
    server.start(tcp_port=args.port)
    port = server.server_socket.getsockname()[1]
    print(f"READY {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
