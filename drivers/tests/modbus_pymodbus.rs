//! The Modbus driver against a real peer: a pymodbus server
//! (`tests/peers/modbus_server.py`, values documented there) over TCP, and
//! over RTU on a socat pseudo-terminal pair.
//!
//! The interpreter comes from `BIFROST_PYTHON` (default `python3`). If it
//! cannot import pymodbus (with pyserial), the tests fail and say to run
//! `scripts/test.sh`, which creates the venv: a missing peer must never look
//! like a pass.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bifrost_drivers::modbus::{ModbusDriver, ModbusOptions};
use bifrost_drivers::sim::{SimConfig, SimServer};
use bifrost_drivers::{
    DataType, Driver, Error, Order, Quality, QualityLevel, Sample, Scale, TagSpec, Value,
};
use bifrost_testkit::{python, Deadline};

fn require_pymodbus() {
    let py = python();
    let ok = Command::new(&py)
        .args(["-c", "import pymodbus, serial"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "pymodbus (with pyserial) is not importable by '{py}'. Run scripts/test.sh, which creates \
         the test venv from drivers/tests/requirements.txt, or set BIFROST_PYTHON to a Python that \
         has `pip install -r drivers/tests/requirements.txt`."
    );
}

/// A child process killed when dropped, with its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(cmd: &mut Command, from_stderr: bool) -> Proc {
        if from_stderr {
            cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let (tx, lines) = mpsc::channel();
        let out: Box<dyn std::io::Read + Send> = if from_stderr {
            Box::new(child.stderr.take().unwrap())
        } else {
            Box::new(child.stdout.take().unwrap())
        };
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, lines }
    }

    /// The first line containing `needle`, within `within`.
    fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!("no line with '{needle}' within {within:?} (exit status: {status:?})");
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script() -> String {
    format!(
        "{}/tests/peers/modbus_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Starts the pymodbus TCP server (on `port`, 0 for any) and returns it with its port.
fn tcp_server(port: u16) -> (Proc, u16) {
    require_pymodbus();
    let mut p = Proc::spawn(
        Command::new(python()).args([&script(), "tcp", "--port", &port.to_string()]),
        false,
    );
    let line = p.wait_line("READY", Duration::from_secs(30));
    let port = line
        .trim()
        .trim_start_matches("READY")
        .trim()
        .parse()
        .expect("READY <port>");
    (p, port)
}

fn options() -> ModbusOptions {
    ModbusOptions {
        timeout: Duration::from_millis(500),
        retries: 1,
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Default::default()
    }
}

fn tag(address: &str, data_type: DataType) -> TagSpec {
    TagSpec {
        name: address.to_string(),
        address: address.to_string(),
        data_type,
        byte_order: Order::Big,
        word_order: Order::Big,
        scale: None,
        deadband: None,
        length: if data_type == DataType::String { 4 } else { 0 },
        writable: false,
    }
}

fn ordered(address: String, data_type: DataType, bo: Order, wo: Order) -> TagSpec {
    TagSpec {
        byte_order: bo,
        word_order: wo,
        ..tag(&address, data_type)
    }
}

fn good(v: Value) -> (Option<Value>, Quality) {
    (Some(v), Quality::good())
}

fn got(s: &Sample) -> (Option<Value>, Quality) {
    (s.value.clone(), s.quality.clone())
}

const ORDERS: [(Order, Order, &str); 4] = [
    (Order::Big, Order::Big, "ABCD"),
    (Order::Big, Order::Little, "CDAB"),
    (Order::Little, Order::Big, "BADC"),
    (Order::Little, Order::Little, "DCBA"),
];

/// Every type in one order block of the peer, with its expected value.
fn typed_block(base: u16, bo: Order, wo: Order) -> Vec<(TagSpec, Value)> {
    let t = |off: u16, dt| ordered(format!("hr:{}", base + off), dt, bo, wo);
    let bit = |b: u8| ordered(format!("hr:{}.{b}", base + 20), DataType::Bool, bo, wo);
    vec![
        (t(0, DataType::I16), Value::Int(-12345)),
        (t(1, DataType::U16), Value::Int(54321)),
        (t(2, DataType::I32), Value::Int(-123456789)),
        (t(4, DataType::U32), Value::Int(3_000_000_000)),
        (t(6, DataType::F32), Value::Float(123.456)),
        (t(8, DataType::I64), Value::Int(-1234567890123456789)),
        (t(12, DataType::F64), Value::Float(-9876.54321)),
        (t(16, DataType::String), Value::Text("Bifrost!".into())),
        (t(20, DataType::U16), Value::Int(0xA005)),
        (bit(0), Value::Bool(true)),
        (bit(1), Value::Bool(false)),
        (bit(2), Value::Bool(true)),
        (bit(13), Value::Bool(true)),
        (bit(15), Value::Bool(true)),
    ]
}

#[tokio::test]
async fn reads_every_type_in_every_byte_and_word_order() {
    let (_server, port) = tcp_server(0);
    let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, options()).unwrap();
    for (k, (bo, wo, name)) in ORDERS.iter().enumerate() {
        let block = typed_block(100 * k as u16, *bo, *wo);
        let tags: Vec<TagSpec> = block.iter().map(|(t, _)| t.clone()).collect();
        let samples = d.read(&tags).await;
        for ((t, want), s) in block.iter().zip(&samples) {
            assert_eq!(
                got(s),
                good(want.clone()),
                "{name} {} {}",
                t.address,
                t.data_type
            );
        }
    }
    // All four blocks at once: the planner splits at the gaps, the values hold.
    let all: Vec<(TagSpec, Value)> = ORDERS
        .iter()
        .enumerate()
        .flat_map(|(k, (bo, wo, _))| typed_block(100 * k as u16, *bo, *wo))
        .collect();
    let tags: Vec<TagSpec> = all.iter().map(|(t, _)| t.clone()).collect();
    let samples = d.read(&tags).await;
    for ((t, want), s) in all.iter().zip(&samples) {
        assert_eq!(got(s), good(want.clone()), "{}", t.address);
    }
}

#[tokio::test]
async fn scaled_values_are_in_engineering_units() {
    let (_server, port) = tcp_server(0);
    let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, options()).unwrap();
    let scale = |raw_lo, raw_hi, eng_lo, eng_hi| {
        Some(Scale {
            raw_lo,
            raw_hi,
            eng_lo,
            eng_hi,
        })
    };
    let tags = vec![
        TagSpec {
            scale: scale(0.0, 32000.0, 0.0, 100.0),
            ..tag("hr:400", DataType::U16)
        },
        TagSpec {
            scale: scale(-1000.0, 1000.0, -10.0, 10.0),
            ..tag("hr:401", DataType::I16)
        },
        TagSpec {
            scale: scale(0.0, 32000.0, 0.0, 100.0),
            ..tag("40403", DataType::U16)
        },
    ];
    let s = d.read(&tags).await;
    assert_eq!(got(&s[0]), good(Value::Float(50.0)));
    assert_eq!(got(&s[1]), good(Value::Float(-5.0)));
    assert_eq!(
        got(&s[2]),
        (
            Some(Value::Float(125.0)),
            Quality::uncertain("out_of_range")
        )
    );
}

#[tokio::test]
async fn reads_coils_discrete_inputs_and_input_registers() {
    let (_server, port) = tcp_server(0);
    let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, options()).unwrap();
    let tags = vec![
        tag("coil:0", DataType::Bool),
        tag("coil:1", DataType::Bool),
        tag("00004", DataType::Bool),
        tag("coil:7", DataType::Bool),
        tag("di:1", DataType::Bool),
        tag("10004", DataType::Bool),
        tag("discrete:4", DataType::Bool),
        tag("ir:0", DataType::U16),
        tag("30002", DataType::F32),
    ];
    let s: Vec<_> = d.read(&tags).await.iter().map(got).collect();
    let want: Vec<_> = [
        Value::Bool(true),
        Value::Bool(false),
        Value::Bool(true),
        Value::Bool(true),
        Value::Bool(true),
        Value::Bool(false),
        Value::Bool(true),
        Value::Int(777),
        Value::Float(-1.5),
    ]
    .into_iter()
    .map(good)
    .collect();
    assert_eq!(s, want);
}

#[tokio::test]
async fn writes_are_confirmed_by_read_back() {
    let (_server, port) = tcp_server(0);
    let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, options()).unwrap();
    let w = |t: TagSpec| TagSpec {
        writable: true,
        ..t
    };
    let cases: Vec<(TagSpec, Value, Value)> = vec![
        (
            w(tag("hr:500", DataType::U16)),
            Value::Int(4321),
            Value::Int(4321),
        ),
        (
            w(tag("hr:501", DataType::I16)),
            Value::Text("-77".into()),
            Value::Int(-77),
        ),
        (
            w(ordered(
                "hr:502".into(),
                DataType::I32,
                Order::Big,
                Order::Little,
            )),
            Value::Int(-123456789),
            Value::Int(-123456789),
        ),
        (
            w(ordered(
                "hr:504".into(),
                DataType::F32,
                Order::Little,
                Order::Big,
            )),
            Value::Float(123.456),
            Value::Float(123.456),
        ),
        (
            w(ordered(
                "hr:506".into(),
                DataType::F64,
                Order::Little,
                Order::Little,
            )),
            Value::Float(-9876.54321),
            Value::Float(-9876.54321),
        ),
        (
            w(tag("hr:510", DataType::I64)),
            Value::Int(i64::MIN + 1),
            Value::Int(i64::MIN + 1),
        ),
        (
            w(tag("hr:514", DataType::String)),
            Value::Text("line 1".into()),
            Value::Text("line 1".into()),
        ),
        (
            TagSpec {
                scale: Some(Scale {
                    raw_lo: 0.0,
                    raw_hi: 1000.0,
                    eng_lo: 0.0,
                    eng_hi: 100.0,
                }),
                ..w(tag("hr:518", DataType::U16))
            },
            Value::Float(12.34),
            Value::Float(12.3),
        ),
        (
            w(tag("hr:520.4", DataType::Bool)),
            Value::Bool(true),
            Value::Bool(true),
        ),
        (
            w(tag("coil:10", DataType::Bool)),
            Value::Bool(true),
            Value::Bool(true),
        ),
        (
            w(tag("coil:0", DataType::Bool)),
            Value::Text("off".into()),
            Value::Bool(false),
        ),
    ];
    for (t, value, want) in &cases {
        let back = d
            .write(t, value.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", t.address));
        assert_eq!(&back, want, "{}", t.address);
    }
    // Independent looks at what landed: raw words and a fresh read.
    let raw = |a: &str| tag(a, DataType::U16);
    let s = d
        .read(&[
            raw("hr:504"),
            raw("hr:505"),
            raw("hr:520"),
            tag("hr:520.3", DataType::Bool),
        ])
        .await;
    // 123.456f32 = 42 F6 E9 79, BADC order: F642 79E9.
    assert_eq!(got(&s[0]), good(Value::Int(0xF642)));
    assert_eq!(got(&s[1]), good(Value::Int(0x79E9)));
    assert_eq!(got(&s[2]), good(Value::Int(1 << 4)), "only bit 4 was set");
    assert_eq!(got(&s[3]), good(Value::Bool(false)));
    let reread: Vec<TagSpec> = cases.iter().map(|(t, _, _)| t.clone()).collect();
    for ((t, _, want), s) in cases.iter().zip(d.read(&reread).await) {
        assert_eq!(got(&s), good(want.clone()), "re-read {}", t.address);
    }
    // Clear the bit again through read-modify-write.
    let bit = w(tag("hr:520.4", DataType::Bool));
    assert_eq!(
        d.write(&bit, Value::Bool(false)).await.unwrap(),
        Value::Bool(false)
    );
}

#[tokio::test]
async fn bad_writes_are_refused_before_reaching_the_device() {
    let (_server, port) = tcp_server(0);
    let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, options()).unwrap();
    let ro = tag("hr:500", DataType::U16);
    let e = d.write(&ro, Value::Int(1)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("not writable")),
        "{e}"
    );
    let u16_tag = TagSpec {
        writable: true,
        ..tag("hr:500", DataType::U16)
    };
    let e = d.write(&u16_tag, Value::Int(70000)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("outside the range of u16")),
        "{e}"
    );
    let e = d.write(&u16_tag, Value::Float(1.5)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("whole number")),
        "{e}"
    );
    let ir = TagSpec {
        writable: true,
        ..tag("ir:0", DataType::U16)
    };
    let e = d.write(&ir, Value::Int(1)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("read-only")),
        "{e}"
    );
    // Nothing reached the device.
    assert_eq!(
        got(&d.read(&[tag("hr:500", DataType::U16)]).await[0]),
        good(Value::Int(0))
    );
}

#[tokio::test]
async fn illegal_address_gives_device_exception_2() {
    let (_server, port) = tcp_server(0);
    let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, options()).unwrap();
    let s = d.read(&[tag("hr:5000", DataType::U16)]).await;
    assert_eq!(got(&s[0]), (None, Quality::bad("device_exception:2")));
    // A block that runs into the missing registers: only the bad tag suffers.
    let s = d
        .read(&[tag("hr:998", DataType::U16), tag("hr:1000", DataType::U16)])
        .await;
    assert_eq!(got(&s[0]), good(Value::Int(0)));
    assert_eq!(got(&s[1]), (None, Quality::bad("device_exception:2")));
    // A write the device refuses.
    let t = TagSpec {
        writable: true,
        ..tag("hr:5000", DataType::U16)
    };
    let e = d.write(&t, Value::Int(1)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.starts_with("device_exception:2")),
        "{e}"
    );
    // The connection survived all that.
    assert_eq!(
        got(&d.read(&[tag("hr:1", DataType::U16)]).await[0]),
        good(Value::Int(54321))
    );
}

/// Reads `tags` until `ok` holds for the samples, or panics at the deadline.
async fn read_until(
    d: &mut ModbusDriver,
    tags: &[TagSpec],
    within: Duration,
    what: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Deadline::new(what, within);
    loop {
        let s = d.read(tags).await;
        if ok(&s) {
            return s;
        }
        deadline.pause(|| format!("{s:?}")).await;
    }
}

fn is_down(s: &[Sample]) -> bool {
    s.iter().all(|s| {
        s.quality.level == QualityLevel::Bad
            && ["comm_failure", "timeout", "not_connected"].contains(&s.quality.reason.as_str())
    })
}

#[tokio::test]
async fn stopped_server_gives_bad_quality_and_restart_brings_good_values_back() {
    let (server, port) = tcp_server(0);
    let mut d = ModbusDriver::tcp(&format!("127.0.0.1:{port}"), 1, options()).unwrap();
    let tags = [tag("hr:1", DataType::U16), tag("hr:6", DataType::F32)];
    let s = d.read(&tags).await;
    assert_eq!(got(&s[0]), good(Value::Int(54321)));
    drop(server);
    read_until(
        &mut d,
        &tags,
        Duration::from_secs(10),
        "Bad after stop",
        is_down,
    )
    .await;
    let (_server, again) = tcp_server(port);
    assert_eq!(again, port);
    let s = read_until(
        &mut d,
        &tags,
        Duration::from_secs(15),
        "Good after restart",
        |s| s.iter().all(|s| s.quality.is_good()),
    )
    .await;
    assert_eq!(got(&s[1]), good(Value::Float(123.456)));
}

/// A socat pseudo-terminal pair: two /dev/pts paths wired together.
fn pty_pair() -> (Proc, String, String) {
    let mut socat = Proc::spawn(
        Command::new("socat").args(["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"]),
        true,
    );
    let mut path = || {
        let line = socat.wait_line("PTY is", Duration::from_secs(10));
        line.rsplit(' ').next().unwrap().trim().to_string()
    };
    let (a, b) = (path(), path());
    socat.wait_line("starting data transfer loop", Duration::from_secs(10));
    (socat, a, b)
}

fn rtu_server(path: &str) -> Proc {
    require_pymodbus();
    let mut p = Proc::spawn(
        Command::new(python()).args([&script(), "rtu", "--serial", path, "--baud", "19200"]),
        false,
    );
    p.wait_line("READY", Duration::from_secs(30));
    p
}

#[tokio::test]
async fn rtu_over_a_pseudo_terminal_pair() {
    require_pymodbus();
    let (_socat, server_end, driver_end) = pty_pair();
    let server = rtu_server(&server_end);
    let mut d = ModbusDriver::rtu(&format!("{driver_end}:19200:8N1"), 1, options()).unwrap();
    // The server may need a moment to open its end: wait for Good.
    let block = typed_block(100, Order::Big, Order::Little);
    let tags: Vec<TagSpec> = block.iter().map(|(t, _)| t.clone()).collect();
    let s = read_until(&mut d, &tags, Duration::from_secs(15), "RTU Good", |s| {
        s.iter().all(|s| s.quality.is_good())
    })
    .await;
    for ((t, want), s) in block.iter().zip(&s) {
        assert_eq!(got(s), good(want.clone()), "RTU {}", t.address);
    }
    let c = d
        .read(&[tag("coil:0", DataType::Bool), tag("ir:1", DataType::F32)])
        .await;
    assert_eq!(got(&c[0]), good(Value::Bool(true)));
    assert_eq!(got(&c[1]), good(Value::Float(-1.5)));
    let t = TagSpec {
        writable: true,
        ..tag("hr:530", DataType::F32)
    };
    assert_eq!(
        d.write(&t, Value::Float(-2.25)).await.unwrap(),
        Value::Float(-2.25)
    );
    let e = d.read(&[tag("hr:5000", DataType::U16)]).await;
    assert_eq!(got(&e[0]), (None, Quality::bad("device_exception:2")));

    // Stop the RTU server: the line goes quiet; restart it: Good again.
    drop(server);
    let probe = [tag("hr:1", DataType::U16)];
    read_until(
        &mut d,
        &probe,
        Duration::from_secs(10),
        "RTU Bad after stop",
        is_down,
    )
    .await;
    let _server = rtu_server(&server_end);
    let s = read_until(
        &mut d,
        &probe,
        Duration::from_secs(15),
        "RTU Good after restart",
        |s| s[0].quality.is_good(),
    )
    .await;
    assert_eq!(got(&s[0]), good(Value::Int(54321)));
}

#[tokio::test]
async fn simulator_counter_is_read_by_pymodbus_too() {
    // The hand-rolled simulator server checked by an independent client.
    require_pymodbus();
    let server = SimServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        SimConfig {
            devices: 300,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let layout = server.layout();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    // Device 250 is on the second port, unit 4.
    let dev = &layout[250];
    assert_eq!(dev.unit, 4);
    let port: u16 = dev.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let code = format!(
        "from pymodbus.client import ModbusTcpClient\n\
         c = ModbusTcpClient('127.0.0.1', port={port})\n\
         assert c.connect()\n\
         for _ in range(2):\n\
         \x20   r = c.read_holding_registers(0, count=2, device_id={unit})\n\
         \x20   assert not r.isError(), r\n\
         \x20   print(r.registers[0] << 16 | r.registers[1])\n\
         r = c.read_holding_registers(2, count=2, device_id={unit})\n\
         v = c.convert_from_registers(r.registers, c.DATATYPE.FLOAT32)\n\
         assert -100.0 <= v <= 100.0, v\n\
         print('sine ok')\n",
        unit = dev.unit
    );
    let out =
        tokio::task::spawn_blocking(move || Command::new(python()).args(["-c", &code]).output())
            .await
            .unwrap()
            .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pymodbus client failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["1", "2", "sine ok"]);
    stop_tx.send(()).unwrap();
    task.await.unwrap().unwrap();
}
