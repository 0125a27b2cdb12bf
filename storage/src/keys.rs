//! Key encodings. All integers are big-endian so that RocksDB's bytewise order
//! is numeric order.
//!
//! Node database (`NodeStore`):
//! * `raft_log`:  `index: u64`                      -> encoded entry (opaque)
//! * `raft_meta`: ASCII name (`vote`, `purged`, ...) -> opaque bytes
//! * `outbox`:    `seq: u64`                        -> encoded reading batch
//!
//! State database (`StateStore`):
//! * `devices`:   device name (UTF-8)               -> `Device`
//! * `tags`:      tag name (UTF-8)                  -> `Tag`
//! * `current`:   `tag_id: u64`                     -> revision + current reading
//! * `segments`:  `h | first revision: u64` -> segment header (last revision,
//!   readings, tag merged below); `b | first revision | last tag: u64 |
//!   ordinal: u32` -> one block of a flush's readings, all tags (see
//!   `state/segments.rs`)
//! * `chunks`:    `tag_id: u64 | min ts: i64 (sign bit flipped) | max revision: u64`
//!   -> one chunk (`bifrost-chunk`); a time range of one tag is one
//!   contiguous scan (see `state/chunks.rs`)
//! * `runs`:      `tag_id: u64 | max revision: u64`  -> the chunk's min ts, its
//!   and its run's lowest revision, reading count, run level
//! * `journal`:   `first revision: u64`             -> tag ids of consecutive
//!   revisions and their time span
//! * `ingest_ids`: ingested reading id (UTF-8)     -> minute stored: `u32`
//!   (see `state/ingest_ids.rs`)
//! * `requests`:  request id (UTF-8)               -> `index: u64` + opaque result
//! * `requests_by_index`: `index: u64 | request id` -> empty (to forget old ones)
//! * `meta`:      ASCII name (`applied`, `revision`, `next_tag_id`, ...) -> bytes;
//!   also users, sessions and audit records under `user/`, `session/` and
//!   `audit/` (see `state/users.rs`, `state/audit.rs`)

pub fn u64_key(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

pub fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Maps an i64 onto a u64 with the same order (flip the sign bit).
pub fn ordered_i64(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

pub fn from_ordered_i64(v: u64) -> i64 {
    (v ^ (1 << 63)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_i64_preserves_order() {
        let vals = [i64::MIN, -1, 0, 1, i64::MAX];
        for w in vals.windows(2) {
            assert!(ordered_i64(w[0]).to_be_bytes() < ordered_i64(w[1]).to_be_bytes());
            assert_eq!(from_ordered_i64(ordered_i64(w[0])), w[0]);
        }
    }
}
