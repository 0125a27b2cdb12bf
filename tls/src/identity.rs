//! Who a certificate names: a cluster node (`urn:bifrost:node:N`) or a user
//! (`urn:bifrost:user:NAME`), read from its subject alternative names. The
//! signature and the chain are not checked here: rustls has checked them
//! against the cluster CA before anyone asks who the peer is.
//!
//! [`AltNames`] is the one reader of a certificate's subject alternative
//! names: identities come from its URIs, a node's hosts from its DNS names
//! and IP addresses (`certs rotate` keeps them).

use std::net::IpAddr;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::{Error, Result};

const NODE_URI: &str = "urn:bifrost:node:";
const USER_URI: &str = "urn:bifrost:user:";

/// The holder a certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Node(u64),
    User(String),
}

impl Identity {
    /// The SAN URI that names this identity.
    pub fn uri(&self) -> String {
        match self {
            Identity::Node(id) => format!("{NODE_URI}{id}"),
            Identity::User(name) => format!("{USER_URI}{name}"),
        }
    }

    /// The identity a certificate (DER) names. A certificate naming none,
    /// or more than one, is an error: a node must not pass for a user.
    pub fn of_certificate(der: &[u8]) -> Result<Identity> {
        let names = AltNames::of(der)?;
        let what = || format!("certificate '{}'", names.subject);
        let mut named = Vec::new();
        for uri in &names.uris {
            if let Some(id) = uri.strip_prefix(NODE_URI) {
                let id = id
                    .parse::<u64>()
                    .ok()
                    .filter(|id| *id > 0)
                    .ok_or_else(|| Error::invalid(what(), format!("bad node id in '{uri}'")))?;
                named.push(Identity::Node(id));
            } else if let Some(user) = uri.strip_prefix(USER_URI) {
                if user.is_empty() {
                    return Err(Error::invalid(
                        what(),
                        format!("empty user name in '{uri}'"),
                    ));
                }
                named.push(Identity::User(user.to_string()));
            }
        }
        match named.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::invalid(
                what(),
                "names no Bifrost node or user (no urn:bifrost: URI)",
            )),
            _ => Err(Error::invalid(
                what(),
                "names more than one Bifrost node or user",
            )),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "node {id}"),
            Identity::User(name) => write!(f, "user '{name}'"),
        }
    }
}

/// The subject alternative names of a certificate (DER) that Bifrost
/// reads, in the certificate's order.
pub(crate) struct AltNames {
    pub subject: String,
    /// DNS names and IP addresses, as text.
    pub hosts: Vec<String>,
    pub uris: Vec<String>,
}

impl AltNames {
    pub(crate) fn of(der: &[u8]) -> Result<AltNames> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::invalid("certificate", format!("not X.509 DER: {e}")))?;
        let subject = cert.subject().to_string();
        let san = cert.subject_alternative_name().map_err(|e| {
            Error::invalid(
                format!("certificate '{subject}'"),
                format!("bad subject alternative names: {e}"),
            )
        })?;
        let mut names = AltNames {
            subject,
            hosts: Vec::new(),
            uris: Vec::new(),
        };
        for name in san.iter().flat_map(|san| &san.value.general_names) {
            match name {
                GeneralName::DNSName(dns) => names.hosts.push(dns.to_string()),
                GeneralName::IPAddress(ip) => names
                    .hosts
                    .extend(ip_from_bytes(ip).map(|ip| ip.to_string())),
                GeneralName::URI(uri) => names.uris.push(uri.to_string()),
                _ => {}
            }
        }
        Ok(names)
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}
