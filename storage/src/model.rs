//! The records `storage` keeps. The shared data model (devices, tags,
//! readings, values, qualities and their rules) is declared once, in
//! `bifrost-model`, and re-exported here so the store's API reads in its
//! terms; only what is storage's own is defined here.

pub use bifrost_model::{
    validate_name, DataType, Deadband, Device, NewReading, Order, Protocol, Quality, QualityLevel,
    Reading, Scale, Tag, Value, MAX_NAME_LEN, MAX_READING_ID_LEN,
};
use serde::{Deserialize, Serialize};

/// Which node polls a device. `epoch` is the log index of the command that
/// gave the device to this node; it changes whenever the owner changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub node: u64,
    pub epoch: u64,
}
