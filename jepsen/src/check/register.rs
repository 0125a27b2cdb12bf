//! Linearizability of the register workload, one register at a time.
//!
//! The crate's checker stops at the first register that fails; here every
//! register is searched on its own (with what is left of the time budget),
//! so the verdict lists every register that is not linearizable.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::json;

use super::Verdict;
use crate::checker::{self, CheckOptions};
use crate::history::{Operation, Outcome};
use crate::model::Register;
use crate::workload::{history_of, names, Record};
use crate::Verdict as Linearizability;

/// Checks the register workload's records.
pub fn check(records: &[Record], opts: &CheckOptions) -> Verdict {
    let mut v = Verdict::new(names::REGISTER);
    let history = history_of(records, names::REGISTER);
    let ops = match history.operations() {
        Ok(ops) => ops,
        Err(e) => {
            v.unknown(format!("the register history is malformed: {e}"));
            return v;
        }
    };
    v.count("operations", ops.len() as u64);
    for op in &ops {
        let outcome = match op.outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Fail => "fail",
            Outcome::Unknown => "info",
        };
        v.count(&format!("{}-{outcome}", op.f), 1);
    }
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in &ops {
        by_key.entry(op.key.as_str()).or_default().push(op.clone());
    }
    v.count("keys", by_key.len() as u64);
    let deadline = Instant::now() + opts.timeout;
    for (key, key_ops) in by_key {
        let key_opts = CheckOptions {
            timeout: deadline.saturating_duration_since(Instant::now()),
            max_memory: opts.max_memory,
        };
        let report = match checker::check(&Register, &key_ops, &key_opts) {
            Ok(r) => r,
            Err(e) => {
                v.unknown(format!("register {key}: {e}"));
                continue;
            }
        };
        v.count("explored", report.explored);
        match report.verdict {
            Linearizability::Linearizable => v.count("keys-linearizable", 1),
            Linearizability::NotLinearizable => {
                let f = report
                    .failure
                    .expect("a failure comes with its description");
                v.anomaly(
                    "not-linearizable",
                    key,
                    f.to_string(),
                    json!({
                        "stuck": f.stuck.to_string(),
                        "state": f.state,
                        "prefix": f.prefix.len(),
                        "pending": f.pending.iter().map(|op| op.to_string()).collect::<Vec<_>>(),
                    }),
                );
            }
            Linearizability::Unknown => {
                let why = report
                    .gave_up
                    .map(|g| format!("{:?}", g.limit))
                    .unwrap_or_default();
                v.unknown(format!("register {key}: the search gave up ({why})"));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::{EventType, Function, Value};

    /// `(process, type, f, key, value)` at times 1, 2, 3, ...
    fn history(events: &[(u64, EventType, Function, &str, Value)]) -> Vec<Record> {
        events
            .iter()
            .enumerate()
            .map(|(i, (process, kind, f, key, value))| Record {
                process: *process,
                kind: *kind,
                f: *f,
                key: key.to_string(),
                value: value.clone(),
                time: i as u64 + 1,
                workload: names::REGISTER.into(),
                node: None,
                error: None,
            })
            .collect()
    }

    use EventType::{Fail, Info, Invoke, Ok};
    use Function::{Cas, Read, Write};

    fn pair(a: i64, b: i64) -> Value {
        Value::List(vec![Value::Int(a), Value::Int(b)])
    }

    #[test]
    fn a_linearizable_history_with_unknown_and_failed_operations_is_valid() {
        let h = history(&[
            (1, Invoke, Write, "r1", Value::Int(1)),
            (1, Ok, Write, "r1", Value::Int(1)),
            (2, Invoke, Cas, "r1", pair(1, 2)),
            (3, Invoke, Read, "r1", Value::Nil),
            (2, Info, Cas, "r1", Value::Nil),
            (3, Ok, Read, "r1", Value::Int(2)),
            (4, Invoke, Cas, "r1", pair(3, 4)),
            (4, Fail, Cas, "r1", Value::Nil),
            (5, Invoke, Read, "r2", Value::Nil),
            (5, Ok, Read, "r2", Value::Nil),
        ]);
        let v = check(&h, &CheckOptions::default());
        assert_eq!(v.valid, Validity::Valid, "{v}");
        assert_eq!(v.counts["keys"], 2);
        assert_eq!(v.counts["keys-linearizable"], 2);
        assert_eq!(v.counts["cas-info"], 1);
    }

    #[test]
    fn a_stale_read_on_one_register_is_not_linearizable_and_names_it() {
        let h = history(&[
            (1, Invoke, Write, "r1", Value::Int(1)),
            (1, Ok, Write, "r1", Value::Int(1)),
            (2, Invoke, Write, "r1", Value::Int(2)),
            (2, Ok, Write, "r1", Value::Int(2)),
            // Reads 1 after 2 was acknowledged: stale.
            (3, Invoke, Read, "r1", Value::Nil),
            (3, Ok, Read, "r1", Value::Int(1)),
            (4, Invoke, Write, "r2", Value::Int(7)),
            (4, Ok, Write, "r2", Value::Int(7)),
            (5, Invoke, Cas, "r2", pair(3, 8)),
            // A cas that succeeded from a value the register never had.
            (5, Ok, Cas, "r2", pair(3, 8)),
        ]);
        let v = check(&h, &CheckOptions::default());
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(
            v.anomalies_of("not-linearizable"),
            2,
            "every bad key is reported: {v}"
        );
        assert_eq!(v.anomalies[0].key, "r1");
        assert!(v.anomalies[0].detail.contains("read"), "{v}");
        assert_eq!(v.anomalies[1].key, "r2");
    }

    #[test]
    fn a_malformed_history_is_unknown() {
        let h = history(&[(1, Ok, Read, "r1", Value::Int(1))]);
        let v = check(&h, &CheckOptions::default());
        assert_eq!(v.valid, Validity::Unknown);
        assert!(v.notes[0].contains("malformed"), "{v}");
    }
}
