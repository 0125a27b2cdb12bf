//! The polled-counter checker: no duplicates, and gaps only where a fault
//! allows one.
//!
//! A simulated counter goes up by exactly one per poll, so the values
//! stored for its tag should be consecutive. Two kinds of anomaly:
//!
//! - **duplicate**: one value stored twice (`duplicate-value`), or one
//!   reading id twice (`duplicate-id`). Overlap between an old and a new
//!   owner is two *different* polls, so it never stores a value twice.
//! - **gap**: values missing between two stored ones. The promise allows
//!   two kinds, both polls that were never acquired:
//!   - the reading a node had polled but not yet made durable when it was
//!     killed (`kill -9` loses its in-flight poll): one missing value per
//!     kill of the device's owner, in a gap near the kill (with some slack
//!     for clocks);
//!   - a poll that failed (stored as a reading without a value, e.g. a
//!     timeout) whose request still reached the device, which counted it:
//!     a node paused just before sending a request sends it when resumed,
//!     and its deadline has passed by then, so the answer is not taken.
//!     One missing value per failed poll, in a gap that ends after the poll
//!     began and begins at most the slack after it. (The harness gives the
//!     plant's devices no retries: a request that timed out or broke and
//!     was retried within one poll would leave such a gap with no failed
//!     poll to explain it.)
//!
//!   Anything else is a `forbidden-gap` (see [`GapAllowance`]).
//!
//! The kills come from the harness, which knows whom it killed and when.
//! Which devices the node owned then is either given with the kill or taken
//! from the last assignment sample the workload recorded before it. Times
//! are wall-clock microseconds since the epoch, like reading timestamps.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::Verdict;
use crate::history::{Function, Outcome, Value};
use crate::workload::readings::{ASSIGNMENTS, TAGS};
use crate::workload::{history_of, names, Record};

/// A node killed while it owned some devices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerKill {
    pub node: u64,
    /// When, in microseconds since the epoch.
    pub at_us: i64,
    /// The devices it polled at that moment; empty: the ones the last
    /// assignment sample before `at_us` gave it.
    pub devices: Vec<String>,
}

/// Which gaps in a counter's values are allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GapAllowance {
    /// None at all.
    None,
    /// Up to `per_kill` missing values per kill of the device's owner, in a
    /// gap whose surrounding readings are within `slack_us` of the kill.
    AroundOwnerKills { per_kill: u64, slack_us: i64 },
    /// Any (only duplicates are checked).
    Any,
}

impl Default for GapAllowance {
    /// At most one missing value per kill of the owner, within 5 s.
    fn default() -> Self {
        GapAllowance::AroundOwnerKills {
            per_kill: 1,
            slack_us: 5_000_000,
        }
    }
}

/// What the readings checker needs besides the records.
#[derive(Clone, Debug, Default)]
pub struct CounterOptions {
    /// Counter tag -> its device, besides (and over) what the final read
    /// recorded. Every tag listed must have been read at the end (else the
    /// verdict is unknown).
    pub devices: BTreeMap<String, String>,
    pub kills: Vec<OwnerKill>,
    pub allowance: GapAllowance,
}

/// A counter reading as read at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterReading {
    pub value: i64,
    pub id: String,
    pub ts_us: i64,
}

/// What the readings workload recorded.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    /// Counter tag -> readings with a value, in the order read.
    pub reads: BTreeMap<String, Vec<CounterReading>>,
    /// Counter tag -> start times of its failed polls (readings stored
    /// without a value), in the order read.
    pub failed_polls: BTreeMap<String, Vec<i64>>,
    /// Counter tags whose final read did not succeed.
    pub unread: Vec<String>,
    /// Tag -> device, as read at the end.
    pub devices: BTreeMap<String, String>,
    /// Assignment samples: (epoch µs, device -> node), in time order.
    pub assignments: Vec<(i64, BTreeMap<String, u64>)>,
}

impl Recorded {
    /// The devices `node` polled at `at_us`, by the last sample before.
    pub fn owned_by(&self, node: u64, at_us: i64) -> Option<Vec<String>> {
        let (_, owners) = self.assignments.iter().rev().find(|(t, _)| *t <= at_us)?;
        Some(
            owners
                .iter()
                .filter(|(_, n)| **n == node)
                .map(|(d, _)| d.clone())
                .collect(),
        )
    }
}

fn pairs(v: &Value) -> Vec<&[Value]> {
    match v {
        Value::List(items) => items
            .iter()
            .filter_map(|i| match i {
                Value::List(f) => Some(f.as_slice()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// Reads back what the readings workload recorded.
pub fn recorded(records: &[Record]) -> Recorded {
    let mut out = Recorded::default();
    let Ok(ops) = history_of(records, names::READINGS).operations() else {
        return out;
    };
    for op in ops {
        if op.f != Function::Read {
            continue;
        }
        let Outcome::Ok(value) = &op.outcome else {
            if op.key != ASSIGNMENTS && op.key != TAGS {
                out.unread.push(op.key.clone());
            }
            continue;
        };
        match op.key.as_str() {
            ASSIGNMENTS => {
                if let Value::List(items) = value {
                    if let [Value::Int(at), owners] = items.as_slice() {
                        let owners = pairs(owners)
                            .into_iter()
                            .filter_map(|p| match p {
                                [Value::Str(d), Value::Int(n)] => Some((d.clone(), *n as u64)),
                                _ => None,
                            })
                            .collect();
                        out.assignments.push((*at, owners));
                    }
                }
            }
            TAGS => {
                for p in pairs(value) {
                    if let [Value::Str(t), Value::Str(d)] = p {
                        out.devices.insert(t.clone(), d.clone());
                    }
                }
            }
            tag => {
                let (mut readings, mut failed) = (Vec::new(), Vec::new());
                for p in pairs(value) {
                    match p {
                        [Value::Int(value), Value::Str(id), Value::Int(ts_us)] => {
                            readings.push(CounterReading {
                                value: *value,
                                id: id.clone(),
                                ts_us: *ts_us,
                            })
                        }
                        [Value::Nil, _, Value::Int(ts_us)] => failed.push(*ts_us),
                        _ => {}
                    }
                }
                out.failed_polls.insert(tag.to_string(), failed);
                out.unread.retain(|t| t != tag);
                out.reads.insert(tag.to_string(), readings);
            }
        }
    }
    out.assignments.sort_by_key(|(t, _)| *t);
    out
}

/// Checks the readings workload's final reads.
pub fn check(records: &[Record], opts: &CounterOptions) -> Verdict {
    let mut v = Verdict::new(names::READINGS);
    let rec = recorded(records);
    let reads = &rec.reads;
    for tag in opts.devices.keys().chain(&rec.unread) {
        if !reads.contains_key(tag) {
            v.unknown(format!("no successful final read of counter tag {tag}"));
        }
    }
    let mut devices = rec.devices.clone();
    devices.extend(opts.devices.clone());
    // Each kill with the devices its node owned.
    let kills: Vec<OwnerKill> = opts
        .kills
        .iter()
        .map(|k| {
            let mut k = k.clone();
            if k.devices.is_empty() {
                match rec.owned_by(k.node, k.at_us) {
                    Some(d) => k.devices = d,
                    None => v.notes.push(format!(
                        "no assignment sample before the kill of node {} at {}: it explains no gap",
                        k.node, k.at_us
                    )),
                }
            }
            k
        })
        .collect();
    v.count("assignment-samples", rec.assignments.len() as u64);
    // (kill index, device) -> missing values it may still explain.
    let mut credit: HashMap<(usize, &str), u64> = HashMap::new();
    v.count("tags", reads.len() as u64);
    for (tag, readings) in reads {
        v.count("readings", readings.len() as u64);
        if readings.is_empty() {
            v.unknown(format!("counter tag {tag} has no readings"));
            continue;
        }
        // Failed polls not yet used to explain a missing value.
        let mut failed = rec.failed_polls.get(tag).cloned().unwrap_or_default();
        v.count("failed-polls", failed.len() as u64);
        let mut sorted = readings.clone();
        sorted.sort_by_key(|a| (a.value, a.ts_us));
        // Polled readings carry no id (they are stored once per outbox
        // record); ids, where there are any, must be unique too.
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for r in readings.iter().filter(|r| !r.id.is_empty()) {
            *ids.entry(r.id.as_str()).or_default() += 1;
        }
        for (id, n) in ids.iter().filter(|(_, n)| **n > 1) {
            v.anomaly(
                "duplicate-id",
                tag,
                format!("{tag}: reading id {id} is stored {n} times"),
                json!({"tag": tag, "id": id, "times": n}),
            );
        }
        let device = devices.get(tag).map(String::as_str);
        if device.is_none() {
            v.notes.push(format!(
                "{tag}: device unknown, so no kill explains its gaps"
            ));
        }
        for w in sorted.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            if a.value == b.value {
                v.anomaly(
                    "duplicate-value",
                    tag,
                    format!(
                        "{tag}: value {} is stored twice (ids {} and {})",
                        a.value, a.id, b.id
                    ),
                    json!({"tag": tag, "value": a.value, "ids": [a.id, b.id]}),
                );
                continue;
            }
            let missing = (b.value - a.value - 1) as u64;
            if missing == 0 {
                continue;
            }
            v.count("missing", missing);
            let allowed = match &opts.allowance {
                GapAllowance::Any => true,
                GapAllowance::None => false,
                GapAllowance::AroundOwnerKills { per_kill, slack_us } => {
                    let mut left = missing;
                    if let Some(device) = device {
                        for (i, k) in kills.iter().enumerate() {
                            let near =
                                k.at_us >= a.ts_us - slack_us && k.at_us <= b.ts_us + slack_us;
                            if left == 0 || !near || !k.devices.iter().any(|d| d == device) {
                                continue;
                            }
                            let c = credit.entry((i, device)).or_insert(*per_kill);
                            let used = left.min(*c);
                            *c -= used;
                            left -= used;
                        }
                    }
                    while left > 0 {
                        let Some(i) = failed
                            .iter()
                            .position(|&f| f <= b.ts_us && a.ts_us <= f + slack_us)
                        else {
                            break;
                        };
                        failed.remove(i);
                        left -= 1;
                    }
                    left == 0
                }
            };
            if allowed {
                v.count("allowed-missing", missing);
            } else {
                v.anomaly(
                    "forbidden-gap",
                    tag,
                    format!(
                        "{tag}: {missing} value(s) missing between {} (ts {}) and {} (ts {}), not explained by a kill of the device's owner or a failed poll",
                        a.value, a.ts_us, b.value, b.ts_us
                    ),
                    json!({"tag": tag, "device": device, "after": a.value, "before": b.value,
                           "missing": missing, "after_ts_us": a.ts_us, "before_ts_us": b.ts_us}),
                );
            }
        }
    }
    v.count("kills", kills.len() as u64);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::EventType;

    fn records(tag: &str, values: &[(i64, &str, i64)]) -> Vec<Record> {
        let v = Value::List(
            values
                .iter()
                .map(|(v, id, ts)| {
                    Value::List(vec![
                        Value::Int(*v),
                        Value::Str(id.to_string()),
                        Value::Int(*ts),
                    ])
                })
                .collect(),
        );
        [(EventType::Invoke, Value::Nil), (EventType::Ok, v)]
            .into_iter()
            .enumerate()
            .map(|(i, (kind, value))| Record {
                process: 0,
                kind,
                f: Function::Read,
                key: tag.into(),
                value,
                time: i as u64,
                workload: names::READINGS.into(),
                node: None,
                error: None,
            })
            .collect()
    }

    fn opts(kills: Vec<OwnerKill>) -> CounterOptions {
        CounterOptions {
            devices: BTreeMap::from([("sim0/counter".to_string(), "sim0".to_string())]),
            kills,
            allowance: GapAllowance::default(),
        }
    }

    const S: i64 = 1_000_000;

    #[test]
    fn consecutive_values_are_valid() {
        let h = records(
            "sim0/counter",
            &[(1, "a", S), (2, "b", 2 * S), (3, "c", 3 * S)],
        );
        let v = check(&h, &opts(vec![]));
        assert_eq!(v.valid, Validity::Valid, "{v}");
        assert_eq!(v.counts["readings"], 3);
    }

    #[test]
    fn a_gap_without_a_kill_is_forbidden() {
        let h = records("sim0/counter", &[(1, "a", S), (3, "c", 3 * S)]);
        let v = check(&h, &opts(vec![]));
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies_of("forbidden-gap"), 1, "{v}");
    }

    #[test]
    fn one_missing_value_at_a_kill_of_the_owner_is_allowed_two_are_not() {
        let kill = OwnerKill {
            node: 2,
            at_us: 2 * S,
            devices: vec!["sim0".into()],
        };
        let one = records("sim0/counter", &[(1, "a", S), (3, "c", 3 * S)]);
        let v = check(&one, &opts(vec![kill.clone()]));
        assert_eq!(v.valid, Validity::Valid, "{v}");
        assert_eq!(v.counts["allowed-missing"], 1);

        let two = records("sim0/counter", &[(1, "a", S), (4, "d", 3 * S)]);
        assert_eq!(
            check(&two, &opts(vec![kill.clone()])).valid,
            Validity::Invalid
        );

        // A kill of a node that did not own the device explains nothing.
        let other = OwnerKill {
            devices: vec!["sim1".into()],
            ..kill.clone()
        };
        assert_eq!(check(&one, &opts(vec![other])).valid, Validity::Invalid);

        // Nor does a kill long before the gap.
        let early = OwnerKill {
            at_us: -60 * S,
            ..kill
        };
        assert_eq!(check(&one, &opts(vec![early])).valid, Validity::Invalid);
    }

    fn read(key: &str, value: Value, time: u64) -> Vec<Record> {
        [(EventType::Invoke, Value::Nil), (EventType::Ok, value)]
            .into_iter()
            .map(|(kind, value)| Record {
                process: 0,
                kind,
                f: Function::Read,
                key: key.into(),
                value,
                time,
                workload: names::READINGS.into(),
                node: None,
                error: None,
            })
            .collect()
    }

    #[test]
    fn the_owner_at_a_kill_comes_from_the_recorded_samples() {
        let sample = |at: i64, node: i64| {
            Value::List(vec![
                Value::Int(at),
                Value::List(vec![Value::List(vec![
                    Value::Str("sim0".into()),
                    Value::Int(node),
                ])]),
            ])
        };
        let mut h = read(ASSIGNMENTS, sample(S / 2, 2), 0);
        // Moved to node 3 after the kill of 2.
        h.extend(read(ASSIGNMENTS, sample(5 * S / 2, 3), 1));
        h.extend(read(
            TAGS,
            Value::List(vec![Value::List(vec![
                Value::Str("sim0/counter".into()),
                Value::Str("sim0".into()),
            ])]),
            2,
        ));
        h.extend(records("sim0/counter", &[(1, "a", S), (3, "c", 3 * S)]));
        let kill = |node| OwnerKill {
            node,
            at_us: 2 * S,
            devices: vec![],
        };
        let no_devices = |kills| CounterOptions {
            kills,
            ..Default::default()
        };
        let v = check(&h, &no_devices(vec![kill(2)]));
        assert_eq!(v.valid, Validity::Valid, "{v}");
        assert_eq!(v.counts["assignment-samples"], 2);
        // Node 3 did not own sim0 at the kill.
        assert_eq!(
            check(&h, &no_devices(vec![kill(3)])).valid,
            Validity::Invalid
        );
    }

    /// Readings of sim0/counter: `Some(v)` a value, `None` a failed poll.
    fn with_failed(readings: &[(Option<i64>, i64)]) -> Vec<Record> {
        let items = readings
            .iter()
            .map(|(v, ts)| {
                let v = v.map_or(Value::Nil, Value::Int);
                Value::List(vec![v, Value::Str(String::new()), Value::Int(*ts)])
            })
            .collect();
        read("sim0/counter", Value::List(items), 0)
    }

    #[test]
    fn a_failed_poll_explains_one_missing_value_after_it_within_the_slack() {
        // As seen in a smoke run: a node paused at 10 s, just before sending
        // its request, sent it when resumed at 13.9 s (after its deadline),
        // so the device counted 16 and the poll was stored as failed.
        let seen = with_failed(&[
            (Some(12), 9 * S),
            (None, 10 * S),
            (Some(13), 11 * S),
            (Some(14), 12 * S),
            (Some(15), 13 * S),
            (Some(17), 14 * S),
        ]);
        let v = check(&seen, &opts(vec![]));
        assert_eq!(v.valid, Validity::Valid, "{v}");
        assert_eq!(v.counts["failed-polls"], 1);
        assert_eq!(v.counts["allowed-missing"], 1);

        // One failed poll explains one value, not two.
        let two = with_failed(&[(Some(12), 9 * S), (None, 10 * S), (Some(15), 11 * S)]);
        assert_eq!(v_of(&two).anomalies_of("forbidden-gap"), 1);
        // Nor a gap that ends before the poll began,
        let before = with_failed(&[(Some(12), 9 * S), (Some(14), 10 * S), (None, 11 * S)]);
        assert_eq!(v_of(&before).valid, Validity::Invalid);
        // nor one that begins longer than the slack after it.
        let late = with_failed(&[(None, S), (Some(12), 9 * S), (Some(14), 10 * S)]);
        assert_eq!(v_of(&late).valid, Validity::Invalid);
        // With no allowance at all, a failed poll explains nothing.
        let strict = CounterOptions {
            allowance: GapAllowance::None,
            ..opts(vec![])
        };
        assert_eq!(check(&seen, &strict).valid, Validity::Invalid);
    }

    fn v_of(h: &[Record]) -> Verdict {
        check(h, &opts(vec![]))
    }

    #[test]
    fn a_failed_final_read_is_unknown() {
        let mut h = records("sim0/counter", &[(1, "a", S)]);
        h.push(Record {
            process: 1,
            kind: EventType::Invoke,
            f: Function::Read,
            key: "sim1/counter".into(),
            value: Value::Nil,
            time: 5,
            workload: names::READINGS.into(),
            node: None,
            error: None,
        });
        let v = check(&h, &CounterOptions::default());
        assert_eq!(v.valid, Validity::Unknown, "{v}");
    }

    #[test]
    fn a_value_stored_twice_is_a_duplicate() {
        let h = records(
            "sim0/counter",
            &[
                (1, "a", S),
                (2, "b", 2 * S),
                (2, "b2", 2 * S),
                (3, "c", 3 * S),
                (3, "c", 3 * S),
                // Polled readings have no id: two of them are no duplicate.
                (4, "", 4 * S),
                (5, "", 5 * S),
            ],
        );
        let v = check(&h, &opts(vec![]));
        assert_eq!(v.anomalies_of("duplicate-value"), 2, "{v}");
        assert_eq!(v.anomalies_of("duplicate-id"), 1, "{v}");
    }

    #[test]
    fn a_counter_tag_not_read_is_unknown() {
        let v = check(&[], &opts(vec![]));
        assert_eq!(v.valid, Validity::Unknown);
    }
}
