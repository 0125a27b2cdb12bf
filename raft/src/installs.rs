//! Why a log purge may wait for a snapshot install.
//!
//! openraft 0.9 installs a snapshot it received by issuing two commands at
//! once: the state machine's install, run by the state machine's worker,
//! and a purge of the log up to the snapshot, run by the core right away.
//! The purge is usually done first. A node that dies after it but before
//! the install has switched the state is left with a log starting past its
//! state, and openraft refuses to start it ever again (its start checks
//! `purge_upto <= snapshot_last_log_id`). Found by killing a node at crash
//! point `install-before-switch` (`server/tests/crash_points.rs`).
//!
//! So the state machine says here when it begins receiving a snapshot and
//! how the install ended, and the log store's purge, while an install is
//! under way, waits until the applied state covers the purge point (the
//! core does nothing else meanwhile, the worker installs). A purge left
//! uncovered by a failed install is refused rather than done.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

const IDLE: u8 = 0;
const UNDER_WAY: u8 = 1;
const FAILED: u8 = 2;

/// How often a waiting purge looks at the applied state again.
const RECHECK: Duration = Duration::from_millis(10);

/// Whether a received snapshot is being installed; shared by a state
/// machine and its log store.
#[derive(Debug, Default)]
pub struct Installs {
    phase: AtomicU8,
}

impl Installs {
    /// A snapshot is being received: an install follows.
    pub(crate) fn begin(&self) {
        self.phase.store(UNDER_WAY, Ordering::Release);
    }

    /// The install is over, done or failed.
    pub(crate) fn end(&self, done: bool) {
        self.phase
            .store(if done { IDLE } else { FAILED }, Ordering::Release);
    }

    /// Returns once `covered()` holds, or at once if no install is under
    /// way (nothing would make it hold). An error if the install that was
    /// to make it hold failed.
    pub(crate) async fn wait_covered(&self, covered: impl Fn() -> bool) -> Result<(), String> {
        loop {
            if covered() {
                return Ok(());
            }
            match self.phase.load(Ordering::Acquire) {
                UNDER_WAY => tokio::time::sleep(RECHECK).await,
                FAILED => return Err("the snapshot install that was to cover it failed".into()),
                _ => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_purge_waits_for_an_install_under_way_and_not_otherwise() {
        let installs = Arc::new(Installs::default());
        // No install: nothing to wait for, covered or not.
        installs.wait_covered(|| false).await.unwrap();

        installs.begin();
        let applied = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (installs, applied) = (installs.clone(), applied.clone());
            tokio::spawn(async move {
                installs
                    .wait_covered(|| applied.load(Ordering::Acquire))
                    .await
            })
        };
        tokio::time::sleep(RECHECK * 5).await;
        assert!(!waiter.is_finished(), "the purge went ahead of the install");
        applied.store(true, Ordering::Release);
        installs.end(true);
        waiter.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_purge_a_failed_install_left_uncovered_is_refused() {
        let installs = Installs::default();
        installs.begin();
        installs.end(false);
        let e = installs.wait_covered(|| false).await.unwrap_err();
        assert!(e.contains("install that was to cover it failed"), "{e}");
        // What the state covers may still be purged.
        installs.wait_covered(|| true).await.unwrap();
    }
}
