//! What OPC UA servers answer at a URL, for discovery: FindServers on the
//! URL (a server or a discovery server), then GetEndpoints on each server's
//! discovery URLs. No session is made and nothing is read: these are the
//! two services a server answers before anyone logs in.

use std::time::Duration;

use opcua::types::{ApplicationDescription, EndpointDescription, MessageSecurityMode};

use super::connection::build_client;
use super::OpcUaOptions;
use crate::{Error, Result};

/// One server found: its identity and the endpoints it offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerInfo {
    pub application_name: String,
    pub application_uri: String,
    /// Names the product and its maker, e.g. `urn:freeopcua.github.io:python:server`.
    pub product_uri: String,
    /// The URL a device should use (the first endpoint's, else the one asked).
    pub endpoint_url: String,
    /// `None`, `Basic256Sha256 Sign`, ... one per endpoint, in the server's order.
    pub security: Vec<String>,
    /// User token types the endpoints accept (`anonymous`, `username`, ...).
    pub user_tokens: Vec<String>,
}

/// The servers `url` knows of (itself included), with their endpoints.
pub async fn find_servers(url: &str, timeout: Duration) -> Result<Vec<ServerInfo>> {
    super::validate_endpoint(url).map_err(Error::Config)?;
    let mut opts = OpcUaOptions::new(url.to_string());
    opts.request_timeout = timeout;
    let client = tokio::task::spawn_blocking(move || build_client(&opts))
        .await
        .map_err(|e| Error::Io(format!("opcua client: {e}")))??;
    let bounded = |what: String| Error::Timeout(format!("{what} at {url}"));
    let servers = tokio::time::timeout(timeout, client.find_servers(url, None, None))
        .await
        .map_err(|_| bounded("FindServers".into()))?
        .map_err(|e| Error::Io(format!("FindServers at {url}: {e}")))?;
    let mut found = Vec::new();
    for server in servers {
        let at = discovery_url(&server).unwrap_or_else(|| url.to_string());
        let endpoints =
            tokio::time::timeout(timeout, client.get_server_endpoints_from_url(at.as_str()))
                .await
                .map_err(|_| bounded("GetEndpoints".into()))?
                .unwrap_or_default();
        found.push(describe(&server, &endpoints, &at));
    }
    Ok(found)
}

fn discovery_url(server: &ApplicationDescription) -> Option<String> {
    server
        .discovery_urls
        .as_ref()?
        .iter()
        .map(|u| u.as_ref().to_string())
        .find(|u| u.starts_with("opc.tcp://"))
}

fn describe(
    server: &ApplicationDescription,
    endpoints: &[EndpointDescription],
    at: &str,
) -> ServerInfo {
    let mut security = Vec::new();
    let mut user_tokens = Vec::new();
    for e in endpoints {
        let policy = e
            .security_policy_uri
            .as_ref()
            .rsplit('#')
            .next()
            .unwrap_or("")
            .to_string();
        let mode = match e.security_mode {
            MessageSecurityMode::Sign => " Sign",
            MessageSecurityMode::SignAndEncrypt => " SignAndEncrypt",
            _ => "",
        };
        let s = format!("{policy}{mode}");
        if !security.contains(&s) {
            security.push(s);
        }
        for t in e.user_identity_tokens.iter().flatten() {
            let kind = format!("{:?}", t.token_type).to_lowercase();
            if !user_tokens.contains(&kind) {
                user_tokens.push(kind);
            }
        }
    }
    ServerInfo {
        application_name: server.application_name.text.as_ref().to_string(),
        application_uri: server.application_uri.as_ref().to_string(),
        product_uri: server.product_uri.as_ref().to_string(),
        endpoint_url: endpoints
            .first()
            .map(|e| e.endpoint_url.as_ref().to_string())
            .unwrap_or_else(|| at.to_string()),
        security,
        user_tokens,
    }
}
