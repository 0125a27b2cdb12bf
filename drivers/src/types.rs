//! What a driver is handed and what it hands back. The value types
//! themselves (data type, byte order, scale, deadband, value, quality) are
//! `bifrost-model`'s, re-exported here because they are part of the driver
//! API; only the poll loop's own shapes are defined here.

pub use bifrost_model::{DataType, Deadband, Order, Quality, QualityLevel, Scale, Value};
use serde::{Deserialize, Serialize};

/// What a driver needs to know about one tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagSpec {
    pub name: String,
    /// Protocol notation (`hr:40001`, `holding:0`, `ns=2;s=Temperature`).
    pub address: String,
    pub data_type: DataType,
    pub byte_order: Order,
    pub word_order: Order,
    pub scale: Option<Scale>,
    pub deadband: Option<Deadband>,
    /// Registers a string spans.
    pub length: u32,
    pub writable: bool,
}

impl TagSpec {
    /// A writable tag at `address` named after it, with the defaults of
    /// `tag add`: big-endian bytes and words, no scale, no deadband.
    pub fn new(address: &str, data_type: DataType) -> TagSpec {
        TagSpec {
            name: address.into(),
            address: address.into(),
            data_type,
            byte_order: Order::Big,
            word_order: Order::Big,
            scale: None,
            deadband: None,
            length: 0,
            writable: true,
        }
    }
}

impl From<&bifrost_model::Tag> for TagSpec {
    fn from(t: &bifrost_model::Tag) -> TagSpec {
        TagSpec {
            name: t.name.clone(),
            address: t.address.clone(),
            data_type: t.data_type,
            byte_order: t.byte_order,
            word_order: t.word_order,
            scale: t.scale,
            deadband: t.deadband,
            length: t.length,
            writable: t.writable,
        }
    }
}

/// One read of one tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `None` when the quality is Bad and nothing was read.
    pub value: Option<Value>,
    pub quality: Quality,
    /// Source timestamp from the device when it gives one (OPC UA), in
    /// microseconds since the epoch; the poller's clock otherwise.
    pub source_ts_us: Option<i64>,
}
