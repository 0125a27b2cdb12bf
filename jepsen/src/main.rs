//! `bifrost-jepsen`: Bifrost's fault-injection test harness.
//!
//! For now it has one subcommand, `check`, which decides whether a recorded
//! history is linearizable. `run` (start a Docker cluster, inject faults,
//! record a history, then check it) comes next and shares the checker.
//!
//! Exit status: 0 linearizable, 1 not linearizable, 2 unknown (the search
//! ran out of time), 3 the check could not be made (bad arguments, an
//! unreadable file, a malformed history).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
#[command(after_help = "Exit status: 0 linearizable, 1 not linearizable, 2 unknown, 3 error.")]
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
}

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
    }
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
