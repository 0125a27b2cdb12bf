//! Subscriptions: committed readings, in revision order, to any number of
//! subscribers, resumable from any revision still held.
//!
//! The apply path only hands each committed batch to a broadcast channel
//! (never waiting: a receiver that falls behind loses its place, it does not
//! slow the apply). Each subscription is a task that
//!
//! 1. catches up from storage from its cursor to the node's current
//!    revision, page by page, at the pace of its consumer: a page of every
//!    reading in revision order (the journal), or, for a filter matching few
//!    tags, a page of those tags' readings read tag by tag;
//! 2. then follows the broadcast, checking that every batch starts where the
//!    previous one ended (`prev_revision == cursor`). A batch that does not
//!    (a snapshot install, a batch applied while nobody listened, a lagging
//!    receiver) sends the task back to step 1, so a hole is never skipped.
//!
//! Between the task and its consumer (a WebSocket or a gRPC stream) sits a
//! queue bounded in readings. Live readings that would overflow it end the
//! subscription with an `overflow` error naming the revision to resume from;
//! everything queued before it is delivered first, so the consumer has every
//! matching reading up to that revision.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bifrost_raft::{Applied, ApplyListener};
use bifrost_storage::{Reading, StateStore};
use tokio::sync::{broadcast, mpsc, Notify};

use crate::metrics::Metrics;
use crate::query::pattern::Pattern;
use bifrost_model::{now_us, Access};

/// Revisions read from storage per step of a catch-up. Large: a page
/// decodes each chunk it touches once, and a page of a busy plant touches
/// a chunk of nearly every tag.
const PAGE: usize = 20_000;
/// A catch-up reads the tags a filter matches one by one (costing what
/// those tags hold since the cursor, not what every tag holds) when they are
/// at most this many...
const NARROW_MAX_TAGS: usize = 1000;
/// ...and at most this fraction (1/N) of the tags with history.
const NARROW_FRACTION: usize = 10;
/// Committed batches the broadcast holds for a slow receiver before it lags
/// (and falls back to storage). Small: the ring keeps its batches, readings
/// and all, until they are overwritten.
const BROADCAST_CAPACITY: usize = 64;

#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Most subscriptions this node serves at once.
    pub max_subscriptions: usize,
    /// Most readings queued for one consumer before it counts as too slow.
    pub buffer: usize,
    /// Progress interval when the subscriber does not name one.
    pub progress: Duration,
    /// Longest a WebSocket message may take to leave; a client that reads
    /// slower is disconnected (its subscription resumes from its revision).
    pub ws_send_timeout: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            max_subscriptions: 1000,
            buffer: 100_000,
            progress: Duration::from_secs(5),
            ws_send_timeout: Duration::from_secs(30),
        }
    }
}

/// One committed write of the state, as broadcast to subscriptions.
#[derive(Debug)]
pub struct Batch {
    pub prev_revision: u64,
    pub revision: u64,
    pub readings: Option<Vec<Reading>>,
    pub applied_us: i64,
}

/// Shortest progress interval a subscriber may ask for; a shorter one is
/// raised to it.
pub const MIN_PROGRESS: Duration = Duration::from_millis(10);

/// The progress interval a subscriber asked for, in milliseconds: 0 names
/// none (the node's default applies), less than [`MIN_PROGRESS`] is raised.
pub fn progress_interval(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms).max(MIN_PROGRESS))
}

/// What a subscriber asks for.
#[derive(Clone, Debug, Default)]
pub struct WatchRequest {
    pub tags: Vec<String>,
    pub patterns: Vec<String>,
    /// Send readings with a revision greater than this; `None`: only new ones.
    pub from_revision: Option<u64>,
    pub progress: Option<Duration>,
    /// Only tags this access may see (the subscriber's, if restricted).
    pub access: Option<Access>,
    /// Whether the subscriber's credential still holds; asked before each
    /// event and every second, and the subscription ends when it does not.
    pub credential: Option<Credential>,
}

/// A check of a subscriber's credential (see [`WatchRequest::credential`]):
/// `Err` says why it no longer holds.
#[derive(Clone)]
pub struct Credential(pub Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential")
    }
}

/// How often an idle subscription checks its credential.
const CREDENTIAL_CHECK: Duration = Duration::from_secs(1);

/// What a subscription sends.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// First event: the stream continues after `revision`.
    Started {
        revision: u64,
        oldest_revision: u64,
        node_id: u64,
    },
    /// Matching readings; every matching reading up to `revision` was sent.
    Readings {
        readings: Vec<Reading>,
        revision: u64,
        /// When the batch was applied here; 0 for readings read back from
        /// storage during a catch-up.
        applied_us: i64,
    },
    /// Nothing new matched; every matching reading up to `revision` was sent.
    Progress { revision: u64 },
}

/// Why a subscription ended or could not start.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WatchError {
    #[error("revision {requested} is compacted: the oldest revision held is {oldest}; resume from revision {resume} or later", resume = oldest.saturating_sub(1))]
    Compacted { requested: u64, oldest: u64 },
    #[error("subscriber too slow: more than {buffer} readings queued; resume from revision {resume_from}")]
    Overflow { resume_from: u64, buffer: usize },
    #[error("too many subscriptions on node {node}: the limit is {limit}")]
    TooMany { node: u64, limit: usize },
    #[error("invalid subscription: {0}")]
    Invalid(String),
    /// The subscriber may not see a tag it named.
    #[error("{0}")]
    Denied(String),
    /// The subscriber's session or user ended, or its grants changed.
    #[error("subscription ended: {0}")]
    Unauthenticated(String),
    #[error("storage error: {0}")]
    Storage(String),
}

/// Fans committed readings out to subscriptions.
pub struct Hub {
    node_id: u64,
    state: StateStore,
    tx: broadcast::Sender<Arc<Batch>>,
    active: Arc<AtomicUsize>,
    opts: WatchOptions,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn options(&self) -> &WatchOptions {
        &self.opts
    }

    /// Counts a subscriber disconnected for not reading.
    pub fn count_slow_disconnect(&self) {
        self.metrics.watch_slow_disconnects.inc();
    }

    pub fn new(node_id: u64, state: StateStore, opts: WatchOptions, metrics: Arc<Metrics>) -> Hub {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Hub {
            node_id,
            state,
            tx,
            active: Arc::new(AtomicUsize::new(0)),
            opts,
            metrics,
        }
    }

    /// Subscriptions open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Called by the apply path (through [`Listener`]).
    fn publish(&self, a: Applied) {
        if a.revision == a.prev_revision {
            return;
        }
        if self.tx.receiver_count() == 0 {
            return;
        }
        let applied_us = now_us();
        let _ = self.tx.send(Arc::new(Batch {
            prev_revision: a.prev_revision,
            revision: a.revision,
            readings: a.readings,
            applied_us,
        }));
    }

    /// Starts a subscription. Errors that can be known at once (limits, bad
    /// patterns, a compacted revision) come back here.
    pub fn subscribe(self: &Arc<Self>, req: WatchRequest) -> Result<Subscription, WatchError> {
        let filter = Filter::new(&req.tags, &req.patterns, req.access)?;
        let oldest = self.state.oldest_revision();
        if let Some(from) = req.from_revision {
            if from.saturating_add(1) < oldest {
                return Err(WatchError::Compacted {
                    requested: from,
                    oldest,
                });
            }
        }
        let n = self.active.fetch_add(1, Ordering::SeqCst);
        if n >= self.opts.max_subscriptions {
            self.active.fetch_sub(1, Ordering::SeqCst);
            return Err(WatchError::TooMany {
                node: self.node_id,
                limit: self.opts.max_subscriptions,
            });
        }
        self.metrics.watch_subscriptions.set(n as i64 + 1);
        let guard = ActiveGuard {
            active: self.active.clone(),
            metrics: self.metrics.clone(),
        };
        // Subscribe before reading the current revision: nothing committed
        // after that read can be missed.
        let live = self.tx.subscribe();
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            readings: AtomicUsize::new(0),
            drained: Notify::new(),
        });
        let task = Task {
            hub: self.clone(),
            filter,
            credential: req.credential,
            cursor: req.from_revision.unwrap_or_else(|| self.state.revision()),
            progress: req.progress.unwrap_or(self.opts.progress),
            tx,
            queue: queue.clone(),
            _guard: guard,
        };
        tokio::spawn(task.run(live));
        Ok(Subscription { rx, queue })
    }
}

/// The apply-path side of a [`Hub`], combined with the apply metrics. The
/// hub is set once the node (and so its state) exists.
pub struct Listener {
    pub hub: std::sync::OnceLock<Arc<Hub>>,
    pub metrics: Arc<Metrics>,
}

impl ApplyListener for Listener {
    fn wants_readings(&self) -> bool {
        self.hub.get().is_some_and(|h| h.tx.receiver_count() > 0)
    }

    fn applied(&self, a: Applied) {
        if a.entries > 0 {
            self.metrics.apply_latency.observe(a.took.as_secs_f64());
            self.metrics.applied_entries.inc_by(a.entries as u64);
        }
        if let Some(h) = self.hub.get() {
            h.publish(a);
        }
    }
}

struct ActiveGuard {
    active: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let left = self.active.fetch_sub(1, Ordering::SeqCst) - 1;
        self.metrics.watch_subscriptions.set(left as i64);
    }
}

/// Readings queued between a subscription task and its consumer.
struct Queue {
    readings: AtomicUsize,
    drained: Notify,
}

/// The consumer's end of a subscription. Dropping it ends the subscription.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Result<Event, WatchError>>,
    queue: Arc<Queue>,
}

impl Subscription {
    /// The next event; `None` once the subscription ended (after an error,
    /// or when the node shuts down).
    pub async fn next(&mut self) -> Option<Result<Event, WatchError>> {
        let ev = self.rx.recv().await?;
        if let Ok(Event::Readings { readings, .. }) = &ev {
            self.queue
                .readings
                .fetch_sub(readings.len(), Ordering::SeqCst);
            self.queue.drained.notify_one();
        }
        Some(ev)
    }
}

/// Which tags a subscription wants, among those its subscriber may see.
/// Decisions are cached per tag name.
struct Filter {
    all: bool,
    names: HashSet<String>,
    patterns: Vec<Pattern>,
    access: Option<Access>,
    seen: HashMap<String, bool>,
}

impl Filter {
    fn new(
        tags: &[String],
        patterns: &[String],
        access: Option<Access>,
    ) -> Result<Filter, WatchError> {
        let patterns = patterns
            .iter()
            .map(|p| {
                Pattern::glob(p).map_err(|e| WatchError::Invalid(format!("pattern '{p}': {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter {
            all: tags.is_empty() && patterns.is_empty() && access.is_none(),
            names: tags.iter().cloned().collect(),
            patterns,
            access,
            seen: HashMap::new(),
        })
    }

    fn matches(&mut self, tag: &str) -> bool {
        if self.all {
            return true;
        }
        if let Some(&m) = self.seen.get(tag) {
            return m;
        }
        let m = self.matches_uncached(tag);
        if self.seen.len() < 100_000 {
            self.seen.insert(tag.to_string(), m);
        }
        m
    }
}

impl Filter {
    fn matches_uncached(&self, tag: &str) -> bool {
        if self.all {
            return true;
        }
        let asked = (self.names.is_empty() && self.patterns.is_empty())
            || self.names.contains(tag)
            || self.patterns.iter().any(|p| p.matches(tag));
        asked && self.access.as_ref().is_none_or(|a| a.visible(tag))
    }
}

struct Task {
    hub: Arc<Hub>,
    filter: Filter,
    credential: Option<Credential>,
    /// Every matching reading up to here has been queued.
    cursor: u64,
    progress: Duration,
    tx: mpsc::UnboundedSender<Result<Event, WatchError>>,
    queue: Arc<Queue>,
    _guard: ActiveGuard,
}

/// Why a task stops.
enum Stop {
    /// The consumer went away or the node shuts down.
    Gone,
    Failed(WatchError),
}

impl Task {
    async fn run(mut self, mut live: broadcast::Receiver<Arc<Batch>>) {
        let started = Event::Started {
            revision: self.cursor,
            oldest_revision: self.hub.state.oldest_revision(),
            node_id: self.hub.node_id,
        };
        if self.tx.send(Ok(started)).is_err() {
            return;
        }
        let stop = loop {
            if let Err(stop) = self.catch_up().await {
                break stop;
            }
            match self.follow(&mut live).await {
                Ok(()) => continue,
                Err(stop) => break stop,
            }
        };
        if let Stop::Failed(e) = stop {
            if matches!(e, WatchError::Overflow { .. }) {
                self.hub.metrics.watch_overflows.inc();
            }
            let _ = self.tx.send(Err(e));
        }
    }

    /// Reads from storage until the cursor reaches the node's revision.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let target = self.hub.state.revision();
            if self.cursor >= target {
                return Ok(());
            }
            let state = self.hub.state.clone();
            let after = self.cursor;
            let narrow = self.narrow_tags();
            if narrow.is_some() {
                self.hub.metrics.watch_tag_pages.inc();
            }
            let (page, last) = tokio::task::spawn_blocking(move || match narrow {
                Some(tags) => state.tag_readings_page(&tags, after, PAGE),
                None => state.readings_page(after, PAGE),
            })
            .await
            .map_err(|e| Stop::Failed(WatchError::Storage(e.to_string())))?
            .map_err(|e| Stop::Failed(WatchError::Storage(e.to_string())))?;
            // A compaction that ran under the read may have removed part of
            // the page: then the stream cannot go on without a hole.
            let oldest = self.hub.state.oldest_revision();
            if after.saturating_add(1) < oldest {
                return Err(Stop::Failed(WatchError::Compacted {
                    requested: after,
                    oldest,
                }));
            }
            if last == after {
                // Nothing held after the cursor although the revision is
                // higher: only readings of deleted tags, gone with them.
                self.cursor = target;
                continue;
            }
            let matching: Vec<Reading> = page
                .into_iter()
                .filter(|r| self.filter.matches(&r.tag))
                .collect();
            self.queue_waiting(matching, last, 0).await?;
            self.cursor = last;
        }
    }

    /// The ids of the tags a narrow filter matches now, when reading those
    /// tags one by one costs less than reading every reading since the
    /// cursor and filtering (see [`NARROW_MAX_TAGS`]).
    fn narrow_tags(&self) -> Option<Vec<u64>> {
        if self.filter.all {
            return None;
        }
        let state = &self.hub.state;
        let ids = state.tag_ids_matching(|name| self.filter.matches_uncached(name));
        let narrow = ids.len() <= NARROW_MAX_TAGS
            && ids.len() * NARROW_FRACTION <= state.tags_with_history();
        narrow.then_some(ids)
    }

    /// Follows committed batches until one does not continue the cursor.
    async fn follow(&mut self, live: &mut broadcast::Receiver<Arc<Batch>>) -> Result<(), Stop> {
        let mut tick = tokio::time::interval(self.progress);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        let mut recheck = tokio::time::interval(CREDENTIAL_CHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                b = live.recv() => match b {
                    Ok(b) => {
                        if b.revision <= self.cursor {
                            continue;
                        }
                        let Some(readings) = b.readings.as_ref() else {
                            return Ok(());
                        };
                        if b.prev_revision > self.cursor {
                            return Ok(());
                        }
                        let cursor = self.cursor;
                        let matching: Vec<Reading> = readings
                            .iter()
                            .filter(|r| r.revision > cursor && self.filter.matches(&r.tag))
                            .cloned()
                            .collect();
                        self.queue_now(matching, b.revision, b.applied_us)?;
                        self.cursor = b.revision;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => return Ok(()),
                    Err(broadcast::error::RecvError::Closed) => return Err(Stop::Gone),
                },
                _ = tick.tick() => {
                    self.check_credential()?;
                    if self.tx.send(Ok(Event::Progress { revision: self.cursor })).is_err() {
                        return Err(Stop::Gone);
                    }
                }
                _ = recheck.tick() => self.check_credential()?,
                _ = self.tx.closed() => return Err(Stop::Gone),
            }
        }
    }

    /// Ends the subscription once its credential no longer holds.
    fn check_credential(&self) -> Result<(), Stop> {
        match &self.credential {
            Some(Credential(holds)) => {
                holds().map_err(|why| Stop::Failed(WatchError::Unauthenticated(why)))
            }
            None => Ok(()),
        }
    }

    fn push(&self, readings: Vec<Reading>, revision: u64, applied_us: i64) -> Result<(), Stop> {
        self.check_credential()?;
        let n = readings.len();
        self.queue.readings.fetch_add(n, Ordering::SeqCst);
        self.hub.metrics.watch_delivered.inc_by(n as u64);
        self.tx
            .send(Ok(Event::Readings {
                readings,
                revision,
                applied_us,
            }))
            .map_err(|_| Stop::Gone)
    }

    /// Queues live readings; too many queued already is an overflow.
    fn queue_now(
        &self,
        readings: Vec<Reading>,
        revision: u64,
        applied_us: i64,
    ) -> Result<(), Stop> {
        if readings.is_empty() {
            return Ok(());
        }
        let queued = self.queue.readings.load(Ordering::SeqCst);
        if queued > 0 && queued + readings.len() > self.hub.opts.buffer {
            return Err(Stop::Failed(WatchError::Overflow {
                resume_from: self.cursor,
                buffer: self.hub.opts.buffer,
            }));
        }
        self.push(readings, revision, applied_us)
    }

    /// Queues readings read back from storage, waiting for room: a catch-up
    /// goes at the consumer's pace.
    async fn queue_waiting(
        &self,
        readings: Vec<Reading>,
        revision: u64,
        applied_us: i64,
    ) -> Result<(), Stop> {
        if readings.is_empty() {
            return Ok(());
        }
        loop {
            let drained = self.queue.drained.notified();
            let queued = self.queue.readings.load(Ordering::SeqCst);
            if queued == 0 || queued + readings.len() <= self.hub.opts.buffer / 2 {
                break;
            }
            tokio::select! {
                _ = drained => {}
                _ = self.tx.closed() => return Err(Stop::Gone),
            }
        }
        self.push(readings, revision, applied_us)
    }
}
