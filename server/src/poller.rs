//! Polls the devices assigned to this node.
//!
//! The node's *applied* state says which devices it owns. A node cut off from
//! the majority keeps its last known assignment, so it keeps polling and
//! buffering (overlap with the new owner is allowed; a gap is not). Each owned
//! device gets its own task with its own driver, so a dead or slow device
//! never delays another. A task is stopped between polls, never during one:
//! a read the device answered always reaches the outbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_drivers::scaling::DeadbandFilter;
use bifrost_drivers::{Driver, Sample, TagSpec};
use bifrost_raft::RaftNode;
use bifrost_storage::{Device, Quality, QualityLevel, Tag};
use tokio::sync::{mpsc, watch};

use crate::metrics::{DeviceLabels, Metrics};
use crate::outbox::{PollRecord, PolledReading};

/// Makes a driver for a device.
pub trait DriverFactory: Send + Sync + 'static {
    fn create(&self, device: &Device) -> Result<Box<dyn Driver>, String>;
    /// A driver for one short job (a write): no subscriptions or other
    /// long-lived machinery.
    fn create_oneshot(&self, device: &Device) -> Result<Box<dyn Driver>, String> {
        self.create(device)
    }
}

struct Running {
    /// Device and tag revisions the task was started with.
    config: (Device, Vec<Tag>),
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// Runs until the process ends: starts, restarts and stops device tasks as
/// the applied assignment and configuration change.
pub async fn run(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    outbox: mpsc::Sender<PollRecord>,
    factory: Arc<dyn DriverFactory>,
) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut seen_generation = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        // Only look again when the config changed or a task ended.
        let generation = node.state().config_generation();
        if seen_generation == Some(generation) && running.values().all(|r| !r.handle.is_finished())
        {
            continue;
        }
        seen_generation = Some(generation);
        let mut tags = node.state().tags_by_device();
        let owned: HashMap<String, (Device, Vec<Tag>)> = node
            .state()
            .assignments()
            .into_iter()
            .filter(|(_, a)| a.node == node.id())
            .filter_map(|(name, _)| {
                let d = node.state().device(&name)?;
                let t = tags.remove(&name).unwrap_or_default();
                d.enabled.then_some((name, (d, t)))
            })
            .collect();
        // Stop tasks of devices no longer ours or whose config changed.
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| owned.get(*name) != Some(&r.config) || r.handle.is_finished())
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                let _ = r.stop.send(true);
                // Let it finish its current poll so what it read is kept.
                let _ = tokio::time::timeout(Duration::from_secs(10), r.handle).await;
            }
        }
        for (name, config) in owned {
            if running.contains_key(&name) {
                continue;
            }
            let (stop, stop_rx) = watch::channel(false);
            let handle = tokio::spawn(poll_device(
                config.clone(),
                factory.clone(),
                metrics.clone(),
                outbox.clone(),
                stop_rx,
            ));
            running.insert(
                name,
                Running {
                    config,
                    stop,
                    handle,
                },
            );
        }
        metrics.polled_devices.set(running.len() as i64);
    }
}

async fn poll_device(
    (device, tags): (Device, Vec<Tag>),
    factory: Arc<dyn DriverFactory>,
    metrics: Arc<Metrics>,
    outbox: mpsc::Sender<PollRecord>,
    mut stop: watch::Receiver<bool>,
) {
    let labels = DeviceLabels {
        device: device.name.clone(),
    };
    let specs: Vec<TagSpec> = tags.iter().map(TagSpec::from).collect();
    let mut filters: Vec<DeadbandFilter> = specs
        .iter()
        .map(|s| {
            DeadbandFilter::new(s.deadband.as_ref(), s.scale.as_ref(), s.data_type)
                .unwrap_or_else(|_| DeadbandFilter::report_all())
        })
        .collect();
    let mut driver = match factory.create(&device) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(device = %device.name, error = %e, "cannot poll device: bad configuration");
            None
        }
    };
    let interval = Duration::from_millis(device.poll_interval_ms.max(10));
    // A poll never takes longer than this, whatever the driver does: a
    // wedged connection gives Bad `timeout` samples, never a stuck poller.
    let poll_budget =
        Duration::from_millis(device.timeout_ms.max(100) * (device.retries as u64 + 1))
            + Duration::from_secs(1);
    if let Some(d) = driver.as_mut() {
        if let Ok(Err(e)) = tokio::time::timeout(poll_budget, d.connect()).await {
            tracing::info!(device = %device.name, error = %e, "not connected yet; will retry");
        }
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    tracing::info!(device = %device.name, tags = specs.len(), "polling started");
    // Every series exists from the start, so a zero is visible as a zero.
    let _ = metrics.poll_missed.get_or_create(&labels);
    let _ = metrics.poll_errors.get_or_create(&labels);
    let mut last_start: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        // A deadline is missed when a poll starts a whole interval late
        // (the previous one ran long, or the runtime was overloaded and
        // skipped ticks).
        if let Some(prev) = last_start {
            let late = (started - prev).as_micros() / interval.as_micros().max(1);
            if late > 1 {
                metrics
                    .poll_missed
                    .get_or_create(&labels)
                    .inc_by((late - 1) as u64);
            }
        }
        last_start = Some(started);
        let ts_us = bifrost_model::now_us();
        let samples: Vec<Sample> = match driver.as_mut() {
            Some(d) => match tokio::time::timeout(poll_budget, d.read(&specs)).await {
                Ok(samples) => samples,
                Err(_) => {
                    tracing::warn!(device = %device.name, budget = ?poll_budget, "poll took too long");
                    specs
                        .iter()
                        .map(|_| Sample {
                            value: None,
                            quality: Quality::bad("timeout"),
                            source_ts_us: None,
                        })
                        .collect()
                }
            },
            None => specs
                .iter()
                .map(|_| Sample {
                    value: None,
                    quality: Quality::bad("config_error"),
                    source_ts_us: None,
                })
                .collect(),
        };
        let took = started.elapsed();
        metrics.polls.get_or_create(&labels).inc();
        metrics.poll_latency.observe(took.as_secs_f64());
        metrics
            .poll_latency_last
            .get_or_create(&labels)
            .set(took.as_micros() as i64);
        if samples.iter().any(|s| s.quality.level == QualityLevel::Bad) {
            metrics.poll_errors.get_or_create(&labels).inc();
        }
        let mut readings = Vec::with_capacity(samples.len());
        for ((spec, sample), filter) in specs.iter().zip(samples).zip(filters.iter_mut()) {
            if !filter.should_report(&sample) {
                continue;
            }
            readings.push(PolledReading {
                tag: spec.name.clone(),
                ts_us: sample.source_ts_us.unwrap_or(ts_us),
                value: sample.value,
                quality: sample.quality,
            });
        }
        if readings.is_empty() {
            continue;
        }
        if outbox
            .send(PollRecord {
                device: device.name.clone(),
                readings,
            })
            .await
            .is_err()
        {
            tracing::error!(device = %device.name, "outbox is gone; stopping");
            break;
        }
    }
    tracing::info!(device = %device.name, "polling stopped");
}
