//! The cluster under test as the harness's clients see it: the nodes' gRPC
//! endpoints and how every connection to them is secured (TLS checking the
//! nodes against the cluster's CA, as user `admin`, for a compose project;
//! plain text for an `--insecure` cluster). Every client the workloads and
//! the run make is made from one [`Target`], so none can be left in plain
//! text by mistake.

use bifrost_client::{Client, ClientOptions, Security};

/// Where the nodes are and how to reach them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// gRPC addresses of the nodes, `HOST:PORT`, in node order.
    pub endpoints: Vec<String>,
    /// How every connection is secured; the same for every node.
    pub security: Security,
}

impl Target {
    /// The nodes at `endpoints`, reached with `security`.
    pub fn new(endpoints: Vec<String>, security: Security) -> Target {
        Target {
            endpoints,
            security,
        }
    }

    /// A client of the library over every endpoint (tried in order), with
    /// `opts` and this target's security (whatever `opts.security` says).
    /// An error names the endpoint or the TLS file that is wrong.
    pub fn client(&self, opts: ClientOptions) -> bifrost_client::Result<Client> {
        Client::connect_with(
            self.endpoints.clone(),
            ClientOptions {
                security: self.security.clone(),
                ..opts
            },
        )
    }

    /// The endpoints rotated to start at `first` (modulo their number):
    /// the client library tries endpoints in order, so this chooses the
    /// node a client starts on.
    pub fn rotated(&self, first: usize) -> Target {
        let n = self.endpoints.len().max(1);
        Target {
            endpoints: (0..self.endpoints.len())
                .map(|i| self.endpoints[(first + i) % n].clone())
                .collect(),
            security: self.security.clone(),
        }
    }

    /// `endpoint` alone, with this target's security (for asking one node
    /// without a client that would follow the leader elsewhere).
    pub fn only(&self, endpoint: &str) -> Target {
        Target {
            endpoints: vec![endpoint.to_string()],
            security: self.security.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abc(security: Security) -> Target {
        Target::new(
            ["a:1", "b:1", "c:1"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            security,
        )
    }

    #[test]
    fn rotation_starts_at_the_chosen_node_and_keeps_the_security() {
        let tls = Security::tls("/pki/ca.pem", None);
        let t = abc(tls.clone());
        assert_eq!(t.rotated(1).endpoints, vec!["b:1", "c:1", "a:1"]);
        assert_eq!(t.rotated(5).endpoints, vec!["c:1", "a:1", "b:1"]);
        assert_eq!(t.rotated(1).security, tls);
        assert_eq!(t.only("b:1"), Target::new(vec!["b:1".into()], tls));
    }

    #[test]
    fn clients_take_the_targets_security_over_their_options() {
        let pki = tempfile::tempdir().unwrap();
        let certs = bifrost_tls::CertDir::new(pki.path().join("pki"));
        let nodes = bifrost_tls::NodeSpec::parse_list("1=a").unwrap();
        certs.init(&nodes, "admin", 1).unwrap();
        let t = abc(Security::tls(certs.ca_cert(), None));
        let client = t.client(ClientOptions::default()).unwrap();
        assert_eq!(
            client.endpoints(),
            vec!["https://a:1", "https://b:1", "https://c:1"]
        );
        let plain = abc(Security::Plain).client(ClientOptions {
            security: Security::tls(certs.ca_cert(), None),
            ..Default::default()
        });
        assert_eq!(plain.unwrap().endpoints()[0], "http://a:1");
        // A TLS file that is missing is named.
        let missing = abc(Security::tls("/nonexistent/ca.pem", None));
        let e = missing.client(ClientOptions::default()).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
