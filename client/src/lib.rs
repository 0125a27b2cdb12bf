//! Rust client for a Bifrost cluster, and the library behind `bifrostctl`.
//!
//! A Bifrost cluster is three or five nodes that all serve the same public gRPC
//! API (`bifrost.v1.Bifrost`). Any node answers any request: a follower
//! forwards writes to the leader itself. This crate adds what a program on the
//! plant floor needs on top of the generated stubs in `bifrost-proto`:
//!
//! - **Leader discovery.** [`Client`] asks a node for `Status` and then sends
//!   requests straight to the leader, which saves the follower's forwarding
//!   hop. The leader may be a node that is not in the endpoint list the client
//!   was given (it joined later); its address is taken from `Status`
//!   (`HOST:PORT`) and given the client's scheme.
//! - **Plain text or TLS.** Endpoints are `HOST:PORT`; [`ClientOptions::security`]
//!   says how every node is reached: [`Security::Plain`] (`http://`, the
//!   default, for `--insecure` clusters) or [`Security::tls`] (`https://`,
//!   the servers checked against the cluster's CA, optionally presenting a
//!   client certificate). The TLS files are read when a node becomes known,
//!   and one that cannot be read is an error naming it. An endpoint written
//!   as a URL of the other scheme is refused ([`Error::InvalidEndpoint`]).
//! - **Sessions.** A cluster not run with `--insecure` wants a credential
//!   with every call but `Login`: a client certificate naming a user (TLS),
//!   or a session token. [`Client::login`] starts a session and the client
//!   (and its clones) then sends its token with every call, streams
//!   included, as `authorization: Bearer TOKEN`; a token from elsewhere is
//!   given with [`ClientOptions::token`] or [`Client::set_token`]. Users,
//!   grants ([`Grant`], [`Role`]), passwords and sessions are administered
//!   with [`Client::add_user`] and its neighbours. An `Unauthenticated`
//!   error says how to log in; `PermissionDenied` names what is missing.
//!   Neither is retried.
//! - **Retries across leader changes.** A request that fails because a node is
//!   down, unreachable, electing, or too slow is retried on the next endpoint
//!   (or the newly discovered leader) with exponential backoff, until an
//!   overall deadline. Errors that are the request's own fault
//!   (`InvalidArgument`, `NotFound`, ...) are returned at once. See
//!   [`Error::is_retryable`].
//! - **Conversions** between RFC 3339 text and the API's microsecond
//!   timestamps ([`time`]), between readings and the JSON shapes that
//!   `bifrostctl` reads and prints ([`json`]), and between a cluster's
//!   devices and tags and the config document of `export` / `import`
//!   ([`document`], with errors that name the path of the bad field).
//!
//! Retrying is safe for ingest, because the server stores a reading id once
//! and acknowledges replays as duplicates, and for [`Client::import`] and
//! [`Client::browse`], which create or replace. It is *not* transparent for
//! `create_only` puts: if the first attempt committed but its answer was lost,
//! the retry answers `AlreadyExists`.
//!
//! **Device writes are not retried once sent.** [`Client::write_tag`] asks
//! the node that polls the device to write the value, read it back and
//! report the outcome (`ok`, `rejected` with the device's reason, or
//! `timeout`). A write is not idempotent in general (think "start the next
//! batch"), so the client repeats it only when it cannot have reached a node:
//! the leader discovery before it failed, or the connection was never
//! established. A failure after the request was sent, even `DeadlineExceeded`
//! or `Unavailable`, is returned as [`Error::Unconfirmed`]; whether the
//! device took the value is then unknown, so read the tag before writing
//! again.
//!
//! **Replica check.** [`Client::check_replicas`] asks every member of the
//! cluster, each on its own, for the digests of its history by revision
//! range and compares them ([`replica`], re-exported from `bifrost-proto`,
//! where the test kit uses it too): "replicas agree through revision N", or
//! the first range that differs with each node's count and digest.
//!
//! Cluster status ([`Client::status`]) includes which node polls each
//! device (`assignments`, with the epoch of the assignment) and the highest
//! reading revision applied on the answering node (`revision`): its growth is
//! the cluster's committed readings.
//!
//! The library depends only on `bifrost-proto` and `bifrost-model` (plain
//! data: grants and roles) among Bifrost crates. It must not depend on
//! `storage`, `raft` or `server`: clients are built and shipped without
//! RocksDB.

pub mod client;
pub mod document;
pub mod error;
pub mod json;
pub mod time;

pub use client::{
    Client, ClientOptions, HistoryQuery, QueryRows, ReadingStream, WatchEvent, Watcher,
};
pub use error::{Error, Result};

/// A role on tags, as [`Client::add_user`] and [`Client::change_grants`]
/// take it, re-exported from `bifrost-model`.
pub use bifrost_model::{Grant, Role};

/// How connections are secured ([`ClientOptions::security`]), re-exported
/// from `bifrost-proto` so users of this crate need not depend on it.
pub use bifrost_proto::channel::{ClientTls, Security};

/// The replica check: [`replica::compare`], [`replica::Report`] and the
/// options of [`Client::check_replicas`].
pub use bifrost_proto::replica;
/// The generated public API types (`bifrost.v1`), re-exported so users of this
/// crate need not depend on `bifrost-proto` themselves.
pub use bifrost_proto::v1 as proto;
pub use proto::Consistency;
