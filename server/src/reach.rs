//! Which nodes may poll a device, and which of them can reach it.
//!
//! * **Affinity** ([`Affinity`]): a device may name the nodes that can reach
//!   it, as device labels: `affinity.nodes=1,2` (node ids) and
//!   `affinity.KEY=VALUE` (nodes advertising the label `KEY=VALUE` with
//!   `bifrost serve --node-label KEY=VALUE`, such as `zone=cell3` or
//!   `serial=/dev/ttyUSB0`). A node is eligible when it satisfies all of
//!   them; a device without such labels may run anywhere.
//! * **Reports** ([`Reachability`]): each node counts, per device it polls,
//!   the polls in a row in which no tag could be read for a connection
//!   reason (`comm_failure`, `timeout`, `not_connected`: the device did not
//!   answer, which a device exception never is). The leader's liveness
//!   probe carries the report.
//! * **Avoidance** ([`Avoidance`], the leader's): a node that failed
//!   `after` polls in a row is avoided for that device for a hold time that
//!   doubles with each failure (30 s, 60 s, ... up to 16 times the first),
//!   so a device reachable from nowhere moves rarely, not at every poll.
//!   The strikes are forgiven once the node polls the device without
//!   failing.
//! * **Circuit breaker** ([`BreakerOptions`], the polling node's): after
//!   `after_polls` such polls in a row the device is not polled for a
//!   backoff (twice its fastest period, at least a second), then tried once;
//!   each further failure doubles the backoff up to `max`, and one answer
//!   closes the breaker. So a device that keeps timing out costs its node
//!   (and the devices sharing its connection) one timeout per backoff, not
//!   one per poll. Its state is in the reports, `Status.failing_devices`
//!   and the `bifrost_device_breaker_*` metrics.
//!
//! Pure bookkeeping: no Raft, no I/O; `assign` and `poller` use it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bifrost_drivers::Sample;
use bifrost_storage::{Device, QualityLevel};

const NODES_LABEL: &str = Device::AFFINITY_NODES_LABEL;
const LABEL_PREFIX: &str = Device::AFFINITY_PREFIX;

/// Where a device may be polled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Affinity {
    /// The node ids allowed; `None` for any.
    pub nodes: Option<BTreeSet<u64>>,
    /// Node labels required (`zone` -> `cell3`).
    pub labels: BTreeMap<String, String>,
}

impl Affinity {
    /// The affinity a device's labels give, or what is wrong with them.
    pub fn of(d: &Device) -> Result<Affinity, String> {
        let mut a = Affinity::default();
        for (key, value) in &d.labels {
            let Some(name) = key.strip_prefix(LABEL_PREFIX) else {
                continue;
            };
            if key == NODES_LABEL {
                a.nodes = Some(parse_node_ids(value).map_err(|e| {
                    format!("device '{}': label {NODES_LABEL}={value:?}: {e}", d.name)
                })?);
            } else {
                check_label(name, value)
                    .map_err(|e| format!("device '{}': label {key}: {e}", d.name))?;
                a.labels.insert(name.to_string(), value.clone());
            }
        }
        Ok(a)
    }

    /// Whether any node may poll the device.
    pub fn is_any(&self) -> bool {
        self.nodes.is_none() && self.labels.is_empty()
    }

    /// Whether node `id`, advertising `labels`, may poll the device.
    pub fn allows(&self, id: u64, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.nodes.as_ref().is_some_and(|n| !n.contains(&id)) {
            return false;
        }
        self.labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }

    /// `nodes 1,2 and zone=cell3`, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = &self.nodes {
            let ids: Vec<String> = n.iter().map(u64::to_string).collect();
            parts.push(format!("nodes {}", ids.join(",")));
        }
        parts.extend(self.labels.iter().map(|(k, v)| format!("{k}={v}")));
        if parts.is_empty() {
            "any node".into()
        } else {
            parts.join(" and ")
        }
    }
}

/// `1,2,3` into node ids (at least one, each above 0).
pub fn parse_node_ids(s: &str) -> Result<BTreeSet<u64>, String> {
    let mut ids = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<u64>() {
            Ok(id) if id > 0 => {
                ids.insert(id);
            }
            _ => return Err(format!("'{part}' is not a node id (a number above 0)")),
        }
    }
    if ids.is_empty() {
        return Err("names no node id (expected e.g. 1,2)".into());
    }
    Ok(ids)
}

/// `KEY=VALUE`, as `--node-label` takes it.
pub fn parse_node_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("node label '{s}': expected KEY=VALUE (zone=cell3)"))?;
    check_label(k, v).map_err(|e| format!("node label '{s}': {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

fn check_label(key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    if !key_ok {
        return Err(format!(
            "key '{key}' must be letters, digits and _-./ (not empty)"
        ));
    }
    if key == "nodes" {
        return Err("'nodes' is reserved for node ids (affinity.nodes=1,2)".into());
    }
    if value.is_empty() || value.chars().any(char::is_control) {
        return Err(format!("value of '{key}' must be non-empty printable text"));
    }
    Ok(())
}

/// A node's report that it cannot reach a device it polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreachable {
    pub device: String,
    /// The assignment epoch the device was polled under.
    pub epoch: u64,
    /// Polls in a row in which nothing could be read.
    pub failed_polls: u32,
    /// The last poll's reason (`timeout`, `comm_failure`, ...).
    pub reason: String,
    /// The circuit breaker's backoff; 0 while it is closed (every poll
    /// is tried).
    pub backoff_ms: u64,
    /// How long until the next poll is tried, while the breaker is open.
    pub retry_in_ms: u64,
}

/// When a node stops polling a device that does not answer (see the
/// module's doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Failed polls in a row that open the breaker; 0: never.
    pub after_polls: u32,
    /// The longest backoff.
    pub max: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions {
            after_polls: 3,
            max: Duration::from_secs(30),
        }
    }
}

/// A device failing on this node: its report and its breaker.
struct Failing {
    report: Unreachable,
    backoff: Duration,
    open_until: Option<Instant>,
}

/// This node's count of failed polls per device it polls, with each one's
/// circuit breaker, and (on the leader) the last reports of every member.
#[derive(Default)]
pub struct Reachability {
    breaker: BreakerOptions,
    failing: Mutex<HashMap<String, Failing>>,
    /// Every member's reports as the leader last heard them.
    cluster: Mutex<BTreeMap<u64, Vec<Unreachable>>>,
}

/// Reasons that mean the device did not answer at all.
const CONNECTION_REASONS: [&str; 3] = ["comm_failure", "timeout", "not_connected"];

/// The shortest backoff of an open breaker.
const MIN_BACKOFF: Duration = Duration::from_secs(1);

impl Reachability {
    pub fn new(breaker: BreakerOptions) -> Reachability {
        Reachability {
            breaker,
            ..Default::default()
        }
    }

    /// Counts one poll of `device` (under assignment `epoch`, polled every
    /// `period` at the fastest) that gave `samples` at `now`. Returns the
    /// backoff when this poll opened (or reopened) the device's breaker.
    pub fn record(
        &self,
        device: &str,
        epoch: u64,
        samples: &[Sample],
        period: Duration,
        now: Instant,
    ) -> Option<Duration> {
        let unreachable = connection_failure(samples);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let Some(reason) = unreachable else {
            failing.remove(device);
            return None;
        };
        let entry = failing
            .entry(device.to_string())
            .or_insert_with(|| Failing {
                report: Unreachable {
                    device: device.to_string(),
                    epoch,
                    failed_polls: 0,
                    reason: String::new(),
                    backoff_ms: 0,
                    retry_in_ms: 0,
                },
                backoff: Duration::ZERO,
                open_until: None,
            });
        if entry.report.epoch != epoch {
            entry.report.epoch = epoch;
            entry.report.failed_polls = 0;
        }
        entry.report.failed_polls = entry.report.failed_polls.saturating_add(1);
        entry.report.reason = reason;
        let b = self.breaker;
        if b.after_polls == 0 || entry.report.failed_polls < b.after_polls {
            return None;
        }
        entry.backoff = match entry.backoff.is_zero() {
            true => (period * 2).max(MIN_BACKOFF),
            false => entry.backoff * 2,
        }
        .min(b.max);
        entry.open_until = Some(now + entry.backoff);
        Some(entry.backoff)
    }

    /// Until when `device`'s breaker is open, if it is at `now`: no poll
    /// before then.
    pub fn open_until(&self, device: &str, now: Instant) -> Option<Instant> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing
            .get(device)
            .and_then(|f| f.open_until)
            .filter(|t| *t > now)
    }

    /// Forgets a device this node no longer polls.
    pub fn forget(&self, device: &str) {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device);
    }

    /// The devices this node polls but cannot reach.
    pub fn reports(&self) -> Vec<Unreachable> {
        let failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut v: Vec<Unreachable> = failing
            .values()
            .map(|f| {
                let retry_in = f.open_until.map_or(Duration::ZERO, |t| t - now.min(t));
                Unreachable {
                    backoff_ms: f.open_until.map_or(0, |_| f.backoff.as_millis() as u64),
                    retry_in_ms: retry_in.as_millis() as u64,
                    ..f.report.clone()
                }
            })
            .collect();
        v.sort_by(|a, b| a.device.cmp(&b.device));
        v
    }

    /// The leader keeps every member's last reports (its own among them).
    pub fn set_cluster(&self, reports: BTreeMap<u64, Vec<Unreachable>>) {
        *self.cluster.lock().unwrap_or_else(|e| e.into_inner()) = reports;
    }

    /// Failing devices by node: every member's as the leader last heard
    /// them when `leader`, else this node's (`me`) own.
    pub fn view(&self, me: u64, leader: bool) -> Vec<(u64, Unreachable)> {
        if !leader {
            return self.reports().into_iter().map(|u| (me, u)).collect();
        }
        let cluster = self.cluster.lock().unwrap_or_else(|e| e.into_inner());
        cluster
            .iter()
            .flat_map(|(id, v)| v.iter().map(|u| (*id, u.clone())))
            .collect()
    }
}

/// The reason when every sample failed for a connection reason.
fn connection_failure(samples: &[Sample]) -> Option<String> {
    let failed = |s: &Sample| {
        s.quality.level == QualityLevel::Bad
            && CONNECTION_REASONS
                .iter()
                .any(|r| s.quality.reason.starts_with(r))
    };
    match samples.first() {
        Some(first) if samples.iter().all(failed) => Some(first.quality.reason.clone()),
        _ => None,
    }
}

/// The leader's memory of which node could not reach which device.
#[derive(Default)]
pub struct Avoidance {
    /// (device, node) -> (failures so far, avoided until).
    strikes: HashMap<(String, u64), (u32, Instant)>,
}

/// How the leader acts on reports.
#[derive(Clone, Copy, Debug)]
pub struct FailoverOptions {
    /// Failed polls in a row before a device leaves its node.
    pub after_polls: u32,
    /// How long a node is avoided for a device after its first failure.
    pub hold: Duration,
}

impl Default for FailoverOptions {
    fn default() -> Self {
        FailoverOptions {
            after_polls: 3,
            hold: Duration::from_secs(30),
        }
    }
}

/// The longest hold is this many times the first.
const MAX_HOLD_FACTOR: u32 = 16;

impl Avoidance {
    /// Takes `node`'s reports. `owner_epoch` gives the current assignment
    /// of a device: a report about an older epoch, or about a device the
    /// node no longer owns, is stale. Devices `node` owns and does not
    /// report are reachable from it: their strikes are forgiven.
    pub fn note(
        &mut self,
        node: u64,
        reports: &[Unreachable],
        owned: &BTreeMap<String, u64>,
        opts: FailoverOptions,
        now: Instant,
    ) {
        let reported: BTreeSet<&str> = reports.iter().map(|r| r.device.as_str()).collect();
        self.strikes.retain(|(d, n), _| {
            *n != node || !owned.contains_key(d) || reported.contains(d.as_str())
        });
        for r in reports {
            if owned.get(&r.device) != Some(&r.epoch) || r.failed_polls < opts.after_polls {
                continue;
            }
            let key = (r.device.clone(), node);
            let (count, until) = self.strikes.entry(key).or_insert((0, now));
            if *until > now {
                continue; // Already avoided for this failure.
            }
            *count += 1;
            let factor = 2u32.saturating_pow(*count - 1).min(MAX_HOLD_FACTOR);
            *until = now + opts.hold * factor;
            tracing::warn!(
                device = %r.device, node, reason = %r.reason, failed_polls = r.failed_polls,
                hold = ?opts.hold * factor, "node cannot reach device; moving it if another node may"
            );
        }
    }

    /// The (device, node) pairs avoided at `now`.
    pub fn avoided(&self, now: Instant) -> BTreeSet<(String, u64)> {
        self.strikes
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Forgets nodes that are no longer members.
    pub fn retain_members(&mut self, members: &BTreeSet<u64>) {
        self.strikes.retain(|(_, n), _| members.contains(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_model::Protocol;
    use bifrost_storage::Quality;

    fn device(labels: &[(&str, &str)]) -> Device {
        let mut d = Device::new("plc", Protocol::ModbusTcp, "h:502");
        for (k, v) in labels {
            d.labels.insert(k.to_string(), v.to_string());
        }
        d
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn affinity_by_node_ids_and_labels() {
        let a = Affinity::of(&device(&[
            ("affinity.nodes", "1, 2"),
            ("affinity.zone", "cell3"),
            ("modbus.max_gap", "0"),
        ]))
        .unwrap();
        let cell3 = labels(&[("zone", "cell3"), ("serial", "/dev/ttyUSB0")]);
        assert!(a.allows(1, Some(&cell3)));
        assert!(!a.allows(3, Some(&cell3)), "node 3 is not listed");
        assert!(!a.allows(2, Some(&labels(&[("zone", "cell4")]))));
        assert!(!a.allows(2, None), "a node with no labels lacks zone");
        assert_eq!(a.describe(), "nodes 1,2 and zone=cell3");
        let any = Affinity::of(&device(&[])).unwrap();
        assert!(any.is_any() && any.allows(7, None));
    }

    #[test]
    fn bad_affinity_labels_say_what_and_where() {
        let e = Affinity::of(&device(&[("affinity.nodes", "1,x")])).unwrap_err();
        assert!(
            e.contains("device 'plc'") && e.contains("'x' is not a node id"),
            "{e}"
        );
        let e = Affinity::of(&device(&[("affinity.nodes", "")])).unwrap_err();
        assert!(e.contains("names no node id"), "{e}");
        let e = Affinity::of(&device(&[("affinity.zone", "")])).unwrap_err();
        assert!(
            e.contains("affinity.zone") && e.contains("non-empty"),
            "{e}"
        );
        assert!(parse_node_label("zone").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_node_label("nodes=1")
            .unwrap_err()
            .contains("reserved"));
        assert_eq!(
            parse_node_label("serial=/dev/ttyUSB0").unwrap(),
            ("serial".into(), "/dev/ttyUSB0".into())
        );
    }

    fn sample(level: QualityLevel, reason: &str) -> Sample {
        Sample {
            value: None,
            quality: Quality {
                level,
                reason: reason.into(),
            },
            source_ts_us: None,
        }
    }

    #[test]
    fn only_polls_where_nothing_answered_count_as_unreachable() {
        let r = Reachability::new(BreakerOptions {
            after_polls: 0,
            ..Default::default()
        });
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let record = |d: &str, epoch: u64, samples: &[Sample]| {
            assert_eq!(r.record(d, epoch, samples, second, now), None);
        };
        let timeout = [sample(QualityLevel::Bad, "timeout")];
        record("a", 5, &timeout);
        record("a", 5, &timeout);
        assert_eq!(r.reports()[0].failed_polls, 2);
        // A device exception is an answer: the device is reachable.
        let answered = [
            sample(QualityLevel::Bad, "timeout"),
            sample(QualityLevel::Bad, "device_exception:2"),
        ];
        record("a", 5, &answered);
        assert!(r.reports().is_empty());
        // A new epoch starts the count again.
        record("a", 5, &timeout);
        record("a", 6, &[sample(QualityLevel::Bad, "comm_failure")]);
        let rep = &r.reports()[0];
        assert_eq!(
            (rep.epoch, rep.failed_polls, rep.reason.as_str()),
            (6, 1, "comm_failure")
        );
        r.forget("a");
        assert!(r.reports().is_empty());
    }

    #[test]
    fn the_breaker_opens_after_failed_polls_doubles_its_backoff_and_closes_on_an_answer() {
        let r = Reachability::new(BreakerOptions {
            after_polls: 3,
            max: Duration::from_secs(5),
        });
        let (t0, period) = (Instant::now(), Duration::from_millis(300));
        let timeout = [sample(QualityLevel::Bad, "timeout")];
        assert_eq!(r.record("a", 1, &timeout, period, t0), None);
        assert_eq!(r.record("a", 1, &timeout, period, t0), None);
        assert_eq!(r.open_until("a", t0), None, "two failures keep it closed");
        // The third opens it for twice the period, at least a second.
        let first = r.record("a", 1, &timeout, period, t0);
        assert_eq!(first, Some(Duration::from_secs(1)));
        assert_eq!(r.open_until("a", t0), Some(t0 + Duration::from_secs(1)));
        assert_eq!(r.open_until("a", t0 + Duration::from_secs(1)), None);
        let rep = &r.reports()[0];
        assert_eq!((rep.failed_polls, rep.backoff_ms), (3, 1000));
        assert!(rep.retry_in_ms <= 1000, "{rep:?}");
        // Each failed trial doubles it, up to the maximum.
        let trials: Vec<_> = (0..4)
            .map(|_| r.record("a", 1, &timeout, period, t0).unwrap())
            .collect();
        assert_eq!(trials, [2, 4, 5, 5].map(Duration::from_secs));
        // One answer closes it and ends the report.
        let good = [sample(QualityLevel::Good, "")];
        assert_eq!(r.record("a", 1, &good, period, t0), None);
        assert_eq!(r.open_until("a", t0), None);
        assert!(r.reports().is_empty());
        // A slow device's first backoff is twice its period.
        for _ in 0..3 {
            r.record("slow", 1, &timeout, Duration::from_secs(10), t0);
        }
        assert_eq!(r.reports()[0].backoff_ms, 5000, "capped at the maximum");
    }

    #[test]
    fn the_leader_shows_every_members_reports_and_a_follower_its_own() {
        let r = Reachability::default();
        let t0 = Instant::now();
        r.record(
            "mine",
            1,
            &[sample(QualityLevel::Bad, "timeout")],
            Duration::from_secs(1),
            t0,
        );
        assert_eq!(r.view(2, false).len(), 1);
        assert_eq!(r.view(2, false)[0].0, 2);
        assert!(r.view(2, true).is_empty(), "nothing heard yet");
        r.set_cluster(BTreeMap::from([
            (1, vec![report("theirs", 4, 3)]),
            (2, r.reports()),
        ]));
        let seen: Vec<(u64, String)> = r
            .view(2, true)
            .into_iter()
            .map(|(n, u)| (n, u.device))
            .collect();
        assert_eq!(seen, [(1, "theirs".to_string()), (2, "mine".to_string())]);
    }

    fn report(device: &str, epoch: u64, failed_polls: u32) -> Unreachable {
        Unreachable {
            device: device.into(),
            epoch,
            failed_polls,
            reason: "timeout".into(),
            backoff_ms: 0,
            retry_in_ms: 0,
        }
    }

    #[test]
    fn a_node_is_avoided_after_enough_failures_for_a_doubling_hold() {
        let opts = FailoverOptions {
            after_polls: 3,
            hold: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let owned = BTreeMap::from([("a".to_string(), 7u64)]);
        let mut av = Avoidance::default();
        av.note(1, &[report("a", 7, 2)], &owned, opts, t0);
        assert!(av.avoided(t0).is_empty(), "two failures are not enough");
        av.note(1, &[report("a", 6, 9)], &owned, opts, t0);
        assert!(
            av.avoided(t0).is_empty(),
            "a stale epoch's report is ignored"
        );
        av.note(1, &[report("a", 7, 3)], &owned, opts, t0);
        let pair = ("a".to_string(), 1u64);
        assert!(av.avoided(t0).contains(&pair));
        assert!(!av.avoided(t0 + Duration::from_secs(11)).contains(&pair));
        // Failing again after the hold: avoided twice as long.
        let t1 = t0 + Duration::from_secs(11);
        av.note(1, &[report("a", 7, 40)], &owned, opts, t1);
        assert!(av.avoided(t1 + Duration::from_secs(19)).contains(&pair));
        assert!(!av.avoided(t1 + Duration::from_secs(21)).contains(&pair));
        // Polled fine: forgiven.
        av.note(1, &[], &owned, opts, t1);
        assert!(av.avoided(t1).is_empty());
    }
}
