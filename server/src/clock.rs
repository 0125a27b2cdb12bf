//! The leader's check of the members' clocks against its own.
//!
//! Wall-clock time enters the data in a few places: the server timestamp
//! of every reading (the node that takes the call or polls the device),
//! session expiry and audit records (the proposer's clock), the ingest
//! clock that bounds how long reading ids are remembered, and retention
//! (the leader's clock). Raft itself needs no clock agreement. So a wrong
//! clock does not break consistency, but it skews those timestamps. Every
//! probe the leader sends (`peer`, each `probe_interval`) carries the
//! member's clock; [`Offset::measure`] takes the midpoint of the round
//! trip as the moment it was read, so its error is at most half the round
//! trip. [`ClockCheck`] exports each member's offset and logs, once per
//! change, a member whose clock is off by more than the limit beyond that
//! error.
//!
//! Depends on the metrics only.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::metrics::Metrics;

/// A member's clock against this node's, from one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offset {
    /// Its clock minus ours, microseconds.
    pub offset_us: i64,
    /// The probe's round trip, microseconds: the offset is right within
    /// half of it.
    pub rtt_us: i64,
}

impl Offset {
    /// The offset of a clock that read `theirs_us` while a probe sent at
    /// `sent_us` and answered at `received_us` (our clock) was under way;
    /// `None` if they sent no clock (0).
    pub fn measure(sent_us: i64, theirs_us: i64, received_us: i64) -> Option<Offset> {
        (theirs_us != 0).then(|| Offset {
            offset_us: theirs_us - sent_us.midpoint(received_us),
            rtt_us: (received_us - sent_us).max(0),
        })
    }

    /// How far off it surely is: the offset less the measuring error.
    fn surely_off_us(&self) -> i64 {
        (self.offset_us.abs() - self.rtt_us / 2).max(0)
    }
}

/// The leader's view of its members' clocks.
pub struct ClockCheck {
    limit_us: i64,
    /// Members whose clock was off beyond the limit at the last probe.
    off: BTreeSet<u64>,
}

impl ClockCheck {
    pub fn new(limit: Duration) -> ClockCheck {
        ClockCheck {
            limit_us: limit.as_micros().min(i64::MAX as u128) as i64,
            off: BTreeSet::new(),
        }
    }

    /// Takes one round of probe answers: each member's offset, as far as
    /// it sent its clock.
    pub fn observe(&mut self, offsets: &BTreeMap<u64, Offset>, metrics: &Metrics) {
        for (&node, o) in offsets {
            metrics.set_clock_offset(node, o.offset_us / 1000);
            let off = o.surely_off_us() > self.limit_us;
            let was = self.off.contains(&node);
            if off && !was {
                tracing::warn!(
                    node,
                    offset_ms = o.offset_us / 1000,
                    rtt_ms = o.rtt_us / 1000,
                    limit_ms = self.limit_us / 1000,
                    "a member's clock is off from the leader's: its readings' server timestamps, \
                     session expiry and audit times are skewed; fix its time synchronisation"
                );
                self.off.insert(node);
            } else if !off && was {
                tracing::info!(
                    node,
                    offset_ms = o.offset_us / 1000,
                    "a member's clock agrees again"
                );
                self.off.remove(&node);
            }
        }
    }

    /// Members whose clock is off beyond the limit.
    pub fn off(&self) -> &BTreeSet<u64> {
        &self.off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_taken_at_the_middle_of_the_round_trip() {
        let o = Offset::measure(1_000_000, 6_000_500, 1_001_000).unwrap();
        assert_eq!(
            o,
            Offset {
                offset_us: 5_000_000,
                rtt_us: 1_000
            }
        );
        assert_eq!(Offset::measure(1, 0, 2), None, "no clock sent");
    }

    #[test]
    fn a_member_is_reported_off_once_beyond_the_limit_and_its_error() {
        let metrics = Metrics::new();
        let mut check = ClockCheck::new(Duration::from_millis(500));
        let round = |offset_ms: i64, rtt_ms: i64| {
            BTreeMap::from([(
                2,
                Offset {
                    offset_us: offset_ms * 1000,
                    rtt_us: rtt_ms * 1000,
                },
            )])
        };
        check.observe(&round(400, 2), &metrics);
        assert!(check.off().is_empty());
        // 700 ms off, but a 600 ms round trip: it may be only 400 ms.
        check.observe(&round(-700, 600), &metrics);
        assert!(check.off().is_empty());
        check.observe(&round(-700, 2), &metrics);
        assert_eq!(check.off(), &BTreeSet::from([2]));
        let label = crate::metrics::NodeLabels { node: "2".into() };
        assert_eq!(metrics.clock_offset.get_or_create(&label).get(), -700);
        check.observe(&round(10, 2), &metrics);
        assert!(check.off().is_empty());
    }
}
