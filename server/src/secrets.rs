//! Device secrets (OPC UA passwords, private keys: the labels for which
//! [`Device::is_secret_label`] holds), sealed under the cluster data key.
//!
//! The node that takes a device change seals each secret label's value
//! (XChaCha20-Poly1305, a random nonce, the device and label names as
//! associated data, so a sealed value moved to another device or label
//! does not open) before anything is proposed: the Raft log, snapshots,
//! the state database and backups hold only `sealed:v1:KEY_ID:DATA`. The
//! node that polls the device opens them when it makes the driver. Every
//! answer shows [`Device::SECRET_PLACEHOLDER`] instead ([`mask`]); given
//! back, the placeholder keeps the secret already stored, and is refused
//! where there is none.
//!
//! The data key is 32 bytes, the same on every node (`bifrostctl certs
//! init` writes `data.key`), read from `--data-key-file` or the
//! `BIFROST_DATA_KEY` environment variable (base64). It never enters the
//! cluster's state. Its id (the first 4 bytes of its BLAKE3 hash, in hex)
//! is written with each sealed value, so a node with another key says so.
//!
//! Depends on the model and the AEAD crate only; knows no API or Raft.

use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bifrost_model::Device;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// The environment variable that may hold the data key (base64).
pub const DATA_KEY_ENV: &str = "BIFROST_DATA_KEY";
const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_LEN: usize = 24;

/// The cluster data key.
pub struct DataKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DataKey({})", self.id)
    }
}

impl DataKey {
    /// The key in `text`: 32 bytes, base64 (standard or URL-safe).
    pub fn parse(text: &str, source: &str) -> Result<DataKey, String> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| format!("data key from {source}: not base64"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!("data key from {source}: {} bytes, expected 32", b.len())
        })?;
        let id = blake3::hash(&key).to_hex()[..8].to_string();
        Ok(DataKey {
            cipher: XChaCha20Poly1305::new(&key.into()),
            id,
        })
    }

    /// The key from `file` if given, else from [`DATA_KEY_ENV`], else none.
    /// A key file readable by others is refused.
    pub fn load(file: Option<&Path>) -> Result<Option<Arc<DataKey>>, String> {
        if let Some(path) = file {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("data key file {}: {e}", path.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "data key file {} is readable by others (mode {:o}); chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                ));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("data key file {}: {e}", path.display()))?;
            return DataKey::parse(&text, &path.display().to_string()).map(|k| Some(Arc::new(k)));
        }
        match std::env::var(DATA_KEY_ENV) {
            Ok(text) => DataKey::parse(&text, DATA_KEY_ENV).map(|k| Some(Arc::new(k))),
            Err(_) => Ok(None),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn seal(&self, device: &str, label: &str, value: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let aad = associated_data(device, label);
        let payload = Payload {
            msg: value.as_bytes(),
            aad: &aad,
        };
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), payload)
            .expect("XChaCha20-Poly1305 encrypts any length we store");
        let mut data = nonce.to_vec();
        data.extend_from_slice(&sealed);
        format!(
            "{SEALED_PREFIX}{}:{}",
            self.id,
            URL_SAFE_NO_PAD.encode(data)
        )
    }

    fn open(&self, device: &str, label: &str, stored: &str) -> Result<String, String> {
        let what = || format!("device '{device}' label '{label}'");
        let rest = stored
            .strip_prefix(SEALED_PREFIX)
            .ok_or_else(|| format!("{}: not a sealed value", what()))?;
        let (id, data) = rest
            .split_once(':')
            .ok_or_else(|| format!("{}: malformed sealed value", what()))?;
        if id != self.id {
            return Err(format!(
                "{}: sealed with data key {id}, but this node has data key {}",
                what(),
                self.id
            ));
        }
        let data = URL_SAFE_NO_PAD
            .decode(data)
            .ok()
            .filter(|d| d.len() > NONCE_LEN)
            .ok_or_else(|| format!("{}: malformed sealed value", what()))?;
        let (nonce, sealed) = data.split_at(NONCE_LEN);
        let aad = associated_data(device, label);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| format!("{}: the sealed value does not open (altered, or moved from another device or label)", what()))?;
        String::from_utf8(plain).map_err(|_| format!("{}: the secret is not UTF-8", what()))
    }
}

fn associated_data(device: &str, label: &str) -> Vec<u8> {
    format!("bifrost device secret\0{device}\0{label}").into_bytes()
}

fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

/// Seals the secret labels of `device` (as a client sent it) for storing:
/// a new value is sealed; the placeholder keeps the sealed value `existing`
/// holds for the label, and is refused where there is none; a value that
/// already looks sealed is refused (sealed values are never taken from
/// clients). Without a data key, any secret label is refused.
pub fn seal_device(
    key: Option<&DataKey>,
    device: &mut Device,
    existing: Option<&Device>,
) -> Result<(), String> {
    let name = device.name.clone();
    for (label, value) in device.labels.iter_mut() {
        if !Device::is_secret_label(label) {
            continue;
        }
        if value == Device::SECRET_PLACEHOLDER {
            let kept = existing
                .and_then(|d| d.labels.get(label))
                .filter(|v| is_sealed(v));
            *value = kept.cloned().ok_or_else(|| {
                format!(
                    "device '{name}' label '{label}' is the placeholder {:?} (as exported), and the cluster holds no secret for it: give the secret itself",
                    Device::SECRET_PLACEHOLDER
                )
            })?;
            continue;
        }
        if is_sealed(value) {
            return Err(format!(
                "device '{name}' label '{label}': sealed values are made by the cluster, not taken from clients; give the secret itself"
            ));
        }
        let key = key.ok_or_else(|| {
            format!(
                "device '{name}' label '{label}' is a secret, and this node has no data key to seal it (start nodes with --data-key-file, or {DATA_KEY_ENV})"
            )
        })?;
        *value = key.seal(&name, label, value);
    }
    Ok(())
}

/// `device` with its secret labels opened, for a driver.
pub fn open_device(key: Option<&DataKey>, device: &Device) -> Result<Device, String> {
    let mut open = device.clone();
    for (label, value) in open.labels.iter_mut() {
        if !Device::is_secret_label(label) || !is_sealed(value) {
            continue;
        }
        let key = key.ok_or_else(|| {
            format!(
                "device '{}' label '{label}' is sealed, and this node has no data key (--data-key-file, or {DATA_KEY_ENV})",
                device.name
            )
        })?;
        *value = key.open(&device.name, label, value)?;
    }
    Ok(open)
}

/// `device` as answers show it: every secret label's value replaced by
/// [`Device::SECRET_PLACEHOLDER`].
pub fn mask(mut device: Device) -> Device {
    for (label, value) in device.labels.iter_mut() {
        if Device::is_secret_label(label) {
            *value = Device::SECRET_PLACEHOLDER.to_string();
        }
    }
    device
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_model::Protocol;

    fn key(byte: u8) -> DataKey {
        DataKey::parse(&STANDARD.encode([byte; 32]), "test").unwrap()
    }

    fn plc(password: &str) -> Device {
        let mut d = Device::new("plc", Protocol::Opcua, "opc.tcp://127.0.0.1:4840/");
        d.labels.insert("opcua.user".into(), "operator".into());
        d.labels.insert("opcua.password".into(), password.into());
        d
    }

    #[test]
    fn a_sealed_secret_opens_with_its_key_only_and_only_in_its_place() {
        let k = key(1);
        let mut d = plc("hunter2-canary");
        seal_device(Some(&k), &mut d, None).unwrap();
        let sealed = d.labels["opcua.password"].clone();
        assert!(
            sealed.starts_with("sealed:v1:") && !sealed.contains("hunter2"),
            "{sealed}"
        );
        assert_eq!(
            d.labels["opcua.user"], "operator",
            "other labels stay as given"
        );
        assert_eq!(
            open_device(Some(&k), &d).unwrap().labels["opcua.password"],
            "hunter2-canary"
        );

        let e = open_device(Some(&key(2)), &d).unwrap_err();
        assert!(
            e.contains("sealed with data key") && e.contains("this node has data key"),
            "{e}"
        );
        let e = open_device(None, &d).unwrap_err();
        assert!(e.contains("no data key"), "{e}");
        let mut moved = d.clone();
        moved.name = "other".into();
        let e = open_device(Some(&k), &moved).unwrap_err();
        assert!(e.contains("does not open"), "{e}");
        let mut altered = d.clone();
        let v = altered.labels.get_mut("opcua.password").unwrap();
        let last = v.pop().unwrap();
        v.push(if last == 'A' { 'B' } else { 'A' });
        assert!(open_device(Some(&k), &altered).is_err());
    }

    #[test]
    fn the_placeholder_keeps_a_stored_secret_and_is_refused_without_one() {
        let k = key(1);
        let mut stored = plc("first-secret");
        seal_device(Some(&k), &mut stored, None).unwrap();
        let mut again = mask(stored.clone());
        assert_eq!(again.labels["opcua.password"], Device::SECRET_PLACEHOLDER);
        seal_device(Some(&k), &mut again, Some(&stored)).unwrap();
        assert_eq!(
            again.labels["opcua.password"],
            stored.labels["opcua.password"]
        );

        let mut fresh = plc(Device::SECRET_PLACEHOLDER);
        let e = seal_device(Some(&k), &mut fresh, None).unwrap_err();
        assert!(
            e.contains("device 'plc' label 'opcua.password' is the placeholder"),
            "{e}"
        );
        let mut forged = plc(&stored.labels["opcua.password"]);
        let e = seal_device(Some(&k), &mut forged, None).unwrap_err();
        assert!(e.contains("not taken from clients"), "{e}");
        let e = seal_device(None, &mut plc("x"), None).unwrap_err();
        assert!(e.contains("no data key to seal it"), "{e}");
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_errors_say_which() {
        let e = DataKey::parse("not base64!", "file k").unwrap_err();
        assert!(e.contains("file k") && e.contains("not base64"), "{e}");
        let e = DataKey::parse(&STANDARD.encode([0u8; 16]), "env").unwrap_err();
        assert!(e.contains("16 bytes, expected 32"), "{e}");
        assert_eq!(key(1).id().len(), 8);
        assert_ne!(key(1).id(), key(2).id());
    }
}
