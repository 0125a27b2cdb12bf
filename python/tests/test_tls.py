"""A TLS cluster with users: password login, a certificate-only client, refusals."""

from __future__ import annotations

import grpc
import pytest

import bifrost_client as bc
from _cluster import ADMIN_PASSWORD, Cluster


def test_login_with_the_admin_password_then_calls_carry_the_token(tls_cluster: Cluster) -> None:
    ca = f"{tls_cluster.pki}/ca.pem"
    with bc.Client(tls_cluster.endpoints, ca=ca) as c:
        with pytest.raises(bc.Unauthenticated) as e:
            c.list_devices()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(bc.Unauthenticated):
            c.login("admin", "wrong password")
        resp = c.login("admin", ADMIN_PASSWORD)
        assert resp.token and c.token == resp.token and resp.user.name == "admin"
        assert c.whoami().via == "token"
        c.put_device(bc.Device(name="tls-dev", protocol="modbus-tcp", endpoint="127.0.0.1:1502", unit_id=1,
                               poll_interval_ms=1000, timeout_ms=500))
        assert "tls-dev" in [d.name for d in c.list_devices()]
        assert all(u.startswith("https://") for u in c.endpoints)
        token = c.token
        c.logout()
        assert c.token is None
    with bc.Client(tls_cluster.endpoints, ca=ca, token=token) as stale:
        with pytest.raises(bc.Unauthenticated):
            stale.list_devices()


def test_a_certificate_alone_authenticates(tls_cluster: Cluster) -> None:
    with bc.Client(tls_cluster.endpoints, **tls_cluster.client_args()) as c:
        me = c.whoami()
        assert (me.user.name, me.via) == ("admin", "certificate")
        assert c.status().leader_id in (1, 2, 3)


def test_plain_text_to_a_tls_node_fails_without_retrying_forever(tls_cluster: Cluster) -> None:
    with bc.Client(tls_cluster.endpoints[:1], timeout=1, deadline=2) as c:
        with pytest.raises(bc.BifrostError) as e:
            c.list_devices()
    assert e.value.code is not None


def test_tls_file_problems_are_named() -> None:
    with pytest.raises(bc.BifrostError, match="no-such-ca.pem"):
        bc.Client(["127.0.0.1:1"], ca="/no-such-ca.pem")
    with pytest.raises(bc.BifrostError, match="cluster CA"):
        bc.Client(["127.0.0.1:1"], cert="a.pem", key="a.key")
    with pytest.raises(bc.BifrostError, match="https"):
        bc.Client(["https://127.0.0.1:1"])
