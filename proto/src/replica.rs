//! The replica check: do the nodes of a cluster hold the same history?
//!
//! Every node digests its own history by revision range when asked
//! (`ReplicaDigests`; the server computes the digests, see
//! `server/src/replica.rs` for the byte layout). This module is the one place
//! that compares such answers ([`compare`], a pure function) and the one
//! procedure that asks every member of a cluster for them and compares them
//! page by page ([`check`]). `bifrostctl check replicas` and the Jepsen
//! harness use it through `bifrost-client`, the test kit's
//! `Cluster::check_replicas` and the server's own periodic check (its
//! `bifrost_replica_*` metrics) directly. It lives in `bifrost-proto` because
//! that is the one crate all of them share: the test kit may not depend on
//! the client (whose `bench` uses the kit), nor anyone on the server.
//!
//! What is comparable:
//!
//! - Ranges are aligned (`[1, size]`, `[size+1, 2*size]`, ...) and clipped
//!   to the span asked, so nodes asked for the same span cut it the same way.
//!   A range is compared only when every answer has it with the same bounds.
//! - Only revisions every node has applied are compared: up to the lowest
//!   `revision` among the answers.
//! - Retention removes a prefix of revisions on every node, but not at the
//!   same moment: comparison starts at the highest `oldest_revision` among
//!   the answers. [`check`] asks every node from there, and asks again when
//!   retention moved on during a call.
//! - Readings of a purged tag vanish from every node's history, again not at
//!   the same moment, so a difference is reported by [`check`] only if it is
//!   still there after every node has applied what the others had applied
//!   when they answered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::Status;

use crate::v1::bifrost_client::BifrostClient;
use crate::v1::{RangeDigest, ReplicaDigestsRequest, ReplicaDigestsResponse, StatusRequest};

/// Revisions per range unless told otherwise (the server's default too).
pub const DEFAULT_RANGE_SIZE: u64 = 10_000;

/// What comparing the answers of several nodes found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Revisions compared: `from..=through`; none when `through < from`.
    pub from: u64,
    pub through: u64,
    /// Ranges found equal on every node, and the readings in them.
    pub ranges: u64,
    pub readings: u64,
    /// The first range that differs; comparison stops there.
    pub difference: Option<Difference>,
}

/// A range whose readings differ between nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub first: u64,
    pub last: u64,
    /// Every node's view of the range, in the order of the answers.
    pub nodes: Vec<NodeRange>,
}

/// One node's count and digest of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRange {
    pub node_id: u64,
    pub count: u64,
    pub digest: Vec<u8>,
}

/// Compares the answers of several nodes (asked with the same range size)
/// range by range, from the highest oldest revision among them up to the
/// lowest revision any of them covers, and stops at the first range whose
/// count or digest differs. Ranges whose bounds differ between answers (the
/// edges of spans clipped differently) are not compared.
pub fn compare(answers: &[ReplicaDigestsResponse]) -> Comparison {
    let start = answers
        .iter()
        .map(|a| a.oldest_revision.max(1))
        .max()
        .unwrap_or(1);
    let end = answers.iter().map(covered_through).min().unwrap_or(0);
    let mut c = Comparison {
        from: start,
        through: start - 1,
        ranges: 0,
        readings: 0,
        difference: None,
    };
    let Some(first_answer) = answers.first() else {
        return c;
    };
    let candidates = first_answer
        .ranges
        .iter()
        .filter(|r| r.first >= start && r.last <= end);
    for r in candidates {
        let Some(same) = answers
            .iter()
            .map(|a| range_at(a, r.first).filter(|x| x.last == r.last))
            .collect::<Option<Vec<&RangeDigest>>>()
        else {
            continue;
        };
        if c.ranges == 0 {
            c.from = r.first;
        }
        if same
            .iter()
            .any(|x| x.count != r.count || x.digest != r.digest)
        {
            c.difference = Some(Difference {
                first: r.first,
                last: r.last,
                nodes: answers
                    .iter()
                    .zip(same)
                    .map(|(a, x)| NodeRange {
                        node_id: a.node_id,
                        count: x.count,
                        digest: x.digest.clone(),
                    })
                    .collect(),
            });
            break;
        }
        c.ranges += 1;
        c.readings += r.count;
        c.through = r.last;
    }
    c
}

/// The last revision an answer speaks for.
fn covered_through(a: &ReplicaDigestsResponse) -> u64 {
    a.ranges.last().map_or(0, |r| r.last).min(a.revision)
}

fn range_at(a: &ReplicaDigestsResponse, first: u64) -> Option<&RangeDigest> {
    a.ranges
        .binary_search_by_key(&first, |r| r.first)
        .ok()
        .map(|i| &a.ranges[i])
}

/// A digest as lower-case hex.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How [`check`] talks to the nodes.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Revisions per range.
    pub range_size: u64,
    pub connect_timeout: Duration,
    /// Budget of one call to one node (one call digests at most 1,000,000
    /// revisions).
    pub call_timeout: Duration,
    /// How long a difference may take to go away while the nodes catch up
    /// with each other, before it is reported.
    pub settle: Duration,
    /// Plain text or TLS, with the client's certificate if any.
    pub security: crate::channel::Security,
    /// A session token to send with every call (`authorization: Bearer`).
    pub token: Option<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            range_size: DEFAULT_RANGE_SIZE,
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(30),
            settle: Duration::from_secs(10),
            security: crate::channel::Security::Plain,
            token: None,
        }
    }
}

/// A member as [`check`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub id: u64,
    pub addr: String,
    /// Highest reading revision applied, oldest held, and Raft log index
    /// applied, when the check began.
    pub revision: u64,
    pub oldest_revision: u64,
    pub applied_index: u64,
}

/// The outcome of [`check`]: the members and the comparison of their
/// histories (`from` and `through` as compared in the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub nodes: Vec<NodeState>,
    pub range_size: u64,
    pub comparison: Comparison,
}

impl Report {
    pub fn agrees(&self) -> bool {
        self.comparison.difference.is_none()
    }

    /// One line: `replicas agree through revision N (K ranges, M readings)`,
    /// or the first differing range with every node's count and digest.
    pub fn verdict(&self) -> String {
        let c = &self.comparison;
        let agreed = format!(
            "through revision {} ({} ranges, {} readings)",
            c.through, c.ranges, c.readings
        );
        match &c.difference {
            None => format!("replicas agree {agreed}"),
            Some(d) => {
                let nodes: Vec<String> = d
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "node {}: {} readings, digest {}",
                            n.node_id,
                            n.count,
                            hex(&n.digest)
                        )
                    })
                    .collect();
                format!(
                    "replicas differ in revisions {}..={}: {}; they agree {agreed}",
                    d.first,
                    d.last,
                    nodes.join("; ")
                )
            }
        }
    }

    /// One line per node (its addresses and revisions), the span compared,
    /// then [`Report::verdict`].
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out += &format!(
                "node {} ({}): revision {}, oldest {}, applied index {}\n",
                n.id, n.addr, n.revision, n.oldest_revision, n.applied_index
            );
        }
        let c = &self.comparison;
        match c.difference.as_ref().map_or(c.through, |d| d.last) {
            last if last >= c.from => {
                out += &format!(
                    "compared revisions {}..={last} in ranges of {}\n",
                    c.from, self.range_size
                )
            }
            _ => out += "no revision is held and applied by every node\n",
        }
        out += &self.verdict();
        out
    }
}

/// What stopped [`check`] from comparing; names the node and the call.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no node named the cluster's members: {0}")]
    NoMembers(String),
    #[error("node {id} ({addr}): {call}: {message}")]
    Node {
        id: u64,
        addr: String,
        call: &'static str,
        message: String,
    },
}

/// How far [`check`] is, for a progress line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The members were found and asked for their revisions.
    Nodes(Vec<NodeState>),
    /// Revisions up to `through` of `to` are compared.
    Compared { through: u64, to: u64 },
}

/// Asks the members of the cluster (as the first of `seeds` that answers
/// `Status` lists them) for their digests, page by page, and compares them
/// with [`compare`]. A difference is confirmed once: after every node has
/// applied what the others had, the range is asked for again (readings of a
/// purged tag disappear on every node, but not at the same moment). A node
/// that does not answer is an error naming it.
pub async fn check(
    seeds: &[String],
    opts: &CheckOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Report, CheckError> {
    let members = members(seeds, opts).await?;
    let mut nodes = Vec::with_capacity(members.len());
    for (id, addr) in &members {
        nodes.push(node_state(*id, addr, opts).await?);
    }
    progress(Progress::Nodes(nodes.clone()));
    let mut from = nodes.iter().map(|n| n.oldest_revision.max(1)).max();
    let to = nodes.iter().map(|n| n.revision).min().unwrap_or(0);
    let mut total = Comparison {
        from: from.unwrap_or(1),
        through: from.unwrap_or(1) - 1,
        ranges: 0,
        readings: 0,
        difference: None,
    };
    while let Some(page_from) = from.filter(|f| *f <= to) {
        let answers = digests_of_all(&nodes, page_from, to, opts).await?;
        let oldest = answers.iter().map(|a| a.oldest_revision).max().unwrap_or(0);
        if oldest > page_from {
            // Retention moved on during the call: start again from there.
            (total.from, total.through) = (oldest, oldest - 1);
            (total.ranges, total.readings) = (0, 0);
            from = Some(oldest);
            continue;
        }
        let mut c = compare(&answers);
        if let Some(d) = &c.difference {
            let again = confirm(&nodes, &answers, d, opts).await?;
            if again.difference.is_none() {
                c.ranges += again.ranges;
                c.readings += again.readings;
                c.through = again.through;
                c.difference = None;
            } else {
                c.difference = again.difference;
            }
        }
        if total.ranges == 0 {
            total.from = c.from;
        }
        total.ranges += c.ranges;
        total.readings += c.readings;
        total.through = total.through.max(c.through);
        if c.difference.is_some() || c.through < page_from {
            total.difference = c.difference;
            break;
        }
        progress(Progress::Compared {
            through: c.through,
            to,
        });
        from = Some(c.through + 1);
    }
    Ok(Report {
        nodes,
        range_size: opts.range_size,
        comparison: total,
    })
}

/// `(id, address)` of every member, as the first seed that answers with a
/// member list has them.
async fn members(seeds: &[String], opts: &CheckOptions) -> Result<Vec<(u64, String)>, CheckError> {
    let mut why = Vec::new();
    for seed in seeds {
        let answer = match stub(seed, opts) {
            Ok(mut s) => s
                .status(authorized(StatusRequest {}, opts))
                .await
                .map(|r| r.into_inner())
                .map_err(status_text),
            Err(e) => Err(e),
        };
        match answer {
            Ok(s) if !s.members.is_empty() => {
                let members: BTreeMap<u64, String> =
                    s.members.into_iter().map(|m| (m.id, m.addr)).collect();
                return Ok(members.into_iter().collect());
            }
            Ok(s) => why.push(format!("{seed}: node {} lists no members", s.node_id)),
            Err(e) => why.push(format!("{seed}: {e}")),
        }
    }
    Err(CheckError::NoMembers(why.join("; ")))
}

async fn node_state(id: u64, addr: &str, opts: &CheckOptions) -> Result<NodeState, CheckError> {
    let fail = |message: String| CheckError::Node {
        id,
        addr: addr.to_string(),
        call: "status",
        message,
    };
    let s = stub(addr, opts)
        .map_err(fail)?
        .status(authorized(StatusRequest {}, opts))
        .await
        .map_err(|e| fail(status_text(e)))?
        .into_inner();
    Ok(NodeState {
        id,
        addr: addr.to_string(),
        revision: s.revision,
        oldest_revision: s.oldest_revision,
        applied_index: s.applied_index,
    })
}

/// Every node's digests of `from..=to`, asked of all at once.
async fn digests_of_all(
    nodes: &[NodeState],
    from: u64,
    to: u64,
    opts: &CheckOptions,
) -> Result<Vec<ReplicaDigestsResponse>, CheckError> {
    let asks: Vec<_> = nodes
        .iter()
        .map(|n| {
            let stub = stub(&n.addr, opts);
            let request = authorized(
                ReplicaDigestsRequest {
                    from_revision: from,
                    to_revision: to,
                    range_size: opts.range_size,
                },
                opts,
            );
            tokio::spawn(async move {
                let answer = stub?.replica_digests(request).await;
                answer.map(|r| r.into_inner()).map_err(status_text)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(asks.len());
    for (n, ask) in nodes.iter().zip(asks) {
        let answer = ask
            .await
            .unwrap_or_else(|e| Err(format!("the call failed: {e}")));
        out.push(answer.map_err(|message| CheckError::Node {
            id: n.id,
            addr: n.addr.clone(),
            call: "replica digests",
            message,
        })?);
    }
    Ok(out)
}

/// The range of `d` compared again, once every node has applied what any of
/// them had applied when it answered (or `opts.settle` has passed).
async fn confirm(
    nodes: &[NodeState],
    answers: &[ReplicaDigestsResponse],
    d: &Difference,
    opts: &CheckOptions,
) -> Result<Comparison, CheckError> {
    let index = answers.iter().map(|a| a.applied_index).max().unwrap_or(0);
    let until = Instant::now() + opts.settle;
    for n in nodes {
        while Instant::now() < until && node_state(n.id, &n.addr, opts).await?.applied_index < index
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(compare(
        &digests_of_all(nodes, d.first, d.last, opts).await?,
    ))
}

fn stub(addr: &str, opts: &CheckOptions) -> Result<BifrostClient<Channel>, String> {
    let endpoint = opts
        .security
        .endpoint(addr)?
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.call_timeout);
    // Status carries every device assignment: large plants need room.
    Ok(BifrostClient::new(endpoint.connect_lazy()).max_decoding_message_size(64 << 20))
}

/// `msg` with the check's token, if it has one.
fn authorized<T>(msg: T, opts: &CheckOptions) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let header = opts
        .token
        .as_ref()
        .and_then(|t| format!("Bearer {t}").parse().ok());
    if let Some(mut v) = header {
        tonic::metadata::AsciiMetadataValue::set_sensitive(&mut v, true);
        req.metadata_mut().insert("authorization", v);
    }
    req
}

fn status_text(s: Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer of node `id` whose history holds one reading per revision
    /// in `oldest..=revision`, digested in ranges of `size` over
    /// `from..=to`; the digest of a range is its revisions' "values"
    /// (`value(rev)`), as bytes.
    fn answer(
        id: u64,
        (oldest, revision): (u64, u64),
        (from, to, size): (u64, u64, u64),
        value: impl Fn(u64) -> u8,
    ) -> ReplicaDigestsResponse {
        let (lo, hi) = (from.max(oldest), to.min(revision));
        let mut ranges = vec![];
        let mut first = lo;
        while first <= hi {
            let last = ((first - 1) / size + 1) * size;
            let last = last.min(hi);
            ranges.push(RangeDigest {
                first,
                last,
                count: last - first + 1,
                digest: (first..=last).map(&value).collect(),
            });
            first = last + 1;
        }
        ReplicaDigestsResponse {
            node_id: id,
            revision,
            oldest_revision: oldest,
            applied_index: 0,
            range_size: size,
            ranges,
        }
    }

    fn same(_: u64) -> u8 {
        7
    }

    #[test]
    fn equal_histories_agree_through_the_last_revision() {
        let a: Vec<_> = (1..=3)
            .map(|id| answer(id, (1, 35), (1, 35, 10), same))
            .collect();
        let c = compare(&a);
        assert_eq!((c.from, c.through, c.ranges, c.readings), (1, 35, 4, 35));
        assert_eq!(c.difference, None);
    }

    #[test]
    fn the_first_differing_range_is_named_with_every_nodes_view() {
        let odd = |rev| if rev == 25 || rev == 33 { 9 } else { 7 };
        let a = vec![
            answer(1, (1, 40), (1, 40, 10), same),
            answer(2, (1, 40), (1, 40, 10), odd),
            answer(3, (1, 40), (1, 40, 10), same),
        ];
        let c = compare(&a);
        assert_eq!((c.from, c.through, c.ranges, c.readings), (1, 20, 2, 20));
        let d = c.difference.unwrap();
        assert_eq!((d.first, d.last), (21, 30));
        assert_eq!(
            d.nodes.iter().map(|n| n.node_id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_ne!(d.nodes[0].digest, d.nodes[1].digest);
        assert_eq!(d.nodes[0].digest, d.nodes[2].digest);
        // A different count alone is a difference too.
        let mut a = vec![
            answer(1, (1, 40), (1, 40, 10), same),
            answer(2, (1, 40), (1, 40, 10), same),
        ];
        a[1].ranges[3].count -= 1;
        assert_eq!(compare(&a).difference.map(|d| d.first), Some(31));
    }

    #[test]
    fn only_revisions_every_node_has_applied_are_compared() {
        // Node 2 is behind: its last range is clipped at 27, node 1's is
        // whole; both stop being compared after 20.
        let a = vec![
            answer(1, (1, 40), (1, 40, 10), same),
            answer(2, (1, 27), (1, 40, 10), same),
        ];
        let c = compare(&a);
        assert_eq!((c.from, c.through, c.ranges), (1, 20, 2));
        // Asked up to the lowest revision, both clip at 27: compared.
        let a = vec![
            answer(1, (1, 40), (1, 27, 10), same),
            answer(2, (1, 27), (1, 27, 10), same),
        ];
        let c = compare(&a);
        assert_eq!((c.from, c.through, c.ranges, c.readings), (1, 27, 3, 27));
        // What only the node ahead holds is never a difference.
        let a = vec![
            answer(1, (1, 40), (1, 40, 10), |r| if r > 27 { 1 } else { 7 }),
            answer(2, (1, 27), (1, 40, 10), same),
        ];
        assert_eq!(compare(&a).difference, None);
    }

    #[test]
    fn comparison_starts_at_the_highest_oldest_revision() {
        // Retention removed 1..=14 on node 2 only so far. Asked from 1, node
        // 1's range 11..=20 and node 2's 15..=20 are not comparable; from 21 on.
        let a = vec![
            answer(1, (1, 40), (1, 40, 10), same),
            answer(2, (15, 40), (1, 40, 10), same),
        ];
        let c = compare(&a);
        assert_eq!((c.from, c.through, c.ranges, c.readings), (21, 40, 2, 20));
        // Asked from 15, both clip the same: compared from 15.
        let a = vec![
            answer(1, (1, 40), (15, 40, 10), same),
            answer(2, (15, 40), (15, 40, 10), same),
        ];
        let c = compare(&a);
        assert_eq!((c.from, c.through, c.ranges, c.readings), (15, 40, 3, 26));
        // A difference in what one node has already removed is not one.
        let a = vec![
            answer(1, (1, 40), (15, 40, 10), |r| if r < 15 { 1 } else { 7 }),
            answer(2, (15, 40), (15, 40, 10), same),
        ];
        assert_eq!(compare(&a).difference, None);
    }

    #[test]
    fn nothing_to_compare_agrees_through_nothing() {
        assert_eq!(compare(&[]).ranges, 0);
        let a = vec![
            answer(1, (1, 0), (1, 0, 10), same),
            answer(2, (1, 5), (1, 5, 10), same),
        ];
        let c = compare(&a);
        assert_eq!((c.from, c.through, c.ranges), (1, 0, 0));
        assert_eq!(c.difference, None);
    }

    #[test]
    fn the_verdict_names_the_range_nodes_counts_and_digests() {
        let mut r = Report {
            nodes: vec![],
            range_size: 10,
            comparison: Comparison {
                from: 1,
                through: 20,
                ranges: 2,
                readings: 19,
                difference: None,
            },
        };
        assert_eq!(
            r.verdict(),
            "replicas agree through revision 20 (2 ranges, 19 readings)"
        );
        r.comparison.difference = Some(Difference {
            first: 21,
            last: 30,
            nodes: vec![
                NodeRange {
                    node_id: 1,
                    count: 10,
                    digest: vec![0xab, 0x01],
                },
                NodeRange {
                    node_id: 3,
                    count: 11,
                    digest: vec![0x00, 0xff],
                },
            ],
        });
        assert_eq!(
            r.verdict(),
            "replicas differ in revisions 21..=30: node 1: 10 readings, digest ab01; \
             node 3: 11 readings, digest 00ff; they agree through revision 20 \
             (2 ranges, 19 readings)"
        );
        assert!(!r.agrees());
    }
}
