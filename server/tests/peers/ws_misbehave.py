"""A misbehaving WebSocket client written with the `websockets` library
(PyPI), for the server's edge-limit tests.

Usage: ws_misbehave.py big URL
       ws_misbehave.py stall URL SUBSCRIBE_JSON TIMEOUT_S

`big` sends a 100 KiB text message and reports how the server answered.
`stall` subscribes, then never reads: its socket's receive buffer is made
small and the library's queue holds one message, so the server's sends
back up. It waits until the server drops the connection or TIMEOUT_S pass.

Prints one JSON line: {"closed": true|false, "close_code": CODE|null,
...} (`big`: the close frame's "reason"; `stall`: "seconds" waited).
"""

import asyncio
import json
import socket
import sys
import time
from urllib.parse import urlparse

import websockets


async def big(url):
    start = time.monotonic()
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send("x" * (100 * 1024))
        try:
            await asyncio.wait_for(ws.recv(), 10)
            return {"closed": False, "close_code": None}
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else None
            reason = e.rcvd.reason if e.rcvd else None
            return {"closed": True, "close_code": code, "reason": reason}


async def stall(url, subscribe, timeout):
    parsed = urlparse(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((parsed.hostname, parsed.port))
    start = time.monotonic()
    async with websockets.connect(url, sock=sock, max_size=None, max_queue=1) as ws:
        await ws.send(subscribe)
        print(json.dumps({"subscribed": True}), flush=True)
        try:
            await asyncio.wait_for(ws.wait_closed(), timeout)
        except asyncio.TimeoutError:
            return {"closed": False, "close_code": None, "seconds": time.monotonic() - start}
        return {"closed": True, "close_code": ws.close_code, "seconds": time.monotonic() - start}


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "big":
        result = asyncio.run(big(url))
    else:
        result = asyncio.run(stall(url, sys.argv[3], float(sys.argv[4])))
    print(json.dumps(result), flush=True)


main()
