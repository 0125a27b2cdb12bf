//! Polls the devices assigned to this node.
//!
//! The node's *applied* state says which devices it owns. A node cut off from
//! the majority keeps its last known assignment, so it keeps polling and
//! buffering (overlap with the new owner is allowed; a gap is not). Each owned
//! device gets its own task with its own driver, so a dead or slow device
//! never delays another. A task is stopped between polls, never during one:
//! a read the device answered always reaches the outbox.
//!
//! Each tag is read at its own period: its scan rate (`Tag::scan_rate_ms`),
//! or the device's poll interval when the scan rate is 0. So the device is
//! polled at the fastest rate any of its tags needs, and nothing is read at
//! the device interval unless some tag uses it: a device whose tags all have
//! scan rates is polled at those rates only. The tags due at one instant are
//! read in one driver call (a Modbus block read still covers neighbours). A
//! group of tags a whole period or more late (a slow device, an overloaded
//! node) skips the deadlines it missed, counting them in
//! `device_missed_deadlines`, and reads once rather than in a burst. While
//! commits fall behind, a share of due polls is shed and counted the same
//! way (`pressure.rs`). The
//! scheduling itself is `poller/schedule.rs`. A device without tags is
//! connected to but not read. Drivers get the tags with their device, so the
//! OPC UA driver's subscription publishes as often as the fastest tag is read
//! (`devices.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bifrost_drivers::scaling::DeadbandFilter;
use bifrost_drivers::{Driver, Sample, TagSpec};
use bifrost_model::poll::{DevicePoll, PolledValue};
use bifrost_raft::RaftNode;
use bifrost_storage::{Assignment, Device, Quality, QualityLevel, Tag};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::metrics::{DeviceLabels, Metrics};
use crate::pressure::{Admission, Gate};
use crate::reach::Reachability;

mod schedule;
use schedule::Schedule;

/// Makes a driver for a device.
pub trait DriverFactory: Send + Sync + 'static {
    /// A driver to poll `tags` of `device` (at [`tag_period`] each).
    fn create(&self, device: &Device, tags: &[Tag]) -> Result<Box<dyn Driver>, String>;
    /// A driver for one short job (a write): no subscriptions or other
    /// long-lived machinery.
    fn create_oneshot(&self, device: &Device) -> Result<Box<dyn Driver>, String> {
        self.create(device, &[])
    }
}

struct Running {
    /// Fingerprint of the device, tags and assignment epoch the task was
    /// started with (a copy of every polled tag would cost as much memory
    /// as the tag configuration itself).
    config: blake3::Hash,
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// Runs until the process ends: starts, restarts and stops device tasks as
/// the applied assignment and configuration change.
pub async fn run(
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    outbox: mpsc::Sender<DevicePoll>,
    factory: Arc<dyn DriverFactory>,
    admission: Arc<Admission>,
    reach: Arc<Reachability>,
) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut seen_generation = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let open = bifrost_drivers::open_connections();
        metrics.device_connections.set(open as i64);
        // Only look again when the config changed or a task ended.
        let generation = node.state().config_generation();
        if seen_generation == Some(generation) && running.values().all(|r| !r.handle.is_finished())
        {
            continue;
        }
        seen_generation = Some(generation);
        let ours: BTreeMap<String, Assignment> = node
            .state()
            .assignments()
            .into_iter()
            .filter(|(_, a)| a.node == node.id())
            .collect();
        let mut tags = node.state().tags_by_device(|d| ours.contains_key(d));
        let owned: HashMap<String, (TaskConfig, blake3::Hash)> = ours
            .into_iter()
            .filter_map(|(name, a)| {
                let d = node.state().device(&name)?;
                let t = tags.remove(&name).unwrap_or_default();
                if !d.enabled {
                    return None;
                }
                let config = (d, t, a.epoch);
                let fingerprint = fingerprint(&config);
                Some((name, (config, fingerprint)))
            })
            .collect();
        // Stop tasks of devices no longer ours or whose config changed.
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| {
                owned.get(*name).map(|(_, f)| f) != Some(&r.config) || r.handle.is_finished()
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                let _ = r.stop.send(true);
                // Let it finish its current poll so what it read is kept.
                let _ = tokio::time::timeout(Duration::from_secs(10), r.handle).await;
                reach.forget(&name);
                // Not polled here any more: no breaker here either.
                let labels = DeviceLabels { device: name };
                metrics.breaker_backoff.get_or_create(&labels).set(0);
            }
        }
        for (name, (config, fingerprint)) in owned {
            if running.contains_key(&name) {
                continue;
            }
            let (stop, stop_rx) = watch::channel(false);
            let handle = tokio::spawn(poll_device(
                config,
                factory.clone(),
                metrics.clone(),
                (outbox.clone(), admission.clone()),
                reach.clone(),
                stop_rx,
            ));
            running.insert(
                name,
                Running {
                    config: fingerprint,
                    stop,
                    handle,
                },
            );
        }
        metrics.polled_devices.set(running.len() as i64);
    }
}

/// What a device task is started with: the device, its tags and the
/// assignment's epoch.
type TaskConfig = (Device, Vec<Tag>, u64);

/// A device task's configuration, as a hash of its encoding: equal
/// fingerprints, equal configurations.
fn fingerprint(config: &TaskConfig) -> blake3::Hash {
    blake3::hash(&bifrost_storage::codec::encode(config))
}

/// How often `tag` is read on `device`: its scan rate, or the device's poll
/// interval when it has none (never faster than [`MIN_PERIOD`]).
pub fn tag_period(device: &Device, tag: &Tag) -> Duration {
    let ms = if tag.scan_rate_ms > 0 {
        tag.scan_rate_ms
    } else {
        device.poll_interval_ms
    };
    Duration::from_millis(ms).max(MIN_PERIOD)
}

/// The shortest and longest of the periods of `tags` on `device`; the
/// device's poll interval for both when there are no tags.
pub fn period_range(device: &Device, tags: &[Tag]) -> (Duration, Duration) {
    let periods = tags.iter().map(|t| tag_period(device, t));
    let default = Duration::from_millis(device.poll_interval_ms).max(MIN_PERIOD);
    let fastest = periods.clone().min().unwrap_or(default);
    let slowest = periods.max().unwrap_or(default);
    (fastest, slowest)
}

/// The shortest period a tag (or a device) is polled at.
const MIN_PERIOD: Duration = Duration::from_millis(10);

/// What one device task holds between polls.
struct DeviceTask {
    device: Device,
    labels: DeviceLabels,
    /// Shared with the driver call that reads them all (no copy per poll).
    specs: Arc<[TagSpec]>,
    /// The tags' ids, in `specs` order.
    tag_ids: Vec<u64>,
    /// One per tag, in `specs` order, whichever subset a poll reads.
    filters: Vec<DeadbandFilter>,
    driver: Option<Box<dyn Driver>>,
    /// A poll never takes longer than this, whatever the driver does: a
    /// wedged connection gives Bad `timeout` samples, never a stuck poller.
    poll_budget: Duration,
    metrics: Arc<Metrics>,
    /// Where to count polls in which the device did not answer, and the
    /// assignment epoch they are counted under.
    reach: Option<(Arc<Reachability>, u64)>,
    /// The fastest period of the device's tags (its breaker's first backoff
    /// is twice that).
    fastest: Duration,
    /// Whether the last poll left the device's circuit breaker open.
    breaker_was_open: bool,
}

async fn poll_device(
    (device, tags, epoch): TaskConfig,
    factory: Arc<dyn DriverFactory>,
    metrics: Arc<Metrics>,
    (outbox, admission): (mpsc::Sender<DevicePoll>, Arc<Admission>),
    reach: Arc<Reachability>,
    mut stop: watch::Receiver<bool>,
) {
    let periods: Vec<Duration> = tags.iter().map(|t| tag_period(&device, t)).collect();
    let mut task = DeviceTask::new(device, &tags, factory.as_ref(), metrics);
    task.reach = Some((reach, epoch));
    // The task holds what it needs; the tags would otherwise live as long
    // as it does (an async fn keeps its arguments to the end).
    drop(tags);
    task.connect().await;
    let mut schedule = Schedule::new(&periods, Instant::now());
    let mut gate = Gate::default();
    tracing::info!(device = %task.device.name, tags = task.specs.len(), "polling started");
    loop {
        // A task is stopped between polls, never during one.
        let Some(due_at) = schedule.next_due() else {
            let _ = stop.wait_for(|stopped| *stopped).await;
            break;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(due_at.into()) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        let due = schedule.take_due(Instant::now());
        if due.missed > 0 {
            task.metrics
                .poll_missed
                .get_or_create(&task.labels)
                .inc_by(due.missed);
        }
        if due.tags.is_empty() {
            continue;
        }
        if task.breaker_open() {
            // It did not answer its last polls: not tried until its backoff ends.
            task.metrics
                .breaker_skipped
                .get_or_create(&task.labels)
                .inc();
            continue;
        }
        if !gate.admit(admission.share()) {
            // Commits fall behind: this poll is shed, and said to be.
            task.metrics.polls_shed.inc();
            task.metrics.poll_missed.get_or_create(&task.labels).inc();
            continue;
        }
        let span = tracing::info_span!(parent: None, "poll", device = %task.device.name, tags = due.tags.len());
        let (ts_us, readings) = task.poll(&due.tags).instrument(span).await;
        if readings.is_empty() {
            continue;
        }
        let record = DevicePoll {
            device: task.device.name.clone(),
            epoch,
            ts_us,
            readings,
        };
        if outbox.send(record).await.is_err() {
            tracing::error!(device = %task.device.name, "outbox is gone; stopping");
            break;
        }
    }
    tracing::info!(device = %task.device.name, "polling stopped");
}

impl DeviceTask {
    fn new(
        device: Device,
        tags: &[Tag],
        factory: &dyn DriverFactory,
        metrics: Arc<Metrics>,
    ) -> DeviceTask {
        let specs: Arc<[TagSpec]> = tags.iter().map(TagSpec::from).collect();
        let filters = specs
            .iter()
            .map(|s| {
                DeadbandFilter::new(s.deadband.as_ref(), s.scale.as_ref(), s.data_type)
                    .unwrap_or_else(|_| DeadbandFilter::report_all())
            })
            .collect();
        let driver = factory
            .create(&device, tags)
            .inspect_err(|e| {
                tracing::warn!(device = %device.name, error = %e, "cannot poll device: bad configuration");
            })
            .ok();
        let poll_budget =
            Duration::from_millis(device.timeout_ms.max(100) * (device.retries as u64 + 1))
                + Duration::from_secs(1);
        let labels = DeviceLabels {
            device: device.name.clone(),
        };
        // Every series exists from the start, so a zero is visible as a zero.
        let _ = metrics.poll_missed.get_or_create(&labels);
        let _ = metrics.poll_errors.get_or_create(&labels);
        let _ = metrics.breaker_skipped.get_or_create(&labels);
        metrics.breaker_backoff.get_or_create(&labels).set(0);
        let fastest = period_range(&device, tags).0;
        DeviceTask {
            device,
            labels,
            specs,
            tag_ids: tags.iter().map(|t| t.id).collect(),
            filters,
            driver,
            poll_budget,
            metrics,
            reach: None,
            fastest,
            breaker_was_open: false,
        }
    }

    /// Whether the device's circuit breaker holds its polls back now.
    fn breaker_open(&self) -> bool {
        self.reach.as_ref().is_some_and(|(reach, _)| {
            reach
                .open_until(&self.device.name, Instant::now())
                .is_some()
        })
    }

    /// Counts a poll's outcome towards the device's reachability report and
    /// circuit breaker, logging and showing when the breaker opens or closes.
    fn note_reachability(&mut self, samples: &[Sample]) {
        let Some((reach, epoch)) = &self.reach else {
            return;
        };
        let opened = reach.record(
            &self.device.name,
            *epoch,
            samples,
            self.fastest,
            Instant::now(),
        );
        let backoff = self.metrics.breaker_backoff.get_or_create(&self.labels);
        match opened {
            Some(wait) => {
                tracing::warn!(device = %self.device.name, backoff = ?wait,
                    reason = %samples.first().map_or("", |s| s.quality.reason.as_str()),
                    "device does not answer: circuit breaker open, polls held back");
                backoff.set(wait.as_millis() as i64);
                self.breaker_was_open = true;
            }
            None if self.breaker_was_open => {
                tracing::info!(device = %self.device.name, "device answers again: circuit breaker closed");
                backoff.set(0);
                self.breaker_was_open = false;
            }
            None => {}
        }
    }

    async fn connect(&mut self) {
        let Some(d) = self.driver.as_mut() else {
            return;
        };
        if let Ok(Err(e)) = tokio::time::timeout(self.poll_budget, d.connect()).await {
            tracing::info!(device = %self.device.name, error = %e, "not connected yet; will retry");
        }
    }

    /// Reads the tags at `due` (indexes into `specs`) in one driver call and
    /// returns the poll's time and the readings their deadband filters let
    /// through.
    async fn poll(&mut self, due: &[usize]) -> (i64, Vec<PolledValue>) {
        // `due` is in order without repeats: as long as `specs`, it is all.
        let specs: Arc<[TagSpec]> = if due.len() == self.specs.len() {
            self.specs.clone()
        } else {
            due.iter().map(|&i| self.specs[i].clone()).collect()
        };
        let started = Instant::now();
        let ts_us = bifrost_model::now_us();
        let samples = self.read(&specs).await;
        let took = started.elapsed();
        self.note_reachability(&samples);
        let m = &self.metrics;
        m.polls.get_or_create(&self.labels).inc();
        m.poll_latency.observe(took.as_secs_f64());
        m.poll_latency_last
            .get_or_create(&self.labels)
            .set(took.as_micros() as i64);
        if samples.iter().any(|s| s.quality.level == QualityLevel::Bad) {
            m.poll_errors.get_or_create(&self.labels).inc();
        }
        let mut readings = Vec::with_capacity(samples.len());
        for (&i, sample) in due.iter().zip(samples) {
            if !self.filters[i].should_report(&sample) {
                continue;
            }
            readings.push(PolledValue {
                tag_id: self.tag_ids[i],
                ts_us: sample.source_ts_us.unwrap_or(ts_us),
                value: sample.value,
                quality: sample.quality,
            });
        }
        (ts_us, readings)
    }

    /// One sample per spec, Bad when the driver is missing or too slow.
    async fn read(&mut self, specs: &[TagSpec]) -> Vec<Sample> {
        let all_bad = |reason: &str| {
            specs
                .iter()
                .map(|_| Sample {
                    value: None,
                    quality: Quality::bad(reason),
                    source_ts_us: None,
                })
                .collect()
        };
        let Some(d) = self.driver.as_mut() else {
            return all_bad("config_error");
        };
        match tokio::time::timeout(self.poll_budget, d.read(specs)).await {
            Ok(samples) => samples,
            Err(_) => {
                tracing::warn!(device = %self.device.name, budget = ?self.poll_budget, "poll took too long");
                all_bad("timeout")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bifrost_drivers::{BrowseItem, Health, Value};
    use bifrost_model::{DataType, Deadband, Protocol};

    use super::*;

    /// Answers every tag with the value the test set for its name.
    struct FakeDriver(Arc<Mutex<HashMap<String, f64>>>);

    #[tonic::async_trait]
    impl Driver for FakeDriver {
        async fn connect(&mut self) -> bifrost_drivers::Result<()> {
            Ok(())
        }
        async fn read(&mut self, tags: &[TagSpec]) -> Vec<Sample> {
            let values = self.0.lock().unwrap();
            tags.iter()
                .map(|t| Sample {
                    value: Some(Value::Float(values[&t.name])),
                    quality: Quality::good(),
                    source_ts_us: None,
                })
                .collect()
        }
        async fn write(&mut self, _: &TagSpec, _: Value) -> bifrost_drivers::Result<Value> {
            Err(bifrost_drivers::Error::Config("read-only fake".into()))
        }
        async fn browse(&mut self, _: Option<&str>) -> bifrost_drivers::Result<Vec<BrowseItem>> {
            Ok(vec![])
        }
        fn health(&self) -> Health {
            Health::Connected
        }
    }

    struct FakeFactory(Arc<Mutex<HashMap<String, f64>>>);

    impl DriverFactory for FakeFactory {
        fn create(&self, _: &Device, _: &[Tag]) -> Result<Box<dyn Driver>, String> {
            Ok(Box::new(FakeDriver(self.0.clone())))
        }
    }

    /// (tag name, value) of a poll's readings; tag 1 is "banded", 2 "plain".
    fn reported((_, readings): &(i64, Vec<PolledValue>)) -> Vec<(&str, Option<&Value>)> {
        readings
            .iter()
            .map(|r| {
                (
                    ["?", "banded", "plain"][r.tag_id as usize],
                    r.value.as_ref(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn deadbands_stay_with_their_tags_whichever_subset_is_read() {
        let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        let banded = Tag {
            deadband: Some(Deadband {
                value: 5.0,
                percent: false,
            }),
            id: 1,
            ..Tag::new("banded", "plc", "hr:0", DataType::F64)
        };
        let plain = Tag {
            id: 2,
            ..Tag::new("plain", "plc", "hr:10", DataType::F64)
        };
        let values = Arc::new(Mutex::new(HashMap::from([
            ("banded".to_string(), 100.0),
            ("plain".to_string(), 1.0),
        ])));
        let factory = FakeFactory(values.clone());
        let metrics = Arc::new(Metrics::new());
        let mut task = DeviceTask::new(device, &[banded, plain], &factory, metrics);
        let set = |name: &str, v: f64| values.lock().unwrap().insert(name.into(), v);
        let (f, one) = (Value::Float, Value::Float(1.0));

        let r = task.poll(&[0, 1]).await;
        assert_eq!(
            reported(&r),
            [("banded", Some(&f(100.0))), ("plain", Some(&one))]
        );
        // The plain tag alone: reported (no deadband), and the banded tag's
        // reference value is untouched.
        set("banded", 102.0);
        assert_eq!(reported(&task.poll(&[1]).await), [("plain", Some(&one))]);
        // 103 is within 5 of 100, the banded tag's last reported value.
        set("banded", 103.0);
        let r = task.poll(&[0, 1]).await;
        assert_eq!(reported(&r), [("plain", Some(&one))]);
        set("banded", 106.0);
        let r = task.poll(&[0]).await;
        assert_eq!(reported(&r), [("banded", Some(&f(106.0)))]);
    }

    #[test]
    fn a_task_config_fingerprint_changes_with_any_part_of_it() {
        let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        let tags = vec![
            Tag::new("plc/a", "plc", "hr:0", DataType::U16),
            Tag::new("plc/b", "plc", "hr:1", DataType::F32),
        ];
        let config = (device, tags, 1);
        assert_eq!(fingerprint(&config), fingerprint(&config.clone()));

        let mut interval = config.clone();
        interval.0.poll_interval_ms += 1;
        let mut address = config.clone();
        address.1[1].address = "hr:2".into();
        let mut one_tag_less = config.clone();
        one_tag_less.1.pop();
        let mut epoch = config.clone();
        epoch.2 = 2;
        for changed in [interval, address, one_tag_less, epoch] {
            assert_ne!(fingerprint(&config), fingerprint(&changed), "{changed:?}");
        }
    }
}
