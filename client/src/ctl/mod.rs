//! Command-line surface of `bifrostctl` and dispatch to the command modules.
//!
//! `--endpoints`, `--output` and the TLS flags `--ca`, `--cert`, `--key`
//! ([`tls`]) are global (accepted before or after the subcommand). With
//! `--ca` every node, including a leader learnt from the cluster, is reached
//! over TLS (`https://`); without it, in plain text. `--timeout` (overall
//! time budget of each call, retries included) is accepted before the
//! subcommand, and after it on every command except `device add`, where
//! `--timeout` is the device's poll timeout.
//!
//! Exit status: 0 on success, 1 on any error (message on stderr as
//! `error: ...`). `write` prints its outcome on stdout in every case and
//! exits 1 unless the outcome is `ok`; `check replicas` prints its report
//! and exits 1 when the nodes' histories differ.

mod bench;
mod certs;
mod check;
mod cluster;
mod config;
mod data;
mod flags;
mod output;
mod stream;
mod tls;
mod transfer;
mod write;

use std::time::Duration;

use bifrost_client::{Client, ClientOptions, Consistency, Security};
use clap::{parser::ValueSource, ArgMatches, Args, Parser, Subcommand, ValueEnum};

pub use output::Output;

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Debug)]
#[command(
    name = "bifrostctl",
    version,
    about = "Command-line client of a Bifrost cluster"
)]
pub struct Cli {
    /// Cluster nodes as HOST:PORT,HOST:PORT,... Any node will do; the client
    /// finds the leader itself. Reached over TLS with --ca.
    #[arg(
        long,
        global = true,
        env = "BIFROST_ENDPOINTS",
        value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS
    )]
    pub endpoints: Vec<String>,

    /// Output format. `json` prints one JSON document per command (JSON lines
    /// for history).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Give up on a call after this long, retries across leader changes
    /// included (e.g. 30s, 2m) [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub tls: tls::TlsArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the leader, Raft indexes and members.
    Status(Common),
    /// Create, list and delete devices.
    #[command(subcommand)]
    Device(config::DeviceCmd),
    /// Create, list and delete tags.
    #[command(subcommand)]
    Tag(config::TagCmd),
    /// Store readings from a JSON-lines file (or - for stdin).
    Ingest(data::IngestArgs),
    /// Current value of tags.
    Get(data::GetArgs),
    /// Readings of one tag over a time range.
    History(data::HistoryArgs),
    /// Write a value to a device through a tag; prints the outcome and
    /// exits 1 unless it is ok.
    Write(write::WriteArgs),
    /// List an OPC UA server's variables; optionally create tags from them.
    Browse(write::BrowseArgs),
    /// Create or replace devices and tags from a JSON document (all or
    /// nothing).
    Import(transfer::ImportArgs),
    /// Write all devices and tags as one JSON document, for `import`.
    Export(transfer::ExportArgs),
    /// Add or remove cluster members.
    #[command(subcommand)]
    Member(cluster::MemberCmd),
    /// Run a SQL query (see the README for the supported subset).
    Query(stream::QueryArgs),
    /// Print committed readings as they arrive, one JSON line each;
    /// reconnects to another node from the last revision when one fails.
    Watch(stream::WatchArgs),
    /// Show or set how long history is kept.
    Retention(stream::RetentionArgs),
    /// Consistency checks of the cluster.
    #[command(subcommand)]
    Check(check::CheckCmd),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Make the cluster's TLS certificates (offline, in a directory).
    #[command(subcommand)]
    Certs(certs::CertsCmd),
}

/// Options every command (but `device add`) takes after the subcommand.
#[derive(Args, Debug, Clone, Default)]
pub struct Common {
    /// Give up on a call after this long, retries included [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// Read consistency as a flag value.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsistencyArg {
    /// Sees every acknowledged write (asks the leader).
    #[default]
    Linearizable,
    /// This node's state; fastest, may be stale.
    Local,
    /// The leader's state without a quorum round.
    Leader,
}

impl From<ConsistencyArg> for Consistency {
    fn from(c: ConsistencyArg) -> Self {
        match c {
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::Local => Consistency::Local,
            ConsistencyArg::Leader => Consistency::Leader,
        }
    }
}

/// What a command needs from the global flags.
pub struct Ctx {
    pub endpoints: Vec<String>,
    pub output: Output,
    pub timeout: Duration,
    /// `--endpoints` was given on the command line (not just defaulted or
    /// taken from the environment).
    pub endpoints_explicit: bool,
    /// Plain text, or TLS from `--ca` (files checked).
    pub security: Security,
}

impl Ctx {
    /// A client of the cluster at `--endpoints`, secured as the flags say.
    pub fn client(&self) -> anyhow::Result<Client> {
        client_for(self.endpoints.clone(), self.timeout, self.security.clone())
    }
}

/// A client of the nodes at `endpoints`, giving up on a call after
/// `timeout`, reaching them as `security` says.
pub fn client_for(
    endpoints: Vec<String>,
    timeout: Duration,
    security: Security,
) -> anyhow::Result<Client> {
    let defaults = ClientOptions::default();
    let opts = ClientOptions {
        deadline: timeout,
        request_timeout: defaults.request_timeout.min(timeout),
        security,
        ..defaults
    };
    Client::connect_with(endpoints, opts).map_err(|e| {
        let flags = match e {
            bifrost_client::Error::Tls { .. } => "--ca, --cert, --key",
            _ => "--endpoints",
        };
        anyhow::Error::new(e).context(flags)
    })
}

pub async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    let leaf_timeout = match &cli.command {
        Command::Status(c) => c.timeout,
        Command::Device(d) => d.timeout(),
        Command::Tag(t) => t.timeout(),
        Command::Ingest(a) => a.common.timeout,
        Command::Get(a) => a.common.timeout,
        Command::History(a) => a.common.timeout,
        Command::Write(a) => a.common.timeout,
        Command::Browse(a) => a.common.timeout,
        Command::Import(a) => a.common.timeout,
        Command::Export(a) => a.common.timeout,
        Command::Member(m) => m.timeout(),
        Command::Query(a) => a.common.timeout,
        Command::Watch(a) => a.common.timeout,
        Command::Retention(a) => a.common.timeout,
        Command::Check(c) => c.timeout(),
        Command::Bench(b) => b.timeout(),
        Command::Certs(_) => None,
    };
    let security = match &cli.command {
        // Makes the files offline; asks no node (and BIFROST_CA may name
        // the CA it is about to write).
        Command::Certs(_) => Security::Plain,
        _ => cli.tls.security()?,
    };
    let ctx = Ctx {
        endpoints: cli.endpoints,
        output: cli.output,
        timeout: leaf_timeout.or(cli.timeout).unwrap_or(DEFAULT_TIMEOUT),
        endpoints_explicit: given_on_command_line(matches, "endpoints"),
        security,
    };
    match cli.command {
        Command::Status(_) => cluster::status(&ctx).await,
        Command::Device(cmd) => config::device(&ctx, cmd).await,
        Command::Tag(cmd) => config::tag(&ctx, cmd).await,
        Command::Ingest(args) => data::ingest(&ctx, args).await,
        Command::Get(args) => data::get(&ctx, args).await,
        Command::History(args) => data::history(&ctx, args).await,
        Command::Write(args) => write::write(&ctx, args).await,
        Command::Browse(args) => write::browse(&ctx, args).await,
        Command::Import(args) => transfer::import(&ctx, args).await,
        Command::Export(args) => transfer::export(&ctx, args).await,
        Command::Member(cmd) => cluster::member(&ctx, cmd).await,
        Command::Query(args) => stream::query(&ctx, args).await,
        Command::Watch(args) => stream::watch(&ctx, args).await,
        Command::Retention(args) => stream::retention(&ctx, args).await,
        Command::Check(cmd) => check::check(&ctx, cmd).await,
        Command::Bench(cmd) => bench::run(&ctx, cmd).await,
        Command::Certs(cmd) => certs::certs(&ctx, cmd),
    }
}

/// Whether a (global) argument was typed on the command line at any level.
fn given_on_command_line(m: &ArgMatches, id: &str) -> bool {
    if m.value_source(id) == Some(ValueSource::CommandLine) {
        return true;
    }
    m.subcommand()
        .is_some_and(|(_, sub)| given_on_command_line(sub, id))
}

/// A failure the command has already reported on stdout (a device write
/// whose outcome is not ok): exit 1 without an `error:` line.
#[derive(Debug)]
pub struct QuietFailure;

impl std::fmt::Display for QuietFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed (reported above)")
    }
}

impl std::error::Error for QuietFailure {}

pub fn is_quiet_failure(e: &anyhow::Error) -> bool {
    e.downcast_ref::<QuietFailure>().is_some()
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<(Cli, ArgMatches), clap::Error> {
        let m = Cli::command().try_get_matches_from(args)?;
        let cli = <Cli as clap::FromArgMatches>::from_arg_matches(&m)?;
        Ok((cli, m))
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_before_and_after_the_subcommand() {
        for args in [
            &[
                "bifrostctl",
                "--output",
                "json",
                "--endpoints",
                "a:1,b:2",
                "status",
            ][..],
            &[
                "bifrostctl",
                "status",
                "--output",
                "json",
                "--endpoints",
                "a:1,b:2",
            ][..],
        ] {
            let (cli, m) = parse(args).unwrap();
            assert_eq!(cli.output, Output::Json);
            assert_eq!(cli.endpoints, vec!["a:1", "b:2"]);
            assert!(given_on_command_line(&m, "endpoints"), "{args:?}");
        }
        let (cli, m) = parse(&["bifrostctl", "status"]).unwrap();
        assert_eq!(cli.output, Output::Text);
        assert!(!given_on_command_line(&m, "endpoints"));
    }

    #[test]
    fn device_add_timeout_is_the_device_timeout_not_the_call_timeout() {
        let (cli, _) = parse(&[
            "bifrostctl",
            "--timeout",
            "5s",
            "device",
            "add",
            "p1",
            "--protocol",
            "modbus-tcp",
            "--endpoint",
            "10.0.0.5:502",
            "--timeout",
            "750ms",
        ])
        .unwrap();
        assert_eq!(cli.timeout, Some(Duration::from_secs(5)));
        match cli.command {
            Command::Device(config::DeviceCmd::Add(a)) => {
                assert_eq!(a.timeout, Duration::from_millis(750));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn call_timeout_accepted_after_other_subcommands() {
        let (cli, _) = parse(&["bifrostctl", "get", "a", "b", "--timeout", "2s"]).unwrap();
        match cli.command {
            Command::Get(g) => {
                assert_eq!(g.common.timeout, Some(Duration::from_secs(2)));
                assert_eq!(g.tags, vec!["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
