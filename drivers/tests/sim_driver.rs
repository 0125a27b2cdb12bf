//! The simulator read through the Modbus driver, in-process.

use std::time::Duration;

use bifrost_drivers::modbus::{ModbusDriver, ModbusOptions};
use bifrost_drivers::sim::{SimConfig, SimServer};
use bifrost_drivers::{DataType, Driver, Order, QualityLevel, TagSpec, Value};

fn tag(name: &str, address: &str, data_type: DataType) -> TagSpec {
    TagSpec {
        name: name.into(),
        address: address.into(),
        data_type,
        byte_order: Order::Big,
        word_order: Order::Big,
        scale: None,
        deadband: None,
        length: 0,
        writable: false,
    }
}

fn options() -> ModbusOptions {
    ModbusOptions {
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn start(cfg: SimConfig) -> SimServer {
    SimServer::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

#[tokio::test]
async fn counter_read_twice_through_the_driver_increases_by_one() {
    let server = start(SimConfig {
        devices: 3,
        tags: 10,
        ..Default::default()
    })
    .await;
    let layout = server.layout();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    let dev = &layout[2];
    let mut d = ModbusDriver::tcp(&dev.endpoint, dev.unit, options()).unwrap();
    let mut tags = vec![tag("counter", &dev.counter, DataType::U32)];
    tags.extend(
        dev.tags
            .iter()
            .map(|t| tag(&t.name, &t.address, t.data_type)),
    );

    let first = d.read(&tags).await;
    let second = d.read(&tags).await;
    assert!(
        first
            .iter()
            .chain(&second)
            .all(|s| s.quality.level == QualityLevel::Good),
        "{first:?}"
    );
    let (Some(Value::Int(a)), Some(Value::Int(b))) = (&first[0].value, &second[0].value) else {
        panic!("counter is not an integer: {first:?}");
    };
    assert_eq!(
        b - a,
        1,
        "one read request, one increment (the tags came in the same request)"
    );
    for (t, s) in dev.tags.iter().zip(&first[1..]) {
        let v = s.value.as_ref().and_then(Value::as_f64).unwrap();
        assert!((-100.0..1000.0).contains(&v), "{} = {v}", t.name);
    }

    // The writable area takes writes and reads them back.
    let w = TagSpec {
        writable: true,
        ..tag(
            "w",
            &format!("hr:{}", dev.writable_start + 1),
            DataType::F32,
        )
    };
    assert_eq!(
        d.write(&w, Value::Float(2.5)).await.unwrap(),
        Value::Float(2.5)
    );

    // Other devices on the same port are independent.
    let other = &layout[0];
    let mut d0 = ModbusDriver::tcp(&other.endpoint, other.unit, options()).unwrap();
    let s = d0
        .read(&[tag("counter", &other.counter, DataType::U32)])
        .await;
    assert_eq!(s[0].value, Some(Value::Int(1)));

    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn many_devices_over_several_ports_each_count_alone() {
    let cfg = SimConfig {
        devices: 600,
        tags: 3,
        ..Default::default()
    };
    let server = start(cfg).await;
    let layout = server.layout();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    // 600 devices: three ports; poll each device concurrently, twice.
    let mut polls = tokio::task::JoinSet::new();
    for dev in layout.clone() {
        polls.spawn(async move {
            let mut d = ModbusDriver::tcp(&dev.endpoint, dev.unit, options()).unwrap();
            let t = [tag("c", &dev.counter, DataType::U32)];
            let a = d.read(&t).await[0].value.clone();
            let b = d.read(&t).await[0].value.clone();
            (dev.index, a, b)
        });
    }
    let mut seen = 0;
    while let Some(r) = polls.join_next().await {
        let (i, a, b) = r.unwrap();
        assert_eq!(
            (a, b),
            (Some(Value::Int(1)), Some(Value::Int(2))),
            "device {i}"
        );
        seen += 1;
    }
    assert_eq!(seen, 600);
    let ports: std::collections::BTreeSet<_> = layout.iter().map(|d| d.endpoint.clone()).collect();
    assert_eq!(ports.len(), 3);
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
