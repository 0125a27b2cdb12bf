from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_UNSPECIFIED: _ClassVar[Consistency]
    CONSISTENCY_LINEARIZABLE: _ClassVar[Consistency]
    CONSISTENCY_LOCAL: _ClassVar[Consistency]
    CONSISTENCY_LEADER: _ClassVar[Consistency]

class QualityLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    QUALITY_GOOD: _ClassVar[QualityLevel]
    QUALITY_UNCERTAIN: _ClassVar[QualityLevel]
    QUALITY_BAD: _ClassVar[QualityLevel]

class ColumnType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLUMN_TYPE_ANY: _ClassVar[ColumnType]
    COLUMN_TYPE_BOOL: _ClassVar[ColumnType]
    COLUMN_TYPE_INT: _ClassVar[ColumnType]
    COLUMN_TYPE_FLOAT: _ClassVar[ColumnType]
    COLUMN_TYPE_TEXT: _ClassVar[ColumnType]
    COLUMN_TYPE_TIMESTAMP: _ClassVar[ColumnType]
CONSISTENCY_UNSPECIFIED: Consistency
CONSISTENCY_LINEARIZABLE: Consistency
CONSISTENCY_LOCAL: Consistency
CONSISTENCY_LEADER: Consistency
QUALITY_GOOD: QualityLevel
QUALITY_UNCERTAIN: QualityLevel
QUALITY_BAD: QualityLevel
COLUMN_TYPE_ANY: ColumnType
COLUMN_TYPE_BOOL: ColumnType
COLUMN_TYPE_INT: ColumnType
COLUMN_TYPE_FLOAT: ColumnType
COLUMN_TYPE_TEXT: ColumnType
COLUMN_TYPE_TIMESTAMP: ColumnType

class BackupRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BackupChunk(_message.Message):
    __slots__ = ("data", "summary")
    DATA_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    summary: BackupSummary
    def __init__(self, data: _Optional[bytes] = ..., summary: _Optional[_Union[BackupSummary, _Mapping]] = ...) -> None: ...

class BackupSummary(_message.Message):
    __slots__ = ("node_id", "log_index", "log_term", "revision", "files", "state_bytes", "archive_bytes", "blake3", "taken_at_us")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    LOG_TERM_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    STATE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    BLAKE3_FIELD_NUMBER: _ClassVar[int]
    TAKEN_AT_US_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    log_index: int
    log_term: int
    revision: int
    files: int
    state_bytes: int
    archive_bytes: int
    blake3: str
    taken_at_us: int
    def __init__(self, node_id: _Optional[int] = ..., log_index: _Optional[int] = ..., log_term: _Optional[int] = ..., revision: _Optional[int] = ..., files: _Optional[int] = ..., state_bytes: _Optional[int] = ..., archive_bytes: _Optional[int] = ..., blake3: _Optional[str] = ..., taken_at_us: _Optional[int] = ...) -> None: ...

class SetAuditRetentionRequest(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    def __init__(self, seconds: _Optional[int] = ...) -> None: ...

class SetAuditRetentionResponse(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    def __init__(self, seconds: _Optional[int] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("role", "tags")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    role: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, role: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "grants", "revision", "sessions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    revision: int
    sessions: int
    def __init__(self, name: _Optional[str] = ..., grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., revision: _Optional[int] = ..., sessions: _Optional[int] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("user", "password")
    USER_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    user: str
    password: str
    def __init__(self, user: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("token", "expires_us", "user")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_US_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    token: str
    expires_us: int
    user: User
    def __init__(self, token: _Optional[str] = ..., expires_us: _Optional[int] = ..., user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("user", "via")
    USER_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    user: User
    via: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., via: _Optional[str] = ...) -> None: ...

class AddUserRequest(_message.Message):
    __slots__ = ("name", "password", "grants", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    password: str
    grants: _containers.RepeatedCompositeFieldContainer[Grant]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., password: _Optional[str] = ..., grants: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UserResponse(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class DeleteUserRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ("consistency",)
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    consistency: Consistency
    def __init__(self, consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class ChangeGrantsRequest(_message.Message):
    __slots__ = ("name", "add", "remove", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    add: _containers.RepeatedCompositeFieldContainer[Grant]
    remove: _containers.RepeatedCompositeFieldContainer[Grant]
    request_id: str
    def __init__(self, name: _Optional[str] = ..., add: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., remove: _Optional[_Iterable[_Union[Grant, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetPasswordRequest(_message.Message):
    __slots__ = ("name", "old_password", "new_password", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OLD_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    old_password: str
    new_password: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., old_password: _Optional[str] = ..., new_password: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class EndSessionsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class EndSessionsResponse(_message.Message):
    __slots__ = ("ended",)
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ended: int
    def __init__(self, ended: _Optional[int] = ...) -> None: ...

class Device(_message.Message):
    __slots__ = ("name", "protocol", "endpoint", "unit_id", "poll_interval_ms", "timeout_ms", "retries", "enabled", "labels", "revision")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    POLL_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    protocol: str
    endpoint: str
    unit_id: int
    poll_interval_ms: int
    timeout_ms: int
    retries: int
    enabled: bool
    labels: _containers.ScalarMap[str, str]
    revision: int
    def __init__(self, name: _Optional[str] = ..., protocol: _Optional[str] = ..., endpoint: _Optional[str] = ..., unit_id: _Optional[int] = ..., poll_interval_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., retries: _Optional[int] = ..., enabled: bool = ..., labels: _Optional[_Mapping[str, str]] = ..., revision: _Optional[int] = ...) -> None: ...

class Scale(_message.Message):
    __slots__ = ("raw_lo", "raw_hi", "eng_lo", "eng_hi")
    RAW_LO_FIELD_NUMBER: _ClassVar[int]
    RAW_HI_FIELD_NUMBER: _ClassVar[int]
    ENG_LO_FIELD_NUMBER: _ClassVar[int]
    ENG_HI_FIELD_NUMBER: _ClassVar[int]
    raw_lo: float
    raw_hi: float
    eng_lo: float
    eng_hi: float
    def __init__(self, raw_lo: _Optional[float] = ..., raw_hi: _Optional[float] = ..., eng_lo: _Optional[float] = ..., eng_hi: _Optional[float] = ...) -> None: ...

class Deadband(_message.Message):
    __slots__ = ("value", "percent")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    value: float
    percent: bool
    def __init__(self, value: _Optional[float] = ..., percent: bool = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ("name", "device", "address", "data_type", "byte_order", "word_order", "scale", "deadband", "scan_rate_ms", "units", "description", "writable", "length", "revision")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    BYTE_ORDER_FIELD_NUMBER: _ClassVar[int]
    WORD_ORDER_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    DEADBAND_FIELD_NUMBER: _ClassVar[int]
    SCAN_RATE_MS_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    name: str
    device: str
    address: str
    data_type: str
    byte_order: str
    word_order: str
    scale: Scale
    deadband: Deadband
    scan_rate_ms: int
    units: str
    description: str
    writable: bool
    length: int
    revision: int
    def __init__(self, name: _Optional[str] = ..., device: _Optional[str] = ..., address: _Optional[str] = ..., data_type: _Optional[str] = ..., byte_order: _Optional[str] = ..., word_order: _Optional[str] = ..., scale: _Optional[_Union[Scale, _Mapping]] = ..., deadband: _Optional[_Union[Deadband, _Mapping]] = ..., scan_rate_ms: _Optional[int] = ..., units: _Optional[str] = ..., description: _Optional[str] = ..., writable: bool = ..., length: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("bool_value", "int_value", "float_value", "string_value")
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    int_value: int
    float_value: float
    string_value: str
    def __init__(self, bool_value: bool = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., string_value: _Optional[str] = ...) -> None: ...

class Quality(_message.Message):
    __slots__ = ("level", "reason")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    level: QualityLevel
    reason: str
    def __init__(self, level: _Optional[_Union[QualityLevel, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class Reading(_message.Message):
    __slots__ = ("id", "tag", "ts_us", "value", "quality", "server_ts_us", "revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    TS_US_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SERVER_TS_US_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    id: str
    tag: str
    ts_us: int
    value: Value
    quality: Quality
    server_ts_us: int
    revision: int
    def __init__(self, id: _Optional[str] = ..., tag: _Optional[str] = ..., ts_us: _Optional[int] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., quality: _Optional[_Union[Quality, _Mapping]] = ..., server_ts_us: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class PutDeviceRequest(_message.Message):
    __slots__ = ("device", "create_only", "expected_revision", "request_id")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    device: Device
    create_only: bool
    expected_revision: int
    request_id: str
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ..., create_only: bool = ..., expected_revision: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class PutDeviceResponse(_message.Message):
    __slots__ = ("device",)
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    device: Device
    def __init__(self, device: _Optional[_Union[Device, _Mapping]] = ...) -> None: ...

class DeleteDeviceRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ("consistency",)
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    consistency: Consistency
    def __init__(self, consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ("devices",)
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class PutTagRequest(_message.Message):
    __slots__ = ("tag", "create_only", "expected_revision", "request_id")
    TAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tag: Tag
    create_only: bool
    expected_revision: int
    request_id: str
    def __init__(self, tag: _Optional[_Union[Tag, _Mapping]] = ..., create_only: bool = ..., expected_revision: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class PutTagResponse(_message.Message):
    __slots__ = ("tag",)
    TAG_FIELD_NUMBER: _ClassVar[int]
    tag: Tag
    def __init__(self, tag: _Optional[_Union[Tag, _Mapping]] = ...) -> None: ...

class DeleteTagRequest(_message.Message):
    __slots__ = ("name", "purge", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PURGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    purge: bool
    request_id: str
    def __init__(self, name: _Optional[str] = ..., purge: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class ListTagsRequest(_message.Message):
    __slots__ = ("consistency", "device")
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    consistency: Consistency
    device: str
    def __init__(self, consistency: _Optional[_Union[Consistency, str]] = ..., device: _Optional[str] = ...) -> None: ...

class ListTagsResponse(_message.Message):
    __slots__ = ("tags",)
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("readings", "partial")
    READINGS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    partial: bool
    def __init__(self, readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ..., partial: bool = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("stored", "duplicates", "last_revision", "rejected")
    STORED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    LAST_REVISION_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    stored: int
    duplicates: int
    last_revision: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedReading]
    def __init__(self, stored: _Optional[int] = ..., duplicates: _Optional[int] = ..., last_revision: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedReading, _Mapping]]] = ...) -> None: ...

class RejectedReading(_message.Message):
    __slots__ = ("index", "id", "code", "reason")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    index: int
    id: str
    code: str
    reason: str
    def __init__(self, index: _Optional[int] = ..., id: _Optional[str] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetCurrentRequest(_message.Message):
    __slots__ = ("tags", "consistency")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    consistency: Consistency
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class GetCurrentResponse(_message.Message):
    __slots__ = ("readings",)
    READINGS_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    def __init__(self, readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("tag", "from_us", "to_us", "consistency", "limit")
    TAG_FIELD_NUMBER: _ClassVar[int]
    FROM_US_FIELD_NUMBER: _ClassVar[int]
    TO_US_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    tag: str
    from_us: int
    to_us: int
    consistency: Consistency
    limit: int
    def __init__(self, tag: _Optional[str] = ..., from_us: _Optional[int] = ..., to_us: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("readings",)
    READINGS_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    def __init__(self, readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Member(_message.Message):
    __slots__ = ("id", "addr", "role", "peer_addr")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDR_FIELD_NUMBER: _ClassVar[int]
    id: int
    addr: str
    role: str
    peer_addr: str
    def __init__(self, id: _Optional[int] = ..., addr: _Optional[str] = ..., role: _Optional[str] = ..., peer_addr: _Optional[str] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("node_id", "leader_id", "leader_addr", "term", "commit_index", "applied_index", "last_log_index", "members", "state", "snapshot_index", "assignments", "revision", "oldest_revision", "retention_seconds", "audit_retention_seconds", "failing_devices", "purged_index")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDR_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OLDEST_REVISION_FIELD_NUMBER: _ClassVar[int]
    RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_RETENTION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FAILING_DEVICES_FIELD_NUMBER: _ClassVar[int]
    PURGED_INDEX_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    leader_id: int
    leader_addr: str
    term: int
    commit_index: int
    applied_index: int
    last_log_index: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    state: str
    snapshot_index: int
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    revision: int
    oldest_revision: int
    retention_seconds: int
    audit_retention_seconds: int
    failing_devices: _containers.RepeatedCompositeFieldContainer[FailingDevice]
    purged_index: int
    def __init__(self, node_id: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_addr: _Optional[str] = ..., term: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_log_index: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ..., state: _Optional[str] = ..., snapshot_index: _Optional[int] = ..., assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ..., revision: _Optional[int] = ..., oldest_revision: _Optional[int] = ..., retention_seconds: _Optional[int] = ..., audit_retention_seconds: _Optional[int] = ..., failing_devices: _Optional[_Iterable[_Union[FailingDevice, _Mapping]]] = ..., purged_index: _Optional[int] = ...) -> None: ...

class FailingDevice(_message.Message):
    __slots__ = ("device", "node", "failed_polls", "reason", "backoff_ms", "retry_in_ms")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    FAILED_POLLS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    RETRY_IN_MS_FIELD_NUMBER: _ClassVar[int]
    device: str
    node: int
    failed_polls: int
    reason: str
    backoff_ms: int
    retry_in_ms: int
    def __init__(self, device: _Optional[str] = ..., node: _Optional[int] = ..., failed_polls: _Optional[int] = ..., reason: _Optional[str] = ..., backoff_ms: _Optional[int] = ..., retry_in_ms: _Optional[int] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("device", "node", "epoch")
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    device: str
    node: int
    epoch: int
    def __init__(self, device: _Optional[str] = ..., node: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class WriteTagRequest(_message.Message):
    __slots__ = ("tag", "value")
    TAG_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    tag: str
    value: Value
    def __init__(self, tag: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...

class WriteTagResponse(_message.Message):
    __slots__ = ("outcome", "message", "read_back", "node")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    READ_BACK_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    message: str
    read_back: Value
    node: int
    def __init__(self, outcome: _Optional[str] = ..., message: _Optional[str] = ..., read_back: _Optional[_Union[Value, _Mapping]] = ..., node: _Optional[int] = ...) -> None: ...

class DiscoverRequest(_message.Message):
    __slots__ = ("protocol", "targets", "units", "timeout_ms", "rate_per_second", "port")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    RATE_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    targets: _containers.RepeatedScalarFieldContainer[str]
    units: _containers.RepeatedScalarFieldContainer[int]
    timeout_ms: int
    rate_per_second: int
    port: int
    def __init__(self, protocol: _Optional[str] = ..., targets: _Optional[_Iterable[str]] = ..., units: _Optional[_Iterable[int]] = ..., timeout_ms: _Optional[int] = ..., rate_per_second: _Optional[int] = ..., port: _Optional[int] = ...) -> None: ...

class DiscoveredDevice(_message.Message):
    __slots__ = ("protocol", "endpoint", "unit_id", "vendor", "product", "firmware", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    UNIT_ID_FIELD_NUMBER: _ClassVar[int]
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_FIELD_NUMBER: _ClassVar[int]
    FIRMWARE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    endpoint: str
    unit_id: int
    vendor: str
    product: str
    firmware: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, protocol: _Optional[str] = ..., endpoint: _Optional[str] = ..., unit_id: _Optional[int] = ..., vendor: _Optional[str] = ..., product: _Optional[str] = ..., firmware: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BrowseRequest(_message.Message):
    __slots__ = ("endpoint", "node", "create_tags_on_device", "tag_prefix")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TAGS_ON_DEVICE_FIELD_NUMBER: _ClassVar[int]
    TAG_PREFIX_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    node: str
    create_tags_on_device: str
    tag_prefix: str
    def __init__(self, endpoint: _Optional[str] = ..., node: _Optional[str] = ..., create_tags_on_device: _Optional[str] = ..., tag_prefix: _Optional[str] = ...) -> None: ...

class BrowseItem(_message.Message):
    __slots__ = ("address", "name", "kind", "data_type", "writable")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_FIELD_NUMBER: _ClassVar[int]
    address: str
    name: str
    kind: str
    data_type: str
    writable: bool
    def __init__(self, address: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., data_type: _Optional[str] = ..., writable: bool = ...) -> None: ...

class BrowseResponse(_message.Message):
    __slots__ = ("items", "created")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[BrowseItem]
    created: int
    def __init__(self, items: _Optional[_Iterable[_Union[BrowseItem, _Mapping]]] = ..., created: _Optional[int] = ...) -> None: ...

class ImportRequest(_message.Message):
    __slots__ = ("devices", "tags")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ...) -> None: ...

class ImportResponse(_message.Message):
    __slots__ = ("devices", "tags")
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    devices: int
    tags: int
    def __init__(self, devices: _Optional[int] = ..., tags: _Optional[int] = ...) -> None: ...

class AddMemberRequest(_message.Message):
    __slots__ = ("id", "addr", "learner_only")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    LEARNER_ONLY_FIELD_NUMBER: _ClassVar[int]
    id: int
    addr: str
    learner_only: bool
    def __init__(self, id: _Optional[int] = ..., addr: _Optional[str] = ..., learner_only: bool = ...) -> None: ...

class AddMemberResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class RemoveMemberRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class RemoveMemberResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("sql", "consistency")
    SQL_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    sql: str
    consistency: Consistency
    def __init__(self, sql: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ColumnType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ColumnType, str]] = ...) -> None: ...

class Cell(_message.Message):
    __slots__ = ("bool_value", "int_value", "float_value", "text_value", "timestamp_us")
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    TEXT_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_US_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    int_value: int
    float_value: float
    text_value: str
    timestamp_us: int
    def __init__(self, bool_value: bool = ..., int_value: _Optional[int] = ..., float_value: _Optional[float] = ..., text_value: _Optional[str] = ..., timestamp_us: _Optional[int] = ...) -> None: ...

class Row(_message.Message):
    __slots__ = ("cells",)
    CELLS_FIELD_NUMBER: _ClassVar[int]
    cells: _containers.RepeatedCompositeFieldContainer[Cell]
    def __init__(self, cells: _Optional[_Iterable[_Union[Cell, _Mapping]]] = ...) -> None: ...

class QueryStats(_message.Message):
    __slots__ = ("rows", "scanned", "elapsed_us")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_US_FIELD_NUMBER: _ClassVar[int]
    rows: int
    scanned: int
    elapsed_us: int
    def __init__(self, rows: _Optional[int] = ..., scanned: _Optional[int] = ..., elapsed_us: _Optional[int] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("columns", "rows", "stats")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    rows: _containers.RepeatedCompositeFieldContainer[Row]
    stats: QueryStats
    def __init__(self, columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[Row, _Mapping]]] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class ArrowChunk(_message.Message):
    __slots__ = ("ipc", "stats")
    IPC_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ipc: bytes
    stats: QueryStats
    def __init__(self, ipc: _Optional[bytes] = ..., stats: _Optional[_Union[QueryStats, _Mapping]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("tags", "patterns", "from_revision", "progress_ms")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_MS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    patterns: _containers.RepeatedScalarFieldContainer[str]
    from_revision: int
    progress_ms: int
    def __init__(self, tags: _Optional[_Iterable[str]] = ..., patterns: _Optional[_Iterable[str]] = ..., from_revision: _Optional[int] = ..., progress_ms: _Optional[int] = ...) -> None: ...

class WatchProgress(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class WatchReadings(_message.Message):
    __slots__ = ("readings", "revision", "applied_us")
    READINGS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_US_FIELD_NUMBER: _ClassVar[int]
    readings: _containers.RepeatedCompositeFieldContainer[Reading]
    revision: int
    applied_us: int
    def __init__(self, readings: _Optional[_Iterable[_Union[Reading, _Mapping]]] = ..., revision: _Optional[int] = ..., applied_us: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("started", "readings", "progress")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    READINGS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    started: WatchStarted
    readings: WatchReadings
    progress: WatchProgress
    def __init__(self, started: _Optional[_Union[WatchStarted, _Mapping]] = ..., readings: _Optional[_Union[WatchReadings, _Mapping]] = ..., progress: _Optional[_Union[WatchProgress, _Mapping]] = ...) -> None: ...

class WatchStarted(_message.Message):
    __slots__ = ("revision", "node_id", "oldest_revision")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OLDEST_REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    node_id: int
    oldest_revision: int
    def __init__(self, revision: _Optional[int] = ..., node_id: _Optional[int] = ..., oldest_revision: _Optional[int] = ...) -> None: ...

class SetRetentionRequest(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    def __init__(self, seconds: _Optional[int] = ...) -> None: ...

class SetRetentionResponse(_message.Message):
    __slots__ = ("seconds",)
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: int
    def __init__(self, seconds: _Optional[int] = ...) -> None: ...

class ReplicaDigestsRequest(_message.Message):
    __slots__ = ("from_revision", "to_revision", "range_size")
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    RANGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    from_revision: int
    to_revision: int
    range_size: int
    def __init__(self, from_revision: _Optional[int] = ..., to_revision: _Optional[int] = ..., range_size: _Optional[int] = ...) -> None: ...

class RangeDigest(_message.Message):
    __slots__ = ("first", "last", "count", "digest")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    count: int
    digest: bytes
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ..., count: _Optional[int] = ..., digest: _Optional[bytes] = ...) -> None: ...

class ReplicaDigestsResponse(_message.Message):
    __slots__ = ("node_id", "revision", "oldest_revision", "applied_index", "range_size", "ranges")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    OLDEST_REVISION_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    RANGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    revision: int
    oldest_revision: int
    applied_index: int
    range_size: int
    ranges: _containers.RepeatedCompositeFieldContainer[RangeDigest]
    def __init__(self, node_id: _Optional[int] = ..., revision: _Optional[int] = ..., oldest_revision: _Optional[int] = ..., applied_index: _Optional[int] = ..., range_size: _Optional[int] = ..., ranges: _Optional[_Iterable[_Union[RangeDigest, _Mapping]]] = ...) -> None: ...
