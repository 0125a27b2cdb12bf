//! Back-pressure: when commits fall behind, polling and ingest slow down
//! instead of queueing without end.
//!
//! **Polling.** The outbox absorbs bursts. When its oldest record has waited
//! longer than [`HIGH_WATER`] while commits are going on (the cluster is up
//! but slower than the devices), the share of due polls the device tasks
//! make shrinks (multiplicatively, a step a second); once the backlog is
//! under [`LOW_WATER`] it grows back (additively), and between the two it
//! creeps up while the backlog is not growing, to find what commits take. A skipped poll is counted
//! as a missed deadline of its device and in `bifrost_polls_shed`: polling
//! slows down and says so, and the outbox stays a few seconds deep instead
//! of growing to its byte bound and dropping acquired readings. When nothing
//! commits at all (no leader, a partition), every poll is made and buffered:
//! that is what the outbox is for.
//!
//! **Ingest.** A node with more than [`MAX_APPLY_BACKLOG`] log entries
//! waiting to be applied answers ingest with `resource_exhausted` and a
//! `retry-after-ms` hint (see `api::status::overloaded`).
//!
//! Depends on nothing but the clock; the outbox feeds it, the poller reads it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Backlog age above which polls are shed.
pub const HIGH_WATER: Duration = Duration::from_secs(1);
/// Backlog age below which the share of polls made grows again.
pub const LOW_WATER: Duration = Duration::from_millis(250);
/// The smallest share of polls made while shedding.
const MIN_SHARE: f64 = 0.02;
/// Log entries waiting to be applied above which ingest is refused.
pub const MAX_APPLY_BACKLOG: u64 = 256;
/// How long an ingest client is told to wait when refused.
pub const INGEST_RETRY_AFTER: Duration = Duration::from_millis(200);

/// The share of due polls this node makes, shared by its device tasks.
#[derive(Debug)]
pub struct Admission {
    /// The share, in millionths.
    share_ppm: AtomicU32,
    /// The backlog age at the last step, in milliseconds.
    last_age_ms: AtomicU64,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            share_ppm: AtomicU32::new(1_000_000),
            last_age_ms: AtomicU64::new(0),
        }
    }
}

impl Admission {
    pub fn share(&self) -> f64 {
        self.share_ppm.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// One control step (about once a second): `backlog_age` is how long the
    /// oldest outbox record has waited, `committing` whether a batch
    /// committed lately. Returns the new share.
    pub fn update(&self, backlog_age: Duration, committing: bool) -> f64 {
        let share = self.share();
        let age_ms = backlog_age.as_millis() as u64;
        let growing = age_ms > self.last_age_ms.swap(age_ms, Ordering::Relaxed);
        let next = if !committing {
            1.0
        } else if backlog_age > HIGH_WATER {
            (share * 0.8).max(MIN_SHARE)
        } else if backlog_age < LOW_WATER {
            (share + 0.05).min(1.0)
        } else if !growing {
            // Between the marks and not growing: probe for more.
            (share + 0.01).min(1.0)
        } else {
            share
        };
        self.share_ppm
            .store((next * 1e6).round() as u32, Ordering::Relaxed);
        next
    }
}

/// One device task's side of [`Admission`]: admits its share of due polls,
/// spread evenly (with a share of 0.25, every fourth poll).
#[derive(Debug)]
pub struct Gate {
    credit: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate { credit: 1.0 }
    }
}

impl Gate {
    pub fn admit(&mut self, share: f64) -> bool {
        self.credit = (self.credit + share).min(1.0 + share);
        if self.credit >= 1.0 {
            self.credit -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_admits_its_share_evenly() {
        let mut gate = Gate::default();
        let admitted: Vec<bool> = (0..400).map(|_| gate.admit(0.25)).collect();
        let n = admitted.iter().filter(|a| **a).count();
        assert!((99..=101).contains(&n), "{n} of 400 admitted at 0.25");
        assert!(!admitted.windows(2).any(|w| w[0] && w[1]), "{admitted:?}");
        let mut full = Gate::default();
        assert!((0..100).all(|_| full.admit(1.0)));
    }

    #[test]
    fn shedding_follows_the_backlog_while_commits_go_on_and_stops_in_an_outage() {
        let a = Admission::default();
        assert_eq!(a.share(), 1.0);
        // Commits go on but the backlog is old: the share shrinks, bounded.
        for _ in 0..100 {
            a.update(Duration::from_secs(5), true);
        }
        assert!((a.share() - MIN_SHARE).abs() < 1e-6, "{}", a.share());
        // Between the marks it creeps up while the backlog does not grow...
        let probed = a.update(Duration::from_millis(600), true);
        assert!((probed - MIN_SHARE - 0.01).abs() < 1e-6, "{probed}");
        // ...and holds while it grows.
        assert_eq!(a.update(Duration::from_millis(800), true), probed);
        // Drained: it grows back step by step.
        let grown = a.update(Duration::from_millis(100), true);
        assert!(grown > MIN_SHARE && grown < 0.1, "{grown}");
        // Nothing commits (an outage): every poll is made and buffered.
        a.update(Duration::from_secs(5), true);
        assert_eq!(a.update(Duration::from_secs(60), false), 1.0);
    }
}
