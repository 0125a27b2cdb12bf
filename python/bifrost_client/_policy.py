"""What the sync and async clients share that does no I/O.

The cluster view (known nodes, rotation, leader and when it was learnt), the
kinds of call, the retry decision after a failure, the per-attempt timeout,
credentials and the mapping of gRPC failures to ``BifrostError``. The
clients only add the waiting: each call runs

    plan = Attempts(cluster, kind)
    loop: target, discover = cluster.pick(); [Status -> cluster.learn()]
          call with timeout plan.budget(); on failure sleep plan.after_failure(...)

exactly as the Rust client (``client/src/client.rs``) does.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import grpc

from . import errors
from ._proto import bifrost_pb2 as pb

PathLike = Union[str, Path]

MAX_MESSAGE = 64 << 20
"""History chunks and replies can be large: gRPC's default 4 MiB is too tight."""

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    # Notice a silently dead peer on an idle-looking connection (5 s, as Rust).
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.http2.max_pings_without_data", 0),
    # A restarted node is reachable again within a second, not gRPC's minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass(frozen=True)
class Options:
    """Timing of attempts and retries (the Rust client's defaults)."""

    timeout: float = 5.0
    """How long one attempt may wait for its answer."""
    deadline: float = 30.0
    """Overall budget of one call, retries included. The first attempt is always made."""
    backoff_initial: float = 0.05
    backoff_max: float = 1.0
    leader_ttl: float = 10.0


@dataclass(frozen=True)
class CallKind:
    discover: bool = True
    """Find the leader first (all calls but status, login and node-local reads)."""
    long: bool = False
    """One attempt may use the whole remaining deadline."""
    idempotent: bool = True
    """False: a request that may have reached a node is never sent again."""


NORMAL = CallKind()
LONG = CallKind(long=True)
STATUS = CallKind(discover=False)
ANY = CallKind(discover=False)
"""Subscriptions, local reads and login: the next node in the rotation."""
WRITE = CallKind(long=True, idempotent=False)


class Security:
    """Plain text, or TLS checked against ``ca`` with an optional client certificate."""

    def __init__(
        self,
        ca: Optional[PathLike] = None,
        cert: Optional[PathLike] = None,
        key: Optional[PathLike] = None,
    ) -> None:
        if (cert is None) != (key is None):
            raise errors.BifrostError("give both cert= and key=, or neither")
        if cert is not None and ca is None:
            raise errors.BifrostError("a client certificate (cert=, key=) needs the cluster CA (ca=)")
        self.tls = ca is not None
        self._ca = _read(ca, "ca") if ca is not None else None
        self._cert = _read(cert, "cert") if cert is not None else None
        self._key = _read(key, "key") if key is not None else None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self._ca, self._key, self._cert)


def _read(path: PathLike, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise errors.BifrostError(f"{what} file {path}: {e.strerror}") from e


def normalize_endpoint(addr: str, security: Security) -> str:
    """``HOST:PORT`` or a URL of the client's scheme, as ``scheme://HOST:PORT``."""
    text = addr.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = security.scheme, text
    if scheme != security.scheme:
        hint = "give the cluster's CA (ca=)" if scheme == "https" else "this client uses TLS"
        raise errors.BifrostError(f"invalid endpoint {addr!r}: {scheme}:// URL, but {hint}")
    host_port = rest.rstrip("/")
    host, colon, port = host_port.rpartition(":")
    if not colon or not host or not port.isdigit() or "/" in host_port:
        raise errors.BifrostError(f"invalid endpoint {addr!r}: expected HOST:PORT")
    return f"{scheme}://{host_port}"


def target_of(url: str) -> str:
    """The gRPC target (``HOST:PORT``) of a normalized endpoint URL."""
    return url.partition("://")[2]


@dataclass
class Cluster:
    """The nodes known, the rotation and the leader; thread-safe; no I/O."""

    security: Security
    options: Options
    urls: list[str] = field(default_factory=list)
    next: int = 0
    leader: Optional[int] = None
    learnt_at: Optional[float] = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, endpoints: Union[str, Sequence[str]], security: Security, options: Options) -> "Cluster":
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        c = cls(security, options)
        for e in (part for item in endpoints for part in item.split(",")):
            if e.strip():
                c.node_index(e)
        if not c.urls:
            raise errors.BifrostError("no endpoints given")
        return c

    def node_index(self, addr: str) -> int:
        """Index of the node at ``addr``, added if new (a node learnt from the cluster)."""
        url = normalize_endpoint(addr, self.security)
        if url not in self.urls:
            self.urls.append(url)
        return self.urls.index(url)

    def pick(self) -> tuple[int, bool]:
        """The node to use and whether the leader must be (re)discovered first."""
        with self.lock:
            fresh = self.learnt_at is not None and time.monotonic() - self.learnt_at < self.options.leader_ttl
            return (self.leader if self.leader is not None else self.next), not fresh

    def learn(self, answered: int, status: pb.StatusResponse) -> int:
        """Records a Status answer; returns the node to send to (the leader, else ``answered``)."""
        with self.lock:
            self.learnt_at = time.monotonic()
            self.leader = None
            if status.leader_id and status.leader_addr:
                self.leader = self._known(status.leader_addr)
            if self.leader is None:
                self.next = answered
                return answered
            return self.leader

    def hint_leader(self, addr: str) -> None:
        """Trusts a ``bifrost-leader`` hint until the TTL."""
        with self.lock:
            i = self._known(addr)
            if i is not None:
                self.leader, self.learnt_at = i, time.monotonic()

    def forget(self, i: int) -> str:
        """After a retryable failure on node ``i``: forget the leader, rotate past it."""
        with self.lock:
            if self.leader == i:
                self.leader = None
            self.learnt_at = None
            self.next = (i + 1) % len(self.urls)
            return self.urls[i]

    def leader_url(self) -> Optional[str]:
        with self.lock:
            return None if self.leader is None else self.urls[self.leader]

    def _known(self, addr: str) -> Optional[int]:
        try:
            return self.node_index(addr)
        except errors.BifrostError:
            return None


def _md(err: grpc.RpcError, key: str) -> Optional[str]:
    """A metadata value of a failed call (trailers, or headers of a trailers-only answer)."""
    for getter in ("trailing_metadata", "initial_metadata"):
        try:
            md = getattr(err, getter)() or ()
        except Exception:  # a local failure may have no metadata at all
            continue
        for k, v in md:
            if k == key:
                return v.decode() if isinstance(v, bytes) else str(v)
    return None


def code_of(err: grpc.RpcError) -> grpc.StatusCode:
    code = err.code()
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def details_of(err: grpc.RpcError) -> str:
    return str(err.details() or "")


def retry_after(err: grpc.RpcError) -> Optional[float]:
    """Seconds an overloaded node asked to wait (RESOURCE_EXHAUSTED with ``retry-after-ms``)."""
    if code_of(err) != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    ms = _md(err, "retry-after-ms")
    return int(ms) / 1000 if ms and ms.isdigit() else None


def is_retryable(err: grpc.RpcError) -> bool:
    """The node is down or without a leader, or the attempt timed out, or it said when to retry."""
    if retry_after(err) is not None:
        return True
    return code_of(err) in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
    )


def never_connected(err: grpc.RpcError) -> bool:
    """Whether the request cannot have left the client: the connection was never made."""
    text = details_of(err).lower()
    return code_of(err) == grpc.StatusCode.UNAVAILABLE and (
        "failed to connect" in text or "connection refused" in text
    )


def leader_hint(err: grpc.RpcError) -> Optional[str]:
    """The ``HOST:PORT`` in a refusal's ``bifrost-leader`` metadata (``ID=HOST:PORT``)."""
    v = _md(err, "bifrost-leader")
    if not v or "=" not in v:
        return None
    addr = v.split("=", 1)[1].strip()
    return addr or None


def to_error(err: grpc.RpcError, **kw: object) -> errors.BifrostError:
    """The ``BifrostError`` subclass for a failed call, with the server's message."""
    code = code_of(err)
    message = details_of(err)
    if code == grpc.StatusCode.OUT_OF_RANGE and "compacted" in message:
        oldest = _md(err, "bifrost-oldest-revision")
        return errors.Compacted(
            message, oldest_revision=int(oldest) if oldest and oldest.isdigit() else None, code=code, **kw
        )
    return errors.error_class(code)(message, code=code, **kw)  # type: ignore[arg-type]


class Attempts:
    """One call's retry state: budget per attempt, and what to do after a failure."""

    def __init__(self, cluster: Cluster, kind: CallKind) -> None:
        self.cluster, self.kind = cluster, kind
        self.start = time.monotonic()
        self.deadline = self.start + cluster.options.deadline
        self.backoff = cluster.options.backoff_initial
        self.attempts = 0

    def budget(self) -> float:
        """Seconds the next attempt may take (counts the attempt)."""
        self.attempts += 1
        remaining = self.deadline - time.monotonic()
        if not self.kind.long:
            remaining = min(self.cluster.options.timeout, remaining)
        return max(remaining, 0.01)

    def after_failure(self, node: int, err: grpc.RpcError, sent: bool) -> float:
        """Seconds to sleep before the next attempt; raises when the call is over."""
        url = self.cluster.urls[node]
        if not is_retryable(err):
            raise to_error(err, endpoint=url, attempts=self.attempts, elapsed=self._elapsed()) from None
        remaining = self.deadline - time.monotonic()
        wait = retry_after(err)
        if wait is not None:  # overloaded and did nothing: same node, after the hint
            if remaining <= wait:
                raise self._gave_up(err, url)
            return min(wait * random.uniform(1.0, 1.5), remaining)
        if not self.kind.idempotent and sent and not never_connected(err):
            self.cluster.forget(node)
            raise errors.UnconfirmedWrite(details_of(err), code=code_of(err), endpoint=url) from None
        self.cluster.forget(node)
        hint = leader_hint(err)
        if hint:
            self.cluster.hint_leader(hint)
        if remaining < 0.01:
            raise self._gave_up(err, url)
        sleep = min(self.backoff * random.uniform(0.5, 1.0), remaining)
        self.backoff = min(self.backoff * 2, self.cluster.options.backoff_max)
        return sleep

    def _elapsed(self) -> float:
        return time.monotonic() - self.start

    def _gave_up(self, err: grpc.RpcError, url: str) -> errors.BifrostError:
        return to_error(err, endpoint=url, attempts=self.attempts, elapsed=self._elapsed(), gave_up=True)


def auth_metadata(token: Optional[str]) -> tuple[tuple[str, str], ...]:
    """``authorization: Bearer TOKEN`` for every call while a token is set."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class Failure(Exception):
    """One failed attempt: the node, the gRPC error, and whether the request was sent
    (False: it failed in leader discovery)."""

    def __init__(self, node: int, err: grpc.RpcError, sent: bool) -> None:
        super().__init__(str(err))
        self.node, self.err, self.sent = node, err, sent
