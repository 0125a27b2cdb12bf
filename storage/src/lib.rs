//! Bifrost's storage engine: two RocksDB databases per node and the tag-store
//! schema kept in them.
//!
//! * [`NodeStore`] is node-local: the Raft log, the Raft vote and log metadata,
//!   and the polling outbox. It is never replaced by a snapshot. Log appends are
//!   written unsynced (so they are readable at once) and made durable by
//!   [`NodeStore::sync`], which one flusher calls for many appends: group commit.
//! * [`StateStore`] is the replicated state: devices, tags, current values,
//!   reading history as per-tag compressed chunks (`bifrost-chunk`), the
//!   revision journal and the reading-id index, plus the opaque "last
//!   applied" record that the consensus layer hands in. Apply changes memory
//!   only; a background flush writes everything applied since the last one
//!   in one atomic RocksDB write (the consensus layer's log is the
//!   write-ahead log meanwhile). A snapshot is a RocksDB checkpoint taken
//!   after a flush, and installing one swaps the whole directory.
//!
//! [`crash`] holds the crash points that tests use to kill a node in the
//! middle of a flush, a merge or an install.
//!
//! Key encodings are in [`keys`]. Values are postcard behind a one-byte format
//! version ([`codec`]).
//!
//! The records themselves (devices, tags, readings) are `bifrost-model`'s
//! types, re-exported from [`model`].
//!
//! This crate knows nothing of Raft, gRPC or networking: the consensus layer
//! passes its metadata as opaque bytes. Of the Bifrost crates it depends on
//! `bifrost-model` and `bifrost-chunk` only.

mod budget;
pub mod codec;
pub mod crash;
mod disk;
pub mod keys;
pub mod model;
mod node;
mod stall;
mod state;

pub use budget::{MemoryBudget, MemoryUsage};
pub use disk::{free_bytes, FamilyBytes};
pub use model::*;
pub use node::{NodeStore, OutboxStats};
pub use state::{
    ApplyBatch, CheckpointMeta, Committed, DeviceActivity, IngestOutcome, Migration,
    MigrationProgress, StateStore, FORMAT,
};

/// Storage failures. These are never the client's fault: a node that meets one
/// while applying a committed entry must stop rather than diverge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage: rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("storage: io: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: corrupt record: {0}")]
    Corrupt(String),
    #[error(
        "storage: the state database in {} is in format {found}, written by an older Bifrost; \
         this version reads format {} only. With the node stopped, \
         convert it with `bifrost migrate-data --data-dir DIR` (DIR holding this state \
         directory), or start this node with an empty data directory so that it receives a \
         snapshot from the cluster",
        dir.display(),
        crate::state::FORMAT
    )]
    Format { dir: std::path::PathBuf, found: u64 },
    #[error(
        "storage: the state database in {} is in format {found}, written by a newer Bifrost; \
         this version reads format {} only: upgrade this node to the release the others run",
        dir.display(),
        crate::state::FORMAT
    )]
    NewerFormat { dir: std::path::PathBuf, found: u64 },
    #[error("migrate-data: {0}")]
    Migrate(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a command was refused. Deterministic: every replica refuses the same
/// command the same way, so it goes back to the client and changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RejectionKind {
    InvalidArgument,
    AlreadyExists,
    NotFound,
    /// A precondition (such as an expected revision) did not hold.
    FailedPrecondition,
}

/// A record that breaks a model rule is the client's mistake.
impl From<bifrost_model::Invalid> for Rejection {
    fn from(e: bifrost_model::Invalid) -> Rejection {
        Rejection::invalid(e.message)
    }
}

impl Rejection {
    pub fn invalid(message: impl Into<String>) -> Rejection {
        Rejection {
            kind: RejectionKind::InvalidArgument,
            message: message.into(),
        }
    }
    pub fn exists(message: impl Into<String>) -> Rejection {
        Rejection {
            kind: RejectionKind::AlreadyExists,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Rejection {
        Rejection {
            kind: RejectionKind::NotFound,
            message: message.into(),
        }
    }
    pub fn precondition(message: impl Into<String>) -> Rejection {
        Rejection {
            kind: RejectionKind::FailedPrecondition,
            message: message.into(),
        }
    }
}
