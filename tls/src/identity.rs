//! Who a certificate names: a cluster node (`urn:bifrost:node:N`) or a user
//! (`urn:bifrost:user:NAME`), read from its subject alternative names. The
//! signature and the chain are not checked here: rustls has checked them
//! against the cluster CA before anyone asks who the peer is.

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
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::invalid("certificate", format!("not X.509 DER: {e}")))?;
        let named = names_of(&cert)?;
        match named.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(Error::invalid(
                format!("certificate '{}'", cert.subject()),
                "names no Bifrost node or user (no urn:bifrost: URI)",
            )),
            _ => Err(Error::invalid(
                format!("certificate '{}'", cert.subject()),
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

fn names_of(cert: &X509Certificate<'_>) -> Result<Vec<Identity>> {
    let what = || format!("certificate '{}'", cert.subject());
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::invalid(what(), format!("bad subject alternative names: {e}")))?;
    let Some(san) = san else {
        return Ok(Vec::new());
    };
    let mut named = Vec::new();
    for name in &san.value.general_names {
        let GeneralName::URI(uri) = name else {
            continue;
        };
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
    Ok(named)
}
