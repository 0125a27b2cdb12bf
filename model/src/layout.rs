//! The persisted layout, pinned. `storage` writes these types with postcard
//! (fields in order, enum variants by position) into its databases and the
//! Raft log. The expected bytes below were produced by the types as they
//! were defined in `bifrost-storage` before they moved here; if one of these
//! tests fails, existing data directories would no longer decode.

use std::collections::BTreeMap;

use crate::*;

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    postcard::to_stdvec(v).unwrap()
}

fn round_trips<T>(v: &T, expected: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(encode(v), expected, "{v:?}");
    assert_eq!(&postcard::from_bytes::<T>(expected).unwrap(), v);
}

#[test]
fn device_bytes_are_unchanged() {
    let d = Device {
        name: "press3".into(),
        protocol: "modbus-tcp".into(),
        endpoint: "10.0.0.5:502".into(),
        unit_id: 1,
        poll_interval_ms: 500,
        timeout_ms: 1000,
        retries: 3,
        enabled: true,
        labels: BTreeMap::from([("line".to_string(), "1".to_string())]),
        revision: 42,
    };
    #[rustfmt::skip]
    let expected = [
        6, 112, 114, 101, 115, 115, 51, 10, 109, 111, 100, 98, 117, 115, 45, 116, 99, 112,
        12, 49, 48, 46, 48, 46, 48, 46, 53, 58, 53, 48, 50, 1, 244, 3, 232, 7, 3, 1, 1, 4,
        108, 105, 110, 101, 1, 49, 42,
    ];
    round_trips(&d, &expected);
}

#[test]
fn tag_bytes_are_unchanged() {
    let t = Tag {
        id: 7,
        byte_order: Order::Little,
        scale: Some(Scale {
            raw_lo: 0.0,
            raw_hi: 65535.0,
            eng_lo: -40.0,
            eng_hi: 120.0,
        }),
        deadband: Some(Deadband {
            value: 0.5,
            percent: true,
        }),
        scan_rate_ms: 250,
        units: "degC".into(),
        writable: true,
        revision: 9,
        ..Tag::new("line1/t", "plc1", "hr:0", DataType::F32)
    };
    #[rustfmt::skip]
    let expected = [
        7, 7, 108, 105, 110, 101, 49, 47, 116, 4, 112, 108, 99, 49, 4, 104, 114, 58, 48,
        // data_type F32 (variant 6), byte order Little, word order Big
        6, 1, 0,
        // Some(scale): four f64
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 224, 255, 239, 64, 0, 0, 0, 0, 0, 0, 68,
        192, 0, 0, 0, 0, 0, 0, 94, 64,
        // Some(deadband)
        1, 0, 0, 0, 0, 0, 0, 224, 63, 1,
        250, 1, 4, 100, 101, 103, 67, 0, 1, 0, 9,
    ];
    round_trips(&t, &expected);
}

#[test]
fn data_type_variants_keep_their_positions() {
    for (i, t) in DataType::ALL.into_iter().enumerate() {
        assert_eq!(encode(&t), [i as u8], "{t}");
    }
    assert_eq!(encode(&Order::Big), [0]);
    assert_eq!(encode(&Order::Little), [1]);
    for (i, l) in QualityLevel::ALL.into_iter().enumerate() {
        assert_eq!(encode(&l), [i as u8], "{l:?}");
    }
}

#[test]
fn reading_bytes_are_unchanged() {
    let n = NewReading {
        id: "r1".into(),
        tag: "line1/t".into(),
        ts_us: -1_500_000,
        server_ts_us: 1_714_564_800_000_250,
        value: Some(Value::Float(1.5)),
        quality: Quality::uncertain("timeout"),
    };
    #[rustfmt::skip]
    let expected = [
        2, 114, 49, 7, 108, 105, 110, 101, 49, 47, 116, 191, 141, 183, 1, 244, 195, 201,
        157, 231, 216, 139, 6, 1, 2, 0, 0, 0, 0, 0, 0, 248, 63, 1, 7, 116, 105, 109, 101,
        111, 117, 116,
    ];
    round_trips(&n, &expected);

    let r = Reading {
        id: "r2".into(),
        tag: "t".into(),
        ts_us: 5,
        server_ts_us: 6,
        value: None,
        quality: Quality::bad("comm_failure"),
        revision: 300,
    };
    #[rustfmt::skip]
    let expected = [
        2, 114, 50, 1, 116, 10, 12, 0, 2, 12, 99, 111, 109, 109, 95, 102, 97, 105, 108,
        117, 114, 101, 172, 2,
    ];
    round_trips(&r, &expected);
}

#[test]
fn value_variants_keep_their_positions() {
    round_trips(&Value::Bool(true), &[0, 1]);
    round_trips(&Value::Int(-3), &[1, 5]);
    round_trips(&Value::Float(0.0), &[2, 0, 0, 0, 0, 0, 0, 0, 0]);
    round_trips(&Value::Text("on".into()), &[3, 2, 111, 110]);
}

#[test]
fn access_variants_and_grant_bytes_are_unchanged() {
    // Roles and permissions by position: viewer < operator < engineer < admin.
    for (i, r) in Role::ALL.into_iter().enumerate() {
        round_trips(&r, &[i as u8]);
    }
    for (i, p) in Permission::ALL.into_iter().enumerate() {
        round_trips(&p, &[i as u8]);
    }
    let g = Grant::new(Role::Operator, vec!["line1/**".into(), "l2/?".into()]).unwrap();
    #[rustfmt::skip]
    let expected = [
        // role operator, two globs
        1, 2,
        8, 108, 105, 110, 101, 49, 47, 42, 42,
        4, 108, 50, 47, 63,
    ];
    round_trips(&g, &expected);
    round_trips(&Grant::everywhere(Role::Admin), &[3, 0]);
}
