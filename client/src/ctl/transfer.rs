//! `import` and `export`: all devices and tags as one JSON document (see
//! [`bifrost_client::document`] for its shape).
//!
//! Secret labels (last dot-part `password`, `private_key` or `secret`, e.g.
//! `opcua.password`) are never shown by the cluster: `export` writes the
//! placeholder `"(secret)"` as their value. `import` sends a placeholder
//! back as is, which keeps the secret the cluster has for that device and
//! label, and is refused (nothing imported) where it has none, as in a new
//! cluster. So `import` takes the values with `--secret DEVICE:LABEL=VALUE`
//! (repeatable) and `--secrets-file FILE` (`{"DEVICE": {"LABEL":
//! "VALUE"}}`), a flag winning over the file; they replace the document's
//! value, placeholder or not ([`super::secrets`]). A secret given for a
//! device not in the document or for a label that is not a secret label is
//! an error; a placeholder left after that gets one `note:` line on stderr
//! per label, and the import goes on.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use bifrost_client::document::{parse_config_document, ConfigDocument};
use bifrost_client::Consistency;
use clap::Args;
use serde_json::json;

use super::output::{print_json, print_line, Output};
use super::secrets;
use super::session::Secret;
use super::{Common, Ctx};

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The document, or - for stdin: {"devices": [...], "tags": [...]} with
    /// the fields of `device list` / `tag list --output json`.
    pub file: PathBuf,
    /// The value of a secret label (last dot-part password, private_key or
    /// secret), replacing the document's (an export has "(secret)" there):
    /// DEVICE:LABEL=VALUE, e.g. plc1:opcua.password=..., repeatable. Wins
    /// over --secrets-file. Visible to other local users; prefer the file.
    #[arg(long = "secret", value_name = "DEVICE:LABEL=VALUE")]
    pub secrets: Vec<Secret>,
    /// JSON file of secret label values: {"DEVICE": {"LABEL": "VALUE"}}.
    #[arg(long, value_name = "FILE")]
    pub secrets_file: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Secret labels (opcua.password, ...) are exported as the placeholder \"(secret)\"; \
                  give the values back with `import --secret` or `--secrets-file`."
)]
pub struct ExportArgs {
    /// Write the document here (replaced whole) [default: stdout, also for -].
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub async fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<()> {
    let (name, text) = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        ("stdin".to_string(), s)
    } else {
        let s = std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?;
        (args.file.display().to_string(), s)
    };
    // Checked whole before anything is sent; the server then imports all or
    // nothing.
    let mut doc = parse_config_document(&text).with_context(|| name.clone())?;
    let file_secrets = match &args.secrets_file {
        None => Vec::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading --secrets-file {}", path.display()))?;
            secrets::parse_secrets_file(&path.display().to_string(), &text)?
        }
    };
    let given = secrets::gather(&args.secrets, file_secrets)?;
    for note in secrets::apply(&mut doc.devices, given).with_context(|| name.clone())? {
        eprintln!("note: {note}");
    }
    let (devices, tags) = if doc.devices.is_empty() && doc.tags.is_empty() {
        (0, 0)
    } else {
        let r = ctx
            .client()?
            .import(doc.devices, doc.tags)
            .await
            .with_context(|| format!("importing {name} (nothing was imported)"))?;
        (r.devices, r.tags)
    };
    match ctx.output {
        Output::Json => print_json(&json!({"devices": devices, "tags": tags}))?,
        Output::Text | Output::Csv => print_line(format_args!(
            "imported {devices} device(s) and {tags} tag(s) from {name}"
        ))?,
    }
    Ok(())
}

/// Devices and tags as the list commands show them, sorted by name. Devices
/// are listed again if a tag names a device the first listing lacked (one
/// was created in between), so the document imports on its own.
async fn snapshot(ctx: &Ctx) -> anyhow::Result<ConfigDocument> {
    let client = ctx.client()?;
    let mut devices = client.list_devices(Consistency::Linearizable).await?;
    let mut tags = client.list_tags(None, Consistency::Linearizable).await?;
    let known = |devices: &[bifrost_client::proto::Device], device: &str| {
        devices.iter().any(|d| d.name == device)
    };
    if tags.iter().any(|t| !known(&devices, &t.device)) {
        devices = client.list_devices(Consistency::Linearizable).await?;
    }
    devices.sort_by(|x, y| x.name.cmp(&y.name));
    tags.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(ConfigDocument { devices, tags })
}

pub async fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<()> {
    let doc = snapshot(ctx).await?;
    let mut text = doc.to_json_pretty();
    text.push('\n');
    match args.file.as_deref().filter(|f| f.as_os_str() != "-") {
        None => io::stdout().lock().write_all(text.as_bytes())?,
        Some(path) => {
            write_replacing(path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            let (d, t) = (doc.devices.len(), doc.tags.len());
            match ctx.output {
                Output::Json => print_json(
                    &json!({"devices": d, "tags": t, "file": path.display().to_string()}),
                )?,
                Output::Text | Output::Csv => print_line(format_args!(
                    "exported {d} device(s) and {t} tag(s) to {}",
                    path.display()
                ))?,
            }
        }
    }
    Ok(())
}

/// Writes a temp file beside `path` and renames it over `path`, so a reader
/// never sees half a document and a failed export leaves the old one.
fn write_replacing(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    // Keep the permissions of the file replaced; a new one gets rw-r--r--
    // rather than the temp file's rw-------.
    let perms = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => {
            use std::os::unix::fs::PermissionsExt;
            std::fs::Permissions::from_mode(0o644)
        }
    };
    tmp.as_file().set_permissions(perms)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plant.json");
        std::fs::write(&path, "old and longer than the new content").unwrap();
        write_replacing(&path, b"{}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
