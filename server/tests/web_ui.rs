//! The web UI in a real headless Chromium (issue 16, part 7), against a
//! TLS cluster of three polling the Modbus simulator (100 devices of ten
//! tags: a counter, eight pattern tags and a writable setpoint, polled
//! every second). One browser session walks what a plant engineer does,
//! saving a screenshot of each page (in `$BIFROST_SCREENSHOTS`, else
//! `web-ui-screenshots` in the system's temporary directory):
//!
//! - a wrong password is refused; the operator logs in;
//! - browses the tag tree to a simulated device and sees its counter change;
//! - writes a setpoint (asked to confirm) and sees `ok` and the new value;
//!   writes a tag on a register the device holds read-only and sees it
//!   rejected with the device's reason, and one on a device that never
//!   answers and sees `timeout`;
//! - sees a tag the device cannot read marked bad with the device's reason,
//!   and a tag with no recent reading marked stale until a live reading
//!   comes, and stale again when none follows;
//! - the JSON routes, called from the page, refuse a POST without the
//!   session's CSRF value, say what is wrong with bad input, and refuse the
//!   audit records to an operator;
//! - opens a trend and sees points drawn, then live readings appended;
//!   downloads what is shown as CSV and reads it;
//! - runs a bad query and sees the error at its line and column, then a
//!   bucketed one as a table and a chart;
//! - sees the devices (status, owner, last poll, breaker) and the
//!   cluster's members (terms, applied indexes, the devices each polls);
//! - opens a folder of 100,000 tags: the tree loads 500 children at a time
//!   and the table 2,000 rows a page, never all of them (times printed);
//! - has 1,000 live tags on screen: the update lag and frame times are
//!   printed (at least 5,000 live updates painted; rows out of sight are
//!   updated but not rendered, see docs/web-ui.md);
//! - opens a one-day trend of ten tags: its load time is printed; zooms by
//!   dragging across the chart and loads the zoomed range in finer detail;
//! - a viewer whose PC clock is ten minutes fast is told so in the header,
//!   and values polled a second ago are not marked stale; sees no write
//!   button and no audit page, and the API refuses the viewer's write; a
//!   viewer granted one device's tags sees only those (tree, search,
//!   current values); an admin sees the
//!   operator's write in the audit view, and disables and enables a
//!   device (confirming each).
//!
//! Timings are printed, never asserted (the benchmark rule).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use bifrost_client::{Grant, Role};
use bifrost_testkit::Browser;
use common::*;
use serde_json::json;

const PASSWORD: &str = "web-ui-Pa55word-2026";
const DEVICES: u32 = 100;
/// Pattern tags per device; with the counter and the setpoint, ten.
const PATTERN_TAGS: u16 = 8;
const WAIT: Duration = Duration::from_secs(45);

/// The cluster, the plant imported, and users `operator`, `viewer`,
/// `scoped` (a viewer of device sim00001's tags only) and `admin2` (an
/// admin who logs in with a password); and a listener that
/// never answers, the endpoint of device `mute` (it must outlive the test).
async fn plant() -> (TestCluster, std::net::TcpListener) {
    let mut c = TestCluster(Cluster::start(options(3, &[]).tls()).unwrap());
    c.wait_leader(&[1, 2, 3], Duration::from_secs(60)).await;
    let port = c
        .start_sim(&SimOptions::new(DEVICES, PATTERN_TAGS))
        .await
        .unwrap()
        .port();
    let base = format!("127.0.0.1:{port}").parse().unwrap();
    let (devices, tags) = bifrost_server::demo::sim_plant(base, DEVICES, PATTERN_TAGS);
    assert_eq!(tags.len(), 1_000);
    let admin = c.client();
    admin.import(devices, tags.clone()).await.unwrap();
    for (name, role) in [
        ("operator", Role::Operator),
        ("viewer", Role::Viewer),
        ("admin2", Role::Admin),
        ("scoped", Role::Viewer),
    ] {
        let tags = match name {
            "scoped" => vec!["plant/sim00001/**".to_string()],
            _ => vec![],
        };
        let grant = Grant::new(role, tags).unwrap();
        admin.add_user(name, PASSWORD, vec![grant]).await.unwrap();
    }
    ingest_a_day(&c).await;
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    faulty_tags(&c, &tags, mute.local_addr().unwrap()).await;
    a_hundred_thousand_tags(&c).await;
    // Applying 100,000 tags takes a debug node a while: the browser starts
    // once every node has caught up (its login waits for a read barrier).
    let leader = c.wait_leader(&[1, 2, 3], Duration::from_secs(60)).await;
    for id in 1..=3 {
        c.catch_up(id, leader, Duration::from_secs(120)).await;
    }
    (c, mute)
}

/// Two writable tags on sim00000 that the device refuses: `faults/readonly`
/// names its counter's register, which it holds read-only (a write gets
/// exception 2), and `faults/missing` a register past its map (every read
/// gets exception 2, so the value is bad). And `faults/mute`, on a device
/// at `mute`, which takes connections and never answers.
async fn faulty_tags(
    c: &TestCluster,
    plant_tags: &[bifrost_proto::v1::Tag],
    mute: std::net::SocketAddr,
) {
    let counter = plant_tags
        .iter()
        .find(|t| t.name == "plant/sim00000/counter")
        .unwrap();
    let faulty = |name: &str, address: &str| bifrost_proto::v1::Tag {
        name: name.into(),
        address: address.into(),
        writable: true,
        ..counter.clone()
    };
    let tags = vec![
        faulty("faults/readonly", &counter.address),
        faulty("faults/missing", "hr:60000"),
        bifrost_proto::v1::Tag {
            device: "mute".into(),
            ..faulty("faults/mute", "hr:0")
        },
    ];
    let mute = bifrost_proto::v1::Device {
        endpoint: mute.to_string(),
        enabled: true,
        retries: 1,
        ..device("mute")
    };
    c.client().import(vec![mute], tags).await.unwrap();
}

/// Tags in one folder, `big/`.
const BIG_FOLDER: usize = 100_000;

/// `big/t000000` to `big/t099999`, on a device that is not polled; 1,000
/// tags an import, so that no log entry is too large to reach a follower
/// within the test cluster's short Raft timeouts on a busy machine.
async fn a_hundred_thousand_tags(c: &TestCluster) {
    let admin = c.client();
    admin.put_device(device("big"), true).await.unwrap();
    let names: Vec<String> = (0..BIG_FOLDER).map(|i| format!("big/t{i:06}")).collect();
    for chunk in names.chunks(1_000) {
        let tags = chunk.iter().map(|n| tag(n, "big", "f64")).collect();
        admin.import(vec![], tags).await.unwrap();
    }
}

/// A day of history, one reading every 30 s, for `hist/t0` to `hist/t9`.
async fn ingest_a_day(c: &TestCluster) {
    let admin = c.client();
    admin.put_device(device("hist"), true).await.unwrap();
    let now = bifrost_model::now_us();
    let mut batch = vec![];
    for t in 0..10 {
        let name = format!("hist/t{t}");
        admin
            .put_tag(tag(&name, "hist", "f64"), true)
            .await
            .unwrap();
        for i in 0..2_880i64 {
            let ts = now - 86_400_000_000 + i * 30_000_000;
            let v = ((i as f64) / 100.0 + t as f64).sin() * 10.0 + t as f64;
            batch.push(reading(&format!("{name}-{i}"), &name, ts, v));
        }
    }
    for chunk in batch.chunks(5_000) {
        admin.ingest(chunk.to_vec()).await.unwrap();
    }
}

fn screenshots_dir() -> PathBuf {
    std::env::var_os("BIFROST_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("web-ui-screenshots"))
}

/// A row of the tag table, or a cell of it.
fn row(tag: &str) -> String {
    format!("tr.tag-row[data-tag=\"{tag}\"]")
}

async fn login(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/")).await.unwrap();
    submit_login(b, user, password).await;
}

/// Fills in and submits the login form of the page as it is.
async fn submit_login(b: &Browser, user: &str, password: &str) {
    b.wait_for("#login-form", WAIT).await.unwrap();
    b.fill("#login-user", user).await.unwrap();
    b.fill("#login-password", password).await.unwrap();
    b.click("#login-submit").await.unwrap();
}

async fn logout(b: &Browser) {
    b.click("#logout").await.unwrap();
    b.wait_for("#login-form", WAIT).await.unwrap();
}

/// Opens folder `path` of the tag tree (its parents must be open).
async fn open_folder(b: &Browser, path: &str) {
    let css = format!(".tree-folder[data-path=\"{path}\"]");
    b.wait_for(&css, WAIT).await.unwrap();
    b.click(&css).await.unwrap();
}

/// The median and the 99th percentile of `xs`.
fn median_p99(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs[((xs.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plant_engineer_uses_the_web_ui_in_a_real_browser() {
    let (c, _mute) = plant().await;
    let shots = screenshots_dir();
    let b = Browser::start(&c.dir(), &shots).await.unwrap();
    let base = format!("https://{}", c.node(1).http);

    log_in_as_operator(&b, &base).await;
    browse_to_a_live_tag(&b).await;
    write_a_setpoint(&b).await;
    a_write_the_device_rejects(&b, &base).await;
    a_write_no_device_answers(&b).await;
    bad_and_stale_values_are_marked(&b, &base, &c).await;
    the_api_refuses_forged_and_bad_requests(&b).await;
    trend_two_tags(&b, &base).await;
    query_console(&b, &base).await;
    devices_and_cluster(&b, &base).await;
    a_folder_of_a_hundred_thousand_tags(&b, &base).await;
    a_thousand_live_tags(&b, &base).await;
    a_day_of_ten_tags(&b, &base).await;
    a_viewer_and_an_admin(&b, &base).await;
    b.close().await.unwrap();
    println!("web UI screenshots in {}", shots.display());
}

async fn log_in_as_operator(b: &Browser, base: &str) {
    login(b, base, "operator", "not-the-password-1").await;
    let error = b
        .wait_text("#login-error", WAIT, |t| !t.trim().is_empty())
        .await
        .unwrap();
    assert!(error.contains("login failed"), "{error}");
    b.screenshot("login").await.unwrap();
    login(b, base, "operator", PASSWORD).await;
    let who = b
        .wait_text("#whoami", WAIT, |t| t.contains("operator"))
        .await
        .unwrap();
    assert!(!who.contains("viewer"), "{who}");
    // The session cookie, as the browser keeps it: out of the page's reach.
    let cookie = b.cookie("bifrost_session").await.unwrap();
    assert_eq!(
        cookie.as_deref(),
        Some("HttpOnly; SameSite=Strict; Secure"),
        "the session cookie's attributes"
    );
    let page_sees = b.script("return document.cookie;", vec![]).await.unwrap();
    assert!(
        !page_sees
            .as_str()
            .unwrap_or_default()
            .contains("bifrost_session"),
        "the page cannot read the session cookie: {page_sees}"
    );
    assert_eq!(
        b.count("#nav-audit").await.unwrap(),
        0,
        "an operator has no audit page"
    );
}

async fn browse_to_a_live_tag(b: &Browser) {
    open_folder(b, "plant/").await;
    open_folder(b, "plant/sim00000/").await;
    let value = format!("{} td.tag-value", row("plant/sim00000/counter"));
    let first = b
        .wait_text(&value, WAIT, |t| t.trim().parse::<u64>().is_ok())
        .await
        .unwrap();
    let later = b
        .wait_text(&value, WAIT, |t| {
            t.trim() != first.trim() && !t.trim().is_empty()
        })
        .await
        .unwrap();
    assert!(
        later.trim().parse::<u64>().unwrap() > first.trim().parse::<u64>().unwrap(),
        "the counter goes up: {first} then {later}"
    );
    let device = b
        .text(&format!("{} td.tag-device", row("plant/sim00000/counter")))
        .await
        .unwrap();
    assert_eq!(device.as_deref().map(str::trim), Some("sim00000"));
    let owner = b
        .text(&format!("{} td.tag-owner", row("plant/sim00000/counter")))
        .await
        .unwrap();
    let owner: u64 = owner
        .unwrap_or_default()
        .trim()
        .trim_start_matches("node ")
        .parse()
        .unwrap_or(0);
    assert!(
        (1..=3).contains(&owner),
        "the owner is a node of the cluster: {owner}"
    );
    let counter = row("plant/sim00000/counter");
    let quality = b.text(&format!("{counter} td.tag-quality")).await.unwrap();
    assert_eq!(quality.as_deref(), Some("good"));
    let shown = b.text(&format!("{counter} td.tag-ts")).await.unwrap();
    let shown = shown.unwrap_or_default();
    assert!(
        shown.starts_with(&chrono::Utc::now().format("%Y-").to_string()) || shown.contains(':'),
        "the reading's time is shown: {shown:?}"
    );
    assert_eq!(b.count("#tag-table tr.tag-row").await.unwrap(), 10);
    b.screenshot("tags").await.unwrap();
}

/// Whether the element matching `css` has class `class`.
async fn has_class(b: &Browser, css: &str, class: &str) -> bool {
    b.script(
        "const e = document.querySelector(arguments[0]); \
         return Boolean(e && e.classList.contains(arguments[1]));",
        vec![css.into(), class.into()],
    )
    .await
    .unwrap()
        == serde_json::Value::Bool(true)
}

/// Waits until the element matching `css` has class `class`, or has not.
async fn wait_class(b: &Browser, css: &str, class: &str, wanted: bool) {
    bifrost_testkit::Wait::new(format!("{css} with class {class}: {wanted}"), WAIT)
        .until_async(|| async { has_class(b, css, class).await == wanted })
        .await
        .unwrap();
}

/// Writes to a tag whose register the device holds read-only: the device's
/// refusal comes back as the outcome, and the value is unchanged.
async fn a_write_the_device_rejects(b: &Browser, base: &str) {
    b.goto(&format!("{base}/#/tags?folder=faults/"))
        .await
        .unwrap();
    let readonly = row("faults/readonly");
    let value = format!("{readonly} td.tag-value");
    let before = b
        .wait_text(&value, WAIT, |t| t.trim().parse::<u64>().is_ok())
        .await
        .unwrap();
    open_write_dialog(b, "faults/readonly").await;
    let current = b.text("#write-current").await.unwrap().unwrap_or_default();
    assert!(
        current.trim().parse::<u64>().is_ok(),
        "the dialog shows the current value: {current:?}"
    );
    let (kind, outcome) = write_and_confirm(b, "faults/readonly", "7").await;
    assert_eq!(kind, "rejected", "{outcome}");
    assert!(
        outcome.starts_with("rejected") && outcome.contains("device_exception:2"),
        "the device's refusal is shown: {outcome}"
    );
    b.screenshot("write-rejected").await.unwrap();
    b.click("#write-cancel").await.unwrap();
    let after = b.text(&value).await.unwrap().unwrap_or_default();
    assert!(
        after.trim().parse::<u64>().unwrap() >= before.trim().parse::<u64>().unwrap(),
        "the counter was not set to 7: {before} then {after}"
    );
}

/// Writes to a tag on a device that never answers: the dialog says
/// `timeout`, naming the device.
async fn a_write_no_device_answers(b: &Browser) {
    open_write_dialog(b, "faults/mute").await;
    let (kind, outcome) = write_and_confirm(b, "faults/mute", "3").await;
    assert_eq!(kind, "timeout", "{outcome}");
    assert!(outcome.starts_with("timeout"), "{outcome}");
    b.click("#write-cancel").await.unwrap();
}

/// Opens the write dialog of `tag`'s row in the tag table.
async fn open_write_dialog(b: &Browser, tag: &str) {
    b.click(&format!("{} button.write-btn", row(tag)))
        .await
        .unwrap();
    b.wait_for("#write-dialog", WAIT).await.unwrap();
}

/// In the open write dialog: types `value`, confirms, checks the question
/// names the tag and the value, writes; the outcome's word
/// (`data-outcome`) and text.
async fn write_and_confirm(b: &Browser, tag: &str, value: &str) -> (String, String) {
    b.fill("#write-value", value).await.unwrap();
    b.click("#write-confirm").await.unwrap();
    let question = b
        .wait_text("#write-question", WAIT, |t| t.contains(value))
        .await
        .unwrap();
    assert!(question.contains(tag), "{question}");
    b.click("#write-really").await.unwrap();
    let outcome = b
        .wait_text("#write-outcome", WAIT, |t| !t.trim().is_empty())
        .await
        .unwrap();
    let kind = b.attr("#write-outcome", "data-outcome").await.unwrap();
    (kind.unwrap_or_default(), outcome)
}

/// A tag the device cannot read is marked bad, with the device's reason;
/// a tag whose last reading is older than its stale time is marked stale
/// until a live reading comes, and again when none follows.
async fn bad_and_stale_values_are_marked(b: &Browser, base: &str, c: &TestCluster) {
    let missing = row("faults/missing");
    wait_class(b, &missing, "bad", true).await;
    let quality = format!("{missing} td.tag-quality");
    assert_eq!(b.text(&quality).await.unwrap().as_deref(), Some("bad"));
    let reason = b.attr(&quality, "title").await.unwrap().unwrap_or_default();
    assert!(
        reason.contains("device_exception:2"),
        "the reason: {reason:?}"
    );
    assert!(!has_class(b, &row("faults/readonly"), "bad").await);

    b.goto(&format!("{base}/#/tags?folder=hist/"))
        .await
        .unwrap();
    let t1 = row("hist/t1");
    // Its last reading is 30 s old; a tag of a 1 s device is stale after 3 s.
    wait_class(b, &t1, "stale", true).await;
    b.screenshot("stale-and-bad").await.unwrap();
    // Two seconds ahead, so that it is still fresh when painted on a busy
    // machine; it goes stale three seconds after that.
    let ts = bifrost_model::now_us() + 2_000_000;
    let fresh = reading("hist/t1-live", "hist/t1", ts, 4.25);
    c.client().ingest(vec![fresh]).await.unwrap();
    b.wait_text(&format!("{t1} td.tag-value"), WAIT, |t| t.trim() == "4.25")
        .await
        .unwrap();
    assert!(
        !has_class(b, &t1, "stale").await,
        "a live reading of now is not stale"
    );
    wait_class(b, &t1, "stale", true).await;
}

async fn write_a_setpoint(b: &Browser) {
    let setpoint = row("plant/sim00000/setpoint");
    open_write_dialog(b, "plant/sim00000/setpoint").await;
    b.fill("#write-value", "not a number").await.unwrap();
    b.click("#write-confirm").await.unwrap();
    b.wait_text("#write-error", WAIT, |t| !t.trim().is_empty())
        .await
        .unwrap();
    let (kind, outcome) = write_and_confirm(b, "plant/sim00000/setpoint", "1234").await;
    assert_eq!(kind, "ok", "{outcome}");
    assert!(outcome.starts_with("ok"), "the write succeeded: {outcome}");
    b.screenshot("write").await.unwrap();
    b.click("#write-cancel").await.unwrap();
    b.wait_text(&format!("{setpoint} td.tag-value"), WAIT, |t| {
        t.trim() == "1234"
    })
    .await
    .unwrap();
}

/// A route's error answer: its code and message.
fn error_of(answer: &(u16, serde_json::Value)) -> (u16, String, String) {
    let e = &answer.1["error"];
    let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    (answer.0, text("code"), text("message"))
}

/// The header that lets the page's own POSTs through: the session's CSRF
/// value.
async fn csrf_header(b: &Browser) -> serde_json::Value {
    let session = b
        .fetch("GET", "/api/session", None, json!({}))
        .await
        .unwrap();
    assert_eq!(session.0, 200, "{:?}", session.1);
    json!({ "X-Bifrost-Csrf": session.1["csrf"].as_str().unwrap() })
}

async fn the_api_refuses_forged_and_bad_requests(b: &Browser) {
    let with_csrf = csrf_header(b).await;
    let write = r#"{"tag": "plant/sim00000/setpoint", "value": 7}"#;

    // The cookie alone does not make a POST.
    let forged = b
        .fetch("POST", "/api/write", Some(write), json!({}))
        .await
        .unwrap();
    let (status, code, message) = error_of(&forged);
    assert_eq!((status, code.as_str()), (403, "csrf"), "{message}");
    assert!(message.contains("X-Bifrost-Csrf"), "{message}");
    let wrong = json!({ "X-Bifrost-Csrf": "0".repeat(32) });
    let forged = b
        .fetch("POST", "/api/write", Some(write), wrong)
        .await
        .unwrap();
    assert_eq!(error_of(&forged).1, "csrf");

    // Bad input: a 400 saying what is wrong and where.
    let cases: [(&str, &str, Option<&str>, &str); 6] = [
        (
            "POST",
            "/api/query",
            Some(r#"{"sql": 5}"#),
            "expected a string",
        ),
        (
            "POST",
            "/api/query",
            Some(r#"{"sqll": "SELECT 1"}"#),
            "unknown field `sqll`",
        ),
        ("POST", "/api/query", Some("{not json"), "line 1 column"),
        (
            "GET",
            "/api/tree?prefix=plant",
            None,
            "must be empty (the root) or end with '/'",
        ),
        ("GET", "/api/tree?limit=0", None, "limit 0 is out of range"),
        (
            "POST",
            "/api/write",
            Some(r#"{"tag": "plant/sim00000/setpoint", "value": [1]}"#),
            "value for 'plant/sim00000/setpoint'",
        ),
    ];
    for (method, path, body, says) in cases {
        let answer = b
            .fetch(method, path, body, with_csrf.clone())
            .await
            .unwrap();
        let (status, code, message) = error_of(&answer);
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_argument"),
            "{method} {path}: {message}"
        );
        assert!(
            message.contains(says),
            "{method} {path}: {message:?} should say {says:?}"
        );
    }
    let glob = b
        .fetch("GET", "/api/search?glob=plant/[", None, json!({}))
        .await
        .unwrap();
    assert_eq!(error_of(&glob).0, 400, "{:?}", glob.1);
    // Current values answer as GetCurrent does: an unknown tag is named.
    let unknown = r#"{"tags": ["plant/sim00000/setpoint", "plant/nowhere"]}"#;
    let current = b
        .fetch("POST", "/api/current", Some(unknown), with_csrf.clone())
        .await
        .unwrap();
    let (status, code, message) = error_of(&current);
    assert_eq!((status, code.as_str()), (404, "not_found"), "{message}");
    assert!(message.contains("'plant/nowhere'"), "{message}");

    // An operator may not read the audit records.
    let audit = b.fetch("GET", "/api/audit", None, json!({})).await.unwrap();
    assert_eq!(
        (error_of(&audit).0, error_of(&audit).1.as_str()),
        (403, "permission_denied"),
        "{:?}",
        audit.1
    );

    // An operator may write, not configure: the node says so.
    let enable = r#"{"device": "sim00001", "enabled": false}"#;
    let denied = b
        .fetch("POST", "/api/devices/enable", Some(enable), with_csrf)
        .await
        .unwrap();
    let (status, code, message) = error_of(&denied);
    assert_eq!(
        (status, code.as_str()),
        (403, "permission_denied"),
        "{message}"
    );
    assert!(message.contains("operator"), "{message}");
}

async fn trend_two_tags(b: &Browser, base: &str) {
    b.goto(&format!(
        "{base}/#/trend?tags=plant/sim00000/sine0,plant/sim00000/counter&range=15m"
    ))
    .await
    .unwrap();
    let (loaded, _) = wait_points(b).await;
    let status = b.text("#trend-status").await.unwrap().unwrap_or_default();
    assert!(
        status.starts_with("raw") || status.starts_with("buckets"),
        "{status}"
    );
    // The live tail: readings from the subscription are appended and drawn.
    bifrost_testkit::Wait::new("live readings appended to the trend", WAIT)
        .until_async(|| async {
            let number = |name: &'static str| async move {
                let v = b.attr("#trend-chart", name).await.unwrap();
                v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            };
            number("data-live").await > 0 && number("data-points").await > loaded
        })
        .await
        .unwrap();
    b.screenshot("trend").await.unwrap();
    trend_csv(b, status.starts_with("buckets")).await;
}

/// Downloads the trend as CSV: a time column and one per tag (min, avg
/// and max when bucketed), and the counter's (average) never goes down.
async fn trend_csv(b: &Browser, bucketed: bool) {
    b.click("#trend-csv").await.unwrap();
    let (name, text) = b.wait_download("bifrost-trend-", WAIT).await.unwrap();
    let mut lines = text.lines();
    let tags = ["plant/sim00000/sine0", "plant/sim00000/counter"];
    let mut header = vec!["time".to_string()];
    for t in tags {
        match bucketed {
            true => header.extend(["min", "avg", "max"].map(|k| format!("{t} {k}"))),
            false => header.push(t.to_string()),
        }
    }
    assert_eq!(lines.next(), Some(header.join(",").as_str()), "{name}");
    let counter_column = if bucketed { 5 } else { 2 };
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let counters: Vec<f64> = rows
        .iter()
        .inspect(|r| {
            assert_eq!(r.len(), header.len(), "{name}: {r:?}");
            chrono::DateTime::parse_from_rfc3339(r[0])
                .unwrap_or_else(|e| panic!("{name}: time {:?}: {e}", r[0]));
        })
        .filter_map(|r| r[counter_column].parse().ok())
        .collect();
    assert!(counters.len() >= 2, "{name}: {} rows\n{text}", rows.len());
    assert!(
        counters.windows(2).all(|w| w[0] <= w[1]),
        "{name}: the counter never goes down: {counters:?}"
    );
    println!("web UI, trend CSV {name}: {} rows", rows.len());
}

/// Drags across a fifth of the day's chart (dygraphs zooms), then loads
/// the zoomed range: a custom range, drawn again in finer buckets than the
/// day's `day_bucket_s`.
async fn zoom_into_the_day(b: &Browser, day_bucket_s: u64) {
    b.drag("#trend-chart", 0.4, 0.6).await.unwrap();
    bifrost_testkit::Wait::new("#trend-zoom-load shown after a drag", WAIT)
        .until_async(|| async {
            b.attr("#trend-zoom-load", "hidden")
                .await
                .unwrap()
                .is_none()
        })
        .await
        .unwrap();
    // Set again by the next load only.
    b.script(
        "document.querySelector('#trend-chart').removeAttribute('data-loaded-ms'); return 0;",
        vec![],
    )
    .await
    .unwrap();
    b.click("#trend-zoom-load").await.unwrap();
    bifrost_testkit::Wait::new("the zoomed range loaded as a custom one", WAIT)
        .until_async(|| async {
            b.script("return location.hash;", vec![])
                .await
                .unwrap()
                .as_str()
                .is_some_and(|h| h.contains("range=custom&from="))
        })
        .await
        .unwrap();
    let range = b
        .script(
            "return document.querySelector('#trend-range').value;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(range, "custom");
    bifrost_testkit::Wait::new("the zoomed range drawn", WAIT)
        .until_async(|| async {
            b.attr("#trend-chart", "data-loaded-ms")
                .await
                .unwrap()
                .is_some()
        })
        .await
        .unwrap();
    let (points, _) = wait_points(b).await;
    let status = b.text("#trend-status").await.unwrap().unwrap_or_default();
    let finer = match status.strip_prefix("buckets of ") {
        Some(rest) => bucket_seconds(rest) < day_bucket_s,
        None => status.starts_with("raw"),
    };
    assert!(
        finer,
        "the zoomed range in finer detail than {day_bucket_s}s: {status}"
    );
    b.screenshot("trend-zoomed").await.unwrap();
    println!("web UI, a fifth of the day zoomed and loaded: {points} points ({status})");
}

/// The bucket width of a `#trend-status` text after "buckets of ".
fn bucket_seconds(text: &str) -> u64 {
    text.split('s')
        .next()
        .and_then(|n| n.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no bucket width in {text:?}")) as u64
}

/// Waits until the trend chart has drawn points; how many, and the load time.
async fn wait_points(b: &Browser) -> (u64, f64) {
    let points = bifrost_testkit::Wait::new("points drawn in #trend-chart", WAIT)
        .until_async(|| async {
            let p = b.attr("#trend-chart", "data-points").await.unwrap();
            match p.as_deref().and_then(|p| p.parse::<u64>().ok()) {
                Some(n) if n > 0 => bifrost_testkit::Step::Done(n),
                _ => bifrost_testkit::Step::Pending(p),
            }
        })
        .await
        .unwrap();
    let ms = b.attr("#trend-chart", "data-loaded-ms").await.unwrap();
    (points, ms.and_then(|m| m.parse().ok()).unwrap_or(f64::NAN))
}

async fn query_console(b: &Browser, base: &str) {
    b.goto(&format!("{base}/#/query")).await.unwrap();
    b.wait_for("#query-sql", WAIT).await.unwrap();
    b.fill("#query-sql", "SELECT tag,\n  valu FROM readings")
        .await
        .unwrap();
    b.click("#query-run").await.unwrap();
    let error = b
        .wait_text("#query-error", WAIT, |t| !t.trim().is_empty())
        .await
        .unwrap();
    assert!(error.contains("valu"), "{error}");
    assert_eq!(
        b.attr("#query-error", "data-line")
            .await
            .unwrap()
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        b.attr("#query-error", "data-column")
            .await
            .unwrap()
            .as_deref(),
        Some("3")
    );
    b.screenshot("query-error").await.unwrap();
    let sql = "SELECT time_bucket(INTERVAL '10 seconds', ts) AS t, avg(value), max(value) \
               FROM readings WHERE tag = 'plant/sim00000/sine0' \
               AND ts > now() - INTERVAL '10 minutes' GROUP BY t";
    b.fill("#query-sql", sql).await.unwrap();
    b.click("#query-run").await.unwrap();
    bifrost_testkit::Wait::new("rows in #query-table", WAIT)
        .until_async(|| async { b.count("#query-table tbody tr").await.unwrap() > 0 })
        .await
        .unwrap();
    assert_eq!(
        b.attr("#query-chart", "hidden").await.unwrap(),
        None,
        "a time-bucketed result is charted"
    );
    assert!(b.count("#query-chart canvas").await.unwrap() > 0);
    assert_eq!(
        b.text("#query-error")
            .await
            .unwrap()
            .unwrap_or_default()
            .trim(),
        ""
    );
    b.screenshot("query").await.unwrap();
}

async fn devices_and_cluster(b: &Browser, base: &str) {
    b.goto(&format!("{base}/#/devices")).await.unwrap();
    b.wait_for("tr.device-row[data-device=\"sim00000\"]", WAIT)
        .await
        .unwrap();
    // The simulated devices, `mute`, and `hist` and `big` (not polled).
    assert_eq!(
        b.count("tr.device-row").await.unwrap(),
        DEVICES as usize + 3
    );
    let sim = "tr.device-row[data-device=\"sim00001\"]";
    let cells = bifrost_testkit::Wait::new("sim00001 polled and owned", WAIT)
        .until_async(|| async {
            let cells = row_cells(b, sim).await;
            match cells.get(3).map(String::as_str) {
                Some("ok") => bifrost_testkit::Step::Done(cells),
                _ => bifrost_testkit::Step::Pending(Some(format!("{cells:?}"))),
            }
        })
        .await
        .unwrap();
    // Device, protocol, endpoint, status, owner, poll every, last poll,
    // failed polls, error, breaker, tags.
    let owner: u64 = cells[4].parse().unwrap_or(0);
    assert!((1..=3).contains(&owner), "{cells:?}");
    assert!(cells[6].contains("ago"), "last poll: {cells:?}");
    assert_eq!(cells[9], "closed", "{cells:?}");
    assert_eq!(cells[10], "10", "{cells:?}");
    assert_eq!(
        b.count("button.device-toggle").await.unwrap(),
        0,
        "an operator configures nothing"
    );
    b.screenshot("devices").await.unwrap();
    b.goto(&format!("{base}/#/cluster")).await.unwrap();
    bifrost_testkit::Wait::new("three members, one the leader", WAIT)
        .until_async(|| async {
            b.count("tr.member-row").await.unwrap() == 3
                && b.count("tr.member-row.leader").await.unwrap() == 1
        })
        .await
        .unwrap();
    // Node, address, role, reachable, term, applied index, last log index,
    // devices, outbox, error: every member reachable, in one term, and the
    // simulated devices shared among them.
    let mut polled = 0;
    let mut terms = std::collections::BTreeSet::new();
    for id in 1..=3 {
        let cells = row_cells(b, &format!("tr.member-row[data-node=\"{id}\"]")).await;
        assert_eq!(cells[3], "yes", "{cells:?}");
        terms.insert(cells[4].clone());
        let applied: u64 = cells[5].replace(',', "").parse().unwrap_or(0);
        assert!(applied > 0, "{cells:?}");
        polled += cells[7].replace(',', "").parse::<u32>().unwrap_or(0);
        assert!(
            cells[8].replace(',', "").parse::<u64>().is_ok(),
            "{cells:?}"
        );
    }
    assert_eq!(terms.len(), 1, "one term: {terms:?}");
    assert_eq!(
        polled,
        DEVICES + 1,
        "every enabled device polled by one node"
    );
    b.screenshot("cluster").await.unwrap();
}

/// The texts of a table row's cells.
async fn row_cells(b: &Browser, css: &str) -> Vec<String> {
    let v = b
        .script(
            "const r = document.querySelector(arguments[0]); \
             return r ? [...r.cells].map(c => c.textContent) : [];",
            vec![css.into()],
        )
        .await
        .unwrap();
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect()
}

/// A folder of 100,000 tags: the tree shows its count and loads its
/// children 500 at a time, the table 2,000 rows a page.
async fn a_folder_of_a_hundred_thousand_tags(b: &Browser, base: &str) {
    b.goto(&format!("{base}/#/tags")).await.unwrap();
    let folder = ".tree-folder[data-path=\"big/\"]";
    b.wait_text(&format!("{folder} .count"), WAIT, |t| t == "100,000")
        .await
        .unwrap();
    let tree_tags = ".tree-tag[data-tag^=\"big/\"]";
    let started = std::time::Instant::now();
    b.click(&format!("{folder} .twisty")).await.unwrap();
    wait_count(b, tree_tags, 500).await;
    let first_page = started.elapsed();
    assert_eq!(b.count(".tree-more").await.unwrap(), 1);
    b.click(".tree-more").await.unwrap();
    wait_count(b, tree_tags, 1_000).await;
    let last = b.script(
        "const t = document.querySelectorAll(arguments[0]); return t[t.length - 1].dataset.tag;",
        vec![tree_tags.into()],
    );
    assert_eq!(last.await.unwrap(), "big/t000999");

    let started = std::time::Instant::now();
    b.click(&format!("{folder} .name")).await.unwrap();
    wait_count(b, "#tag-table tr.tag-row", 2_000).await;
    let table = started.elapsed();
    let first = b.attr("#tag-table tr.tag-row", "data-tag").await.unwrap();
    assert_eq!(first.as_deref(), Some("big/t000000"));
    b.click("#tag-more").await.unwrap();
    b.wait_text("#tag-table tr.tag-row td.tag-name", WAIT, |t| {
        t == "big/t002000"
    })
    .await
    .unwrap();
    assert_eq!(b.count("#tag-table tr.tag-row").await.unwrap(), 2_000);
    assert_eq!(
        b.count(tree_tags).await.unwrap(),
        1_000,
        "the tree loaded no more"
    );
    b.fill("#tag-search", "big/t09999*").await.unwrap();
    b.click("#tag-search-go").await.unwrap();
    wait_count(b, "#tag-table tr.tag-row", 10).await;
    let last = b
        .attr("#tag-table tr.tag-row:last-child", "data-tag")
        .await
        .unwrap();
    assert_eq!(last.as_deref(), Some("big/t099999"));
    b.screenshot("tags-100k").await.unwrap();
    println!(
        "web UI, a folder of 100,000 tags: first 500 in the tree in {} ms, first 2,000 in the \
         table in {} ms",
        first_page.as_millis(),
        table.as_millis()
    );
}

/// Waits until exactly `n` elements match `css`.
async fn wait_count(b: &Browser, css: &str, n: usize) {
    bifrost_testkit::Wait::new(format!("{n} of {css}"), WAIT)
        .until_async(|| async {
            match b.count(css).await.unwrap() {
                k if k == n => bifrost_testkit::Step::Done(()),
                k => bifrost_testkit::Step::Pending(Some(format!("{k}"))),
            }
        })
        .await
        .unwrap();
}

async fn a_thousand_live_tags(b: &Browser, base: &str) {
    b.goto(&format!("{base}/#/tags?glob=plant/**"))
        .await
        .unwrap();
    wait_count(b, "#tag-table tr.tag-row", 1_000).await;
    b.script(
        "window.bifrostPerf.updates = 0; window.bifrostPerf.lagMs.length = 0; \
              window.bifrostPerf.frameMs.length = 0; return 0;",
        vec![],
    )
    .await
    .unwrap();
    // Every tag is polled each second: ten seconds is about 10,000 updates.
    bifrost_testkit::Wait::new("5,000 live updates painted", Duration::from_secs(60))
        .every(Duration::from_secs(1))
        .until_async(|| async {
            let n = b
                .script("return window.bifrostPerf.updates;", vec![])
                .await
                .unwrap();
            n.as_u64().unwrap_or(0) >= 5_000
        })
        .await
        .unwrap();
    let perf = b
        .script("return window.bifrostPerf;", vec![])
        .await
        .unwrap();
    let series = |k: &str| -> Vec<f64> {
        perf[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_f64())
            .collect()
    };
    let (lag, frames) = (series("lagMs"), series("frameMs"));
    assert!(
        !lag.is_empty() && !frames.is_empty(),
        "perf recorded: {perf}"
    );
    let (lag_med, lag_p99) = median_p99(lag);
    let (frame_med, frame_p99) = median_p99(frames);
    println!(
        "web UI, 1,000 live tags: {} updates painted; socket-to-paint lag median {lag_med:.1} ms, \
         p99 {lag_p99:.1} ms; frame time median {frame_med:.1} ms, p99 {frame_p99:.1} ms",
        perf["updates"]
    );
}

async fn a_day_of_ten_tags(b: &Browser, base: &str) {
    let tags: Vec<String> = (0..10).map(|t| format!("hist/t{t}")).collect();
    b.goto(&format!("{base}/#/trend?tags={}&range=1d", tags.join(",")))
        .await
        .unwrap();
    let (points, ms) = wait_points(b).await;
    let width = b
        .script(
            "return document.querySelector('#trend-chart').clientWidth;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap();
    assert!(
        points <= width,
        "{points} points in a chart {width} px wide"
    );
    let status = b.text("#trend-status").await.unwrap().unwrap_or_default();
    assert!(
        status.starts_with("buckets"),
        "a day of 28,800 readings is bucketed: {status}"
    );
    b.screenshot("trend-day").await.unwrap();
    println!("web UI, one-day trend of 10 tags (28,800 readings): {points} points drawn in {ms:.0} ms ({status})");
    zoom_into_the_day(b, bucket_seconds(&status["buckets of ".len()..])).await;
}

async fn a_viewer_and_an_admin(b: &Browser, base: &str) {
    logout(b).await;
    b.goto(&format!("{base}/")).await.unwrap();
    b.wait_for("#login-form", WAIT).await.unwrap();
    // This PC's clock ten minutes fast, as the page sees it from now on.
    b.script(
        "const real = Date.now.bind(Date); Date.now = () => real() + 600000; return 0;",
        vec![],
    )
    .await
    .unwrap();
    submit_login(b, "viewer", PASSWORD).await;
    b.wait_text("#whoami", WAIT, |t| t.contains("viewer"))
        .await
        .unwrap();
    let warning = b
        .wait_text("#clock-warning", WAIT, |t| !t.is_empty())
        .await
        .unwrap();
    assert!(warning.contains("10 min ahead of the node's"), "{warning}");
    b.goto(&format!("{base}/#/tags?folder=plant/sim00000/"))
        .await
        .unwrap();
    // Values polled a second ago are fresh by the node's clock, though
    // ten minutes old by this PC's.
    bifrost_testkit::Wait::new("ten rows, none stale", WAIT)
        .until_async(|| async {
            b.count("tr.tag-row").await.unwrap() == 10
                && b.count("tr.tag-row.stale").await.unwrap() == 0
                && b.count("tr.tag-row td.tag-ts:empty").await.unwrap() == 0
        })
        .await
        .unwrap();
    b.wait_text(
        &format!("{} td.tag-value", row("plant/sim00000/setpoint")),
        WAIT,
        |t| !t.trim().is_empty(),
    )
    .await
    .unwrap();
    assert_eq!(
        b.count("button.write-btn").await.unwrap(),
        0,
        "a viewer sees no write button"
    );
    assert_eq!(b.count("#nav-audit").await.unwrap(), 0);
    b.screenshot("viewer").await.unwrap();
    let write = r#"{"tag": "plant/sim00000/setpoint", "value": 5}"#;
    let refused = b
        .fetch("POST", "/api/write", Some(write), csrf_header(b).await)
        .await
        .unwrap();
    let (status, code, message) = error_of(&refused);
    assert_eq!(
        (status, code.as_str()),
        (403, "permission_denied"),
        "{message}"
    );
    logout(b).await;
    a_viewer_of_one_device_sees_only_its_tags(b, base).await;
    logout(b).await;
    login(b, base, "admin2", PASSWORD).await;
    b.wait_text("#whoami", WAIT, |t| t.contains("admin2"))
        .await
        .unwrap();
    b.wait_for("#nav-audit", WAIT).await.unwrap();
    b.goto(&format!("{base}/#/audit")).await.unwrap();
    bifrost_testkit::Wait::new("the operator's write in the audit view", WAIT)
        .until_async(|| async {
            b.script(
                "return [...document.querySelectorAll('tr.audit-row')].some(r => \
                 r.textContent.includes('operator') && r.textContent.includes('plant/sim00000/setpoint'));",
                vec![],
            )
            .await
            .unwrap()
                == serde_json::Value::Bool(true)
        })
        .await
        .unwrap();
    b.screenshot("audit").await.unwrap();
    disable_and_enable_a_device(b, base).await;
}

/// A viewer granted `plant/sim00001/**` only: the tree, a search of
/// everything and current values show nothing else.
async fn a_viewer_of_one_device_sees_only_its_tags(b: &Browser, base: &str) {
    login(b, base, "scoped", PASSWORD).await;
    b.wait_text("#whoami", WAIT, |t| t.contains("scoped"))
        .await
        .unwrap();
    b.goto(&format!("{base}/#/tags?glob=**")).await.unwrap();
    wait_count(b, "#tag-table tr.tag-row", 10).await;
    let outside = b
        .script(
            "return [...document.querySelectorAll('#tag-table tr.tag-row')] \
             .map(r => r.dataset.tag).filter(t => !t.startsWith('plant/sim00001/'));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(outside, json!([]), "tags outside the grant shown");
    b.wait_for(".tree-folder[data-path=\"plant/\"] .count", WAIT)
        .await
        .unwrap();
    let folders = b
        .script(
            "return [...document.querySelectorAll('#tag-tree > ul > li > .tree-folder')] \
             .map(f => f.dataset.path + ' ' + f.querySelector('.count').textContent);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(folders, json!(["plant/ 10"]), "the root of the tree");
    let other = r#"{"tags": ["plant/sim00000/counter"]}"#;
    let answer = b
        .fetch("POST", "/api/current", Some(other), csrf_header(b).await)
        .await
        .unwrap();
    let (status, _, message) = error_of(&answer);
    assert!(
        [403, 404].contains(&status) && message.contains("plant/sim00000/counter"),
        "a tag outside the grant: {status} {message}"
    );
    b.screenshot("viewer-scoped").await.unwrap();
}

/// An admin (so an engineer) turns a device's polling off, confirming,
/// and on again; the cluster's config says so each time.
async fn disable_and_enable_a_device(b: &Browser, base: &str) {
    b.goto(&format!("{base}/#/devices")).await.unwrap();
    let row = "tr.device-row[data-device=\"sim00099\"]";
    for (click, enabled) in [("Disable", false), ("Enable", true)] {
        let button = format!("{row} button.device-toggle");
        b.wait_text(&button, WAIT, |t| t == click).await.unwrap();
        b.click(&button).await.unwrap();
        let question = b
            .wait_text("#confirm-text", WAIT, |t| t.contains("sim00099"))
            .await
            .unwrap();
        assert!(question.starts_with(click), "{question}");
        b.click("#confirm-yes").await.unwrap();
        bifrost_testkit::Wait::new(format!("the row of sim00099 enabled={enabled}"), WAIT)
            .until_async(|| async {
                let disabled = b
                    .script(
                        "return document.querySelector(arguments[0]).classList.contains('disabled');",
                        vec![row.into()],
                    )
                    .await
                    .unwrap();
                disabled == serde_json::Value::Bool(!enabled)
            })
            .await
            .unwrap();
    }
    let (status, answer) = b
        .fetch("GET", "/api/devices", None, serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let d = answer["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "sim00099")
        .unwrap()
        .clone();
    assert_eq!(d["enabled"], true, "{d}");
}
