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
//! * `current`:   `tag_id: u64`                     -> `StoredReading` + revision
//! * `history`:   `tag_id: u64 | ts: i64 (sign bit flipped) | revision: u64`
//!   -> `StoredReading`; ordered by tag, then time, then revision, so a time
//!   range of one tag is one contiguous scan
//! * `revisions`: `revision: u64`                   -> history key of that reading
//! * `reading_ids`: reading id (UTF-8)              -> `revision: u64`
//! * `requests`:  request id (UTF-8)               -> `index: u64` + opaque result
//! * `requests_by_index`: `index: u64 | request id` -> empty (to forget old ones)
//! * `meta`:      ASCII name (`applied`, `revision`, `next_tag_id`, ...) -> bytes

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

/// The history key of one reading.
pub fn history_key(tag_id: u64, ts_us: i64, revision: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&tag_id.to_be_bytes());
    k[8..16].copy_from_slice(&ordered_i64(ts_us).to_be_bytes());
    k[16..].copy_from_slice(&revision.to_be_bytes());
    k
}

/// Splits a history key into `(tag_id, ts_us, revision)`.
pub fn parse_history_key(k: &[u8]) -> Option<(u64, i64, u64)> {
    if k.len() != 24 {
        return None;
    }
    Some((
        decode_u64(&k[..8])?,
        from_ordered_i64(decode_u64(&k[8..16])?),
        decode_u64(&k[16..])?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_by_tag_then_time_then_revision() {
        let mut keys = [
            history_key(2, -5, 1),
            history_key(1, 10, 3),
            history_key(1, -10, 9),
            history_key(1, 10, 2),
            history_key(1, i64::MIN, 100),
            history_key(1, i64::MAX, 0),
        ];
        keys.sort();
        let parsed: Vec<_> = keys.iter().map(|k| parse_history_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![
                (1, i64::MIN, 100),
                (1, -10, 9),
                (1, 10, 2),
                (1, 10, 3),
                (1, i64::MAX, 0),
                (2, -5, 1)
            ]
        );
        assert!(parse_history_key(&[0; 23]).is_none());
    }

    #[test]
    fn ordered_i64_preserves_order() {
        let vals = [i64::MIN, -1, 0, 1, i64::MAX];
        for w in vals.windows(2) {
            assert!(ordered_i64(w[0]).to_be_bytes() < ordered_i64(w[1]).to_be_bytes());
            assert_eq!(from_ordered_i64(ordered_i64(w[0])), w[0]);
        }
    }
}
