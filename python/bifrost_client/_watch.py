"""The subscription logic both clients' ``watch`` share: no I/O.

``WatchState`` builds each (re)connection's request from the last revision
seen, turns stream messages into readings (dropping any at or below that
revision, so a resumed stream repeats nothing) and decides what a broken
stream means: reconnect (node gone, or this consumer fell behind) or stop
(compacted revision, bad request, refused credential, or no node could serve
it for the whole deadline). Mirrors ``Watcher`` in ``client/src/client/streaming.rs``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Optional, Sequence

import grpc

from . import _policy as policy
from . import errors
from . import types as t
from ._proto import bifrost_pb2 as pb

RECONNECT_PAUSE = 0.05


class WatchState:
    def __init__(
        self,
        patterns: Sequence[str],
        tags: Sequence[str],
        from_revision: Optional[int],
        progress_ms: int,
        deadline: float,
    ) -> None:
        self.patterns, self.tags = list(patterns), list(tags)
        self.last: Optional[int] = from_revision
        self.progress_ms = progress_ms
        self.deadline = deadline
        self.reconnects = 0
        self.node_id: Optional[int] = None
        self._failing_since: Optional[float] = None

    def request(self) -> pb.WatchRequest:
        req = pb.WatchRequest(tags=self.tags, patterns=self.patterns, progress_ms=self.progress_ms)
        if self.last is not None:
            req.from_revision = self.last
        return req

    def on_message(self, m: pb.WatchResponse) -> list[t.Reading]:
        """The new readings a message carries; records how far the stream got."""
        self._failing_since = None
        event = m.WhichOneof("event")
        if event == "started":
            self.node_id = m.started.node_id
            if self.last is None:
                self.last = m.started.revision
            return []
        if event == "progress":
            self.last = max(self.last or 0, m.progress.revision)
            return []
        if event != "readings":
            return []
        floor = self.last or 0
        fresh = [t.reading_from_pb(r) for r in m.readings.readings if r.revision > floor]
        self.last = max(floor, m.readings.revision)
        return fresh

    def on_error(self, err: Optional[grpc.RpcError]) -> bool:
        """After the stream broke (``err``) or ended (None): True to move to another
        node, False to reconnect to the same one; raises when the watch is over."""
        if err is None:
            return self._failing(True)
        code = policy.code_of(err)
        if code in (grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.INVALID_ARGUMENT):
            raise policy.to_error(err)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and policy._md(err, "bifrost-resume-revision"):
            self.reconnects += 1  # too slow: resume from the last revision, same node
            return False
        if not policy.is_retryable(err) and code != grpc.StatusCode.UNKNOWN:
            raise policy.to_error(err)
        return self._failing(True)

    def _failing(self, move: bool) -> bool:
        self.reconnects += 1
        since = self._failing_since = self._failing_since or time.monotonic()
        if time.monotonic() - since > self.deadline:
            raise errors.Unavailable(
                "subscription: no node could serve it within the deadline",
                code=grpc.StatusCode.UNAVAILABLE,
            )
        return move


class WatchView:
    """What ``Watch`` and ``AsyncWatch`` share: the state, the readings
    received and not yet handed out, the stream and node in use, and where
    the subscription stands."""

    def __init__(self, client: Any, state: WatchState) -> None:
        self._client, self._state = client, state
        self._buf: deque[t.Reading] = deque()
        self._stream: Optional[Any] = None
        self._node = 0

    @property
    def last_revision(self) -> Optional[int]:
        """Every matching reading up to this revision has been received."""
        return self._state.last

    @property
    def reconnects(self) -> int:
        return self._state.reconnects

    @property
    def node_id(self) -> Optional[int]:
        """The node serving the subscription now."""
        return self._state.node_id

