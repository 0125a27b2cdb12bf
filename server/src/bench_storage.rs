//! `bifrost bench-storage`: bytes on disk per reading, per signal kind.
//!
//! For each of the simulator's signal kinds (sine f32, ramp u16, counter
//! u32, random u16) a fresh node stores readings of `--tags` tags polled
//! once a second (1% of them arriving up to a minute late) along the path a
//! polled reading takes on one node: outbox record, Raft log entry, apply
//! through the real state machine, outbox record removed once applied. Then
//! the state is flushed and both databases are compacted, and the bench
//! prints bytes per reading in the history (the whole state database), in
//! the Raft log (before a snapshot lets it be purged) and in the outbox
//! (while a record waits). No network and no consensus round trips: this
//! measures storage, not replication.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use bifrost_model::{DataType, Device, Protocol, Quality, Tag, Value};
use bifrost_raft::{Command, Entry, LogId, StateMachine};
use bifrost_storage::codec::encode;
use bifrost_storage::{FamilyBytes, NodeStore, StateStore};
use openraft::{CommittedLeaderId, EntryPayload};

use bifrost_model::poll::{DevicePoll, PolledValue};

#[derive(clap::Args, Debug)]
pub struct BenchStorageArgs {
    /// Readings in all, shared equally by the four signal kinds.
    #[arg(long, default_value_t = 10_000_000)]
    pub readings: u64,
    /// Tags per signal kind.
    #[arg(long, default_value_t = 1_000)]
    pub tags: u64,
    /// Where the nodes' data go (a temporary directory if not given; kept
    /// when given).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Sine,
    Ramp,
    Counter,
    Random,
}

impl Signal {
    const ALL: [Signal; 4] = [Signal::Sine, Signal::Ramp, Signal::Counter, Signal::Random];

    fn name(self) -> &'static str {
        match self {
            Signal::Sine => "sine",
            Signal::Ramp => "ramp",
            Signal::Counter => "counter",
            Signal::Random => "random",
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Signal::Sine => DataType::F32,
            Signal::Ramp | Signal::Random => DataType::U16,
            Signal::Counter => DataType::U32,
        }
    }

    /// The simulator's value of tag `tag` at second `t` (see
    /// `bifrost_drivers::sim`): sine of amplitude 100 and period 60 s with
    /// a phase per tag, ramp 0-999 at ten steps a second, a counter, and
    /// uniform 0-999.
    fn value(self, tag: u64, t: u64, rng: &mut u64) -> Value {
        match self {
            Signal::Sine => {
                let x = t as f64 / 60.0 + (tag % 360) as f64 / 360.0;
                Value::Float((100.0 * (std::f64::consts::TAU * x).sin()) as f32 as f64)
            }
            Signal::Ramp => Value::Int(((t * 10 + tag * 37) % 1000) as i64),
            Signal::Counter => Value::Int((t + 1) as i64),
            Signal::Random => Value::Int((splitmix(rng) % 1000) as i64),
        }
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Tags per simulated device (one outbox record per device and poll).
const TAGS_PER_DEVICE: usize = 10;

/// Bytes per reading of one signal kind.
struct Figures {
    readings: u64,
    history: u64,
    log: u64,
    /// Outbox bytes summed over records, each measured while queued.
    outbox: u64,
    took: std::time::Duration,
}

pub async fn run(args: BenchStorageArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let root = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let per_kind = args.readings / 4;
    println!(
        "storage bench: {} readings per kind, {} tags per kind, polled every second, 1% late, in {}",
        per_kind,
        args.tags,
        root.display()
    );
    let (mut readings, mut bytes) = (0, 0);
    for signal in Signal::ALL {
        let dir = root.join(signal.name());
        let f = one_kind(&dir, signal, args.tags, per_kind).await?;
        let per = |b: u64| b as f64 / f.readings.max(1) as f64;
        println!(
            "{:<8} {} readings: history {:.2} B/reading, log {:.2} B/reading, outbox {:.2} B/reading while queued, {:.0} readings/s",
            signal.name(),
            f.readings,
            per(f.history),
            per(f.log),
            per(f.outbox),
            f.readings as f64 / f.took.as_secs_f64()
        );
        readings += f.readings;
        bytes += f.history;
    }
    println!(
        "storage: {readings} readings, {:.2} B/reading (history, all kinds)",
        bytes as f64 / readings.max(1) as f64
    );
    Ok(())
}

fn total(families: &[FamilyBytes], only: Option<&str>) -> u64 {
    families
        .iter()
        .filter(|f| only.is_none_or(|o| o == f.family))
        .map(|f| f.bytes)
        .sum()
}

async fn one_kind(dir: &Path, signal: Signal, tags: u64, readings: u64) -> anyhow::Result<Figures> {
    let node = NodeStore::open(&dir.join("node")).context("opening the node database")?;
    let state = StateStore::open(&dir.join("state")).context("opening the state")?;
    let mut sm = StateMachine::new(state.clone(), &dir.join("snapshots"))?;
    let mut log = Log {
        index: 0,
        node: node.clone(),
    };
    let names = create_tags(&mut sm, &mut log, signal, tags).await?;
    let ids: Vec<u64> = names
        .iter()
        .map(|n| state.tag(n).map(|t| t.id).context("a tag just created"))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let seconds = readings / tags.max(1);
    let mut late: Vec<(u64, usize, PolledValue)> = Vec::new();
    let mut rng = 7u64;
    let mut outbox_bytes = 0;
    for t in 0..=seconds {
        let last_round = t == seconds;
        let ts_us = 1_700_000_000_000_000 + (t * 1_000_000) as i64;
        // Devices of ten tags each, polled once a second.
        let mut polls: Vec<DevicePoll> = (0..ids.len().div_ceil(TAGS_PER_DEVICE))
            .map(|d| DevicePoll {
                device: format!("bench{d}"),
                epoch: 1,
                ts_us,
                readings: Vec::new(),
            })
            .collect();
        for (i, id) in ids.iter().enumerate().filter(|_| !last_round) {
            let r = PolledValue {
                tag_id: *id,
                ts_us,
                value: Some(signal.value(i as u64, t, &mut rng)),
                quality: Quality::good(),
            };
            if splitmix(&mut rng).is_multiple_of(100) {
                late.push((t + 1 + splitmix(&mut rng) % 60, i, r));
            } else {
                polls[i / TAGS_PER_DEVICE].readings.push(r);
            }
        }
        // A late reading comes with a later poll of its device, keeping its
        // time; in the last round every one still waiting arrives.
        let (due, later): (Vec<_>, Vec<_>) = late
            .into_iter()
            .partition(|(at, _, _)| *at <= t || last_round);
        late = later;
        for (_, i, r) in due {
            polls[i / TAGS_PER_DEVICE].readings.push(r);
        }
        let records: Vec<Vec<u8>> = polls.iter().map(DevicePoll::encode).collect();
        let first = node.outbox_push(&records)?;
        // The outbox holds these records alone: the last ones went once applied.
        outbox_bytes += node.outbox_stats().bytes;
        let last = first + records.len() as u64 - 1;
        let sequenced = (first..=last).zip(records).collect();
        let cmd = Command::PolledRecords {
            origin: "1-bench".into(),
            floor: first,
            records: sequenced,
        };
        log.apply(&mut sm, cmd).await?;
        node.outbox_remove_upto(last)?;
    }
    let took = started.elapsed();
    node.sync()?;
    node.compact_disk()?;
    let log_bytes = total(&node.disk_usage()?, Some("raft_log"));
    state.compact_disk()?;
    let families = state.disk_usage()?;
    let history = total(&families, None);
    let biggest: Vec<String> = {
        let mut f = families.clone();
        f.sort_by_key(|f| std::cmp::Reverse(f.bytes));
        f.iter()
            .take(4)
            .map(|f| format!("{} {}", f.family, f.bytes))
            .collect()
    };
    println!(
        "{:<8} state database bytes: {}",
        signal.name(),
        biggest.join(", ")
    );
    Ok(Figures {
        readings: state.revision(),
        history,
        log: log_bytes,
        outbox: outbox_bytes,
        took,
    })
}

/// The Raft log of the bench node: entries appended as the log store
/// appends them, then applied.
struct Log {
    index: u64,
    node: NodeStore,
}

impl Log {
    async fn apply(&mut self, sm: &mut StateMachine, cmd: Command) -> anyhow::Result<()> {
        use openraft::storage::RaftStateMachine;
        self.index += 1;
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(cmd),
        };
        self.node.append_log([(self.index, encode(&entry))])?;
        let out = sm.apply(vec![entry]).await?;
        if let Some(Err(e)) = out.first().map(|r| &r.result) {
            anyhow::bail!("log entry {} was refused: {e}", self.index);
        }
        Ok(())
    }
}

async fn create_tags(
    sm: &mut StateMachine,
    log: &mut Log,
    signal: Signal,
    tags: u64,
) -> anyhow::Result<Vec<String>> {
    let device = Device::new("bench", Protocol::ModbusTcp, "127.0.0.1:502");
    let names: Vec<String> = (0..tags)
        .map(|i| format!("bench/{}{i}", signal.name()))
        .collect();
    let tag_list = names
        .iter()
        .map(|n| Tag::new(n, "bench", "hr:0", signal.data_type()))
        .collect();
    log.apply(
        sm,
        Command::Import {
            devices: vec![device],
            tags: tag_list,
        },
    )
    .await?;
    Ok(names)
}
