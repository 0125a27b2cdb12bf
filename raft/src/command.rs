//! The replicated command set. Commands are persisted in the Raft log, so
//! their encoding is a compatibility promise: variants are only ever appended
//! (postcard encodes a variant by its position) and an existing variant never
//! changes shape; a changed shape is a new variant. The whole log entry is
//! written behind a one-byte format version (see `bifrost_storage::codec`).
//!
//! Everything `apply` needs travels inside the command (server timestamps,
//! reading ids), so applying it is deterministic on every replica.

use bifrost_model::{AuditRecord, Device, Grant, NewReading, Session, Tag, User};
use bifrost_storage::{IngestOutcome, Rejection};
use serde::{Deserialize, Serialize};

/// A state-machine command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace a device. `expected_revision` (0 = absent) is an
    /// optional compare-and-set precondition.
    PutDevice {
        device: Device,
        create_only: bool,
        expected_revision: Option<u64>,
    },
    DeleteDevice {
        name: String,
    },
    /// Create or replace a tag.
    PutTag {
        tag: Tag,
        create_only: bool,
        expected_revision: Option<u64>,
    },
    /// Delete a tag together with its history (`tag rm --purge`).
    DeleteTag {
        name: String,
    },
    /// Store a batch of readings, deduplicated by reading id. Written by
    /// older nodes (now [`Command::Ingest`]); still applied from the log.
    Readings {
        readings: Vec<NewReading>,
    },
    /// Give devices to nodes (`None`: unassign). Decided by the leader.
    Assign {
        changes: Vec<(String, Option<u64>)>,
    },
    /// Readings a node polled, replayed from its outbox. Deduplicated by id;
    /// readings whose tag was deleted or changed meanwhile are skipped and
    /// counted, so one stale reading never blocks an outbox.
    Polled {
        node: u64,
        readings: Vec<NewReading>,
    },
    /// Create or replace many devices and tags at once, all or nothing.
    Import {
        devices: Vec<Device>,
        tags: Vec<Tag>,
    },
    /// Set how long history is kept (0: forever). Enforced by the leader,
    /// which proposes [`Command::Compact`].
    SetRetention {
        seconds: u64,
    },
    /// Remove every reading with a revision below `below_revision`, which
    /// becomes the oldest revision held on every node.
    Compact {
        below_revision: u64,
    },
    /// `command` at most once per `request_id`: a retry of a request whose
    /// first attempt was committed (a client or a forwarding node retrying
    /// after a lost reply) gets the first attempt's result instead of being
    /// applied again. Results are remembered for [`REMEMBER_REQUESTS`] log
    /// entries.
    Once {
        request_id: String,
        command: Box<Command>,
    },
    /// Delete a tag but keep its history: a tag created again under the
    /// same name continues it (`tag rm` without `--purge`).
    RetireTag {
        name: String,
    },
    /// Outbox records a node polled, as the outbox holds them: each is the
    /// bytes of one `bifrost_model::poll::DevicePoll` with its outbox
    /// sequence, passed through unchanged. Stored once per (`origin`,
    /// sequence); `floor` is the oldest sequence still in the sender's
    /// outbox (everything older was committed or dropped), which keeps the
    /// deduplication state small. Readings whose tag was deleted or changed
    /// since are skipped and counted.
    PolledRecords {
        origin: String,
        floor: u64,
        records: Vec<(u64, Vec<u8>)>,
    },
    /// A client's readings, as the node that took the call encoded them:
    /// the bytes of one `bifrost_model::poll::IngestBatch` (tag ids, not
    /// names), passed through unchanged. All or nothing; deduplicated by
    /// reading id within the id window (see `bifrost_storage`).
    Ingest {
        batch: Vec<u8>,
    },
    /// A change to users or their sessions (see [`UserChange`]).
    Users(UserChange),
    /// One audited action, recorded by the node that took the call;
    /// records older than the audit retention before `now_us` (the
    /// proposer's clock) are forgotten on the way.
    Audit {
        record: AuditRecord,
        now_us: i64,
    },
    /// Set how long audit records are kept (0: forever).
    SetAuditRetention {
        seconds: u64,
    },
    /// A client's readings like [`Command::Ingest`], but the readings that
    /// no longer fit their tags are skipped and named in the outcome
    /// ([`Outcome::IngestedPartly`]) instead of rejecting the batch.
    IngestPartly {
        batch: Vec<u8>,
    },
}

/// Changes to users and sessions. Password hashes and token hashes are made
/// by the node that took the call; no password or token enters the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserChange {
    /// Create a user; an existing name is rejected.
    Add { user: User },
    /// Create the first user, only if no user exists yet (the bootstrap
    /// admin; rejected once any user exists).
    Bootstrap { user: User },
    /// Remove a user and end their sessions.
    Delete { name: String },
    /// Add the grants in `add` (already held: no change) and remove those in
    /// `remove` (each must be held), all or nothing.
    ChangeGrants {
        name: String,
        add: Vec<Grant>,
        remove: Vec<Grant>,
    },
    /// Replace a user's password hash and end their sessions.
    SetPassword { name: String, password_hash: String },
    /// Start a session for an existing user; sessions that expired before
    /// `now_us` (the proposer's clock) are forgotten on the way.
    StartSession { session: Session, now_us: i64 },
    /// End one session (absent: no change).
    EndSession { token_hash: [u8; 32] },
    /// End every session of a user.
    EndSessions { name: String },
}

/// How many log entries a request id is remembered for (see [`Command::Once`]).
pub const REMEMBER_REQUESTS: u64 = 100_000;

/// Longest accepted request id, in bytes.
pub const MAX_REQUEST_ID_LEN: usize = 128;

impl Command {
    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::PutDevice { .. } => "put_device",
            Command::DeleteDevice { .. } => "delete_device",
            Command::PutTag { .. } => "put_tag",
            Command::DeleteTag { .. } => "delete_tag",
            Command::Readings { .. } => "readings",
            Command::Assign { .. } => "assign",
            Command::Polled { .. } => "polled",
            Command::Import { .. } => "import",
            Command::SetRetention { .. } => "set_retention",
            Command::Compact { .. } => "compact",
            Command::Once { command, .. } => command.kind(),
            Command::RetireTag { .. } => "retire_tag",
            Command::PolledRecords { .. } => "polled",
            Command::Ingest { .. } => "readings",
            Command::Users(change) => change.kind(),
            Command::Audit { .. } => "audit",
            Command::SetAuditRetention { .. } => "set_retention",
            Command::IngestPartly { .. } => "readings",
        }
    }
}

impl UserChange {
    /// Short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            UserChange::Add { .. } | UserChange::Bootstrap { .. } => "add_user",
            UserChange::Delete { .. } => "delete_user",
            UserChange::ChangeGrants { .. } => "change_grants",
            UserChange::SetPassword { .. } => "set_password",
            UserChange::StartSession { .. } => "login",
            UserChange::EndSession { .. } | UserChange::EndSessions { .. } => "logout",
        }
    }
}

/// What applying a command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Blank and membership entries.
    None,
    Device(Device),
    Tag(Tag),
    Deleted,
    Ingested(IngestOutcome),
    /// Devices and tags created or replaced by an import.
    Imported {
        devices: u64,
        tags: u64,
    },
    /// Readings removed by a compaction, and the oldest revision now held.
    Compacted {
        removed: u64,
        oldest_revision: u64,
    },
    /// A user as a change left it.
    User(User),
    /// Sessions a change ended.
    SessionsEnded(u64),
    /// What a partial ingest stored, and the readings it skipped: their
    /// positions in the batch (from 0) with the reasons.
    IngestedPartly {
        outcome: IngestOutcome,
        rejected: Vec<(u32, String)>,
    },
}

/// The state machine's answer to one log entry: an outcome, or a
/// deterministic rejection that changed nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub result: Result<Outcome, Rejection>,
    /// Index of the log entry that carried the command.
    pub index: u64,
}
