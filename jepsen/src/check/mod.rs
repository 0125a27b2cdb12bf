//! Checkers of a recorded run, and the results folder.
//!
//! Each checker reads the records of its workload (see
//! [`crate::workload`]) and answers a [`Verdict`]: valid, invalid or
//! unknown (it could not tell: a final read is missing, the search ran out
//! of time), what it counted, and the first few anomalies with enough
//! detail to find them in `history.jsonl`. Checkers are pure functions of
//! the records, so a results folder can be checked again offline
//! ([`crate::workload::read_history`]).
//!
//! - [`register`]: linearizability of each register (the crate's checker).
//! - [`set`]: every acknowledged reading is in the final history; nothing
//!   unexpected or duplicated is.
//! - [`watch`]: every subscription delivered each committed reading of its
//!   filter once, in revision order, with no gap.
//! - [`readings`]: polled counters have no duplicate values and no gap a
//!   fault does not explain.
//!
//! [`write_results`] writes the folder a run leaves behind:
//!
//! ```text
//! history.jsonl     every event of every workload
//! register.jsonl    the register events alone (`bifrost-jepsen check` reads it)
//! <checker>.json    one verdict per checker (register.json, set.json, ...)
//! summary.json      the overall verdict and each checker's
//! faults.json       the fault windows, on the history's clock
//! latency.svg       latency of each operation over time, faults shaded
//! throughput.svg    completions per second over time, faults shaded
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Serialize, Serializer};

use crate::plot::{self, FaultWindow};
use crate::workload::{self, names, Record};

pub mod readings;
pub mod register;
pub mod set;
pub mod watch;

/// How many anomalies a verdict lists in detail (all are counted).
pub const SHOWN_ANOMALIES: usize = 20;

/// A checker's answer. Serialised as `true`, `false` or `"unknown"`, as
/// Jepsen's `:valid?`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Validity {
    Valid,
    /// It could not tell.
    Unknown,
    Invalid,
}

impl Validity {
    /// The worse of two: invalid beats unknown beats valid.
    pub fn and(self, other: Validity) -> Validity {
        self.max(other)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Validity::Valid => "valid",
            Validity::Unknown => "unknown",
            Validity::Invalid => "invalid",
        }
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Validity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Validity::Valid => s.serialize_bool(true),
            Validity::Invalid => s.serialize_bool(false),
            Validity::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// Something a checker found wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// What kind (`lost`, `gap`, `not-linearizable`, ...).
    pub kind: String,
    /// The object: a register, a tag, a stream.
    pub key: String,
    /// One human-readable paragraph.
    pub detail: String,
    /// The same, for programs (ids, revisions, times).
    pub data: serde_json::Value,
}

/// A checker's verdict: `<checker>.json` in the results folder.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: Validity,
    /// What was checked (operations, readings, streams, ...).
    pub counts: BTreeMap<String, u64>,
    /// How many anomalies of each kind were found.
    pub anomaly_counts: BTreeMap<String, u64>,
    /// The first [`SHOWN_ANOMALIES`] anomalies.
    pub anomalies: Vec<Anomaly>,
    /// Why the verdict is unknown, or other remarks.
    pub notes: Vec<String>,
}

impl Verdict {
    pub fn new(checker: &str) -> Verdict {
        Verdict {
            checker: checker.to_string(),
            valid: Validity::Valid,
            counts: BTreeMap::new(),
            anomaly_counts: BTreeMap::new(),
            anomalies: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Adds to a count.
    pub fn count(&mut self, name: &str, n: u64) {
        *self.counts.entry(name.to_string()).or_default() += n;
    }

    /// Records an anomaly; the verdict becomes invalid.
    pub fn anomaly(&mut self, kind: &str, key: &str, detail: String, data: serde_json::Value) {
        *self.anomaly_counts.entry(kind.to_string()).or_default() += 1;
        self.valid = Validity::Invalid;
        if self.anomalies.len() < SHOWN_ANOMALIES {
            self.anomalies.push(Anomaly {
                kind: kind.to_string(),
                key: key.to_string(),
                detail,
                data,
            });
        }
    }

    /// Records why the checker cannot tell; the verdict becomes unknown
    /// unless it is already invalid.
    pub fn unknown(&mut self, why: String) {
        self.valid = self.valid.and(Validity::Unknown);
        self.notes.push(why);
    }

    /// Total anomalies of a kind.
    pub fn anomalies_of(&self, kind: &str) -> u64 {
        self.anomaly_counts.get(kind).copied().unwrap_or(0)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a verdict always serialises")
    }
}

impl fmt::Display for Verdict {
    /// `set: invalid (lost 2, duplicate 1)` and then the anomalies shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.checker, self.valid)?;
        if !self.anomaly_counts.is_empty() {
            let kinds: Vec<String> = self
                .anomaly_counts
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            write!(f, " ({})", kinds.join(", "))?;
        }
        for a in &self.anomalies {
            write!(f, "\n  {} {}: {}", a.kind, a.key, a.detail)?;
        }
        for n in &self.notes {
            write!(f, "\n  note: {n}")?;
        }
        Ok(())
    }
}

/// The verdict of a whole run: `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Invalid if any checker is; else unknown if any is (or none ran).
    pub valid: Validity,
    pub checkers: BTreeMap<String, Validity>,
    /// Anomalies found, per checker.
    pub anomalies: BTreeMap<String, u64>,
    /// Events in the history.
    pub events: u64,
    /// When the history's clock started, microseconds since the Unix epoch
    /// (0 if unknown).
    pub start_epoch_us: i64,
}

impl Summary {
    pub fn of(verdicts: &[Verdict], events: usize, start_epoch_us: i64) -> Summary {
        let valid = if verdicts.is_empty() {
            Validity::Unknown
        } else {
            verdicts
                .iter()
                .fold(Validity::Valid, |acc, v| acc.and(v.valid))
        };
        Summary {
            valid,
            checkers: verdicts
                .iter()
                .map(|v| (v.checker.clone(), v.valid))
                .collect(),
            anomalies: verdicts
                .iter()
                .map(|v| (v.checker.clone(), v.anomaly_counts.values().sum()))
                .collect(),
            events: events as u64,
            start_epoch_us,
        }
    }

    /// The exit status for `bifrost-jepsen run`, as for `check`: 0 valid,
    /// 1 invalid, 2 unknown.
    pub fn exit_code(&self) -> i32 {
        match self.valid {
            Validity::Valid => 0,
            Validity::Invalid => 1,
            Validity::Unknown => 2,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.valid)?;
        for (name, v) in &self.checkers {
            write!(f, "\n  {name}: {v}")?;
            if let Some(n) = self.anomalies.get(name).filter(|n| **n > 0) {
                write!(f, " ({n} anomalies)")?;
            }
        }
        Ok(())
    }
}

/// What the checkers need besides the records.
#[derive(Clone, Debug, Default)]
pub struct CheckAllOptions {
    /// Time and memory budget of the register search.
    pub linearizability: crate::CheckOptions,
    /// Counter tags' devices, the kills, and which gaps they allow.
    pub counters: readings::CounterOptions,
}

/// Runs the checker of every workload that has records, in the order
/// register, set, watch, readings.
pub fn check_all(records: &[Record], opts: &CheckAllOptions) -> Vec<Verdict> {
    let has = |w: &str| records.iter().any(|r| r.workload == w);
    let mut out = Vec::new();
    if has(names::REGISTER) {
        out.push(register::check(records, &opts.linearizability));
    }
    if has(names::SET) {
        out.push(set::check(records));
    }
    if has(names::WATCH) {
        out.push(watch::check(records));
    }
    if has(names::READINGS) || !opts.counters.devices.is_empty() {
        out.push(readings::check(records, &opts.counters));
    }
    out
}

/// Writes a run's results folder (created if missing; see the module docs
/// for its files) and returns the summary. `history.jsonl` is written from
/// `records` unless the file exists already (the recorder wrote it as the
/// run went). `start_epoch_us` is [`workload::Recorder::start_epoch_us`].
pub fn write_results(
    dir: &Path,
    records: &[Record],
    verdicts: &[Verdict],
    faults: &[FaultWindow],
    start_epoch_us: i64,
) -> workload::Result<Summary> {
    std::fs::create_dir_all(dir)?;
    let history = dir.join("history.jsonl");
    if !history.exists() {
        workload::write_history(&history, records)?;
    }
    let register: Vec<Record> = records
        .iter()
        .filter(|r| r.workload == names::REGISTER)
        .cloned()
        .collect();
    if !register.is_empty() {
        workload::write_history(&dir.join("register.jsonl"), &register)?;
    }
    for v in verdicts {
        std::fs::write(dir.join(format!("{}.json", v.checker)), v.to_json() + "\n")?;
    }
    let summary = Summary::of(verdicts, records.len(), start_epoch_us);
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary).expect("serialises") + "\n",
    )?;
    std::fs::write(
        dir.join("faults.json"),
        serde_json::to_string_pretty(faults).expect("serialises") + "\n",
    )?;
    plot::write_plots(dir, records, faults)?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_serialises_as_jepsen_does_and_invalid_wins() {
        assert_eq!(serde_json::to_string(&Validity::Valid).unwrap(), "true");
        assert_eq!(serde_json::to_string(&Validity::Invalid).unwrap(), "false");
        assert_eq!(
            serde_json::to_string(&Validity::Unknown).unwrap(),
            "\"unknown\""
        );
        assert_eq!(Validity::Unknown.and(Validity::Invalid), Validity::Invalid);
        assert_eq!(Validity::Valid.and(Validity::Unknown), Validity::Unknown);
    }

    #[test]
    fn anomalies_beyond_the_shown_ones_are_counted() {
        let mut v = Verdict::new("set");
        for i in 0..SHOWN_ANOMALIES + 5 {
            v.anomaly("lost", "t", format!("id {i}"), serde_json::Value::Null);
        }
        v.unknown("no final read".into());
        assert_eq!(v.valid, Validity::Invalid, "unknown does not hide invalid");
        assert_eq!(v.anomalies.len(), SHOWN_ANOMALIES);
        assert_eq!(v.anomalies_of("lost"), SHOWN_ANOMALIES as u64 + 5);
        let s = Summary::of(&[v, Verdict::new("register")], 0, 0);
        assert_eq!(s.exit_code(), 1);
        assert_eq!(s.checkers["register"], Validity::Valid);
        assert_eq!(Summary::of(&[], 0, 0).valid, Validity::Unknown);
    }

    #[test]
    fn the_results_folder_has_every_file_and_rechecks_to_the_same_verdicts() {
        use crate::history::{Function, Value};
        let rec = workload::Recorder::in_memory();
        let mut p = rec.process(names::REGISTER);
        p.invoke(Function::Write, "r", Value::Int(1))
            .ok(Value::Int(1));
        p.invoke(Function::Read, "r", Value::Nil).ok(Value::Int(1));
        let mut s = rec.process(names::SET);
        let ids = Value::List(vec![Value::Str("s1".into())]);
        s.invoke(Function::Append, "t", ids.clone()).ok(ids);
        let read = Value::List(vec![Value::List(vec![
            Value::Str("s1".into()),
            Value::Int(3),
        ])]);
        s.invoke(Function::Read, "t", Value::Nil).ok(read);
        let records = rec.records();
        let verdicts = check_all(&records, &CheckAllOptions::default());
        assert_eq!(verdicts.len(), 2);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let faults = [FaultWindow {
            start_us: 0,
            end_us: 10,
            label: "pause n1".into(),
        }];
        let summary = write_results(&out, &records, &verdicts, &faults, 42).unwrap();
        assert_eq!(summary.valid, Validity::Valid);
        assert_eq!(summary.exit_code(), 0);
        for f in [
            "history.jsonl",
            "register.jsonl",
            "register.json",
            "set.json",
            "summary.json",
            "faults.json",
            "latency.svg",
            "throughput.svg",
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        let again = workload::read_history(&out.join("history.jsonl")).unwrap();
        assert_eq!(again, records);
        assert_eq!(check_all(&again, &CheckAllOptions::default()), verdicts);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("set.json")).unwrap()).unwrap();
        assert_eq!(json["valid"], serde_json::Value::Bool(true));
        assert_eq!(json["counts"]["acknowledged"], 1);
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        assert_eq!(summary["checkers"]["register"], true);
    }
}
