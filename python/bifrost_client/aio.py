"""``AsyncClient``: the ``Client`` API as coroutines, on ``grpc.aio``.

Same leader discovery, retries, timeouts and credentials (the shared logic
is in ``_policy``, ``_ops`` and ``_watch``); only the waiting is asynchronous.
``watch`` returns an async iterator. Use it inside one event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Optional, Sequence, TypeVar, Union

import grpc
import grpc.aio

from . import _ops as ops
from . import frames
from . import _policy as policy
from . import types as t
from ._proto import bifrost_pb2 as pb
from ._proto.bifrost_pb2_grpc import BifrostStub
from ._watch import RECONNECT_PAUSE, WatchState, WatchView
from .client import LINEARIZABLE, _Base

if TYPE_CHECKING:  # pragma: no cover
    import polars

T = TypeVar("T")


class AsyncClient(_Base):
    """``async with AsyncClient([...]) as c: await c.get("line1/t")``."""

    def _new_channel(self, target: str) -> grpc.aio.Channel:
        if self._security.tls:
            return grpc.aio.secure_channel(*self._channel_args(target))
        return grpc.aio.insecure_channel(*self._channel_args(target))

    async def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, []
            self._stubs.clear()
        for c in channels:
            await c.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the call loop -----------------------------------------------------

    async def _run(self, op: ops.Op[T]) -> T:
        resp, _ = await self._call(op.kind, lambda stub, left: self._invoke(stub, op, left))
        return op.convert(resp)

    async def _invoke(self, stub: BifrostStub, op: ops.Op[Any], left: float) -> Any:
        call = getattr(stub, op.method)(op.request, timeout=left, metadata=self._metadata())
        if op.streaming:
            return [m async for m in call]
        return await call

    async def _call(
        self, kind: policy.CallKind, fn: Callable[[BifrostStub, float], Awaitable[T]]
    ) -> tuple[T, int]:
        plan = policy.Attempts(self._cluster, kind)
        while True:
            try:
                return await self._attempt(kind, plan.budget(), fn)
            except policy.Failure as f:
                await asyncio.sleep(plan.after_failure(f.node, f.err, f.sent))

    async def _attempt(
        self, kind: policy.CallKind, budget: float, fn: Callable[[BifrostStub, float], Awaitable[T]]
    ) -> tuple[T, int]:
        begun = time.monotonic()
        target, stale = self._cluster.pick()
        if kind.discover and stale:
            try:
                status = await self._stub(target).Status(
                    pb.StatusRequest(), timeout=budget, metadata=self._metadata()
                )
            except grpc.RpcError as e:
                raise policy.Failure(target, e, False) from None
            target = self._cluster.learn(target, status)
        left = max(budget - (time.monotonic() - begun), 0.01)
        try:
            return await fn(self._stub(target), left), target
        except grpc.RpcError as e:
            raise policy.Failure(target, e, True) from None

    # -- cluster and sessions ----------------------------------------------

    async def status(self) -> pb.StatusResponse:
        op = ops.status()
        resp, node = await self._call(op.kind, lambda stub, left: self._invoke(stub, op, left))
        self._cluster.learn(node, resp)
        return resp

    async def login(self, user: str, password: str) -> pb.LoginResponse:
        resp = await self._run(ops.login(user, password))
        self.token = resp.token
        return resp

    async def logout(self) -> None:
        try:
            await self._run(ops.logout())
        finally:
            self.token = None

    async def whoami(self) -> pb.WhoAmIResponse:
        return await self._run(ops.whoami())

    async def set_retention(self, seconds: int) -> int:
        return await self._run(ops.set_retention(seconds))

    # -- devices and tags --------------------------------------------------

    async def put_device(
        self, device: pb.Device, *, create_only: bool = False, expected_revision: Optional[int] = None
    ) -> pb.Device:
        return await self._run(ops.put_device(device, create_only, expected_revision))

    async def delete_device(self, name: str) -> int:
        return await self._run(ops.delete_device(name))

    async def list_devices(self, consistency: t.Consistency = LINEARIZABLE) -> list[pb.Device]:
        return await self._run(ops.list_devices(consistency))

    async def put_tag(
        self, tag: pb.Tag, *, create_only: bool = False, expected_revision: Optional[int] = None
    ) -> pb.Tag:
        return await self._run(ops.put_tag(tag, create_only, expected_revision))

    async def delete_tag(self, name: str, *, purge: bool = False) -> int:
        return await self._run(ops.delete_tag(name, purge))

    async def list_tags(
        self, device: Optional[str] = None, consistency: t.Consistency = LINEARIZABLE
    ) -> list[pb.Tag]:
        return await self._run(ops.list_tags(device, consistency))

    async def import_config(self, doc: t.ConfigDocument) -> tuple[int, int]:
        return await self._run(ops.import_config(doc))

    async def export(self) -> t.ConfigDocument:
        devices, tags = await self.list_devices(), await self.list_tags()
        if ops.needs_relist(devices, tags):
            devices = await self.list_devices()
        return ops.snapshot(devices, tags)

    # -- readings ----------------------------------------------------------

    async def ingest(
        self, readings: Iterable[Union[t.Reading, pb.Reading]], *, partial: bool = False
    ) -> t.IngestResult:
        return await self._run(ops.ingest(readings, partial))

    async def get(
        self, tags: Union[str, Sequence[str]], consistency: t.Consistency = LINEARIZABLE
    ) -> list[t.Reading]:
        return await self._run(ops.get([tags] if isinstance(tags, str) else tags, consistency))

    async def history(
        self,
        tag: str,
        start: Optional[ops.Time] = None,
        end: Optional[ops.Time] = None,
        *,
        limit: int = 0,
        consistency: t.Consistency = LINEARIZABLE,
    ) -> list[t.Reading]:
        return await self._run(ops.history(tag, start, end, limit, consistency))

    async def query(self, sql: str, consistency: t.Consistency = LINEARIZABLE) -> t.QueryResult:
        return await self._run(ops.query(sql, consistency))

    async def query_df(self, sql: str, consistency: t.Consistency = LINEARIZABLE) -> "polars.DataFrame":
        return await self._run(frames.query_df(sql, consistency))

    async def history_df(
        self,
        tags: Union[str, Sequence[str]],
        start: Optional[ops.Time] = None,
        end: Optional[ops.Time] = None,
        *,
        consistency: t.Consistency = LINEARIZABLE,
    ) -> "polars.DataFrame":
        return await self._run(frames.history_df(tags, start, end, consistency))

    async def write(self, tag: str, value: t.PyValue) -> t.WriteResult:
        return await self._run(ops.write(tag, value))

    def watch(
        self,
        patterns: Union[str, Sequence[str]] = (),
        *,
        tags: Sequence[str] = (),
        from_revision: Optional[int] = None,
        progress_ms: int = 0,
    ) -> "AsyncWatch":
        pats = [patterns] if isinstance(patterns, str) else patterns
        state = WatchState(pats, tags, from_revision, progress_ms, self._cluster.options.deadline)
        return AsyncWatch(self, state)

    async def _open_watch(self, req: pb.WatchRequest) -> tuple[Any, int]:
        async def start(stub: BifrostStub, _left: float) -> Any:
            return stub.Watch(req, metadata=self._metadata())

        return await self._call(policy.ANY, start)


class AsyncWatch(WatchView):
    """An async iterator of readings that reconnects from the last revision seen."""

    _client: AsyncClient

    def __aiter__(self) -> "AsyncWatch":
        return self

    async def __anext__(self) -> t.Reading:
        while not self._buf:
            await self._step()
        return self._buf.popleft()

    async def _step(self) -> None:
        if self._stream is None:
            self._stream, self._node = await self._client._open_watch(self._state.request())
        try:
            m = await self._stream.read()
        except grpc.RpcError as e:
            err: Optional[grpc.RpcError] = e
        else:
            if m is not grpc.aio.EOF:
                self._buf.extend(self._state.on_message(m))
                return
            err = None
        self._stream = None
        if self._state.on_error(err):
            self._client._cluster.forget(self._node)
        await asyncio.sleep(RECONNECT_PAUSE)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
