//! The simulator read through the Modbus driver, in-process.

use std::time::Duration;

use bifrost_drivers::modbus::{ModbusDriver, ModbusOptions};
use bifrost_drivers::sim::{SimConfig, SimDevice, SimServer};
use bifrost_drivers::{DataType, Driver, Order, QualityLevel, TagSpec, Value};
use bifrost_testkit::connections_to;

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

/// A simulator serving on a free loopback port until [`Running::stop`].
struct Running {
    layout: Vec<SimDevice>,
    port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(cfg: SimConfig) -> Running {
    let server = SimServer::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap();
    let (layout, port) = (server.layout(), server.local_addr().port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    Running {
        layout,
        port,
        stop,
        task,
    }
}

impl Running {
    /// Stops the simulator; it must have run without error.
    async fn stop(self) {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn counter_read_twice_through_the_driver_increases_by_one() {
    let server = start(SimConfig {
        devices: 3,
        tags: 10,
        ..Default::default()
    })
    .await;
    let layout = server.layout.clone();

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

    server.stop().await;
}

#[tokio::test]
async fn many_devices_over_several_ports_each_count_alone() {
    let cfg = SimConfig {
        devices: 600,
        tags: 3,
        ..Default::default()
    };
    let server = start(cfg).await;
    let layout = server.layout.clone();
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
    server.stop().await;
}

#[tokio::test]
async fn devices_behind_one_address_share_one_connection_and_read_their_own_registers() {
    let server = start(SimConfig {
        devices: 5,
        tags: 2,
        ..Default::default()
    })
    .await;
    let (layout, port) = (server.layout.clone(), server.port);
    let mut drivers: Vec<ModbusDriver> = layout
        .iter()
        .map(|d| ModbusDriver::tcp(&d.endpoint, d.unit, options()).unwrap())
        .collect();
    // Each unit's counter goes up by one per read of it, whatever the
    // others do on the same connection.
    let mut counts = Vec::new();
    for round in 0..3 {
        for (d, dev) in drivers.iter_mut().zip(&layout) {
            let s = d.read(&[tag("counter", &dev.counter, DataType::U32)]).await;
            let Some(Value::Int(v)) = s[0].value else {
                panic!("unit {} round {round}: {s:?}", dev.unit);
            };
            counts.push((dev.unit, v));
        }
    }
    for (unit, first) in counts.iter().take(layout.len()) {
        let seen: Vec<i64> = counts
            .iter()
            .filter(|c| c.0 == *unit)
            .map(|c| c.1)
            .collect();
        assert_eq!(seen, [*first, first + 1, first + 2], "unit {unit}");
    }
    assert_eq!(connections_to(port), 1, "five units, one connection");
    // A device elsewhere has its own; the last driver gone, its connection goes.
    let other = start(SimConfig {
        devices: 1,
        tags: 1,
        ..Default::default()
    })
    .await;
    let other_dev = other.layout[0].clone();
    let other_port = other.port;
    let mut lone = ModbusDriver::tcp(&other_dev.endpoint, other_dev.unit, options()).unwrap();
    let s = lone
        .read(&[tag("counter", &other_dev.counter, DataType::U32)])
        .await;
    assert_eq!(s[0].quality.level, QualityLevel::Good, "{s:?}");
    assert_eq!((connections_to(port), connections_to(other_port)), (1, 1));
    drivers.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(connections_to(port), 0, "closed with its last device");
    server.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn pipelined_units_behind_one_address_read_at_once_on_one_connection() {
    let server = start(SimConfig {
        devices: 6,
        tags: 2,
        ..Default::default()
    })
    .await;
    let opts = ModbusOptions {
        pipeline: 6,
        ..options()
    };
    let mut drivers: Vec<ModbusDriver> = server
        .layout
        .iter()
        .map(|d| ModbusDriver::tcp(&d.endpoint, d.unit, opts.clone()).unwrap())
        .collect();
    let layout = server.layout.clone();
    for round in 0..3i64 {
        // Every unit's poll in flight at once on the one connection; each
        // reply reaches its own driver (its counter, its count of reads).
        let polls = drivers.iter_mut().zip(&layout).map(|(d, dev)| async move {
            let tags = [tag("counter", &dev.counter, DataType::U32)];
            (dev.unit, d.read(&tags).await)
        });
        for (unit, s) in futures::future::join_all(polls).await {
            assert_eq!(
                s[0].value,
                Some(Value::Int(round + 1)),
                "unit {unit} round {round}: {s:?}"
            );
        }
    }
    assert_eq!(connections_to(server.port), 1, "six units, one connection");
    let bad = ModbusOptions {
        pipeline: 17,
        ..options()
    };
    let e = ModbusDriver::tcp(&layout[0].endpoint, 1, bad)
        .err()
        .unwrap();
    assert!(e.to_string().contains("pipeline 17 must be 1-16"), "{e}");
    server.stop().await;
}
