//! The subscription checker: no gaps, no repeats, revision order.
//!
//! Each stream (a subscription, across its reconnects; see
//! [`crate::workload::watch`] for how it is recorded) is checked on its
//! own:
//!
//! - **order**: the revisions of the readings delivered are strictly
//!   increasing across the whole stream (`repeated-revision` when one comes
//!   again, `out-of-order` when it goes back, also below a revision a
//!   progress message had already declared complete);
//! - **resume**: a reconnect starts exactly after the last revision the
//!   stream had covered (`resume-mismatch`);
//! - **content**: the readings delivered are exactly the committed readings
//!   that match the stream's filter with a revision after its start and up
//!   to the last revision it covered, compared with the final reads of the
//!   set workload (`gap` for one missing, `unexpected` for one that is not
//!   committed, or not at that revision, or does not match the filter);
//! - **liveness**: after the run, the stream reached the revision the
//!   cluster had when the run ended (`stalled`).
//!
//! The filter is matched here with a glob matcher of our own (`*` within a
//! path segment, `**` across segments, `?` one character but `/`), not the
//! server's code.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::set::{final_reads, FinalReads};
use super::Verdict;
use crate::history::{Operation, Outcome, Value};
use crate::workload::{history_of, names, Record};

/// A reading as the checkers see it: (revision, tag, id).
pub type Delivered = (u64, String, String);

/// Checks the watch workload's records against the set workload's final
/// reads.
pub fn check(records: &[Record]) -> Verdict {
    check_against(records, &final_reads(records))
}

/// Checks the watch workload's records against `truth`: tag -> committed
/// readings (id, revision), for every tag that was read at the end.
pub fn check_against(records: &[Record], truth: &FinalReads) -> Verdict {
    let mut v = Verdict::new(names::WATCH);
    let ops = match history_of(records, names::WATCH).operations() {
        Ok(ops) => ops,
        Err(e) => {
            v.unknown(format!("the watch history is malformed: {e}"));
            return v;
        }
    };
    let mut streams: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &ops {
        streams.entry(op.key.as_str()).or_default().push(op);
    }
    v.count("streams", streams.len() as u64);
    if truth.is_empty() && !streams.is_empty() {
        v.unknown("no final reads to compare the streams with".into());
    }
    for (name, ops) in streams {
        check_stream(&mut v, name, &ops, truth);
    }
    v
}

/// A stream's filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub tags: Vec<String>,
    pub patterns: Vec<String>,
}

impl Filter {
    /// Whether the stream asked for readings of `tag`. No tags and no
    /// patterns: every tag.
    pub fn matches(&self, tag: &str) -> bool {
        (self.tags.is_empty() && self.patterns.is_empty())
            || self.tags.iter().any(|t| t == tag)
            || self.patterns.iter().any(|p| glob(p, tag))
    }
}

/// Glob matching of tag names: `*` any run of characters but `/`, `**` any
/// run including `/`, `?` one character but `/`, `\` escapes.
pub fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => {
                let across = p.get(1) == Some(&'*');
                let rest = if across { &p[2..] } else { &p[1..] };
                // Try every length of the run, shortest first.
                let mut i = 0;
                loop {
                    if go(rest, &t[i..]) {
                        return true;
                    }
                    if i == t.len() || (!across && t[i] == '/') {
                        return false;
                    }
                    i += 1;
                }
            }
            Some('?') => !t.is_empty() && t[0] != '/' && go(&p[1..], &t[1..]),
            Some('\\') if p.len() > 1 => !t.is_empty() && t[0] == p[1] && go(&p[2..], &t[1..]),
            Some(c) => !t.is_empty() && t[0] == *c && go(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t)
}

fn int(v: Option<&Value>) -> Option<u64> {
    match v {
        Some(Value::Int(i)) if *i >= 0 => Some(*i as u64),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|i| match i {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

struct Stream<'a> {
    name: &'a str,
    filter: Option<Filter>,
    /// The revision the stream started after (its first `started`).
    start: Option<u64>,
    /// Everything matching up to here was delivered, as the server says.
    covered: Option<u64>,
    /// The revision of the last reading delivered.
    last: Option<u64>,
    delivered: Vec<Delivered>,
    target: Option<u64>,
    messages: u64,
    reconnects: u64,
    resubscribes: u64,
}

fn check_stream(v: &mut Verdict, name: &str, ops: &[&Operation], truth: &FinalReads) {
    let mut s = Stream {
        name,
        filter: None,
        start: None,
        covered: None,
        last: None,
        delivered: Vec::new(),
        target: None,
        messages: 0,
        reconnects: 0,
        resubscribes: 0,
    };
    for op in ops {
        let arg: &[Value] = match &op.value {
            Value::List(items) => items,
            _ => &[],
        };
        if let Some(Value::Str(tag)) = arg.first() {
            if tag == "subscribe" {
                let filter = Filter {
                    tags: strings(arg.get(1)),
                    patterns: strings(arg.get(2)),
                };
                if s.filter.is_some() {
                    s.resubscribes += 1;
                }
                s.filter.get_or_insert(filter);
            }
        }
        let Outcome::Ok(Value::List(items)) = &op.outcome else {
            continue;
        };
        s.messages += 1;
        match items.first() {
            Some(Value::Str(k)) if k == "started" => started(v, &mut s, int(items.get(2))),
            Some(Value::Str(k)) if k == "readings" => {
                let batch = int(items.get(1));
                let readings: Vec<Delivered> = match items.get(2) {
                    Some(Value::List(rs)) => rs
                        .iter()
                        .filter_map(|r| match r {
                            Value::List(f) => match f.as_slice() {
                                [Value::Int(rev), Value::Str(tag), Value::Str(id)] => {
                                    Some((*rev as u64, tag.clone(), id.clone()))
                                }
                                _ => None,
                            },
                            _ => None,
                        })
                        .collect(),
                    _ => vec![],
                };
                delivered(v, &mut s, batch, readings);
            }
            Some(Value::Str(k)) if k == "progress" => progress(v, &mut s, int(items.get(1))),
            Some(Value::Str(k)) if k == "target" => s.target = int(items.get(1)),
            _ => {}
        }
    }
    v.count("messages", s.messages);
    v.count("delivered", s.delivered.len() as u64);
    v.count("reconnects", s.reconnects);
    v.count("resubscribes", s.resubscribes);
    compare(v, &s, truth);
}

fn started(v: &mut Verdict, s: &mut Stream, revision: Option<u64>) {
    let Some(rev) = revision else { return };
    match s.covered {
        None => {
            s.start = Some(rev);
            s.covered = Some(rev);
        }
        Some(c) => {
            s.reconnects += 1;
            if rev != c {
                v.anomaly(
                    "resume-mismatch",
                    s.name,
                    format!(
                        "{}: reconnected after revision {rev}, but had covered up to {c}",
                        s.name
                    ),
                    json!({"stream": s.name, "resumed_after": rev, "covered": c}),
                );
                // Follow the server from here, so one mismatch is reported
                // once (the content check reports what it cost).
                s.covered = Some(rev);
            }
        }
    }
}

fn delivered(v: &mut Verdict, s: &mut Stream, batch: Option<u64>, readings: Vec<Delivered>) {
    for r in readings {
        let (rev, tag, id) = (&r.0, &r.1, &r.2);
        let covered = s.covered.unwrap_or(0);
        match s.last {
            Some(l) if *rev == l => v.anomaly(
                "repeated-revision",
                s.name,
                format!("{}: reading {id} of {tag} at revision {rev} repeats the revision of the reading before it", s.name),
                json!({"stream": s.name, "revision": rev, "id": id, "tag": tag}),
            ),
            Some(l) if *rev < l => v.anomaly(
                "out-of-order",
                s.name,
                format!("{}: reading {id} of {tag} at revision {rev} came after revision {l}", s.name),
                json!({"stream": s.name, "revision": rev, "after": l, "id": id, "tag": tag}),
            ),
            _ if s.covered.is_some() && *rev <= covered => v.anomaly(
                "out-of-order",
                s.name,
                format!("{}: reading {id} of {tag} at revision {rev} came after the stream had covered revision {covered}", s.name),
                json!({"stream": s.name, "revision": rev, "covered": covered, "id": id, "tag": tag}),
            ),
            _ => {}
        }
        if let Some(b) = batch.filter(|b| rev > b) {
            v.anomaly(
                "out-of-order",
                s.name,
                format!(
                    "{}: reading {id} at revision {rev} is in a message that claims revision {b}",
                    s.name
                ),
                json!({"stream": s.name, "revision": rev, "batch": b, "id": id}),
            );
        }
        s.last = Some(s.last.map_or(*rev, |l| l.max(*rev)));
        s.delivered.push(r);
    }
    progress(v, s, batch);
}

fn progress(v: &mut Verdict, s: &mut Stream, revision: Option<u64>) {
    let Some(rev) = revision else { return };
    if let Some(c) = s.covered.filter(|c| rev < *c) {
        v.anomaly(
            "out-of-order",
            s.name,
            format!("{}: revision went back from {c} to {rev}", s.name),
            json!({"stream": s.name, "revision": rev, "covered": c}),
        );
    }
    s.covered = Some(s.covered.map_or(rev, |c| c.max(rev)));
}

fn compare(v: &mut Verdict, s: &Stream, truth: &FinalReads) {
    let name = s.name;
    let (Some(filter), Some(start), Some(end)) = (&s.filter, s.start, s.covered) else {
        v.unknown(format!("{name}: the stream never started"));
        return;
    };
    if let Some(t) = s.target.filter(|t| end < *t) {
        v.anomaly(
            "stalled",
            name,
            format!("{name}: covered revision {end} at the end, but the cluster was at {t} when the run ended"),
            json!({"stream": name, "covered": end, "target": t}),
        );
    }
    if truth.is_empty() {
        return;
    }
    let expected: BTreeSet<(u64, &str, &str)> = truth
        .iter()
        .filter(|(tag, _)| filter.matches(tag))
        .flat_map(|(tag, rs)| {
            rs.iter()
                .map(move |(id, rev)| (*rev, tag.as_str(), id.as_str()))
        })
        .filter(|(rev, _, _)| *rev > start && *rev <= end)
        .collect();
    let got: BTreeSet<(u64, &str, &str)> = s
        .delivered
        .iter()
        .map(|(rev, tag, id)| (*rev, tag.as_str(), id.as_str()))
        .collect();
    v.count("expected", expected.len() as u64);
    for (rev, tag, id) in expected.difference(&got) {
        v.anomaly(
            "gap",
            name,
            format!("{name}: reading {id} of {tag} committed at revision {rev} (after the start {start}, up to {end}) was never delivered"),
            json!({"stream": name, "revision": rev, "tag": tag, "id": id}),
        );
    }
    let mut unverifiable = BTreeSet::new();
    for (rev, tag, id) in got.difference(&expected) {
        if !truth.contains_key(*tag) && filter.matches(tag) {
            unverifiable.insert(*tag);
            continue;
        }
        let why = if !filter.matches(tag) {
            "its tag does not match the stream's filter".to_string()
        } else if *rev <= start {
            format!("its revision is not after the start {start}")
        } else {
            match truth[*tag].iter().find(|(i, _)| i == id) {
                Some((_, r)) => format!("it was committed at revision {r}"),
                None => "the final read does not have it".to_string(),
            }
        };
        v.anomaly(
            "unexpected",
            name,
            format!("{name}: reading {id} of {tag} was delivered at revision {rev}, but {why}"),
            json!({"stream": name, "revision": rev, "tag": tag, "id": id}),
        );
    }
    for tag in unverifiable {
        v.unknown(format!(
            "{name}: readings of {tag} were delivered, but {tag} was not read at the end"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Validity;
    use crate::history::{EventType, Function};

    #[test]
    fn globs_match_within_and_across_segments() {
        assert!(glob("a/*", "a/b"));
        assert!(!glob("a/*", "a/b/c"));
        assert!(glob("a/**", "a/b/c"));
        assert!(glob("a/t?", "a/t1"));
        assert!(!glob("a/t?", "a/t12"));
        assert!(!glob("a?b", "a/b"));
        assert!(glob("a\\*", "a*"));
        assert!(!glob("a\\*", "ab"));
        assert!(glob("**", "x/y"));
    }

    /// Builds a watch history: one process per stream, ops in sequence.
    struct H {
        records: Vec<Record>,
        t: u64,
    }

    impl H {
        fn new() -> H {
            H {
                records: vec![],
                t: 0,
            }
        }

        fn op(&mut self, workload: &str, process: u64, key: &str, arg: Value, result: Value) {
            for (kind, value) in [(EventType::Invoke, arg), (EventType::Ok, result)] {
                self.t += 1;
                self.records.push(Record {
                    process,
                    kind,
                    f: Function::Read,
                    key: key.into(),
                    value,
                    time: self.t,
                    workload: workload.into(),
                    node: None,
                    error: None,
                });
            }
        }

        fn subscribe(&mut self, key: &str, pattern: &str, started: i64) {
            let arg = Value::List(vec![
                Value::Str("subscribe".into()),
                Value::List(vec![]),
                Value::List(vec![Value::Str(pattern.into())]),
                Value::Nil,
            ]);
            self.op(names::WATCH, 1, key, arg, started_value(started));
        }

        fn msg(&mut self, key: &str, v: Value) {
            self.op(names::WATCH, 1, key, Value::Nil, v);
        }

        fn final_read(&mut self, tag: &str, rs: &[(&str, i64)]) {
            let v = Value::List(
                rs.iter()
                    .map(|(id, rev)| {
                        Value::List(vec![Value::Str(id.to_string()), Value::Int(*rev)])
                    })
                    .collect(),
            );
            self.op(names::SET, 50, tag, Value::Nil, v);
        }
    }

    fn started_value(rev: i64) -> Value {
        Value::List(vec![
            Value::Str("started".into()),
            Value::Int(1),
            Value::Int(rev),
        ])
    }

    fn readings(batch: i64, rs: &[(i64, &str, &str)]) -> Value {
        Value::List(vec![
            Value::Str("readings".into()),
            Value::Int(batch),
            Value::List(
                rs.iter()
                    .map(|(rev, tag, id)| {
                        Value::List(vec![
                            Value::Int(*rev),
                            Value::Str(tag.to_string()),
                            Value::Str(id.to_string()),
                        ])
                    })
                    .collect(),
            ),
        ])
    }

    fn progress(rev: i64) -> Value {
        Value::List(vec![Value::Str("progress".into()), Value::Int(rev)])
    }

    fn target(rev: i64) -> Value {
        Value::List(vec![Value::Str("target".into()), Value::Int(rev)])
    }

    /// Tags s/a and s/b; committed: a1@11, b1@12, a2@14, b2@15, a3@20.
    fn committed(h: &mut H) {
        h.final_read("s/a", &[("a0", 5), ("a1", 11), ("a2", 14), ("a3", 20)]);
        h.final_read("s/b", &[("b1", 12), ("b2", 15)]);
    }

    #[test]
    fn a_complete_stream_with_a_clean_reconnect_is_valid() {
        let mut h = H::new();
        h.subscribe("w", "s/*", 10);
        h.msg("w", readings(12, &[(11, "s/a", "a1"), (12, "s/b", "b1")]));
        h.msg("w", progress(13));
        h.msg("w", started_value(13));
        h.msg("w", readings(15, &[(14, "s/a", "a2"), (15, "s/b", "b2")]));
        h.msg("w", readings(20, &[(20, "s/a", "a3")]));
        h.msg("w", target(20));
        // A second stream on one tag only.
        h.subscribe("v", "s/b", 12);
        h.msg("v", readings(20, &[(15, "s/b", "b2")]));
        committed(&mut h);
        let v = check(&h.records);
        assert_eq!(v.valid, Validity::Valid, "{v}");
        assert_eq!(v.counts["reconnects"], 1);
        assert_eq!(v.counts["delivered"], 6);
    }

    #[test]
    fn a_missing_reading_is_a_gap() {
        let mut h = H::new();
        h.subscribe("w", "s/*", 10);
        h.msg("w", readings(12, &[(11, "s/a", "a1"), (12, "s/b", "b1")]));
        h.msg("w", started_value(12));
        // a2 at 14 is skipped.
        h.msg("w", readings(20, &[(15, "s/b", "b2"), (20, "s/a", "a3")]));
        committed(&mut h);
        let v = check(&h.records);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies_of("gap"), 1, "{v}");
        assert!(v.anomalies[0].detail.contains("a2"), "{v}");
    }

    #[test]
    fn a_repeated_revision_is_invalid() {
        let mut h = H::new();
        h.subscribe("w", "s/*", 10);
        h.msg("w", readings(11, &[(11, "s/a", "a1")]));
        // A resume from an older revision replays a1.
        h.msg("w", started_value(10));
        h.msg("w", readings(12, &[(11, "s/a", "a1"), (12, "s/b", "b1")]));
        h.final_read("s/a", &[("a1", 11)]);
        h.final_read("s/b", &[("b1", 12)]);
        let v = check(&h.records);
        assert_eq!(v.valid, Validity::Invalid);
        assert_eq!(v.anomalies_of("repeated-revision"), 1, "{v}");
        assert_eq!(v.anomalies_of("resume-mismatch"), 1, "{v}");
    }

    #[test]
    fn an_out_of_order_revision_is_invalid() {
        let mut h = H::new();
        h.subscribe("w", "s/*", 10);
        h.msg("w", readings(12, &[(12, "s/b", "b1"), (11, "s/a", "a1")]));
        h.final_read("s/a", &[("a1", 11)]);
        h.final_read("s/b", &[("b1", 12)]);
        let v = check(&h.records);
        assert_eq!(v.anomalies_of("out-of-order"), 1, "{v}");
        assert_eq!(v.valid, Validity::Invalid);
    }

    #[test]
    fn a_reading_not_committed_or_outside_the_filter_is_unexpected() {
        let mut h = H::new();
        h.subscribe("w", "s/a", 10);
        h.msg(
            "w",
            readings(
                12,
                &[(11, "s/a", "a1"), (12, "s/b", "b1"), (13, "s/a", "ghost")],
            ),
        );
        h.final_read("s/a", &[("a1", 11)]);
        h.final_read("s/b", &[("b1", 12)]);
        let v = check(&h.records);
        assert_eq!(v.anomalies_of("unexpected"), 2, "{v}");
        assert_eq!(
            v.anomalies_of("out-of-order"),
            1,
            "13 is beyond the batch's 12: {v}"
        );
    }

    #[test]
    fn a_stream_short_of_the_target_stalled() {
        let mut h = H::new();
        h.subscribe("w", "s/*", 10);
        h.msg("w", progress(12));
        h.msg("w", target(20));
        h.final_read("s/a", &[("a1", 11)]);
        let v = check(&h.records);
        assert_eq!(v.anomalies_of("stalled"), 1, "{v}");
        assert_eq!(v.anomalies_of("gap"), 1, "{v}");
    }

    #[test]
    fn without_final_reads_the_verdict_is_unknown() {
        let mut h = H::new();
        h.subscribe("w", "s/*", 10);
        h.msg("w", readings(11, &[(11, "s/a", "a1")]));
        assert_eq!(check(&h.records).valid, Validity::Unknown);
    }
}
