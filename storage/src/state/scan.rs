//! Read-only scans used by the query engine: history in either direction,
//! current values of many tags at once.
