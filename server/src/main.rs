//! `bifrost`: serve a node, or run a local three-node demo cluster.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bifrost_server::settings;
use bifrost_server::transport::NodeSecurity;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing::Instrument;

/// jemalloc, not glibc malloc, for the whole process: the `jemalloc`
/// feature (on by default) makes it the Rust allocator and also exports
/// it as `malloc`/`free`, so RocksDB's C++ allocates from it too. Measured
/// with `bifrostctl bench poll --devices 10000 --tags 10` (issue 11): with
/// jemalloc for Rust only, a node committed about a fifth more than with
/// glibc; with RocksDB on it as well (medians of three runs), commits rose
/// again from 75k to 86k readings/s and peak RSS fell from 364 to 304 MB,
/// since glibc kept RocksDB's freed memtable and write-batch memory. Without the
/// feature, heap profilers that trace malloc (heaptrack) see everything.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts (`MALLOC_CONF` in the
/// environment overrides them): two arenas and small thread caches, and
/// freed pages go back to the system within a second, by a background
/// thread. Its defaults (8 arenas on 2 cores, 10 s decay) held about 60 MB
/// more per node at the same load. A small `--memory-budget` returns freed
/// pages at once instead (`bifrost_server::allocator`).
#[cfg(feature = "jemalloc")]
#[unsafe(export_name = "malloc_conf")]
static JEMALLOC_CONF: &u8 =
    &b"narenas:2,tcache_max:4096,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

#[derive(Parser)]
#[command(
    name = "bifrost",
    version,
    about = "Bifrost: a clustered, replicated tag database for plant floors"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one cluster node.
    Serve(Box<ServeArgs>),
    /// Run a Modbus TCP device simulator: device i is unit i%247+1 on port
    /// PORT+i/247; holding registers 0-1 are a u32 counter that goes up by
    /// one on every read request that covers it.
    Sim {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1)]
        devices: u32,
        /// Pattern tags per device (sine, ramp, random in rotation).
        #[arg(long, default_value_t = 10)]
        tags: u16,
        /// Devices (unit ids 1..=N) behind each port, like a gateway's.
        #[arg(long, default_value_t = 247, value_parser = clap::value_parser!(u32).range(1..=247))]
        units_per_port: u32,
    },
    /// Start a three-node cluster on loopback and print its endpoints.
    Demo {
        /// Where the nodes keep their data and logs.
        #[arg(long, default_value = "./demo-data")]
        data_dir: PathBuf,
        /// gRPC ports are BASE+1..=BASE+3, HTTP ports BASE+1001..=BASE+1003,
        /// peer ports BASE+2001..=BASE+2003.
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
    },
    /// Measure bytes on disk per reading of the simulator's signal kinds
    /// (history, Raft log, outbox), through the real storage and state
    /// machine of one node; ends with one summary line.
    BenchStorage(bifrost_server::bench_storage::BenchStorageArgs),
    /// Look at or check `serve`'s settings (flags, BIFROST_* variables, a
    /// settings file).
    Config {
        #[command(subcommand)]
        action: ConfigCmd,
    },
    /// Convert a stopped node's data directory from an older on-disk format
    /// (1: one record per reading; 2: reading ids kept as strings) to the current one, offline, keeping every
    /// reading and revision; the old state database is kept beside it.
    MigrateData {
        /// The node's data directory (as given to `serve --data-dir`).
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Seed a new node from a backup (`bifrostctl backup FILE`): the state it
    /// holds, up to its log index, becomes node ID's in a new cluster of
    /// PEERS. Run it with the same file and --peers for every node of the new
    /// cluster, then start each with `serve` (its own --peers). DATA_DIR must
    /// hold no node's data. Device secrets in the backup open only with the
    /// cluster data key that sealed them.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The new node's data directory (as `serve --data-dir` will get).
        #[arg(long)]
        data_dir: PathBuf,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Every node of the new cluster: ID=API_HOST:PORT/PEER_HOST:PORT,...
        #[arg(long, value_parser = parse_peers)]
        peers: std::collections::BTreeMap<u64, bifrost_raft::Member>,
    },
    /// After losing a majority of the cluster's voters for good, on a stopped
    /// survivor. Without --force-new-cluster: print where this node's log
    /// stands; run it on every survivor and recover the one whose last log
    /// is the greatest (term first, then index). With it: make this node the
    /// only voter of its cluster, keeping its whole log; then start it with
    /// `serve` and add nodes with `bifrostctl member add` (other survivors
    /// only with a wiped data directory and `serve --join`).
    Recover {
        /// The stopped node's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The node's id (as given to `serve --id`).
        #[arg(long)]
        id: u64,
        /// Make this node the only voter of its cluster.
        #[arg(long)]
        force_new_cluster: bool,
        /// Another survivor's last log, as its own `bifrost recover` printed
        /// it (repeat for each): the command then says which survivor to
        /// recover, and --force-new-cluster refuses this node when another's
        /// log is greater.
        #[arg(long = "survivor", value_name = "ID:TERM:INDEX")]
        survivors: Vec<bifrost_raft::recover::SurvivorLog>,
    },
    /// Write man pages (bifrost.1 and bifrost-COMMAND.1) into DIR, made
    /// from this help; the Debian package (scripts/deb.sh) ships them.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print every setting `bifrost serve` would run with, and where it comes
    /// from: flag, environment (BIFROST_*), settings file (with its line) or
    /// default. Takes serve's flags (and --config); nothing is required.
    Show {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "SERVE FLAGS"
        )]
        args: Vec<OsString>,
    },
    /// Check a settings file: every key one of serve's flags, every value one
    /// it takes. Errors name the file and the line; exit status 1.
    Check { file: PathBuf },
}

#[derive(clap::Args)]
// TLS (--tls-cert with --tls-key and --tls-ca) or --insecure: one of them.
#[command(group = clap::ArgGroup::new("security")
    .required(true)
    .multiple(false)
    .args(["tls_cert", "insecure"]))]
struct ServeArgs {
    /// Settings file (TOML): each key is one of these flags without its
    /// dashes (`data-dir = "/var/lib/bifrost"`, `node-label = ["zone=a"]`,
    /// `insecure = true`). Every flag is also the variable BIFROST_<FLAG>
    /// (BIFROST_DATA_DIR). Precedence: flag > variable > file > default;
    /// `bifrost config show` prints what wins.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id (a positive number, unique in the cluster).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), required_unless_present = "id_from_name")]
    id: Option<u64>,
    /// Take the node id from NAME's trailing number plus one, as a
    /// Kubernetes StatefulSet names its pods (`bifrost-0` is node 1): give
    /// it the pod's name. `{id}` in --tls-cert and --tls-key stands for the
    /// id, so every pod can share one settings file.
    #[arg(long, value_name = "NAME", conflicts_with = "id")]
    id_from_name: Option<String>,
    /// Directory for this node's data (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Public gRPC address, for clients.
    #[arg(long)]
    listen: SocketAddr,
    /// Peer port: Raft and node-to-node calls only (open it between the
    /// nodes, not to clients).
    #[arg(long)]
    peer_listen: SocketAddr,
    /// HTTP address for /healthz, /readyz and /metrics.
    #[arg(long)]
    http: SocketAddr,
    /// Initial cluster as ID=HOST:PORT,... A fresh node listed here forms the
    /// cluster with the others; a node not listed waits to be added.
    #[arg(long, value_parser = parse_peers, required_unless_present = "single")]
    peers: Option<std::collections::BTreeMap<u64, bifrost_raft::Member>>,
    /// A cluster of this node alone (a one-member Raft, the same storage
    /// and API), for a small line or an edge box; `bifrostctl member add`
    /// turns it into a three-node cluster later, without export/import.
    #[arg(long, conflicts_with = "peers")]
    single: bool,
    /// Never form a new cluster, even where --peers lists this node: wait to
    /// be added with `bifrostctl member add`. For a node that replaces one
    /// removed with `member rm` under the same id (its disk was wiped or
    /// replaced), or any node joining an existing cluster.
    #[arg(long, conflicts_with = "single")]
    join: bool,
    /// Addresses others use to reach this node, API_HOST:PORT/PEER_HOST:PORT
    /// (default: its entry in --peers, else --listen/--peer-listen).
    #[arg(long, value_parser = bifrost_raft::Member::parse)]
    advertise: Option<bifrost_raft::Member>,
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 500)]
    election_min_ms: u64,
    #[arg(long, default_value_t = 1000)]
    election_max_ms: u64,
    /// Build a snapshot after this many log entries.
    #[arg(long, default_value_t = 20_000)]
    snapshot_logs: u64,
    /// Log entries kept behind a snapshot.
    #[arg(long, default_value_t = 1_000)]
    keep_logs: u64,
    /// Memory for the databases' shared block cache (3/8) and memtables
    /// (3/8) and for readings applied but not yet flushed (1/4), e.g.
    /// `96MiB` or `1GiB` (at least 16 MiB). The breakdown is exported as
    /// bifrost_memory_bytes.
    #[arg(long, default_value = "96MiB", value_parser = parse_memory_budget)]
    memory_budget: usize,
    /// Free space to keep on the data directory's disk: below it the node
    /// refuses writes (clients get resource_exhausted naming the node and
    /// the figures) and, as a follower, new log entries, until space is
    /// freed; commands that free space still pass. 0: never refuse.
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    min_free_disk: usize,
    /// A member silent this long loses its devices to the others.
    #[arg(long, default_value_t = 1_000)]
    failure_timeout_ms: u64,
    /// A label this node advertises, KEY=VALUE (repeatable): devices with
    /// the label affinity.KEY=VALUE are polled only by nodes that have it
    /// (e.g. zone=cell3, serial=/dev/ttyUSB0).
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = bifrost_server::reach::parse_node_label)]
    node_labels: Vec<(String, String)>,
    /// Polls in a row in which a device does not answer before the leader
    /// moves it to another node that may poll it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    failover_after_polls: u32,
    /// How long a node that could not reach a device is passed over for it
    /// (doubling with each further failure, up to 16 times).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    failover_hold: Duration,
    /// Polls in a row in which a device does not answer before its node
    /// stops polling it for a backoff (a circuit breaker; 0: never).
    #[arg(long, default_value_t = 3)]
    breaker_after_polls: u32,
    /// The longest backoff of a device's circuit breaker (it starts at
    /// twice the device's fastest period, at least 1s, and doubles).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    breaker_max_backoff: Duration,
    /// On the leader: a member whose clock is off from its own by more than
    /// this (beyond the probe's round trip) is logged once as a warning;
    /// `bifrost_clock_offset_ms` shows every member's offset.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    max_clock_offset: Duration,
    /// Outbox bound in bytes; when full the oldest poll records are dropped
    /// (counted in bifrost_outbox_dropped_records and logged).
    #[arg(long, default_value_t = 1 << 30)]
    outbox_max_bytes: u64,
    /// Most subscriptions (WebSocket and gRPC) this node serves at once.
    #[arg(long, default_value_t = 1000)]
    max_subscriptions: usize,
    /// Most readings queued for one subscriber; a live subscriber further
    /// behind is closed with the revision to resume from.
    #[arg(long, default_value_t = 100_000)]
    watch_buffer: usize,
    /// Default interval of subscription progress messages.
    #[arg(long, default_value_t = 5_000)]
    progress_ms: u64,
    /// A WebSocket subscriber that has not taken a message within this
    /// long is disconnected (it resumes from its revision when it returns).
    #[arg(long, default_value_t = 30_000)]
    watch_send_timeout_ms: u64,
    /// Public gRPC requests a second one client connection may make (bursts
    /// up to twice that); beyond it a call is refused with
    /// resource_exhausted and a retry hint. 0: no limit.
    #[arg(long, default_value_t = 5_000)]
    max_requests_per_second: u32,
    /// An HTTP client (metrics scraper, WebSocket subscriber) that has not
    /// sent a whole request head within this long is disconnected, so that
    /// stalled or slow clients cannot hold connections open.
    #[arg(long, default_value_t = 10_000)]
    http_header_timeout_ms: u64,
    /// The node's certificate (PEM, node-N.pem from `bifrostctl certs
    /// init`), served on every port (TLS only: https, wss, gRPC over TLS)
    /// and shown to peers. Reloaded on SIGHUP or when the file changes.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    tls_key: Option<PathBuf>,
    /// The cluster CA (PEM, ca.pem): the peer port accepts only member
    /// nodes' certificates signed by it; on the public port a client may
    /// present one.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// Plain text on every port and no peer authentication: for a demo on
    /// one machine, never for a plant network. Said loudly in the log and
    /// in every /readyz answer.
    #[arg(long)]
    insecure: bool,
    /// The bootstrap admin's password (first line of the file), used when
    /// this node is the first leader of a cluster with no users. Without
    /// it, a random one-time password is printed once in the log.
    #[arg(long, conflicts_with = "insecure")]
    admin_password_file: Option<PathBuf>,
    /// How long a session token from `bifrostctl login` is valid (e.g. 12h,
    /// 30m).
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    session_ttl: Duration,
    /// Calls a second one user may make over all their connections
    /// (bursts up to twice that); beyond it a call is refused with
    /// resource_exhausted and a retry hint. 0: no limit.
    #[arg(long, default_value_t = bifrost_server::auth::DEFAULT_MAX_REQUESTS_PER_USER)]
    max_requests_per_user: u32,
    /// The cluster data key (32 bytes, base64; `data.key` from `bifrostctl
    /// certs init`, mode 0600), the same on every node: device secrets
    /// (labels such as opcua.password) are stored sealed with it. Else
    /// read from BIFROST_DATA_KEY; without either, no device may have a
    /// secret label.
    #[arg(long)]
    data_key_file: Option<PathBuf>,
    /// A query running longer than this fails.
    #[arg(long, default_value_t = 30_000)]
    query_timeout_ms: u64,
    /// Most rows a query may return.
    #[arg(long, default_value_t = 1_000_000)]
    query_max_rows: u64,
    /// Most readings and rows a query may read from storage.
    #[arg(long, default_value_t = 50_000_000)]
    query_max_scan: u64,
    /// How often the leader applies history retention.
    #[arg(long, default_value_t = 10_000)]
    retention_check_ms: u64,
    /// How often the leader compares newly completed revision ranges of
    /// history across the members (bifrost_replica_* metrics); 0: never.
    /// Each round reads at most five ranges back on every node, so on a
    /// busy plant the check trails the head (see
    /// bifrost_replica_checked_revision) instead of costing CPU.
    #[arg(long, default_value_t = 60_000)]
    replica_check_ms: u64,
    /// Revisions per range of the leader's replica check.
    #[arg(long, default_value_t = bifrost_server::replica::DEFAULT_RANGE_SIZE,
          value_parser = clap::value_parser!(u64).range(1..=bifrost_server::replica::MAX_REVISIONS_PER_CALL))]
    replica_range: u64,
    /// Send spans of queries, ingest calls, device polls and Raft proposals
    /// to the OpenTelemetry collector at this OTLP/gRPC address
    /// (http://HOST:PORT, e.g. a collector on this machine at
    /// http://127.0.0.1:4317). Off when not given.
    #[arg(long, value_parser = bifrost_server::otlp::parse_endpoint)]
    otlp_endpoint: Option<String>,
    /// The share of traces sent with --otlp-endpoint, 0 to 1.
    #[arg(long, default_value = "1", value_parser = bifrost_server::otlp::parse_ratio)]
    otlp_sample_ratio: f64,
}

/// A size in bytes, with a unit (`96MiB`, `1GiB`, `500MB`) or without.
fn parse_size(s: &str) -> Result<usize, String> {
    let b = byte_unit::Byte::parse_str(s, true).map_err(|e| format!("'{s}' is not a size: {e}"))?;
    usize::try_from(b.as_u64()).map_err(|_| format!("'{s}' is too large"))
}

/// `--memory-budget`: a size of at least `bifrost_storage::MemoryBudget::MIN`,
/// refused below it rather than quietly raised, so that the node runs
/// within what the operator set.
fn parse_memory_budget(s: &str) -> Result<usize, String> {
    let min = bifrost_storage::MemoryBudget::MIN;
    let size = parse_size(s)?;
    if size < min {
        return Err(format!(
            "'{s}' is below the smallest budget, {} MiB (RocksDB's caches and memtables \
             need that much)",
            min >> 20
        ));
    }
    Ok(size)
}

/// `bifrost.1` and one page per visible subcommand (`bifrost-serve.1`, with
/// every flag's `BIFROST_*` variable) into `dir`, by clap_mangen.
fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cmd = Cli::command().mut_subcommand("serve", settings::with_env);
    let write = |name: String, page: clap::Command| -> anyhow::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(page.name(name.clone()))
            .render(&mut out)
            .with_context(|| format!("rendering {name}.1"))?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))
    };
    for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
        write(format!("bifrost-{}", sub.get_name()), sub.clone())?;
    }
    write("bifrost".into(), cmd)
}

/// The node id: `--id`, or `--id-from-name`'s trailing number plus one.
fn node_id(id: Option<u64>, from_name: Option<&str>) -> anyhow::Result<u64> {
    if let Some(id) = id {
        return Ok(id);
    }
    let name = from_name.context("--id or --id-from-name is required")?;
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let ordinal: u64 = name[name.len() - digits..].parse().with_context(|| {
        format!("--id-from-name {name:?}: the name must end in a number (bifrost-0 is node 1)")
    })?;
    ordinal
        .checked_add(1)
        .context("--id-from-name: the number is too large")
}

/// `path` with `{id}` replaced by the node id.
fn with_id(path: PathBuf, id: u64) -> PathBuf {
    match path.to_str() {
        Some(p) if p.contains("{id}") => PathBuf::from(p.replace("{id}", &id.to_string())),
        _ => path,
    }
}

/// The initial cluster: `--peers`, or with `--single` this node alone at
/// the addresses it advertises.
fn initial_peers(
    id: u64,
    peers: Option<std::collections::BTreeMap<u64, bifrost_raft::Member>>,
    single: bool,
    advertise: &Option<bifrost_raft::Member>,
    listen: SocketAddr,
    peer_listen: SocketAddr,
) -> anyhow::Result<std::collections::BTreeMap<u64, bifrost_raft::Member>> {
    if !single {
        return peers.context("--peers is required (or --single)");
    }
    let me = match advertise {
        Some(m) => m.clone(),
        None if listen.ip().is_unspecified() || peer_listen.ip().is_unspecified() => {
            anyhow::bail!(
                "--single with --listen {listen} --peer-listen {peer_listen}: give --advertise \
                 API_HOST:PORT/PEER_HOST:PORT, the addresses nodes added later will reach it at"
            )
        }
        None => bifrost_raft::Member::new(listen.to_string(), peer_listen.to_string()),
    };
    Ok([(id, me)].into())
}

fn parse_peers(s: &str) -> Result<std::collections::BTreeMap<u64, bifrost_raft::Member>, String> {
    bifrost_server::parse_peers(s)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// `bifrost migrate-data`: converts the state under `data_dir/state`,
/// with a progress line on stderr every so often.
fn migrate_data(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use bifrost_storage::MigrationProgress as P;
    let root = data_dir.join("state");
    if !root.is_dir() {
        anyhow::bail!(
            "migrate-data: {} is not a node's data directory (it has no 'state' directory)",
            data_dir.display()
        );
    }
    let started = std::time::Instant::now();
    let done = bifrost_storage::StateStore::migrate(&root, &mut |p| {
        let (what, n) = match p {
            P::Copied { records } => ("records copied", records),
            P::Ids { ids } => ("reading ids indexed", ids),
            P::Journal { revisions } => ("revisions journaled", revisions),
            P::History { readings } => ("readings chunked", readings),
        };
        eprintln!(
            "migrate-data: {n} {what} ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    })?;
    println!(
        "migrated {} readings of {} tags (revisions up to {}) in {:.1} s; the old database is \
         kept in {}: delete it once the node runs",
        done.readings,
        done.tags,
        done.revision,
        started.elapsed().as_secs_f64(),
        done.backup.display()
    );
    Ok(())
}

/// `bifrost recover` (see `Cmd::Recover`): says where this node's log
/// ends and, given the other survivors' (`--survivor`), which one to
/// recover; with `force`, makes this node the only voter of its cluster
/// unless another survivor's log is greater.
fn recover(
    data_dir: &std::path::Path,
    id: u64,
    force: bool,
    others: &[bifrost_raft::recover::SurvivorLog],
) -> anyhow::Result<()> {
    use bifrost_raft::recover::{self, SurvivorLog};
    let what = || format!("recover: node {id} in {}", data_dir.display());
    let p = recover::inspect(data_dir).with_context(what)?;
    let own = SurvivorLog::of(id, &p);
    let chosen = recover::most_up_to_date(own, others).map_err(anyhow::Error::msg)?;
    if force {
        if chosen != own {
            anyhow::bail!("{}", recover::not_this_one(own, chosen));
        }
        let before = recover::force_new_cluster(data_dir, id).with_context(what)?;
        println!("node {id} was at: {}", position_text(&before));
        println!(
            "node {id} is now the only voter of its cluster: start it with `bifrost serve`; it \
             commits its whole log (through index {}), then add nodes with `bifrostctl member \
             add` (a former member only with an empty data directory and `serve --join`)",
            before.last_log.map_or(0, |l| l.index)
        );
        return Ok(());
    }
    println!("node {id}: {}", position_text(&p));
    println!("as a survivor for the others' `bifrost recover`: --survivor {own}");
    if others.is_empty() {
        println!(
            "compare this with every other survivor's: run `bifrost recover` again with each \
             other survivor's --survivor, or recover the one whose last log is the greatest \
             (term first, then index) with --force-new-cluster"
        );
    } else if chosen == own {
        println!(
            "recover node {id}: its last log is the greatest of the {} survivors given; run \
             again with --force-new-cluster",
            others.len() + 1
        );
    } else {
        println!("{}", recover::not_this_one(own, chosen));
    }
    Ok(())
}

/// A stopped node's [`Position`](bifrost_raft::recover::Position) for
/// `bifrost recover`'s report.
fn position_text(p: &bifrost_raft::recover::Position) -> String {
    let index = |l: &Option<bifrost_raft::LogId>| l.map_or(0, |l| l.index);
    let voters: Vec<String> = p.voters.iter().map(|v| v.to_string()).collect();
    format!(
        "last log {}; committed index {}, applied index {}; voters {}",
        p.last_log_text(),
        index(&p.committed),
        index(&p.applied),
        voters.join(", ")
    )
}

/// A reader that tells `tell` how many bytes it has read so far.
struct ReadProgress<R, F> {
    inner: R,
    read: u64,
    tell: F,
}

impl<R: std::io::Read, F: FnMut(u64)> std::io::Read for ReadProgress<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        (self.tell)(self.read);
        Ok(n)
    }
}

/// Reads `file` into a new data directory (see `Cmd::Restore`), saying how
/// far it is every few seconds.
fn restore(
    file: &std::path::Path,
    data_dir: &std::path::Path,
    id: u64,
    peers: &std::collections::BTreeMap<u64, bifrost_raft::Member>,
) -> anyhow::Result<()> {
    let f = std::fs::File::open(file).with_context(|| format!("restore: {}", file.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let started = std::time::Instant::now();
    let mut said = started;
    let progress = ReadProgress {
        inner: f,
        read: 0,
        tell: |read: u64| {
            if said.elapsed() >= Duration::from_secs(2) {
                said = std::time::Instant::now();
                eprintln!(
                    "restore: {:.1} of {:.1} MB read ({:.0} s)",
                    read as f64 / 1e6,
                    total as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                );
            }
        },
    };
    let input = std::io::BufReader::new(progress);
    let budget = bifrost_storage::MemoryBudget::new(bifrost_storage::MemoryBudget::DEFAULT);
    let done = bifrost_raft::backup::restore(input, data_dir, id, peers, &budget)
        .with_context(|| format!("restore: {} into {}", file.display(), data_dir.display()))?;
    let m = &done.manifest;
    let members: Vec<String> = done.members.iter().map(|m| m.to_string()).collect();
    println!(
        "restored node {id} in {} from {} ({} files, {:.1} MB; taken on node {} at log index {}, \
         revision {}) in {:.1} s; members {}: start each with `bifrost serve`",
        data_dir.display(),
        file.display(),
        m.files.len(),
        m.bytes() as f64 / 1e6,
        m.node,
        m.last_log_id.index,
        m.revision,
        started.elapsed().as_secs_f64(),
        members.join(", ")
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // glibc gives every thread that allocates its own 64 MiB arena; with
    // tokio's worker and blocking threads that multiplies resident memory
    // for no gain here (measured in `bench poll`: 533 -> 375 MB peak RSS).
    // SAFETY: called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

/// `serve`'s command with every flag also read from its BIFROST_* variable.
fn serve_command() -> clap::Command {
    let cmd = Cli::command();
    let serve = cmd.find_subcommand("serve").expect("a serve command");
    settings::with_env(serve.clone())
}

/// The command line, `serve`'s completed from its settings file and the
/// environment ([`settings`]); a usage error exits with status 2.
fn parse_cli() -> Cli {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_none_or(|a| a != "serve") {
        return Cli::parse_from(argv);
    }
    let fail = |msg: String| -> ! {
        eprintln!("error: {msg}");
        std::process::exit(2)
    };
    let serve = serve_command();
    let rest = &argv[2..];
    let file = settings::config_path(rest)
        .map(|p| settings::SettingsFile::load(&p, &serve))
        .transpose()
        .unwrap_or_else(|e| fail(e));
    let (merged, from_file) = settings::merged_args(file.as_ref(), rest);
    let cmd = Cli::command().mut_subcommand("serve", settings::with_env);
    let full = argv[..2].iter().cloned().chain(merged);
    match cmd.try_get_matches_from(full) {
        Ok(m) => Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit()),
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => fail(settings::explain(&e, file.as_ref(), &from_file, rest)),
    }
}

/// `bifrost config show`: each setting, its value and where it came from.
fn config_show(args: &[OsString]) -> anyhow::Result<()> {
    use clap::parser::ValueSource;
    let serve = settings::relaxed(serve_command());
    let file = settings::config_path(args)
        .map(|p| settings::SettingsFile::load(&p, &serve))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let (merged, from_file) = settings::merged_args(file.as_ref(), args);
    let m = serve
        .clone()
        .try_get_matches_from(std::iter::once(OsString::from("serve")).chain(merged))
        .map_err(|e| anyhow::anyhow!(settings::explain(&e, file.as_ref(), &from_file, args)))?;
    println!("{:<26} {:<44} SOURCE", "KEY", "VALUE");
    for a in serve.get_arguments() {
        let (Some(long), id) = (a.get_long(), a.get_id().as_str()) else {
            continue;
        };
        if matches!(long, "help" | "version") {
            continue;
        }
        let value = m.get_raw(id).map_or(String::new(), |vs| {
            let vs: Vec<_> = vs.map(|v| v.to_string_lossy().into_owned()).collect();
            vs.join(",")
        });
        let source = match (&file, m.value_source(id)) {
            (Some(f), _) if from_file.iter().any(|k| k == long) => {
                format!("file {}", f.place(long).unwrap_or_default())
            }
            (_, Some(ValueSource::CommandLine)) => "flag".into(),
            (_, Some(ValueSource::EnvVariable)) => format!("env {}", settings::env_name(long)),
            (_, Some(ValueSource::DefaultValue)) => "default".into(),
            _ => "not set".into(),
        };
        println!("{long:<26} {value:<44} {source}");
    }
    // The one secret a node takes from its environment: shown as set, never its value.
    if std::env::var_os(bifrost_server::secrets::DATA_KEY_ENV).is_some() {
        let env = bifrost_server::secrets::DATA_KEY_ENV;
        println!("{:<26} {:<44} env {env}", "(data key)", "******** (hidden)");
    }
    Ok(())
}

/// `bifrost config check FILE`.
fn config_check(path: &std::path::Path) -> anyhow::Result<()> {
    let serve = settings::relaxed(serve_command());
    let file = settings::SettingsFile::load(path, &serve).map_err(anyhow::Error::msg)?;
    let keys: Vec<String> = file.entries.keys().cloned().collect();
    let args = file.all_args();
    serve
        .try_get_matches_from(std::iter::once(OsString::from("serve")).chain(args))
        .map_err(|e| anyhow::anyhow!(settings::explain(&e, Some(&file), &keys, &[])))?;
    println!(
        "{}: {} settings, every key a flag of `bifrost serve` and every value one it takes",
        path.display(),
        keys.len()
    );
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let cli = parse_cli();
    match cli.command {
        Cmd::Config { action } => match action {
            ConfigCmd::Show { args } => config_show(&args),
            ConfigCmd::Check { file } => config_check(&file),
        },
        Cmd::Serve(mut a) => {
            let id = node_id(a.id, a.id_from_name.as_deref())?;
            a.tls_cert = a.tls_cert.map(|p| with_id(p, id));
            a.tls_key = a.tls_key.map(|p| with_id(p, id));
            let otlp = a
                .otlp_endpoint
                .clone()
                .map(|endpoint| bifrost_server::otlp::OtlpOptions {
                    endpoint,
                    sample_ratio: a.otlp_sample_ratio,
                });
            let export = bifrost_server::logging::init_node(id, otlp.as_ref())?;
            if let Some(o) = &otlp {
                tracing::info!(endpoint = %o.endpoint, sample_ratio = o.sample_ratio, "sending spans to an OpenTelemetry collector");
            }
            if let Some(file) = &a.config {
                tracing::info!(file = %file.display(), "settings file read (flags and BIFROST_* variables win over it)");
            }
            if let Some(point) = bifrost_storage::crash::armed() {
                tracing::warn!(%point, "crash point armed ({}): this node aborts when it gets there", bifrost_storage::crash::ENV);
            }
            if a.election_min_ms <= a.heartbeat_ms || a.election_max_ms <= a.election_min_ms {
                anyhow::bail!(
                    "timing: need heartbeat ({}) < election min ({}) < election max ({})",
                    a.heartbeat_ms,
                    a.election_min_ms,
                    a.election_max_ms
                );
            }
            let opts = bifrost_server::ServeOptions {
                id,
                data_dir: a.data_dir,
                listen: a.listen,
                peer_listen: a.peer_listen,
                http: a.http,
                peers: initial_peers(id, a.peers, a.single, &a.advertise, a.listen, a.peer_listen)?,
                join: a.join,
                advertise: a.advertise,
                heartbeat_ms: a.heartbeat_ms,
                election_min_ms: a.election_min_ms,
                election_max_ms: a.election_max_ms,
                snapshot_logs: a.snapshot_logs,
                keep_logs: a.keep_logs,
                memory_budget: a.memory_budget,
                min_free_disk: a.min_free_disk as u64,
                failure_timeout_ms: a.failure_timeout_ms,
                failover: bifrost_server::reach::FailoverOptions {
                    after_polls: a.failover_after_polls,
                    hold: a.failover_hold,
                },
                breaker: bifrost_server::reach::BreakerOptions {
                    after_polls: a.breaker_after_polls,
                    max: a.breaker_max_backoff,
                },
                node_labels: a.node_labels.into_iter().collect(),
                max_clock_offset: a.max_clock_offset,
                outbox_max_bytes: a.outbox_max_bytes,
                watch: bifrost_server::watch::WatchOptions {
                    max_subscriptions: a.max_subscriptions,
                    buffer: a.watch_buffer.max(1),
                    progress: Duration::from_millis(a.progress_ms.max(10)),
                    ws_send_timeout: Duration::from_millis(a.watch_send_timeout_ms.max(1)),
                },
                max_requests_per_second: a.max_requests_per_second,
                http_header_timeout: Duration::from_millis(a.http_header_timeout_ms.max(1)),
                data_key_file: a.data_key_file,
                auth: bifrost_server::auth::AuthOptions {
                    enforce: !a.insecure,
                    session_ttl: a.session_ttl,
                    admin_password_file: a.admin_password_file,
                    max_requests_per_user: a.max_requests_per_user,
                },
                security: match (a.tls_cert, a.tls_key, a.tls_ca) {
                    (Some(cert), Some(key), Some(ca)) => {
                        NodeSecurity::Tls(bifrost_server::transport::TlsOptions { cert, key, ca })
                    }
                    _ => NodeSecurity::Insecure,
                },
                query: bifrost_server::api::QueryLimits {
                    timeout: Duration::from_millis(a.query_timeout_ms),
                    max_rows: a.query_max_rows,
                    max_scan: a.query_max_scan,
                },
                retention_check: Duration::from_millis(a.retention_check_ms.max(10)),
                replica_check: bifrost_server::replica::MonitorOptions {
                    every: Duration::from_millis(a.replica_check_ms),
                    range_size: a.replica_range,
                    ..Default::default()
                },
            };
            let span = tracing::info_span!("node", id = opts.id);
            let served = bifrost_server::serve(opts, shutdown_signal())
                .instrument(span)
                .await;
            if let Some(export) = export {
                tokio::task::spawn_blocking(|| export.shutdown()).await?;
            }
            served
        }
        Cmd::Sim {
            listen,
            devices,
            tags,
            units_per_port,
        } => {
            bifrost_server::logging::init(None);
            let cfg = bifrost_drivers::sim::SimConfig {
                devices,
                tags,
                units_per_port,
                ..Default::default()
            };
            let server = bifrost_drivers::sim::SimServer::bind(listen, cfg)
                .await
                .with_context(|| format!("simulator on {listen}"))?;
            let layout = server.layout();
            let last = layout
                .last()
                .map(|d| d.endpoint.clone())
                .unwrap_or_default();
            println!(
                "simulating {devices} devices x {tags} tags on {} .. {last} (units 1-{units_per_port} per port); counter at hr:0 (u32)",
                server.local_addr()
            );
            server.run(shutdown_signal()).await?;
            Ok(())
        }
        Cmd::MigrateData { data_dir } => migrate_data(&data_dir),
        Cmd::Recover {
            data_dir,
            id,
            force_new_cluster,
            survivors,
        } => recover(&data_dir, id, force_new_cluster, &survivors),
        Cmd::Restore {
            file,
            data_dir,
            id,
            peers,
        } => restore(&file, &data_dir, id, &peers),
        Cmd::Man { dir } => write_man_pages(&dir),
        Cmd::BenchStorage(args) => {
            bifrost_server::logging::init(None);
            bifrost_server::bench_storage::run(args).await
        }
        Cmd::Demo {
            data_dir,
            base_port,
        } => {
            bifrost_server::logging::init(None);
            let exe = std::env::current_exe().context("locating the bifrost binary")?;
            let mut cluster = bifrost_server::demo::start(&exe, &data_dir, base_port)?;
            println!(
                "starting a three-node cluster in {} ...",
                data_dir.display()
            );
            bifrost_server::demo::wait_ready(&mut cluster, Duration::from_secs(60)).await?;
            println!("cluster ready.");
            let (devices, tags) = bifrost_server::demo::configure_plant(&cluster).await?;
            println!(
                "simulator at {}: {devices} Modbus devices, {tags} tags under plant/ (polled every second)",
                cluster.sim
            );
            for (i, (g, h)) in cluster.grpc.iter().zip(&cluster.http).enumerate() {
                println!(
                    "  node {}: grpc {g}  http https://{h}/metrics  log {}/node{}.log",
                    i + 1,
                    data_dir.display(),
                    i + 1
                );
            }
            println!(
                "web UI: https://{}/ (user admin, password in {}; the browser will warn: the demo's CA is its own)",
                cluster.http[0],
                cluster.admin_password_file.display()
            );
            let pki = &cluster.pki;
            println!(
                "TLS on every port; certificates in {} (CA ca.pem, user admin).",
                data_dir.join("pki").display()
            );
            println!(
                "try:  export BIFROST_CA={} BIFROST_CERT={} BIFROST_KEY={}",
                pki.ca_cert().display(),
                pki.user_cert("admin").display(),
                pki.user_key("admin").display()
            );
            println!(
                "      bifrostctl --endpoints {} status",
                cluster.grpc.join(",")
            );
            println!(
                "      bifrostctl --endpoints {} get plant/sim00000/counter plant/sim00000/sine0",
                cluster.grpc.join(",")
            );
            println!(
                "      curl --cacert {} https://{}/metrics",
                pki.ca_cert().display(),
                cluster.http[0]
            );
            println!("press Ctrl-C to stop.");
            shutdown_signal().await;
            drop(cluster);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{node_id, parse_size, with_id};
    use std::path::PathBuf;

    #[test]
    fn a_pod_name_gives_the_node_id_and_paths_take_it() {
        assert_eq!(node_id(Some(7), None).unwrap(), 7);
        assert_eq!(node_id(None, Some("bifrost-0")).unwrap(), 1);
        assert_eq!(node_id(None, Some("plant-bifrost-12")).unwrap(), 13);
        let e = node_id(None, Some("bifrost")).unwrap_err().to_string();
        assert!(e.contains("must end in a number"), "{e}");
        let p = with_id(PathBuf::from("/etc/bifrost/pki/node-{id}.pem"), 3);
        assert_eq!(p, PathBuf::from("/etc/bifrost/pki/node-3.pem"));
        let p = with_id(PathBuf::from("/etc/bifrost/node.pem"), 3);
        assert_eq!(p, PathBuf::from("/etc/bifrost/node.pem"));
    }

    #[test]
    fn sizes_take_binary_and_decimal_units_and_bad_ones_are_named() {
        assert_eq!(parse_size("96MiB"), Ok(96 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        let e = parse_size("lots").unwrap_err();
        assert!(e.contains("'lots' is not a size"), "{e}");
    }
}
