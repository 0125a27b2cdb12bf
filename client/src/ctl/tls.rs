//! The global TLS flags of `bifrostctl`: `--ca`, `--cert` and `--key` (or
//! `BIFROST_CA`, `BIFROST_CERT`, `BIFROST_KEY`) become the client's
//! [`Security`]. Without `--ca` the cluster is reached in plain text. The
//! files are loaded once up front, as the connections will load them, so a
//! missing or bad one is named with its flag before any node is asked.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bifrost_client::Security;
use clap::Args;

/// How `bifrostctl` reaches the cluster over TLS.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// CA certificate (PEM) of the cluster: connect with TLS and check the
    /// nodes against it; DIR/ca.pem from `bifrostctl certs init`. Without
    /// it, plain text.
    #[arg(long, global = true, env = "BIFROST_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) to show the nodes, e.g. DIR/user-admin.pem
    /// from `bifrostctl certs init` or `certs user`. Needs --key and --ca.
    #[arg(
        long,
        global = true,
        env = "BIFROST_CERT",
        value_name = "FILE",
        requires_all = ["key", "ca"]
    )]
    pub cert: Option<PathBuf>,

    /// Private key (PEM) of --cert, e.g. DIR/user-admin.key. Needs --cert
    /// and --ca.
    #[arg(
        long,
        global = true,
        env = "BIFROST_KEY",
        value_name = "FILE",
        requires_all = ["cert", "ca"]
    )]
    pub key: Option<PathBuf>,
}

impl TlsArgs {
    /// Plain text without `--ca`; TLS with it, once its files (and those of
    /// `--cert`/`--key`) have loaded. An error names the flag and the file.
    pub fn security(&self) -> anyhow::Result<Security> {
        let Some(ca) = &self.ca else {
            return Ok(Security::Plain);
        };
        let identity = self.cert.clone().zip(self.key.clone());
        check_files(ca, identity.as_ref())?;
        Ok(Security::tls(ca.clone(), identity))
    }
}

/// Opens each file under its flag's name, then loads them all as a TLS
/// client configuration (PEM, a CA certificate, a key that fits).
fn check_files(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    readable("--ca", ca)?;
    if let Some((cert, key)) = identity {
        readable("--cert", cert)?;
        readable("--key", key)?;
    }
    let identity = identity.map(|(cert, key)| (cert.as_path(), key.as_path()));
    bifrost_tls::config::client_config(ca, identity, &[])
        .context("TLS files (--ca, --cert, --key)")?;
    Ok(())
}

fn readable(flag: &str, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path).with_context(|| format!("{flag} {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::ctl::{client_for, Cli};

    /// Held by the tests that parse with `BIFROST_*` set or cleared, so that
    /// none sees another's environment.
    static ENV: Mutex<()> = Mutex::new(());
    const VARS: [&str; 3] = ["BIFROST_CA", "BIFROST_CERT", "BIFROST_KEY"];

    /// Removes the TLS variables; only with [`ENV`] held.
    fn clear_env() {
        for var in VARS {
            std::env::remove_var(var);
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let m = Cli::command().try_get_matches_from(args)?;
        Cli::from_arg_matches(&m)
    }

    /// Parses `args` with none of the TLS variables set.
    fn parse_clean(args: &[&str]) -> Result<Cli, clap::Error> {
        let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
        clear_env();
        parse(args)
    }

    /// A cluster's certificates made by `certs init` in a temporary
    /// directory (kept while the first value lives).
    fn cert_dir() -> (tempfile::TempDir, bifrost_tls::CertDir) {
        let dir = tempfile::tempdir().unwrap();
        let certs = bifrost_tls::CertDir::new(dir.path().join("certs"));
        let nodes = bifrost_tls::NodeSpec::parse_list("1=localhost").unwrap();
        certs.init(&nodes, "admin", 1).unwrap();
        (dir, certs)
    }

    fn refusal(args: &[&str]) -> String {
        parse_clean(args).unwrap_err().to_string()
    }

    #[test]
    fn cert_without_key_is_refused() {
        let e = refusal(&["bifrostctl", "--ca", "ca.pem", "--cert", "u.pem", "status"]);
        assert!(e.contains("--key"), "{e}");
    }

    #[test]
    fn key_without_cert_is_refused() {
        let e = refusal(&["bifrostctl", "--ca", "ca.pem", "--key", "u.key", "status"]);
        assert!(e.contains("--cert"), "{e}");
    }

    #[test]
    fn cert_without_ca_is_refused() {
        let e = refusal(&["bifrostctl", "--cert", "u.pem", "--key", "u.key", "status"]);
        assert!(e.contains("--ca"), "{e}");
    }

    #[test]
    fn tls_flags_are_global_and_without_ca_the_client_is_plain() {
        let cli = parse_clean(&[
            "bifrostctl",
            "status",
            "--ca",
            "ca.pem",
            "--cert",
            "u.pem",
            "--key",
            "u.key",
        ])
        .unwrap();
        assert_eq!(cli.tls.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(cli.tls.key, Some(PathBuf::from("u.key")));
        let cli = parse_clean(&["bifrostctl", "status"]).unwrap();
        assert_eq!(cli.tls.security().unwrap(), Security::Plain);
    }

    #[test]
    fn tls_flags_are_read_from_the_environment() {
        let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
        for (var, value) in VARS.iter().zip(["/c/ca.pem", "/c/u.pem", "/c/u.key"]) {
            std::env::set_var(var, value);
        }
        let cli = parse(&["bifrostctl", "status"]);
        clear_env();
        let tls = cli.unwrap().tls;
        assert_eq!(tls.ca, Some(PathBuf::from("/c/ca.pem")));
        assert_eq!(tls.cert, Some(PathBuf::from("/c/u.pem")));
        assert_eq!(tls.key, Some(PathBuf::from("/c/u.key")));
    }

    #[test]
    fn a_missing_file_is_named_with_its_flag() {
        let (_dir, certs) = cert_dir();
        let missing = TlsArgs {
            ca: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let e = format!("{:#}", missing.security().unwrap_err());
        assert!(e.starts_with("--ca /nonexistent/ca.pem: "), "{e}");
        let missing_key = TlsArgs {
            ca: Some(certs.ca_cert()),
            cert: Some(certs.user_cert("admin")),
            key: Some("/nonexistent/u.key".into()),
        };
        let e = format!("{:#}", missing_key.security().unwrap_err());
        assert!(e.starts_with("--key /nonexistent/u.key: "), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_ca_certificate_is_named() {
        let (_dir, certs) = cert_dir();
        let wrong = TlsArgs {
            ca: Some(certs.user_key("admin")),
            ..Default::default()
        };
        let e = format!("{:#}", wrong.security().unwrap_err());
        let key = certs.user_key("admin").display().to_string();
        assert!(e.starts_with("TLS files") && e.contains(&key), "{e}");
    }

    #[test]
    fn files_of_certs_init_make_a_tls_client() {
        let (_dir, certs) = cert_dir();
        let identity = (certs.user_cert("admin"), certs.user_key("admin"));
        let args = TlsArgs {
            ca: Some(certs.ca_cert()),
            cert: Some(identity.0.clone()),
            key: Some(identity.1.clone()),
        };
        let security = args.security().unwrap();
        assert_eq!(security, Security::tls(certs.ca_cert(), Some(identity)));
        let client = client_for(
            vec!["n1:7001".into()],
            crate::ctl::DEFAULT_TIMEOUT,
            security,
            None,
        );
        assert_eq!(client.unwrap().endpoints(), vec!["https://n1:7001"]);
    }
}
