//! The OPC UA driver against a real server: asyncua (Python, from PyPI), run
//! from `tests/peers/opcua_server.py` with the interpreter in `BIFROST_PYTHON`
//! (default `python3`). `scripts/test.sh` creates a venv with
//! `tests/requirements.txt`; without asyncua these tests fail and say so.
//!
//! Every wait is for a condition with a deadline, never a fixed sleep.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bifrost_drivers::opcua::{Identity, OpcUaDriver, OpcUaOptions, ReadPath, Security};
use bifrost_drivers::{
    DataType, Driver, Error, Health, Order, QualityLevel, Sample, Scale, TagSpec, Value,
};
use bifrost_testkit::{python, Deadline};

const READY_DEADLINE: Duration = Duration::from_secs(60);
const DEADLINE: Duration = Duration::from_secs(30);

fn peer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/opcua_server.py")
}

/// Fails (never skips) when the test peer cannot run.
fn require_asyncua() {
    let py = python();
    let out = Command::new(&py).args(["-c", "import asyncua"]).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "asyncua is not importable by {py} ({}). Run scripts/test.sh, which creates the \
             test venv, or set BIFROST_PYTHON to a Python with drivers/tests/requirements.txt \
             installed",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!(
            "cannot run {py} ({e}). Run scripts/test.sh, which creates the test venv, or set \
             BIFROST_PYTHON to a Python with drivers/tests/requirements.txt installed"
        ),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A running asyncua server.
struct Peer {
    child: Child,
    port: u16,
    args: Vec<String>,
    log: PathBuf,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        Peer::start_on(free_port(), args.iter().map(|s| s.to_string()).collect())
    }

    fn start_on(port: u16, args: Vec<String>) -> Peer {
        require_asyncua();
        let log = std::env::temp_dir().join(format!("bifrost-opcua-peer-{port}.log"));
        let mut child = Command::new(python())
            .arg(peer_script())
            .args(["--port", &port.to_string()])
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the asyncua peer");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.trim() == "READY" => break,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    panic!(
                        "asyncua peer exited before READY:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "asyncua peer exited ({status}) before READY:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "asyncua peer not READY within {READY_DEADLINE:?}"
            );
        }
        Peer {
            child,
            port,
            args,
            log,
        }
    }

    fn url(&self) -> String {
        format!("opc.tcp://127.0.0.1:{}/bifrost/", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The same server again, on the same port.
    fn restart(&mut self) {
        self.stop();
        let next = Peer::start_on(self.port, self.args.clone());
        let old = std::mem::replace(self, next);
        drop(old);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

fn tag(name: &str, data_type: DataType) -> TagSpec {
    tag_at(name, &format!("ns=2;s={name}"), data_type)
}

fn tag_at(name: &str, address: &str, data_type: DataType) -> TagSpec {
    TagSpec {
        name: name.to_string(),
        address: address.to_string(),
        data_type,
        byte_order: Order::Big,
        word_order: Order::Big,
        scale: None,
        deadband: None,
        length: 0,
        writable: true,
    }
}

fn options(peer: &Peer) -> OpcUaOptions {
    let mut o = OpcUaOptions::new(peer.url());
    o.publishing_interval = Duration::from_millis(100);
    o.reconnect_initial = Duration::from_millis(100);
    o.reconnect_max = Duration::from_secs(1);
    o
}

async fn connected(opts: OpcUaOptions) -> OpcUaDriver {
    let mut driver = OpcUaDriver::new(opts).unwrap();
    driver.connect().await.expect("connect");
    driver
}

/// Reads until `ok` holds for the samples, or panics at the deadline with
/// the last samples.
async fn read_until(
    driver: &mut OpcUaDriver,
    tags: &[TagSpec],
    what: &str,
    ok: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Deadline::new(what, DEADLINE);
    loop {
        let samples = driver.read(tags).await;
        if ok(&samples) {
            return samples;
        }
        deadline
            .pause(|| format!("samples {samples:?}, status {:?}", driver.status()))
            .await;
    }
}

fn good(samples: &[Sample]) -> bool {
    samples
        .iter()
        .all(|s| s.quality.level == QualityLevel::Good)
}

fn value(s: &Sample) -> Value {
    assert_eq!(s.quality.level, QualityLevel::Good, "{s:?}");
    s.value.clone().expect("a Good sample has a value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_reads_exactly() {
    let peer = Peer::start(&[]);
    let mut driver = connected(options(&peer)).await;
    let mut raw = tag("Raw", DataType::I16);
    raw.scale = Some(Scale {
        raw_lo: 0.0,
        raw_hi: 4000.0,
        eng_lo: 0.0,
        eng_hi: 100.0,
    });
    let tags = vec![
        tag("Bool", DataType::Bool),
        tag("Int16", DataType::I16),
        tag("UInt16", DataType::U16),
        tag("Int32", DataType::I32),
        tag("Int64", DataType::I64),
        tag("Float", DataType::F32),
        tag("Double", DataType::F64),
        tag("String", DataType::String),
        tag_at("Numeric", "ns=2;i=1001", DataType::F64),
        raw,
        // The namespace by URI instead of index.
        tag_at("ByUri", "nsu=urn:bifrost:test:opcua;s=Int32", DataType::I32),
    ];
    let samples = driver.read(&tags).await;
    let expected = [
        Value::Bool(true),
        Value::Int(-1234),
        Value::Int(54321),
        Value::Int(-123456789),
        Value::Int(-9007199254740993),
        Value::Float(1234.5678f32 as f64),
        Value::Float(std::f64::consts::E),
        Value::Text("hello bifrost".into()),
        Value::Float(21.5),
        Value::Float(50.0),
        Value::Int(-123456789),
    ];
    for ((t, s), want) in tags.iter().zip(&samples).zip(expected) {
        assert_eq!(value(s), want, "{}", t.name);
        let ts = s.source_ts_us.expect("the server gives timestamps");
        assert!(
            ts > 1_600_000_000_000_000,
            "{}: timestamp {ts} is microseconds since 1970",
            t.name
        );
    }

    // Nodes the server does not have, and addresses that are not NodeIds.
    let wrong = [
        tag("Missing", DataType::I32),
        tag_at("Malformed", "ns=2;q=1", DataType::I32),
        tag_at("UnknownUri", "nsu=urn:nowhere;s=X", DataType::I32),
        tag("String", DataType::I32),
    ];
    let samples = driver.read(&wrong).await;
    let reasons: Vec<(QualityLevel, &str)> = samples
        .iter()
        .map(|s| (s.quality.level, s.quality.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (QualityLevel::Bad, "BadNodeIdUnknown"),
            (QualityLevel::Bad, "config_error"),
            (QualityLevel::Bad, "config_error"),
            (QualityLevel::Bad, "config_error"),
        ]
    );
    // A bad tag does not spoil the good ones read with it.
    let mixed = [tag("Missing", DataType::I32), tag("Int16", DataType::I16)];
    let samples = driver.read(&mixed).await;
    assert_eq!(samples[0].quality.reason, "BadNodeIdUnknown");
    assert_eq!(value(&samples[1]), Value::Int(-1234));
    // The server would not monitor the missing node: it is polled instead.
    assert_eq!(driver.status().polled_nodes, 1, "{:?}", driver.status());
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_variable_arrives_through_the_subscription() {
    let peer = Peer::start(&[]);
    let mut driver = connected(options(&peer)).await;
    let tags = [tag("Counter", DataType::U32), tag("Int16", DataType::I16)];
    let status = driver.status();
    assert_eq!(status.read_path, Some(ReadPath::Subscription), "{status:?}");

    // The first reads poll (nothing published yet); the first one registers
    // the nodes for monitoring.
    let first = driver.read(&tags).await;
    assert!(good(&first), "{first:?}");
    let deadline = Deadline::new("two data changes", DEADLINE);
    while driver.status().data_changes < 2 {
        deadline.pause(|| format!("{:?}", driver.status())).await;
    }
    let calls_after_first = driver.status().read_calls;

    // Then values come from the subscription: they keep changing while reads
    // make no more Read calls.
    let mut seen: Vec<(i64, i64)> = Vec::new();
    let deadline = Deadline::new("six counter values from the subscription", DEADLINE)
        .every(Duration::from_millis(50));
    while seen.len() < 6 {
        let samples = driver.read(&tags).await;
        assert!(good(&samples), "{samples:?}");
        let Value::Int(n) = value(&samples[0]) else {
            panic!("{samples:?}")
        };
        let ts = samples[0].source_ts_us.unwrap();
        if seen.last().is_none_or(|(last, _)| n != *last) {
            if let Some((last, last_ts)) = seen.last() {
                assert!(n > *last, "counter went from {last} to {n}");
                assert!(ts > *last_ts, "source timestamps advance with the value");
            }
            seen.push((n, ts));
        }
        deadline
            .pause(|| format!("counter at {seen:?}; {:?}", driver.status()))
            .await;
    }
    let status = driver.status();
    assert_eq!(status.read_path, Some(ReadPath::Subscription));
    assert_eq!(status.monitored_items, 2, "{status:?}");
    assert_eq!(
        status.read_calls, calls_after_first,
        "reads were served by the subscription"
    );
    assert!(status.data_changes >= 6, "{status:?}");
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_subscriptions_reads_poll() {
    let peer = Peer::start(&[]);
    let mut opts = options(&peer);
    opts.use_subscriptions = false;
    let mut driver = connected(opts).await;
    let status = driver.status();
    assert_eq!(status.read_path, Some(ReadPath::Polling));
    assert!(status.polling_reason.unwrap().contains("disabled"));
    let tags = [tag("Counter", DataType::U32)];
    let Value::Int(first) = value(&driver.read(&tags).await[0]) else {
        panic!()
    };
    read_until(
        &mut driver,
        &tags,
        "counter moves",
        |s| matches!(s[0].value, Some(Value::Int(n)) if n > first),
    )
    .await;
    let status = driver.status();
    assert!(status.read_calls >= 2, "{status:?}");
    assert_eq!(status.data_changes, 0);
    assert_eq!(status.monitored_items, 0);
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_confirmed_by_reading_back() {
    let peer = Peer::start(&[]);
    let mut driver = connected(options(&peer)).await;
    let writes = [
        (tag("Bool", DataType::Bool), Value::Bool(false)),
        (tag("Int16", DataType::I16), Value::Int(-32768)),
        (tag("UInt16", DataType::U16), Value::Int(65535)),
        (tag("Int32", DataType::I32), Value::Int(2147483647)),
        (tag("Int64", DataType::I64), Value::Int(i64::MIN + 1)),
        (tag("Float", DataType::F32), Value::Float(-0.125)),
        (tag("Double", DataType::F64), Value::Float(1e-300)),
        (
            tag("String", DataType::String),
            Value::Text("written by bifrost".into()),
        ),
    ];
    // Subscribe first, so the test also shows reads see the new values.
    let tags: Vec<TagSpec> = writes.iter().map(|(t, _)| t.clone()).collect();
    assert!(good(&driver.read(&tags).await));
    for (t, v) in &writes {
        let back = driver
            .write(t, v.clone())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        assert_eq!(&back, v, "{}", t.name);
    }
    let want: Vec<Option<Value>> = writes.iter().map(|(_, v)| Some(v.clone())).collect();
    read_until(&mut driver, &tags, "written values read", |s| {
        s.iter().map(|s| s.value.clone()).collect::<Vec<_>>() == want
    })
    .await;

    // A scaled write is unscaled: 25 % of 0..4000 is raw 1000.
    let mut scaled = tag("Int16", DataType::I16);
    scaled.scale = Some(Scale {
        raw_lo: 0.0,
        raw_hi: 4000.0,
        eng_lo: 0.0,
        eng_hi: 100.0,
    });
    assert_eq!(
        driver.write(&scaled, Value::Float(25.0)).await,
        Ok(Value::Float(25.0))
    );
    let back = driver.read(&[tag("Int16", DataType::I16)]).await;
    assert_eq!(back[0].value, Some(Value::Int(1000)));

    // Refusals, each with its reason.
    let read_only = tag("ReadOnly", DataType::I32);
    let e = driver.write(&read_only, Value::Int(1)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.contains("read-only")),
        "{e}"
    );
    assert_eq!(
        value(&driver.read(&[read_only]).await[0]),
        Value::Int(42),
        "unchanged"
    );
    let mut not_writable = tag("Int32", DataType::I32);
    not_writable.writable = false;
    let e = driver
        .write(&not_writable, Value::Int(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("not writable")),
        "{e}"
    );
    let e = driver
        .write(&tag("Int16", DataType::I16), Value::Int(70000))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("out of range")),
        "{e}"
    );
    let e = driver
        .write(&tag("Missing", DataType::I16), Value::Int(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.contains("BadNodeIdUnknown")),
        "{e}"
    );
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_lists_variables_with_types() {
    let peer = Peer::start(&[]);
    let mut driver = connected(options(&peer)).await;
    let root = driver.browse(None).await.unwrap();
    let plant = root
        .iter()
        .find(|i| i.name == "Bifrost")
        .unwrap_or_else(|| panic!("{root:?}"));
    assert_eq!(plant.address, "ns=2;s=Bifrost");
    assert_eq!(plant.kind, "object");
    assert!(
        root.iter()
            .any(|i| i.address == "i=2253" && i.name == "Server"),
        "{root:?}"
    );

    let items = driver.browse(Some("ns=2;s=Bifrost")).await.unwrap();
    let find = |name: &str| {
        items
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} in {items:?}"))
    };
    for (name, data_type, writable) in [
        ("Bool", DataType::Bool, true),
        ("Int16", DataType::I16, true),
        ("UInt16", DataType::U16, true),
        ("Int32", DataType::I32, true),
        ("Int64", DataType::I64, true),
        ("Float", DataType::F32, true),
        ("Double", DataType::F64, true),
        ("String", DataType::String, true),
        ("Counter", DataType::U32, false),
        ("ReadOnly", DataType::I32, false),
    ] {
        let item = find(name);
        assert_eq!(item.address, format!("ns=2;s={name}"));
        assert_eq!(item.kind, "variable");
        assert_eq!(item.data_type, Some(data_type), "{item:?}");
        assert_eq!(item.writable, writable, "{item:?}");
    }
    assert_eq!(find("Numeric").address, "ns=2;i=1001");

    // asyncua says BadNodeIdInvalid here, other servers BadNodeIdUnknown.
    let e = driver.browse(Some("ns=2;s=Nothing")).await.unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.contains("BadNodeId")),
        "{e}"
    );
    let e = driver.browse(Some("ns=2;")).await.unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("invalid OPC UA address")),
        "{e}"
    );
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_password_log_in_and_a_wrong_password_says_so() {
    let peer = Peer::start(&["--users", "operator:s3cret"]);
    let login = |user: &str, password: &str| {
        let mut o = options(&peer);
        o.identity = Identity::UserPassword {
            user: user.into(),
            password: password.into(),
        };
        o
    };

    let mut driver = connected(login("operator", "s3cret")).await;
    assert_eq!(
        value(&driver.read(&[tag("Int32", DataType::I32)]).await[0]),
        Value::Int(-123456789)
    );
    driver.close().await;

    let mut driver = OpcUaDriver::new(login("operator", "wrong")).unwrap();
    let e = driver.connect().await.unwrap_err();
    assert!(
        matches!(&e, Error::Rejected(m) if m.contains("refused the login of user \"operator\"")
            && m.contains("BadUserAccessDenied")),
        "{e}"
    );
    assert!(
        matches!(driver.health(), Health::Down(m) if m.contains("wrong user name or password"))
    );
    let samples = driver.read(&[tag("Int32", DataType::I32)]).await;
    assert_eq!(samples[0].quality.reason, "not_connected");
    driver.close().await;

    // This server takes no anonymous sessions.
    let mut driver = OpcUaDriver::new(options(&peer)).unwrap();
    let e = driver.connect().await.unwrap_err();
    assert!(e.to_string().contains("anonymous"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic256sha256_connects_with_certificates() {
    let server_pki = tempfile::tempdir().unwrap();
    let peer = Peer::start(&["--secure", server_pki.path().to_str().unwrap()]);
    let client_pki = tempfile::tempdir().unwrap();
    let secure = |security: Security, trust: bool| {
        let mut o = options(&peer);
        o.security = security;
        o.pki_dir = Some(client_pki.path().to_path_buf());
        o.trust_server_certs = trust;
        o
    };

    // Only secure endpoints are offered.
    let mut driver = OpcUaDriver::new(options(&peer)).unwrap();
    let e = driver.connect().await.unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("no endpoint with security None")
            && m.contains("Basic256Sha256")),
        "{e}"
    );
    drop(driver);

    // An unknown server certificate is refused, and kept for inspection.
    let mut driver =
        OpcUaDriver::new(secure(Security::Basic256Sha256SignAndEncrypt, false)).unwrap();
    let e = driver.connect().await.unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("not trusted")),
        "{e}"
    );
    assert!(
        client_pki.path().join("own/cert.der").is_file(),
        "client certificate generated"
    );
    driver.close().await;
    let rejected: Vec<PathBuf> = std::fs::read_dir(client_pki.path().join("rejected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");

    // Trusted by hand (moved to trusted/), it connects.
    let name = rejected[0].file_name().unwrap();
    std::fs::rename(&rejected[0], client_pki.path().join("trusted").join(name)).unwrap();
    let mut driver = connected(secure(Security::Basic256Sha256SignAndEncrypt, false)).await;
    assert_eq!(
        value(&driver.read(&[tag("Double", DataType::F64)]).await[0]),
        Value::Float(std::f64::consts::E)
    );
    let back = driver
        .write(&tag("Int32", DataType::I32), Value::Int(7))
        .await;
    assert_eq!(back, Ok(Value::Int(7)));
    driver.close().await;

    // Sign only, with a fresh client whose options trust the server.
    let other_pki = tempfile::tempdir().unwrap();
    let mut o = secure(Security::Basic256Sha256Sign, true);
    o.pki_dir = Some(other_pki.path().to_path_buf());
    let mut driver = connected(o).await;
    assert_eq!(
        value(&driver.read(&[tag("Int32", DataType::I32)]).await[0]),
        Value::Int(7)
    );
    assert_eq!(
        std::fs::read_dir(other_pki.path().join("trusted"))
            .unwrap()
            .count(),
        1
    );
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_gives_bad_quality_and_a_restarted_one_good_values() {
    let mut peer = Peer::start(&[]);
    let mut driver = connected(options(&peer)).await;
    let tags = [tag("Counter", DataType::U32), tag("Int16", DataType::I16)];
    read_until(&mut driver, &tags, "first values", good).await;

    peer.stop();
    let down = read_until(&mut driver, &tags, "Bad quality after the stop", |s| {
        s.iter().all(|s| s.quality.level == QualityLevel::Bad)
    })
    .await;
    assert!(
        down.iter()
            .all(|s| ["not_connected", "comm_failure"].contains(&s.quality.reason.as_str())),
        "{down:?}"
    );
    // While down, reads answer at once instead of waiting for the server.
    read_until(&mut driver, &tags, "not_connected", |s| {
        s[0].quality.reason == "not_connected"
    })
    .await;
    let started = Instant::now();
    let samples = driver.read(&tags).await;
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(samples[0].quality.reason, "not_connected");
    assert!(matches!(
        driver.health(),
        Health::Down(_) | Health::Connecting
    ));

    peer.restart();
    let back = read_until(&mut driver, &tags, "Good values after the restart", good).await;
    assert_eq!(back[1].value, Some(Value::Int(-1234)));
    let status = driver.status();
    assert_eq!(status.connects, 2, "{status:?}");
    assert_eq!(status.read_path, Some(ReadPath::Subscription));
    // The subscription was made again: once its first changes have
    // arrived (how soon depends on the machine's load), the counter moves
    // in reads that make no Read call. Without a subscription every read
    // would call Read, and this would time out.
    let Some(Value::Int(mut n)) = back[0].value else {
        panic!("{back:?}")
    };
    let deadline = Deadline::new("the counter moving with no Read call", DEADLINE);
    loop {
        let calls = driver.status().read_calls;
        let samples = driver.read(&tags).await;
        let status = driver.status();
        match samples[0].value {
            Some(Value::Int(m)) if m > n && status.read_calls == calls => break,
            Some(Value::Int(m)) => n = n.max(m),
            _ => {}
        }
        deadline
            .pause(|| format!("samples {samples:?}, status {status:?}"))
            .await;
    }
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_gives_bad_quality_without_hanging_reads_for_long() {
    let peer = Peer::start(&[]);
    let mut opts = options(&peer);
    opts.request_timeout = Duration::from_secs(1);
    opts.keep_alive_interval = Duration::from_secs(1);
    let mut driver = connected(opts).await;
    let tags = [tag("Counter", DataType::U32)];
    read_until(&mut driver, &tags, "first values", good).await;

    // SIGSTOP: the TCP connection stays up but nothing answers. The
    // subscription goes quiet, reads fall back to Read calls, which time out,
    // and the failed keep-alives end the session.
    let pid = peer.child.id() as i32;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let hung = read_until(&mut driver, &tags, "Bad quality while hung", |s| {
        s[0].quality.level == QualityLevel::Bad
    })
    .await;
    assert!(["timeout", "not_connected", "comm_failure"].contains(&hung[0].quality.reason.as_str()));
    for _ in 0..3 {
        let started = Instant::now();
        let s = driver.read(&tags).await;
        assert_eq!(s[0].quality.level, QualityLevel::Bad, "{s:?}");
        // At most one request timeout, never more.
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }

    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    read_until(&mut driver, &tags, "Good values after SIGCONT", good).await;
    driver.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_no_longer_read_stop_being_monitored() {
    let peer = Peer::start(&[]);
    let mut opts = options(&peer);
    opts.forget_after = Duration::from_millis(500);
    let mut driver = connected(opts).await;
    let both = [tag("Counter", DataType::U32), tag("Int16", DataType::I16)];
    read_until(&mut driver, &both, "both read", good).await;
    assert_eq!(driver.status().monitored_items, 2);

    // Only the counter is read from now on (the Int16 tag was deleted).
    let counter = [tag("Counter", DataType::U32)];
    let deadline = Deadline::new("one monitored item", DEADLINE).every(Duration::from_millis(50));
    while driver.status().monitored_items != 1 {
        assert!(good(&driver.read(&counter).await));
        deadline.pause(|| format!("{:?}", driver.status())).await;
    }
    // Reading it again subscribes it again.
    read_until(&mut driver, &both, "both read again", good).await;
    assert_eq!(driver.status().monitored_items, 2);
    driver.close().await;
}

/// The server's poller reads without calling `connect` first: the first read
/// starts the connection and registers the nodes before any session exists.
/// Every read returns within about one request timeout, Good values arrive,
/// and every tag's timestamps go forward: the samples of variables that have
/// not changed since the server started (their source timestamps are older
/// than the first, Bad `not_connected` read) must still be newer than that
/// read, or a store that keeps the newest sample as current shows them Bad
/// for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_without_connect_get_values_and_never_hang() {
    let peer = Peer::start(&[]);
    let mut opts = options(&peer);
    opts.publishing_interval = Duration::from_millis(200);
    opts.request_timeout = Duration::from_secs(2);
    // A read takes at most one request timeout; a second of slack for a
    // loaded machine.
    let read_bound = opts.request_timeout + Duration::from_secs(1);
    let mut driver = OpcUaDriver::new(opts).unwrap();
    let tags = vec![
        tag("Bool", DataType::Bool),
        tag("Int16", DataType::I16),
        tag("UInt16", DataType::U16),
        tag("Int32", DataType::I32),
        tag("Int64", DataType::I64),
        tag("Float", DataType::F32),
        tag("Double", DataType::F64),
        tag("String", DataType::String),
        tag("Raw", DataType::I16),
        tag("ReadOnly", DataType::I32),
        tag("Counter", DataType::U32),
        tag_at("Numeric", "ns=2;i=1001", DataType::F64),
    ];
    let deadline = Deadline::new("ten Good reads", DEADLINE).every(Duration::from_millis(200));
    let mut reads = 0;
    let mut bad_reads = 0;
    let mut good_reads = 0;
    let mut last_ts: Vec<i64> = vec![i64::MIN; tags.len()];
    while good_reads < 10 {
        // What the poller stamps a sample without a timestamp with.
        let poll_ts = bifrost_model::now_us();
        let Ok(samples) = tokio::time::timeout(read_bound, driver.read(&tags)).await else {
            panic!(
                "read {reads} did not return within {read_bound:?}; status {:?}",
                driver.status()
            );
        };
        reads += 1;
        assert_eq!(samples.len(), tags.len());
        if good(&samples) {
            good_reads += 1;
        } else {
            assert_eq!(good_reads, 0, "values went Bad again: {samples:?}");
            assert!(
                samples.iter().all(|s| s.quality.reason == "not_connected"),
                "{samples:?}"
            );
            bad_reads += 1;
        }
        for ((t, s), last) in tags.iter().zip(&samples).zip(last_ts.iter_mut()) {
            let ts = s.source_ts_us.unwrap_or(poll_ts);
            assert!(
                ts > *last,
                "{}: timestamp went from {} to {ts} ({s:?})",
                t.name,
                *last
            );
            *last = ts;
        }
        deadline
            .pause(|| {
                format!(
                    "{good_reads} Good reads of {reads}; status {:?}",
                    driver.status()
                )
            })
            .await;
    }
    assert!(bad_reads >= 1, "the first read, before any session, is Bad");
    let status = driver.status();
    assert_eq!(status.read_path, Some(ReadPath::Subscription), "{status:?}");
    assert_eq!(status.monitored_items, tags.len(), "{status:?}");
    assert!(status.data_changes > 0, "{status:?}");
    driver.close().await;
}
