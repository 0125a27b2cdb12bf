//! `bifrost-jepsen`: Bifrost's fault-injection test harness.
//!
//! Two subcommands:
//!
//! - `check` decides whether a recorded history is linearizable. Exit
//!   status: 0 linearizable, 1 not linearizable, 2 unknown (the search ran
//!   out of time), 3 the check could not be made (bad arguments, an
//!   unreadable file, a malformed history).
//! - `run` starts a Docker cluster, runs the workloads under a seeded
//!   schedule of faults, heals, checks and writes a results folder (see
//!   `bifrost_jepsen::run`). Exit status: 0 every checker valid, 1 one is
//!   invalid, 2 one could not tell, 3 the run could not be set up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bifrost_jepsen::nemesis::Schedule;
use bifrost_jepsen::run::{self as harness, plan, RunOptions, Timing};
use bifrost_jepsen::{check_history, CheckOptions, Format, Limit, ModelKind, Verdict};
use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_NOT_LINEARIZABLE: u8 = 1;
const EXIT_UNKNOWN: u8 = 2;
const EXIT_ERROR: u8 = 3;

#[derive(Parser)]
#[command(
    name = "bifrost-jepsen",
    version,
    about = "Bifrost's fault-injection test harness"
)]
#[command(
    after_help = "Exit status: 0 linearizable / valid, 1 not linearizable / invalid, 2 unknown, 3 error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check that a recorded history is linearizable.
    ///
    /// Prints `linearizable` (exit 0), `not linearizable` (exit 1, with an
    /// explanation on stderr) or `unknown` (exit 2: out of time or memory).
    /// A history that cannot be read exits 3.
    Check(CheckArgs),

    /// Run a Docker cluster under faults, record a history, check it.
    ///
    /// Prints the seed and the fault schedule first (give them back with
    /// --seed or --schedule to replay), then what happens, then a summary.
    /// Writes a results folder. Exits 0 when every checker is valid, 1 when
    /// one is not, 2 when one could not tell, 3 when the run could not be
    /// set up. Needs Docker, an image (scripts/image.sh) and, for
    /// partitions, root (iptables). The cluster runs with TLS on every
    /// port, with a CA made for the run.
    Run(RunArgs),
}

#[derive(Args)]
struct RunArgs {
    /// How long the workloads run under faults (`60s`, `30m`).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    time: Duration,

    /// Seed of the fault schedule and the clients' choices (random if not
    /// given; printed either way).
    #[arg(long)]
    seed: Option<u64>,

    /// `all`, `none`, or a comma-separated list of kill, pause, stop,
    /// partition-one, partition-leader, split, bridge. Each occurs at least
    /// once.
    #[arg(long, default_value = "all", value_parser = plan::parse_nemesis)]
    nemesis: NemesisList,

    /// `all` or a comma-separated list of register, set, watch, readings.
    #[arg(long, default_value = "all", value_parser = plan::parse_workloads)]
    workloads: WorkloadList,

    /// Docker image of the nodes and the simulator (no image is pulled).
    #[arg(long, default_value = bifrost_jepsen::docker::DEFAULT_IMAGE)]
    image: String,

    /// Results folder (must be empty or absent); default
    /// jepsen-results/<UTC time>-seed-<seed>.
    #[arg(long)]
    results: Option<PathBuf>,

    /// Leave the cluster running afterwards (prints how to remove it).
    #[arg(long)]
    keep: bool,

    /// Replay this schedule (a run's schedule.txt) instead of drawing one.
    #[arg(long)]
    schedule: Option<PathBuf>,

    /// How long each fault lasts, `MIN..MAX` (`2s..8s`); default by
    /// --time: 2s..8s for long runs, 1.5s..4s for short ones.
    #[arg(long, value_parser = parse_range)]
    hold: Option<(Duration, Duration)>,

    /// Calm before each fault, `MIN..MAX`; default 2s..6s or 1s..2.5s.
    #[arg(long, value_parser = parse_range)]
    quiet: Option<(Duration, Duration)>,

    /// Import only the plant's first N devices (and their tags).
    #[arg(long)]
    plant_devices: Option<usize>,

    /// How long the cluster may take to recover after the last fault.
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    recovery_timeout: Duration,
}

type NemesisList = Vec<bifrost_jepsen::nemesis::FaultKind>;
type WorkloadList = Vec<harness::Workload>;

#[derive(Args)]
struct CheckArgs {
    /// The history file.
    file: PathBuf,

    /// The file's format.
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    format: FormatArg,

    /// The model to check against. `auto`: the format's (etcd-jepsen: register,
    /// kv: kv); for jsonl, the one that has every function the history uses.
    #[arg(long, value_enum, default_value_t = ModelArg::Auto)]
    model: ModelArg,

    /// Give up and answer `unknown` after this long (`90s`, `2m`, or seconds).
    #[arg(long, default_value = "60s", value_parser = parse_timeout)]
    timeout: Duration,

    /// Give up and answer `unknown` when the search's memo outgrows this
    /// (`512MiB`, `4GiB`, or bytes).
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    max_memory: usize,

    /// Also print what was checked and how long it took, on stderr.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Our harness's JSON lines.
    Jsonl,
    /// Jepsen's etcd log lines (`INFO  jepsen.util - 3 :invoke :read nil`).
    EtcdJepsen,
    /// Jepsen EDN maps per line, get/put/append on string keys.
    Kv,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Jsonl => Format::Jsonl,
            FormatArg::EtcdJepsen => Format::EtcdJepsen,
            FormatArg::Kv => Format::Kv,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    Auto,
    /// Registers with read, write and cas; one per key.
    Register,
    /// A string map with get, put and append.
    Kv,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_range(s: &str) -> Result<(Duration, Duration), String> {
    let (lo, hi) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?}: expected MIN..MAX, such as 2s..8s"))?;
    let (lo, hi) = (parse_timeout(lo)?, parse_timeout(hi)?);
    if lo > hi {
        return Err(format!("{s:?}: MIN is more than MAX"));
    }
    Ok((lo, hi))
}

fn parse_size(s: &str) -> Result<usize, String> {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &s[digits.len()..];
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return Err(format!("unknown unit {unit:?} (use B, KiB, MiB or GiB)")),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("{digits:?} is not a whole number"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| "too large".to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; usage errors must not exit
            // with clap's 2, which means "unknown" here.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check(args) => run_check(&args),
        Command::Run(args) => run_run(args),
    }
}

fn run_run(args: RunArgs) -> ExitCode {
    let schedule = match args.schedule.as_deref().map(read_schedule).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bifrost-jepsen: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut timing = Timing::for_run(args.time, args.nemesis.len());
    if let Some(hold) = args.hold {
        timing.hold = hold;
    }
    if let Some(quiet) = args.quiet {
        timing.quiet = quiet;
    }
    let opts = RunOptions {
        time: args.time,
        seed: args.seed,
        kinds: args.nemesis,
        workloads: args.workloads,
        schedule,
        timing: Some(timing),
        image: args.image,
        results: args.results,
        keep: args.keep,
        plant_devices: args.plant_devices,
        recovery_timeout: args.recovery_timeout,
        handle_interrupt: true,
        ..RunOptions::default()
    };
    match harness::run(&opts) {
        Ok(report) => ExitCode::from(report.exit_code() as u8),
        Err(e) => {
            eprintln!("bifrost-jepsen: {e}");
            ExitCode::from(harness::EXIT_SETUP as u8)
        }
    }
}

fn read_schedule(path: &Path) -> Result<Schedule, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.parse().map_err(|e| format!("{}: {e}", path.display()))
}

fn run_check(args: &CheckArgs) -> ExitCode {
    let file = args.file.display();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("bifrost-jepsen: {file}: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let format = Format::from(args.format);
    let model = match args.model {
        ModelArg::Auto => format.model(),
        ModelArg::Register => Some(ModelKind::Register),
        ModelArg::Kv => Some(ModelKind::Kv),
    };
    let opts = CheckOptions {
        timeout: args.timeout,
        max_memory: args.max_memory,
    };
    let report = match format
        .parse(&text)
        .and_then(|history| check_history(&history, model, &opts))
    {
        Ok(report) => report,
        Err(e) => {
            eprintln!("bifrost-jepsen: {file}:{}: {}", e.line(), e.detail());
            return ExitCode::from(EXIT_ERROR);
        }
    };
    println!("{}", report.verdict);
    if args.verbose {
        eprintln!(
            "{file}: {} operations on {} keys, {} model, {} states explored, {:.3}s",
            report.operations,
            report.keys,
            report.model,
            report.explored,
            report.elapsed.as_secs_f64()
        );
    }
    match report.verdict {
        Verdict::Linearizable => ExitCode::SUCCESS,
        Verdict::NotLinearizable => {
            if let Some(failure) = &report.failure {
                eprint!("{failure}");
            }
            ExitCode::from(EXIT_NOT_LINEARIZABLE)
        }
        Verdict::Unknown => {
            if let Some(gave_up) = &report.gave_up {
                let limit = match gave_up.limit {
                    Limit::Time => {
                        format!("--timeout {}", humantime::format_duration(args.timeout))
                    }
                    Limit::Memory => format!("--max-memory {}MiB", args.max_memory >> 20),
                };
                eprintln!(
                    "gave up on key {:?} after {:.1}s: the search outgrew {limit}",
                    gave_up.key,
                    report.elapsed.as_secs_f64()
                );
            }
            ExitCode::from(EXIT_UNKNOWN)
        }
    }
}
