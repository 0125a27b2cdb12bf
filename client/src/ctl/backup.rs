//! `backup FILE`: a consistent backup of the cluster's replicated state,
//! taken by the node asked (the first of `--endpoints` that answers) while
//! writes go on, and written to FILE only once all of it has arrived and
//! its BLAKE3 is the one the node computed. Meanwhile it is `FILE.partial`,
//! removed on any failure. `bifrost restore FILE` seeds a new cluster from
//! it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bifrost_client::proto::BackupSummary;
use clap::Args;
use futures::StreamExt;
use serde_json::json;

use super::output::{print_json, print_line, Output};
use super::{Common, Ctx};

/// Time between progress lines on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Where to write the backup (a zstd-compressed tar: `tar --zstd -tvf`
    /// lists it).
    pub file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub common: Common,
}

pub async fn backup(ctx: &Ctx, args: BackupArgs) -> anyhow::Result<()> {
    if args.file.exists() && !args.force {
        bail!(
            "{} exists: give another file, or --force to replace it",
            args.file.display()
        );
    }
    let partial = partial_path(&args.file);
    let result = receive(ctx, &partial).await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    fs::rename(&partial, &args.file)
        .with_context(|| format!("renaming {} to {}", partial.display(), args.file.display()))?;
    sync_parent(&args.file)?;
    report(ctx.output, &args.file, &summary)
}

/// `FILE.partial`, beside FILE.
fn partial_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Streams the backup into `path`, checks its length and hash against
/// the summary, and syncs it.
async fn receive(ctx: &Ctx, path: &Path) -> anyhow::Result<BackupSummary> {
    let client = ctx.client()?;
    let mut stream = client.backup().await?;
    let mut file =
        fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut received = 0u64;
    let (started, mut said) = (Instant::now(), Instant::now());
    let summary = loop {
        let Some(chunk) = stream.next().await else {
            bail!("the node ended the backup before it was complete ({received} bytes received)");
        };
        let chunk = chunk.context("the backup stream failed")?;
        file.write_all(&chunk.data)
            .with_context(|| format!("writing {}", path.display()))?;
        hasher.update(&chunk.data);
        received += chunk.data.len() as u64;
        if let Some(summary) = chunk.summary {
            break summary;
        }
        if said.elapsed() >= PROGRESS_EVERY {
            said = Instant::now();
            eprintln!(
                "backup: {:.1} MB received ({:.0} s)",
                received as f64 / 1e6,
                started.elapsed().as_secs_f64()
            );
        }
    };
    let hash = hasher.finalize().to_hex().to_string();
    if received != summary.archive_bytes || hash != summary.blake3 {
        bail!(
            "the backup received ({received} bytes, BLAKE3 {hash}) is not what node {} sent \
             ({} bytes, BLAKE3 {})",
            summary.node_id,
            summary.archive_bytes,
            summary.blake3
        );
    }
    file.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(summary)
}

fn sync_parent(file: &Path) -> anyhow::Result<()> {
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", parent.display()))
}

fn report(output: Output, file: &Path, s: &BackupSummary) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&json!({
            "file": file.display().to_string(),
            "node_id": s.node_id,
            "log_index": s.log_index,
            "log_term": s.log_term,
            "revision": s.revision,
            "files": s.files,
            "state_bytes": s.state_bytes,
            "archive_bytes": s.archive_bytes,
            "blake3": s.blake3,
            "taken_at_us": s.taken_at_us,
        }))?,
        Output::Text | Output::Csv => print_line(format!(
            "backup of node {} at log index {} (term {}), revision {}: {} files, {:.1} MB of \
             state in {:.1} MB, BLAKE3 {}; written to {}",
            s.node_id,
            s.log_index,
            s.log_term,
            s.revision,
            s.files,
            s.state_bytes as f64 / 1e6,
            s.archive_bytes as f64 / 1e6,
            s.blake3,
            file.display()
        ))?,
    }
    Ok(())
}
