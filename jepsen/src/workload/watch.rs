//! The watch workload: subscriptions have no gaps.
//!
//! Several subscribers follow the set workload's tags, each with its own
//! filter (a pattern or a list of tags) and each starting on another node.
//! Each uses the client library's [`Watcher`](bifrost_client::Watcher),
//! which reconnects by itself, to the same node or another, from the last
//! revision it saw. If the watcher gives up (no node could serve it within
//! its deadline), the subscriber records `info` and subscribes again from
//! its last revision under a fresh process id.
//!
//! Every subscription is a *stream*, named by the `key` of its events. Its
//! history is a sequence of `read` operations, one per message received:
//!
//! | invoke value                                 | ok value                                   |
//! |----------------------------------------------|--------------------------------------------|
//! | `["subscribe" [TAGS] [PATTERNS] FROM\|nil]`  | `["started" NODE_ID REVISION]`             |
//! | `nil`                                        | `["started" NODE_ID REVISION]` (a reconnect) |
//! | `nil`                                        | `["readings" REVISION [[REV TAG ID] ...]]` |
//! | `nil`                                        | `["progress" REVISION]`                    |
//! | `["target"]`                                 | `["target" REVISION]`                      |
//!
//! The `target` is the cluster's reading revision when the run ended
//! (`until`): the subscriber then keeps reading until it has covered that
//! revision (or `drain` has passed), so that the checker can tell a stream
//! that stalled from one that merely stopped early. Call [`run`] with an
//! `until` at which the faults have been healed.

use std::time::{Duration, Instant};

use bifrost_client::proto::WatchRequest;
use bifrost_client::{Client, ClientOptions, WatchEvent};

use super::{names, Recorder, Result};
use crate::history::{Function, Value};
use crate::target::Target;

/// One subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The stream's name (the `key` of its events).
    pub name: String,
    pub tags: Vec<String>,
    pub patterns: Vec<String>,
    /// Start after this revision; `None`: only readings committed after the
    /// subscription started.
    pub from_revision: Option<u64>,
}

/// How to run the watch workload.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub subscriptions: Vec<Subscription>,
    /// Progress interval asked of the server.
    pub progress_ms: u64,
    /// How long after `until` a subscriber may take to reach the target.
    pub drain: Duration,
    /// How long the client library keeps trying to re-establish a broken
    /// subscription before the subscriber starts a new watcher.
    pub deadline: Duration,
}

impl WatchOptions {
    /// Subscriptions over the set workload's tags: the first follows every
    /// tag by pattern, the others alternate between one exact tag and a
    /// one-character pattern, each starting on the next node.
    pub fn over_tags(tags: &[String], subscribers: usize) -> WatchOptions {
        let mut subscriptions = Vec::new();
        let prefix = common_dir(tags);
        for i in 0..subscribers {
            let (tags, patterns) = match i % 3 {
                0 => (vec![], vec![format!("{prefix}**")]),
                1 => (vec![tags[i % tags.len()].clone()], vec![]),
                _ => (vec![], vec![format!("{prefix}t?")]),
            };
            subscriptions.push(Subscription {
                name: format!("watch-{i}"),
                tags,
                patterns,
                from_revision: None,
            });
        }
        WatchOptions {
            subscriptions,
            progress_ms: 500,
            drain: Duration::from_secs(30),
            deadline: Duration::from_secs(5),
        }
    }
}

/// The directory part (up to the last `/`) shared by all `tags`.
fn common_dir(tags: &[String]) -> String {
    let first = tags.first().map(String::as_str).unwrap_or("");
    let dir = &first[..first.rfind('/').map(|i| i + 1).unwrap_or(0)];
    if tags.iter().all(|t| t.starts_with(dir)) {
        dir.to_string()
    } else {
        String::new()
    }
}

/// Runs every subscription until `until`, then until it has covered the
/// cluster's revision at `until` (at most `drain` longer).
pub async fn run(
    target: &Target,
    recorder: &Recorder,
    until: Instant,
    opts: &WatchOptions,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, sub) in opts.subscriptions.iter().enumerate() {
        let client = target.rotated(i).client(ClientOptions {
            connect_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_secs(2),
            deadline: opts.deadline,
            ..Default::default()
        })?;
        let recorder = recorder.clone();
        let sub = sub.clone();
        let opts = opts.clone();
        tasks.spawn(async move { subscribe(client, recorder, sub, until, &opts).await });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn subscribe(
    client: Client,
    recorder: Recorder,
    sub: Subscription,
    until: Instant,
    opts: &WatchOptions,
) {
    let key = sub.name.as_str();
    let mut process = recorder.process(names::WATCH);
    let mut last = sub.from_revision;
    let mut target: Option<u64> = None;
    let hard_stop = until + opts.drain;
    'subscriptions: loop {
        let req = WatchRequest {
            tags: sub.tags.clone(),
            patterns: sub.patterns.clone(),
            from_revision: last,
            progress_ms: opts.progress_ms,
        };
        let mut watcher = client.watcher(req);
        let mut invoke = Value::List(vec![
            Value::Str("subscribe".into()),
            strs(&sub.tags),
            strs(&sub.patterns),
            last.map_or(Value::Nil, |r| Value::Int(r as i64)),
        ]);
        loop {
            let now = Instant::now();
            if now >= until && target.is_none() {
                let op = process.invoke(
                    Function::Read,
                    key,
                    Value::List(vec![Value::Str("target".into())]),
                );
                match client.status().await {
                    Ok(s) => {
                        target = Some(s.revision);
                        op.ok(Value::List(vec![
                            Value::Str("target".into()),
                            Value::Int(s.revision as i64),
                        ]));
                    }
                    // No target: the checker cannot tell a stall, but still
                    // checks what was received.
                    Err(e) => {
                        op.fail(e.to_string());
                        target = Some(0);
                    }
                }
            }
            if now >= until && (last.unwrap_or(0) >= target.unwrap_or(0) || now >= hard_stop) {
                break 'subscriptions;
            }
            let op = process.invoke(
                Function::Read,
                key,
                std::mem::replace(&mut invoke, Value::Nil),
            );
            let wait = hard_stop
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            match tokio::time::timeout(wait, watcher.next()).await {
                Ok(Ok(event)) => {
                    let value = match event {
                        WatchEvent::Started {
                            node_id, revision, ..
                        } => Value::List(vec![
                            Value::Str("started".into()),
                            Value::Int(node_id as i64),
                            Value::Int(revision as i64),
                        ]),
                        WatchEvent::Readings {
                            readings, revision, ..
                        } => Value::List(vec![
                            Value::Str("readings".into()),
                            Value::Int(revision as i64),
                            Value::List(
                                readings
                                    .into_iter()
                                    .map(|r| {
                                        Value::List(vec![
                                            Value::Int(r.revision as i64),
                                            Value::Str(r.tag),
                                            Value::Str(r.id),
                                        ])
                                    })
                                    .collect(),
                            ),
                        ]),
                        WatchEvent::Progress { revision } => Value::List(vec![
                            Value::Str("progress".into()),
                            Value::Int(revision as i64),
                        ]),
                    };
                    last = watcher.last_revision().or(last);
                    op.ok(value);
                }
                Ok(Err(e)) => {
                    op.info(e.to_string());
                    last = watcher.last_revision().or(last);
                    // Compacted or invalid: resubscribing cannot help.
                    if matches!(
                        e.code(),
                        Some(tonic::Code::OutOfRange | tonic::Code::InvalidArgument)
                    ) {
                        break 'subscriptions;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue 'subscriptions;
                }
                Err(_) => {
                    // Out of time while waiting: the message never came.
                    op.info("drain deadline passed");
                    break 'subscriptions;
                }
            }
        }
    }
}

fn strs(items: &[String]) -> Value {
    Value::List(items.iter().map(|s| Value::Str(s.clone())).collect())
}
