//! Devices: one protocol connection each, polled at an interval.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{validate_name, Invalid};

/// The protocols a device may speak, spelt `modbus-tcp`, `modbus-rtu`,
/// `opcua`, `enip` (EtherNet/IP to Logix controllers), `s7` everywhere (flags, API, documents). A [`Device`] keeps the
/// spelling as text, so adding a protocol does not change its stored form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Protocol {
    ModbusTcp,
    ModbusRtu,
    Opcua,
    Enip,
    S7,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [
        Protocol::ModbusTcp,
        Protocol::ModbusRtu,
        Protocol::Opcua,
        Protocol::Enip,
        Protocol::S7,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::ModbusTcp => "modbus-tcp",
            Protocol::ModbusRtu => "modbus-rtu",
            Protocol::Opcua => "opcua",
            Protocol::Enip => "enip",
            Protocol::S7 => "s7",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Modbus addresses a unit (slave) on the connection, 1 unless told;
    /// the others have no unit, 0 (a Logix CPU's slot and an S7 CPU's rack
    /// and slot are device labels).
    pub fn default_unit_id(self) -> u32 {
        match self {
            Protocol::ModbusTcp | Protocol::ModbusRtu => 1,
            Protocol::Opcua | Protocol::Enip | Protocol::S7 => 0,
        }
    }

    fn expected() -> String {
        Protocol::ALL.map(Protocol::as_str).join(", ")
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A device that is polled over one protocol connection. Field order is
/// persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    /// One of the [`Protocol`] spellings.
    pub protocol: String,
    /// `host:port`, a serial port, or an `opc.tcp://` URL.
    pub endpoint: String,
    pub unit_id: u32,
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub enabled: bool,
    pub labels: BTreeMap<String, String>,
    /// Raft log index of the command that last changed this device.
    pub revision: u64,
}

impl Device {
    /// What answers (`device list`, queries, `export`) show in place of a
    /// secret label's value. Given back on a change or an import, it means
    /// "keep the secret stored for this device and label", and is refused
    /// where there is none.
    pub const SECRET_PLACEHOLDER: &'static str = "(secret)";

    /// Whether the label `key` holds a secret (a password, a private key):
    /// its last dot-separated part is `password`, `private_key` or
    /// `secret` (`opcua.password`). The server stores such values
    /// encrypted and never shows them.
    pub fn is_secret_label(key: &str) -> bool {
        let last = key.rsplit('.').next().unwrap_or(key);
        matches!(last, "password" | "private_key" | "secret")
    }

    /// The label naming the node ids that may poll a device (`1,2`).
    pub const AFFINITY_NODES_LABEL: &'static str = "affinity.nodes";
    /// Labels `affinity.KEY=VALUE` restrict a device to the nodes that
    /// advertise `KEY=VALUE` (`bifrost serve --node-label`).
    pub const AFFINITY_PREFIX: &'static str = "affinity.";

    /// Poll interval and request timeout when none is given.
    pub const DEFAULT_INTERVAL_MS: u64 = 1000;
    /// Retries of a failed request when none is given.
    pub const DEFAULT_RETRIES: u32 = 3;

    /// A device with the defaults of `device add`: the protocol's default
    /// unit, 1 s interval and timeout, 3 retries, enabled, no labels.
    pub fn new(name: impl Into<String>, protocol: Protocol, endpoint: impl Into<String>) -> Device {
        Device {
            name: name.into(),
            protocol: protocol.as_str().to_string(),
            endpoint: endpoint.into(),
            unit_id: protocol.default_unit_id(),
            poll_interval_ms: Device::DEFAULT_INTERVAL_MS,
            timeout_ms: Device::DEFAULT_INTERVAL_MS,
            retries: Device::DEFAULT_RETRIES,
            enabled: true,
            labels: BTreeMap::new(),
            revision: 0,
        }
    }

    /// Checks everything about a device that does not depend on other objects.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_name("device", &self.name)?;
        if Protocol::parse(&self.protocol).is_none() {
            return Err(Invalid::new(format!(
                "device '{}': unknown protocol '{}' (expected one of: {})",
                self.name,
                self.protocol,
                Protocol::expected()
            )));
        }
        if self.endpoint.trim().is_empty() {
            return Err(Invalid::new(format!(
                "device '{}': endpoint is empty",
                self.name
            )));
        }
        if self.poll_interval_ms == 0 {
            return Err(Invalid::new(format!(
                "device '{}': poll interval must be greater than zero",
                self.name
            )));
        }
        Ok(())
    }
}

/// Which node polls a device. `epoch` is the log index of the command that
/// gave the device to this node; it changes whenever the owner changes.
/// Persisted (postcard): the fields keep their order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub node: u64,
    pub epoch: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_labels_are_known_by_their_last_part() {
        for key in ["opcua.password", "password", "x.private_key", "mqtt.secret"] {
            assert!(Device::is_secret_label(key), "{key}");
        }
        for key in [
            "opcua.user",
            "opcua.password_hint",
            "passwords.x",
            "opcua.security",
        ] {
            assert!(!Device::is_secret_label(key), "{key}");
        }
    }

    #[test]
    fn new_device_has_the_defaults_of_device_add() {
        let d = Device::new("press3", Protocol::ModbusTcp, "10.0.0.5:502");
        assert_eq!(d.protocol, "modbus-tcp");
        assert_eq!(
            (d.unit_id, d.poll_interval_ms, d.timeout_ms),
            (1, 1000, 1000)
        );
        assert_eq!((d.retries, d.enabled, d.revision), (3, true, 0));
        assert!(d.validate().is_ok());
        assert_eq!(
            Device::new("o", Protocol::Opcua, "opc.tcp://h:4840").unit_id,
            0
        );
    }

    #[test]
    fn unknown_protocol_lists_the_known_ones() {
        let d = Device {
            protocol: "profibus".into(),
            ..Device::new("p", Protocol::ModbusTcp, "h:1")
        };
        assert_eq!(
            d.validate().unwrap_err().message,
            "device 'p': unknown protocol 'profibus' (expected one of: modbus-tcp, modbus-rtu, opcua, enip, s7)"
        );
        for p in Protocol::ALL {
            assert_eq!(Protocol::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn empty_endpoint_and_zero_interval_are_refused() {
        let mut d = Device::new("p", Protocol::ModbusRtu, " ");
        assert!(d
            .validate()
            .unwrap_err()
            .message
            .contains("endpoint is empty"));
        d.endpoint = "/dev/ttyUSB0".into();
        d.poll_interval_ms = 0;
        assert!(d
            .validate()
            .unwrap_err()
            .message
            .contains("greater than zero"));
    }
}
