//! `bench storage`: bytes on disk per reading, measured by the server
//! binary itself.
//!
//! Storage is measured in-process by `bifrost bench-storage` (it drives the
//! real state machine and needs RocksDB, which bifrostctl does not link):
//! this command finds the binary like the other benchmarks
//! ([`super::common::server_binary`]), runs it with the arguments given
//! (`--readings`, `--tags`, `--dir`; those not given keep the server's
//! defaults, documented in `bifrost bench-storage --help`), and passes its
//! output through line by line. The server's last line is the summary,
//! `storage: N readings, X B/reading ...`, after one line per signal kind;
//! with `--output json` the lines go to stderr and the summary is printed
//! as one JSON object. A failure to start, an exit other than 0, or output
//! without the summary line is an error naming the binary.
//!
//! The child is killed when the benchmark is dropped (Ctrl-C, SIGTERM) and,
//! on Linux, when bifrostctl dies.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{anyhow, bail, Context};
use clap::Args;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::common::server_binary;
use crate::ctl::output::{print_json, print_line, Output};
use crate::ctl::Ctx;

#[derive(Args, Debug, Clone)]
pub struct BenchStorageArgs {
    /// Readings in all, shared equally by the signal kinds [default: the
    /// server's, 10,000,000].
    #[arg(long)]
    pub readings: Option<u64>,
    /// Tags per signal kind [default: the server's, 1,000].
    #[arg(long)]
    pub tags: Option<u64>,
    /// Where the data go (kept when given) [default: a temporary directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Server binary [default: $BIFROST_BIN, else `bifrost` next to this
    /// executable].
    #[arg(long)]
    pub bifrost: Option<PathBuf>,
}

pub async fn storage(ctx: &Ctx, args: BenchStorageArgs) -> anyhow::Result<()> {
    if ctx.endpoints_explicit {
        bail!("bench storage measures storage in a local process, not a cluster; drop --endpoints");
    }
    let exe = server_binary(args.bifrost.as_deref())?;
    eprintln!("bench: server binary {}", exe.display());
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(server_args(&args))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    bifrost_testkit::set_die_with_parent(&mut cmd);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} bench-storage", exe.display()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let mut summary = None;
    while let Some(line) = lines
        .next_line()
        .await
        .with_context(|| format!("reading the output of {} bench-storage", exe.display()))?
    {
        summary = parse_summary(&line).or(summary);
        match ctx.output {
            Output::Json => eprintln!("{line}"),
            Output::Text | Output::Csv => print_line(&line)?,
        }
    }
    let status = child
        .wait()
        .await
        .with_context(|| format!("waiting for {} bench-storage", exe.display()))?;
    if !status.success() {
        bail!(
            "{} bench-storage failed ({status}); its error is above",
            exe.display()
        );
    }
    let (readings, per_reading) = summary.ok_or_else(|| {
        anyhow!(
            "{} bench-storage printed no `storage: N readings, X B/reading` line (is it an older binary?)",
            exe.display()
        )
    })?;
    if ctx.output == Output::Json {
        print_json(&json!({"readings": readings, "bytes_per_reading": per_reading}))?;
    }
    Ok(())
}

/// The server's command line: `bench-storage` and the flags given.
fn server_args(args: &BenchStorageArgs) -> Vec<std::ffi::OsString> {
    let mut v: Vec<std::ffi::OsString> = vec!["bench-storage".into()];
    if let Some(n) = args.readings {
        v.extend(["--readings".into(), n.to_string().into()]);
    }
    if let Some(n) = args.tags {
        v.extend(["--tags".into(), n.to_string().into()]);
    }
    if let Some(dir) = &args.dir {
        v.extend(["--dir".into(), dir.clone().into_os_string()]);
    }
    v
}

/// (N, X) of the summary line `storage: N readings, X B/reading ...`.
fn parse_summary(line: &str) -> Option<(u64, f64)> {
    let rest = line.strip_prefix("storage: ")?;
    let (readings, rest) = rest.split_once(" readings, ")?;
    let (per, _) = rest.split_once(" B/reading")?;
    Some((readings.parse().ok()?, per.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_parsed() {
        assert_eq!(
            parse_summary("storage: 10000000 readings, 1.87 B/reading (history, all kinds)"),
            Some((10_000_000, 1.87))
        );
        assert_eq!(
            parse_summary("storage: 4 readings, 3 B/reading"),
            Some((4, 3.0))
        );
        // A signal kind's line, the header, and garbage are not it.
        assert_eq!(
            parse_summary("sine     2500000 readings: history 1.20 B/reading, log 9.00 B/reading"),
            None
        );
        assert_eq!(
            parse_summary("storage bench: 2500000 readings per kind, 1000 tags per kind"),
            None
        );
        assert_eq!(parse_summary("storage: many readings, 2 B/reading"), None);
    }

    #[test]
    fn only_the_flags_given_are_passed_on() {
        let mut args = BenchStorageArgs {
            readings: None,
            tags: None,
            dir: None,
            bifrost: Some("/x/bifrost".into()),
        };
        assert_eq!(server_args(&args), ["bench-storage"]);
        args.readings = Some(40_000);
        args.tags = Some(10);
        args.dir = Some("/tmp/st".into());
        assert_eq!(
            server_args(&args),
            [
                "bench-storage",
                "--readings",
                "40000",
                "--tags",
                "10",
                "--dir",
                "/tmp/st"
            ]
        );
    }
}
