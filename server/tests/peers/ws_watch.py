"""A subscriber written with the `websockets` library (PyPI), used by the
server's tests as a WebSocket client that is not ours.

Usage: ws_watch.py URL SUBSCRIBE_JSON COUNT [TIMEOUT_S [PROGRESS]]

Sends SUBSCRIBE_JSON as the first message, then prints every message the
server sends, one JSON document per line, until COUNT readings were received,
PROGRESS progress messages (when not 0), an error message arrived, or the
server closed the connection. The last line is
{"done": "count"|"progress"|"error"|"closed"|"timeout", "close_code": CODE}.

For a wss:// URL the server is checked against the CA file named by the
environment variable BIFROST_WS_CA. A session token in BIFROST_WS_TOKEN is
sent as a browser would send it: as the subprotocol bifrost.token.TOKEN.
"""

import asyncio
import json
import os
import ssl
import sys

import websockets


async def main():
    url, subscribe, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 60.0
    max_progress = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    got = 0
    progress = 0
    reason = "count"
    code = None
    tls = None
    if url.startswith("wss://"):
        tls = ssl.create_default_context(cafile=os.environ["BIFROST_WS_CA"])
    token = os.environ.get("BIFROST_WS_TOKEN")
    protocols = [f"bifrost.token.{token}"] if token else None
    async with websockets.connect(url, max_size=None, ssl=tls, subprotocols=protocols) as ws:
        await ws.send(subscribe)
        try:
            while got < count:
                msg = await asyncio.wait_for(ws.recv(), timeout)
                print(msg, flush=True)
                m = json.loads(msg)
                if m.get("type") == "readings":
                    got += len(m["readings"])
                elif m.get("type") == "progress":
                    progress += 1
                    if max_progress and progress >= max_progress:
                        reason = "progress"
                        break
                elif m.get("type") == "error":
                    reason = "error"
                    # The server closes after an error: wait for it.
                    try:
                        await asyncio.wait_for(ws.recv(), 5)
                    except websockets.ConnectionClosed as e:
                        code = e.rcvd.code if e.rcvd else None
                    break
        except websockets.ConnectionClosed as e:
            reason = "closed"
            code = e.rcvd.code if e.rcvd else None
        except asyncio.TimeoutError:
            reason = "timeout"
    print(json.dumps({"done": reason, "close_code": code}), flush=True)


asyncio.run(main())
