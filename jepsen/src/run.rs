//! `bifrost-jepsen run`: one whole fault-injection run, from an empty
//! machine to a verdict.
//!
//! 1. **Plan.** The seed (random unless given) and the fault schedule are
//!    fixed and printed before anything starts, so that a run can be
//!    replayed: the same seed gives the same schedule ([`plan`]), and the
//!    printed schedule can be given back as it is (`--schedule FILE`).
//! 2. **Set up.** A compose project of its own (unique name and /24, TLS
//!    on every port with a CA of its own: [`Compose::target`] is how every
//!    client of the run connects), healthy nodes that agree on a leader,
//!    then each workload's setup:
//!    the set workload's device and tags; for readings, the simulated plant
//!    imported and polled.
//! 3. **Run.** The workloads run concurrently for `--time` while a nemesis
//!    thread applies the schedule's faults at their times (looking up the
//!    leader when a fault is aimed at it). Each fault is recorded twice: as
//!    a window (start, end, label) for the plots and the readings checker,
//!    and as events of the `nemesis` workload in the history, so that the
//!    history alone tells what happened when. The checkers read their own
//!    workload's events only ([`crate::workload::history_of`]) and the
//!    plots only client operations, so the nemesis events are ignored by
//!    both. Nemesis events use the history format as it is: `f` is
//!    `write` (the nemesis changes the world), `key` the verb (`kill`,
//!    `partition`, `heal`, ...), `value` the step as scheduled on `invoke`
//!    and as done on `ok` (`partition isolate-leader (n2)`); a Docker or
//!    iptables command that failed completes as `info` with its error.
//! 4. **Heal and check.** At the end of `--time` everything is healed
//!    (rules removed, nodes thawed and started), the cluster must recover
//!    (every node healthy, one leader, everything committed applied
//!    everywhere: the `recovery` verdict), polling is stopped and the
//!    outboxes drain, the final reads are taken, the replica check compares
//!    every node's history (the `replicas` verdict), and every checker
//!    runs. The readings checker is told of every kill, so that it allows
//!    the one in-flight poll a killed owner may lose.
//! 5. **Results.** The folder gets the history, the verdicts, the summary,
//!    the plots, the seed and schedule, the harness's own log and each
//!    container's log (see the README for the layout). The cluster is taken
//!    down unless `keep` is set.
//!
//! Blocking work (Docker and iptables commands) runs on plain threads;
//! the workloads run on a tokio runtime of their own. A run is a library
//! call ([`run`]) so that the smoke test and the binary share it.

pub mod cluster;
pub mod plan;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::json;

use crate::check::readings::{CounterOptions, OwnerKill};
use crate::check::{self, CheckAllOptions, Summary, Validity, Verdict};
use crate::docker::{self, Compose, ComposeOptions};
use crate::history::{EventType, Function, Value};
use crate::nemesis::{self, Fault, FaultKind, Nemesis, PartitionSpec, Schedule};
use crate::plot::FaultWindow;
use crate::target::Target;
use crate::workload::{self, readings, register, set, watch, Record, Recorder};
pub use plan::{Plan, Timing, Workload};

/// The `workload` of the nemesis's events in the history.
pub const NEMESIS: &str = "nemesis";

/// Exit status of a run that could not be set up (or was given bad
/// arguments); 0, 1 and 2 are [`Summary::exit_code`].
pub const EXIT_SETUP: i32 = 3;

/// What stops a run before it has a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad options, or the cluster could not be brought to a state to test.
    #[error("run: {0}")]
    Setup(String),
    #[error(transparent)]
    Docker(#[from] docker::Error),
    #[error(transparent)]
    Workload(#[from] workload::Error),
    #[error("run: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long the workloads run and faults are injected.
    pub time: Duration,
    /// `None`: a random one (printed).
    pub seed: Option<u64>,
    /// Nemesis kinds; each occurs at least once. Empty: no faults.
    pub kinds: Vec<FaultKind>,
    pub workloads: Vec<Workload>,
    /// Run this schedule instead of drawing one (a replay).
    pub schedule: Option<Schedule>,
    /// Fault timing; `None`: [`Timing::for_run`].
    pub timing: Option<Timing>,
    /// Docker image of the nodes and the simulator.
    pub image: String,
    pub compose_file: PathBuf,
    /// The results folder (must be empty or absent); `None`:
    /// `jepsen-results/<UTC time>-seed-<seed>` under the working directory.
    pub results: Option<PathBuf>,
    /// Leave the cluster running afterwards.
    pub keep: bool,
    /// The plant the readings workload imports, and how many of its devices
    /// (all if `None`).
    pub plant: PathBuf,
    pub plant_devices: Option<usize>,
    /// How long the cluster may take to recover once everything is healed.
    pub recovery_timeout: Duration,
    /// On Ctrl-C, heal the network, take the cluster down (unless `keep`)
    /// and exit 130. For the binary; a test leaves signals alone.
    pub handle_interrupt: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            time: Duration::from_secs(60),
            seed: None,
            kinds: FaultKind::ALL.to_vec(),
            workloads: Workload::ALL.to_vec(),
            schedule: None,
            timing: None,
            image: docker::DEFAULT_IMAGE.to_string(),
            compose_file: docker::default_compose_file(),
            results: None,
            keep: false,
            plant: cluster::default_plant(),
            plant_devices: None,
            recovery_timeout: Duration::from_secs(120),
            handle_interrupt: false,
        }
    }
}

/// One schedule step as carried out.
#[derive(Clone, Debug, Serialize)]
pub struct AppliedFault {
    /// When the schedule had it, seconds after the workloads started.
    pub scheduled_s: f64,
    /// The step as scheduled.
    pub step: String,
    /// What was done (`partition isolate-leader (n2)`), or the error.
    pub done: String,
    pub ok: bool,
    /// The command's start and end on the history's clock (µs).
    pub start_us: u64,
    pub end_us: u64,
}

/// Events of one workload by type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpCounts {
    pub invoked: u64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

impl fmt::Display for OpCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ok {}, fail {}, info {})",
            self.invoked, self.ok, self.fail, self.info
        )
    }
}

/// Invocations and completions per workload (the nemesis included).
pub fn operation_counts(records: &[Record]) -> BTreeMap<String, OpCounts> {
    let mut out: BTreeMap<String, OpCounts> = BTreeMap::new();
    for r in records {
        let c = out.entry(r.workload.clone()).or_default();
        match r.kind {
            EventType::Invoke => c.invoked += 1,
            EventType::Ok => c.ok += 1,
            EventType::Fail => c.fail += 1,
            EventType::Info => c.info += 1,
        }
    }
    out
}

/// What a run did and found.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    pub plan: Plan,
    pub results: PathBuf,
    pub project: String,
    pub verdicts: Vec<Verdict>,
    pub summary: Summary,
    pub operations: BTreeMap<String, OpCounts>,
    pub faults: Vec<AppliedFault>,
    pub windows: Vec<FaultWindow>,
    /// Kinds of fault carried out successfully, and how often.
    pub kinds_applied: BTreeMap<FaultKind, u64>,
    /// Things that went wrong without stopping the run.
    pub notes: Vec<String>,
}

impl RunReport {
    /// 0 valid, 1 invalid, 2 unknown.
    pub fn exit_code(&self) -> i32 {
        self.summary.exit_code()
    }
}

/// The harness's own log: stdout, and `run.log` in the results folder.
struct Log {
    file: Mutex<Option<File>>,
}

impl Log {
    fn create(path: &Path) -> Log {
        Log {
            file: Mutex::new(File::create(path).ok()),
        }
    }

    fn say(&self, msg: impl fmt::Display) {
        let msg = msg.to_string();
        println!("{msg}");
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "{msg}");
        }
    }
}

/// `YYYYMMDDTHHMMSSZ`, for folder names.
fn utc_stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// Runs one whole run (see the module docs). `Err` is a setup failure
/// (exit [`EXIT_SETUP`]); a run that got as far as checking returns its
/// report whatever the verdict.
pub fn run(opts: &RunOptions) -> Result<RunReport> {
    let seed = opts.seed.unwrap_or_else(|| rand::random::<u32>() as u64);
    let nodes: Vec<u64> = (1..=3).collect();
    let timing = opts
        .timing
        .unwrap_or_else(|| Timing::for_run(opts.time, opts.kinds.len()));
    let plan = match &opts.schedule {
        Some(s) => Plan {
            schedule: s.clone(),
            generator_seed: s.seed.unwrap_or(seed),
            attempts: 0,
            timing,
        },
        None => plan::plan(seed, &nodes, opts.time, &opts.kinds, timing).map_err(Error::Setup)?,
    };
    if let Some(last) = plan.schedule.steps.last() {
        if last.at > opts.time {
            return Err(Error::Setup(format!(
                "the schedule runs to {:.3}s, past --time {}s",
                last.at.as_secs_f64(),
                opts.time.as_secs()
            )));
        }
    }
    if opts.workloads.contains(&Workload::Watch) && !opts.workloads.contains(&Workload::Set) {
        return Err(Error::Setup(
            "watch follows the set workload's readings: add set".into(),
        ));
    }
    let results = opts.results.clone().unwrap_or_else(|| {
        PathBuf::from("jepsen-results").join(format!("{}-seed-{seed}", utc_stamp()))
    });
    if std::fs::read_dir(&results).is_ok_and(|mut d| d.next().is_some()) {
        return Err(Error::Setup(format!(
            "results folder {} is not empty",
            results.display()
        )));
    }
    std::fs::create_dir_all(&results)?;
    let log = Log::create(&results.join("run.log"));

    log.say(format!("seed {seed}"));
    let replay = replay_command(opts, seed, timing, &results);
    log.say(format!("replay: {replay}"));
    let schedule_text = format!("# run seed {seed}; replay: {replay}\n{}", plan.schedule);
    std::fs::write(results.join("schedule.txt"), &schedule_text)?;
    std::fs::write(results.join("seed.txt"), format!("{seed}\n"))?;
    log.say(format!(
        "schedule ({} faults, held {:.1}-{:.1}s, {:.1}-{:.1}s of calm before each{}):\n{}",
        plan.schedule
            .steps
            .iter()
            .filter(|s| plan::kind_of(&s.fault).is_some())
            .count(),
        timing.hold.0.as_secs_f64(),
        timing.hold.1.as_secs_f64(),
        timing.quiet.0.as_secs_f64(),
        timing.quiet.1.as_secs_f64(),
        if plan.attempts > 1 {
            format!(
                "; draw {} from generator seed {}",
                plan.attempts, plan.generator_seed
            )
        } else {
            String::new()
        },
        plan.schedule.to_string().trim_end()
    ));
    let missing = plan::missing_kinds(&plan.schedule, &opts.kinds);
    if !missing.is_empty() {
        log.say(format!(
            "warning: the schedule given has no {}",
            missing
                .iter()
                .map(|k| plan::nemesis_name(*k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    docker::available().map_err(|why| Error::Setup(format!("Docker: {why}")))?;
    let needs_firewall = plan
        .schedule
        .steps
        .iter()
        .any(|s| matches!(s.fault, Fault::Partition(_)));
    let mut copts = ComposeOptions::new("bifrost-jepsen");
    copts.image = opts.image.clone();
    copts.file = opts.compose_file.clone();
    let mut compose = Compose::new(copts)?;
    if needs_firewall {
        // Fail on a missing permission before anything starts.
        drop(nemesis::Firewall::new(&nemesis::tag_for(
            compose.project(),
        ))?);
    }
    if opts.keep {
        compose.keep();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let net_seed = std::process::id() as u64 ^ seed;
    log.say(format!(
        "project {}: image {}, {}",
        compose.project(),
        opts.image,
        compose.tool()
    ));
    if opts.handle_interrupt {
        on_interrupt(&rt, &compose, opts.keep);
    }
    let up = compose.up_any_net(&docker::candidate_nets(net_seed, 40));
    let outcome = up.map_err(Error::from).and_then(|()| {
        log.say(format!(
            "network {}.0/24, endpoints {} (TLS, CA in {})",
            docker::net_prefix(compose.options().net),
            compose.endpoints(),
            compose.pki().dir.display()
        ));
        run_on(&compose, &rt, opts, seed, &plan, &results, &log)
    });
    if outcome.is_err() {
        save_logs(&compose, &results, &log);
    }
    match &outcome {
        Ok(_) if opts.keep => log.say(format!(
            "keeping project {} (--keep); results in {}",
            compose.project(),
            results.display()
        )),
        Ok(_) => log.say(format!("taking project {} down", compose.project())),
        Err(e) => log.say(format!("setup failed: {e}")),
    }
    drop(compose);
    outcome
}

/// A duration as `bifrost-jepsen run` reads it back, without spaces
/// (`90s`, or seconds such as `1.5`).
fn duration_arg(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}", d.as_secs_f64())
    }
}

/// The command line that replays this run: its seed and every option that
/// shapes the schedule and the load.
fn replay_command(opts: &RunOptions, seed: u64, timing: Timing, results: &Path) -> String {
    let mut s = format!(
        "bifrost-jepsen run --seed {seed} --time {}",
        duration_arg(opts.time)
    );
    let kinds: Vec<&str> = opts.kinds.iter().map(|k| plan::nemesis_name(*k)).collect();
    if opts.kinds.is_empty() {
        s += " --nemesis none";
    } else if opts.kinds != FaultKind::ALL {
        s += &format!(" --nemesis {}", kinds.join(","));
    }
    if opts.workloads != Workload::ALL {
        let w: Vec<&str> = opts.workloads.iter().map(|w| w.name()).collect();
        s += &format!(" --workloads {}", w.join(","));
    }
    if opts.schedule.is_some() {
        s += &format!(" --schedule {}", results.join("schedule.txt").display());
    } else if timing != Timing::for_run(opts.time, opts.kinds.len()) {
        s += &format!(
            " --hold {}..{} --quiet {}..{}",
            duration_arg(timing.hold.0),
            duration_arg(timing.hold.1),
            duration_arg(timing.quiet.0),
            duration_arg(timing.quiet.1)
        );
    }
    if let Some(n) = opts.plant_devices {
        s += &format!(" --plant-devices {n}");
    }
    s += &format!(" --image {}", opts.image);
    s
}

/// Ctrl-C: heal this project's partitions, take it down and remove its
/// certificates (unless `keep`), exit 130.
fn on_interrupt(rt: &tokio::runtime::Runtime, compose: &Compose, keep: bool) {
    let copts = compose.options().clone();
    // The exit skips the drop that would remove them.
    let certs = compose.pki_root().to_path_buf();
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!("interrupted: healing the network and taking the cluster down");
        let _ = tokio::task::spawn_blocking(move || {
            // A new firewall removes every rule with the project's tag.
            let _ = nemesis::Firewall::new(&nemesis::tag_for(&copts.project));
            if !keep {
                if let Ok(mut c) = Compose::new(copts) {
                    let _ = c.down();
                }
                let _ = std::fs::remove_dir_all(&certs);
            }
        })
        .await;
        std::process::exit(130);
    });
}

/// Carries out faults: all kinds with the firewall, or only process faults
/// without it (so that a run without partitions does not need root).
enum Injector<'a> {
    Full(Box<Nemesis<'a>>),
    ProcessesOnly(&'a Compose),
}

impl Injector<'_> {
    fn apply(&mut self, fault: &Fault, leader: Option<u64>) -> docker::Result<String> {
        match self {
            Injector::Full(n) => n.apply(fault, leader),
            Injector::ProcessesOnly(c) => {
                match fault {
                    Fault::Kill(n) => c.kill(*n)?,
                    Fault::Restart(n) => c.start(*n)?,
                    Fault::Pause(n) => c.pause(*n)?,
                    Fault::Resume(n) => c.unpause(*n)?,
                    Fault::Stop(n) => c.sigstop(*n)?,
                    Fault::Cont(n) => c.sigcont(*n)?,
                    Fault::Heal => {}
                    Fault::Partition(_) => {
                        return Err(docker::Error::Other(format!(
                            "{fault}: partitions need the firewall"
                        )))
                    }
                }
                Ok(fault.to_string())
            }
        }
    }

    /// Removes every partition rule; how many there were.
    fn heal_network(&mut self) -> docker::Result<usize> {
        match self {
            Injector::Full(n) => n.firewall().heal(),
            Injector::ProcessesOnly(_) => Ok(0),
        }
    }
}

/// What the nemesis thread did.
#[derive(Default)]
struct NemesisRun {
    faults: Vec<AppliedFault>,
    windows: Vec<FaultWindow>,
    kills: Vec<OwnerKill>,
    kinds: BTreeMap<FaultKind, u64>,
}

/// The history-event key of a fault: its verb.
fn verb(f: &Fault) -> &'static str {
    match f {
        Fault::Kill(_) => "kill",
        Fault::Restart(_) => "restart",
        Fault::Pause(_) => "pause",
        Fault::Resume(_) => "resume",
        Fault::Stop(_) => "stop",
        Fault::Cont(_) => "cont",
        Fault::Partition(_) => "partition",
        Fault::Heal => "heal",
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

struct NemesisContext<'a> {
    compose: &'a Compose,
    schedule: &'a Schedule,
    target: &'a Target,
    recorder: &'a Recorder,
    rt: tokio::runtime::Handle,
    start: Instant,
    until: Instant,
    log: &'a Log,
}

/// Applies the schedule, then heals everything at `until`.
fn nemesis_loop(cx: &NemesisContext<'_>, injector: &mut Injector<'_>) -> NemesisRun {
    let mut out = NemesisRun::default();
    let mut process = cx.recorder.process(NEMESIS);
    // The fault in force: (start on the history clock, label).
    let mut open: Option<(u64, String)> = None;
    for step in &cx.schedule.steps {
        sleep_until(cx.start + step.at);
        let leader = match &step.fault {
            Fault::Partition(PartitionSpec::IsolateLeader) => cx
                .rt
                .block_on(cluster::find_leader(cx.target, Duration::from_secs(10))),
            _ => None,
        };
        let start_us = cx.recorder.now();
        let op = process.invoke(
            Function::Write,
            verb(&step.fault),
            Value::Str(step.fault.to_string()),
        );
        let result = injector.apply(&step.fault, leader);
        let end_us = cx.recorder.now();
        let done = match &result {
            Ok(done) => {
                op.ok(Value::Str(done.clone()));
                done.clone()
            }
            Err(e) => {
                op.info(e.to_string());
                format!("{} failed: {e}", step.fault)
            }
        };
        cx.log
            .say(format!("{:>8.3}s nemesis: {done}", secs(start_us)));
        match plan::kind_of(&step.fault) {
            Some(kind) if result.is_ok() => {
                *out.kinds.entry(kind).or_default() += 1;
                if let Fault::Kill(n) = step.fault {
                    out.kills.push(OwnerKill {
                        node: n,
                        at_us: cx.recorder.to_epoch_us(start_us),
                        devices: Vec::new(),
                    });
                }
                if let Some((s, label)) = open.replace((start_us, done.clone())) {
                    // Not undone (its undo was missing): ends where the next begins.
                    out.windows.push(FaultWindow {
                        start_us: s,
                        end_us: start_us,
                        label,
                    });
                }
            }
            Some(_) => {}
            None => {
                if let Some((s, label)) = open.take() {
                    out.windows.push(FaultWindow {
                        start_us: s,
                        end_us,
                        label,
                    });
                }
            }
        }
        out.faults.push(AppliedFault {
            scheduled_s: step.at.as_secs_f64(),
            step: step.fault.to_string(),
            done,
            ok: result.is_ok(),
            start_us,
            end_us,
        });
    }
    sleep_until(cx.until);
    // Whatever the schedule did or failed to do, nothing stays broken.
    let op = process.invoke(
        Function::Write,
        "heal-all",
        Value::Str("heal everything".into()),
    );
    let mut actions = Vec::new();
    match injector.heal_network() {
        Ok(0) => {}
        Ok(n) => actions.push(format!("removed {n} partition rule(s)")),
        Err(e) => actions.push(format!("removing partition rules failed: {e}")),
    }
    actions.extend(cluster::revive_all(cx.compose));
    let end_us = cx.recorder.now();
    op.ok(Value::List(
        actions.iter().map(|a| Value::Str(a.clone())).collect(),
    ));
    if let Some((s, label)) = open.take() {
        out.windows.push(FaultWindow {
            start_us: s,
            end_us,
            label,
        });
    }
    cx.log.say(format!(
        "{:>8.3}s nemesis: heal everything{}",
        secs(end_us),
        if actions.is_empty() {
            " (nothing to do)".to_string()
        } else {
            format!(": {}", actions.join("; "))
        }
    ));
    out
}

/// Runs the selected workloads until `until` (watch drains after it).
async fn run_workloads(
    selected: &[Workload],
    target: &Target,
    recorder: &Recorder,
    until: Instant,
    wl: &WorkloadOptions,
) -> Vec<(Workload, workload::Result<()>)> {
    let has = |w| selected.contains(&w);
    let reg = async {
        if has(Workload::Register) {
            Some(register::run(target, recorder, until, &wl.register).await)
        } else {
            None
        }
    };
    let st = async {
        if has(Workload::Set) {
            Some(set::run(target, recorder, until, &wl.set).await)
        } else {
            None
        }
    };
    let wa = async {
        if has(Workload::Watch) {
            Some(watch::run(target, recorder, until, &wl.watch).await)
        } else {
            None
        }
    };
    let rd = async {
        if has(Workload::Readings) {
            Some(readings::run(target, recorder, until, &wl.readings).await)
        } else {
            None
        }
    };
    let (r, s, w, d) = tokio::join!(reg, st, wa, rd);
    [
        (Workload::Register, r),
        (Workload::Set, s),
        (Workload::Watch, w),
        (Workload::Readings, d),
    ]
    .into_iter()
    .filter_map(|(w, r)| r.map(|r| (w, r)))
    .collect()
}

struct WorkloadOptions {
    register: register::RegisterOptions,
    set: set::SetOptions,
    watch: watch::WatchOptions,
    readings: readings::ReadingsOptions,
}

/// Everything after the project is up; the project is taken down by the
/// caller.
fn run_on(
    compose: &Compose,
    rt: &tokio::runtime::Runtime,
    opts: &RunOptions,
    seed: u64,
    plan: &Plan,
    results: &Path,
    log: &Log,
) -> Result<RunReport> {
    let target = compose.target();
    let t = Instant::now();
    compose.wait_healthy(Duration::from_secs(90))?;
    let a = rt
        .block_on(cluster::wait_agreed(&target, Duration::from_secs(60)))
        .map_err(|e| Error::Setup(format!("no leader every node agrees on: {e}")))?;
    log.say(format!(
        "cluster healthy: leader n{} in term {} ({:.1}s)",
        a.leader,
        a.term,
        t.elapsed().as_secs_f64()
    ));

    let selected = &opts.workloads;
    let mut wl = WorkloadOptions {
        register: register::RegisterOptions {
            seed,
            ..Default::default()
        },
        set: set::SetOptions {
            seed: seed.wrapping_add(1),
            ..Default::default()
        },
        watch: watch::WatchOptions::over_tags(&set::SetOptions::default().tags, 3),
        readings: readings::ReadingsOptions::default(),
    };
    if selected.contains(&Workload::Set) {
        rt.block_on(set::setup(&target, &wl.set))?;
        log.say(format!(
            "set: device {} and {} tags created",
            wl.set.device,
            wl.set.tags.len()
        ));
    }
    let plant = if selected.contains(&Workload::Readings) {
        let doc = cluster::load_plant(&opts.plant, opts.plant_devices, &compose.sim().to_string())
            .map_err(Error::Setup)?;
        let t = Instant::now();
        rt.block_on(cluster::import_plant(
            &target,
            &doc,
            Duration::from_secs(90),
        ))
        .map_err(Error::Setup)?;
        wl.readings.tags = cluster::counter_tags(&doc).into_keys().collect();
        log.say(format!(
            "readings: {} devices and {} tags imported, every device assigned and polled ({:.1}s)",
            doc.devices.len(),
            doc.tags.len(),
            t.elapsed().as_secs_f64()
        ));
        Some(doc)
    } else {
        None
    };

    let recorder = Recorder::create(&results.join("history.jsonl"))?;
    let mut injector = if plan
        .schedule
        .steps
        .iter()
        .any(|s| matches!(s.fault, Fault::Partition(_)))
    {
        Injector::Full(Box::new(Nemesis::new(compose)?))
    } else {
        Injector::ProcessesOnly(compose)
    };
    let start = Instant::now();
    let until = start + opts.time;
    log.say(format!(
        "running {} for {} with {} faults",
        selected
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(", "),
        humantime::format_duration(opts.time),
        plan.schedule
            .steps
            .iter()
            .filter(|s| plan::kind_of(&s.fault).is_some())
            .count()
    ));
    let cx = NemesisContext {
        compose,
        schedule: &plan.schedule,
        target: &target,
        recorder: &recorder,
        rt: rt.handle().clone(),
        start,
        until,
        log,
    };
    let (nem, ran) = std::thread::scope(|s| {
        let nemesis = s.spawn(|| nemesis_loop(&cx, &mut injector));
        let ran = rt.block_on(run_workloads(selected, &target, &recorder, until, &wl));
        (nemesis.join().expect("the nemesis thread panicked"), ran)
    });
    let mut notes = Vec::new();
    for (w, r) in ran {
        if let Err(e) = r {
            notes.push(format!("{w}: {e}"));
            log.say(format!("{w}: could not run: {e}"));
        }
    }
    log.say(format!(
        "workloads done ({:.1}s after the start{})",
        start.elapsed().as_secs_f64(),
        if selected.contains(&Workload::Watch) {
            "; watch drains past --time"
        } else {
            ""
        }
    ));

    // Recovery: every node healthy, one leader, everything applied.
    let t = Instant::now();
    let recovery = compose
        .wait_healthy(opts.recovery_timeout)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            let left = opts.recovery_timeout.saturating_sub(t.elapsed());
            rt.block_on(cluster::wait_agreed(&target, left))
        });
    let took = t.elapsed();
    let mut recovery_verdict = Verdict::new("recovery");
    recovery_verdict.count("milliseconds", took.as_millis() as u64);
    match &recovery {
        Ok(a) => {
            recovery_verdict.count("leader", a.leader);
            log.say(format!(
                "recovered in {:.1}s: leader n{} in term {}, every node has applied index {}",
                took.as_secs_f64(),
                a.leader,
                a.term,
                a.commit_index
            ));
        }
        Err(why) => {
            recovery_verdict.anomaly(
                "not-recovered",
                "cluster",
                format!("after every fault was healed: {why}"),
                json!({"timeout_s": opts.recovery_timeout.as_secs(), "why": why}),
            );
            log.say(format!("NOT RECOVERED: {why}"));
        }
    }

    // Final reads.
    if let Some(doc) = &plant {
        let drained = rt
            .block_on(cluster::disable_plant(&target, doc))
            .and_then(|()| cluster::wait_drained(compose, Duration::from_secs(60)));
        match drained {
            Ok(()) => log.say("readings: polling stopped, every outbox empty"),
            Err(e) => {
                notes.push(format!("readings: {e}"));
                log.say(format!("readings: {e} (the final reads may miss readings)"));
            }
        }
    }
    if selected.contains(&Workload::Set) {
        if let Err(e) = rt.block_on(set::final_read(&target, &recorder, &wl.set)) {
            notes.push(format!("set: final read: {e}"));
            log.say(format!("set: final read failed: {e}"));
        }
    }
    if plant.is_some() {
        if let Err(e) = rt.block_on(readings::final_read(&target, &recorder, &wl.readings.tags)) {
            notes.push(format!("readings: final read: {e}"));
            log.say(format!("readings: final read failed: {e}"));
        }
    }
    recorder.flush()?;

    // Every node holds the same history (compared once the cluster is quiet).
    let (replicas_verdict, replicas_line) = rt.block_on(cluster::replica_verdict(&target));
    log.say(&replicas_line);

    // Check.
    let records = recorder.records();
    let t = Instant::now();
    let check_opts = CheckAllOptions {
        counters: CounterOptions {
            devices: plant
                .as_ref()
                .map(cluster::counter_tags)
                .unwrap_or_default(),
            kills: nem.kills.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut verdicts = check::check_all(&records, &check_opts);
    for w in selected {
        if !verdicts.iter().any(|v| v.checker == w.name()) {
            let mut v = Verdict::new(w.name());
            v.unknown(format!("the {w} workload recorded nothing"));
            verdicts.push(v);
        }
    }
    verdicts.push(recovery_verdict);
    verdicts.push(replicas_verdict);
    log.say(format!(
        "checked {} events in {:.1}s",
        records.len(),
        t.elapsed().as_secs_f64()
    ));
    let summary = check::write_results(
        results,
        &records,
        &verdicts,
        &nem.windows,
        recorder.start_epoch_us(),
    )?;
    save_logs(compose, results, log);
    let operations = operation_counts(&records);
    let report = RunReport {
        seed,
        plan: plan.clone(),
        results: results.to_path_buf(),
        project: compose.project().to_string(),
        verdicts,
        summary,
        operations,
        faults: nem.faults,
        windows: nem.windows,
        kinds_applied: nem.kinds,
        notes,
    };
    write_run_json(&report, opts, compose)?;
    let text = summary_text(&report, opts);
    std::fs::write(results.join("summary.txt"), &text)?;
    log.say(text.trim_end());
    Ok(report)
}

/// Each container's output, `logs/<service>.log` (stdout, then stderr,
/// where Bifrost logs).
fn save_logs(compose: &Compose, results: &Path, log: &Log) {
    let dir = results.join("logs");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        log.say(format!("logs: {}: {e}", dir.display()));
        return;
    }
    let mut services: Vec<String> = compose.nodes().into_iter().map(|n| n.service).collect();
    services.push("sim".into());
    for s in services {
        match compose.logs(&s) {
            Ok(l) => {
                let _ = std::fs::write(dir.join(format!("{s}.log")), l.stdout + &l.stderr);
            }
            Err(e) => log.say(format!("logs of {s}: {e}")),
        }
    }
}

fn write_run_json(report: &RunReport, opts: &RunOptions, compose: &Compose) -> Result<()> {
    let run = json!({
        "seed": report.seed,
        "replay": replay_command(opts, report.seed, report.plan.timing, &report.results),
        "time_s": opts.time.as_secs_f64(),
        "nemesis": opts.kinds.iter().map(|k| plan::nemesis_name(*k)).collect::<Vec<_>>(),
        "workloads": opts.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
        "generator_seed": report.plan.generator_seed,
        "schedule_draws": report.plan.attempts,
        "hold_s": [report.plan.timing.hold.0.as_secs_f64(), report.plan.timing.hold.1.as_secs_f64()],
        "quiet_s": [report.plan.timing.quiet.0.as_secs_f64(), report.plan.timing.quiet.1.as_secs_f64()],
        "image": opts.image,
        "project": report.project,
        "network": format!("{}.0/24", docker::net_prefix(compose.options().net)),
        "plant_devices": opts.plant_devices,
        "valid": report.summary.valid,
        "exit_code": report.exit_code(),
        "operations": report.operations,
        "faults": report.faults,
        "kinds_applied": report.kinds_applied.iter()
            .map(|(k, n)| (plan::nemesis_name(*k).to_string(), *n))
            .collect::<BTreeMap<_, _>>(),
        "notes": report.notes,
    });
    std::fs::write(
        report.results.join("run.json"),
        serde_json::to_string_pretty(&run).expect("serialises") + "\n",
    )?;
    Ok(())
}

/// The summary printed at the end (and `summary.txt`).
pub fn summary_text(report: &RunReport, opts: &RunOptions) -> String {
    let mut s = String::new();
    s += &format!(
        "\n== {} (seed {}) ==\n",
        report.results.display(),
        report.seed
    );
    s += "checkers:\n";
    for v in &report.verdicts {
        let counts: Vec<String> = v.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s += &format!(
            "  {:<9} {:<8} {}\n",
            v.checker,
            v.valid.as_str(),
            counts.join(", ")
        );
        for a in &v.anomalies {
            s += &format!("      {} {}: {}\n", a.kind, a.key, a.detail);
        }
        if v.anomaly_counts.values().sum::<u64>() > v.anomalies.len() as u64 {
            s += &format!("      ... {:?} in all\n", v.anomaly_counts);
        }
        for n in &v.notes {
            s += &format!("      note: {n}\n");
        }
    }
    s += "operations:\n";
    for (w, c) in &report.operations {
        s += &format!("  {w:<9} {c}\n");
    }
    let applied: Vec<String> = report
        .kinds_applied
        .iter()
        .map(|(k, n)| format!("{} {n}", plan::nemesis_name(*k)))
        .collect();
    s += &format!(
        "faults: {} ({})\n",
        report.kinds_applied.values().sum::<u64>(),
        applied.join(", ")
    );
    for w in &report.windows {
        s += &format!(
            "  {:>8.3}s-{:>8.3}s {}\n",
            secs(w.start_us),
            secs(w.end_us),
            w.label
        );
    }
    let failed = report.faults.iter().filter(|f| !f.ok).count();
    if failed > 0 {
        s += &format!("  {failed} step(s) failed:\n");
        for f in report.faults.iter().filter(|f| !f.ok) {
            s += &format!("    {}\n", f.done);
        }
    }
    let missing: Vec<&str> = opts
        .kinds
        .iter()
        .filter(|k| !report.kinds_applied.contains_key(k))
        .map(|k| plan::nemesis_name(*k))
        .collect();
    if !missing.is_empty() {
        s += &format!("  never applied: {}\n", missing.join(", "));
    }
    for n in &report.notes {
        s += &format!("note: {n}\n");
    }
    s += &format!(
        "verdict: {} (exit {})\n",
        report.summary.valid,
        report.exit_code()
    );
    if report.summary.valid != Validity::Valid {
        s += &format!(
            "replay: {}\n",
            replay_command(opts, report.seed, report.plan.timing, &report.results)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_command_names_what_shapes_the_schedule() {
        let dir = Path::new("/r");
        let mut o = RunOptions::default();
        let t = Timing::for_run(o.time, o.kinds.len());
        assert_eq!(
            replay_command(&o, 5, t, dir),
            "bifrost-jepsen run --seed 5 --time 60s --image bifrost:dev"
        );
        o.time = Duration::from_secs(90);
        o.kinds = vec![FaultKind::Kill, FaultKind::IsolateLeader];
        o.workloads = vec![Workload::Register, Workload::Readings];
        o.plant_devices = Some(4);
        let custom = Timing {
            hold: (Duration::from_secs(1), Duration::from_millis(2500)),
            quiet: (Duration::from_secs(1), Duration::from_secs(2)),
        };
        assert_eq!(
            replay_command(&o, 5, custom, dir),
            "bifrost-jepsen run --seed 5 --time 90s --nemesis kill,partition-leader \
             --workloads register,readings --hold 1s..2.5 --quiet 1s..2s \
             --plant-devices 4 --image bifrost:dev"
        );
        o.schedule = Some(Schedule::default());
        assert!(replay_command(&o, 5, custom, dir).contains("--schedule /r/schedule.txt"));
    }

    #[test]
    fn operations_are_counted_per_workload_with_the_nemesis_apart() {
        let rec = Recorder::in_memory();
        let mut p = rec.process(workload::names::SET);
        p.invoke(Function::Append, "t", Value::Nil).info("timeout");
        p.invoke(Function::Append, "t", Value::Nil).ok(Value::Nil);
        let mut n = rec.process(NEMESIS);
        n.invoke(Function::Write, "kill", Value::Str("kill n1".into()))
            .ok(Value::Str("kill n1".into()));
        let c = operation_counts(&rec.records());
        assert_eq!(
            c["set"],
            OpCounts {
                invoked: 2,
                ok: 1,
                fail: 0,
                info: 1
            }
        );
        assert_eq!(c[NEMESIS].ok, 1);
        // The checkers see no nemesis events, whatever their function.
        let verdicts = check::check_all(&rec.records(), &CheckAllOptions::default());
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        assert_eq!(verdicts[0].checker, "set");
    }
}
