"""Real processes on loopback for the tests: ``bifrost serve`` as a three-node cluster,
plain or TLS with an admin password, the Modbus simulator, and the reference gateway
(``examples/python-gateway``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import bifrost_client as bc

DEFAULT_BIN = "/var/cache/bifrost/target/debug/bifrost"
FAST_ELECTIONS = ["--heartbeat-ms", "50", "--election-min-ms", "400", "--election-max-ms", "800"]
ADMIN_PASSWORD = "correct horse battery staple"


def bifrost_bin() -> Path:
    """``BIFROST_BIN`` (default the shared debug build); fails, never skips, when missing."""
    path = Path(os.environ.get("BIFROST_BIN", DEFAULT_BIN))
    if not os.access(path, os.X_OK):
        raise RuntimeError(
            f"bifrost binary not found at {path}: build the workspace (cargo build) or set BIFROST_BIN"
        )
    return path


def bifrostctl_bin() -> Path:
    path = Path(os.environ.get("BIFROSTCTL_BIN", bifrost_bin().with_name("bifrostctl")))
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"bifrostctl not found at {path}: build the workspace or set BIFROSTCTL_BIN")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process with its log file."""

    def __init__(self, name: str, args: list[str], log: Path, cwd: Optional[Path] = None,
                 env: Optional[dict[str, str]] = None) -> None:
        self.name, self.args, self.log, self.cwd, self.env = name, args, log, cwd, env
        self.popen: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        out = open(self.log, "ab")
        self.popen = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      cwd=self.cwd, env=self.env)
        out.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"---- {self.name} ({self.log}) ----\n" + "\n".join(text)


class Cluster:
    """Nodes 1..3 of ``bifrost serve``; ``tls`` makes a CA with ``bifrostctl certs init``;
    ``extra_args`` go to every node (``{id}`` becomes its id)."""

    def __init__(self, root: Path, tls: bool, extra_args: Sequence[str] = ()) -> None:
        self.root, self.tls = root, tls
        self.bin = bifrost_bin()
        self.grpc = {i: f"127.0.0.1:{free_port()}" for i in (1, 2, 3)}
        peer = {i: f"127.0.0.1:{free_port()}" for i in (1, 2, 3)}
        peers = ",".join(f"{i}={self.grpc[i]}/{peer[i]}" for i in (1, 2, 3))
        self.pki = root / "pki"
        security = self._make_pki() if tls else ["--insecure"]
        self.nodes: dict[int, Proc] = {}
        for i in (1, 2, 3):
            args = [str(self.bin), "serve", "--id", str(i), "--data-dir", str(root / f"node{i}")]
            args += ["--listen", self.grpc[i], "--peer-listen", peer[i], "--http", f"127.0.0.1:{free_port()}"]
            args += ["--peers", peers, "--progress-ms", "200", *FAST_ELECTIONS]
            args += [a.replace("{id}", str(i)) for a in [*security, *extra_args]]
            self.nodes[i] = Proc(f"node {i}", args, root / f"node{i}.log")

    def _make_pki(self) -> list[str]:
        spec = ",".join(f"{i}=127.0.0.1+localhost" for i in (1, 2, 3))
        subprocess.run([str(bifrostctl_bin()), "certs", "init", str(self.pki), "--nodes", spec], check=True,
                       capture_output=True)
        pw = self.root / "admin-password"
        pw.write_text(ADMIN_PASSWORD + "\n")
        p = self.pki
        return ["--tls-cert", f"{p}/node-{{id}}.pem", "--tls-key", f"{p}/node-{{id}}.key",
                "--tls-ca", f"{p}/ca.pem", "--data-key-file", f"{p}/data.key", "--admin-password-file", str(pw)]

    @property
    def endpoints(self) -> list[str]:
        return [self.grpc[i] for i in (1, 2, 3)]

    def client_args(self) -> dict[str, str]:
        """TLS files of a client presenting the admin's certificate."""
        if not self.tls:
            return {}
        return {"ca": f"{self.pki}/ca.pem", "cert": f"{self.pki}/user-admin.pem", "key": f"{self.pki}/user-admin.key"}

    def start(self) -> None:
        for p in self.nodes.values():
            p.start()
        self.wait_leader()

    def kill(self, node: int) -> None:
        self.nodes[node].kill()

    def restart(self, node: int) -> None:
        self.nodes[node].start()

    def stop(self) -> None:
        for p in self.nodes.values():
            p.kill(signal.SIGTERM)

    def wait_leader(self, timeout: float = 60.0) -> int:
        """Waits until every running node knows the same leader; returns its id."""
        end = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < end:
            try:
                leaders = set()
                for i, p in self.nodes.items():
                    if p.popen and p.popen.poll() is None:
                        with bc.Client([self.grpc[i]], timeout=1, deadline=1, **self.client_args()) as c:
                            leaders.add(c.status().leader_id)
                if len(leaders) == 1 and 0 not in leaders:
                    return leaders.pop()
                last = leaders
            except bc.BifrostError as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError(f"no leader within {timeout}s (last: {last})\n{self.tails()}")

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.nodes.values())


def start_sim(root: Path, tags: int = 2, devices: int = 1) -> tuple[Proc, str]:
    """``bifrost sim`` (unit ids 1..devices); with ``tags=2`` its writable registers start at hr:5."""
    addr = f"127.0.0.1:{free_port()}"
    sim = Proc("sim", [str(bifrost_bin()), "sim", "--listen", addr, "--devices", str(devices), "--tags", str(tags)],
               root / "sim.log")
    sim.start()
    host, port = addr.split(":")
    end = time.monotonic() + 20
    while time.monotonic() < end:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return sim, addr
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"simulator did not listen on {addr}\n{sim.tail()}")


GATEWAY_DIR = Path(__file__).parents[2] / "examples" / "python-gateway"


def start_gateway(root: Path, config: dict[str, Any], extra_path: Sequence[Path] = ()) -> tuple[Proc, str, Path]:
    """The reference gateway with ``config`` (written as JSON, which is YAML) and its store in
    ``root``; returns the process, its HTTP base URL and the store's path. ``extra_path`` goes
    on its PYTHONPATH (hook modules)."""
    cfg, db, http = root / "gateway.yaml", root / "gateway.db", f"127.0.0.1:{free_port()}"
    cfg.write_text(json.dumps(config))
    args = [sys.executable, "-m", "gateway", "--config", str(cfg), "--db", str(db), "--http", http,
            "--log-level", "warning"]
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    path = os.pathsep.join(str(p) for p in [GATEWAY_DIR, *extra_path, *inherited])
    gw = Proc("gateway", args, root / "gateway.log", cwd=GATEWAY_DIR, env={**os.environ, "PYTHONPATH": path})
    gw.start()
    return gw, f"http://{http}", db
