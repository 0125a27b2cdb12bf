//! The replica check, a node's side: digests of this node's history by
//! revision range ([`answer`], served as `ReplicaDigests` on the public API
//! and to the leader through [`crate::peer`]), and the leader's periodic
//! comparison of newly completed ranges across the members ([`monitor`],
//! exported as the `bifrost_replica_*` metrics). The comparison itself is
//! `bifrost_proto::replica`, shared with `bifrostctl check replicas`, the
//! Jepsen harness and the test kit.
//!
//! The digests are computed from the storage's public read API
//! ([`StateStore::readings_page`]: committed readings in revision order), so
//! they say what a reader of this node sees, whatever the storage engine
//! keeps on disk. This module must not reach into storage internals.
//!
//! # Digest format (version 1)
//!
//! Revisions are cut into aligned ranges of `size` revisions (`[1, size]`,
//! `[size+1, 2*size]`, ...), the first and last clipped to the span asked.
//! A range's digest is BLAKE3 (32 bytes) of [`DOMAIN`] followed by the
//! record of each reading of the range in revision order. A record is, with
//! every integer little-endian and every string as its byte length (u64)
//! then its UTF-8 bytes:
//!
//! | field | encoding |
//! |---|---|
//! | revision | u64 |
//! | tag name | string |
//! | reading id | string |
//! | source time (µs) | i64 |
//! | server time (µs) | i64 |
//! | value | one byte: 0 none; 1 bool (then 0 or 1); 2 integer (then i64); 3 float (then the f64's IEEE 754 bits as u64); 4 text (then string) |
//! | quality | one byte: 0 good, 1 uncertain, 2 bad; then the reason as string |
//!
//! Floats are compared by their bits: replicas store the same bytes, so even
//! a NaN's payload or the sign of a zero must match. BLAKE3 because it is
//! a well-kept, cryptographic hash (no practical collisions, even for
//! readings a client crafts), fast enough that reading the history back
//! costs more than hashing it, and with no platform-dependent output.

use std::sync::Arc;
use std::time::Duration;

use bifrost_model::{QualityLevel, Reading, Value};
use bifrost_proto::replica::{compare, hex, Comparison};
use bifrost_raft::RaftNode;
use bifrost_storage::StateStore;
use serde::{Deserialize, Serialize};

use crate::api::convert::digests_pb;
use crate::metrics::Metrics;
use crate::peer::Peers;

/// Revisions per range unless a caller asks otherwise.
pub const DEFAULT_RANGE_SIZE: u64 = bifrost_proto::replica::DEFAULT_RANGE_SIZE;
/// Most revisions one call digests (whole ranges; at least one range).
pub const MAX_REVISIONS_PER_CALL: u64 = 1_000_000;
/// Most ranges one call answers.
pub const MAX_RANGES_PER_CALL: u64 = 1_000;
/// Starts every range's hash; names the format version.
pub const DOMAIN: &[u8] = b"bifrost replica digest v1\n";
/// Readings read from storage at a time.
const PAGE: u64 = 4_096;

/// What a caller asks for: revisions `from..=to` (`to` 0: up to the
/// node's revision) in ranges of `range_size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub from: u64,
    pub to: u64,
    pub range_size: u64,
}

impl Span {
    /// A span as a request gives it (a range size of 0 is the default);
    /// the error says what is wrong.
    pub fn new(from: u64, to: u64, range_size: u64) -> Result<Span, String> {
        let range_size = match range_size {
            0 => DEFAULT_RANGE_SIZE,
            n if n > MAX_REVISIONS_PER_CALL => {
                return Err(format!(
                    "range size {n} is above {MAX_REVISIONS_PER_CALL}, the most revisions digested per call"
                ))
            }
            n => n,
        };
        Ok(Span {
            from: from.max(1),
            to,
            range_size,
        })
    }
}

/// One node's digests of a span. Sent between nodes with postcard (inside
/// the node-local call), to clients as `ReplicaDigestsResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    pub node_id: u64,
    /// Highest reading revision applied when the digests were taken.
    pub revision: u64,
    /// Oldest revision held after they were taken.
    pub oldest_revision: u64,
    /// Raft log index applied when they were taken.
    pub applied_index: u64,
    pub range_size: u64,
    pub ranges: Vec<RangeDigest>,
}

/// The readings of revisions `first..=last`: how many, and their digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    pub first: u64,
    pub last: u64,
    pub count: u64,
    pub digest: [u8; 32],
}

/// This node's digests of `span`, read on a blocking thread.
pub async fn answer(node: &RaftNode, span: Span) -> Result<Digests, String> {
    let applied_index = node.metrics().last_applied.map_or(0, |l| l.index);
    let state = node.state().clone();
    let (revision, oldest_revision, ranges) =
        tokio::task::spawn_blocking(move || digest_span(&state, span))
            .await
            .map_err(|e| format!("digest task failed: {e}"))?
            .map_err(|e| format!("reading history: {e}"))?;
    Ok(Digests {
        node_id: node.id(),
        revision,
        oldest_revision,
        applied_index,
        range_size: span.range_size,
        ranges,
    })
}

/// `(revision, oldest revision after the scan, ranges)` of `span` as this
/// state holds it: every range from the span's start (raised to the oldest
/// revision held) to its end (lowered to the revision applied and to the
/// per-call bounds), empty ranges included.
pub fn digest_span(
    state: &StateStore,
    span: Span,
) -> bifrost_storage::Result<(u64, u64, Vec<RangeDigest>)> {
    let revision = state.revision();
    let lo = span.from.max(state.oldest_revision()).max(1);
    let size = span.range_size;
    let first_range = (lo - 1) / size;
    let ranges_allowed = (MAX_REVISIONS_PER_CALL / size).clamp(1, MAX_RANGES_PER_CALL);
    let to = if span.to == 0 { revision } else { span.to };
    let hi = to
        .min(revision)
        .min((first_range + ranges_allowed).saturating_mul(size));
    let mut ranges = Ranges::new(lo, hi, size);
    let mut after = lo - 1;
    while after < hi {
        let (page, last) = state.readings_page(after, PAGE.min(hi - after) as usize)?;
        if last == after {
            break;
        }
        for r in page.iter().filter(|r| r.revision <= hi) {
            ranges.add(r);
        }
        after = last;
    }
    Ok((revision, state.oldest_revision(), ranges.finish()))
}

/// The ranges of `lo..=hi`, hashed as readings arrive in revision order.
struct Ranges {
    hi: u64,
    size: u64,
    done: Vec<RangeDigest>,
    /// The range being hashed: first, last, readings, hasher.
    current: Option<(u64, u64, u64, blake3::Hasher)>,
    record: Vec<u8>,
}

impl Ranges {
    fn new(lo: u64, hi: u64, size: u64) -> Ranges {
        let mut r = Ranges {
            hi,
            size,
            done: Vec::new(),
            current: None,
            record: Vec::with_capacity(256),
        };
        if lo <= hi {
            r.start(lo);
        }
        r
    }

    fn start(&mut self, first: u64) {
        let last = (((first - 1) / self.size + 1) * self.size).min(self.hi);
        let mut hasher = blake3::Hasher::new();
        hasher.update(DOMAIN);
        self.current = Some((first, last, 0, hasher));
    }

    /// Closes the current range; starts the next one, if any.
    fn close(&mut self) {
        let Some((first, last, count, hasher)) = self.current.take() else {
            return;
        };
        self.done.push(RangeDigest {
            first,
            last,
            count,
            digest: *hasher.finalize().as_bytes(),
        });
        if last < self.hi {
            self.start(last + 1);
        }
    }

    fn add(&mut self, r: &Reading) {
        while self.current.as_ref().is_some_and(|c| r.revision > c.1) {
            self.close();
        }
        let Some((_, _, count, hasher)) = self.current.as_mut() else {
            return;
        };
        self.record.clear();
        encode_record(r, &mut self.record);
        hasher.update(&self.record);
        *count += 1;
    }

    fn finish(mut self) -> Vec<RangeDigest> {
        while self.current.is_some() {
            self.close();
        }
        self.done
    }
}

/// Appends a reading's record (see the module's table) to `out`.
pub fn encode_record(r: &Reading, out: &mut Vec<u8>) {
    out.extend_from_slice(&r.revision.to_le_bytes());
    put_str(out, &r.tag);
    put_str(out, &r.id);
    out.extend_from_slice(&r.ts_us.to_le_bytes());
    out.extend_from_slice(&r.server_ts_us.to_le_bytes());
    match &r.value {
        None => out.push(0),
        Some(Value::Bool(b)) => out.extend_from_slice(&[1, u8::from(*b)]),
        Some(Value::Int(i)) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Some(Value::Float(f)) => {
            out.push(3);
            out.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        Some(Value::Text(s)) => {
            out.push(4);
            put_str(out, s);
        }
    }
    out.push(match r.quality.level {
        QualityLevel::Good => 0,
        QualityLevel::Uncertain => 1,
        QualityLevel::Bad => 2,
    });
    put_str(out, &r.quality.reason);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// How the leader's periodic check runs.
#[derive(Clone, Debug)]
pub struct MonitorOptions {
    /// Time between rounds; zero turns the check off.
    pub every: Duration,
    pub range_size: u64,
    /// Most ranges compared per round, so a long history is caught up on
    /// gradually instead of in one long scan on every node.
    pub ranges_per_round: u64,
    /// Budget of one follower's answer.
    pub call_timeout: Duration,
}

impl Default for MonitorOptions {
    fn default() -> Self {
        MonitorOptions {
            every: Duration::from_secs(60),
            range_size: DEFAULT_RANGE_SIZE,
            ranges_per_round: 5,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// The leader's periodic check: each round compares the next completed
/// ranges (after the last revision found equal, from the oldest held) on
/// every member. A differing range is compared again in the next round
/// (the members may have been applying a purge) and counted if it still
/// differs; the check then moves past it.
pub async fn monitor(
    node: Arc<RaftNode>,
    peers: Arc<Peers>,
    metrics: Arc<Metrics>,
    opts: MonitorOptions,
) {
    if opts.every.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(opts.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut m = Monitor::default();
    loop {
        tick.tick().await;
        if !node.is_leader() {
            continue;
        }
        match round(&node, &peers, m.checked, &opts).await {
            Ok(Some(c)) => m.record(c, &metrics),
            Ok(None) => {}
            Err(e) if m.last_error.as_deref() != Some(&e) => {
                tracing::warn!(error = %e, "replica check round failed; trying again next round");
                m.last_error = Some(e);
            }
            Err(_) => {}
        }
    }
}

/// What the periodic check remembers between rounds.
#[derive(Default)]
struct Monitor {
    /// Revisions through this one were found equal (or counted as differing).
    checked: u64,
    /// First revision of a range found differing once, to compare again.
    suspect: Option<u64>,
    last_error: Option<String>,
}

impl Monitor {
    fn record(&mut self, c: Comparison, metrics: &Metrics) {
        self.last_error = None;
        self.checked = self.checked.max(c.through);
        if let Some(d) = c.difference {
            if self.suspect == Some(d.first) {
                let nodes: Vec<String> = d
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "node {}: {} readings, {}",
                            n.node_id,
                            n.count,
                            hex(&n.digest)
                        )
                    })
                    .collect();
                tracing::error!(
                    first = d.first,
                    last = d.last,
                    nodes = %nodes.join("; "),
                    "replicas differ: the members hold different readings in this revision range"
                );
                metrics.replica_mismatched_ranges.inc();
                if metrics.replica_first_mismatch_revision.get() == 0 {
                    metrics.replica_first_mismatch_revision.set(d.first as i64);
                }
                self.checked = d.last;
                self.suspect = None;
            } else {
                self.suspect = Some(d.first);
            }
        }
        metrics.replica_checked_revision.set(self.checked as i64);
    }
}

/// One round on the leader: the next completed ranges after `checked`,
/// digested here and on every other member, compared. `None` when no new
/// range is complete here.
async fn round(
    node: &RaftNode,
    peers: &Peers,
    checked: u64,
    opts: &MonitorOptions,
) -> Result<Option<Comparison>, String> {
    let state = node.state();
    let size = opts.range_size;
    let from = (checked + 1).max(state.oldest_revision());
    let complete = state.revision() / size * size;
    let to = complete.min(((from - 1) / size + opts.ranges_per_round) * size);
    if to < from {
        return Ok(None);
    }
    let span = Span {
        from,
        to,
        range_size: size,
    };
    let mut answers = vec![digests_pb(answer(node, span).await?)];
    for m in node.members().into_iter().filter(|m| m.id != node.id()) {
        let d = peers
            .replica_digests(&m.peer, span, opts.call_timeout)
            .await
            .map_err(|e| format!("node {}: {e}", m.id))?;
        answers.push(digests_pb(d));
    }
    Ok(Some(compare(&answers)))
}

#[cfg(test)]
mod tests {
    use bifrost_storage::{DataType, Device, NewReading, Protocol, Quality, Tag};

    use super::*;

    /// A state holding tags `a` and `b` and `n` readings: revision `r` is
    /// of tag `b` when `is_b(r)`, else of `a`, with value `value(r)`.
    fn store(
        n: u64,
        is_b: impl Fn(u64) -> bool,
        value: impl Fn(u64) -> f64,
    ) -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(dir.path()).unwrap();
        let mut b = state.batch();
        let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        b.put_device(device, true, None, 1).unwrap();
        for name in ["a", "b"] {
            let tag = Tag::new(name, "plc", "hr:0", DataType::F64);
            b.put_tag(tag, true, None, 1).unwrap();
        }
        let readings = (1..=n)
            .map(|r| NewReading {
                id: format!("r{r}"),
                tag: if is_b(r) { "b" } else { "a" }.into(),
                ts_us: r as i64 * 1_000,
                server_ts_us: r as i64 * 1_000 + 1,
                value: Some(Value::Float(value(r))),
                quality: Quality::good(),
            })
            .collect();
        b.insert_readings(readings, false).unwrap().unwrap();
        b.commit().unwrap();
        (dir, state)
    }

    fn span(from: u64, to: u64, size: u64) -> Span {
        Span::new(from, to, size).unwrap()
    }

    fn bounds(ranges: &[RangeDigest]) -> Vec<(u64, u64, u64)> {
        ranges.iter().map(|r| (r.first, r.last, r.count)).collect()
    }

    #[test]
    fn a_record_is_fixed_little_endian_bytes() {
        let r = Reading {
            id: "i".into(),
            tag: "t".into(),
            ts_us: -2,
            server_ts_us: 3,
            value: Some(Value::Float(1.5)),
            quality: Quality::bad("x"),
            revision: 258,
        };
        let mut out = vec![];
        encode_record(&r, &mut out);
        let mut want = vec![2, 1, 0, 0, 0, 0, 0, 0]; // revision 258
        want.extend([1, 0, 0, 0, 0, 0, 0, 0, b't']);
        want.extend([1, 0, 0, 0, 0, 0, 0, 0, b'i']);
        want.extend([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]); // -2
        want.extend([3, 0, 0, 0, 0, 0, 0, 0]);
        want.push(3); // float: 1.5 is 0x3ff8000000000000
        want.extend([0, 0, 0, 0, 0, 0, 0xf8, 0x3f]);
        want.push(2); // bad
        want.extend([1, 0, 0, 0, 0, 0, 0, 0, b'x']);
        assert_eq!(out, want);
        // Every value kind is told apart from the others.
        let kinds = [
            None,
            Some(Value::Bool(true)),
            Some(Value::Int(1)),
            Some(Value::Float(1.0)),
            Some(Value::Text("1".into())),
        ];
        let tags: Vec<u8> = kinds
            .into_iter()
            .map(|value| {
                let mut out = vec![];
                encode_record(&Reading { value, ..r.clone() }, &mut out);
                out[8 + 9 + 9 + 16]
            })
            .collect();
        assert_eq!(tags, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn ranges_are_aligned_clipped_to_the_span_and_to_the_revision() {
        let (_d, s) = store(25, |_| false, |r| r as f64);
        let (rev, oldest, ranges) = digest_span(&s, span(1, 0, 10)).unwrap();
        assert_eq!((rev, oldest), (25, 1));
        assert_eq!(bounds(&ranges), [(1, 10, 10), (11, 20, 10), (21, 25, 5)]);
        let (_, _, clipped) = digest_span(&s, span(5, 23, 10)).unwrap();
        assert_eq!(bounds(&clipped), [(5, 10, 6), (11, 20, 10), (21, 23, 3)]);
        // The whole range 11..=20 is the same range whoever asks.
        assert_eq!(clipped[1], ranges[1]);
        let (_, _, beyond) = digest_span(&s, span(26, 90, 10)).unwrap();
        assert!(beyond.is_empty());
    }

    #[test]
    fn retention_raises_the_start_and_a_purged_tag_leaves_an_empty_range() {
        let (_d, s) = store(30, |r| (11..=20).contains(&r), |r| r as f64);
        let mut b = s.batch();
        assert_eq!(b.compact(6).unwrap(), 5);
        b.delete_tag("b", true).unwrap();
        b.commit().unwrap();
        let (_, oldest, ranges) = digest_span(&s, span(1, 0, 10)).unwrap();
        assert_eq!(oldest, 6);
        assert_eq!(bounds(&ranges), [(6, 10, 5), (11, 20, 0), (21, 30, 10)]);
        let empty = blake3::hash(DOMAIN);
        assert_eq!(&ranges[1].digest, empty.as_bytes());
    }

    #[test]
    fn one_changed_reading_changes_its_range_only() {
        let (_d1, s1) = store(30, |_| false, |r| r as f64);
        let (_d2, s2) = store(30, |_| false, |r| r as f64);
        let (_d3, s3) = store(30, |_| false, |r| if r == 15 { -0.0 } else { r as f64 });
        let (_d4, s4) = store(30, |r| r == 27, |r| r as f64);
        let d = |s: &StateStore| digest_span(s, span(1, 0, 10)).unwrap().2;
        assert_eq!(d(&s1), d(&s2));
        let (a, c) = (d(&s1), d(&s3));
        assert_eq!(
            (a[0] == c[0], a[1] == c[1], a[2] == c[2]),
            (true, false, true)
        );
        let e = d(&s4);
        assert_eq!(
            (a[0] == e[0], a[1] == e[1], a[2] == e[2]),
            (true, true, false)
        );
    }

    #[test]
    fn one_call_digests_at_most_its_bounds_in_whole_ranges() {
        let (_d, s) = store(1_500, |_| false, |r| r as f64);
        let (_, _, ranges) = digest_span(&s, span(1, 0, 1)).unwrap();
        assert_eq!(ranges.len() as u64, MAX_RANGES_PER_CALL);
        assert_eq!(ranges.last().map(|r| r.last), Some(1_000));
        let (_, _, next) = digest_span(&s, span(1_001, 0, 1)).unwrap();
        assert_eq!(bounds(&next)[..1], [(1_001, 1_001, 1)]);
        assert_eq!(next.len(), 500);
        assert!(Span::new(1, 0, MAX_REVISIONS_PER_CALL + 1)
            .unwrap_err()
            .contains("range size"));
        assert_eq!(Span::new(0, 0, 0).unwrap(), span(1, 0, DEFAULT_RANGE_SIZE));
    }

    /// A range's digest is BLAKE3 of the domain and its records in
    /// revision order; the hex pins format version 1 (a change of layout or
    /// hash must change [`DOMAIN`]'s version: nodes of different versions
    /// would no longer agree).
    #[test]
    fn the_digest_of_a_known_range_is_the_hash_of_its_records_and_stable() {
        let (_d, s) = store(3, |r| r == 2, |r| r as f64 / 4.0);
        let (_, _, ranges) = digest_span(&s, span(1, 0, 10)).unwrap();
        let mut bytes = DOMAIN.to_vec();
        for r in s.readings_page(0, 10).unwrap().0 {
            encode_record(&r, &mut bytes);
        }
        assert_eq!(&ranges[0].digest, blake3::hash(&bytes).as_bytes());
        assert_eq!(
            hex(&ranges[0].digest),
            "d8be6474d8d1526809a80965a12f894b05d27e524594d54fe78bdbc015c47db6"
        );
    }
}
