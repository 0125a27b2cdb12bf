//! Who may call the peer port (`--peer-listen`), which carries Raft
//! (`bifrost.raft.v1`) and the server's node-to-node calls
//! (`bifrost.node.v1`) and nothing else; the public port serves neither.
//!
//! With TLS the handshake already required a certificate signed by the
//! cluster CA (`transport`). Each call is then checked here: the
//! certificate must name a node (`urn:bifrost:node:N`) that is a current
//! member of this node's membership. A node not yet in any cluster (a
//! fresh node waiting to be added) has no membership and accepts any
//! node of the CA, so that the leader can add it. Everything else (a
//! user's certificate, a removed member, a node of another cluster signed
//! by the same CA) is refused with `permission_denied`, counted in
//! `bifrost_peer_refused_calls_total` and logged (once a minute per
//! caller). An `--insecure` node checks nothing.
//!
//! This module decides; it does not know the services it guards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bifrost_raft::RaftNode;
use bifrost_tls::Identity;
use tonic::{Request, Status};

use crate::metrics::Metrics;

/// How often a refused caller is logged again.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The per-call check of the peer port.
pub struct PeerGate {
    node: Arc<RaftNode>,
    metrics: Arc<Metrics>,
    /// False in an `--insecure` node: nothing to check.
    tls: bool,
    /// When each refused caller was last logged.
    logged: Mutex<HashMap<String, Instant>>,
}

impl PeerGate {
    pub fn new(node: Arc<RaftNode>, metrics: Arc<Metrics>, tls: bool) -> Arc<PeerGate> {
        Arc::new(PeerGate {
            node,
            metrics,
            tls,
            logged: Mutex::new(HashMap::new()),
        })
    }

    /// A tonic interceptor running [`PeerGate::check`] on every call.
    pub fn interceptor(
        self: &Arc<Self>,
    ) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        let gate = self.clone();
        move |req: Request<()>| gate.check(&req).map(|_| req)
    }

    fn check(&self, req: &Request<()>) -> Result<(), Status> {
        if !self.tls {
            return Ok(());
        }
        let certs = req.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first());
        let verdict = admit(leaf.map(|c| c.as_ref()), self.node.has_membership(), |id| {
            self.node.member(id).is_some()
        });
        verdict.map(|_| ()).map_err(|why| {
            self.metrics.peer_refused.inc();
            let from = req
                .remote_addr()
                .map_or_else(|| "unknown address".into(), |a| a.to_string());
            self.log_refusal(&from, &why);
            Status::permission_denied(format!("peer port: {why}"))
        })
    }

    fn log_refusal(&self, from: &str, why: &str) {
        let key = format!("{from} {why}");
        let mut logged = self.logged.lock().expect("peer gate log lock");
        let now = Instant::now();
        if logged.get(&key).is_some_and(|t| now - *t < LOG_EVERY) {
            return;
        }
        logged.retain(|_, t| now - *t < LOG_EVERY);
        logged.insert(key, now);
        tracing::warn!(%from, reason = why, "refused a call on the peer port");
    }
}

/// The node a peer-port caller may act as, given its certificate's DER
/// (`None`: it showed none), whether this node has a membership yet, and
/// who is a member; the reason if it may not.
pub fn admit(
    leaf: Option<&[u8]>,
    has_membership: bool,
    is_member: impl Fn(u64) -> bool,
) -> Result<u64, String> {
    let der = leaf.ok_or("no client certificate")?;
    match Identity::of_certificate(der).map_err(|e| format!("certificate: {e}"))? {
        Identity::User(name) => Err(format!(
            "the certificate names user '{name}', not a cluster node"
        )),
        Identity::Node(id) if !has_membership || is_member(id) => Ok(id),
        Identity::Node(id) => Err(format!("node {id} is not a member of this cluster")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_tls::{CertDir, NodeSpec};

    fn der(path: &std::path::Path) -> Vec<u8> {
        bifrost_tls::config::certificates(path).unwrap()[0].to_vec()
    }

    #[test]
    fn only_current_members_pass_and_each_refusal_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let certs = CertDir::new(dir.path().join("pki"));
        let nodes = NodeSpec::parse_list("1=localhost,2=localhost").unwrap();
        certs.init(&nodes, "admin", 30).unwrap();
        let (node2, admin) = (der(&certs.node_cert(2)), der(&certs.user_cert("admin")));
        let members = |id: u64| id == 1 || id == 2;
        assert_eq!(admit(Some(&node2), true, members), Ok(2));
        let removed = admit(Some(&node2), true, |id| id == 1).unwrap_err();
        assert!(removed.contains("node 2 is not a member"), "{removed}");
        // A node waiting to be added accepts the cluster's nodes.
        assert_eq!(admit(Some(&node2), false, |_| false), Ok(2));
        let user = admit(Some(&admin), false, |_| true).unwrap_err();
        assert!(user.contains("user 'admin'"), "{user}");
        assert!(admit(None, true, members)
            .unwrap_err()
            .contains("no client"));
        assert!(admit(Some(b"junk"), true, members)
            .unwrap_err()
            .contains("certificate"));
    }
}
