//! The EtherNet/IP driver against a real peer: cpppo's Logix simulator
//! (`tests/peers/enip_server.py`, tags and values documented there).
//!
//! The interpreter comes from `BIFROST_PYTHON` (default `python3`). If it
//! cannot import cpppo the tests fail and say how to get it: a missing peer
//! must never look like a pass.
//!
//! What cpppo cannot exercise (real UDT members, the Logix STRING structure,
//! multi-dimensional arrays, CIP status 0x04 for an unknown tag, extended
//! statuses beyond 0x2105, Forward Open refusal) is covered by the recorded
//! fixtures in `src/enip/fixtures.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bifrost_drivers::enip::{list_identity, EnipDriver, EnipOptions};
use bifrost_drivers::{
    DataType, Driver, Error, Health, Quality, QualityLevel, Scale, TagSpec, Value,
};
use bifrost_testkit::{require_python_modules, PythonPeer};

fn start_peer(port: u16) -> PythonPeer {
    require_python_modules(&["cpppo"]).unwrap_or_else(|e| panic!("{e}"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/enip_server.py");
    PythonPeer::start(
        "cpppo enip server",
        &script,
        &["--port".into(), port.to_string()],
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn tag(address: &str, data_type: DataType) -> TagSpec {
    TagSpec::new(address, data_type)
}

fn opts(connected: bool) -> EnipOptions {
    EnipOptions {
        timeout: Duration::from_secs(3),
        connected,
        ..Default::default()
    }
}

fn driver(peer: &PythonPeer, connected: bool) -> EnipDriver {
    EnipDriver::new(
        &format!("127.0.0.1:{}", peer.port().unwrap()),
        opts(connected),
    )
    .unwrap()
}

fn good(v: Value) -> (Option<Value>, Quality) {
    (Some(v), Quality::good())
}

fn pairs(s: &[bifrost_drivers::Sample]) -> Vec<(Option<Value>, Quality)> {
    s.iter()
        .map(|s| (s.value.clone(), s.quality.clone()))
        .collect()
}

/// Scalars of every type cpppo has, a program-scoped tag and a dotted
/// (flattened) member name, in one Multiple Service Packet.
async fn reads_of_several_types(connected: bool) {
    let peer = start_peer(0);
    let mut d = driver(&peer, connected);
    let tags = [
        tag("Temp", DataType::F32),
        tag("Small", DataType::I16),
        tag("Level", DataType::I32),
        tag("Big", DataType::I64),
        tag("Precise", DataType::F64),
        tag("Flag", DataType::Bool),
        tag("Name", DataType::String),
        tag("Program:Main.Speed", DataType::I32),
        tag("Recipe.Temps[2]", DataType::F64),
        tag("Counts[7]", DataType::I64),
    ];
    let s = d.read(&tags).await;
    assert_eq!(
        pairs(&s),
        vec![
            good(Value::Float(21.5)),
            good(Value::Int(-12)),
            good(Value::Int(-1234)),
            good(Value::Int(-1_234_567_890_123)),
            good(Value::Float(1234.5678901234)),
            good(Value::Bool(true)),
            good(Value::Text("Bifrost".into())),
            good(Value::Int(1500)),
            good(Value::Float(2.5)),
            good(Value::Int(70)),
        ]
    );
    assert_eq!(d.connected_messaging(), connected, "messaging mode");
    assert_eq!(
        d.requests_sent(),
        1,
        "ten tags, one Multiple Service Packet"
    );
    assert_eq!(d.health(), Health::Connected);
    d.close().await;
}

#[tokio::test]
async fn reads_of_several_types_connected() {
    reads_of_several_types(true).await;
}

#[tokio::test]
async fn reads_of_several_types_unconnected() {
    reads_of_several_types(false).await;
}

#[tokio::test]
async fn array_elements_and_blocks() {
    let peer = start_peer(0);
    let mut d = driver(&peer, true);
    // Consecutive elements: one Read Tag of 5 elements, split.
    let block: Vec<TagSpec> = (10..15)
        .map(|i| tag(&format!("Counts[{i}]"), DataType::I32))
        .collect();
    let s = d.read(&block).await;
    let want: Vec<_> = (10..15).map(|i| good(Value::Int(i * 10))).collect();
    assert_eq!(pairs(&s), want);
    assert_eq!(d.requests_sent(), 1);
    // 200 elements, 800 bytes: more than the connection holds, so Read Tag
    // Fragmented (cpppo answers at most 488 bytes a fragment: 2 fragments).
    let all: Vec<TagSpec> = (0..200)
        .map(|i| tag(&format!("Counts[{i}]"), DataType::I32))
        .collect();
    let s = d.read(&all).await;
    for (i, x) in s.iter().enumerate() {
        assert_eq!(x.value, Some(Value::Int(i as i64 * 10)), "Counts[{i}]");
    }
    assert_eq!(d.requests_sent(), 1 + 2, "two fragments");
    // 123 elements fit the plan's estimate (500 bytes) but cpppo answers
    // 0x06 with 122: the driver finishes with fragmented reads.
    let s = d.read(&all[..123]).await;
    assert!(s
        .iter()
        .enumerate()
        .all(|(i, x)| x.value == Some(Value::Int(i as i64 * 10))));
    assert_eq!(
        d.requests_sent(),
        3 + 1 + 2,
        "Read Tag (partial), then two fragments"
    );
}

#[tokio::test]
async fn many_tags_are_packed_within_the_connection_size() {
    let peer = start_peer(0);
    let mut d = driver(&peer, true);
    // Every second element: 100 reads of one DINT (each request 12 bytes,
    // each reply 12 estimated), which cannot all fit 502 bytes.
    let tags: Vec<TagSpec> = (0..100)
        .map(|i| tag(&format!("Counts[{}]", i * 2), DataType::I32))
        .collect();
    let s = d.read(&tags).await;
    for (i, x) in s.iter().enumerate() {
        assert_eq!(
            x.value,
            Some(Value::Int(i as i64 * 20)),
            "Counts[{}]",
            i * 2
        );
    }
    // Per read: request 14 bytes (service, size, 8-byte symbol, element
    // segment, count) + a 2-byte offset; the packet adds 8: 8 + 16n <= 502
    // gives 30 a packet (replies, 14n + 6, would allow 35): 4 packets.
    let n = d.requests_sent();
    assert_eq!(n, 4, "100 reads in {n} packets");
    // A smaller connection: more packets.
    let mut small = EnipDriver::new(
        &format!("127.0.0.1:{}", peer.port().unwrap()),
        EnipOptions {
            connection_size: 200,
            ..opts(true)
        },
    )
    .unwrap();
    let s = small.read(&tags).await;
    assert!(s.iter().all(|x| x.quality.is_good()));
    // 8 + 16n <= 198: 11 a packet, 10 packets.
    assert_eq!(small.requests_sent(), 10);
}

#[tokio::test]
async fn unknown_tag_is_bad_with_the_cip_status_and_spares_its_neighbours() {
    let peer = start_peer(0);
    let mut d = driver(&peer, true);
    let tags = [
        tag("Temp", DataType::F32),
        tag("NoSuchTag", DataType::I32),
        tag("Counts[1]", DataType::I32),
        tag("Counts[2]", DataType::I32),
        tag("Counts[[", DataType::I32),
        tag("Temp", DataType::I16),
    ];
    let s = d.read(&tags).await;
    assert_eq!(s[0].value, Some(Value::Float(21.5)));
    assert_eq!(s[1].value, None);
    // cpppo answers "path destination unknown" (a real Logix says 0x04).
    assert_eq!(s[1].quality, Quality::bad("cip_status:0x05"));
    assert_eq!(s[2].value, Some(Value::Int(10)));
    assert_eq!(s[3].value, Some(Value::Int(20)));
    assert_eq!(s[4].quality, Quality::bad("config_error"), "bad address");
    assert_eq!(
        s[5].quality,
        Quality::bad("config_error"),
        "REAL does not fit i16"
    );
    // Elements past the end: the run fails, its elements are read alone.
    let tags = [
        tag("Counts[199]", DataType::I32),
        tag("Counts[200]", DataType::I32),
    ];
    let s = d.read(&tags).await;
    assert_eq!(s[0].value, Some(Value::Int(1990)));
    assert_eq!(s[1].quality.level, QualityLevel::Bad);
    assert_eq!(
        s[1].quality,
        Quality::bad("cip_status:0xff/0x2105"),
        "elements beyond the end"
    );
    // A write to an unknown tag is refused with the status.
    let e = d
        .write(&tag("NoSuchTag", DataType::I32), Value::Int(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.contains("cip_status:0x05") && m.contains("NoSuchTag")),
        "{e:?}"
    );
}

#[tokio::test]
async fn writes_read_back() {
    let peer = start_peer(0);
    let mut d = driver(&peer, true);
    let v = d
        .write(&tag("Scratch[3]", DataType::I32), Value::Int(-77))
        .await
        .unwrap();
    assert_eq!(v, Value::Int(-77));
    let v = d
        .write(&tag("ScratchReal", DataType::F32), Value::Float(-2.25))
        .await
        .unwrap();
    assert_eq!(v, Value::Float(-2.25));
    let v = d
        .write(
            &tag("ScratchText", DataType::String),
            Value::Text("hello plant".into()),
        )
        .await
        .unwrap();
    assert_eq!(v, Value::Text("hello plant".into()));
    let v = d
        .write(&tag("Program:Main.Speed", DataType::I64), Value::Int(1750))
        .await
        .unwrap();
    assert_eq!(v, Value::Int(1750));
    // Scaled: 50 % of 0..100 is raw 16000 of 0..32000.
    let mut scaled = tag("ScratchInt", DataType::I16);
    scaled.scale = Some(Scale {
        raw_lo: 0.0,
        raw_hi: 32000.0,
        eng_lo: 0.0,
        eng_hi: 100.0,
    });
    assert_eq!(
        d.write(&scaled, Value::Float(50.0)).await.unwrap(),
        Value::Float(50.0)
    );
    // Out of the controller type's range (INT), though it fits i32.
    let e = d
        .write(&tag("ScratchInt", DataType::I32), Value::Int(40000))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("outside the range of INT")),
        "{e:?}"
    );
    // What was written is what a fresh driver reads (unconnected).
    let mut fresh = driver(&peer, false);
    let s = fresh
        .read(&[
            tag("Scratch[2]", DataType::I32),
            tag("Scratch[3]", DataType::I32),
            tag("ScratchReal", DataType::F32),
            tag("ScratchText", DataType::String),
            tag("Program:Main.Speed", DataType::I32),
            tag("ScratchInt", DataType::I16),
        ])
        .await;
    assert_eq!(
        pairs(&s),
        vec![
            good(Value::Int(0)),
            good(Value::Int(-77)),
            good(Value::Float(-2.25)),
            good(Value::Text("hello plant".into())),
            good(Value::Int(1750)),
            good(Value::Int(16000)),
        ]
    );
}

#[tokio::test]
async fn killed_server_is_comm_failure_then_not_connected_then_recovers() {
    let mut peer = start_peer(0);
    let port = peer.port().unwrap();
    let mut d = EnipDriver::new(
        &format!("127.0.0.1:{port}"),
        EnipOptions {
            timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(300),
            backoff_max: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    let tags = [tag("Temp", DataType::F32), tag("Counts[5]", DataType::I32)];
    assert!(d.read(&tags).await.iter().all(|s| s.quality.is_good()));
    peer.stop();
    let s = d.read(&tags).await;
    assert_eq!(s[0].quality, Quality::bad("comm_failure"));
    assert_eq!(s[1].quality, Quality::bad("comm_failure"));
    assert!(matches!(d.health(), Health::Down(_)));
    let s = d.read(&tags).await;
    assert_eq!(s[0].quality, Quality::bad("not_connected"), "in backoff");
    let _peer = start_peer(port);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = d.read(&tags).await;
        if s[0].quality.is_good() {
            assert_eq!(s[0].value, Some(Value::Float(21.5)));
            assert_eq!(s[1].value, Some(Value::Int(50)));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no recovery: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(d.health(), Health::Connected);
}

#[tokio::test]
async fn list_identity_returns_cpppos_identity() {
    let peer = start_peer(0);
    let addr: SocketAddr = format!("127.0.0.1:{}", peer.port().unwrap())
        .parse()
        .unwrap();
    let id = list_identity(addr, Duration::from_secs(3)).await.unwrap();
    // cpppo's defaults (cpppo/server/enip/device.py, Identity): vendor 1
    // (Rockwell), device type 14 (PLC), product code 54, revision 20.11,
    // "1756-L61/B LOGIX5561".
    assert_eq!(id.vendor_id, 1);
    assert_eq!(id.device_type, 14);
    assert_eq!(id.product_code, 54);
    assert_eq!(id.revision, "20.11");
    assert_eq!(id.product_name, "1756-L61/B LOGIX5561");
    assert_eq!(id.serial, 0x006C_061A);
    assert_eq!(id.state, 0xFF);
}

#[tokio::test]
async fn devices_on_one_controller_share_one_session() {
    let peer = start_peer(0);
    let port = peer.port().unwrap();
    let mut a = driver(&peer, true);
    let mut b = driver(&peer, true);
    let ra = a.read(&[tag("Scratch[0]", DataType::I32)]).await;
    let rb = b.read(&[tag("ScratchReal", DataType::F32)]).await;
    assert!(
        ra[0].quality.is_good() && rb[0].quality.is_good(),
        "{ra:?} {rb:?}"
    );
    assert_eq!(
        bifrost_testkit::connections_to(port),
        1,
        "two devices, one session"
    );
    // Each driver counts its own requests on the shared session.
    assert_eq!((a.requests_sent(), b.requests_sent()), (1, 1));
    assert!(a.connected_messaging() && b.connected_messaging());
    // Unconnected messaging is another session.
    let mut u = driver(&peer, false);
    assert!(u.read(&[tag("Scratch[0]", DataType::I32)]).await[0]
        .quality
        .is_good());
    assert_eq!(bifrost_testkit::connections_to(port), 2);
}
