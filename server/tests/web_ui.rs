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
//! - the JSON routes, called from the page, refuse a POST without the
//!   session's CSRF value and say what is wrong with bad input;
//! - opens a trend and sees points drawn;
//! - runs a bad query and sees the error at its line and column, then a
//!   bucketed one as a table and a chart;
//! - sees the devices and the cluster's members;
//! - has 1,000 live tags on screen: the update lag and frame times are
//!   printed, and every tag must have been painted live;
//! - opens a one-day trend of ten tags: its load time is printed;
//! - a viewer sees no write button and no audit page; an admin sees the
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

/// The cluster, the plant imported, and users `operator`, `viewer` and
/// `admin2` (an admin who logs in with a password).
async fn plant() -> TestCluster {
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
    admin.import(devices, tags).await.unwrap();
    for (name, role) in [
        ("operator", Role::Operator),
        ("viewer", Role::Viewer),
        ("admin2", Role::Admin),
    ] {
        let grant = Grant::new(role, vec![]).unwrap();
        admin.add_user(name, PASSWORD, vec![grant]).await.unwrap();
    }
    ingest_a_day(&c).await;
    c
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
    let c = plant().await;
    let shots = screenshots_dir();
    let b = Browser::start(&c.dir(), &shots).await.unwrap();
    let base = format!("https://{}", c.node(1).http);

    log_in_as_operator(&b, &base).await;
    browse_to_a_live_tag(&b).await;
    write_a_setpoint(&b).await;
    the_api_refuses_forged_and_bad_requests(&b).await;
    trend_two_tags(&b, &base).await;
    query_console(&b, &base).await;
    devices_and_cluster(&b, &base).await;
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
    assert_eq!(b.count("#tag-table tr.tag-row").await.unwrap(), 10);
    b.screenshot("tags").await.unwrap();
}

async fn write_a_setpoint(b: &Browser) {
    let setpoint = row("plant/sim00000/setpoint");
    b.click(&format!("{setpoint} button.write-btn"))
        .await
        .unwrap();
    b.wait_for("#write-dialog", WAIT).await.unwrap();
    b.fill("#write-value", "not a number").await.unwrap();
    b.click("#write-confirm").await.unwrap();
    b.wait_text("#write-error", WAIT, |t| !t.trim().is_empty())
        .await
        .unwrap();
    b.fill("#write-value", "1234").await.unwrap();
    b.click("#write-confirm").await.unwrap();
    let question = b
        .wait_text("#write-question", WAIT, |t| t.contains("1234"))
        .await
        .unwrap();
    assert!(question.contains("plant/sim00000/setpoint"), "{question}");
    b.click("#write-really").await.unwrap();
    let outcome = b
        .wait_text("#write-outcome", WAIT, |t| !t.trim().is_empty())
        .await
        .unwrap();
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

async fn the_api_refuses_forged_and_bad_requests(b: &Browser) {
    let session = b
        .fetch("GET", "/api/session", None, json!({}))
        .await
        .unwrap();
    assert_eq!(session.0, 200);
    let csrf = session.1["csrf"].as_str().unwrap().to_string();
    let with_csrf = json!({ "X-Bifrost-Csrf": csrf });
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
    wait_points(b).await;
    let status = b.text("#trend-status").await.unwrap().unwrap_or_default();
    assert!(
        status.starts_with("raw") || status.starts_with("buckets"),
        "{status}"
    );
    b.screenshot("trend").await.unwrap();
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
    assert_eq!(
        b.count("tr.device-row").await.unwrap(),
        DEVICES as usize + 1
    );
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
    b.screenshot("cluster").await.unwrap();
}

async fn a_thousand_live_tags(b: &Browser, base: &str) {
    b.goto(&format!("{base}/#/tags?glob=plant/**"))
        .await
        .unwrap();
    bifrost_testkit::Wait::new("1,000 rows in #tag-table", WAIT)
        .until_async(|| async { b.count("#tag-table tr.tag-row").await.unwrap() == 1_000 })
        .await
        .unwrap();
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
}

async fn a_viewer_and_an_admin(b: &Browser, base: &str) {
    logout(b).await;
    login(b, base, "viewer", PASSWORD).await;
    b.wait_text("#whoami", WAIT, |t| t.contains("viewer"))
        .await
        .unwrap();
    b.goto(&format!("{base}/#/tags?folder=plant/sim00000/"))
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
