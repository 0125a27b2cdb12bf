#!/usr/bin/env python3
"""A pymodbus TCP server that counts the read requests it answers, for the
scan-rate test (server/tests/scan_rate.rs).

    modbus_counting.py [--host 127.0.0.1] [--port 0]

Prints `READY <port>` once serving, then one line per read request it
answers: `READ <function code> <start address> <count>` (zero-based wire
address), flushed at once, so the test counts requests per start address.
Runs until killed; any unit id is answered.

1000 holding and input registers, 1000 coils and discrete inputs. A read
of holding registers first sets the register at its start address to the
number of reads that started there (so each read gives a new value, and
the stored history of a tag shows how often it was read), then answers.
"""

import argparse
import asyncio
from collections import Counter

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusTcpServer

READ_CODES = {1, 2, 3, 4}
HOLDING_READ = 3


class CountingContext(ModbusDeviceContext):
    """Counts read requests per (function code, start address)."""

    def __init__(self):
        # pymodbus adds 1 to the wire address before looking in a block, so
        # a block starting at 1 puts wire offset 0 at index 0.
        super().__init__(
            co=ModbusSequentialDataBlock(1, [False] * 1000),
            di=ModbusSequentialDataBlock(1, [False] * 1000),
            ir=ModbusSequentialDataBlock(1, [0] * 1000),
            hr=ModbusSequentialDataBlock(1, [0] * 1000),
        )
        self.reads = Counter()

    def getValues(self, func_code, address, count=1):
        if func_code in READ_CODES:
            key = (func_code, address)
            self.reads[key] += 1
            if func_code == HOLDING_READ:
                self.setValues(func_code, address, [self.reads[key] & 0xFFFF])
            print(f"READ {func_code} {address} {count}", flush=True)
        return super().getValues(func_code, address, count)


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args()
    context = ModbusServerContext(devices=CountingContext(), single=True)
    server = ModbusTcpServer(context, address=(a.host, a.port))
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
