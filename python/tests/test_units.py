"""The shared non-I/O logic: endpoints, retry decisions, conversions, error text."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

import grpc
import pytest

import bifrost_client as bc
from bifrost_client import _policy as policy
from bifrost_client import types as t


class FakeError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "x", trailers: tuple = ()) -> None:  # type: ignore[type-arg]
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:  # type: ignore[type-arg]
        return self._trailers

    def initial_metadata(self) -> tuple:  # type: ignore[type-arg]
        return ()


def cluster(n: int = 3, deadline: float = 30) -> policy.Cluster:
    return policy.Cluster.of([f"10.0.0.{i}:7001" for i in range(1, n + 1)], policy.Security(),
                             policy.Options(deadline=deadline))


def test_endpoints_get_the_scheme_and_are_checked() -> None:
    sec = policy.Security()
    assert policy.normalize_endpoint(" node-2:7002 ", sec) == "http://node-2:7002"
    assert policy.normalize_endpoint("http://[::1]:7003/", sec) == "http://[::1]:7003"
    for bad in ["node-1", "https://node-1:7001", "node-1:port", "node-1:7001/x"]:
        with pytest.raises(bc.BifrostError):
            policy.normalize_endpoint(bad, sec)
    assert cluster().urls[0] == "http://10.0.0.1:7001"
    assert policy.Cluster.of("a:1,b:2", policy.Security(), policy.Options()).urls == ["http://a:1", "http://b:2"]


def test_request_errors_are_final_and_outages_are_retried_on_the_next_node() -> None:
    for code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                 grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                 grpc.StatusCode.RESOURCE_EXHAUSTED):
        plan = policy.Attempts(cluster(), policy.NORMAL)
        plan.budget()
        with pytest.raises(bc.BifrostError) as e:
            plan.after_failure(0, FakeError(code, "nope"), True)
        assert e.value.code == code and e.value.message == "nope" and not e.value.gave_up
    c = cluster()
    plan = policy.Attempts(c, policy.NORMAL)
    plan.budget()
    assert 0 < plan.after_failure(0, FakeError(grpc.StatusCode.UNAVAILABLE), True) <= 0.05
    assert c.pick() == (1, True)


def test_a_leader_hint_is_trusted_and_retry_after_waits() -> None:
    c = cluster()
    plan = policy.Attempts(c, policy.NORMAL)
    plan.budget()
    hint = (("bifrost-leader", "3=10.0.0.9:7001"),)
    plan.after_failure(0, FakeError(grpc.StatusCode.UNAVAILABLE, "not the leader", hint), True)
    assert c.leader_url() == "http://10.0.0.9:7001" and c.pick() == (3, False)
    busy = FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy", (("retry-after-ms", "200"),))
    assert 0.2 <= plan.after_failure(0, busy, True) <= 0.3


def test_a_sent_write_is_never_repeated_but_an_unconnected_one_is() -> None:
    plan = policy.Attempts(cluster(), policy.WRITE)
    plan.budget()
    with pytest.raises(bc.UnconfirmedWrite) as e:
        plan.after_failure(0, FakeError(grpc.StatusCode.DEADLINE_EXCEEDED, "slow"), True)
    assert "read the tag before writing again" in str(e.value)
    refused = FakeError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert plan.after_failure(0, refused, True) >= 0


def test_gives_up_after_the_deadline() -> None:
    plan = policy.Attempts(cluster(deadline=0), policy.NORMAL)
    plan.budget()
    with pytest.raises(bc.Unavailable) as e:
        plan.after_failure(1, FakeError(grpc.StatusCode.UNAVAILABLE, "down"), True)
    assert e.value.gave_up and e.value.endpoint == "http://10.0.0.2:7001"
    assert str(e.value).startswith("Unavailable: down (gave up after 1 attempts in ")


def test_compacted_carries_the_oldest_revision() -> None:
    err = policy.to_error(FakeError(grpc.StatusCode.OUT_OF_RANGE, "compacted: revision 3 is compacted",
                                    (("bifrost-oldest-revision", "10"),)))
    assert isinstance(err, bc.Compacted) and isinstance(err, bc.OutOfRange) and err.oldest_revision == 10


@pytest.mark.parametrize("value,kind", [(True, "bool_value"), (3, "int_value"), (2.5, "float_value"),
                                        ("s", "string_value")])
def test_values_keep_their_python_type(value: t.PyValue, kind: str) -> None:
    pbv = t.value_to_pb(value)
    assert pbv.WhichOneof("kind") == kind
    back: Optional[t.PyValue] = t.value_from_pb(pbv)
    assert back == value and type(back) is type(value)


def test_timestamps_are_utc_microseconds() -> None:
    ts = datetime(2024, 5, 1, 12, 0, 0, 250, tzinfo=timezone.utc)
    assert t.ts_to_us(ts) == 1714564800000250 and t.us_to_ts(1714564800000250) == ts
    assert t.ts_to_us(ts.replace(tzinfo=None)) == 1714564800000250
    r = t.reading_from_pb(t.reading_to_pb(bc.Reading("a/b", ts, None, bc.Quality(bc.QualityLevel.BAD, "timeout"))))
    assert (r.tag, r.ts, r.value, r.quality.reason) == ("a/b", ts, None, "timeout")
