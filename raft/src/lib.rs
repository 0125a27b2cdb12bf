//! Raft glue for Bifrost: openraft's type configuration, the versioned
//! replicated [`Command`] set, the log store and state machine over
//! `bifrost-storage`, snapshots built from RocksDB checkpoints and shipped
//! as the files a follower lacks, in chunks, and the node-to-node gRPC
//! transport over the peer port ([`member::Member`] keeps both of a node's
//! addresses).
//!
//! **openraft version.** We pin openraft `=0.9.25`. 0.9 is the stable line:
//! its storage v2 API (`RaftLogStorage` with an asynchronous flush callback,
//! `RaftStateMachine`) and its conformance suite are what we need, and it only
//! takes bug fixes. The 0.10 alphas add lease reads and are what upstream's
//! current examples target, but their API still changes from one alpha to the
//! next; a database that persists openraft's types in its log should not ride
//! that. Linearizable reads use 0.9's read index (`get_read_log_id`).
//!
//! **Durability.** Openraft is told that a vote or log entries are saved only
//! after they are fsynced: votes are written with `sync = true`; appends are
//! written at once (readable) and acknowledged by a flusher thread after one
//! WAL fsync that covers every append issued before it (group commit).
//!
//! This crate may depend on `bifrost-storage` and `bifrost-proto`; it must not
//! depend on `server`, `client` or `drivers`, and holds no business logic
//! beyond applying commands.

// openraft's trait methods return its `StorageError` (over 200 bytes); our
// helpers return the same type so `?` works without conversions.
#![allow(clippy::result_large_err)]

pub mod backup;
pub mod command;
pub mod disk_guard;
mod installs;
pub mod log_store;
pub mod member;
pub mod network;
pub mod node;
pub mod recover;
pub mod service;
pub mod snapshot;
pub mod state_machine;
pub mod transfer;

pub use command::{Command, Outcome, Response, UserChange};
pub use log_store::LogStore;
pub use member::Member;
pub use node::{Consistency, NodeOptions, ProposeError, RaftNode};
pub use snapshot::SnapshotData;
pub use state_machine::{Applied, ApplyListener, ApplyObserver, StateMachine};
pub use transfer::{Figures, SnapshotStats};

openraft::declare_raft_types!(
    /// Openraft type configuration of Bifrost.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotData,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;

/// Errors of starting a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] bifrost_storage::Error),
    #[error("raft: io: {0}")]
    Io(#[from] std::io::Error),
    #[error("raft: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a storage failure for openraft; openraft stops the node on it, which
/// is what we want: a replica that cannot write must not diverge.
pub(crate) fn storage_err(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::error(e.to_string())).into()
}
