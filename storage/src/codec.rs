//! Value encoding: one format-version byte, then postcard.
//!
//! postcard is maintained, serde-based and compact (varints); bincode 1.3 is
//! complete but unmaintained. The version byte lets a later format be read
//! beside this one.

use serde::{de::DeserializeOwned, Serialize};

use crate::{Error, Result};

/// The current format version.
pub const VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VERSION];
    // Serialising our own plain data types into a Vec cannot fail.
    out.extend(postcard::to_stdvec(value).expect("postcard encoding of an in-memory value"));
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => postcard::from_bytes(rest)
            .map_err(|e| Error::Corrupt(format!("postcard: {e} ({} bytes)", bytes.len()))),
        Some((v, _)) if *v > VERSION => Err(Error::Corrupt(format!(
            "a record in format version {v}, which a newer Bifrost writes; this one reads \
             version {VERSION}: upgrade this node"
        ))),
        Some((v, _)) => Err(Error::Corrupt(format!("unknown format version {v}"))),
        None => Err(Error::Corrupt("empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_versions() {
        let v = (7u64, "x".to_string());
        let bytes = encode(&v);
        assert_eq!(bytes[0], VERSION);
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), v);
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(decode::<(u64, String)>(&other)
            .unwrap_err()
            .to_string()
            .contains("version 9"));
        assert!(decode::<(u64, String)>(&[]).is_err());
        assert!(decode::<(u64, String)>(&bytes[..2]).is_err());
    }
}
