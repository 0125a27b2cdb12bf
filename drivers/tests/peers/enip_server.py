#!/usr/bin/env python3
"""A cpppo EtherNet/IP (Logix simulator) server holding known values, for
Bifrost's EtherNet/IP driver tests.

    enip_server.py [--port 0]

It runs cpppo.server.enip's main() in a thread (TCP only, no config files),
bound to 127.0.0.1 and PORT (0: a free port is picked), then writes the
initial values below with cpppo's own client (an implementation independent
of the Rust driver), and prints one line, `READY <port>`, once it accepts
connections and holds those values. It runs until killed.

Tags (cpppo stores multi-part names like `Program:Main.Tag` as one name,
which the EPATH symbolic segments "Program:Main", "Tag" resolve to):

    Counts              DINT[200]   element i = i * 10 (i < 200)
    Temp                REAL        21.5
    Small               SINT        -12
    Level               INT         -1234
    Big                 LINT        -1234567890123   (cpppo's LINT)
    Precise             LREAL       1234.5678901234
    Flag                BOOL        1
    Name                STRING      "Bifrost"        (CIP STRING, type 0xD0)
    Program:Main.Speed  DINT        1500
    Recipe.Temps        REAL[4]     0.5, 1.5, 2.5, 3.5
    Scratch             DINT[10]    zeros, for writes
    ScratchReal         REAL        0.0, for writes
    ScratchText         STRING      "", for writes
    ScratchInt          INT         0, for writes
"""

import argparse
import socket
import sys
import threading
import time

from cpppo.server.enip import client
from cpppo.server.enip import main as enip_main

TAGS = [
    "Counts=DINT[200]",
    "Temp=REAL",
    "Small=SINT",
    "Level=INT",
    "Big=LINT",
    "Precise=LREAL",
    "Flag=BOOL",
    "Name=STRING",
    "Program:Main.Speed=DINT",
    "Recipe.Temps=REAL[4]",
    "Scratch=DINT[10]",
    "ScratchReal=REAL",
    "ScratchText=STRING",
    "ScratchInt=INT",
]

INITIAL = [
    "Counts[0-99]=(DINT)" + ",".join(str(i * 10) for i in range(100)),
    "Counts[100-199]=(DINT)" + ",".join(str(i * 10) for i in range(100, 200)),
    "Temp=(REAL)21.5",
    "Small=(SINT)-12",
    "Level=(INT)-1234",
    "Big=(LINT)-1234567890123",
    "Precise=(LREAL)1234.5678901234",
    "Flag=(BOOL)1",
    "Name=(STRING)Bifrost",
    "Program:Main.Speed=(DINT)1500",
    "Recipe.Temps[0-3]=(REAL)0.5,1.5,2.5,3.5",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, server: threading.Thread, within: float) -> None:
    deadline = time.time() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if not server.is_alive():
                sys.exit("cpppo server thread exited before listening")
            if time.time() > deadline:
                sys.exit(f"cpppo server not listening on {port} within {within}s")
            time.sleep(0.05)


def write_initial(port: int) -> None:
    with client.connector(host="127.0.0.1", port=port, timeout=5) as conn:
        ops = client.parse_operations(INITIAL)
        for _, descr, _, _, status, value in conn.synchronous(operations=ops):
            if value is not True:
                sys.exit(f"writing initial value {descr} failed: status {status}, {value!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    port = args.port or free_port()
    argv = ["--no-config", "--no-udp", "--address", f"127.0.0.1:{port}", *TAGS]
    server = threading.Thread(target=enip_main.main, kwargs={"argv": argv}, daemon=True)
    server.start()
    wait_listening(port, server, 20.0)
    write_initial(port)
    print(f"READY {port}", flush=True)
    server.join()


if __name__ == "__main__":
    main()
