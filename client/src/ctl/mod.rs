//! Command-line surface of `bifrostctl` and dispatch to the command modules.
//!
//! `--endpoints`, `--output`, `--token` and the TLS flags `--ca`, `--cert`,
//! `--key` ([`tls`]) are global (accepted before or after the subcommand). With
//! `--ca` every node, including a leader learnt from the cluster, is reached
//! over TLS (`https://`); without it, in plain text. `--timeout` (overall
//! time budget of each call, retries included) is accepted before the
//! subcommand, and after it on every command except `device add`, where
//! `--timeout` is the device's poll timeout.
//!
//! Credentials: a cluster not run with `--insecure` wants a user
//! certificate (`--cert`/`--key`) or a session token with every call.
//! `bifrostctl login --user NAME [--password-file FILE]` starts a session
//! and keeps it in the session file ([`session`]: `$BIFROST_SESSION_FILE`,
//! else `$XDG_CONFIG_HOME/bifrost/session`, else
//! `$HOME/.config/bifrost/session`, mode 0600); `logout` ends it and
//! deletes the file; `whoami` shows the user, how it was recognised and its
//! grants. Every command that asks the cluster sends the token of
//! `--token` (or `BIFROST_TOKEN`), else that of the session file unless it
//! has expired (then a one-line note), else none. Passwords come from a
//! file, else `BIFROST_PASSWORD` (`BIFROST_NEW_PASSWORD` for a new one),
//! else the terminal, without echo ([`users`]).
//!
//! Users (administrators): `user add NAME --role ROLE [--tags GLOB]...`,
//! `user rm NAME`, `user list`, `user grant NAME ROLE [--tags GLOB]...`,
//! `user revoke NAME ROLE [--tags GLOB]...`, `user passwd [NAME]` (without
//! NAME: one's own, giving the old one) and `user logout NAME` (ends its
//! sessions).
//!
//! Exit status: 0 on success, 1 on any error (message on stderr as
//! `error: ...`). `write` prints its outcome on stdout in every case and
//! exits 1 unless the outcome is `ok`; `check replicas` prints its report
//! and exits 1 when the nodes' histories differ.

mod backup;
mod bench;
mod certs;
mod check;
mod cluster;
mod config;
mod data;
mod discover;
mod flags;
mod output;
mod secrets;
mod session;
mod stream;
mod tls;
mod transfer;
mod users;
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

    /// Session token to send with every call [default: that of the session
    /// file of `bifrostctl login`, if it has not expired].
    #[arg(
        long,
        global = true,
        env = "BIFROST_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<session::Secret>,

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
    /// Look for devices (OPC UA servers, Modbus TCP, EtherNet/IP, S7) at
    /// given addresses from a node; optionally add them as devices.
    Discover(discover::DiscoverArgs),
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
    /// Back up the replicated state to a file, from the node asked, while
    /// writes go on (`bifrost restore` seeds a new cluster from it).
    Backup(backup::BackupArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Make the cluster's TLS certificates (offline, in a directory).
    #[command(subcommand)]
    Certs(certs::CertsCmd),
    /// Start a session and keep its token in the session file.
    Login(users::LoginArgs),
    /// End the session and delete the session file.
    Logout(Common),
    /// Show who the cluster takes you for, and your grants.
    Whoami(Common),
    /// Add, list and remove users; grants, passwords, sessions.
    #[command(subcommand)]
    User(users::UserCmd),
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
    /// Session token sent with every call, from `--token` or the session
    /// file.
    pub token: Option<String>,
}

impl Ctx {
    /// A client of the cluster at `--endpoints`, secured as the flags say.
    pub fn client(&self) -> anyhow::Result<Client> {
        client_for(
            self.endpoints.clone(),
            self.timeout,
            self.security.clone(),
            self.token.clone(),
        )
    }
}

/// A client of the nodes at `endpoints`, giving up on a call after
/// `timeout`, reaching them as `security` says, sending `token`.
pub fn client_for(
    endpoints: Vec<String>,
    timeout: Duration,
    security: Security,
    token: Option<String>,
) -> anyhow::Result<Client> {
    let defaults = ClientOptions::default();
    let opts = ClientOptions {
        deadline: timeout,
        request_timeout: defaults.request_timeout.min(timeout),
        security,
        token,
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
        Command::Discover(a) => a.common.timeout,
        Command::Import(a) => a.common.timeout,
        Command::Export(a) => a.common.timeout,
        Command::Member(m) => m.timeout(),
        Command::Query(a) => a.common.timeout,
        Command::Watch(a) => a.common.timeout,
        Command::Retention(a) => a.common.timeout,
        Command::Check(c) => c.timeout(),
        Command::Backup(a) => a.common.timeout,
        Command::Bench(b) => b.timeout(),
        Command::Certs(_) => None,
        Command::Login(a) => a.common.timeout,
        Command::Logout(c) | Command::Whoami(c) => c.timeout,
        Command::User(u) => u.timeout(),
    };
    let security = match &cli.command {
        // Makes the files offline; asks no node (and BIFROST_CA may name
        // the CA it is about to write).
        Command::Certs(_) => Security::Plain,
        _ => cli.tls.security()?,
    };
    let token = match &cli.command {
        // Asks no node; starts a session of its own.
        Command::Certs(_) | Command::Login(_) => None,
        _ => session::command_token(
            cli.token,
            session::default_path().as_deref(),
            bifrost_client::time::now_us(),
            &mut |note| eprintln!("note: {note}"),
        ),
    };
    let ctx = Ctx {
        endpoints: cli.endpoints,
        output: cli.output,
        timeout: leaf_timeout.or(cli.timeout).unwrap_or(DEFAULT_TIMEOUT),
        endpoints_explicit: given_on_command_line(matches, "endpoints"),
        security,
        token,
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
        Command::Discover(args) => discover::discover(&ctx, args).await,
        Command::Import(args) => transfer::import(&ctx, args).await,
        Command::Export(args) => transfer::export(&ctx, args).await,
        Command::Member(cmd) => cluster::member(&ctx, cmd).await,
        Command::Query(args) => stream::query(&ctx, args).await,
        Command::Watch(args) => stream::watch(&ctx, args).await,
        Command::Retention(args) => stream::retention(&ctx, args).await,
        Command::Check(cmd) => check::check(&ctx, cmd).await,
        Command::Backup(args) => backup::backup(&ctx, args).await,
        Command::Bench(cmd) => bench::run(&ctx, cmd).await,
        Command::Certs(cmd) => certs::certs(&ctx, cmd),
        Command::Login(args) => users::login(&ctx, args).await,
        Command::Logout(_) => users::logout(&ctx).await,
        Command::Whoami(_) => users::whoami(&ctx).await,
        Command::User(cmd) => users::user(&ctx, cmd).await,
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

    fn user_cmd(args: &[&str]) -> users::UserCmd {
        match parse(args).unwrap().0.command {
            Command::User(u) => u,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn login_takes_a_user_and_a_password_file() {
        let (cli, _) = parse(&[
            "bifrostctl",
            "login",
            "--user",
            "ann",
            "--password-file",
            "/p/pw",
            "--timeout",
            "3s",
        ])
        .unwrap();
        match cli.command {
            Command::Login(a) => {
                assert_eq!(a.user, "ann");
                assert_eq!(a.password_file.as_deref(), Some("/p/pw".as_ref()));
                assert_eq!(a.common.timeout, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
        if std::env::var_os("BIFROST_USER").is_none() {
            let e = parse(&["bifrostctl", "login"]).unwrap_err().to_string();
            assert!(e.contains("--user"), "{e}");
        }
    }

    #[test]
    fn the_token_is_global_from_bifrost_token_and_not_shown() {
        for args in [
            &["bifrostctl", "--token", "t0k", "whoami"][..],
            &["bifrostctl", "whoami", "--token", "t0k"][..],
            &["bifrostctl", "user", "list", "--token", "t0k"][..],
        ] {
            let (cli, _) = parse(args).unwrap();
            assert_eq!(cli.token, Some(session::Secret("t0k".into())), "{args:?}");
            assert!(!format!("{cli:?}").contains("t0k"));
        }
        let cmd = Cli::command();
        let token = cmd.get_arguments().find(|a| a.get_id() == "token").unwrap();
        assert_eq!(token.get_env(), Some(std::ffi::OsStr::new("BIFROST_TOKEN")));
        assert!(token.is_hide_env_values_set());
        let (cli, _) = parse(&["bifrostctl", "logout"]).unwrap();
        assert!(
            matches!(cli.command, Command::Logout(_)),
            "{:?}",
            cli.command
        );
    }

    #[test]
    fn user_add_takes_one_role_and_its_tags() {
        use bifrost_model::Role;
        let args = [
            "bifrostctl",
            "user",
            "add",
            "bob",
            "--role",
            "operator",
            "--tags",
            "line1/**",
            "--tags",
            "line2/*",
            "--password-file",
            "pw",
        ];
        match user_cmd(&args) {
            users::UserCmd::Add(a) => {
                assert_eq!((a.name.as_str(), a.role), ("bob", Role::Operator));
                assert_eq!(a.tags, ["line1/**", "line2/*"]);
                assert_eq!(a.password_file.as_deref(), Some("pw".as_ref()));
            }
            other => panic!("{other:?}"),
        }
        let e = parse(&["bifrostctl", "user", "add", "bob", "--role", "root"]).unwrap_err();
        assert!(e.to_string().contains("root"), "{e}");
        assert!(
            parse(&["bifrostctl", "user", "add", "bob"]).is_err(),
            "--role is required"
        );
    }

    #[test]
    fn user_grant_and_revoke_take_a_role_and_tags() {
        use bifrost_model::Role;
        let args = [
            "bifrostctl",
            "user",
            "grant",
            "bob",
            "engineer",
            "--tags",
            "a/*",
        ];
        match user_cmd(&args) {
            users::UserCmd::Grant(a) => {
                assert_eq!((a.name.as_str(), a.role), ("bob", Role::Engineer));
                assert_eq!(a.tags, ["a/*"]);
            }
            other => panic!("{other:?}"),
        }
        match user_cmd(&["bifrostctl", "user", "revoke", "bob", "viewer"]) {
            users::UserCmd::Revoke(a) => {
                assert_eq!(a.role, Role::Viewer);
                assert!(a.tags.is_empty());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_passwd_rm_list_and_logout_parse() {
        match user_cmd(&["bifrostctl", "user", "passwd"]) {
            users::UserCmd::Passwd(a) => assert_eq!(a.name, None),
            other => panic!("{other:?}"),
        }
        let args = [
            "bifrostctl",
            "user",
            "passwd",
            "bob",
            "--password-file",
            "new",
            "--old-password-file",
            "old",
        ];
        match user_cmd(&args) {
            users::UserCmd::Passwd(a) => {
                assert_eq!(a.name.as_deref(), Some("bob"));
                assert_eq!(a.password_file.as_deref(), Some("new".as_ref()));
                assert_eq!(a.old_password_file.as_deref(), Some("old".as_ref()));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            user_cmd(&["bifrostctl", "user", "rm", "bob"]),
            users::UserCmd::Rm(a) if a.name == "bob"
        ));
        assert!(matches!(
            user_cmd(&["bifrostctl", "user", "logout", "bob"]),
            users::UserCmd::Logout(a) if a.name == "bob"
        ));
        let list = user_cmd(&["bifrostctl", "user", "list", "--consistency", "local"]);
        assert!(matches!(
            list,
            users::UserCmd::List(a) if a.consistency == ConsistencyArg::Local
        ));
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
