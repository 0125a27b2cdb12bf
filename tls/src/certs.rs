//! A cluster's certificate directory: its CA, one certificate per node and
//! one per user, as PEM files (`bifrostctl certs init` and `rotate`).
//!
//! ```text
//! DIR/ca.pem  DIR/ca.key                 the cluster CA (keep ca.key offline)
//! DIR/node-N.pem  DIR/node-N.key         node N: serves, and calls its peers
//! DIR/user-NAME.pem  DIR/user-NAME.key   a user's client certificate
//! ```
//!
//! Keys are written with mode 0600 and the directory is made 0700. Every
//! file is written whole to a temporary name and renamed, so a node that
//! reloads its certificate never reads half of one. Keys are ECDSA P-256.

use base64::Engine;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::config::certificates;
use crate::identity::{AltNames, Identity};
use crate::{Error, Result};

/// How long a CA certificate is valid.
pub const CA_DAYS: u32 = 3650;
/// How long node and user certificates are valid unless told otherwise.
pub const LEAF_DAYS: u32 = 365;
/// Certificates start an hour in the past, for clocks a little behind.
const BACKDATE: Duration = Duration::hours(1);

/// The host names and addresses a node is reached at: `n1+10.0.0.11`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList(pub Vec<String>);

/// One node of `--nodes 1=n1+10.0.0.11,2=n2,3=10.0.0.13`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: u64,
    pub hosts: HostList,
}

impl std::str::FromStr for HostList {
    type Err = Error;

    fn from_str(s: &str) -> Result<HostList> {
        let hosts: Vec<String> = s.split('+').map(|h| h.trim().to_string()).collect();
        for host in &hosts {
            san_of_host(host)?;
        }
        Ok(HostList(hosts))
    }
}

impl NodeSpec {
    /// Parses `ID=HOST[+HOST...],ID=...`; the error names the bad part.
    pub fn parse_list(s: &str) -> Result<Vec<NodeSpec>> {
        let mut nodes: Vec<NodeSpec> = Vec::new();
        for (i, part) in s.split(',').map(str::trim).enumerate() {
            let what = || format!("node {} ('{part}')", i + 1);
            let (id, hosts) = part
                .split_once('=')
                .ok_or_else(|| Error::invalid(what(), "expected ID=HOST[+HOST...]"))?;
            let id = id
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    Error::invalid(what(), format!("'{id}' is not a node id (1, 2, ...)"))
                })?;
            let hosts = hosts
                .parse::<HostList>()
                .map_err(|e| Error::invalid(what(), e.to_string()))?;
            if nodes.iter().any(|n| n.id == id) {
                return Err(Error::invalid(what(), format!("node {id} is listed twice")));
            }
            nodes.push(NodeSpec { id, hosts });
        }
        Ok(nodes)
    }
}

/// A certificate directory (see the module documentation).
#[derive(Clone, Debug)]
pub struct CertDir {
    pub dir: PathBuf,
}

impl CertDir {
    pub fn new(dir: impl Into<PathBuf>) -> CertDir {
        CertDir { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }
    pub fn node_cert(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.pem"))
    }
    pub fn node_key(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.key"))
    }
    pub fn user_cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("user-{name}.pem"))
    }
    pub fn user_key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("user-{name}.key"))
    }
    /// The cluster data key that seals device secrets (not a TLS file, but
    /// distributed to the nodes the same way): 32 random bytes, base64.
    pub fn data_key(&self) -> PathBuf {
        self.dir.join("data.key")
    }

    /// Writes a new data key (mode 0600) unless one is here; returns
    /// whether it wrote one.
    pub fn ensure_data_key(&self) -> Result<bool> {
        let path = self.data_key();
        if path.exists() {
            return Ok(false);
        }
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        let text = format!(
            "{}\n",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        write_file(&path, text.as_bytes(), 0o600)?;
        Ok(true)
    }

    /// Makes a new CA, a certificate for each node and one for user
    /// `admin`. Refuses a directory that already holds a CA: a second CA
    /// would lock the nodes holding the first one out of each other.
    /// Returns the files written.
    pub fn init(&self, nodes: &[NodeSpec], admin: &str, days: u32) -> Result<Vec<PathBuf>> {
        if nodes.is_empty() {
            return Err(Error::invalid("--nodes", "no node given"));
        }
        for existing in [self.ca_cert(), self.ca_key()] {
            if existing.exists() {
                return Err(Error::invalid(
                    existing.display().to_string(),
                    "a CA is already here; use `certs rotate` to renew a node's certificate, \
                     or choose an empty directory for a new cluster",
                ));
            }
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let ca_key = KeyPair::generate().map_err(Error::rcgen("CA key"))?;
        let ca_params = ca_params(&ca_key)?;
        let ca = ca_params
            .self_signed(&ca_key)
            .map_err(Error::rcgen("CA certificate"))?;
        write_file(&self.ca_key(), ca_key.serialize_pem().as_bytes(), 0o600)?;
        write_file(&self.ca_cert(), ca.pem().as_bytes(), 0o644)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let mut written = vec![self.ca_cert(), self.ca_key()];
        for node in nodes {
            written.extend(self.write_node(&issuer, node, days)?);
        }
        written.extend(self.write_user(&issuer, admin, days)?);
        self.ensure_data_key()?;
        written.push(self.data_key());
        Ok(written)
    }

    /// A new key and certificate for a node, signed by this directory's CA,
    /// replacing the old ones. Without `hosts`, the old certificate's host
    /// names and addresses are kept.
    pub fn rotate_node(&self, id: u64, hosts: Option<HostList>, days: u32) -> Result<Vec<PathBuf>> {
        let hosts = match hosts {
            Some(h) => h,
            None => self.node_hosts(id)?,
        };
        self.write_node(&self.issuer()?, &NodeSpec { id, hosts }, days)
    }

    /// A new client certificate for a user, signed by this directory's CA.
    pub fn issue_user(&self, name: &str, days: u32) -> Result<Vec<PathBuf>> {
        self.write_user(&self.issuer()?, name, days)
    }

    /// The host names and addresses node `id`'s certificate names.
    pub fn node_hosts(&self, id: u64) -> Result<HostList> {
        let path = self.node_cert(id);
        let leaf = certificates(&path)?.remove(0);
        let hosts = AltNames::of(&leaf)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?
            .hosts;
        if hosts.is_empty() {
            return Err(Error::invalid(path.display().to_string(), "names no host"));
        }
        Ok(HostList(hosts))
    }

    fn issuer(&self) -> Result<Issuer<'static, KeyPair>> {
        let key_path = self.ca_key();
        let key_pem = fs::read_to_string(&key_path).map_err(|e| Error::io(&key_path, e))?;
        let key =
            KeyPair::from_pem(&key_pem).map_err(Error::rcgen(key_path.display().to_string()))?;
        let cert_path = self.ca_cert();
        let cert_pem = fs::read_to_string(&cert_path).map_err(|e| Error::io(&cert_path, e))?;
        Issuer::from_ca_cert_pem(&cert_pem, key)
            .map_err(Error::rcgen(cert_path.display().to_string()))
    }

    fn write_node(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        node: &NodeSpec,
        days: u32,
    ) -> Result<Vec<PathBuf>> {
        let mut sans = Vec::new();
        for host in &node.hosts.0 {
            sans.push(san_of_host(host)?);
        }
        let identity = Identity::Node(node.id);
        let usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let (cert, key) = leaf(
            issuer,
            &identity,
            &format!("bifrost node {}", node.id),
            sans,
            usages,
            days,
        )?;
        write_file(&self.node_key(node.id), key.as_bytes(), 0o600)?;
        write_file(&self.node_cert(node.id), cert.as_bytes(), 0o644)?;
        Ok(vec![self.node_cert(node.id), self.node_key(node.id)])
    }

    fn write_user(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        name: &str,
        days: u32,
    ) -> Result<Vec<PathBuf>> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(Error::invalid(
                format!("user '{name}'"),
                "a user name for a certificate is letters, digits, '.', '_' and '-'",
            ));
        }
        let identity = Identity::User(name.to_string());
        let usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = leaf(issuer, &identity, name, Vec::new(), usages, days)?;
        write_file(&self.user_key(name), key.as_bytes(), 0o600)?;
        write_file(&self.user_cert(name), cert.as_bytes(), 0o644)?;
        Ok(vec![self.user_cert(name), self.user_key(name)])
    }
}

/// A CA's parameters. Its name carries a piece of its public key, so two
/// clusters' CAs differ by name: a certificate of the other cluster is
/// refused as from an unknown issuer, not as a bad signature.
fn ca_params(key: &KeyPair) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(Error::rcgen("CA"))?;
    let tag: String = key
        .public_key_raw()
        .iter()
        .skip(1)
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Bifrost cluster CA {tag}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(CA_DAYS.into());
    Ok(params)
}

/// A leaf certificate and its new key, both PEM.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    identity: &Identity,
    common_name: &str,
    mut sans: Vec<SanType>,
    usages: Vec<ExtendedKeyUsagePurpose>,
    days: u32,
) -> Result<(String, String)> {
    let what = identity.to_string();
    if days == 0 {
        return Err(Error::invalid(
            what,
            "a certificate must be valid for at least one day",
        ));
    }
    let uri = identity.uri();
    sans.push(SanType::URI(
        uri.as_str()
            .try_into()
            .map_err(Error::rcgen(format!("{what}: URI '{uri}'")))?,
    ));
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(Error::rcgen(what.clone()))?;
    params.subject_alt_names = sans;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = usages;
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(days.into());
    let key = KeyPair::generate().map_err(Error::rcgen(format!("{what}: key")))?;
    let cert = params.signed_by(&key, issuer).map_err(Error::rcgen(what))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// An IP address SAN for an address, a DNS name SAN for anything else.
fn san_of_host(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        return Err(Error::invalid(
            format!("host '{host}'"),
            "not an IP address or a DNS name (letters, digits, '-' and dots)",
        ));
    }
    let name = host
        .try_into()
        .map_err(Error::rcgen(format!("host '{host}'")))?;
    Ok(SanType::DnsName(name))
}

/// Writes `bytes` to `path` whole (a temporary file renamed over it, then
/// synced) with `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests;
