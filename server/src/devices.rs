//! From device records to drivers: which driver a protocol gets, how device
//! fields and labels become driver options, and the protocol-specific checks
//! of endpoints and tag addresses made when config is written.
//!
//! Per-device driver options travel as labels, so the replicated device
//! record stays protocol-neutral:
//! * Modbus: `modbus.max_gap`, `modbus.max_registers`, `modbus.max_bits`,
//!   `modbus.pipeline` (requests in flight at once on a TCP connection, 1-16).
//! * Where it may be polled (`reach`): `affinity.nodes`, `affinity.KEY`.
//! * OPC UA: `opcua.security` (`none`, `basic256sha256-sign`,
//!   `basic256sha256-signandencrypt`), `opcua.user` and `opcua.password`,
//!   `opcua.trust_server_certs` (`true`), `opcua.subscriptions` (`false` to
//!   poll with Read).
//! * EtherNet/IP: `enip.slot` (the CPU's backplane slot, 0),
//!   `enip.connected` (`false` for unconnected messaging only),
//!   `enip.connection_size` (bytes, the Forward Open size and the packing
//!   limit).
//! * S7: `s7.rack`, `s7.slot` (0 and 2 unless told: an S7-300's CPU), `s7.local_tsap` and
//!   `s7.remote_tsap` (hex `0x0100` or decimal, instead of rack and slot),
//!   `s7.pdu_size` (requested; the PLC's answer is used).

use std::path::PathBuf;
use std::time::Duration;

use bifrost_drivers::enip::{EnipDriver, EnipOptions};
use bifrost_drivers::modbus::{ModbusDriver, ModbusOptions};
use bifrost_drivers::opcua::{Identity, OpcUaDriver, OpcUaOptions};
use bifrost_drivers::s7::{S7Driver, S7Options};
use bifrost_drivers::{BrowseItem, Driver, TagSpec};
use bifrost_storage::{Device, Tag};

use crate::poller::DriverFactory;

fn label<T: std::str::FromStr>(d: &Device, key: &str) -> Result<Option<T>, String> {
    match d.labels.get(key) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("device '{}': label {key}={v:?} is not valid", d.name)),
    }
}

fn unit(d: &Device) -> Result<u8, String> {
    u8::try_from(d.unit_id).map_err(|_| {
        format!(
            "device '{}': unit id {} is out of range (0-255)",
            d.name, d.unit_id
        )
    })
}

pub fn modbus_options(d: &Device) -> Result<ModbusOptions, String> {
    let mut o = ModbusOptions {
        timeout: Duration::from_millis(d.timeout_ms.max(1)),
        retries: d.retries,
        ..Default::default()
    };
    if let Some(v) = label(d, "modbus.max_gap")? {
        o.max_gap = v;
    }
    if let Some(v) = label(d, "modbus.max_registers")? {
        o.max_registers = v;
    }
    if let Some(v) = label(d, "modbus.max_bits")? {
        o.max_bits = v;
    }
    if let Some(v) = label(d, "modbus.pipeline")? {
        o.pipeline = v;
    }
    o.validate()
        .map_err(|e| format!("device '{}': modbus options: {e}", d.name))?;
    Ok(o)
}

pub fn opcua_options(d: &Device, pki_dir: Option<PathBuf>) -> Result<OpcUaOptions, String> {
    let mut o = OpcUaOptions::new(d.endpoint.clone());
    if let Some(s) = d.labels.get("opcua.security") {
        o.security = s.parse().map_err(|e| format!("device '{}': {e}", d.name))?;
    }
    match (d.labels.get("opcua.user"), d.labels.get("opcua.password")) {
        (Some(user), Some(password)) => {
            o.identity = Identity::UserPassword {
                user: user.clone(),
                password: password.clone(),
            }
        }
        (None, None) => {}
        _ => {
            return Err(format!(
                "device '{}': opcua.user and opcua.password go together",
                d.name
            ))
        }
    }
    if let Some(t) = label::<bool>(d, "opcua.trust_server_certs")? {
        o.trust_server_certs = t;
    }
    if let Some(s) = label::<bool>(d, "opcua.subscriptions")? {
        o.use_subscriptions = s;
    }
    o.pki_dir = pki_dir;
    o.request_timeout = Duration::from_millis(d.timeout_ms.max(100));
    o.publishing_interval =
        Duration::from_millis(d.poll_interval_ms).max(OPCUA_MIN_PUBLISHING_INTERVAL);
    o.validate()
        .map_err(|e| format!("device '{}': {e}", d.name))?;
    Ok(o)
}

/// The driver options of an EtherNet/IP device.
pub fn enip_options(d: &Device) -> Result<EnipOptions, String> {
    let mut o = EnipOptions {
        timeout: Duration::from_millis(d.timeout_ms.max(1)),
        retries: d.retries,
        ..Default::default()
    };
    if let Some(v) = label(d, "enip.slot")? {
        o.slot = v;
    }
    if let Some(v) = label(d, "enip.connected")? {
        o.connected = v;
    }
    if let Some(v) = label(d, "enip.connection_size")? {
        o.connection_size = v;
    }
    Ok(o)
}

/// The driver options of an S7 device.
pub fn s7_options(d: &Device) -> Result<S7Options, String> {
    let mut o = S7Options {
        timeout: Duration::from_millis(d.timeout_ms.max(1)),
        retries: d.retries,
        ..Default::default()
    };
    if let Some(v) = label(d, "s7.rack")? {
        o.rack = v;
    }
    if let Some(v) = label(d, "s7.slot")? {
        o.slot = v;
    }
    if let Some(v) = d.labels.get("s7.local_tsap") {
        o.local_tsap = Some(tsap(d, "s7.local_tsap", v)?);
    }
    if let Some(v) = d.labels.get("s7.remote_tsap") {
        o.remote_tsap = Some(tsap(d, "s7.remote_tsap", v)?);
    }
    if let Some(v) = label(d, "s7.pdu_size")? {
        o.pdu_size = v;
    }
    Ok(o)
}

/// A TSAP label: `0x0102` or `258`.
fn tsap(d: &Device, key: &str, v: &str) -> Result<u16, String> {
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    };
    parsed.ok_or_else(|| {
        format!(
            "device '{}': label {key}={v:?} is not a TSAP (0x0100 or 256)",
            d.name
        )
    })
}

/// Checks a device's endpoint, driver options and affinity labels.
pub fn validate_device(d: &Device) -> Result<(), String> {
    crate::reach::Affinity::of(d)?;
    match d.protocol.as_str() {
        "modbus-tcp" | "modbus-rtu" => {
            bifrost_drivers::modbus::validate_endpoint(&d.protocol, &d.endpoint, unit(d)?)
                .map_err(|e| format!("device '{}': {e}", d.name))?;
            modbus_options(d).map(|_| ())
        }
        "opcua" => opcua_options(d, Some(PathBuf::from("pki"))).map(|_| ()),
        "enip" => {
            bifrost_drivers::enip::validate_endpoint(&d.endpoint)
                .map_err(|e| format!("device '{}': {e}", d.name))?;
            enip_options(d).map(|_| ())
        }
        "s7" => {
            bifrost_drivers::s7::validate_endpoint(&d.endpoint)
                .map_err(|e| format!("device '{}': {e}", d.name))?;
            s7_options(d).map(|_| ())
        }
        other => Err(format!("device '{}': unknown protocol '{other}'", d.name)),
    }
}

/// Checks a tag's address (and that its type fits it) for its device's protocol.
pub fn validate_tag(device: &Device, tag: &Tag) -> Result<(), String> {
    let spec = TagSpec::from(tag);
    match device.protocol.as_str() {
        "modbus-tcp" | "modbus-rtu" => bifrost_drivers::modbus::validate_tag(&spec)
            .map(|_| ())
            .map_err(|e| format!("tag '{}': {e}", tag.name)),
        "opcua" => bifrost_drivers::opcua::validate_address(&tag.address)
            .map_err(|e| format!("tag '{}': {e}", tag.name)),
        "enip" => bifrost_drivers::enip::validate_tag(&spec)
            .map(|_| ())
            .map_err(|e| format!("tag '{}': {e}", tag.name)),
        "s7" => bifrost_drivers::s7::validate_tag(&spec)
            .map(|_| ())
            .map_err(|e| format!("tag '{}': {e}", tag.name)),
        other => Err(format!(
            "tag '{}': device '{}' has unknown protocol '{other}'",
            tag.name, device.name
        )),
    }
}

/// Creates drivers for devices. `pki_dir` holds OPC UA client certificates.
pub struct Factory {
    pub pki_dir: PathBuf,
    /// Opens sealed secret labels (see [`crate::secrets`]).
    pub data_key: Option<std::sync::Arc<crate::secrets::DataKey>>,
}

impl DriverFactory for Factory {
    fn create(&self, d: &Device, tags: &[Tag]) -> Result<Box<dyn Driver>, String> {
        let d = &crate::secrets::open_device(self.data_key.as_deref(), d)?;
        match d.protocol.as_str() {
            "modbus-tcp" | "modbus-rtu" => {
                let drv = ModbusDriver::new(&d.protocol, &d.endpoint, unit(d)?, modbus_options(d)?)
                    .map_err(|e| e.to_string())?;
                Ok(Box::new(drv))
            }
            "opcua" => {
                let mut o = opcua_options(d, Some(self.pki_dir.clone()))?;
                follow_scan_rates(&mut o, d, tags);
                let drv = OpcUaDriver::new(o).map_err(|e| e.to_string())?;
                Ok(Box::new(drv))
            }
            "enip" => {
                let drv =
                    EnipDriver::new(&d.endpoint, enip_options(d)?).map_err(|e| e.to_string())?;
                Ok(Box::new(drv))
            }
            "s7" => {
                let drv = S7Driver::new(&d.endpoint, s7_options(d)?).map_err(|e| e.to_string())?;
                Ok(Box::new(drv))
            }
            other => Err(format!("unknown protocol '{other}'")),
        }
    }

    fn create_oneshot(&self, d: &Device) -> Result<Box<dyn Driver>, String> {
        let d = &crate::secrets::open_device(self.data_key.as_deref(), d)?;
        if d.protocol == "opcua" {
            let mut o = opcua_options(d, Some(self.pki_dir.clone()))?;
            o.use_subscriptions = false;
            return Ok(Box::new(OpcUaDriver::new(o).map_err(|e| e.to_string())?));
        }
        self.create(d, &[])
    }
}

/// Fits a polling OPC UA driver's subscription to the tags' scan rates: the
/// server publishes (and samples) as often as the fastest tag is read, so a
/// tag faster than its device's interval gets values that fresh, not cached
/// ones as old as the interval; and a node is kept monitored for three of
/// the slowest tag's periods at least, so a slow tag is not unsubscribed
/// between two of its reads.
fn follow_scan_rates(o: &mut OpcUaOptions, d: &Device, tags: &[Tag]) {
    let (fastest, slowest) = crate::poller::period_range(d, tags);
    o.publishing_interval = fastest.max(OPCUA_MIN_PUBLISHING_INTERVAL);
    o.forget_after = o.forget_after.max(slowest * 3);
}

/// Servers revise shorter publishing intervals up anyway; this keeps a
/// subscription's traffic sane.
const OPCUA_MIN_PUBLISHING_INTERVAL: Duration = Duration::from_millis(50);

/// Browses an OPC UA server's address space.
pub async fn browse(endpoint: &str, node: Option<&str>) -> Result<Vec<BrowseItem>, String> {
    let mut opts = OpcUaOptions::new(endpoint.to_string());
    opts.use_subscriptions = false;
    opts.validate()?;
    let mut drv = OpcUaDriver::new(opts).map_err(|e| e.to_string())?;
    drv.connect()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let items = drv
        .browse(node)
        .await
        .map_err(|e| format!("{endpoint}: {e}"));
    drv.close().await;
    items
}

/// Tags for the variables found by a browse, named `PREFIX/<name>`.
pub fn tags_from_browse(
    device: &Device,
    prefix: &str,
    items: &[BrowseItem],
) -> Result<Vec<Tag>, String> {
    let mut tags = Vec::new();
    for item in items {
        let Some(t) = item.data_type else { continue };
        let clean: String = item
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let name = if prefix.is_empty() {
            clean
        } else {
            format!("{}/{clean}", prefix.trim_end_matches('/'))
        };
        let tag = Tag {
            description: format!("browsed from {}", device.endpoint),
            writable: item.writable,
            ..Tag::new(name, &device.name, &item.address, t)
        };
        tag.validate().map_err(|e| e.message)?;
        tags.push(tag);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_model::{DataType, Protocol};

    fn tag(scan_rate_ms: u64) -> Tag {
        Tag {
            scan_rate_ms,
            ..Tag::new("t", "plc", "ns=2;s=X", DataType::F64)
        }
    }

    #[test]
    fn an_opcua_subscription_follows_the_fastest_and_slowest_scan_rates() {
        let d = Device::new("plc", Protocol::Opcua, "opc.tcp://127.0.0.1:4840");
        let ms = Duration::from_millis;
        let fitted = |tags: &[Tag]| {
            let mut o = opcua_options(&d, None).unwrap();
            follow_scan_rates(&mut o, &d, tags);
            (o.publishing_interval, o.forget_after)
        };
        let default_forget = OpcUaOptions::new("opc.tcp://x").forget_after;
        // A 200 ms tag on a 1 s device: published every 200 ms.
        assert_eq!(fitted(&[tag(0), tag(200)]), (ms(200), default_forget));
        // Only slow tags: published at the fastest of them; a tag read every
        // 1000 s stays monitored between its reads.
        assert_eq!(
            fitted(&[tag(5_000), tag(1_000_000)]),
            (ms(5_000), ms(3_000_000))
        );
        // No tags: the device's interval.
        assert_eq!(fitted(&[]), (ms(1_000), default_forget));
        // Never faster than servers sensibly publish.
        assert_eq!(fitted(&[tag(10)]).0, OPCUA_MIN_PUBLISHING_INTERVAL);
    }

    fn with_labels(protocol: Protocol, endpoint: &str, labels: &[(&str, &str)]) -> Device {
        let mut d = Device::new("plc", protocol, endpoint);
        for (k, v) in labels {
            d.labels.insert(k.to_string(), v.to_string());
        }
        d
    }

    #[test]
    fn enip_and_s7_options_come_from_labels_and_bad_ones_are_named() {
        let d = with_labels(
            Protocol::Enip,
            "10.0.0.5",
            &[("enip.slot", "2"), ("enip.connected", "false")],
        );
        let o = enip_options(&d).unwrap();
        assert_eq!((o.slot, o.connected), (2, false));
        assert!(validate_device(&d).is_ok());
        let d = with_labels(
            Protocol::S7,
            "10.0.0.6:102",
            &[
                ("s7.remote_tsap", "0x0201"),
                ("s7.local_tsap", "256"),
                ("s7.pdu_size", "480"),
            ],
        );
        let o = s7_options(&d).unwrap();
        assert_eq!(
            (o.remote_tsap, o.local_tsap, o.pdu_size),
            (Some(0x0201), Some(256), 480)
        );
        let bad = with_labels(Protocol::S7, "h", &[("s7.remote_tsap", "0xZZ")]);
        let e = validate_device(&bad).unwrap_err();
        assert!(
            e.contains("device 'plc'") && e.contains("s7.remote_tsap"),
            "{e}"
        );
        let bad = with_labels(Protocol::Enip, "h", &[("enip.slot", "300")]);
        assert!(validate_device(&bad).unwrap_err().contains("enip.slot"));
        let bad = with_labels(Protocol::ModbusTcp, "h:502", &[("affinity.nodes", "one")]);
        assert!(validate_device(&bad)
            .unwrap_err()
            .contains("affinity.nodes"));
    }
}
