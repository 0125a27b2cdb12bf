//! `device` and `tag`: config CRUD. Adds are `create_only`, so adding a name
//! that exists is an error rather than a silent replace. Values are checked
//! here for a quick, clear message, but the server validates everything
//! again and has the last word.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use bifrost_client::proto::{Deadband, Device, Scale, Tag};
use bifrost_model::{DataType, Order, Protocol};
use clap::{Args, Subcommand};
use serde_json::json;

use super::flags::{parse_deadband, parse_label, parse_ms, parse_scale};
use super::output::{
    device_json, devices_table, print_json, print_line, tag_json, tags_table, Output,
};
use super::{Common, ConsistencyArg, Ctx};

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Create a device (an existing name is an error).
    Add(DeviceAddArgs),
    /// List devices.
    List(ListArgs),
    /// Delete a device.
    Rm(RmArgs),
}

impl DeviceCmd {
    /// The call timeout given after the subcommand, if any. `device add` has
    /// none: its `--timeout` is the device's.
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            DeviceCmd::Add(_) => None,
            DeviceCmd::List(a) => a.common.timeout,
            DeviceCmd::Rm(a) => a.common.timeout,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TagCmd {
    /// Create a tag (an existing name is an error).
    Add(Box<TagAddArgs>),
    /// List tags.
    List(TagListArgs),
    /// Delete a tag. Its history is kept (a tag created again under the same
    /// name continues it) unless --purge is given.
    Rm(TagRmArgs),
}

impl TagCmd {
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            TagCmd::Add(a) => a.common.timeout,
            TagCmd::List(a) => a.list.common.timeout,
            TagCmd::Rm(a) => a.common.timeout,
        }
    }
}

#[derive(Args, Debug)]
pub struct DeviceAddArgs {
    /// Unique device name.
    pub name: String,
    /// Device protocol.
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    /// HOST:PORT for modbus-tcp, a serial port for modbus-rtu, an opc.tcp://
    /// URL for opcua, HOST[:PORT] for enip (44818) and s7 (102).
    #[arg(long)]
    pub endpoint: String,
    /// Modbus unit (slave) id [default: 1 for Modbus, 0 for the others].
    #[arg(long)]
    pub unit: Option<u32>,
    /// Poll interval.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Time to wait for the device to answer one request.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Retries of a failed request before the reading is marked bad.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Create the device without polling it.
    #[arg(long)]
    pub disabled: bool,
    /// KEY=VALUE, repeatable. The value of a secret label (last dot-part
    /// password, private_key or secret, e.g. opcua.password) is stored
    /// encrypted and listed as "(secret)".
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Only these nodes may poll the device, e.g. 1,2 (the label
    /// affinity.nodes).
    #[arg(long, value_name = "IDS")]
    pub nodes: Option<String>,
    /// Only nodes advertising KEY=VALUE (bifrost serve --node-label) may
    /// poll the device, e.g. zone=cell3; repeatable (the label
    /// affinity.KEY).
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub node_labels: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    pub name: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct TagRmArgs {
    pub name: String,
    /// Erase the tag's history too (also the history kept by an earlier
    /// `tag rm` of this name). Cannot be undone.
    #[arg(long)]
    pub purge: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct TagListArgs {
    /// Only tags of this device.
    #[arg(long)]
    pub device: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Args, Debug)]
pub struct TagAddArgs {
    /// Unique, path-like tag name (e.g. line1/press3/temperature).
    pub name: String,
    /// The device the tag is read from.
    #[arg(long)]
    pub device: String,
    /// Address in the protocol's notation: hr:40001, holding:0, coil:5,
    /// ns=2;s=Temperature, ...
    #[arg(long)]
    pub address: String,
    /// Data type of the value.
    #[arg(long = "type", value_enum)]
    pub data_type: DataType,
    /// Byte order within a 16-bit register [default: big].
    #[arg(long, value_enum)]
    pub byte_order: Option<Order>,
    /// Register order of 32/64-bit values [default: big].
    #[arg(long, value_enum)]
    pub word_order: Option<Order>,
    /// Linear scaling from a raw range to an engineering range.
    #[arg(long, value_name = "RAW_LO:RAW_HI:ENG_LO:ENG_HI", value_parser = parse_scale,
          allow_hyphen_values = true)]
    pub scale: Option<Scale>,
    /// Minimum change to record: N engineering units, or N% of the range.
    #[arg(long, value_name = "N|N%", value_parser = parse_deadband, allow_hyphen_values = true)]
    pub deadband: Option<Deadband>,
    /// Engineering units, e.g. degC, bar.
    #[arg(long)]
    pub units: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Allow writes to the device through this tag.
    #[arg(long)]
    pub writable: bool,
    /// Registers a string tag spans (string type only).
    #[arg(long)]
    pub length: Option<u32>,
    /// Read this tag at its own rate (e.g. 200ms, 5s) instead of the
    /// device's poll interval, faster or slower. The device is polled at the
    /// fastest rate any of its tags needs; tags without a scan rate follow
    /// the device's interval.
    #[arg(long, value_parser = parse_ms)]
    pub scan_rate: Option<u64>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn device(ctx: &Ctx, cmd: DeviceCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        DeviceCmd::Add(a) => {
            let device = device_from_args(a)?;
            let stored = client.put_device(device, true).await?;
            match ctx.output {
                Output::Json => print_json(&device_json(&stored))?,
                Output::Text | Output::Csv => print_line(format_args!(
                    "created device {:?} (revision {})",
                    stored.name, stored.revision
                ))?,
            }
        }
        DeviceCmd::List(a) => {
            let mut devices = client.list_devices(a.consistency.into()).await?;
            devices.sort_by(|x, y| x.name.cmp(&y.name));
            match ctx.output {
                Output::Json => print_json(&devices.iter().map(device_json).collect::<Vec<_>>())?,
                Output::Text | Output::Csv => devices_table(&devices).print()?,
            }
        }
        DeviceCmd::Rm(a) => {
            let revision = client.delete_device(&a.name).await?;
            deleted(ctx, "device", &a.name, revision)?;
        }
    }
    Ok(())
}

pub async fn tag(ctx: &Ctx, cmd: TagCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        TagCmd::Add(a) => {
            let tag = tag_from_args(*a)?;
            let stored = client.put_tag(tag, true).await?;
            match ctx.output {
                Output::Json => print_json(&tag_json(&stored))?,
                Output::Text | Output::Csv => print_line(format_args!(
                    "created tag {:?} (revision {})",
                    stored.name, stored.revision
                ))?,
            }
        }
        TagCmd::List(a) => {
            let mut tags = client
                .list_tags(a.device.as_deref(), a.list.consistency.into())
                .await?;
            tags.sort_by(|x, y| x.name.cmp(&y.name));
            match ctx.output {
                Output::Json => print_json(&tags.iter().map(tag_json).collect::<Vec<_>>())?,
                Output::Text | Output::Csv => tags_table(&tags).print()?,
            }
        }
        TagCmd::Rm(a) => {
            let revision = client.delete_tag(&a.name, a.purge).await?;
            tag_deleted(ctx, &a.name, a.purge, revision)?;
        }
    }
    Ok(())
}

/// Says what `tag rm` did to the history, not just that the tag is gone.
fn tag_deleted(ctx: &Ctx, name: &str, purged: bool, revision: u64) -> anyhow::Result<()> {
    match ctx.output {
        Output::Json => print_json(&json!({
            "deleted": name,
            "kind": "tag",
            "history": if purged { "purged" } else { "kept" },
            "revision": revision,
        }))?,
        Output::Text | Output::Csv if purged => print_line(format_args!(
            "deleted tag {name:?} and erased its history (revision {revision})"
        ))?,
        Output::Text | Output::Csv => print_line(format_args!(
            "deleted tag {name:?} (revision {revision}); its history is kept: a tag \
             created again as {name:?} continues it, `tag rm {name} --purge` erases it"
        ))?,
    }
    Ok(())
}

fn deleted(ctx: &Ctx, what: &str, name: &str, revision: u64) -> anyhow::Result<()> {
    match ctx.output {
        Output::Json => print_json(&json!({"deleted": name, "kind": what, "revision": revision}))?,
        Output::Text | Output::Csv => print_line(format_args!(
            "deleted {what} {name:?} (revision {revision})"
        ))?,
    }
    Ok(())
}

fn positive_ms(flag: &str, d: Duration) -> anyhow::Result<u64> {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        bail!("--{flag} must be at least 1ms");
    }
    Ok(ms)
}

fn device_from_args(a: DeviceAddArgs) -> anyhow::Result<Device> {
    if a.name.trim().is_empty() {
        bail!("device name must not be empty");
    }
    if a.endpoint.trim().is_empty() {
        bail!("--endpoint must not be empty");
    }
    let mut labels = HashMap::new();
    let affinity = a
        .nodes
        .map(|ids| (bifrost_model::Device::AFFINITY_NODES_LABEL.to_string(), ids))
        .into_iter()
        .chain(
            a.node_labels
                .into_iter()
                .map(|(k, v)| (format!("{}{k}", bifrost_model::Device::AFFINITY_PREFIX), v)),
        );
    for (k, v) in a.labels.into_iter().chain(affinity) {
        if labels.insert(k.clone(), v).is_some() {
            bail!("label {k:?} given twice (by --label, --nodes or --node-label)");
        }
    }
    Ok(Device {
        name: a.name,
        protocol: a.protocol.as_str().to_string(),
        endpoint: a.endpoint,
        unit_id: a.unit.unwrap_or(a.protocol.default_unit_id()),
        poll_interval_ms: positive_ms("interval", a.interval)?,
        timeout_ms: positive_ms("timeout", a.timeout)?,
        retries: a.retries,
        enabled: !a.disabled,
        labels,
        revision: 0,
    })
}

fn tag_from_args(a: TagAddArgs) -> anyhow::Result<Tag> {
    if a.name.trim().is_empty() {
        bail!("tag name must not be empty");
    }
    if a.length.is_some() && a.data_type != DataType::String {
        bail!(
            "--length applies to --type string only (got --type {})",
            a.data_type
        );
    }
    if a.scale.is_some() && !a.data_type.is_numeric() {
        bail!(
            "--scale applies to numeric types only (got --type {})",
            a.data_type
        );
    }
    Ok(Tag {
        name: a.name,
        device: a.device,
        address: a.address,
        data_type: a.data_type.as_str().to_string(),
        byte_order: a
            .byte_order
            .map(|o| o.as_str().to_string())
            .unwrap_or_default(),
        word_order: a
            .word_order
            .map(|o| o.as_str().to_string())
            .unwrap_or_default(),
        scale: a.scale,
        deadband: a.deadband,
        scan_rate_ms: a.scan_rate.unwrap_or(0),
        units: a.units.unwrap_or_default(),
        description: a.description.unwrap_or_default(),
        writable: a.writable,
        length: a.length.unwrap_or(0),
        revision: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use clap::Parser;

    fn tag_args(extra: &[&str]) -> anyhow::Result<Tag> {
        let mut args = vec![
            "bifrostctl",
            "tag",
            "add",
            "line1/t",
            "--device",
            "press3",
            "--address",
            "hr:40001",
        ];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Tag(TagCmd::Add(a)) => tag_from_args(*a),
            other => panic!("{other:?}"),
        }
    }

    fn device_args(extra: &[&str]) -> anyhow::Result<Device> {
        let mut args = vec!["bifrostctl", "device", "add", "press3"];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args)?.command {
            Command::Device(DeviceCmd::Add(a)) => device_from_args(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn device_add_builds_the_api_device() {
        let d = device_args(&[
            "--protocol",
            "modbus-tcp",
            "--endpoint",
            "10.0.0.5:502",
            "--interval",
            "500ms",
            "--retries",
            "2",
            "--disabled",
            "--label",
            "line=1",
            "--label",
            "area=press",
        ])
        .unwrap();
        assert_eq!(d.protocol, "modbus-tcp");
        assert_eq!(d.endpoint, "10.0.0.5:502");
        assert_eq!(d.unit_id, 1);
        assert_eq!(d.poll_interval_ms, 500);
        assert_eq!(d.timeout_ms, 1000);
        assert_eq!(d.retries, 2);
        assert!(!d.enabled);
        assert_eq!(d.labels.get("area").map(String::as_str), Some("press"));
        let d = device_args(&["--protocol", "opcua", "--endpoint", "opc.tcp://h:4840"]).unwrap();
        assert_eq!(
            (d.protocol.as_str(), d.unit_id, d.enabled),
            ("opcua", 0, true)
        );
    }

    #[test]
    fn device_add_turns_nodes_and_node_labels_into_affinity_labels() {
        let d = device_args(&[
            "--protocol",
            "modbus-rtu",
            "--endpoint",
            "/dev/ttyUSB0",
            "--nodes",
            "1,2",
            "--node-label",
            "serial=/dev/ttyUSB0",
        ])
        .unwrap();
        assert_eq!(
            d.labels.get("affinity.nodes").map(String::as_str),
            Some("1,2")
        );
        assert_eq!(
            d.labels.get("affinity.serial").map(String::as_str),
            Some("/dev/ttyUSB0")
        );
        let e = device_args(&[
            "--protocol",
            "s7",
            "--endpoint",
            "h",
            "--nodes",
            "1",
            "--label",
            "affinity.nodes=2",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }

    #[test]
    fn device_add_sends_a_secret_label_as_given() {
        let d = device_args(&[
            "--protocol",
            "opcua",
            "--endpoint",
            "opc.tcp://h:4840",
            "--label",
            "opcua.password=hun=ter2",
            "--label",
            "opcua.user=op",
        ])
        .unwrap();
        assert_eq!(
            d.labels.get("opcua.password").map(String::as_str),
            Some("hun=ter2")
        );
        assert_eq!(d.labels.get("opcua.user").map(String::as_str), Some("op"));
        assert_eq!(d.labels.len(), 2);
    }

    #[test]
    fn device_add_rejects_unknown_protocol_and_bad_values() {
        let e = device_args(&["--protocol", "profibus", "--endpoint", "h:1"]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("profibus") && msg.contains("modbus-tcp"),
            "{msg}"
        );
        let e = device_args(&[
            "--protocol",
            "modbus-tcp",
            "--endpoint",
            "h:1",
            "--label",
            "a=1",
            "--label",
            "a=2",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
        let e = device_args(&[
            "--protocol",
            "modbus-tcp",
            "--endpoint",
            "h:1",
            "--interval",
            "0s",
        ])
        .unwrap_err();
        assert!(
            e.to_string().contains("--interval must be at least 1ms"),
            "{e}"
        );
    }

    #[test]
    fn tag_add_builds_the_api_tag() {
        let t = tag_args(&[
            "--type",
            "f32",
            "--word-order",
            "little",
            "--scale",
            "-100:100:0:10",
            "--deadband",
            "2%",
            "--units",
            "bar",
            "--writable",
            "--scan-rate",
            "250ms",
        ])
        .unwrap();
        assert_eq!(t.data_type, "f32");
        assert_eq!(t.byte_order, "");
        assert_eq!(t.word_order, "little");
        let s = t.scale.unwrap();
        assert_eq!(
            (s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi),
            (-100.0, 100.0, 0.0, 10.0)
        );
        assert_eq!(
            t.deadband,
            Some(Deadband {
                value: 2.0,
                percent: true
            })
        );
        assert_eq!(t.units, "bar");
        assert!(t.writable);
        assert_eq!(t.scan_rate_ms, 250);
    }

    #[test]
    fn tag_add_rejects_bad_flags_with_the_reason() {
        let e = tag_args(&["--type", "f64", "--scale", "1:2:3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--scale") && e.contains("4 numbers"), "{e}");
        let e = tag_args(&["--type", "f64", "--deadband", "-3"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--deadband") && e.contains("negative"), "{e}");
        let e = tag_args(&["--type", "u16", "--length", "4"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--length applies to --type string only"), "{e}");
        let e = tag_args(&["--type", "string", "--scale", "0:1:0:1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("numeric types only"), "{e}");
        let e = tag_args(&["--type", "float"]).unwrap_err().to_string();
        assert!(e.contains("float") && e.contains("f64"), "{e}");
        assert_eq!(
            tag_args(&["--type", "string", "--length", "8"])
                .unwrap()
                .length,
            8
        );
    }

    /// The model enums are the flags' value enums: their spellings are the
    /// API's and the README's and must not drift.
    #[test]
    fn flag_spellings_are_the_api_names() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let values = |sub: &str, arg: &str| -> Vec<String> {
            let cmd = cli.find_subcommand(sub).unwrap();
            let add = cmd.find_subcommand("add").unwrap();
            let a = add.get_arguments().find(|a| a.get_id() == arg).unwrap();
            a.get_possible_values()
                .iter()
                .map(|v| v.get_name().to_string())
                .collect()
        };
        assert_eq!(
            values("tag", "data_type"),
            ["bool", "i16", "u16", "i32", "u32", "i64", "f32", "f64", "string"]
        );
        assert_eq!(values("tag", "byte_order"), ["big", "little"]);
        assert_eq!(values("tag", "word_order"), ["big", "little"]);
        assert_eq!(
            values("device", "protocol"),
            ["modbus-tcp", "modbus-rtu", "opcua", "enip", "s7"]
        );
    }
}
