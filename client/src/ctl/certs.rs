//! `certs init|rotate|user`: a cluster's TLS certificates, made offline in a
//! directory (no node is asked). The files and their layout are
//! `bifrost_tls::certs`'; this module parses the flags and prints what was
//! written.

use std::path::PathBuf;

use anyhow::Context;
use bifrost_tls::certs::{CertDir, HostList, NodeSpec, LEAF_DAYS};
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{print_json, print_line, Output};
use super::Ctx;

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Make a new cluster CA in DIR, a certificate for each node and one
    /// for user `admin`. Refuses a directory that already holds a CA.
    Init(InitArgs),
    /// Replace a node's key and certificate (signed by DIR's CA). Copy
    /// them to the node: it reloads them on SIGHUP or when the files
    /// change, without a restart.
    Rotate(RotateArgs),
    /// Make a client certificate for a user (signed by DIR's CA).
    User(UserArgs),
}

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Directory for the CA, node and user files (made 0700).
    pub dir: PathBuf,
    /// Nodes as ID=HOST[+HOST...],... : the names and addresses clients
    /// and peers reach each node at (e.g. 1=n1+10.0.0.11,2=n2+10.0.0.12).
    #[arg(long)]
    pub nodes: String,
    /// Days the node and user certificates are valid (the CA: 10 years).
    #[arg(long, default_value_t = LEAF_DAYS)]
    pub days: u32,
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The directory `certs init` made (it holds the CA key).
    pub dir: PathBuf,
    /// The node whose certificate is replaced.
    #[arg(long)]
    pub node: u64,
    /// New HOST[+HOST...] for it [default: those of its current certificate].
    #[arg(long)]
    pub hosts: Option<String>,
    /// Days the new certificate is valid.
    #[arg(long, default_value_t = LEAF_DAYS)]
    pub days: u32,
}

#[derive(Args, Debug)]
pub struct UserArgs {
    /// The directory `certs init` made (it holds the CA key).
    pub dir: PathBuf,
    /// The user the certificate names.
    pub name: String,
    /// Days the certificate is valid.
    #[arg(long, default_value_t = LEAF_DAYS)]
    pub days: u32,
}

pub fn certs(ctx: &Ctx, cmd: CertsCmd) -> anyhow::Result<()> {
    let written = match cmd {
        CertsCmd::Init(a) => {
            let nodes = NodeSpec::parse_list(&a.nodes).context("--nodes")?;
            CertDir::new(a.dir).init(&nodes, "admin", a.days)?
        }
        CertsCmd::Rotate(a) => {
            let hosts = match a.hosts {
                Some(h) => Some(h.parse::<HostList>().context("--hosts")?),
                None => None,
            };
            CertDir::new(a.dir).rotate_node(a.node, hosts, a.days)?
        }
        CertsCmd::User(a) => CertDir::new(a.dir).issue_user(&a.name, a.days)?,
    };
    match ctx.output {
        Output::Json => print_json(&json!({ "written": written }))?,
        Output::Text | Output::Csv => {
            for path in written {
                print_line(format!("wrote {}", path.display()))?;
            }
        }
    }
    Ok(())
}
