//! Bifrost's data model, declared once: devices and their protocols, tags
//! with their data type, byte order, scaling and deadband, values and how
//! they are coerced to a tag's type, qualities with reasons, readings, the
//! pure validation rules for names and records, tag-name patterns (globs
//! and `LIKE`), the access policy (roles, permissions, grants), and the
//! wall-clock and RFC 3339 time helpers.
//!
//! Every other crate speaks these types: `storage` persists them, `drivers`
//! produce and consume values and qualities, `bifrost-proto` converts them to
//! and from the wire, `server` and `client` work with them. So this crate sits
//! at the bottom of the crate map and depends on no other Bifrost crate. It
//! must not depend on RocksDB, tonic/prost, tokio or anything that does I/O:
//! everything here is plain data and pure functions.
//!
//! Persisted layout: `storage` writes these types with postcard, which
//! encodes struct fields in declaration order and enum variants by position.
//! Field order and variant order of [`Device`], [`Tag`], [`NewReading`],
//! [`Reading`], [`Role`], [`Permission`], [`Grant`], [`User`], [`Session`] and everything inside
//! them are therefore part of the on-disk and Raft-log format: append, never
//! reorder (the `layout` tests pin the bytes). Serde *names* do not reach
//! postcard, so the lower-case spellings used by JSON documents are free to
//! choose.

pub mod access;
mod audit;
mod device;
mod name;
pub mod pattern;
pub mod poll;
mod reading;
mod tag;
pub mod time;
pub mod user;
mod value;

pub use access::{Access, AccessError, Denied, Grant, Permission, Role};
pub use audit::AuditRecord;
pub use device::{Assignment, Device, Protocol};
pub use name::{validate_name, MAX_NAME_LEN};
pub use reading::{NewReading, Quality, QualityLevel, Reading, MAX_READING_ID_LEN};
pub use tag::{Deadband, Order, Scale, Tag};
pub use time::now_us;
pub use user::{validate_user_name, Session, User};
pub use value::{DataType, Value};

/// A record or name that breaks one of the model's rules; the message says
/// what and where (`tag 'a/b': address is empty`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub message: String,
}

impl Invalid {
    pub fn new(message: impl Into<String>) -> Invalid {
        Invalid {
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod layout;
