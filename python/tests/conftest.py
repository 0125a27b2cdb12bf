"""Fixtures: one real three-node cluster at a time (plain, then TLS), started once
per kind and stopped at the end; a client on it; the Modbus simulator."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import pytest

import bifrost_client as bc
from _cluster import Cluster, Proc, start_sim


class Clusters:
    """Starts a cluster of the kind asked for, stopping the other first (two cores)."""

    def __init__(self) -> None:
        self.current: Optional[Cluster] = None
        self.root = Path(tempfile.mkdtemp(prefix="bifrost-pytest-"))
        self.failed = False

    def get(self, tls: bool) -> Cluster:
        if self.current is not None and self.current.tls == tls:
            return self.current
        self.stop()
        c = Cluster(self.root / ("tls" if tls else "plain"), tls)
        (c.root).mkdir(parents=True, exist_ok=True)
        self.current = c
        c.start()
        return c

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Plain-cluster tests first, TLS tests last: each cluster is started once."""
    items.sort(key=lambda it: "tls_cluster" in getattr(it, "fixturenames", ()))


@pytest.fixture(scope="session")
def clusters(request: pytest.FixtureRequest) -> Iterator[Clusters]:
    cs = Clusters()
    yield cs
    cs.stop()
    if request.session.testsfailed:
        print(f"\ncluster logs kept in {cs.root}")
    else:
        shutil.rmtree(cs.root, ignore_errors=True)


@pytest.fixture
def cluster(clusters: Clusters) -> Cluster:
    c = clusters.get(tls=False)
    # A test that killed a node restarts it; make sure all three run.
    for i, p in c.nodes.items():
        if p.popen is None or p.popen.poll() is not None:
            c.restart(i)
            c.wait_leader()
    return c


@pytest.fixture
def tls_cluster(clusters: Clusters) -> Cluster:
    return clusters.get(tls=True)


@pytest.fixture
def client(cluster: Cluster) -> Iterator[bc.Client]:
    with bc.Client(cluster.endpoints, timeout=5, deadline=30) as c:
        yield c


@pytest.fixture
def sim(cluster: Cluster) -> Iterator[tuple[Proc, str]]:
    proc, addr = start_sim(cluster.root)
    yield proc, addr
    proc.kill()
