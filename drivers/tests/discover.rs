//! Discovery against devices written by others and against Bifrost's own
//! simulator, all on loopback: a pymodbus server that answers Read Device
//! Identification, the simulator that does not (found by a register read),
//! an asyncua server (FindServers, GetEndpoints), cpppo's EtherNet/IP
//! server (List Identity) and python-snap7's S7 server (SZL module
//! identification); closed ports find nothing.
//!
//! The peers run under the test venv's Python (`BIFROST_PYTHON`); without
//! the packages the tests fail saying so.

use std::path::PathBuf;
use std::time::Duration;

use bifrost_drivers::discover::{self, Candidate, DiscoverOptions};
use bifrost_drivers::sim::{SimConfig, SimServer};
use bifrost_model::Protocol;
use bifrost_testkit::{free_port, require_python_modules, PythonPeer};

fn peer_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

fn options(protocol: Protocol, targets: &[String]) -> DiscoverOptions {
    DiscoverOptions {
        protocol,
        targets: targets.to_vec(),
        port: None,
        units: vec![],
        timeout: Duration::from_secs(2),
        rate_per_second: 50,
    }
}

/// Runs a discovery; what it found, sorted by endpoint and unit.
async fn found(opts: DiscoverOptions) -> Vec<Candidate> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let probed = discover::run(opts, tx).await.expect("a valid discovery");
    assert!(probed > 0);
    let mut out = Vec::new();
    while let Some(c) = rx.recv().await {
        out.push(c);
    }
    out.sort_by(|a, b| (&a.endpoint, a.unit_id).cmp(&(&b.endpoint, b.unit_id)));
    out
}

#[tokio::test]
async fn modbus_devices_are_found_by_identification_or_by_a_register_read() {
    require_python_modules(&["pymodbus"]).unwrap();
    let pymodbus = PythonPeer::start(
        "pymodbus server",
        &peer_script("modbus_server.py"),
        &["tcp".into(), "--port".into(), "0".into()],
        Duration::from_secs(30),
    )
    .unwrap();
    let with_id = format!("127.0.0.1:{}", pymodbus.port().unwrap());
    let sim = SimServer::bind("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let sim_addr = sim.local_addr().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sim_task = tokio::spawn(sim.run(async {
        let _ = stopped.await;
    }));
    let closed = format!("127.0.0.1:{}", free_port());

    let got = found(options(
        Protocol::ModbusTcp,
        &[with_id.clone(), sim_addr.clone(), closed],
    ))
    .await;
    assert_eq!(got.len(), 2, "{got:#?}");
    let by_id = got
        .iter()
        .find(|c| c.endpoint == with_id)
        .expect("pymodbus found");
    assert_eq!(
        (
            by_id.vendor.as_str(),
            by_id.product.as_str(),
            by_id.firmware.as_str()
        ),
        ("Bifrost Test Vendor", "BTV-PLC-1", "3.11.4")
    );
    assert_eq!((by_id.protocol.as_str(), by_id.unit_id), ("modbus-tcp", 1));
    assert_eq!(by_id.details["found_by"], "device identification");
    let by_read = got
        .iter()
        .find(|c| c.endpoint == sim_addr)
        .expect("simulator found");
    assert!(by_read.vendor.is_empty());
    assert!(
        by_read.details["found_by"].starts_with("register read: holding register 0 read"),
        "{by_read:?}"
    );

    // A range with a port: 127.0.0.1 answers, 127.0.0.2-3 refuse; units 1
    // and 2 at the simulator are two devices.
    let sim_port = sim_addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut ranged = options(Protocol::ModbusTcp, &["127.0.0.1-3".into()]);
    ranged.port = Some(sim_port);
    ranged.units = vec![1, 2];
    let got = found(ranged).await;
    let seen: Vec<(String, u32)> = got
        .iter()
        .map(|c| (c.endpoint.clone(), c.unit_id))
        .collect();
    assert_eq!(seen, [(sim_addr.clone(), 1), (sim_addr.clone(), 2)]);
    let _ = stop.send(());
    sim_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_opcua_server_is_found_with_its_endpoints() {
    require_python_modules(&["asyncua"]).unwrap();
    let port = free_port();
    let _server = PythonPeer::start(
        "asyncua server",
        &peer_script("opcua_server.py"),
        &["--port".into(), port.to_string()],
        Duration::from_secs(60),
    )
    .unwrap();
    let closed = format!("opc.tcp://127.0.0.1:{}", free_port());
    let got = found(options(
        Protocol::Opcua,
        &[format!("127.0.0.1:{port}"), closed],
    ))
    .await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let s = &got[0];
    assert_eq!(s.protocol, "opcua");
    assert!(
        s.endpoint.starts_with("opc.tcp://") && s.endpoint.contains(&port.to_string()),
        "{s:?}"
    );
    assert_eq!(
        s.product, "Bifrost OPC UA test peer",
        "the application name"
    );
    assert!(s.details["security"].contains("None"), "{s:?}");
    assert!(s.details["user_tokens"].contains("anonymous"), "{s:?}");
}

#[tokio::test]
async fn an_enip_controller_is_found_by_list_identity_and_an_s7_cpu_by_szl() {
    require_python_modules(&["cpppo", "snap7"]).unwrap();
    let start = |label: &str, script: &str| {
        PythonPeer::start(
            label,
            &peer_script(script),
            &["--port".into(), "0".into()],
            Duration::from_secs(60),
        )
        .unwrap()
    };
    let enip = start("cpppo enip server", "enip_server.py");
    let s7 = start("python-snap7 server", "s7_server.py");
    let enip_at = format!("127.0.0.1:{}", enip.port().unwrap());
    let closed = format!("127.0.0.1:{}", free_port());
    let got = found(options(Protocol::Enip, &[enip_at.clone(), closed.clone()])).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let c = &got[0];
    assert_eq!(
        (c.protocol.as_str(), c.endpoint.as_str()),
        ("enip", enip_at.as_str())
    );
    // cpppo's default identity (cpppo/server/enip/device.py).
    assert_eq!(c.vendor, "Rockwell Automation/Allen-Bradley");
    assert_eq!(
        (c.product.as_str(), c.firmware.as_str()),
        ("1756-L61/B LOGIX5561", "20.11")
    );
    assert_eq!(c.details["serial"], "0x006c061a");

    let s7_at = format!("127.0.0.1:{}", s7.port().unwrap());
    let got = found(options(Protocol::S7, &[s7_at.clone(), closed])).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let c = &got[0];
    assert_eq!(
        (c.protocol.as_str(), c.endpoint.as_str()),
        ("s7", s7_at.as_str())
    );
    // The module identification the peer serves (tests/peers/s7_server.py).
    assert_eq!(
        (c.product.as_str(), c.firmware.as_str()),
        ("6ES7 315-2EH14-0AB0", "V3.3.0")
    );
    assert_eq!(c.details["module_name"], "CPU 315-2 PN/DP");
}
