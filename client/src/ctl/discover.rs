//! `bifrostctl discover`: asks a node to look for devices of one protocol
//! at given addresses, prints each one found as it comes, and optionally
//! creates a device for each (one import, all or nothing).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use bifrost_client::proto::{Device, DiscoverRequest, DiscoveredDevice};
use bifrost_model::Protocol;
use clap::Args;
use futures::TryStreamExt;
use serde_json::json;

use super::output::{print_json, print_line, Output};
use super::{Common, Ctx};

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// What to look for: opcua, modbus-tcp (needs the admin role), enip or s7.
    #[arg(value_enum)]
    pub protocol: Protocol,
    /// Where: HOST, HOST:PORT, A.B.C.D/24 (or narrower), A.B.C.D-E (a range
    /// of the last octet) or opc.tcp:// URLs; at most 256 addresses.
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Port for targets that name none [default: the protocol's: 502,
    /// 4840, 44818, 102].
    #[arg(long)]
    pub port: Option<u16>,
    /// Modbus unit id to ask at each address (repeatable) [default: 1].
    #[arg(long = "unit", value_name = "ID")]
    pub units: Vec<u32>,
    /// How long to wait for each address to answer.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub probe_timeout: Duration,
    /// Addresses probed a second (1-100), so a scan never floods a plant network.
    #[arg(long, default_value_t = 10)]
    pub rate: u32,
    /// Create a device for each one found, named PREFIX1, PREFIX2, ... in
    /// the order found (one import: all or none).
    #[arg(long, value_name = "PREFIX")]
    pub add_devices: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn discover(ctx: &Ctx, args: DiscoverArgs) -> anyhow::Result<()> {
    if args.protocol == Protocol::ModbusRtu {
        bail!("modbus-rtu devices cannot be discovered over the network");
    }
    let req = DiscoverRequest {
        protocol: args.protocol.as_str().to_string(),
        targets: args.targets.clone(),
        units: args.units.clone(),
        timeout_ms: args.probe_timeout.as_millis() as u64,
        rate_per_second: args.rate,
        port: args.port.map_or(0, u32::from),
    };
    let client = ctx.client()?;
    eprintln!(
        "probing {} for {} devices, {} addresses a second...",
        args.targets.join(" "),
        args.protocol,
        args.rate
    );
    let mut found = Vec::new();
    let mut stream = client.discover(req).await?;
    while let Some(d) = stream.try_next().await? {
        if ctx.output != Output::Json {
            print_line(describe(&d))?;
        }
        found.push(d);
    }
    eprintln!("{} device(s) found", found.len());
    if ctx.output == Output::Json {
        print_json(&found.iter().map(candidate_json).collect::<Vec<_>>())?;
    }
    if let Some(prefix) = &args.add_devices {
        add_devices(ctx, &client, prefix, &found).await?;
    }
    Ok(())
}

/// `modbus-tcp 127.0.0.1:502 unit 1: ACME PLC-5 1.2 (found_by=...)`.
fn describe(d: &DiscoveredDevice) -> String {
    let mut what: Vec<&str> = [&d.vendor, &d.product, &d.firmware]
        .into_iter()
        .map(String::as_str)
        .filter(|s| !s.is_empty())
        .collect();
    if what.is_empty() {
        what.push("(no identification)");
    }
    let mut details: Vec<String> = d.details.iter().map(|(k, v)| format!("{k}={v}")).collect();
    details.sort();
    let unit = if d.unit_id > 0 {
        format!(" unit {}", d.unit_id)
    } else {
        String::new()
    };
    format!(
        "{} {}{unit}: {} ({})",
        d.protocol,
        d.endpoint,
        what.join(" "),
        details.join(", ")
    )
}

fn candidate_json(d: &DiscoveredDevice) -> serde_json::Value {
    json!({
        "protocol": d.protocol, "endpoint": d.endpoint, "unit_id": d.unit_id,
        "vendor": d.vendor, "product": d.product, "firmware": d.firmware,
        "details": d.details,
    })
}

/// The device `discover --add-devices` makes of a candidate: the
/// protocol's defaults, labelled with what the device said.
pub fn device_for(name: String, d: &DiscoveredDevice) -> Device {
    let protocol = Protocol::parse(&d.protocol).unwrap_or(Protocol::ModbusTcp);
    let mut labels = HashMap::new();
    for (key, value) in [
        ("vendor", &d.vendor),
        ("product", &d.product),
        ("firmware", &d.firmware),
    ] {
        if !value.is_empty() {
            labels.insert(format!("discovered.{key}"), value.clone());
        }
    }
    Device {
        name,
        protocol: d.protocol.clone(),
        endpoint: d.endpoint.clone(),
        unit_id: if d.unit_id > 0 {
            d.unit_id
        } else {
            protocol.default_unit_id()
        },
        poll_interval_ms: bifrost_model::Device::DEFAULT_INTERVAL_MS,
        timeout_ms: bifrost_model::Device::DEFAULT_INTERVAL_MS,
        retries: bifrost_model::Device::DEFAULT_RETRIES,
        enabled: true,
        labels,
        revision: 0,
    }
}

async fn add_devices(
    ctx: &Ctx,
    client: &bifrost_client::Client,
    prefix: &str,
    found: &[DiscoveredDevice],
) -> anyhow::Result<()> {
    if found.is_empty() {
        eprintln!("no device to add");
        return Ok(());
    }
    let devices: Vec<Device> = found
        .iter()
        .enumerate()
        .map(|(i, d)| device_for(format!("{prefix}{}", i + 1), d))
        .collect();
    let names: Vec<String> = devices.iter().map(|d| d.name.clone()).collect();
    let resp = client.import(devices, vec![]).await?;
    if ctx.output != Output::Json {
        print_line(format_args!(
            "added {} device(s): {}",
            resp.devices,
            names.join(", ")
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_candidate_becomes_a_device_with_the_protocols_defaults() {
        let d = DiscoveredDevice {
            protocol: "modbus-tcp".into(),
            endpoint: "127.0.0.1:5020".into(),
            unit_id: 3,
            vendor: "ACME".into(),
            product: "".into(),
            firmware: "1.2".into(),
            details: Default::default(),
        };
        let dev = device_for("found1".into(), &d);
        assert_eq!(
            (dev.name.as_str(), dev.unit_id, dev.enabled),
            ("found1", 3, true)
        );
        assert_eq!(
            dev.labels.get("discovered.vendor").map(String::as_str),
            Some("ACME")
        );
        assert!(
            !dev.labels.contains_key("discovered.product"),
            "empty ones are left out"
        );
        let s7 = device_for(
            "plc".into(),
            &DiscoveredDevice {
                protocol: "s7".into(),
                unit_id: 0,
                ..d.clone()
            },
        );
        assert_eq!(s7.unit_id, 0);
        assert_eq!(
            describe(&d),
            "modbus-tcp 127.0.0.1:5020 unit 3: ACME 1.2 ()"
        );
    }
}
