//! Audit records of the calls that change something: device writes,
//! device, tag and import config, users, grants, passwords and sessions
//! ended, membership, retention, and failed logins. Each is recorded
//! (`Command::Audit`) by the node that took the call, after the call,
//! with the caller, their address and the outcome, before the caller is
//! answered; a record that cannot be committed is logged, and does not
//! change the caller's answer.
//!
//! Never put a secret in a record: details say which labels or grants
//! changed, not passwords.

use bifrost_model::{now_us, AuditRecord};
use bifrost_raft::Command;
use tonic::{Request, Status};

use super::Api;
use crate::auth::Caller;

/// One action about to be done, as the audit record will name it.
pub(super) struct Action {
    user: String,
    source: String,
    action: &'static str,
    target: String,
    detail: String,
}

impl Action {
    /// `action` on `target` by `caller`, who called from `req`'s address.
    pub fn of<T>(
        caller: &Caller,
        req: &Request<T>,
        action: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) -> Action {
        Action::by(caller.name(), req, action, target, detail)
    }

    /// Like [`Action::of`], for a caller known only by name (a login).
    pub fn by<T>(
        user: &str,
        req: &Request<T>,
        action: &'static str,
        target: impl Into<String>,
        detail: impl Into<String>,
    ) -> Action {
        Action {
            user: user.to_string(),
            source: req.remote_addr().map(|a| a.to_string()).unwrap_or_default(),
            action,
            target: target.into(),
            detail: detail.into(),
        }
    }
}

/// How a call ended, as a record says it: `ok`, or the status code and
/// message.
fn outcome<T>(answer: &Result<T, Status>) -> String {
    match answer {
        Ok(_) => "ok".into(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

impl Api {
    /// Records `action` with the outcome of `answer`; returns the answer.
    pub(super) async fn audited<T>(
        &self,
        action: Action,
        answer: Result<T, Status>,
    ) -> Result<T, Status> {
        let outcome = outcome(&answer);
        self.record(action, outcome).await;
        answer
    }

    /// Records `action` with `outcome`.
    pub(super) async fn record(&self, action: Action, outcome: String) {
        let record = AuditRecord {
            ts_us: now_us(),
            user: action.user,
            source: action.source,
            action: action.action.to_string(),
            target: action.target,
            detail: action.detail,
            outcome,
            index: 0,
        };
        let now_us = record.ts_us;
        let what = format!("{} {} by {}", record.action, record.target, record.user);
        match self.node.propose(Command::Audit { record, now_us }).await {
            Ok(r) if r.result.is_ok() => {}
            Ok(r) => tracing::warn!(%what, result = ?r.result, "audit record refused"),
            Err(e) => tracing::warn!(%what, error = %e, "audit record not committed"),
        }
    }
}
