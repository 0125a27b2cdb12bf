//! Users, roles and sessions on a real TLS cluster (issue 12, part 4):
//! - every role against every kind of call, on the leader and on a
//!   follower (whose writes are forwarded: the caller's grants decide,
//!   not the forwarding node's);
//! - a user restricted to `line1/**` sees no other tag in listings,
//!   queries, history or watch;
//! - no credential, a bad token, an ended session, a changed password, a
//!   removed user: `unauthenticated` on every node;
//! - the bootstrap admin's one-time password is printed once, and no
//!   password reaches a node's files;
//! - a Python `grpcio` client over mutual TLS logs in and calls with its
//!   token.

mod common;

use std::time::Duration;

use bifrost_client::proto::{self, WatchRequest};
use bifrost_client::{Client, ClientOptions, Consistency, Grant, Role, Security, WatchEvent};
use common::*;
use tonic::Code;

const PASSWORD: &str = "canary-Pa55word-7f3e";

/// A TLS cluster of 3 with a leader; its clients use user admin's
/// certificate (the bootstrap admin, mapped by certificate).
async fn secured_cluster() -> TestCluster {
    let c = TestCluster(Cluster::start(options(3, &[]).tls()).unwrap());
    c.wait_leader(&[1, 2, 3], Duration::from_secs(60)).await;
    c
}

/// Client options of `c` without a client certificate: only a token can
/// name the user.
fn tokens_only(c: &TestCluster) -> ClientOptions {
    ClientOptions {
        security: Security::tls(c.pki().ca_cert(), None),
        ..opts()
    }
}

/// A client of node `id` only, logged in as `user`.
async fn logged_in(c: &TestCluster, id: u64, user: &str) -> Client {
    let client = Client::connect_with(vec![c.node(id).grpc.clone()], tokens_only(c)).unwrap();
    client.login(user, PASSWORD).await.unwrap();
    client
}

fn grant(role: Role, tags: &[&str]) -> Grant {
    Grant::new(role, tags.iter().map(|t| t.to_string()).collect()).unwrap()
}

/// The code a call failed with, `Ok` when it passed.
fn code<T>(r: bifrost_client::Result<T>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(e) => e.code().unwrap_or(Code::Unknown),
    }
}

/// Whether the caller got past authorization (the call may still fail for
/// other reasons, such as a device that is not polled).
fn authorized(c: Code) -> bool {
    !matches!(c, Code::PermissionDenied | Code::Unauthenticated)
}

/// Devices, tags on two lines, and one user per role: viewer and operator
/// restricted to `line1/**`, engineer and admin everywhere.
async fn plant(c: &TestCluster) {
    let admin = c.client();
    admin.put_device(device("plc"), true).await.unwrap();
    for name in ["line1/temp", "line1/valve", "line2/temp", "line2/valve"] {
        let mut t = tag(name, "plc", "f64");
        t.writable = true;
        admin.put_tag(t, true).await.unwrap();
    }
    let users = [
        ("viewer", grant(Role::Viewer, &["line1/**"])),
        ("operator", grant(Role::Operator, &["line1/**"])),
        ("engineer", grant(Role::Engineer, &[])),
        ("admin2", grant(Role::Admin, &[])),
    ];
    for (name, g) in users {
        admin.add_user(name, PASSWORD, vec![g]).await.unwrap();
    }
}

/// What one user's calls to one node come to, call by call.
async fn outcomes(client: &Client, n: &mut u64) -> Vec<(&'static str, Code)> {
    *n += 1;
    let id = |line: &str| format!("{line}-{n}");
    let now = bifrost_model::now_us();
    let mut out = vec![
        (
            "list devices",
            code(client.list_devices(Consistency::Linearizable).await),
        ),
        (
            "read line1",
            code(
                client
                    .get_current(vec!["line1/temp".into()], Consistency::Linearizable)
                    .await,
            ),
        ),
        (
            "read line2",
            code(
                client
                    .get_current(vec!["line2/temp".into()], Consistency::Linearizable)
                    .await,
            ),
        ),
        (
            "ingest line1",
            code(
                client
                    .ingest(vec![reading(&id("a"), "line1/temp", now, 1.0)])
                    .await,
            ),
        ),
        (
            "ingest line2",
            code(
                client
                    .ingest(vec![reading(&id("b"), "line2/temp", now, 1.0)])
                    .await,
            ),
        ),
        (
            "configure line1",
            code(
                client
                    .put_tag(tag(&format!("line1/new{n}"), "plc", "f64"), true)
                    .await,
            ),
        ),
        (
            "configure device",
            code(client.put_device(device(&format!("dev{n}")), true).await),
        ),
        ("retention", code(client.set_retention(0).await)),
        (
            "discover opcua",
            code(client.discover(discovery("opcua")).await),
        ),
        (
            "discover modbus",
            code(client.discover(discovery("modbus-tcp")).await),
        ),
        (
            "add user",
            code(client.add_user(&format!("u{n}"), PASSWORD, vec![]).await),
        ),
        (
            "query",
            code(
                client
                    .query("SELECT name FROM tags", Consistency::Linearizable)
                    .await,
            ),
        ),
        ("status", code(client.status().await)),
        (
            "history line1",
            code(client.history(history("line1/temp")).await),
        ),
        (
            "history line2",
            code(client.history(history("line2/temp")).await),
        ),
        ("watch line2", code(watch_first(client, "line2/temp").await)),
        (
            "delete tag line2",
            code(client.delete_tag(&format!("line2/none{n}"), false).await),
        ),
        (
            "delete device",
            code(client.delete_device(&format!("none{n}")).await),
        ),
        ("import", code(client.import(vec![], vec![]).await)),
        (
            "browse",
            code(client.browse(&closed_opcua_endpoint(), None, None).await),
        ),
        (
            "list users",
            code(client.list_users(Consistency::Linearizable).await),
        ),
        (
            "delete user",
            code(client.delete_user(&format!("nobody{n}")).await),
        ),
        (
            "change grants",
            code(
                client
                    .change_grants(&format!("nobody{n}"), vec![], vec![])
                    .await,
            ),
        ),
        (
            "end sessions",
            code(client.end_sessions(&format!("nobody{n}")).await),
        ),
        ("audit retention", code(client.set_audit_retention(0).await)),
        ("backup", code(first_backup_chunk(client).await)),
    ];
    let value = proto::Value {
        kind: Some(proto::value::Kind::FloatValue(1.0)),
    };
    let line1 = client.write_tag("line1/valve", value.clone()).await;
    let line2 = client.write_tag("line2/valve", value).await;
    out.push((
        "write line1",
        if authorized(code(line1)) {
            Code::Ok
        } else {
            Code::PermissionDenied
        },
    ));
    out.push((
        "write line2",
        if authorized(code(line2)) {
            Code::Ok
        } else {
            Code::PermissionDenied
        },
    ));
    out
}

fn history(tag: &str) -> bifrost_client::HistoryQuery {
    bifrost_client::HistoryQuery {
        tag: tag.into(),
        consistency: Consistency::Linearizable,
        ..Default::default()
    }
}

/// The first event of a subscription to `tag`.
async fn watch_first(client: &Client, tag: &str) -> bifrost_client::Result<WatchEvent> {
    let mut watcher = client.watcher(WatchRequest {
        tags: vec![tag.into()],
        ..Default::default()
    });
    watcher.next().await
}

/// The first message of a backup (the rest is dropped, which stops it).
async fn first_backup_chunk(client: &Client) -> bifrost_client::Result<proto::BackupChunk> {
    let mut stream = client.backup().await?;
    futures::StreamExt::next(&mut stream)
        .await
        .expect("a backup stream with no message")
}

/// An OPC UA endpoint on a closed loopback port: browsing it fails after
/// the permission check.
fn closed_opcua_endpoint() -> String {
    format!("opc.tcp://127.0.0.1:{}", bifrost_testkit::free_port())
}

/// A discovery of a closed loopback port (it finds nothing, quickly).
fn discovery(protocol: &str) -> proto::DiscoverRequest {
    proto::DiscoverRequest {
        protocol: protocol.into(),
        targets: vec![format!("127.0.0.1:{}", bifrost_testkit::free_port())],
        timeout_ms: 200,
        ..Default::default()
    }
}

/// Which calls each role may make (viewer and operator of `line1/**`).
fn expected(user: &str, call: &str) -> bool {
    let read = matches!(
        call,
        "list devices" | "read line1" | "query" | "status" | "history line1"
    );
    // A Modbus probe is for admins only.
    let administer = matches!(
        call,
        "retention"
            | "add user"
            | "discover modbus"
            | "list users"
            | "delete user"
            | "change grants"
            | "end sessions"
            | "audit retention"
            | "backup"
    );
    match user {
        "viewer" => read,
        "operator" => read || matches!(call, "ingest line1" | "write line1"),
        "engineer" => !administer,
        "admin2" => true,
        other => panic!("no expectations for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_what_it_grants_on_the_leader_and_on_a_follower() {
    let c = secured_cluster().await;
    plant(&c).await;
    let leader = c.wait_leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut n = 0;
    let mut wrong = Vec::new();
    for user in ["viewer", "operator", "engineer", "admin2"] {
        for node in [leader, follower] {
            let client = logged_in(&c, node, user).await;
            for (call, got) in outcomes(&client, &mut n).await {
                let allowed = expected(user, call);
                let denied = got == Code::PermissionDenied;
                if allowed == denied || got == Code::Unauthenticated {
                    wrong.push(format!("{user} on node {node}: {call} gave {got:?}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "wrong outcomes:\n{}", wrong.join("\n"));
}

/// The rows `client` gets for `sql`.
async fn query_rows(client: &Client, sql: &str) -> Vec<proto::Row> {
    let rows = client.query(sql, Consistency::Linearizable).await.unwrap();
    rows.collect().await.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_viewer_sees_only_its_tags_in_listings_queries_history_and_watch() {
    let c = secured_cluster().await;
    plant(&c).await;
    let viewer = logged_in(&c, 2, "viewer").await;
    let names: Vec<String> = viewer
        .list_tags(None, Consistency::Linearizable)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["line1/temp", "line1/valve"]);

    let mut watcher = viewer.watcher(WatchRequest::default());
    let started = watcher.next().await.unwrap();
    assert!(matches!(started, WatchEvent::Started { .. }), "{started:?}");
    let now = bifrost_model::now_us();
    c.client()
        .ingest(vec![
            reading("w2", "line2/temp", now, 2.0),
            reading("w1", "line1/temp", now, 1.0),
        ])
        .await
        .unwrap();
    let seen = loop {
        match watcher.next().await.unwrap() {
            WatchEvent::Readings { readings, .. } => break readings,
            _ => continue,
        }
    };
    let tags: Vec<&str> = seen.iter().map(|r| r.tag.as_str()).collect();
    assert_eq!(tags, ["line1/temp"], "the viewer's watch showed {tags:?}");

    let rows = query_rows(&viewer, "SELECT tag, value FROM readings").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let listed = query_rows(&viewer, "SELECT name FROM tags").await;
    assert_eq!(listed.len(), 2, "{listed:?}");

    let history = viewer
        .history_all(bifrost_client::HistoryQuery {
            tag: "line2/temp".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(history.code(), Some(Code::PermissionDenied), "{history}");
    let named = viewer
        .watcher(WatchRequest {
            tags: vec!["line2/temp".into()],
            ..Default::default()
        })
        .next()
        .await
        .unwrap_err();
    assert_eq!(named.code(), Some(Code::PermissionDenied), "{named}");
    assert!(named.to_string().contains("line2/temp"), "{named}");

    // Ending the viewer's sessions ends the open subscription too.
    assert_eq!(c.client().end_sessions("viewer").await.unwrap(), 1);
    let ended = loop {
        match watcher.next().await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert_eq!(ended.code(), Some(Code::Unauthenticated), "{ended}");
    assert!(ended.to_string().contains("session ended"), "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_on_logout_password_change_and_removal_on_every_node() {
    let c = secured_cluster().await;
    plant(&c).await;
    let anonymous = Client::connect_with(c.endpoints(), tokens_only(&c)).unwrap();
    let e = anonymous
        .list_devices(Consistency::Local)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
    anonymous.set_token(Some("not-a-token".into()));
    let e = anonymous
        .list_devices(Consistency::Local)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("malformed session token"), "{e}");
    let e = anonymous
        .login("viewer", "wrong password!")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");

    // A token made on node 1 works on every node, and stops working on
    // every node once its session ends.
    for why in ["logout", "password change", "removal"] {
        let first = logged_in(&c, 1, "operator").await;
        let token = first.token().unwrap();
        let on = |id: u64| {
            let client =
                Client::connect_with(vec![c.node(id).grpc.clone()], tokens_only(&c)).unwrap();
            client.set_token(Some(token.clone()));
            client
        };
        for id in 1..=3 {
            on(id).list_devices(Consistency::Local).await.unwrap();
        }
        match why {
            "logout" => first.logout().await.unwrap(),
            "password change" => {
                c.client()
                    .set_password("operator", None, PASSWORD)
                    .await
                    .unwrap();
            }
            _ => {
                c.client().delete_user("operator").await.unwrap();
                c.client()
                    .add_user(
                        "operator",
                        PASSWORD,
                        vec![grant(Role::Operator, &["line1/**"])],
                    )
                    .await
                    .unwrap();
            }
        }
        // Within a second of the acknowledgement, on every node (each
        // answers from its own applied state: Local).
        let acknowledged = std::time::Instant::now();
        let refusals = (1..=3).map(|id| {
            let client = on(id);
            let what = format!("node {id} to refuse the token after {why}");
            async move {
                wait_until_async(what, Duration::from_secs(1), || {
                    let client = client.clone();
                    async move {
                        client
                            .list_devices(Consistency::Local)
                            .await
                            .err()
                            .and_then(|e| e.code())
                            == Some(Code::Unauthenticated)
                    }
                })
                .await;
                acknowledged.elapsed()
            }
        });
        let took = futures::future::join_all(refusals).await;
        eprintln!("{why}: refused on nodes 1-3 after {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_change_at_once_and_the_bootstrap_password_is_printed_once_and_stored_nowhere() {
    let c = secured_cluster().await;
    plant(&c).await;
    let op = logged_in(&c, 3, "operator").await;
    let now = bifrost_model::now_us();
    let line2 = |id: &str| vec![reading(id, "line2/temp", now, 1.0)];
    assert_eq!(code(op.ingest(line2("g1")).await), Code::PermissionDenied);
    c.client()
        .change_grants(
            "operator",
            vec![grant(Role::Operator, &["line2/**"])],
            vec![],
        )
        .await
        .unwrap();
    wait_until_async(
        "the new grant to be honoured",
        Duration::from_secs(5),
        || {
            let op = op.clone();
            let readings = line2("g2");
            async move { op.ingest(readings).await.is_ok() }
        },
    )
    .await;
    let me = op.whoami().await.unwrap();
    assert_eq!(me.via, "token");
    assert_eq!(me.user.unwrap().grants.len(), 2);

    // The bootstrap admin: one log line, on one node, with a password that
    // logs in.
    let announced: Vec<String> = (1..=3)
        .flat_map(|id| c.log_of(id).lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.contains("one-time password is"))
        .collect();
    assert_eq!(announced.len(), 1, "{announced:?}");
    let password = announced[0]
        .split("one-time password is ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let admin = Client::connect_with(c.endpoints(), tokens_only(&c)).unwrap();
    admin.login("admin", &password).await.unwrap();
    assert_eq!(
        admin
            .list_users(Consistency::Linearizable)
            .await
            .unwrap()
            .len(),
        5
    );

    // No node keeps a password in any file: the users' nowhere, the
    // admin's only in the one log line that announced it.
    let leaks = files_containing(&c.dir(), &[PASSWORD.as_bytes()]);
    assert!(leaks.is_empty(), "a user's password found in {leaks:?}");
    let admin_leaks: Vec<_> = files_containing(&c.dir(), &[password.as_bytes()])
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "log"))
        .collect();
    assert!(
        admin_leaks.is_empty(),
        "the admin's password found in {admin_leaks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpcio_client_over_mutual_tls_logs_in_and_calls_with_its_token() {
    let c = secured_cluster().await;
    plant(&c).await;
    let pki = c.pki();
    pki.issue_user("viewer", 1).unwrap();
    let identity = (pki.user_cert("viewer"), pki.user_key("viewer"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/grpc_status.py");
    let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/proto");
    let run = |login: Option<String>, mutual: bool| {
        let mut cmd = std::process::Command::new(bifrost_testkit::python());
        cmd.args([script, proto, &c.node(2).grpc])
            .arg(pki.ca_cert());
        if mutual {
            cmd.arg(&identity.0).arg(&identity.1);
        }
        if let Some(l) = login {
            cmd.env("BIFROST_LOGIN", l);
        }
        let out = cmd
            .output()
            .expect("run grpc_status.py (BIFROST_PYTHON with grpcio)");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        serde_json::from_str::<serde_json::Value>(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| {
                panic!(
                    "grpc_status.py: {e}; {stdout}; {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
    };
    // Mutual TLS (user viewer's certificate) and a token from Login.
    let answer = run(Some(format!("viewer:{PASSWORD}")), true);
    assert_eq!(answer["node_id"], 2, "{answer}");
    assert_eq!(answer["user"], "viewer", "{answer}");
    assert_eq!(answer["via"], "token", "{answer}");
    // The token alone, over one-way TLS.
    let token_only = run(Some(format!("viewer:{PASSWORD}")), false);
    assert_eq!(token_only["via"], "token", "{token_only}");
    // The certificate alone names the user.
    let certificate = run(None, true);
    assert_eq!(certificate["node_id"], 2, "{certificate}");
    let refused = run(None, false);
    assert_eq!(refused["error"], "UNAUTHENTICATED", "{refused}");
    let wrong = run(Some("viewer:not the password".into()), true);
    assert_eq!(wrong["error"], "UNAUTHENTICATED", "{wrong}");
}

/// The status line and headers the HTTP port answers a WebSocket upgrade
/// of `/ws` with, given extra request headers.
async fn ws_handshake(c: &TestCluster, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let http = c.node(1).http.clone();
    let config =
        bifrost_tls::config::client_config(&c.pki().ca_cert(), None, &[b"http/1.1"]).unwrap();
    let mut tls = bifrost_tls::connector::connect(&http, config)
        .await
        .unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {http}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{headers}\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tls.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..n]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_handshake_needs_a_token_in_a_header_or_the_subprotocol() {
    let c = secured_cluster().await;
    plant(&c).await;
    let none = ws_handshake(&c, "").await;
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(none.contains("no credential"), "{none}");
    let bad = ws_handshake(&c, "Authorization: Bearer nonsense\r\n").await;
    assert!(bad.starts_with("HTTP/1.1 401"), "{bad}");
    assert!(bad.contains("malformed session token"), "{bad}");

    let viewer = logged_in(&c, 1, "viewer").await;
    let token = viewer.token().unwrap();
    let header = ws_handshake(&c, &format!("Authorization: Bearer {token}\r\n")).await;
    assert!(header.starts_with("HTTP/1.1 101"), "{header}");
    let protocol = format!("bifrost.token.{token}");
    let browser = ws_handshake(&c, &format!("Sec-WebSocket-Protocol: {protocol}\r\n")).await;
    assert!(browser.starts_with("HTTP/1.1 101"), "{browser}");
    assert!(
        browser.to_ascii_lowercase().contains(&format!(
            "sec-websocket-protocol: {}",
            protocol.to_ascii_lowercase()
        )),
        "the subprotocol is echoed: {browser}"
    );
    viewer.logout().await.unwrap();
    let ended = ws_handshake(&c, &format!("Authorization: Bearer {token}\r\n")).await;
    assert!(ended.starts_with("HTTP/1.1 401"), "{ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_config_user_changes_and_failed_logins_are_audited_for_admins_only() {
    let c = secured_cluster().await;
    plant(&c).await;
    let admin = c.client();
    admin
        .change_grants("viewer", vec![grant(Role::Viewer, &["line2/**"])], vec![])
        .await
        .unwrap();
    let anonymous = Client::connect_with(c.endpoints(), tokens_only(&c)).unwrap();
    let e = anonymous
        .login("viewer", "not the password")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(Code::Unauthenticated), "{e}");
    let operator = logged_in(&c, 2, "operator").await;
    let value = proto::Value {
        kind: Some(proto::value::Kind::FloatValue(42.0)),
    };
    // The device is disabled: the write is refused, and recorded so.
    let _ = operator.write_tag("line1/valve", value).await;
    admin.set_audit_retention(400 * 24 * 3600).await.unwrap();
    assert_eq!(
        admin.status().await.unwrap().audit_retention_seconds,
        400 * 24 * 3600
    );

    let sql = "SELECT username, action, target, detail, outcome, source FROM audit \
               WHERE ts > now() - INTERVAL '1 day'";
    let rows: Vec<Vec<String>> = query_rows(&admin, sql)
        .await
        .into_iter()
        .map(|r| r.cells.iter().map(|c| format!("{:?}", c.kind)).collect())
        .collect();
    let find = |action: &str, target: &str| {
        rows.iter()
            .find(|r| {
                r[1].contains(&format!("\"{action}\"")) && r[2].contains(&format!("\"{target}\""))
            })
            .unwrap_or_else(|| panic!("no {action} of {target} in {rows:#?}"))
            .clone()
    };
    let added = find("add_user", "operator");
    assert!(
        added[0].contains("\"admin\"") && added[3].contains("operator on line1/**"),
        "{added:?}"
    );
    assert!(
        added[4].contains("\"ok\"") && added[5].contains("127.0.0.1:"),
        "{added:?}"
    );
    let granted = find("change_grants", "viewer");
    assert!(granted[3].contains("+[viewer on line2/**]"), "{granted:?}");
    let login = find("login", "viewer");
    assert!(login[4].contains("Unauthenticated"), "{login:?}");
    let write = find("write", "line1/valve");
    assert!(
        write[0].contains("\"operator\"") && write[3].contains("42"),
        "{write:?}"
    );
    assert!(
        !write[4].contains("\"ok\""),
        "the refused write is recorded as refused: {write:?}"
    );
    assert!(
        rows.iter().all(|r| !r.iter().any(|c| c.contains(PASSWORD))),
        "no password in the audit"
    );

    // A viewer sees no audit record.
    let viewer = logged_in(&c, 1, "viewer").await;
    assert!(query_rows(&viewer, sql).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_over_their_rate_and_a_name_tried_too_often_are_refused_with_a_retry_hint() {
    let opts = options(1, &["--max-requests-per-user", "5"]).tls();
    let c = TestCluster(Cluster::start(opts).unwrap());
    c.wait_leader(&[1], Duration::from_secs(60)).await;
    // Raw calls (the client library would wait and retry): user admin, by
    // certificate, over one connection and then another.
    let mut refused = None;
    for i in 0..40 {
        let mut raw = c.raw_client(1).await;
        match raw.status(proto::StatusRequest {}).await {
            Ok(_) => continue,
            Err(s) => {
                refused = Some((i, s));
                break;
            }
        }
    }
    let (i, s) = refused.expect("40 calls at once passed a limit of 5/s with bursts of 10");
    assert!(i >= 5, "refused after {i} calls, within the burst");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message().contains("user 'admin'") && s.message().contains("--max-requests-per-user"),
        "{s:?}"
    );
    assert!(s.metadata().get("retry-after-ms").is_some(), "{s:?}");

    let mut raw = c.raw_client(1).await;
    let mut limited = None;
    for _ in 0..20 {
        let login = proto::LoginRequest {
            user: "nobody".into(),
            password: "guess-guess-guess".into(),
        };
        if let Err(s) = raw.login(login).await {
            if s.code() == Code::ResourceExhausted {
                limited = Some(s);
                break;
            }
            assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
        }
    }
    let s = limited.expect("20 login attempts in a row were all checked");
    assert!(
        s.message()
            .contains("too many login attempts for user 'nobody'"),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_token_expires_on_every_node_after_its_ttl() {
    let c = TestCluster(Cluster::start(options(3, &["--session-ttl", "3s"]).tls()).unwrap());
    c.wait_leader(&[1, 2, 3], Duration::from_secs(60)).await;
    plant(&c).await;
    let viewer = logged_in(&c, 1, "viewer").await;
    let token = viewer.token().unwrap();
    let on = |id: u64| {
        let client = Client::connect_with(vec![c.node(id).grpc.clone()], tokens_only(&c)).unwrap();
        client.set_token(Some(token.clone()));
        client
    };
    for id in 1..=3 {
        on(id).list_devices(Consistency::Local).await.unwrap();
    }
    for id in 1..=3 {
        let client = on(id);
        let refusal = wait_until_async(
            format!("node {id} to refuse the expired token"),
            Duration::from_secs(15),
            || {
                let client = client.clone();
                async move {
                    match client.list_devices(Consistency::Local).await {
                        Err(e) if e.code() == Some(Code::Unauthenticated) => Ok(e.to_string()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await;
        assert!(refusal.contains("expired"), "node {id}: {refusal}");
    }
    // Logging in again gives a fresh session.
    let again = logged_in(&c, 2, "viewer").await;
    again.list_devices(Consistency::Local).await.unwrap();
}
