//! When each of a device's tags is due: the pure scheduling half of the
//! poller, with no clock, driver or runtime of its own (callers pass the
//! instants), so it is tested with explicit instants.
//!
//! Tags are grouped by period (the tag's scan rate, or the device's poll
//! interval when the tag has none). Each group has a next-due instant on a
//! fixed grid (`start + k * period`). [`Schedule::take_due`] hands out every
//! group that is due; a group a whole period or more late skips the slots it
//! missed (they are counted, never read in a burst) and lands on the next
//! future slot of its grid.

use std::time::{Duration, Instant};

/// Tags sharing one period.
#[derive(Debug)]
struct Group {
    period: Duration,
    /// Indexes into the tag list the schedule was built from, ascending.
    tags: Vec<usize>,
    next_due: Instant,
}

/// The groups of one device, each with its next deadline.
#[derive(Debug)]
pub struct Schedule {
    groups: Vec<Group>,
}

/// What to read now.
#[derive(Debug, PartialEq, Eq)]
pub struct Due {
    /// Indexes of the tags to read, ascending (the union of the due groups).
    pub tags: Vec<usize>,
    /// Deadlines skipped because a group was a whole period or more late,
    /// summed over the due groups.
    pub missed: u64,
}

impl Schedule {
    /// One group per distinct period in `periods` (one entry per tag), every
    /// group due at `start`.
    pub fn new(periods: &[Duration], start: Instant) -> Schedule {
        let mut groups: Vec<Group> = Vec::new();
        for (i, &period) in periods.iter().enumerate() {
            assert!(!period.is_zero(), "tag {i}: a period must not be zero");
            match groups.iter_mut().find(|g| g.period == period) {
                Some(g) => g.tags.push(i),
                None => groups.push(Group {
                    period,
                    tags: vec![i],
                    next_due: start,
                }),
            }
        }
        groups.sort_by_key(|g| g.period);
        Schedule { groups }
    }

    /// The earliest deadline of any group; `None` when there are no tags.
    pub fn next_due(&self) -> Option<Instant> {
        self.groups.iter().map(|g| g.next_due).min()
    }

    /// The tags of every group due at `now`; advances those groups past
    /// `now` on their grids and counts the slots they skipped.
    pub fn take_due(&mut self, now: Instant) -> Due {
        let mut tags = Vec::new();
        let mut missed = 0;
        for g in self.groups.iter_mut().filter(|g| g.next_due <= now) {
            let late = now - g.next_due;
            let skipped = late.as_nanos() / g.period.as_nanos();
            missed += skipped as u64;
            let step = g.period.as_nanos() * (skipped + 1);
            g.next_due += Duration::from_nanos(step.min(u64::MAX as u128) as u64);
            tags.extend_from_slice(&g.tags);
        }
        tags.sort_unstable();
        Due { tags, missed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tags_are_grouped_by_period_and_all_due_at_start() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(1000), ms(200), ms(1000), ms(200)], t0);
        assert_eq!(s.groups.len(), 2);
        assert_eq!(s.next_due(), Some(t0));
        let due = s.take_due(t0);
        assert_eq!(
            due,
            Due {
                tags: vec![0, 1, 2, 3],
                missed: 0
            }
        );
        assert_eq!(s.next_due(), Some(t0 + ms(200)));
    }

    #[test]
    fn a_fast_group_is_read_alone_between_slow_deadlines() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(1000), ms(200)], t0);
        s.take_due(t0);
        let mut reads_of = [0u32; 2];
        // Wake exactly at each deadline for two seconds.
        while let Some(at) = s.next_due().filter(|at| *at <= t0 + ms(2000)) {
            let due = s.take_due(at);
            assert_eq!(due.missed, 0);
            if at == t0 + ms(1000) || at == t0 + ms(2000) {
                assert_eq!(due.tags, vec![0, 1], "both due together at {:?}", at - t0);
            } else {
                assert_eq!(due.tags, vec![1], "only the fast tag at {:?}", at - t0);
            }
            for i in due.tags {
                reads_of[i] += 1;
            }
        }
        assert_eq!(reads_of, [2, 10]);
    }

    #[test]
    fn nothing_is_due_before_its_deadline() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(500)], t0);
        s.take_due(t0);
        assert_eq!(
            s.take_due(t0 + ms(499)),
            Due {
                tags: vec![],
                missed: 0
            }
        );
        assert_eq!(s.take_due(t0 + ms(500)).tags, vec![0]);
    }

    #[test]
    fn a_late_wake_within_one_period_misses_nothing_and_keeps_the_grid() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(200)], t0);
        s.take_due(t0);
        let due = s.take_due(t0 + ms(350));
        assert_eq!(
            due,
            Due {
                tags: vec![0],
                missed: 0
            }
        );
        assert_eq!(s.next_due(), Some(t0 + ms(400)));
    }

    #[test]
    fn whole_periods_late_are_counted_and_skipped_not_burst() {
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(200), ms(1000)], t0);
        s.take_due(t0);
        // Due at 200 ms; woken at 1050 ms: the slots at 200, 400, 600 and
        // 800 ms pass unread (1000 ms is the one read now), and the slow
        // group, due at 1000 ms, is not a whole period late.
        let due = s.take_due(t0 + ms(1050));
        assert_eq!(
            due,
            Due {
                tags: vec![0, 1],
                missed: 4
            }
        );
        assert_eq!(s.next_due(), Some(t0 + ms(1200)));
        // The next wake reads once, not the skipped slots.
        assert_eq!(
            s.take_due(t0 + ms(1200)),
            Due {
                tags: vec![0],
                missed: 0
            }
        );
    }

    #[test]
    fn tags_slower_than_the_device_interval_set_the_pace_alone() {
        // Only the tags' periods matter: a device whose tags all scan every
        // 5 s is read every 5 s, whatever its own poll interval.
        let t0 = Instant::now();
        let mut s = Schedule::new(&[ms(5000), ms(5000)], t0);
        s.take_due(t0);
        assert_eq!(s.next_due(), Some(t0 + ms(5000)));
        assert!(s.take_due(t0 + ms(4999)).tags.is_empty());
    }

    #[test]
    fn no_tags_means_nothing_is_ever_due() {
        let mut s = Schedule::new(&[], Instant::now());
        assert_eq!(s.next_due(), None);
        assert!(s.take_due(Instant::now()).tags.is_empty());
    }
}
