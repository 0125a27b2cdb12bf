"""Python client of Bifrost, the clustered tag database.

``Client`` (blocking) and ``AsyncClient`` (asyncio) talk to a whole cluster:
any node will do, the leader is found and failures are retried on other
nodes, as the Rust client does. Results are the dataclasses of
``bifrost_client.types``; failures raise ``bifrost_client.errors.BifrostError``.
"""

from .aio import AsyncClient, AsyncWatch
from .client import Client, Watch
from .errors import (
    AlreadyExists,
    BifrostError,
    Compacted,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ProtocolError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    UnconfirmedWrite,
)
from ._policy import Options
from .dualwrite import DualWriter, DualWriterCounters
from .types import (
    Column,
    ConfigDocument,
    Consistency,
    Deadband,
    Device,
    IngestResult,
    PyValue,
    Quality,
    QualityLevel,
    QueryResult,
    Reading,
    Rejected,
    Scale,
    Tag,
    WriteResult,
)

__all__ = [
    "AlreadyExists", "AsyncClient", "AsyncWatch", "BifrostError", "Client", "Column", "Compacted",
    "ConfigDocument", "Consistency", "DeadlineExceeded", "Deadband", "Device", "FailedPrecondition",
    "IngestResult", "InvalidArgument", "NotFound", "Options", "OutOfRange", "PermissionDenied",
    "ProtocolError", "PyValue", "Quality", "QualityLevel", "QueryResult", "Reading", "ResourceExhausted",
    "Scale", "Tag", "Unauthenticated", "Unavailable", "UnconfirmedWrite", "Watch", "WriteResult",
    "DualWriter", "DualWriterCounters", "Rejected",
]
__version__ = "0.1.0"
