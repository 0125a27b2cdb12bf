//! Device discovery: which devices of a protocol answer at the given
//! addresses, and what they say they are.
//!
//! * OPC UA: FindServers and GetEndpoints at each `opc.tcp://` URL (or
//!   `HOST[:PORT]`, port 4840).
//! * Modbus TCP: an opt-in probe of addresses (at most 256, a /24), each
//!   with Read Device Identification, falling back to reading one holding
//!   register: read-only requests only.
//! * EtherNet/IP: List Identity, unicast to each address (port 44818).
//! * S7: a connection (rack/slot 0/1 unless told) and an SZL read of the
//!   module identification (port 102).
//!
//! Targets are `HOST`, `HOST:PORT`, `A.B.C.D/NN` (NN 24-32) or
//! `A.B.C.D-E` (a range of the last octet); those without a port get the
//! given one, else the protocol's (502, 4840, 44818, 102). Probes start at most
//! `rate_per_second` a second, at most [`MAX_IN_FLIGHT`] at once, so a scan
//! never floods a plant network; each is bounded by `timeout`. Found
//! devices are sent on a channel as they are found.
//!
//! Depends on the drivers' own identification calls only; who may run a
//! discovery is the server's business.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bifrost_model::Protocol;
use futures::StreamExt;
use tokio::sync::mpsc;

/// Most addresses one discovery may probe (a /24).
pub const MAX_TARGETS: usize = 256;
/// Most probes in flight at once.
pub const MAX_IN_FLIGHT: usize = 16;
/// Most probes started a second.
pub const MAX_RATE: u32 = 100;

/// What to look for, and where.
#[derive(Clone, Debug)]
pub struct DiscoverOptions {
    pub protocol: Protocol,
    pub targets: Vec<String>,
    /// Port for targets that name none; `None`: the protocol's default.
    pub port: Option<u16>,
    /// Modbus unit ids to ask at each address (default `[1]`).
    pub units: Vec<u8>,
    /// Per probe.
    pub timeout: Duration,
    /// Probes started a second (1 to [`MAX_RATE`]).
    pub rate_per_second: u32,
}

/// A device found, with what it said about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// The protocol's spelling (`modbus-tcp`, `opcua`, `enip`, `s7`).
    pub protocol: String,
    /// What a device of that protocol would use as its endpoint.
    pub endpoint: String,
    /// Modbus unit; 0 for the others.
    pub unit_id: u32,
    pub vendor: String,
    pub product: String,
    pub firmware: String,
    /// Everything else it said (serial number, security modes, ...).
    pub details: BTreeMap<String, String>,
}

/// One address to probe: `host:port`, or the URL for OPC UA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target(pub String);

/// The default port of a protocol's devices.
fn default_port(p: Protocol) -> u16 {
    match p {
        Protocol::ModbusTcp => 502,
        Protocol::Opcua => 4840,
        Protocol::Enip => 44818,
        Protocol::S7 => 102,
        Protocol::ModbusRtu => 0,
    }
}

/// Checks the options and expands the targets; errors name the target.
pub fn plan(opts: &DiscoverOptions) -> Result<Vec<Target>, String> {
    if opts.protocol == Protocol::ModbusRtu {
        return Err("modbus-rtu devices cannot be discovered over the network".into());
    }
    if opts.rate_per_second == 0 || opts.rate_per_second > MAX_RATE {
        return Err(format!(
            "rate {} probes a second is out of range (1-{MAX_RATE})",
            opts.rate_per_second
        ));
    }
    if opts.targets.is_empty() {
        return Err("no target given (HOST, HOST:PORT, A.B.C.D/24 or A.B.C.D-E)".into());
    }
    let mut out = Vec::new();
    for t in &opts.targets {
        let port = opts.port.unwrap_or(default_port(opts.protocol));
        out.extend(expand(opts.protocol, t.trim(), port)?);
        if out.len() > MAX_TARGETS {
            return Err(format!(
                "target '{t}': more than {MAX_TARGETS} addresses in all (at most a /24)"
            ));
        }
    }
    Ok(out)
}

fn expand(p: Protocol, t: &str, port: u16) -> Result<Vec<Target>, String> {
    if p == Protocol::Opcua && t.starts_with("opc.tcp://") {
        crate::opcua::validate_endpoint(t).map_err(|e| format!("target '{t}': {e}"))?;
        return Ok(vec![Target(t.to_string())]);
    }
    let hosts = if let Some((base, bits)) = t.split_once('/') {
        cidr(base, bits).map_err(|e| format!("target '{t}': {e}"))?
    } else if let Some((first, last)) = t.split_once('-').filter(|_| t.parse::<Ipv4Addr>().is_err())
    {
        octet_range(first, last).map_err(|e| format!("target '{t}': {e}"))?
    } else {
        return Ok(vec![host_target(p, t, port)?]);
    };
    Ok(hosts
        .into_iter()
        .map(|ip| format_target(p, &format!("{ip}:{port}")))
        .collect())
}

fn host_target(p: Protocol, t: &str, port: u16) -> Result<Target, String> {
    let plausible = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
    if !plausible {
        return Err(format!(
            "target '{t}': not an address (HOST, HOST:PORT, A.B.C.D/24, A.B.C.D-E)"
        ));
    }
    let with_port = if t.parse::<SocketAddr>().is_ok() || has_port(t) {
        t.to_string()
    } else {
        format!("{t}:{port}")
    };
    if with_port.to_socket_addrs().is_err() {
        return Err(format!(
            "target '{t}': not an address (HOST, HOST:PORT, A.B.C.D/24, A.B.C.D-E)"
        ));
    }
    Ok(format_target(p, &with_port))
}

fn has_port(t: &str) -> bool {
    t.rsplit_once(':')
        .is_some_and(|(h, p)| !h.contains(':') && p.parse::<u16>().is_ok())
}

fn format_target(p: Protocol, host_port: &str) -> Target {
    match p {
        Protocol::Opcua => Target(format!("opc.tcp://{host_port}")),
        _ => Target(host_port.to_string()),
    }
}

fn cidr(base: &str, bits: &str) -> Result<Vec<Ipv4Addr>, String> {
    let ip: Ipv4Addr = base
        .parse()
        .map_err(|_| format!("'{base}' is not an IPv4 address"))?;
    let bits: u32 = bits
        .parse()
        .map_err(|_| format!("'/{bits}' is not a prefix length"))?;
    if !(24..=32).contains(&bits) {
        return Err(format!(
            "/{bits} is wider than a /24 (at most {MAX_TARGETS} addresses)"
        ));
    }
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    let start = u32::from(ip) & mask;
    let count = 1u32 << (32 - bits);
    Ok((start..start + count).map(Ipv4Addr::from).collect())
}

fn octet_range(first: &str, last: &str) -> Result<Vec<Ipv4Addr>, String> {
    let ip: Ipv4Addr = first
        .parse()
        .map_err(|_| format!("'{first}' is not an IPv4 address"))?;
    let end: u8 = last
        .parse()
        .map_err(|_| format!("'{last}' is not the last octet of the range (0-255)"))?;
    let [a, b, c, d] = ip.octets();
    if end < d {
        return Err(format!("the range ends ({end}) before it starts ({d})"));
    }
    Ok((d..=end).map(|x| Ipv4Addr::new(a, b, c, x)).collect())
}

/// Probes every target of `opts` and sends each device found on `found`.
/// Returns how many targets were probed.
pub async fn run(opts: DiscoverOptions, found: mpsc::Sender<Candidate>) -> Result<usize, String> {
    let targets = plan(&opts)?;
    let n = targets.len();
    let tick = tokio::time::interval(Duration::from_secs(1) / opts.rate_per_second);
    let paced = futures::stream::unfold(
        (targets.into_iter(), tick),
        |(mut rest, mut tick)| async move {
            let next = rest.next()?;
            tick.tick().await;
            Some((next, (rest, tick)))
        },
    );
    let opts = &opts;
    paced
        .map(|t| probe(opts, t))
        .buffer_unordered(MAX_IN_FLIGHT)
        .for_each(|candidates| {
            let found = found.clone();
            async move {
                for c in candidates {
                    let _ = found.send(c).await;
                }
            }
        })
        .await;
    Ok(n)
}

/// The devices at one target (nothing when nothing answers).
async fn probe(opts: &DiscoverOptions, Target(t): Target) -> Vec<Candidate> {
    let found = match opts.protocol {
        Protocol::ModbusTcp => probe_modbus(opts, &t).await,
        Protocol::Opcua => probe_opcua(opts, &t).await,
        Protocol::Enip => probe_enip(opts, &t).await.into_iter().collect(),
        Protocol::S7 => probe_s7(opts, &t).await.into_iter().collect(),
        Protocol::ModbusRtu => Vec::new(),
    };
    tracing::debug!(target = %t, found = found.len(), "discovery probe");
    found
}

fn resolve(t: &str) -> Option<SocketAddr> {
    t.to_socket_addrs().ok()?.next()
}

async fn probe_modbus(opts: &DiscoverOptions, t: &str) -> Vec<Candidate> {
    let Some(addr) = resolve(t) else {
        return Vec::new();
    };
    let units = if opts.units.is_empty() {
        vec![1]
    } else {
        opts.units.clone()
    };
    let mut out = Vec::new();
    for unit in units {
        match crate::modbus::identify::identify(addr, unit, opts.timeout).await {
            Ok(Some(id)) => out.push(Candidate {
                protocol: Protocol::ModbusTcp.as_str().into(),
                endpoint: t.to_string(),
                unit_id: unit.into(),
                vendor: id.vendor,
                product: id.product,
                firmware: id.revision,
                details: BTreeMap::from([("found_by".into(), id.found_by)]),
            }),
            Ok(None) => {}
            // Nothing listens: no point asking the other units.
            Err(_) => break,
        }
    }
    out
}

async fn probe_opcua(opts: &DiscoverOptions, url: &str) -> Vec<Candidate> {
    let Ok(servers) = crate::opcua::discovery::find_servers(url, opts.timeout).await else {
        return Vec::new();
    };
    servers
        .into_iter()
        .map(|s| Candidate {
            protocol: Protocol::Opcua.as_str().into(),
            endpoint: s.endpoint_url,
            unit_id: 0,
            vendor: s.product_uri.clone(),
            product: s.application_name,
            firmware: String::new(),
            details: BTreeMap::from([
                ("application_uri".into(), s.application_uri),
                ("product_uri".into(), s.product_uri),
                ("security".into(), s.security.join(", ")),
                ("user_tokens".into(), s.user_tokens.join(", ")),
            ]),
        })
        .collect()
}

async fn probe_enip(opts: &DiscoverOptions, t: &str) -> Option<Candidate> {
    let addr = resolve(t)?;
    let id = crate::enip::list_identity(addr, opts.timeout).await.ok()?;
    Some(Candidate {
        protocol: Protocol::Enip.as_str().into(),
        endpoint: t.to_string(),
        unit_id: 0,
        vendor: match id.vendor_id {
            1 => "Rockwell Automation/Allen-Bradley".into(),
            other => format!("vendor {other}"),
        },
        product: id.product_name,
        firmware: id.revision,
        details: BTreeMap::from([
            ("vendor_id".into(), id.vendor_id.to_string()),
            ("device_type".into(), id.device_type.to_string()),
            ("product_code".into(), id.product_code.to_string()),
            ("serial".into(), format!("{:#010x}", id.serial)),
        ]),
    })
}

async fn probe_s7(opts: &DiscoverOptions, t: &str) -> Option<Candidate> {
    let options = crate::s7::S7Options {
        timeout: opts.timeout,
        retries: 0,
        ..Default::default()
    };
    let id = crate::s7::identify(t, &options).await.ok()?;
    Some(Candidate {
        protocol: Protocol::S7.as_str().into(),
        endpoint: t.to_string(),
        unit_id: 0,
        vendor: "Siemens".into(),
        product: id.order_number.clone(),
        firmware: id.firmware,
        details: BTreeMap::from([
            ("order_number".into(), id.order_number),
            ("module_name".into(), id.module_name),
            ("serial".into(), id.serial),
            ("hardware".into(), id.hardware),
        ]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(protocol: Protocol, targets: &[&str]) -> DiscoverOptions {
        DiscoverOptions {
            protocol,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            port: None,
            units: vec![],
            timeout: Duration::from_millis(200),
            rate_per_second: 10,
        }
    }

    fn targets(protocol: Protocol, t: &[&str]) -> Vec<String> {
        plan(&opts(protocol, t))
            .unwrap()
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    #[test]
    fn targets_expand_with_the_protocols_port() {
        assert_eq!(
            targets(Protocol::ModbusTcp, &["127.0.0.1"]),
            ["127.0.0.1:502"]
        );
        assert_eq!(
            targets(Protocol::Enip, &["127.0.0.1:2222"]),
            ["127.0.0.1:2222"]
        );
        assert_eq!(
            targets(Protocol::S7, &["10.0.0.7-9"]),
            ["10.0.0.7:102", "10.0.0.8:102", "10.0.0.9:102"]
        );
        assert_eq!(
            targets(Protocol::Opcua, &["127.0.0.1"]),
            ["opc.tcp://127.0.0.1:4840"]
        );
        assert_eq!(
            targets(Protocol::Opcua, &["opc.tcp://127.0.0.1:4841/x"]),
            ["opc.tcp://127.0.0.1:4841/x"]
        );
        let net = targets(Protocol::ModbusTcp, &["10.1.2.99/24"]);
        assert_eq!(
            (net.len(), net[0].as_str(), net[255].as_str()),
            (256, "10.1.2.0:502", "10.1.2.255:502")
        );
        assert_eq!(targets(Protocol::ModbusTcp, &["10.1.2.3/30"]).len(), 4);
        let mut o = opts(Protocol::ModbusTcp, &["127.0.0.1-2", "127.0.0.9:7"]);
        o.port = Some(5020);
        let with_port: Vec<String> = plan(&o).unwrap().into_iter().map(|t| t.0).collect();
        assert_eq!(
            with_port,
            ["127.0.0.1:5020", "127.0.0.2:5020", "127.0.0.9:7"]
        );
    }

    #[test]
    fn too_wide_or_bad_targets_are_refused_with_the_reason() {
        let err = |p, t: &[&str]| plan(&opts(p, t)).unwrap_err();
        assert!(err(Protocol::ModbusTcp, &["10.0.0.0/23"]).contains("wider than a /24"));
        let two = err(Protocol::ModbusTcp, &["10.0.0.0/24", "10.0.1.0/31"]);
        assert!(
            two.contains("target '10.0.1.0/31'") && two.contains("more than 256"),
            "{two}"
        );
        assert!(err(Protocol::ModbusTcp, &["10.0.0.9-3"]).contains("ends (3) before it starts (9)"));
        assert!(err(Protocol::ModbusTcp, &["no such host!"]).contains("not an address"));
        assert!(err(Protocol::ModbusRtu, &["x"]).contains("modbus-rtu"));
        assert!(err(Protocol::ModbusTcp, &[]).contains("no target"));
        let mut o = opts(Protocol::ModbusTcp, &["127.0.0.1"]);
        o.rate_per_second = 1000;
        assert!(plan(&o).unwrap_err().contains("1-100"));
    }
}
