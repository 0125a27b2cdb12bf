"""watch: readings in revision order, resumed on another node across a SIGKILL."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone

import pytest

import bifrost_client as bc
from _cluster import Cluster


def make_tags(client: bc.Client, prefix: str, n: int) -> list[str]:
    dev = f"{prefix}-dev"
    client.put_device(bc.Device(name=dev, protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                                poll_interval_ms=1000, timeout_ms=500, enabled=False))
    names = [f"{prefix}/t{k}" for k in range(n)]
    client.import_config(bc.ConfigDocument([], [bc.Tag(name=x, device=dev, address="hr:1", data_type="i64")
                                                for x in names]))
    return names


def test_watch_resumes_across_the_death_of_its_node(cluster: Cluster, client: bc.Client) -> None:
    prefix = f"w{uuid.uuid4().hex[:6]}"
    tags = make_tags(client, prefix, 3)
    start = client.ingest([bc.Reading(tags[0], datetime.now(timezone.utc), -1, id=f"{prefix}-start")])
    ingested: list[str] = []
    errors: list[BaseException] = []
    killed = threading.Event()

    def ingest() -> None:
        try:
            with bc.Client(cluster.endpoints) as w:
                for b in range(60):
                    batch = [bc.Reading(tags[k % 3], datetime.now(timezone.utc), b * 10 + k, id=f"{prefix}-{b}-{k}")
                             for k in range(5)]
                    w.ingest(batch)
                    ingested.extend(r.id for r in batch)
                    if b >= 20:
                        killed.wait(30)
                    time.sleep(0.02)
                w.ingest([bc.Reading(tags[0], datetime.now(timezone.utc), 0, id=f"{prefix}-end")])
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    seen: list[bc.Reading] = []
    victim = None
    with client.watch(f"{prefix}/**", from_revision=start.last_revision, progress_ms=200) as w:
        t = threading.Thread(target=ingest, daemon=True)
        t.start()
        for r in w:
            seen.append(r)
            if victim is None and len(seen) >= 40:
                victim = w.node_id
                assert victim is not None
                cluster.kill(victim)
                killed.set()
            if r.id == f"{prefix}-end" or errors:
                break
        reconnects, served_by = w.reconnects, w.node_id
    t.join(30)
    assert not errors, errors
    ids = [r.id for r in seen]
    assert ids[-1] == f"{prefix}-end"
    assert len(ids) == len(set(ids)), "a reading was delivered twice"
    assert set(ids[:-1]) == set(ingested), "a reading was missed"
    revs = [r.revision for r in seen]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)
    assert reconnects >= 1 and served_by != victim


def test_progress_moves_the_resume_point(client: bc.Client) -> None:
    prefix = f"p{uuid.uuid4().hex[:6]}"
    tags = make_tags(client, prefix, 1)
    res = client.ingest([bc.Reading(tags[0], datetime.now(timezone.utc), 1, id=f"{prefix}-1")])
    w = client.watch(tags=tags, from_revision=res.last_revision - 1, progress_ms=100)
    first = next(w)
    assert (first.id, first.value) == (f"{prefix}-1", 1)
    assert w.last_revision is not None and w.last_revision >= res.last_revision
    w.close()
    with pytest.raises(bc.InvalidArgument):
        next(client.watch("a/[", progress_ms=100))
