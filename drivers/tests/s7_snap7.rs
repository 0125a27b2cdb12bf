//! The S7 driver against python-snap7's server (`tests/peers/s7_server.py`,
//! values and the DB99 request counters documented there), on a free port.
//!
//! The interpreter comes from `BIFROST_PYTHON` (default `python3`); without
//! snap7 the tests fail and say how to get it, never skip. What this server
//! cannot show (TSAP/rack/slot checks, PDU sizes other than 480 granted,
//! item return codes on writes, a real CPU's SZL layout) is covered by the
//! byte-level fixtures in `src/s7/codec.rs` and `src/s7/szl.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use bifrost_drivers::s7::{identify, S7Driver, S7Options};
use bifrost_drivers::{DataType, Driver, Error, Quality, Sample, Scale, TagSpec, Value};
use bifrost_testkit::{require_python_modules, PythonPeer};

fn start_peer(port: u16) -> PythonPeer {
    require_python_modules(&["snap7"]).unwrap_or_else(|e| panic!("{e}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/s7_server.py");
    PythonPeer::start(
        "python-snap7 server",
        &script,
        &["--port".into(), port.to_string()],
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn options() -> S7Options {
    S7Options {
        timeout: Duration::from_secs(2),
        retries: 1,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        ..Default::default()
    }
}

fn driver(peer: &PythonPeer, opts: S7Options) -> S7Driver {
    S7Driver::new(&format!("127.0.0.1:{}", peer.port().unwrap()), opts).unwrap()
}

fn tag(address: &str, data_type: DataType) -> TagSpec {
    TagSpec::new(address, data_type)
}

fn value(s: &Sample) -> Value {
    assert!(s.quality.is_good(), "not good: {s:?}");
    s.value.clone().unwrap()
}

/// (Read Var requests so far, items in the latest, most items in one) as
/// the server counted them; the read of the counters is one request.
async fn counters(d: &mut S7Driver) -> (i64, i64, i64, i64) {
    let list = ["DB99.DBD0", "DB99.DBD4", "DB99.DBD8", "DB99.DBD12"];
    let tags: Vec<TagSpec> = list.iter().map(|a| tag(a, DataType::U32)).collect();
    let s = d.read(&tags).await;
    let n = |i: usize| match value(&s[i]) {
        Value::Int(n) => n,
        other => panic!("{other:?}"),
    };
    (n(0), n(1), n(2), n(3))
}

#[tokio::test]
async fn reads_every_type_and_area() {
    let peer = start_peer(0);
    let mut d = driver(&peer, options());
    let tags = [
        tag("DB1.DBX0.0", DataType::Bool),
        tag("DB1.DBX0.1", DataType::Bool),
        tag("DB1.DBB1", DataType::U16),
        tag("DB1.DBW2", DataType::I16),
        tag("DB1.DBW4", DataType::U16),
        tag("DB1.DBD6", DataType::I32),
        tag("DB1.DBD10", DataType::U32),
        tag("DB1.DBD14:REAL", DataType::F32),
        tag("DB1.DBB18:LREAL", DataType::F64),
        tag("DB1.DBB26:STRING[16]", DataType::String),
        tag("DB10.DBD4:REAL", DataType::F32),
        tag("M0.1", DataType::Bool),
        tag("M0.0", DataType::Bool),
        tag("MW10", DataType::I16),
        tag("MD20:REAL", DataType::F64),
        tag("I0.7", DataType::Bool),
        tag("E0.1", DataType::Bool),
        tag("IW2:INT", DataType::I32),
        tag("QW2", DataType::I16),
    ];
    let s = d.read(&tags).await;
    let got: Vec<Value> = s.iter().map(value).collect();
    let want = vec![
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(200),
        Value::Int(-12345),
        Value::Int(54321),
        Value::Int(-123456789),
        Value::Int(3000000000),
        Value::Float(123.456f32 as f64),
        Value::Float(-9876.54321),
        Value::Text("Bifrost!".into()),
        Value::Float(21.5),
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(4242),
        Value::Float(1.5),
        Value::Bool(true),
        Value::Bool(false),
        Value::Int(1000),
        Value::Int(7),
    ];
    assert_eq!(got, want);
    // The server grants at most 480 of the 960 asked for.
    assert_eq!(d.negotiated_pdu_size(), Some(480));
    // Scaling applies to the raw value read.
    let mut scaled = tag("DB1.DBW2", DataType::I16);
    scaled.scale = Some(Scale {
        raw_lo: 0.0,
        raw_hi: -20000.0,
        eng_lo: 0.0,
        eng_hi: 100.0,
    });
    let s = d.read(&[scaled]).await;
    assert_eq!(s[0].value, Some(Value::Float(61.725)));
}

#[tokio::test]
async fn many_tags_go_in_one_multi_variable_request_sized_to_the_pdu() {
    let peer = start_peer(0);
    // 25 INTs 40 bytes apart: too far apart to merge, so 25 items.
    let tags: Vec<TagSpec> = (0..25)
        .map(|i| tag(&format!("DB10.DBW{}", 100 + 40 * i), DataType::I16))
        .collect();
    let mut d = driver(&peer, options());
    let s = d.read(&tags).await;
    let got: Vec<Value> = s.iter().map(value).collect();
    let want: Vec<Value> = (0..25).map(|i| Value::Int(i * 10)).collect();
    assert_eq!(got, want);
    // One request for the 25 tags, one for the counters themselves.
    let (reads, _, most, _) = counters(&mut d).await;
    assert_eq!((reads, most), (2, 25));

    // Asking for PDU 240 gets 240: 12 + 12 n <= 240 allows 19 items.
    let mut small = driver(
        &peer,
        S7Options {
            pdu_size: 240,
            ..options()
        },
    );
    let s = small.read(&tags).await;
    assert_eq!(small.negotiated_pdu_size(), Some(240));
    assert!(s.iter().all(|s| s.quality.is_good()));
    let (reads_after, _, _, _) = counters(&mut small).await;
    assert_eq!(
        reads_after - reads,
        2 + 1,
        "19 + 6 items, then the counters"
    );
    // Neighbours merge: 4 tags within a 16-byte gap are one item.
    let near = [
        tag("DB1.DBW2", DataType::I16),
        tag("DB1.DBW4", DataType::U16),
        tag("DB1.DBD6", DataType::I32),
        tag("DB1.DBX0.0", DataType::Bool),
    ];
    small.read(&near).await;
    let (r0, _, _, _) = counters(&mut small).await;
    small.read(&near).await;
    let (r1, items, _, _) = counters(&mut small).await;
    assert_eq!(r1 - r0, 2);
    assert_eq!(items, 1, "the counters' own read, one merged item");
    // A STRING larger than one item at PDU 240 is read in pieces.
    // STRING[254] is 256 bytes; an item carries 240 - 18 = 222 of them, and
    // the second piece no longer fits the reply: two requests. DBB100 holds
    // INT 0, a STRING header of max 0, length 0.
    let s = small
        .read(&[tag("DB10.DBB100:STRING", DataType::String)])
        .await;
    assert_eq!(value(&s[0]), Value::Text(String::new()));
    let (r2, _, _, _) = counters(&mut small).await;
    assert_eq!(r2 - r1, 2 + 1);
}

#[tokio::test]
async fn a_missing_db_or_range_is_bad_with_the_s7_code_and_neighbours_stay_good() {
    let peer = start_peer(0);
    let mut d = driver(&peer, options());
    let tags = [
        tag("DB1.DBW2", DataType::I16),
        tag("DB5.DBW0", DataType::I16),   // DB5 does not exist: 0x0A
        tag("DB1.DBW96", DataType::I16),  // last word of DB1
        tag("DB1.DBW110", DataType::I16), // past the end: 0x05, merged with DBW96
        tag("MW10", DataType::I16),
        tag("DB1.DBW2:REAL", DataType::F32), // bad notation
    ];
    let s = d.read(&tags).await;
    assert_eq!(value(&s[0]), Value::Int(-12345));
    assert_eq!(s[1].quality, Quality::bad("s7_error:0x0A"));
    assert_eq!(value(&s[2]), Value::Int(0));
    assert_eq!(s[3].quality, Quality::bad("s7_error:0x05"));
    assert_eq!(value(&s[4]), Value::Int(4242));
    assert_eq!(s[5].quality, Quality::bad("config_error"));
    // Writing to a missing DB: python-snap7 answers a header error 0x8404.
    let e = d
        .write(&tag("DB5.DBW0", DataType::I16), Value::Int(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.contains("0x8404") && m.contains("DB5.DBW0")),
        "{e}"
    );
}

#[tokio::test]
async fn writes_read_back_and_a_bit_write_leaves_its_neighbours() {
    let peer = start_peer(0);
    let mut d = driver(&peer, options());
    let cases = [
        (tag("DB1.DBW62", DataType::I16), Value::Int(-321)),
        (tag("DB1.DBD64", DataType::U32), Value::Int(4_000_000_000)),
        (tag("DB1.DBD68:REAL", DataType::F32), Value::Float(-2.5)),
        (
            tag("DB1.DBB72:LREAL", DataType::F64),
            Value::Float(1.0e-300),
        ),
        (
            tag("DB1.DBB80:STRING[10]", DataType::String),
            Value::Text("héllo".into()),
        ),
        (tag("MW30", DataType::U16), Value::Int(65535)),
        (tag("QW2", DataType::I16), Value::Int(-7)),
    ];
    for (t, v) in &cases {
        let back = d
            .write(t, v.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert_eq!(&back, v, "{}", t.name);
        assert_eq!(&value(&d.read(std::slice::from_ref(t)).await[0]), v);
    }
    // DB1.DBB60 is 0xA5: set bit 1, clear bit 7.
    let byte = tag("DB1.DBB60", DataType::U16);
    let (_, _, _, bit_writes) = counters(&mut d).await;
    assert_eq!(
        d.write(&tag("DB1.DBX60.1", DataType::Bool), Value::Bool(true))
            .await,
        Ok(Value::Bool(true))
    );
    assert_eq!(
        value(&d.read(std::slice::from_ref(&byte)).await[0]),
        Value::Int(0xA7)
    );
    d.write(&tag("DB1.DBX60.7", DataType::Bool), Value::Bool(false))
        .await
        .unwrap();
    assert_eq!(
        value(&d.read(std::slice::from_ref(&byte)).await[0]),
        Value::Int(0x27)
    );
    d.write(&tag("M0.3", DataType::Bool), Value::Bool(true))
        .await
        .unwrap();
    assert_eq!(
        value(&d.read(&[tag("MB0", DataType::U16)]).await[0]),
        Value::Int(0x0A)
    );
    let (_, _, _, after) = counters(&mut d).await;
    assert_eq!(
        after - bit_writes,
        3,
        "bits are written as BIT items, not read-modify-write"
    );
    // Values that do not fit the PLC type are refused before sending.
    let e = d
        .write(&tag("DB1.DBB61", DataType::U16), Value::Int(256))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("outside the range of BYTE")),
        "{e}"
    );
    let mut ro = tag("DB1.DBW62", DataType::I16);
    ro.writable = false;
    assert!(matches!(
        d.write(&ro, Value::Int(1)).await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn a_killed_server_gives_bad_quality_then_reads_recover_after_restart() {
    let mut peer = start_peer(0);
    let port = peer.port().unwrap();
    let mut d = driver(&peer, options());
    let tags = [tag("MW10", DataType::I16)];
    assert_eq!(value(&d.read(&tags).await[0]), Value::Int(4242));
    peer.stop();
    let s = d.read(&tags).await;
    assert_eq!(s[0].quality, Quality::bad("comm_failure"));
    let s = d.read(&tags).await;
    assert!(
        s[0].quality == Quality::bad("not_connected")
            || s[0].quality == Quality::bad("comm_failure"),
        "{s:?}"
    );
    let _peer = start_peer(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = d.read(&tags).await;
        if s[0].quality.is_good() {
            assert_eq!(s[0].value, Some(Value::Int(4242)));
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(d.health(), bifrost_drivers::Health::Connected);
}

#[tokio::test]
async fn identify_reads_the_module_identification() {
    let peer = start_peer(0);
    let endpoint = format!("127.0.0.1:{}", peer.port().unwrap());
    let id = identify(&endpoint, &options()).await.unwrap();
    assert_eq!(id.order_number, "6ES7 315-2EH14-0AB0");
    assert_eq!(id.firmware, "V3.3.0");
    assert_eq!(id.module_name, "CPU 315-2 PN/DP");
    assert_eq!(id.serial, "S C-C2UR28922012");
}

#[tokio::test]
async fn devices_on_one_cpu_share_one_connection() {
    let peer = start_peer(0);
    let port = peer.port().unwrap();
    let mut db1 = driver(&peer, options());
    let mut db10 = driver(&peer, options());
    let a = db1.read(&[tag("DB1.DBW2", DataType::I16)]).await;
    let b = db10.read(&[tag("DB10.DBD4:REAL", DataType::F32)]).await;
    assert!(
        a[0].quality.is_good() && b[0].quality.is_good(),
        "{a:?} {b:?}"
    );
    assert_eq!(
        bifrost_testkit::connections_to(port),
        1,
        "two devices, one connection"
    );
    // Another PDU size is another connection (the CPU grants it per connection).
    let mut small = driver(
        &peer,
        S7Options {
            pdu_size: 240,
            ..options()
        },
    );
    assert!(small.read(&[tag("DB1.DBW2", DataType::I16)]).await[0]
        .quality
        .is_good());
    assert_eq!(bifrost_testkit::connections_to(port), 2);
    // The last driver of a connection gone, the connection goes.
    drop((db1, db10));
    bifrost_testkit::wait_until(
        "the shared connection closed",
        Duration::from_secs(10),
        || bifrost_testkit::connections_to(port) == 1,
    );
}
