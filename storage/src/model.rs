//! The records `storage` keeps. The shared data model (devices, tags,
//! readings, values, qualities, assignments and their rules) is declared
//! once, in `bifrost-model`, and re-exported here so the store's API reads in
//! its terms.

pub use bifrost_model::{
    user::MAX_SESSIONS_PER_USER, validate_name, Assignment, AuditRecord, DataType, Deadband,
    Device, Grant, NewReading, Order, Protocol, Quality, QualityLevel, Reading, Role, Scale,
    Session, Tag, User, Value, MAX_NAME_LEN, MAX_READING_ID_LEN,
};
