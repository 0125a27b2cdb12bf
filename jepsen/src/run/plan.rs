//! What a run will do, decided before anything starts: which workloads,
//! which nemesis kinds, and the fault schedule.
//!
//! The schedule comes from [`Schedule::generate`], which draws kinds at
//! random. A run promises that every selected kind happens at least once
//! (a kind that never occurs is a kind that was not tested, and a short
//! smoke run is exactly where that would go unnoticed), which a random
//! draw cannot promise by itself. So [`plan`] draws again, with seeds
//! derived from the run's seed in a fixed order, until a schedule has every
//! kind; the same run seed always yields the same schedule. If no schedule
//! within [`MAX_ATTEMPTS`] has every kind, the run is too short for them
//! and [`plan`] says so instead of running with fewer.
//!
//! Fault timing depends on the run's length ([`Timing::for_run`]): a long
//! run uses the generator's defaults (faults held 2-8 s, 2-6 s of calm
//! before each); a run too short to fit every kind about twice at that pace
//! uses shorter faults (1.5-4 s, 1-2.5 s of calm). Both are long enough for
//! what a fault is meant to provoke: an election takes 0.5-1 s and a silent
//! node loses its devices after 1 s.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::nemesis::{Fault, FaultKind, PartitionSpec, Schedule, ScheduleOptions};

/// How many schedules [`plan`] draws at most, looking for one with every
/// selected kind.
pub const MAX_ATTEMPTS: u64 = 10_000;

/// A workload of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// Linearizable config: read, write and compare-and-set of registers.
    Register,
    /// Ingest: no acknowledged reading is lost.
    Set,
    /// Subscriptions over the set's tags: no gaps.
    Watch,
    /// Polled counters of the simulated plant: no duplicates, no gaps.
    Readings,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::Register,
        Workload::Set,
        Workload::Watch,
        Workload::Readings,
    ];

    /// The name on the command line and in the history's `workload` field.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => crate::workload::names::REGISTER,
            Workload::Set => crate::workload::names::SET,
            Workload::Watch => crate::workload::names::WATCH,
            Workload::Readings => crate::workload::names::READINGS,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Workload, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("{s:?}: not a workload (register, set, watch, readings)"))
    }
}

/// `all`, or a comma-separated list of workload names. Watch follows the set
/// workload's readings, so it needs set.
pub fn parse_workloads(s: &str) -> Result<Vec<Workload>, String> {
    let list: BTreeSet<Workload> = if s.trim() == "all" {
        Workload::ALL.into_iter().collect()
    } else {
        s.split(',')
            .map(|w| w.trim().parse())
            .collect::<Result<_, _>>()?
    };
    if list.is_empty() {
        return Err("no workload given".into());
    }
    if list.contains(&Workload::Watch) && !list.contains(&Workload::Set) {
        return Err("watch follows the set workload's readings: add set".into());
    }
    Ok(list.into_iter().collect())
}

/// The command-line name of a nemesis kind. `partition-one` and
/// `partition-leader` are Jepsen's names for what the generator calls
/// `isolate` and `isolate-leader` (both are accepted).
pub fn nemesis_name(k: FaultKind) -> &'static str {
    match k {
        FaultKind::Kill => "kill",
        FaultKind::Pause => "pause",
        FaultKind::Stop => "stop",
        FaultKind::Isolate => "partition-one",
        FaultKind::IsolateLeader => "partition-leader",
        FaultKind::Split => "split",
        FaultKind::Bridge => "bridge",
    }
}

/// `all`, `none`, or a comma-separated list of kinds (see [`nemesis_name`]).
pub fn parse_nemesis(s: &str) -> Result<Vec<FaultKind>, String> {
    match s.trim() {
        "all" => return Ok(FaultKind::ALL.to_vec()),
        "none" => return Ok(Vec::new()),
        _ => {}
    }
    let mut kinds = BTreeSet::new();
    for name in s.split(',').map(str::trim) {
        let kind = FaultKind::ALL
            .into_iter()
            .find(|k| nemesis_name(*k) == name || k.name() == name)
            .ok_or_else(|| {
                format!(
                    "{name:?}: not a nemesis (all, none, {})",
                    FaultKind::ALL.map(nemesis_name).join(", ")
                )
            })?;
        kinds.insert(kind);
    }
    Ok(kinds.into_iter().collect())
}

/// The kind of fault a step starts; `None` for the steps that undo one
/// (restart, resume, cont, heal).
pub fn kind_of(f: &Fault) -> Option<FaultKind> {
    Some(match f {
        Fault::Kill(_) => FaultKind::Kill,
        Fault::Pause(_) => FaultKind::Pause,
        Fault::Stop(_) => FaultKind::Stop,
        Fault::Partition(PartitionSpec::Isolate(_)) => FaultKind::Isolate,
        Fault::Partition(PartitionSpec::IsolateLeader) => FaultKind::IsolateLeader,
        Fault::Partition(PartitionSpec::Split { .. }) => FaultKind::Split,
        Fault::Partition(PartitionSpec::Bridge { .. }) => FaultKind::Bridge,
        Fault::Restart(_) | Fault::Resume(_) | Fault::Cont(_) | Fault::Heal => return None,
    })
}

/// The selected kinds that no step of `schedule` starts.
pub fn missing_kinds(schedule: &Schedule, kinds: &[FaultKind]) -> Vec<FaultKind> {
    let present: BTreeSet<FaultKind> = schedule
        .steps
        .iter()
        .filter_map(|s| kind_of(&s.fault))
        .collect();
    kinds
        .iter()
        .copied()
        .filter(|k| !present.contains(k))
        .collect()
}

/// How long faults last and how long the cluster is left alone before each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub hold: (Duration, Duration),
    pub quiet: (Duration, Duration),
}

impl Timing {
    /// The generator's defaults: faults of 2-8 s, 2-6 s of calm.
    pub const LONG: Timing = Timing {
        hold: (Duration::from_secs(2), Duration::from_secs(8)),
        quiet: (Duration::from_secs(2), Duration::from_secs(6)),
    };
    /// For short runs: faults of 1.5-4 s, 1-2.5 s of calm.
    pub const SHORT: Timing = Timing {
        hold: (Duration::from_millis(1500), Duration::from_secs(4)),
        quiet: (Duration::from_secs(1), Duration::from_millis(2500)),
    };

    /// The mean length of one fault with the calm before it.
    pub fn mean_cycle(&self) -> Duration {
        (self.hold.0 + self.hold.1 + self.quiet.0 + self.quiet.1) / 2
    }

    /// [`Timing::LONG`] if `duration` fits every kind about twice at its
    /// pace, else [`Timing::SHORT`].
    pub fn for_run(duration: Duration, kinds: usize) -> Timing {
        if duration >= Timing::LONG.mean_cycle() * (2 * kinds as u32) {
            Timing::LONG
        } else {
            Timing::SHORT
        }
    }
}

/// A fault schedule with every selected kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub schedule: Schedule,
    /// The seed the schedule was generated from (the run's seed when the
    /// first draw had every kind).
    pub generator_seed: u64,
    /// How many draws it took (1: the first).
    pub attempts: u64,
    pub timing: Timing,
}

/// The generator seed of draw `attempt` (0-based) of a run seeded `seed`.
pub fn generator_seed(seed: u64, attempt: u64) -> u64 {
    // The golden-ratio increment of splitmix64: draws far apart for
    // neighbouring attempts, and attempt 0 is the run's seed itself.
    seed.wrapping_add(attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Draws schedules from `seed` until one has every kind of `kinds` (see the
/// module docs). No kinds: an empty schedule.
pub fn plan(
    seed: u64,
    nodes: &[u64],
    duration: Duration,
    kinds: &[FaultKind],
    timing: Timing,
) -> Result<Plan, String> {
    if kinds.is_empty() {
        return Ok(Plan {
            schedule: Schedule {
                seed: Some(seed),
                steps: Vec::new(),
            },
            generator_seed: seed,
            attempts: 0,
            timing,
        });
    }
    if let Some(k) = kinds.iter().find(|k| !k.possible_with(nodes.len())) {
        return Err(format!(
            "nemesis {} needs more than {} node(s)",
            nemesis_name(*k),
            nodes.len()
        ));
    }
    for attempt in 0..MAX_ATTEMPTS {
        let g = generator_seed(seed, attempt);
        let mut o = ScheduleOptions::new(g, nodes.to_vec(), duration);
        o.kinds = kinds.to_vec();
        o.hold = timing.hold;
        o.quiet = timing.quiet;
        let schedule = Schedule::generate(&o)?;
        if missing_kinds(&schedule, kinds).is_empty() {
            return Ok(Plan {
                schedule,
                generator_seed: g,
                attempts: attempt + 1,
                timing,
            });
        }
    }
    Err(format!(
        "{}s is too short for every one of the {} nemesis kinds at least once \
         (faults of {:.1}-{:.1}s with {:.1}-{:.1}s of calm before each): \
         give a longer --time or fewer kinds",
        duration.as_secs(),
        kinds.len(),
        timing.hold.0.as_secs_f64(),
        timing.hold.1.as_secs_f64(),
        timing.quiet.0.as_secs_f64(),
        timing.quiet.1.as_secs_f64(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_names_parse_with_jepsen_and_generator_spellings() {
        assert_eq!(parse_nemesis("all").unwrap(), FaultKind::ALL.to_vec());
        assert!(parse_nemesis("none").unwrap().is_empty());
        assert_eq!(
            parse_nemesis("partition-one, isolate-leader,kill,kill").unwrap(),
            vec![
                FaultKind::Kill,
                FaultKind::Isolate,
                FaultKind::IsolateLeader
            ]
        );
        let e = parse_nemesis("kill,flood").unwrap_err();
        assert!(
            e.contains("\"flood\"") && e.contains("partition-leader"),
            "{e}"
        );
    }

    #[test]
    fn workloads_parse_and_watch_needs_set() {
        assert_eq!(parse_workloads("all").unwrap(), Workload::ALL.to_vec());
        assert_eq!(
            parse_workloads("set,register").unwrap(),
            vec![Workload::Register, Workload::Set]
        );
        assert!(parse_workloads("watch").unwrap_err().contains("add set"));
        assert!(parse_workloads("regsiter").is_err());
    }

    #[test]
    fn a_minute_fits_every_kind_and_the_same_seed_plans_the_same() {
        let kinds = FaultKind::ALL.to_vec();
        let t = Timing::for_run(Duration::from_secs(60), kinds.len());
        assert_eq!(t, Timing::SHORT);
        for seed in 0..50 {
            let p = plan(seed, &[1, 2, 3], Duration::from_secs(60), &kinds, t).unwrap();
            assert!(missing_kinds(&p.schedule, &kinds).is_empty(), "seed {seed}");
            assert_eq!(p.schedule.seed, Some(p.generator_seed));
            assert!(p.schedule.steps.last().unwrap().at <= Duration::from_secs(60));
            assert_eq!(
                plan(seed, &[1, 2, 3], Duration::from_secs(60), &kinds, t).unwrap(),
                p
            );
        }
    }

    #[test]
    fn a_long_run_keeps_the_generators_pace_and_its_first_draw() {
        let kinds = FaultKind::ALL.to_vec();
        let long = Duration::from_secs(30 * 60);
        let t = Timing::for_run(long, kinds.len());
        assert_eq!(t, Timing::LONG);
        let p = plan(7, &[1, 2, 3], long, &kinds, t).unwrap();
        assert_eq!((p.attempts, p.generator_seed), (1, 7));
    }

    #[test]
    fn too_short_a_run_is_refused_not_run_with_fewer_kinds() {
        let kinds = FaultKind::ALL.to_vec();
        let e = plan(
            1,
            &[1, 2, 3],
            Duration::from_secs(15),
            &kinds,
            Timing::SHORT,
        )
        .unwrap_err();
        assert!(e.contains("too short"), "{e}");
        assert!(plan(
            1,
            &[1, 2],
            Duration::from_secs(60),
            &[FaultKind::Split],
            Timing::SHORT
        )
        .unwrap_err()
        .contains("split"));
        let none = plan(1, &[1, 2, 3], Duration::from_secs(5), &[], Timing::SHORT).unwrap();
        assert!(none.schedule.steps.is_empty());
    }
}
