//! The resume phase of `bench watch`: the time for one subscriber to
//! resume one hour back.
//!
//! "One hour back" at the benchmark's own rate (`--rate`, 50,000 readings/s)
//! would be 180 million readings, more than a benchmark can ingest first.
//! So the phase writes an hour of **history of the benchmark's plant**
//! instead, reproducibly: every tag of every subscriber (`--subscribers` x
//! 10) gets one reading every `--resume-period` (1 s, the polling interval
//! of `bench poll`) with timestamps over the `--resume-span` (1 h) that ends
//! now: 3.6 million readings for 100 subscribers, oldest first. Reading
//! `seq` is step `seq / tags` of the hour and goes to the tag
//! [`super::route`] gives it, as in the paced runs, so subscriber `i` owns
//! 1/subscribers of it. They are ingested as fast as the cluster takes them
//! (`--senders` tasks, batches of 1,000, fresh ids), then one more reading
//! of subscriber 0's first tag, the *head*: the last reading committed.
//!
//! On the benchmark's own cluster it then waits until every node has
//! flushed the head (`bifrost_state_flushed_revision`), so that the
//! catch-up reads stored chunks, as a resume an hour back does, rather than
//! readings still held in memory since the last flush (an external
//! cluster's HTTP ports are not known: there it does not wait, and says
//! so). Then subscriber 0 resumes from the revision the cluster held before the
//! hour (as the leader says), on the node its client starts at (the first
//! of `--endpoints`, node 1 of the own cluster), and the phase times it from opening the subscription
//! until it has received the head reading, that is, until it has caught
//! up. It must receive exactly its share of the hour plus the head, no
//! revision twice and none of another tag, or the benchmark fails. Nothing
//! else is ingested meanwhile, so catching up is all the node does: reading
//! its revision journal for the hour and the chunks of the subscriber's ten
//! tags.
//!
//! The phase runs before the paced runs (its timestamps then come before
//! theirs, as history does), once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bifrost_client::proto::{Reading, WatchRequest};
use bifrost_client::time::now_us;
use bifrost_client::{Client, WatchEvent};
use bifrost_testkit::{http_get, Wait};
use serde_json::json;
use tokio::task::JoinSet;

use super::{
    duplicates, prefix, route, tag_name, BenchWatchArgs, BATCH, PROGRESS_MS, TAGS_PER_SUBSCRIBER,
};
use crate::ctl::bench::common::{f64_reading, family_sum, ingest_acknowledged, round1, round2};

/// The subscriber that resumes.
const SUBSCRIBER: usize = 0;
const FLUSHED: &str = "bifrost_state_flushed_revision";

/// The hour of history: one reading per tag every period, oldest first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct History {
    steps: u64,
    tags: u64,
    period_us: i64,
}

impl History {
    /// `None` when the period is zero or longer than the span.
    pub(super) fn new(span: Duration, period: Duration, tags: u64) -> Option<History> {
        let period_us = i64::try_from(period.as_micros()).ok()?;
        if period_us == 0 || tags == 0 {
            return None;
        }
        let steps = (span.as_micros() / period.as_micros()) as u64;
        (steps > 0).then_some(History {
            steps,
            tags,
            period_us,
        })
    }

    pub(super) fn total(&self) -> u64 {
        self.steps * self.tags
    }

    /// Timestamp of reading `seq`, the span starting at `start_us`.
    fn ts(&self, seq: u64, start_us: i64) -> i64 {
        start_us + (seq / self.tags) as i64 * self.period_us
    }

    fn span_us(&self) -> i64 {
        self.steps as i64 * self.period_us
    }
}

/// How many of readings `0..total` [`route`] gives subscriber `sub`.
fn share(total: u64, subscribers: u64, sub: u64) -> u64 {
    total / subscribers + u64::from(sub < total % subscribers)
}

/// What the resume phase measured.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Resume {
    pub span: Duration,
    /// Readings committed after the revision resumed from (the hour and
    /// the head).
    pub history: u64,
    pub ingest_s: f64,
    /// Revision resumed from, and the head's.
    pub from: u64,
    pub head: u64,
    pub node: u64,
    /// Readings the subscriber received (its share and the head).
    pub received: u64,
    /// From opening the subscription to its `Started` event, and to the
    /// head reading.
    pub started_s: f64,
    pub caught_up_s: f64,
}

impl Resume {
    /// `resume 1h back in X s (N of M readings)`, for the summary line.
    pub(super) fn summary(&self) -> String {
        format!(
            "resume {} back in {:.2} s ({} of {} readings)",
            humantime::format_duration(self.span),
            self.caught_up_s,
            self.received,
            self.history
        )
    }

    pub(super) fn text(&self, period: Duration) -> String {
        format!(
            "resume: {} of history ({} readings, one per tag every {}, ingested in {:.1} s at {:.0}/s); \
             subscriber {SUBSCRIBER} resumed from revision {} on node {}: started after {:.3} s, \
             caught up to revision {} after {:.3} s ({} readings, {:.0}/s)",
            humantime::format_duration(self.span),
            self.history,
            humantime::format_duration(period),
            self.ingest_s,
            self.history as f64 / self.ingest_s.max(1e-9),
            self.from,
            self.node,
            self.started_s,
            self.head,
            self.caught_up_s,
            self.received,
            self.received as f64 / self.caught_up_s.max(1e-9)
        )
    }

    pub(super) fn json(&self) -> serde_json::Value {
        json!({
            "span_s": self.span.as_secs_f64(),
            "history_readings": self.history,
            "ingest_s": round2(self.ingest_s),
            "from_revision": self.from,
            "head_revision": self.head,
            "node": self.node,
            "received": self.received,
            "started_ms": round1(self.started_s * 1000.0),
            "caught_up_ms": round1(self.caught_up_s * 1000.0),
        })
    }
}

/// The resume phase: the hour of history, the head, and subscriber 0
/// resuming before them.
pub(super) async fn resume(
    args: &BenchWatchArgs,
    ingest: &Client,
    sub_clients: &[Client],
    names: &Arc<Vec<String>>,
    own_http: Option<&[String]>,
    nonce: u64,
) -> anyhow::Result<Resume> {
    let subs = u64::from(args.subscribers);
    let history = History::new(
        args.resume_span,
        args.resume_period,
        subs * TAGS_PER_SUBSCRIBER,
    )
    .ok_or_else(|| anyhow!("--resume-period must be more than 0 and at most --resume-span"))?;
    // Asked through the ingest client, which knows the leader: a
    // subscriber's client that asked would send its subscriptions there.
    let from = ingest
        .status()
        .await
        .context("resume: asking for the revision")?
        .revision;
    eprintln!(
        "bench: resume: ingesting {} of history, {} readings, after revision {from}",
        humantime::format_duration(args.resume_span),
        history.total()
    );
    let started = Instant::now();
    ingest_history(args, ingest, names, nonce, history).await?;
    let head_reading = f64_reading(
        format!("{nonce:016x}-head"),
        tag_name(SUBSCRIBER, 0),
        now_us(),
        0.0,
    );
    let head = ingest
        .ingest(vec![head_reading])
        .await
        .context("ingesting the head reading")?
        .last_revision;
    let ingest_s = started.elapsed().as_secs_f64();
    match own_http {
        Some(http) => wait_flushed(http, head, args.settle_timeout).await?,
        None => eprintln!(
            "bench: resume: an external cluster's nodes are not asked whether they flushed the \
             hour; the catch-up may read some of it from memory"
        ),
    }
    let client = &sub_clients[SUBSCRIBER % sub_clients.len()];
    let caught = catch_up(client, from, head, args.settle_timeout).await?;
    let want = share(history.total(), subs, SUBSCRIBER as u64) + 1;
    check(&caught, want, from)?;
    Ok(Resume {
        span: args.resume_span,
        history: history.total() + 1,
        ingest_s,
        from,
        head,
        node: caught.node,
        received: caught.revisions.len() as u64,
        started_s: caught.started_s,
        caught_up_s: caught.caught_up_s,
    })
}

/// Waits until every node (`http`: their HTTP addresses) has flushed
/// revision `head` (`bifrost_state_flushed_revision`), so that the
/// subscriber catches up from stored chunks, as one resuming an hour back
/// does, and not from what was applied in memory since the last flush.
async fn wait_flushed(http: &[String], head: u64, timeout: Duration) -> anyhow::Result<()> {
    Wait::new(format!("every node to flush revision {head}"), timeout)
        .until_async(|| async {
            let mut lowest = u64::MAX;
            for addr in http {
                let text = http_get(addr, "/metrics", Duration::from_secs(5))
                    .await
                    .map_err(|e| e.to_string())?;
                let flushed = family_sum(&text, FLUSHED).map_or(0.0, |(sum, _)| sum);
                lowest = lowest.min(flushed as u64);
            }
            if lowest >= head {
                Ok(())
            } else {
                Err(format!("{FLUSHED} {lowest} on the slowest node"))
            }
        })
        .await
        .context("resume")?;
    Ok(())
}

/// Ingests the hour as fast as the cluster takes it; every reading must
/// be stored (fresh ids).
async fn ingest_history(
    args: &BenchWatchArgs,
    ingest: &Client,
    names: &Arc<Vec<String>>,
    nonce: u64,
    history: History,
) -> anyhow::Result<()> {
    let start_us = now_us() - history.span_us();
    let subs = u64::from(args.subscribers);
    let batches = history.total().div_ceil(BATCH);
    let acked = Arc::new(AtomicU64::new(0));
    let mut senders = JoinSet::new();
    for s in 0..u64::from(args.senders) {
        let (client, names, acked) = (ingest.clone(), names.clone(), acked.clone());
        let step = u64::from(args.senders);
        senders.spawn(async move {
            let mut k = s;
            while k < batches {
                let seqs = k * BATCH..((k + 1) * BATCH).min(history.total());
                let readings: Vec<Reading> = seqs
                    .map(|seq| {
                        let (sub, tag) = route(seq, subs);
                        f64_reading(
                            format!("{nonce:016x}-h{seq}"),
                            names[sub * TAGS_PER_SUBSCRIBER as usize + tag].clone(),
                            history.ts(seq, start_us),
                            (seq % 1000) as f64 / 10.0,
                        )
                    })
                    .collect();
                let n = readings.len() as u64;
                ingest_acknowledged(&client, readings, &format!("history batch {k}")).await?;
                acked.fetch_add(n, Ordering::Relaxed);
                k += step;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    loop {
        tokio::select! {
            joined = senders.join_next() => match joined {
                None => return Ok(()),
                Some(r) => r.context("history ingest task")??,
            },
            _ = tick.tick() => eprintln!(
                "bench: resume: {:.0}s, {} of {} readings of history acknowledged",
                started.elapsed().as_secs_f64(),
                acked.load(Ordering::Relaxed),
                history.total()
            ),
        }
    }
}

/// What the resumed subscriber saw.
struct CaughtUp {
    node: u64,
    revisions: Vec<u64>,
    foreign: u64,
    started_s: f64,
    caught_up_s: f64,
}

/// Subscriber 0's pattern from revision `from` until it has everything up
/// to `head`, within `timeout`.
async fn catch_up(
    client: &Client,
    from: u64,
    head: u64,
    timeout: Duration,
) -> anyhow::Result<CaughtUp> {
    let prefix = prefix(SUBSCRIBER);
    let t0 = Instant::now();
    let mut w = client.watcher(WatchRequest {
        tags: Vec::new(),
        patterns: vec![format!("{prefix}*")],
        from_revision: Some(from),
        progress_ms: PROGRESS_MS,
    });
    let mut c = CaughtUp {
        node: 0,
        revisions: Vec::new(),
        foreign: 0,
        started_s: 0.0,
        caught_up_s: 0.0,
    };
    let follow = async {
        while w.last_revision().unwrap_or(0) < head {
            match w.next().await? {
                WatchEvent::Started { node_id, .. } => {
                    c.node = node_id;
                    c.started_s = t0.elapsed().as_secs_f64();
                }
                WatchEvent::Readings { readings, .. } => {
                    c.revisions.extend(readings.iter().map(|r| r.revision));
                    c.foreign += readings
                        .iter()
                        .filter(|r| !r.tag.starts_with(&prefix))
                        .count() as u64;
                }
                WatchEvent::Progress { .. } => {}
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    tokio::time::timeout(timeout, follow)
        .await
        .map_err(|_| {
            anyhow!(
                "resume: subscriber {SUBSCRIBER} had not caught up to revision {head} after {} \
                 (at revision {:?})",
                humantime::format_duration(timeout),
                w.last_revision()
            )
        })?
        .context("resume: the subscription failed")?;
    c.caught_up_s = t0.elapsed().as_secs_f64();
    Ok(c)
}

/// Exactly `want` readings of the subscriber's tags, all after `from`, no
/// revision twice.
fn check(c: &CaughtUp, want: u64, from: u64) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    let got = c.revisions.len() as u64;
    if got != want {
        problems.push(format!(
            "received {got} readings, {want} were ingested for its tags"
        ));
    }
    let mut revisions = c.revisions.clone();
    let twice = duplicates(&mut revisions);
    if twice > 0 {
        problems.push(format!(
            "{twice} readings with a revision it had already received"
        ));
    }
    if c.foreign > 0 {
        problems.push(format!("{} readings of tags it did not watch", c.foreign));
    }
    if let Some(r) = revisions.first().filter(|&&r| r <= from) {
        problems.push(format!("revision {r}, not after {from}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("resume: subscriber {SUBSCRIBER}: {}", problems.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_history_is_one_reading_per_tag_per_period() {
        let h = History::new(Duration::from_secs(3600), Duration::from_secs(1), 1000).unwrap();
        assert_eq!(h.total(), 3_600_000);
        assert_eq!(h.span_us(), 3_600_000_000);
        // Step by step: the first 1000 readings at the start, then a second on.
        assert_eq!(h.ts(0, 5), 5);
        assert_eq!(h.ts(999, 5), 5);
        assert_eq!(h.ts(1000, 5), 1_000_005);
        assert_eq!(h.ts(h.total() - 1, 0), 3_599_000_000);
        let h = History::new(Duration::from_secs(3600), Duration::from_secs(7), 10).unwrap();
        assert_eq!(h.total(), 514 * 10);
        assert_eq!(
            History::new(Duration::from_secs(1), Duration::ZERO, 10),
            None
        );
        assert_eq!(
            History::new(Duration::from_secs(1), Duration::from_secs(2), 10),
            None
        );
    }

    #[test]
    fn each_tag_of_the_history_gets_one_reading_per_step() {
        let (subs, tags) = (3u64, 3 * TAGS_PER_SUBSCRIBER);
        let h = History::new(Duration::from_secs(4), Duration::from_secs(1), tags).unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for seq in 0..h.total() {
            let (s, t) = route(seq, subs);
            assert!(seen.insert((s, t, h.ts(seq, 0)), seq).is_none(), "{seq}");
        }
        assert_eq!(seen.len() as u64, h.total());
    }

    #[test]
    fn a_subscribers_share_counts_what_route_gives_it() {
        for (total, subs) in [(36_000u64, 100u64), (1001, 7), (5, 10), (0, 3)] {
            for sub in 0..subs {
                let counted = (0..total)
                    .filter(|&seq| route(seq, subs).0 as u64 == sub)
                    .count() as u64;
                assert_eq!(share(total, subs, sub), counted, "{total} {subs} {sub}");
            }
        }
        assert_eq!(share(3_600_000, 100, 0), 36_000);
        assert_eq!(share(1001, 7, 0), 143);
        assert_eq!(share(5, 10, 4), 1);
        assert_eq!(share(5, 10, 5), 0);
    }

    fn caught(revisions: Vec<u64>, foreign: u64) -> CaughtUp {
        CaughtUp {
            node: 1,
            revisions,
            foreign,
            started_s: 0.0,
            caught_up_s: 0.0,
        }
    }

    #[test]
    fn the_resumed_subscriber_must_get_exactly_its_readings() {
        assert!(check(&caught(vec![11, 12, 15], 0), 3, 10).is_ok());
        let e = check(&caught(vec![11, 12], 0), 3, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("received 2 readings, 3 were ingested"), "{e}");
        let e = check(&caught(vec![11, 11, 12], 1), 3, 10)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("1 readings with a revision it had already received"),
            "{e}"
        );
        assert!(e.contains("1 readings of tags it did not watch"), "{e}");
        let e = check(&caught(vec![10, 11, 12], 0), 3, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("revision 10, not after 10"), "{e}");
    }

    #[test]
    fn the_summary_names_span_time_and_readings() {
        let r = Resume {
            span: Duration::from_secs(3600),
            history: 3_600_001,
            ingest_s: 40.0,
            from: 0,
            head: 3_600_001,
            node: 1,
            received: 36_001,
            started_s: 0.01,
            caught_up_s: 1.234,
        };
        assert_eq!(
            r.summary(),
            "resume 1h back in 1.23 s (36001 of 3600001 readings)"
        );
    }
}
