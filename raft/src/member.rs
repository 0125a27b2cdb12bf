//! What the membership keeps of each node: the address clients use (its
//! public gRPC port) and the address its peers use (its peer port, which
//! carries Raft and node-to-node calls only). This is openraft's node type
//! for Bifrost.
//!
//! On disk and on the wire a member is one string, `API/PEER`, so that the
//! log entries and snapshots of clusters made before the peer port (whose
//! node type was openraft's `BasicNode`, the single string `ADDR`) still
//! decode: such a member reads as `ADDR` for both.

use serde::{Deserialize, Serialize};

/// A member's addresses, each `HOST:PORT`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Member {
    /// Public gRPC port: clients, and clients redirected to the leader.
    pub api: String,
    /// Peer port: Raft and the server's node-to-node calls.
    pub peer: String,
}

impl Member {
    pub fn new(api: impl Into<String>, peer: impl Into<String>) -> Member {
        Member {
            api: api.into(),
            peer: peer.into(),
        }
    }

    /// Parses `API_HOST:PORT/PEER_HOST:PORT`. Errors say what is wrong.
    pub fn parse(s: &str) -> Result<Member, String> {
        let s = s.trim();
        let (api, peer) = s.split_once('/').ok_or_else(|| {
            format!(
                "'{s}': expected API_HOST:PORT/PEER_HOST:PORT (public address, then peer address)"
            )
        })?;
        check_host_port(api).map_err(|e| format!("'{s}': public address {e}"))?;
        check_host_port(peer).map_err(|e| format!("'{s}': peer address {e}"))?;
        Ok(Member::new(api.trim(), peer.trim()))
    }

    /// The stored form; also what `parse` reads.
    pub fn to_wire(&self) -> String {
        if self.api == self.peer {
            self.api.clone()
        } else {
            format!("{}/{}", self.api, self.peer)
        }
    }
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api, self.peer)
    }
}

impl From<Member> for String {
    fn from(m: Member) -> String {
        m.to_wire()
    }
}

impl TryFrom<String> for Member {
    type Error = String;

    /// The stored form: `API/PEER`, or one address for both (membership
    /// written before the peer port existed).
    fn try_from(s: String) -> Result<Member, String> {
        match s.split_once('/') {
            Some((api, peer)) => Ok(Member::new(api, peer)),
            None => Ok(Member::new(s.clone(), s)),
        }
    }
}

/// `HOST:PORT` with a non-empty host and a port number; the error says
/// which part is wrong.
pub fn check_host_port(addr: &str) -> Result<(), String> {
    let addr = addr.trim();
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("'{addr}' is not HOST:PORT"))?;
    if host.is_empty() {
        return Err(format!("'{addr}' has no host"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!("'{addr}': '{port}' is not a port number"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_storage::codec::{decode, encode};

    #[test]
    fn parses_both_addresses_and_says_what_is_wrong() {
        let m = Member::parse("n1:7001/10.0.0.11:7101").unwrap();
        assert_eq!(m, Member::new("n1:7001", "10.0.0.11:7101"));
        assert!(Member::parse("n1:7001").unwrap_err().contains("PEER_HOST"));
        assert!(Member::parse("n1:7001/n1")
            .unwrap_err()
            .contains("peer address"));
        assert!(Member::parse(":7001/n1:7101")
            .unwrap_err()
            .contains("public address"));
        assert!(Member::parse("n1:99999/n1:7101")
            .unwrap_err()
            .contains("not a port"));
    }

    #[test]
    fn round_trips_and_reads_the_single_address_of_older_clusters() {
        let m = Member::new("n1:7001", "n1:7101");
        assert_eq!(decode::<Member>(&encode(&m)).unwrap(), m);
        // openraft's BasicNode { addr } encodes as its one string.
        let old = encode(&openraft::BasicNode::new("n1:7001"));
        assert_eq!(
            decode::<Member>(&old).unwrap(),
            Member::new("n1:7001", "n1:7001")
        );
    }
}
