//! Config documents: all devices and tags of a cluster as one JSON document,
//! what `bifrostctl export` writes and `bifrostctl import` reads.
//!
//! ```text
//! {
//!   "devices": [
//!     {"name": "press3", "protocol": "modbus-tcp", "endpoint": "10.0.0.5:502",
//!      "unit_id": 1, "poll_interval_ms": 500, "timeout_ms": 1000, "retries": 3,
//!      "enabled": true, "labels": {"line": "1"}, "revision": 2}
//!   ],
//!   "tags": [
//!     {"name": "line1/press3/temperature", "device": "press3", "address": "hr:40001",
//!      "data_type": "f32", "byte_order": "", "word_order": "", "scale": null,
//!      "deadband": null, "scan_rate_ms": 0, "units": "degC", "description": "",
//!      "writable": false, "length": 0, "revision": 3}
//!   ]
//! }
//! ```
//!
//! The objects are exactly what `device list --output json` and
//! `tag list --output json` print ([`device_to_json`], [`tag_to_json`]), so an
//! export imports unchanged. On input:
//!
//! - `revision` is accepted and ignored (the server sets it);
//! - required: a device's `name`, `protocol` and `endpoint`; a tag's `name`,
//!   `device`, `address` and `data_type`. Everything else has the default of
//!   `device add` / `tag add`: `unit_id` 1 for Modbus and 0 otherwise,
//!   `poll_interval_ms` and `timeout_ms` 1000, `retries` 3, `enabled` true,
//!   big byte and word order (`""`), no scale or deadband, not writable;
//! - `null` is the same as absent; unknown fields are errors, so a misspelt
//!   `"writeable"` is caught instead of silently ignored;
//! - `data_type` is one of `bool i16 u16 i32 u32 i64 f32 f64 string`,
//!   `byte_order` / `word_order` one of `big little ""`;
//! - names must be unique within the document.
//!
//! A bad document yields [`Error::InvalidDocument`] naming the path of the bad
//! field (`tags[3].data_type`) and, when the JSON itself is at fault, the line
//! and column. The server validates everything again (addresses, protocols,
//! tags of unknown devices) and imports all or nothing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value as Json;

use bifrost_model::{DataType, Order};

use crate::proto::{Deadband, Device, Scale, Tag};
use crate::{Error, Result};

/// Devices and tags, as sent in one `Import`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigDocument {
    pub devices: Vec<Device>,
    pub tags: Vec<Tag>,
}

impl ConfigDocument {
    /// The document as JSON, devices and tags in the order given.
    pub fn to_json(&self) -> Json {
        serde_json::to_value(self.json()).expect("plain structs serialize")
    }

    /// The document as indented JSON text, fields in the API's order (name
    /// first), as `export` writes it.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.json()).expect("plain structs serialize")
    }

    fn json(&self) -> DocumentJson<'_> {
        DocumentJson {
            devices: self.devices.iter().map(DeviceJson::from).collect(),
            tags: self.tags.iter().map(TagJson::from).collect(),
        }
    }
}

#[derive(Serialize)]
struct DocumentJson<'a> {
    devices: Vec<DeviceJson<'a>>,
    tags: Vec<TagJson<'a>>,
}

/// A device in its JSON shape (`device list --output json`, export), fields
/// in the API's order.
#[derive(Debug, Serialize)]
pub struct DeviceJson<'a> {
    pub name: &'a str,
    pub protocol: &'a str,
    pub endpoint: &'a str,
    pub unit_id: u32,
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub enabled: bool,
    pub labels: BTreeMap<&'a str, &'a str>,
    pub revision: u64,
}

impl<'a> From<&'a Device> for DeviceJson<'a> {
    fn from(d: &'a Device) -> Self {
        DeviceJson {
            name: &d.name,
            protocol: &d.protocol,
            endpoint: &d.endpoint,
            unit_id: d.unit_id,
            poll_interval_ms: d.poll_interval_ms,
            timeout_ms: d.timeout_ms,
            retries: d.retries,
            enabled: d.enabled,
            labels: d
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            revision: d.revision,
        }
    }
}

/// `{"raw_lo", "raw_hi", "eng_lo", "eng_hi"}`.
#[derive(Debug, Serialize)]
pub struct ScaleJson {
    pub raw_lo: f64,
    pub raw_hi: f64,
    pub eng_lo: f64,
    pub eng_hi: f64,
}

/// `{"value", "percent"}`.
#[derive(Debug, Serialize)]
pub struct DeadbandJson {
    pub value: f64,
    pub percent: bool,
}

/// A tag in its JSON shape (`tag list --output json`, export), fields in
/// the API's order; `scale` and `deadband` are null when unset.
#[derive(Debug, Serialize)]
pub struct TagJson<'a> {
    pub name: &'a str,
    pub device: &'a str,
    pub address: &'a str,
    pub data_type: &'a str,
    pub byte_order: &'a str,
    pub word_order: &'a str,
    pub scale: Option<ScaleJson>,
    pub deadband: Option<DeadbandJson>,
    pub scan_rate_ms: u64,
    pub units: &'a str,
    pub description: &'a str,
    pub writable: bool,
    pub length: u32,
    pub revision: u64,
}

impl<'a> From<&'a Tag> for TagJson<'a> {
    fn from(t: &'a Tag) -> Self {
        TagJson {
            name: &t.name,
            device: &t.device,
            address: &t.address,
            data_type: &t.data_type,
            byte_order: &t.byte_order,
            word_order: &t.word_order,
            scale: t.scale.as_ref().map(|s| ScaleJson {
                raw_lo: s.raw_lo,
                raw_hi: s.raw_hi,
                eng_lo: s.eng_lo,
                eng_hi: s.eng_hi,
            }),
            deadband: t.deadband.as_ref().map(|d| DeadbandJson {
                value: d.value,
                percent: d.percent,
            }),
            scan_rate_ms: t.scan_rate_ms,
            units: &t.units,
            description: &t.description,
            writable: t.writable,
            length: t.length,
            revision: t.revision,
        }
    }
}

/// A device as a JSON value (see [`DeviceJson`]).
pub fn device_to_json(d: &Device) -> Json {
    serde_json::to_value(DeviceJson::from(d)).expect("plain struct serializes")
}

/// A tag as a JSON value (see [`TagJson`]).
pub fn tag_to_json(t: &Tag) -> Json {
    serde_json::to_value(TagJson::from(t)).expect("plain struct serializes")
}

/// `null` reads as the type's default, like an absent field.
fn nullable<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocIn {
    #[serde(default, deserialize_with = "nullable")]
    devices: Vec<DeviceIn>,
    #[serde(default, deserialize_with = "nullable")]
    tags: Vec<TagIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceIn {
    name: String,
    protocol: String,
    endpoint: String,
    #[serde(default)]
    unit_id: Option<u32>,
    #[serde(default)]
    poll_interval_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    labels: HashMap<String, String>,
    /// Set by the server; accepted so that an export imports unchanged.
    #[serde(default)]
    #[allow(dead_code)]
    revision: Option<u64>,
}

/// A byte or word order: `""`, `null` or absent means "not given" (the API
/// reads it as big) and is kept as `""`, so an export imports unchanged.
fn order_field<'de, D>(d: D) -> std::result::Result<Option<Order>, D::Error>
where
    D: Deserializer<'de>,
{
    use serde::de::{value::StrDeserializer, Error as _, IntoDeserializer};
    let Some(text) = Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let spelling: StrDeserializer<'_, D::Error> = text.as_str().into_deserializer();
    Order::deserialize(spelling)
        .map(Some)
        .map_err(|_| D::Error::unknown_variant(&text, &["", "big", "little"]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleIn {
    raw_lo: f64,
    raw_hi: f64,
    eng_lo: f64,
    eng_hi: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadbandIn {
    value: f64,
    #[serde(default, deserialize_with = "nullable")]
    percent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagIn {
    name: String,
    device: String,
    address: String,
    data_type: DataType,
    #[serde(default, deserialize_with = "order_field")]
    byte_order: Option<Order>,
    #[serde(default, deserialize_with = "order_field")]
    word_order: Option<Order>,
    #[serde(default)]
    scale: Option<ScaleIn>,
    #[serde(default)]
    deadband: Option<DeadbandIn>,
    #[serde(default, deserialize_with = "nullable")]
    scan_rate_ms: u64,
    #[serde(default, deserialize_with = "nullable")]
    units: String,
    #[serde(default, deserialize_with = "nullable")]
    description: String,
    #[serde(default, deserialize_with = "nullable")]
    writable: bool,
    #[serde(default, deserialize_with = "nullable")]
    length: u32,
    #[serde(default)]
    #[allow(dead_code)]
    revision: Option<u64>,
}

/// Parses and checks a config document. Nothing is sent anywhere: a caller
/// that parses first and imports after sends nothing from a bad document.
pub fn parse_config_document(text: &str) -> Result<ConfigDocument> {
    // serde would take `[]` for a struct too (its fields in order).
    let first = text.trim_start().chars().next();
    if first.is_some_and(|c| c != '{') {
        return Err(Error::InvalidDocument {
            path: "document".into(),
            reason: format!(
                "expected a JSON object {{\"devices\": [...], \"tags\": [...]}}, found {first:?}",
                first = first.unwrap_or_default()
            ),
        });
    }
    let de = &mut serde_json::Deserializer::from_str(text);
    let doc: DocIn = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        Error::InvalidDocument {
            // "." is serde_path_to_error's name for the root.
            path: if path == "." { "document".into() } else { path },
            reason: e.into_inner().to_string(),
        }
    })?;

    let bad = |path: String, reason: String| Error::InvalidDocument { path, reason };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut devices = Vec::with_capacity(doc.devices.len());
    for (i, d) in doc.devices.iter().enumerate() {
        let at = |field: &str| format!("devices[{i}].{field}");
        for (field, value) in [
            ("name", &d.name),
            ("protocol", &d.protocol),
            ("endpoint", &d.endpoint),
        ] {
            if value.trim().is_empty() {
                return Err(bad(at(field), "must not be empty".into()));
            }
        }
        if let Some(first) = seen.insert(d.name.as_str(), i) {
            return Err(bad(
                at("name"),
                format!("device {:?} appears twice (also devices[{first}])", d.name),
            ));
        }
        for (field, value) in [
            ("poll_interval_ms", d.poll_interval_ms),
            ("timeout_ms", d.timeout_ms),
        ] {
            if value == Some(0) {
                return Err(bad(at(field), "must be at least 1".into()));
            }
        }
        let modbus = d.protocol.starts_with("modbus");
        devices.push(Device {
            name: d.name.clone(),
            protocol: d.protocol.clone(),
            endpoint: d.endpoint.clone(),
            unit_id: d.unit_id.unwrap_or(if modbus { 1 } else { 0 }),
            poll_interval_ms: d.poll_interval_ms.unwrap_or(1000),
            timeout_ms: d.timeout_ms.unwrap_or(1000),
            retries: d.retries.unwrap_or(3),
            enabled: d.enabled.unwrap_or(true),
            labels: d.labels.clone(),
            revision: 0,
        });
    }

    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut tags = Vec::with_capacity(doc.tags.len());
    for (i, t) in doc.tags.iter().enumerate() {
        let at = |field: &str| format!("tags[{i}].{field}");
        for (field, value) in [
            ("name", &t.name),
            ("device", &t.device),
            ("address", &t.address),
        ] {
            if value.trim().is_empty() {
                return Err(bad(at(field), "must not be empty".into()));
            }
        }
        if let Some(first) = seen.insert(t.name.as_str(), i) {
            return Err(bad(
                at("name"),
                format!("tag {:?} appears twice (also tags[{first}])", t.name),
            ));
        }
        let type_name = t.data_type.as_str();
        if t.length != 0 && t.data_type != DataType::String {
            return Err(bad(
                at("length"),
                format!("applies to data_type \"string\" only (this tag is {type_name})"),
            ));
        }
        let scale = match &t.scale {
            None => None,
            Some(_) if !t.data_type.is_numeric() => {
                return Err(bad(
                    at("scale"),
                    format!("applies to numeric types only (this tag is {type_name})"),
                ))
            }
            Some(s) if s.raw_lo == s.raw_hi => {
                return Err(bad(
                    at("scale"),
                    format!(
                        "raw_lo and raw_hi are both {}; the raw range must not be empty",
                        s.raw_lo
                    ),
                ))
            }
            Some(s) => Some(Scale {
                raw_lo: s.raw_lo,
                raw_hi: s.raw_hi,
                eng_lo: s.eng_lo,
                eng_hi: s.eng_hi,
            }),
        };
        let deadband = match &t.deadband {
            None => None,
            Some(d) if d.value < 0.0 => {
                return Err(bad(
                    at("deadband.value"),
                    format!("{} is negative; a deadband is 0 or more", d.value),
                ))
            }
            Some(d) if d.percent && d.value > 100.0 => {
                return Err(bad(
                    at("deadband.value"),
                    format!("{}% is more than 100% of the range", d.value),
                ))
            }
            Some(d) => Some(Deadband {
                value: d.value,
                percent: d.percent,
            }),
        };
        tags.push(Tag {
            name: t.name.clone(),
            device: t.device.clone(),
            address: t.address.clone(),
            data_type: type_name.to_string(),
            byte_order: order_api(t.byte_order),
            word_order: order_api(t.word_order),
            scale,
            deadband,
            scan_rate_ms: t.scan_rate_ms,
            units: t.units.clone(),
            description: t.description.clone(),
            writable: t.writable,
            length: t.length,
            revision: 0,
        });
    }
    Ok(ConfigDocument { devices, tags })
}

/// The API spelling of an order: `""` when not given.
fn order_api(order: Option<Order>) -> String {
    order.map(Order::as_str).unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (String, String) {
        match parse_config_document(text) {
            Err(Error::InvalidDocument { path, reason }) => (path, reason),
            other => panic!("expected InvalidDocument for {text}, got {other:?}"),
        }
    }

    fn sample() -> ConfigDocument {
        ConfigDocument {
            devices: vec![Device {
                name: "press3".into(),
                protocol: "modbus-tcp".into(),
                endpoint: "10.0.0.5:502".into(),
                unit_id: 4,
                poll_interval_ms: 500,
                timeout_ms: 750,
                retries: 2,
                enabled: false,
                labels: [("line".to_string(), "1".to_string())].into(),
                revision: 0,
            }],
            tags: vec![
                Tag {
                    name: "line1/press3/temperature".into(),
                    device: "press3".into(),
                    address: "hr:40001".into(),
                    data_type: "f32".into(),
                    word_order: "little".into(),
                    scale: Some(Scale {
                        raw_lo: 0.0,
                        raw_hi: 4095.0,
                        eng_lo: -10.0,
                        eng_hi: 10.0,
                    }),
                    deadband: Some(Deadband {
                        value: 2.5,
                        percent: true,
                    }),
                    units: "degC".into(),
                    description: "Platen".into(),
                    writable: true,
                    scan_rate_ms: 250,
                    ..Default::default()
                },
                Tag {
                    name: "line1/press3/recipe".into(),
                    device: "press3".into(),
                    address: "hr:100".into(),
                    data_type: "string".into(),
                    length: 8,
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn an_export_imports_unchanged() {
        let mut doc = sample();
        let text = doc.to_json_pretty();
        assert!(
            text.starts_with(
                "{\n  \"devices\": [\n    {\n      \"name\": \"press3\",\n      \"protocol\""
            ),
            "{text}"
        );
        assert_eq!(parse_config_document(&text).unwrap(), doc);
        // Revisions are written by export and ignored by import.
        doc.devices[0].revision = 9;
        doc.tags[0].revision = 10;
        let text = doc.to_json().to_string();
        assert!(text.contains("\"revision\":9"), "{text}");
        assert_eq!(parse_config_document(&text).unwrap(), sample());
    }

    #[test]
    fn minimal_entries_get_the_cli_defaults() {
        let doc = parse_config_document(
            r#"{"devices": [
                  {"name": "p1", "protocol": "modbus-tcp", "endpoint": "h:502"},
                  {"name": "ua", "protocol": "opcua", "endpoint": "opc.tcp://h:4840", "labels": null}
                ],
                "tags": [{"name": "t", "device": "p1", "address": "hr:0", "data_type": "u16",
                          "scale": null, "units": null}]}"#,
        )
        .unwrap();
        let d = &doc.devices[0];
        assert_eq!(
            (
                d.unit_id,
                d.poll_interval_ms,
                d.timeout_ms,
                d.retries,
                d.enabled
            ),
            (1, 1000, 1000, 3, true)
        );
        assert_eq!(doc.devices[1].unit_id, 0);
        let t = &doc.tags[0];
        assert_eq!((t.byte_order.as_str(), t.word_order.as_str()), ("", ""));
        assert_eq!((t.scale, t.deadband, t.writable), (None, None, false));
        // Both lists are optional.
        assert_eq!(
            parse_config_document("{}").unwrap(),
            ConfigDocument::default()
        );
    }

    #[test]
    fn a_bad_field_is_named_by_its_path() {
        let (path, reason) = err(concat!(
            "{\"devices\": [],\n",
            " \"tags\": [\n",
            "  {\"name\": \"a\", \"device\": \"p\", \"address\": \"hr:0\", \"data_type\": \"u16\"},\n",
            "  {\"name\": \"b\", \"device\": \"p\", \"address\": \"hr:1\", \"data_type\": \"f33\"}\n",
            " ]}\n",
        ));
        assert_eq!(path, "tags[1].data_type");
        assert!(
            reason.contains("unknown variant `f33`") && reason.contains("line 4"),
            "{reason}"
        );

        let cases: &[(&str, &str, &str)] = &[
            (
                r#"{"devices": [{"name": "p", "protocol": "modbus-tcp", "endpoint": "h:1", "unit_id": -1}]}"#,
                "devices[0].unit_id",
                "invalid value",
            ),
            (
                r#"{"devices": [{"name": "p", "protocol": "modbus-tcp"}]}"#,
                "devices[0]",
                "missing field `endpoint`",
            ),
            (
                r#"{"tags": [{"name": "t", "device": "p", "address": "hr:0", "data_type": "u16", "writeable": true}]}"#,
                "tags[0].writeable",
                "unknown field `writeable`",
            ),
            (
                r#"{"tags": [{"name": "t", "device": "p", "address": "hr:0", "data_type": "u16", "byte_order": "middle"}]}"#,
                "tags[0].byte_order",
                "unknown variant `middle`",
            ),
            (
                r#"{"tags": [{"name": "t", "device": "p", "address": "hr:0", "data_type": "u16", "scale": {"raw_lo": 0, "raw_hi": 1, "eng_lo": 0}}]}"#,
                "tags[0].scale",
                "missing field `eng_hi`",
            ),
            (r#"{"devices": {}}"#, "devices", "invalid type: map"),
            (r#"{"device": []}"#, "device", "unknown field `device`"),
            (r#"{"devices": [}"#, "devices[0]", "line 1 column 14"),
            (r#"[]"#, "document", "expected a JSON object"),
            ("", "document", "EOF while parsing"),
            (
                r#"{"devices": [{"name": " ", "protocol": "modbus-tcp", "endpoint": "h:1"}]}"#,
                "devices[0].name",
                "must not be empty",
            ),
            (
                r#"{"devices": [{"name": "p", "protocol": "modbus-tcp", "endpoint": "h:1"},
                                {"name": "p", "protocol": "modbus-tcp", "endpoint": "h:2"}]}"#,
                "devices[1].name",
                "appears twice (also devices[0])",
            ),
            (
                r#"{"devices": [{"name": "p", "protocol": "modbus-tcp", "endpoint": "h:1", "poll_interval_ms": 0}]}"#,
                "devices[0].poll_interval_ms",
                "at least 1",
            ),
            (
                r#"{"tags": [{"name": "t", "device": "p", "address": "hr:0", "data_type": "u16", "length": 3}]}"#,
                "tags[0].length",
                "\"string\" only",
            ),
            (
                r#"{"tags": [{"name": "t", "device": "p", "address": "coil:0", "data_type": "bool", "scale": {"raw_lo": 0, "raw_hi": 1, "eng_lo": 0, "eng_hi": 1}}]}"#,
                "tags[0].scale",
                "numeric types only",
            ),
            (
                r#"{"tags": [{"name": "t", "device": "p", "address": "hr:0", "data_type": "u16", "deadband": {"value": -1}}]}"#,
                "tags[0].deadband.value",
                "negative",
            ),
            (
                r#"{"tags": [{"name": "t", "device": "p", "address": "", "data_type": "u16"}]}"#,
                "tags[0].address",
                "must not be empty",
            ),
        ];
        for (text, want_path, want_reason) in cases {
            let (path, reason) = err(text);
            assert_eq!(&path, want_path, "{text}: {reason}");
            assert!(reason.contains(want_reason), "{text}: {reason:?}");
        }
    }

    #[test]
    fn error_message_leads_with_the_path() {
        let e = parse_config_document(r#"{"tags": [{"name": 5}]}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("tags[0].name: invalid type"),
            "{e}"
        );
    }
}
