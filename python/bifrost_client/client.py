"""``Client``: a blocking handle on a whole Bifrost cluster.

One lazily connected gRPC channel per known node; every call finds the
leader (``Status``, trusted for ``leader_ttl``), is sent with a per-attempt
timeout and is retried on another node on retryable failures until the
overall deadline, as ``_policy`` decides. ``watch`` returns an iterator that
survives node failures.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Sequence, TypeVar, Union

import grpc

from . import _ops as ops
from . import frames
from . import _policy as policy
from . import types as t
from ._proto import bifrost_pb2 as pb
from ._proto.bifrost_pb2_grpc import BifrostStub
from ._watch import RECONNECT_PAUSE, WatchState, WatchView

if TYPE_CHECKING:  # pragma: no cover
    import polars

T = TypeVar("T")
LINEARIZABLE = t.Consistency.LINEARIZABLE


class _Base:
    """Construction, credentials and channels, common to ``Client`` and ``AsyncClient``."""

    def __init__(
        self,
        endpoints: Union[str, Sequence[str]],
        *,
        ca: Optional[policy.PathLike] = None,
        cert: Optional[policy.PathLike] = None,
        key: Optional[policy.PathLike] = None,
        token: Optional[str] = None,
        timeout: float = 5.0,
        deadline: float = 30.0,
        options: Optional[policy.Options] = None,
    ) -> None:
        opts = options or policy.Options(timeout=timeout, deadline=deadline)
        self._security = policy.Security(ca, cert, key)
        self._cluster = policy.Cluster.of(endpoints, self._security, opts)
        self.token: Optional[str] = token
        """Session token sent as ``authorization: Bearer TOKEN`` (set by ``login``)."""
        self._stubs: dict[str, BifrostStub] = {}
        self._channels: list[Any] = []
        self._lock = threading.Lock()

    @property
    def endpoints(self) -> list[str]:
        """URLs of all nodes known, including leaders learnt from the cluster."""
        return list(self._cluster.urls)

    @property
    def leader(self) -> Optional[str]:
        """URL of the leader as last learnt."""
        return self._cluster.leader_url()

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return policy.auth_metadata(self.token)

    def _stub(self, node: int) -> BifrostStub:
        url = self._cluster.urls[node]
        with self._lock:
            if url not in self._stubs:
                channel = self._new_channel(policy.target_of(url))
                self._channels.append(channel)
                self._stubs[url] = BifrostStub(channel)
            return self._stubs[url]

    def _channel_args(self, target: str) -> tuple[Any, ...]:
        if self._security.tls:
            return (target, self._security.credentials(), policy.CHANNEL_OPTIONS)
        return (target, policy.CHANNEL_OPTIONS)

    def _new_channel(self, target: str) -> Any:
        raise NotImplementedError


class Client(_Base):
    """A blocking client. ``Client(["h1:7001", "h2:7001"], ca=..., token=...)``.

    Thread-safe; close it (or use ``with``) to release the connections.
    """

    def _new_channel(self, target: str) -> grpc.Channel:
        if self._security.tls:
            return grpc.secure_channel(*self._channel_args(target))
        return grpc.insecure_channel(*self._channel_args(target))

    def close(self) -> None:
        with self._lock:
            for c in self._channels:
                c.close()
            self._channels.clear()
            self._stubs.clear()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the call loop -----------------------------------------------------

    def _run(self, op: ops.Op[T]) -> T:
        return op.convert(self._call(op.kind, lambda stub, left: self._invoke(stub, op, left))[0])

    def _invoke(self, stub: BifrostStub, op: ops.Op[Any], left: float) -> Any:
        rpc = getattr(stub, op.method)
        if op.streaming:
            return list(rpc(op.request, timeout=left, metadata=self._metadata()))
        return rpc(op.request, timeout=left, metadata=self._metadata())

    def _call(self, kind: policy.CallKind, fn: Callable[[BifrostStub, float], T]) -> tuple[T, int]:
        """Runs ``fn`` on the best node until it succeeds, fails for good or the deadline passes."""
        plan = policy.Attempts(self._cluster, kind)
        while True:
            try:
                return self._attempt(kind, plan.budget(), fn)
            except policy.Failure as f:
                time.sleep(plan.after_failure(f.node, f.err, f.sent))

    def _attempt(self, kind: policy.CallKind, budget: float, fn: Callable[[BifrostStub, float], T]) -> tuple[T, int]:
        begun = time.monotonic()
        target, stale = self._cluster.pick()
        if kind.discover and stale:
            try:
                status = self._stub(target).Status(pb.StatusRequest(), timeout=budget, metadata=self._metadata())
            except grpc.RpcError as e:
                raise policy.Failure(target, e, False) from None
            target = self._cluster.learn(target, status)
        left = max(budget - (time.monotonic() - begun), 0.01)
        try:
            return fn(self._stub(target), left), target
        except grpc.RpcError as e:
            raise policy.Failure(target, e, True) from None

    # -- cluster and sessions ----------------------------------------------

    def status(self) -> pb.StatusResponse:
        """Cluster status from the leader if known, else the first node that answers."""
        op = ops.status()
        resp, node = self._call(op.kind, lambda stub, left: self._invoke(stub, op, left))
        self._cluster.learn(node, resp)
        return resp

    def login(self, user: str, password: str) -> pb.LoginResponse:
        """Starts a session; its token is sent with every later call."""
        resp = self._run(ops.login(user, password))
        self.token = resp.token
        return resp

    def logout(self) -> None:
        """Ends the session and forgets the token (also when the call fails)."""
        try:
            self._run(ops.logout())
        finally:
            self.token = None

    def whoami(self) -> pb.WhoAmIResponse:
        return self._run(ops.whoami())

    def set_retention(self, seconds: int) -> int:
        """How long history is kept (0: forever)."""
        return self._run(ops.set_retention(seconds))

    # -- devices and tags --------------------------------------------------

    def put_device(
        self, device: pb.Device, *, create_only: bool = False, expected_revision: Optional[int] = None
    ) -> pb.Device:
        """Creates or replaces a device (compare-and-set with ``expected_revision``)."""
        return self._run(ops.put_device(device, create_only, expected_revision))

    def delete_device(self, name: str) -> int:
        return self._run(ops.delete_device(name))

    def list_devices(self, consistency: t.Consistency = LINEARIZABLE) -> list[pb.Device]:
        return self._run(ops.list_devices(consistency))

    def put_tag(self, tag: pb.Tag, *, create_only: bool = False, expected_revision: Optional[int] = None) -> pb.Tag:
        return self._run(ops.put_tag(tag, create_only, expected_revision))

    def delete_tag(self, name: str, *, purge: bool = False) -> int:
        return self._run(ops.delete_tag(name, purge))

    def list_tags(self, device: Optional[str] = None, consistency: t.Consistency = LINEARIZABLE) -> list[pb.Tag]:
        return self._run(ops.list_tags(device, consistency))

    def import_config(self, doc: t.ConfigDocument) -> tuple[int, int]:
        """Creates or replaces all devices and tags of ``doc``, all or nothing; (devices, tags)."""
        return self._run(ops.import_config(doc))

    def export(self) -> t.ConfigDocument:
        """All devices and tags, sorted by name (``ConfigDocument.to_json`` for the file)."""
        devices, tags = self.list_devices(), self.list_tags()
        if ops.needs_relist(devices, tags):
            devices = self.list_devices()
        return ops.snapshot(devices, tags)

    # -- readings ----------------------------------------------------------

    def ingest(self, readings: Iterable[Union[t.Reading, pb.Reading]], *, partial: bool = False) -> t.IngestResult:
        """Stores a batch (at most 10,000). Safe to retry: ids already stored count as duplicates.
        All or nothing, unless ``partial``: then the valid readings are stored and the others
        listed in ``IngestResult.rejected``."""
        return self._run(ops.ingest(readings, partial))

    def get(self, tags: Union[str, Sequence[str]], consistency: t.Consistency = LINEARIZABLE) -> list[t.Reading]:
        """Current value of each tag that has one, in request order."""
        return self._run(ops.get([tags] if isinstance(tags, str) else tags, consistency))

    def history(
        self,
        tag: str,
        start: Optional[ops.Time] = None,
        end: Optional[ops.Time] = None,
        *,
        limit: int = 0,
        consistency: t.Consistency = LINEARIZABLE,
    ) -> list[t.Reading]:
        """Readings of ``tag`` in ``[start, end)`` in time order (datetimes or epoch seconds)."""
        return self._run(ops.history(tag, start, end, limit, consistency))

    def query(self, sql: str, consistency: t.Consistency = LINEARIZABLE) -> t.QueryResult:
        """Runs a SQL query (README "Queries"); rows as tuples of Python values."""
        return self._run(ops.query(sql, consistency))

    def query_df(self, sql: str, consistency: t.Consistency = LINEARIZABLE) -> "polars.DataFrame":
        """``query`` as a ``polars.DataFrame``, sent as Arrow record batches (``frames``; needs polars)."""
        return self._run(frames.query_df(sql, consistency))

    def history_df(
        self,
        tags: Union[str, Sequence[str]],
        start: Optional[ops.Time] = None,
        end: Optional[ops.Time] = None,
        *,
        consistency: t.Consistency = LINEARIZABLE,
    ) -> "polars.DataFrame":
        """Readings of ``tags`` in ``[start, end)`` as a ``polars.DataFrame`` by tag and time
        (columns ``tag, ts, value, [value_text], quality, reason``; see ``frames``)."""
        return self._run(frames.history_df(tags, start, end, consistency))

    def write(self, tag: str, value: t.PyValue) -> t.WriteResult:
        """Writes to the device behind ``tag`` and reads it back. Never re-sent once it may
        have reached a node: such a failure is ``UnconfirmedWrite``."""
        return self._run(ops.write(tag, value))

    def watch(
        self,
        patterns: Union[str, Sequence[str]] = (),
        *,
        tags: Sequence[str] = (),
        from_revision: Optional[int] = None,
        progress_ms: int = 0,
    ) -> "Watch":
        """Committed readings matching ``patterns`` (globs) or ``tags``, in revision order,
        after ``from_revision`` (None: from now). Resumes on another node on failure."""
        pats = [patterns] if isinstance(patterns, str) else patterns
        state = WatchState(pats, tags, from_revision, progress_ms, self._cluster.options.deadline)
        return Watch(self, state)

    def _open_watch(self, req: pb.WatchRequest) -> tuple[Any, int]:
        return self._call(policy.ANY, lambda stub, _left: stub.Watch(req, metadata=self._metadata()))


class Watch(WatchView, Iterator[t.Reading]):
    """An iterator of readings that reconnects from the last revision seen; ``close()`` ends it."""

    _client: Client

    def __iter__(self) -> "Watch":
        return self

    def __next__(self) -> t.Reading:
        while not self._buf:
            self._step()
        return self._buf.popleft()

    def _step(self) -> None:
        if self._stream is None:
            self._stream, self._node = self._client._open_watch(self._state.request())
        try:
            self._buf.extend(self._state.on_message(next(self._stream)))
            return
        except StopIteration:
            err: Optional[grpc.RpcError] = None
        except grpc.RpcError as e:
            err = e
        self._stream = None
        if self._state.on_error(err):
            self._client._cluster.forget(self._node)
        time.sleep(RECONNECT_PAUSE)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
