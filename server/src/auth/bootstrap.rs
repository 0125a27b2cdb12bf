//! The bootstrap admin: the first user of a cluster, made by its first
//! leader that enforces authentication and finds no user at all.
//!
//! Its password is the one in `--admin-password-file`, or a random one
//! printed once in that leader's log (never a fixed default). The command
//! is applied only if the cluster still has no user, so two leaders in a
//! row cannot make two admins, and a cluster whose users were all removed
//! stays without (an operator recovers it from a backup, not by restart).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bifrost_model::{Grant, Role, User};
use bifrost_raft::{Command, RaftNode, UserChange};
use rand::distr::{Alphanumeric, SampleString};

use super::{check_password_strength, hash_password};

/// The bootstrap admin's name.
pub const ADMIN: &str = "admin";

/// Reads `--admin-password-file`: its first line, which must be a strong
/// enough password.
pub fn read_password_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the admin password file {}", path.display()))?;
    let password = text.lines().next().unwrap_or_default().to_string();
    check_password_strength(&password)
        .map_err(|e| anyhow::anyhow!("admin password file {}: {}", path.display(), e.message()))?;
    Ok(password)
}

/// Runs until the cluster has a user: whenever this node leads a cluster
/// with none, proposes the admin. `password`: from the file, else random.
pub async fn bootstrap_admin(node: Arc<RaftNode>, password: Option<String>) {
    let given = password.is_some();
    let password = password.unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rng(), 24));
    let mut hash = None;
    loop {
        if node.state().has_users() {
            return;
        }
        if node.is_leader() {
            if hash.is_none() {
                match hash_password(password.clone()).await {
                    Ok(h) => hash = Some(h),
                    Err(e) => tracing::error!(error = %e.message(), "bootstrap admin"),
                }
            }
            if let Some(h) = &hash {
                if propose(&node, h.clone()).await {
                    announce(given, &password);
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether this proposal made the admin.
async fn propose(node: &RaftNode, password_hash: String) -> bool {
    let user = User {
        name: ADMIN.into(),
        password_hash,
        grants: vec![Grant::everywhere(Role::Admin)],
        revision: 0,
    };
    match node
        .propose(Command::Users(UserChange::Bootstrap { user }))
        .await
    {
        Ok(resp) => resp.result.is_ok(),
        Err(e) => {
            tracing::debug!(error = %e, "bootstrap admin: proposal failed; retrying");
            false
        }
    }
}

fn announce(given: bool, password: &str) {
    if given {
        tracing::warn!(
            user = ADMIN,
            "created the bootstrap admin with the password from --admin-password-file"
        );
    } else {
        // Printed once, here, and nowhere else: the log is the only place
        // it can be read.
        tracing::warn!(
            user = ADMIN,
            "created the bootstrap admin; its one-time password is {password} \
             (log in with `bifrostctl login --user admin`, then change it with \
             `bifrostctl user passwd`)"
        );
    }
}
