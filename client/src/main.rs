//! `bifrostctl`: the command-line client of a Bifrost cluster.
//!
//! Config (devices, tags, import/export), data (ingest, current values,
//! history), device writes and OPC UA discovery, cluster status and
//! membership, sessions and users (`login`, `logout`, `whoami`, `user`),
//! and benchmarks (ingest; polling of a simulated plant) that can
//! start their own three-node cluster. Every command prints text tables by default and one
//! JSON document (or JSON lines, for history) with `--output json`. Errors go
//! to stderr as `error: <message>` with exit code 1. `RUST_LOG=debug` shows
//! the client's retries and leader changes.

mod ctl;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    let matches = match ctl::Cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) => {
            // Help and --version go to stdout and succeed; usage errors are
            // errors like any other: exit 1, not clap's 2.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let cli = match ctl::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(ctl::run(cli, &matches)) {
        Ok(()) => ExitCode::SUCCESS,
        // `bifrostctl history ... | head`: the reader left; not our failure.
        Err(e) if ctl::is_broken_pipe(&e) => ExitCode::SUCCESS,
        // Already reported on stdout (e.g. a write the device rejected).
        Err(e) if ctl::is_quiet_failure(&e) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
