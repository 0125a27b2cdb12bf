"""The ``BifrostError`` hierarchy: every failure the client raises.

A failed call raises the subclass for its gRPC code (``NotFound``,
``AlreadyExists``, ``Unavailable``, ...), carrying the code, the server's
message and, when the client retried, how often and where it tried last.
``str(err)`` reads like the Rust client's: ``AlreadyExists: device "p" already exists``.
"""

from __future__ import annotations

from typing import Optional

import grpc


class BifrostError(Exception):
    """A failed call: ``code`` (None for local errors) and the server's ``message``."""

    code: Optional[grpc.StatusCode] = None

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        endpoint: Optional[str] = None,
        attempts: int = 1,
        elapsed: float = 0.0,
        gave_up: bool = False,
    ) -> None:
        self.message = message
        if code is not None:
            self.code = code
        self.endpoint = endpoint
        self.attempts = attempts
        self.elapsed = elapsed
        self.gave_up = gave_up
        super().__init__(self._describe())

    def _describe(self) -> str:
        head = f"{_code_name(self.code)}: {self.message}" if self.code else self.message
        if self.gave_up:
            head += (
                f" (gave up after {self.attempts} attempts in {self.elapsed:.1f}s;"
                f" last tried {self.endpoint})"
            )
        if self.code == grpc.StatusCode.UNAUTHENTICATED:
            head += "; log in (Client.login) or give a user certificate (cert=, key=)"
        return head


class InvalidArgument(BifrostError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(BifrostError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(BifrostError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(BifrostError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class PermissionDenied(BifrostError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(BifrostError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(BifrostError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(BifrostError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(BifrostError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(BifrostError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Compacted(OutOfRange):
    """A watch asked for a revision retention has removed; ``oldest_revision`` is the oldest held."""

    def __init__(self, message: str, *, oldest_revision: Optional[int], **kw: object) -> None:
        self.oldest_revision = oldest_revision
        super().__init__(message, **kw)  # type: ignore[arg-type]


class UnconfirmedWrite(BifrostError):
    """A device write failed after it was sent, so it was not retried: read the tag first."""

    def _describe(self) -> str:
        return (
            super()._describe()
            + f" (sent to {self.endpoint}; not retried, because the write may have"
            " reached the device: read the tag before writing again)"
        )


class ProtocolError(BifrostError):
    """The server answered OK but without something the API promises."""


_BY_CODE: dict[grpc.StatusCode, type[BifrostError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        OutOfRange,
        Unavailable,
        DeadlineExceeded,
    )
    if cls.code is not None
}


def _code_name(code: Optional[grpc.StatusCode]) -> str:
    """``ALREADY_EXISTS`` -> ``AlreadyExists`` (the names tonic and bifrostctl print)."""
    if code is None:
        return ""
    return "".join(part.capitalize() for part in code.name.split("_"))


def error_class(code: grpc.StatusCode) -> type[BifrostError]:
    """The subclass raised for ``code`` (``BifrostError`` for codes without one)."""
    return _BY_CODE.get(code, BifrostError)
