//! Each fault the nemesis can inject is real: a three-node cluster runs in
//! Docker (the repository's `docker-compose.yml`, under a project name and
//! /24 of its own, TLS on every port with a CA of its own), and after each
//! fault the test looks from the outside and from inside the containers
//! for its effect, then for the recovery. It also checks that the cluster
//! really runs TLS: plain text is refused on the gRPC and HTTP ports, and
//! `/readyz` carries no `--insecure` warning.
//!
//! Fails, saying what is missing, when `docker info` fails, when not root
//! or when the image cannot be built: it never passes by skipping
//! (`scripts/test.sh` starts dockerd if needed, and leaves this test out,
//! saying so, only when `BIFROST_SKIP_DOCKER=1` is set on purpose). The image:
//!
//! - `BIFROST_JEPSEN_IMAGE=bifrost:dev` (say): use that image as it is
//!   (built by `scripts/image.sh`);
//! - otherwise the test builds `bifrost:jepsen-test` with `scripts/image.sh
//!   --bin-dir DIR` from the `bifrost` and `bifrostctl` binaries already built
//!   next to this test (`target/debug`, as `cargo nextest run --workspace`
//!   or `cargo build -p bifrost-server -p bifrost-client` leave them; or
//!   `BIFROST_BIN_DIR`). That takes seconds; it builds no Rust;
//! - without such binaries (a target dir of this crate alone), the image
//!   `bifrost:dev` if `scripts/image.sh` has built one (it may be older
//!   than the source: the test says so).
//!
//! Needs root for the partitions (iptables). Runs in
//! about a minute. Containers, network, volumes and firewall rules are
//! removed at the end, also when an assertion fails (drop guards); set
//! `BIFROST_JEPSEN_KEEP=1` to leave the cluster up for a look.

use std::process::Command;
use std::time::{Duration, Instant};

use bifrost_client::Security;
use bifrost_jepsen::docker::{self, Compose, ContainerState};
use bifrost_jepsen::nemesis::{Nemesis, Partition, CHAIN};
use bifrost_jepsen::run::cluster;
use bifrost_jepsen::Target;
use bifrost_testkit::Wait;

/// A node's own view, asked inside its container over TLS (at its own
/// address, which its certificate names): (leader, term).
fn view(c: &Compose, node: u64) -> Option<(Option<u64>, u64)> {
    let me = c.node(node).ok()?.grpc().to_string();
    let out = c
        .bifrostctl(
            &format!("n{node}"),
            &[
                "--endpoints",
                &me,
                "--timeout",
                "2s",
                "--output",
                "json",
                "status",
            ],
        )
        .ok()?;
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((j["leader"].as_u64(), j["term"].as_u64()?))
}

/// Whether `from` reaches `to`'s gRPC port over TLS, tried from inside `from`.
fn reaches(c: &Compose, from: u64, to: u64) -> bool {
    let to = c.node(to).unwrap().grpc().to_string();
    c.bifrostctl(
        &format!("n{from}"),
        &["--endpoints", &to, "--timeout", "2s", "status"],
    )
    .is_ok_and(|o| o.status.success())
}

/// Every node speaks TLS only: `/readyz` over HTTPS has no `--insecure`
/// warning, plain HTTP gets no answer, a plain-text gRPC `Status` none
/// either, while the same call over TLS (as user admin) is answered.
fn assert_tls_only(c: &Compose, rt: &tokio::runtime::Runtime) {
    for n in c.nodes() {
        let (code, body) = c
            .http_get(&n, "/readyz", Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{}: /readyz over TLS: {e}", n.service));
        assert!(
            !body.contains("INSECURE"),
            "{} runs --insecure: {code} {body}",
            n.service
        );
        let plain = docker::http_get(
            n.http(),
            "/healthz",
            Duration::from_secs(2),
            &Security::Plain,
        );
        assert!(
            plain.is_err(),
            "{} answered plain HTTP: {plain:?}",
            n.service
        );
        let grpc = n.grpc().to_string();
        let tls = Target::new(vec![grpc.clone()], c.security());
        let status = rt.block_on(cluster::node_status(&tls, Duration::from_secs(2)));
        assert_eq!(status.map(|s| s.node_id), Some(n.id), "{grpc} over TLS");
        let plain = Target::new(vec![grpc.clone()], Security::Plain);
        let status = rt.block_on(cluster::node_status(&plain, Duration::from_secs(2)));
        assert!(status.is_none(), "{grpc} answered plain text: {status:?}");
    }
}

/// Checks `cond` every 200 ms (each check runs `docker exec`s) until it
/// holds; panics naming `what` after `limit`.
fn wait_for(what: &str, limit: Duration, cond: impl FnMut() -> bool) {
    Wait::new(what, limit)
        .every(Duration::from_millis(200))
        .until(cond)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The leader all of `nodes` agree on, with one term, if they do.
fn agreed_leader(c: &Compose, nodes: &[u64]) -> Option<(u64, u64)> {
    let views: Vec<_> = nodes.iter().map(|&n| view(c, n)).collect::<Option<_>>()?;
    match views[0] {
        (Some(l), t) if views.iter().all(|v| *v == (Some(l), t)) => Some((l, t)),
        _ => None,
    }
}

fn our_rules(tag: &str) -> usize {
    let out = Command::new("iptables")
        .args(["-w", "-S", CHAIN])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(tag))
        .count()
}

#[test]
fn partitions_kills_and_pauses_really_happen_and_really_end() {
    let started = Instant::now();
    let mut compose = cluster::compose_for_test("bifrost-faults", std::process::id() as u64);
    let project = compose.project().to_string();
    let all = [1, 2, 3];
    wait_for(
        "a leader all three agree on",
        Duration::from_secs(30),
        || agreed_leader(&compose, &all).is_some(),
    );
    // The host reaches every node directly, with no published port, and
    // over TLS only.
    for n in compose.nodes() {
        let (code, body) = compose
            .http_get(&n, "/healthz", Duration::from_secs(2))
            .unwrap();
        assert_eq!((code, body.trim()), (200, "ok"), "{}", n.service);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_tls_only(&compose, &rt);

    // --- partition: n1 alone ---
    let mut nemesis = Nemesis::new(&compose).unwrap();
    let tag = nemesis.firewall().tag().to_string();
    nemesis
        .partition(&Partition::isolate(&compose.addresses(), 1).unwrap())
        .unwrap();
    assert_eq!(our_rules(&tag), 4, "n1<->n2 and n1<->n3, both ways");
    assert!(!reaches(&compose, 1, 2), "n1 still reaches n2");
    assert!(!reaches(&compose, 3, 1), "n3 still reaches n1");
    assert!(reaches(&compose, 2, 3), "n2 and n3 must still talk");
    // n2 and n3 have (or elect) a leader among themselves; n1 is not part of it.
    wait_for(
        "n2 and n3 agree on a leader n1 does not know",
        Duration::from_secs(20),
        || match agreed_leader(&compose, &[2, 3]) {
            Some((l, t)) => l != 1 && view(&compose, 1).is_some_and(|v| v != (Some(l), t)),
            None => false,
        },
    );
    let (l23, t23) = agreed_leader(&compose, &[2, 3]).unwrap();
    eprintln!(
        "partitioned: n2/n3 follow n{l23} in term {t23}; n1 sees {:?} ({:.1}s)",
        view(&compose, 1),
        started.elapsed().as_secs_f64()
    );

    // --- heal: n1 rejoins ---
    nemesis.heal().unwrap();
    assert_eq!(our_rules(&tag), 0);
    assert!(reaches(&compose, 1, 2), "n1 cannot reach n2 after heal");
    wait_for(
        "all three agree on a leader again",
        Duration::from_secs(20),
        || agreed_leader(&compose, &all).is_some(),
    );
    eprintln!(
        "healed: all follow {:?} ({:.1}s)",
        agreed_leader(&compose, &all),
        started.elapsed().as_secs_f64()
    );

    // --- kill -9 and start ---
    compose.kill(3).unwrap();
    assert_eq!(compose.state("n3").unwrap(), ContainerState::Exited(137));
    let n3 = compose.node(3).unwrap();
    assert!(compose
        .http_get(&n3, "/healthz", Duration::from_secs(1))
        .is_err());
    compose.start(3).unwrap();
    assert_eq!(compose.state("n3").unwrap(), ContainerState::Running);
    compose.wait_healthy(Duration::from_secs(30)).unwrap();
    wait_for(
        "n3 rejoins after the restart",
        Duration::from_secs(20),
        || agreed_leader(&compose, &all).is_some(),
    );

    // --- pause (freezer) and SIGSTOP: the node stops answering ---
    let n2 = compose.node(2).unwrap();
    for name in ["pause", "SIGSTOP"] {
        let pause = name == "pause";
        if pause {
            compose.pause(2)
        } else {
            compose.sigstop(2)
        }
        .unwrap();
        let t = Instant::now();
        let e = compose
            .http_get(&n2, "/healthz", Duration::from_secs(1))
            .expect_err(&format!("n2 answered /healthz while frozen by {name}"));
        assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            "{name}: expected a timeout, got {e}"
        );
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "{name}: failed too fast: {e}"
        );
        if pause {
            assert_eq!(compose.state("n2").unwrap(), ContainerState::Paused);
            compose.unpause(2).unwrap();
        } else {
            compose.sigcont(2).unwrap();
        }
        let (code, _) = compose
            .http_get(&n2, "/healthz", Duration::from_secs(5))
            .unwrap();
        assert_eq!(code, 200, "{name}: n2 does not answer after thawing");
    }

    // --- logs ---
    let logs = compose.logs("n1").unwrap();
    assert!(logs.stderr.contains("node=1"), "n1's log: {}", logs.stderr);

    // --- teardown: rules, containers, network and volumes all go ---
    drop(nemesis);
    assert_eq!(our_rules(&tag), 0);
    if std::env::var_os("BIFROST_JEPSEN_KEEP").is_none() {
        compose.down().unwrap();
        assert!(compose.container_ids().unwrap().is_empty());
        let nets = Command::new("docker")
            .args(["network", "ls", "--format", "{{.Name}}"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&nets.stdout).contains(&project));
    }
    eprintln!("done in {:.1}s", started.elapsed().as_secs_f64());
}
