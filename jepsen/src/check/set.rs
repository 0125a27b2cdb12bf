//! The ingest-set checker: no acknowledged reading is lost.
//!
//! Every `append` of the set workload attempted some reading ids on a tag;
//! the final `read` of each tag says which ids the cluster holds. Then:
//!
//! - **lost**: acknowledged (`ok`), but absent. The promise broken.
//! - **unexpected**: present, but never attempted (on any tag).
//! - **misplaced**: attempted on one tag, present on another.
//! - **duplicate**: the same id present twice (ingest must deduplicate).
//! - **present-after-fail**: present although its ingest was refused.
//! - **recovered** (not an anomaly): the outcome was unknown (`info`, or
//!   never completed) and the reading is present.
//!
//! Without a successful final read of every tag that was written to, the
//! verdict is unknown.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::Verdict;
use crate::history::{Function, Outcome, Value};
use crate::workload::{history_of, names, Record};

/// What the final reads found: tag -> [(id, revision)].
pub type FinalReads = BTreeMap<String, Vec<(String, u64)>>;

/// The final reads of the set workload, by tag. A tag read more than once
/// keeps the last read.
pub fn final_reads(records: &[Record]) -> FinalReads {
    let mut out = FinalReads::new();
    let Ok(ops) = history_of(records, names::SET).operations() else {
        return out;
    };
    for op in ops {
        if op.f != Function::Read {
            continue;
        }
        if let Outcome::Ok(Value::List(items)) = op.outcome {
            let readings = items
                .iter()
                .filter_map(|item| match item {
                    Value::List(pair) => match pair.as_slice() {
                        [Value::Str(id), Value::Int(rev)] => Some((id.clone(), *rev as u64)),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            out.insert(op.key.clone(), readings);
        }
    }
    out
}

/// Checks the set workload's records.
pub fn check(records: &[Record]) -> Verdict {
    let mut v = Verdict::new(names::SET);
    let ops = match history_of(records, names::SET).operations() {
        Ok(ops) => ops,
        Err(e) => {
            v.unknown(format!("the set history is malformed: {e}"));
            return v;
        }
    };
    // id -> (tag, outcome, invocation time)
    let mut attempted: BTreeMap<String, (String, &'static str, u64)> = BTreeMap::new();
    let mut written_tags = BTreeSet::new();
    for op in &ops {
        if op.f != Function::Append {
            continue;
        }
        let outcome = match op.outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "info",
        };
        v.count(&format!("append-{outcome}"), 1);
        written_tags.insert(op.key.clone());
        if let Value::List(ids) = &op.value {
            for id in ids {
                if let Value::Str(id) = id {
                    attempted.insert(id.clone(), (op.key.clone(), outcome, op.invoke_time));
                }
            }
        }
    }
    let reads = final_reads(records);
    for tag in &written_tags {
        if !reads.contains_key(tag) {
            v.unknown(format!("no successful final read of tag {tag}"));
        }
    }

    // id -> [(tag, revision)] as found.
    let mut found: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for (tag, readings) in &reads {
        for (id, rev) in readings {
            found
                .entry(id.as_str())
                .or_default()
                .push((tag.as_str(), *rev));
        }
    }
    v.count("attempted", attempted.len() as u64);
    for outcome in ["ok", "fail", "info"] {
        let n = attempted.values().filter(|a| a.1 == outcome).count() as u64;
        let name = match outcome {
            "ok" => "acknowledged",
            "fail" => "refused",
            _ => "unknown",
        };
        v.count(name, n);
    }
    v.count("read", found.values().map(|f| f.len() as u64).sum());

    let mut recovered = 0;
    for (id, (tag, outcome, at)) in &attempted {
        let here = found.get(id.as_str());
        match (outcome, here) {
            (&"ok", None) if reads.contains_key(tag) => v.anomaly(
                "lost",
                tag,
                format!("reading {id} was acknowledged (ingest invoked at {at} us) but is not in the final read of {tag}"),
                json!({"id": id, "tag": tag, "invoked_us": at}),
            ),
            (&"fail", Some(places)) => v.anomaly(
                "present-after-fail",
                tag,
                format!("reading {id} was refused, yet the final read has it at {places:?}"),
                json!({"id": id, "tag": tag, "found": places}),
            ),
            (&"info", Some(_)) => recovered += 1,
            _ => {}
        }
        if let Some(places) = here {
            if let Some((other, rev)) = places.iter().find(|(t, _)| t != tag) {
                v.anomaly(
                    "misplaced",
                    tag,
                    format!(
                        "reading {id} was ingested to {tag} but is in {other} at revision {rev}"
                    ),
                    json!({"id": id, "tag": tag, "found_in": other, "revision": rev}),
                );
            }
        }
    }
    v.count("recovered", recovered);
    for (id, places) in &found {
        let tag = places[0].0;
        if !attempted.contains_key(*id) {
            v.anomaly(
                "unexpected",
                tag,
                format!("reading {id} is in the final read of {tag} but was never ingested"),
                json!({"id": id, "found": places}),
            );
        }
        if places.len() > 1 {
            v.anomaly(
                "duplicate",
                tag,
                format!("reading {id} is present {} times: {places:?}", places.len()),
                json!({"id": id, "found": places}),
            );
        }
    }
    v.count("lost", v.anomalies_of("lost"));
    v.count("duplicates", v.anomalies_of("duplicate"));
    v.count("unexpected", v.anomalies_of("unexpected"));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::EventType;
    use crate::workload::Record;

    fn rec(
        process: u64,
        kind: EventType,
        f: Function,
        key: &str,
        value: Value,
        time: u64,
    ) -> Record {
        Record {
            process,
            kind,
            f,
            key: key.into(),
            value,
            time,
            workload: names::SET.into(),
            node: None,
            error: None,
        }
    }

    fn ids(ids: &[&str]) -> Value {
        Value::List(ids.iter().map(|s| Value::Str(s.to_string())).collect())
    }

    fn append(h: &mut Vec<Record>, p: u64, tag: &str, i: &[&str], kind: EventType) {
        let t = h.len() as u64;
        h.push(rec(p, EventType::Invoke, Function::Append, tag, ids(i), t));
        let v = if kind == EventType::Ok {
            ids(i)
        } else {
            Value::Nil
        };
        h.push(rec(p, kind, Function::Append, tag, v, t + 1));
    }

    fn final_read(h: &mut Vec<Record>, tag: &str, found: &[(&str, i64)]) {
        let t = h.len() as u64;
        h.push(rec(
            99,
            EventType::Invoke,
            Function::Read,
            tag,
            Value::Nil,
            t,
        ));
        let v = Value::List(
            found
                .iter()
                .map(|(id, rev)| Value::List(vec![Value::Str(id.to_string()), Value::Int(*rev)]))
                .collect(),
        );
        h.push(rec(99, EventType::Ok, Function::Read, tag, v, t + 1));
    }

    #[test]
    fn every_acknowledged_reading_present_is_valid_and_unknown_ones_count_as_recovered() {
        let mut h = vec![];
        append(&mut h, 1, "a", &["s1", "s2"], EventType::Ok);
        append(&mut h, 2, "a", &["s3"], EventType::Info);
        append(&mut h, 3, "b", &["s4"], EventType::Fail);
        append(&mut h, 4, "b", &["s5"], EventType::Info);
        final_read(&mut h, "a", &[("s1", 10), ("s2", 10), ("s3", 11)]);
        final_read(&mut h, "b", &[]);
        let v = check(&h);
        assert_eq!(v.valid, Validity::Valid, "{v}");
        assert_eq!(v.counts["recovered"], 1);
        assert_eq!(v.counts["acknowledged"], 2);
        assert_eq!(v.counts["unknown"], 2);
    }

    #[test]
    fn a_lost_acknowledged_reading_is_invalid() {
        let mut h = vec![];
        append(&mut h, 1, "a", &["s1", "s2"], EventType::Ok);
        final_read(&mut h, "a", &[("s1", 10)]);
        let v = check(&h);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies_of("lost"), 1);
        assert!(v.anomalies[0].detail.contains("s2"), "{v}");
    }

    #[test]
    fn a_duplicate_an_unexpected_and_a_misplaced_reading_are_invalid() {
        let mut h = vec![];
        append(&mut h, 1, "a", &["s1"], EventType::Ok);
        append(&mut h, 2, "b", &["s2"], EventType::Ok);
        final_read(
            &mut h,
            "a",
            &[("s1", 10), ("s1", 12), ("x9", 13), ("s2", 14)],
        );
        final_read(&mut h, "b", &[("s2", 14)]);
        let v = check(&h);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies_of("duplicate"), 2, "{v}");
        assert_eq!(v.anomalies_of("unexpected"), 1, "{v}");
        assert_eq!(v.anomalies_of("misplaced"), 1, "{v}");
    }

    #[test]
    fn a_refused_reading_that_is_present_is_invalid() {
        let mut h = vec![];
        append(&mut h, 1, "a", &["s1"], EventType::Fail);
        final_read(&mut h, "a", &[("s1", 10)]);
        assert_eq!(check(&h).anomalies_of("present-after-fail"), 1);
    }

    #[test]
    fn without_a_final_read_the_verdict_is_unknown() {
        let mut h = vec![];
        append(&mut h, 1, "a", &["s1"], EventType::Ok);
        let v = check(&h);
        assert_eq!(v.valid, Validity::Unknown);
        assert!(v.notes[0].contains("no successful final read"), "{v}");
    }
}
