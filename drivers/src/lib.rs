//! Protocol drivers for Bifrost: address parsing, pure decoding and encoding,
//! scaling and deadband, block-read planning, the async drivers themselves
//! (Modbus TCP/RTU, OPC UA, EtherNet/IP for Logix, S7) and device simulators.
//!
//! A driver turns tag specifications into [`Sample`]s and writes values; it
//! knows nothing of storage, Raft or the cluster. Of the Bifrost crates it
//! depends on `bifrost-model` only, for the value types it shares with
//! everyone. The server turns model tags into [`TagSpec`]s and decides what
//! to do with the samples.

pub mod discover;
pub mod endpoint;
pub mod enip;
pub mod modbus;
pub mod opcua;
mod reconnect;
pub mod s7;
pub mod scaling;
mod shared;
pub mod sim;
pub mod types;

pub use types::*;

use std::sync::atomic::{AtomicU64, Ordering};

static OPEN_CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// Device connections this process holds open: Modbus TCP connections and
/// serial lines, S7 connections and EtherNet/IP sessions (OPC UA's client
/// keeps its own).
pub fn open_connections() -> u64 {
    OPEN_CONNECTIONS.load(Ordering::Relaxed)
}

/// Held by an open connection: counted in [`open_connections`] until dropped.
#[derive(Debug)]
pub(crate) struct Counted(());

impl Counted {
    pub(crate) fn new() -> Counted {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        Counted(())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Driver failures that are not a per-tag quality (those become Bad samples).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The tag or device configuration is wrong (says what and where).
    #[error("config: {0}")]
    Config(String),
    #[error("not connected: {0}")]
    NotConnected(String),
    #[error("timeout: {0}")]
    Timeout(String),
    /// The device answered with an error (Modbus exception, OPC UA status).
    #[error("device rejected: {0}")]
    Rejected(String),
    #[error("io: {0}")]
    Io(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One node of a server's address space, as found by [`Driver::browse`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BrowseItem {
    /// Protocol address (for OPC UA, the NodeId such as `ns=2;s=Temperature`).
    pub address: String,
    pub name: String,
    /// `variable`, `object`, ...
    pub kind: String,
    /// Bifrost data type of a variable when it maps to one.
    pub data_type: Option<DataType>,
    pub writable: bool,
}

/// Connection health of a driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Connected,
    Connecting,
    /// Down since the last failure, with the reason.
    Down(String),
}

/// A connection to one device.
#[async_trait::async_trait]
pub trait Driver: Send {
    /// Opens (or re-opens) the connection.
    async fn connect(&mut self) -> Result<()>;
    /// Reads `tags` and returns one sample per tag, in the same order. Never
    /// fails as a whole: an unreachable device gives Bad samples with a reason.
    async fn read(&mut self, tags: &[TagSpec]) -> Vec<Sample>;
    /// Writes `value` (engineering units) to `tag`, reads it back and returns
    /// the value read back.
    async fn write(&mut self, tag: &TagSpec, value: Value) -> Result<Value>;
    /// Lists the children of `node` (or the root) of the device's address space.
    async fn browse(&mut self, node: Option<&str>) -> Result<Vec<BrowseItem>>;
    fn health(&self) -> Health;
}
