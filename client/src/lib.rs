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
//!   was given (it joined later); its address is taken from `Status` as is.
//! - **Retries across leader changes.** A request that fails because a node is
//!   down, unreachable, electing, or too slow is retried on the next endpoint
//!   (or the newly discovered leader) with exponential backoff, until an
//!   overall deadline. Errors that are the request's own fault
//!   (`InvalidArgument`, `NotFound`, ...) are returned at once. See
//!   [`Error::is_retryable`].
//! - **Conversions** between RFC 3339 text and the API's microsecond
//!   timestamps ([`time`]), and between readings and the JSON shapes that
//!   `bifrostctl` reads and prints ([`json`]).
//!
//! Retrying is safe for ingest, because the server stores a reading id once
//! and acknowledges replays as duplicates. It is *not* transparent for
//! `create_only` puts: if the first attempt committed but its answer was lost,
//! the retry answers `AlreadyExists`.
//!
//! This crate depends only on `bifrost-proto` among Bifrost crates. It must not
//! depend on `storage`, `raft` or `server`: clients are built and shipped
//! without RocksDB.

pub mod client;
pub mod document;
pub mod error;
pub mod json;
pub mod time;

pub use client::{Client, ClientOptions, HistoryQuery, ReadingStream};
pub use error::{Error, Result};

/// The generated public API types (`bifrost.v1`), re-exported so users of this
/// crate need not depend on `bifrost-proto` themselves.
pub use bifrost_proto::v1 as proto;
pub use proto::Consistency;
