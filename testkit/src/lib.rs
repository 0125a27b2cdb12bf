//! The one way Bifrost's end-to-end tests, fault workloads and benchmarks
//! start real `bifrost` processes and wait for them.
//!
//! - [`Cluster`]: N `bifrost serve` processes on free loopback ports, each
//!   with its data directory and log in one temporary directory that is
//!   removed afterwards (kept, with the logs' tails printed, when a test
//!   panics); kill (`-9`), pause (`SIGSTOP`/`SIGCONT`) and restart a node
//!   (optionally with extra environment, such as a crash point to arm),
//!   wait for a node to exit by itself, add a node that joins later, ask who leads, wait until a node applied
//!   an index, check that every node holds the same history
//!   ([`Cluster::check_replicas`], the replica check of `bifrost-proto`).
//!   A [`Simulator`] (`bifrost sim`) can live in the same directory.
//! - [`PythonPeer`]: a server written by others (pymodbus, asyncua, cpppo,
//!   python-snap7) run by the test venv's Python until it prints `READY`.
//! - [`Browser`]: a headless Chromium driven over WebDriver, for the web
//!   UI's tests.
//! - [`wait_until`] and friends: every wait is for a condition with a
//!   deadline, never a fixed sleep, and a timeout names what was awaited.
//!
//! Dependency direction: the kit must not depend on `bifrost-server` (it
//! runs the binary by path: tests pass `env!("CARGO_BIN_EXE_bifrost")`,
//! others use [`locate_bifrost`]) nor on `bifrost-client` (whose `bench`
//! command uses the kit); it asks nodes through `bifrost-proto`'s generated
//! gRPC stubs and plain HTTP. Traffic goes to loopback only.

mod browser;
mod cluster;
mod error;
mod http;
mod peer;
mod ports;
mod process;
mod sim;
mod wait;

pub use browser::Browser;
pub use cluster::{locate_bifrost, Cluster, ClusterOptions, Node, FAST_ELECTIONS};
pub use error::{Error, Result};
pub use http::http_get;
pub use peer::{require_python_modules, PythonPeer};
pub use ports::{connections_to, free_port, free_port_block};
pub use process::{set_die_with_parent, tail};
pub use sim::{SimOptions, Simulator, UNITS_PER_PORT};
pub use wait::{wait_until, wait_until_async, Deadline, Outcome, Step, Wait, POLL_INTERVAL};

/// What [`Cluster::check_replicas`] found.
pub use bifrost_proto::replica::Report as ReplicaReport;
/// The `Status` answer of a node, as the generated gRPC stub returns it.
pub use bifrost_proto::v1::StatusResponse;

/// The Python interpreter that runs the peers written by others (pymodbus,
/// asyncua, websockets): `BIFROST_PYTHON`, which the scripts set to the
/// venv they make (`scripts/lib.sh`), or `python3`.
pub fn python() -> String {
    std::env::var("BIFROST_PYTHON").unwrap_or_else(|_| "python3".into())
}
