//! Audit records: who did what to which device, tag, user or member, from
//! where, and how it ended. Replicated like config, kept under their own
//! retention, and read as the SQL table `audit`.
//!
//! Pure data. Field order is persisted (postcard): append, never reorder.

use serde::{Deserialize, Serialize};

/// One audited action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the node that took the call recorded it, microseconds since
    /// the epoch.
    pub ts_us: i64,
    /// The caller (`anonymous` on an `--insecure` node; the name tried, for
    /// a failed login).
    pub user: String,
    /// The caller's address (`IP:PORT`), if known.
    pub source: String,
    /// What was done: `write`, `put_device`, `login_failed`, ...
    pub action: String,
    /// What it was done to: a tag, device, user or member.
    pub target: String,
    /// The value written, the grants given, ...; never a secret.
    pub detail: String,
    /// `ok`, or the error the caller got.
    pub outcome: String,
    /// Raft log index of the record; set by the state machine.
    pub index: u64,
}
