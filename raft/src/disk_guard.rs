//! Refusing writes while the disk is nearly full, instead of failing in the
//! middle of a log append: openraft takes a storage error as fatal, so a
//! node whose disk filled up would stop.
//!
//! Below `reserve` free bytes on the file system of the data directory, a
//! node refuses proposals ([`ProposeError::DiskFull`], naming the node, the
//! directory and the figures), except the commands that free space
//! (retention and compaction, purging a tag), and as a follower it refuses
//! log entries from the leader, which retries: it falls behind instead of
//! stopping. When space returns, both go on by themselves. The check is one
//! `statvfs` per call; changes between low and not are logged once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::{Command, NodeId, ProposeError};

/// The free-space check of one node's data directory.
#[derive(Debug)]
pub struct DiskGuard {
    id: NodeId,
    dir: PathBuf,
    /// Free bytes below which writes are refused (0: never).
    reserve: u64,
    /// The last check's free bytes, and whether they were below `reserve`.
    free: AtomicU64,
    low: AtomicBool,
}

impl DiskGuard {
    pub fn new(id: NodeId, dir: PathBuf, reserve: u64) -> DiskGuard {
        DiskGuard {
            id,
            dir,
            reserve,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
        }
    }

    /// Checks the free space now: why writes are refused, if they are.
    pub fn check(&self) -> Result<(), String> {
        let free = match bifrost_storage::free_bytes(&self.dir) {
            Ok(f) => f,
            // Unknown free space refuses nothing: the append says more.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the data directory's free space");
                return Ok(());
            }
        };
        self.free.store(free, Ordering::Relaxed);
        let low = free < self.reserve;
        // (A reserve of 0 is never undercut.)
        if self.low.swap(low, Ordering::Relaxed) != low {
            match low {
                true => tracing::error!(free, reserve = self.reserve, dir = %self.dir.display(),
                    "disk nearly full: refusing writes until space is freed"),
                false => tracing::warn!(free, reserve = self.reserve, dir = %self.dir.display(),
                    "disk space back: taking writes again"),
            }
        }
        if !low {
            return Ok(());
        }
        Err(format!(
            "node {}: the disk of {} has {} free, less than the {} kept in reserve \
             (--min-free-disk): writes are refused until space is freed (a shorter retention, \
             `tag rm --purge`, or a larger disk)",
            self.id,
            self.dir.display(),
            mib(free),
            mib(self.reserve)
        ))
    }

    /// Refuses `cmd` if the disk is nearly full and `cmd` does not free
    /// space.
    pub fn admit(&self, cmd: &Command) -> Result<(), ProposeError> {
        if frees_space(cmd) {
            return Ok(());
        }
        self.check().map_err(ProposeError::DiskFull)
    }

    /// Free bytes at the last check (`u64::MAX` before the first).
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    /// Whether the last check found the disk below the reserve.
    pub fn is_low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }
}

/// Commands that remove data: never refused for want of space.
fn frees_space(cmd: &Command) -> bool {
    match cmd {
        Command::Once { command, .. } => frees_space(command),
        Command::Compact { .. } | Command::SetRetention { .. } | Command::DeleteTag { .. } => true,
        _ => false,
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_below_the_reserve_except_those_that_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let free = bifrost_storage::free_bytes(dir.path()).unwrap();
        let put = Command::SetAuditRetention { seconds: 1 };
        let roomy = DiskGuard::new(1, dir.path().into(), 1);
        roomy.admit(&put).unwrap();
        assert!(!roomy.is_low());
        assert!(roomy.free() <= free + (64 << 20) && roomy.free() > 0);

        let full = DiskGuard::new(2, dir.path().into(), u64::MAX);
        let e = full.admit(&put).unwrap_err().to_string();
        assert!(e.contains("node 2") && e.contains("--min-free-disk"), "{e}");
        assert!(full.is_low());
        full.admit(&Command::SetRetention { seconds: 60 }).unwrap();
        full.admit(&Command::DeleteTag { name: "t".into() })
            .unwrap();

        let off = DiskGuard::new(3, dir.path().into(), 0);
        off.admit(&put).unwrap();
    }
}
