//! The load `bench soak` keeps on its cluster besides the polled plant:
//! paced ingest through the gRPC client, paced queries, and subscriptions
//! over every tag. Each runs as its own task and only counts; the sampler
//! reads the counts ([`Progress`]) and decides whether the load stalled
//! ([`stalls`]). Dropping the [`Workload`] stops the tasks.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bifrost_client::proto::WatchRequest;
use bifrost_client::time::{format_ts_us, now_us};
use bifrost_client::{Client, Consistency, WatchEvent};
use tokio::task::JoinSet;

use super::super::common::{f64_reading, reserve_ts};

/// Readings per ingest batch at most; batches go out ten times a second.
const MAX_BATCH: u64 = 1_000;
/// How far back the history queries reach.
const HISTORY_SPAN_US: i64 = 5 * 60 * 1_000_000;

/// What the workload is asked to do.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub ingest_per_s: u64,
    /// Tags the ingested readings go to, in turn.
    pub ingest_tags: Vec<String>,
    pub queries_per_s: u32,
    /// How many rows the current-value query must return: every tag of the
    /// plant.
    pub plant_tags: usize,
    /// A polled tag the history query also reads.
    pub polled_tag: String,
    pub watchers: u32,
}

/// What one subscription has received.
#[derive(Default)]
struct Watched {
    polled: AtomicU64,
    ingested: AtomicU64,
    failed: AtomicBool,
}

#[derive(Default)]
struct Counters {
    ingested: AtomicU64,
    ingest_errors: AtomicU64,
    queries: AtomicU64,
    query_errors: AtomicU64,
    watched: Vec<Watched>,
    /// The last error of any task, for the stall message.
    last_error: Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, e: String) {
        *self.last_error.lock().expect("not poisoned") = Some(e);
    }
}

/// The counts at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Progress {
    pub ingested: u64,
    pub ingest_errors: u64,
    pub queries: u64,
    pub query_errors: u64,
    /// Per subscription: (polled readings, ingested readings) received.
    pub watched: Vec<(u64, u64)>,
    pub watch_failures: usize,
    pub last_error: Option<String>,
}

impl Progress {
    pub fn watched_total(&self) -> u64 {
        self.watched.iter().map(|(p, i)| p + i).sum()
    }
}

/// The running tasks; dropping it aborts them.
pub(super) struct Workload {
    counters: Arc<Counters>,
    _tasks: JoinSet<()>,
}

impl Workload {
    /// Starts the tasks: ingest and queries through `client`, subscription
    /// `i` through `watch_clients[i % len]` (each client's first endpoint
    /// is the node that serves its subscriptions).
    pub fn start(spec: &Spec, client: &Client, watch_clients: &[Client]) -> Workload {
        let counters = Arc::new(Counters {
            watched: (0..spec.watchers).map(|_| Watched::default()).collect(),
            ..Default::default()
        });
        let mut tasks = JoinSet::new();
        if spec.ingest_per_s > 0 {
            tasks.spawn(ingest(spec.clone(), client.clone(), counters.clone()));
        }
        if spec.queries_per_s > 0 {
            tasks.spawn(queries(spec.clone(), client.clone(), counters.clone()));
        }
        for i in 0..spec.watchers as usize {
            let c = watch_clients[i % watch_clients.len()].clone();
            tasks.spawn(watch(c, i, counters.clone()));
        }
        Workload {
            counters,
            _tasks: tasks,
        }
    }

    pub fn progress(&self) -> Progress {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Progress {
            ingested: load(&c.ingested),
            ingest_errors: load(&c.ingest_errors),
            queries: load(&c.queries),
            query_errors: load(&c.query_errors),
            watched: c
                .watched
                .iter()
                .map(|w| (load(&w.polled), load(&w.ingested)))
                .collect(),
            watch_failures: c
                .watched
                .iter()
                .filter(|w| w.failed.load(Ordering::Relaxed))
                .count(),
            last_error: c.last_error.lock().expect("not poisoned").clone(),
        }
    }
}

/// Batch size and interval for `per_s` readings a second: ten batches a
/// second, at most [`MAX_BATCH`] readings each (more batches beyond).
fn pacing(per_s: u64) -> (u64, Duration) {
    let batch = (per_s / 10).clamp(1, MAX_BATCH);
    (batch, Duration::from_secs_f64(batch as f64 / per_s as f64))
}

/// Paced ingest of fresh readings (ids unique to this run), round-robin
/// over the ingest tags; a late batch goes out at once.
async fn ingest(spec: Spec, client: Client, c: Arc<Counters>) {
    let (batch, every) = pacing(spec.ingest_per_s);
    let nonce: u64 = rand::random();
    let clock = AtomicI64::new(0);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut seq: u64 = 0;
    loop {
        tick.tick().await;
        let base = reserve_ts(&clock, batch as i64, now_us());
        let readings = (0..batch)
            .map(|k| {
                let n = seq + k;
                let tag = spec.ingest_tags[(n % spec.ingest_tags.len() as u64) as usize].clone();
                f64_reading(
                    format!("{nonce:016x}-{n}"),
                    tag,
                    base + k as i64,
                    (n % 1000) as f64,
                )
            })
            .collect();
        seq += batch;
        match client.ingest(readings).await {
            Ok(r) if r.stored + r.duplicates == batch => {
                c.ingested.fetch_add(batch, Ordering::Relaxed);
            }
            Ok(r) => {
                c.ingest_errors.fetch_add(1, Ordering::Relaxed);
                c.error(format!(
                    "ingest: {} of {batch} readings acknowledged",
                    r.stored + r.duplicates
                ));
            }
            Err(e) => {
                c.ingest_errors.fetch_add(1, Ordering::Relaxed);
                c.error(format!("ingest: {e}"));
            }
        }
    }
}

/// The queries, in turn: every plant tag's current value, then
/// 10-second buckets over the last five minutes of an ingested tag, then
/// of a polled one.
fn query_sql(k: u64, spec: &Spec, now_us: i64) -> (String, Option<usize>) {
    let buckets = |tag: &str| {
        format!(
            "SELECT time_bucket(INTERVAL '10 seconds', ts) AS bucket, avg(value), min(value), \
             max(value) FROM readings WHERE tag = '{tag}' AND ts >= '{}' GROUP BY bucket",
            format_ts_us(now_us - HISTORY_SPAN_US)
        )
    };
    match k % 3 {
        0 => (
            "SELECT name, value, ts FROM tags WHERE name LIKE 'sim%'".into(),
            Some(spec.plant_tags),
        ),
        1 if !spec.ingest_tags.is_empty() && spec.ingest_per_s > 0 => {
            (buckets(&spec.ingest_tags[0]), None)
        }
        _ => (buckets(&spec.polled_tag), None),
    }
}

/// Paced queries with local consistency, spread over the nodes by the
/// client's rotation. A query fails when it errs, or returns a wrong
/// number of current values, or no bucket.
async fn queries(spec: Spec, client: Client, c: Arc<Counters>) {
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(spec.queries_per_s)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for k in 0.. {
        tick.tick().await;
        let (sql, rows_wanted) = query_sql(k, &spec, now_us());
        let result = match client.query(&sql, Consistency::Local).await {
            Ok(rows) => rows.collect().await.map(|(_, rows, _)| rows.len()),
            Err(e) => Err(e),
        };
        let problem = match result {
            Ok(n) if rows_wanted.is_some_and(|w| w != n) => Some(format!(
                "query: {n} current values, {} tags in the plant",
                rows_wanted.unwrap_or(0)
            )),
            Ok(0) => Some(format!("query: no buckets from {sql}")),
            Ok(_) => None,
            Err(e) => Some(format!("query: {e}")),
        };
        match problem {
            None => c.queries.fetch_add(1, Ordering::Relaxed),
            Some(p) => {
                c.error(p);
                c.query_errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

/// Subscription `i` over every tag, counting the readings it receives; it
/// ends only when the watcher cannot go on.
async fn watch(client: Client, i: usize, c: Arc<Counters>) {
    let mut w = client.watcher(WatchRequest {
        tags: Vec::new(),
        patterns: Vec::new(),
        from_revision: None,
        progress_ms: 1000,
    });
    let me = &c.watched[i];
    loop {
        match w.next().await {
            Ok(WatchEvent::Readings { readings, .. }) => {
                let polled = readings.iter().filter(|r| r.tag.starts_with("sim")).count() as u64;
                me.polled.fetch_add(polled, Ordering::Relaxed);
                me.ingested
                    .fetch_add(readings.len() as u64 - polled, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => {
                me.failed.store(true, Ordering::Relaxed);
                c.error(format!("subscription {i}: {e}"));
                return;
            }
        }
    }
}

/// Why the workload counts as stalled between two samples, if it does:
/// errors, or a part of the load that made no progress in that interval.
/// `forwarded` is the polled readings the nodes committed from their
/// outboxes, all nodes together, at each sample (`None`: not known).
pub(super) fn stalls(
    spec: &Spec,
    prev: &Progress,
    cur: &Progress,
    forwarded: (Option<f64>, Option<f64>),
) -> Vec<String> {
    let mut why = Vec::new();
    let last = || {
        cur.last_error
            .as_deref()
            .map_or(String::new(), |e| format!(" (last error: {e})"))
    };
    // Calls of one kind: some failed, or none succeeded though some were due.
    let mut calls = |failed: (u64, u64), done: (u64, u64), due: bool, what: &str, none: &str| {
        if failed.1 > failed.0 {
            why.push(format!("{} {what} failed{}", failed.1 - failed.0, last()));
        } else if due && done.1 == done.0 {
            why.push(none.to_string());
        }
    };
    calls(
        (prev.ingest_errors, cur.ingest_errors),
        (prev.ingested, cur.ingested),
        spec.ingest_per_s > 0,
        "ingest batches",
        "no ingested reading was acknowledged",
    );
    calls(
        (prev.query_errors, cur.query_errors),
        (prev.queries, cur.queries),
        spec.queries_per_s > 0,
        "queries",
        "no query was answered",
    );
    if cur.watch_failures > 0 {
        why.push(format!(
            "{} subscriptions ended{}",
            cur.watch_failures,
            last()
        ));
    }
    for (i, (a, b)) in prev.watched.iter().zip(&cur.watched).enumerate() {
        if b.0 == a.0 {
            why.push(format!("subscription {i} received no polled reading"));
        }
        if spec.ingest_per_s > 0 && b.1 == a.1 {
            why.push(format!("subscription {i} received no ingested reading"));
        }
    }
    if let (Some(a), Some(b)) = forwarded {
        if b <= a {
            why.push("the nodes committed no polled reading".into());
        }
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            ingest_per_s: 1000,
            ingest_tags: vec!["bench/soak000".into()],
            queries_per_s: 2,
            plant_tags: 200,
            polled_tag: "sim00000/sine0".into(),
            watchers: 2,
        }
    }

    fn progress(n: u64) -> Progress {
        Progress {
            ingested: 1000 * n,
            queries: 2 * n,
            watched: vec![(200 * n, 1000 * n), (200 * n, 1000 * n)],
            ..Default::default()
        }
    }

    #[test]
    fn pacing_meets_the_rate() {
        assert_eq!(pacing(1000), (100, Duration::from_millis(100)));
        assert_eq!(pacing(5), (1, Duration::from_millis(200)));
        let (b, every) = pacing(50_000);
        assert_eq!(b, 1000);
        assert!((b as f64 / every.as_secs_f64() - 50_000.0).abs() < 1.0);
    }

    #[test]
    fn a_flowing_workload_has_no_stall() {
        let s = stalls(
            &spec(),
            &progress(1),
            &progress(2),
            (Some(10.0), Some(20.0)),
        );
        assert_eq!(s, Vec::<String>::new());
    }

    #[test]
    fn each_stalled_part_is_named() {
        let mut cur = progress(2);
        cur.ingested = progress(1).ingested;
        cur.watched[1].0 = progress(1).watched[1].0;
        let s = stalls(&spec(), &progress(1), &cur, (Some(10.0), Some(10.0)));
        assert_eq!(
            s,
            vec![
                "no ingested reading was acknowledged".to_string(),
                "subscription 1 received no polled reading".into(),
                "the nodes committed no polled reading".into(),
            ]
        );
        let mut cur = progress(2);
        cur.query_errors = 3;
        cur.last_error = Some("query: timeout".into());
        let s = stalls(&spec(), &progress(1), &cur, (None, None));
        assert_eq!(
            s,
            vec!["3 queries failed (last error: query: timeout)".to_string()]
        );
        // A part not asked for is not missed.
        let idle = Spec {
            ingest_per_s: 0,
            queries_per_s: 0,
            ..spec()
        };
        let same = progress(1);
        let s = stalls(&idle, &same, &same, (None, None));
        assert_eq!(
            s,
            vec![
                "subscription 0 received no polled reading".to_string(),
                "subscription 1 received no polled reading".into(),
            ]
        );
    }

    #[test]
    fn queries_take_turns() {
        let sp = spec();
        let (q0, rows) = query_sql(0, &sp, 600_000_000);
        assert!(q0.starts_with("SELECT name, value, ts FROM tags"));
        assert_eq!(rows, Some(200));
        let (q1, rows) = query_sql(1, &sp, 600_000_000);
        assert!(
            q1.contains("tag = 'bench/soak000' AND ts >= '1970-01-01T00:05:00"),
            "{q1}"
        );
        assert_eq!(rows, None);
        let (q2, _) = query_sql(2, &sp, 600_000_000);
        assert!(q2.contains("tag = 'sim00000/sine0'"), "{q2}");
        // Without ingest, the ingested tag's turn goes to the polled one.
        let (q1, _) = query_sql(
            1,
            &Spec {
                ingest_per_s: 0,
                ..sp
            },
            600_000_000,
        );
        assert!(q1.contains("tag = 'sim00000/sine0'"), "{q1}");
    }
}
