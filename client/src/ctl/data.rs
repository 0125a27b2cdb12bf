//! `ingest`, `get` and `history`.

use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bifrost_client::json::{parse_reading_lines, quality_name, reading_to_json, value_to_text};
use bifrost_client::proto::Reading;
use bifrost_client::time::{format_ts_us, parse_time_arg};
use bifrost_client::HistoryQuery;
use clap::Args;
use futures::{FutureExt, StreamExt};

use super::output::{print_json, print_line, Output, Table};
use super::{Common, ConsistencyArg, Ctx};

/// The server rejects larger ingest batches.
pub const MAX_BATCH: u32 = 10_000;

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// JSON-lines file, or - for stdin. One reading per line:
    /// {"id": "...", "tag": "...", "ts": "RFC 3339", "value": 1.5, "quality": "good"}
    pub file: PathBuf,
    /// Readings per request (at most 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    pub batch: u32,
    /// Store the valid readings of each batch and list the others (line,
    /// id, code, reason) on stderr, exiting 1 if any, instead of refusing a
    /// whole batch over one bad reading.
    #[arg(long)]
    pub partial: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Tag names.
    #[arg(required = true)]
    pub tags: Vec<String>,
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    pub tag: String,
    /// Start, inclusive: RFC 3339, `now`, or e.g. `15m ago` [default: oldest].
    #[arg(long)]
    pub from: Option<String>,
    /// End, exclusive: RFC 3339, `now`, or e.g. `5m ago` [default: newest].
    #[arg(long)]
    pub to: Option<String>,
    /// At most this many readings [default: all].
    #[arg(long)]
    pub limit: Option<u64>,
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    #[command(flatten)]
    pub common: Common,
}

/// `{"acknowledged":N,"stored":S,"duplicates":D}`, in that order.
#[derive(serde::Serialize)]
struct IngestSummary {
    acknowledged: u64,
    stored: u64,
    duplicates: u64,
    rejected: u64,
}

pub async fn ingest(ctx: &Ctx, args: IngestArgs) -> anyhow::Result<()> {
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
    // Parse everything before sending anything: a bad line stores nothing.
    let readings = parse_reading_lines(text.as_bytes()).with_context(|| name.clone())?;
    drop(text);

    let client = ctx.client()?;
    let total = readings.len();
    let (mut stored, mut duplicates, mut rejected) = (0u64, 0u64, 0u64);
    let mut last_progress = Instant::now();
    let batches: Vec<&[Reading]> = readings.chunks(args.batch as usize).collect();
    let nbatches = batches.len();
    let mut sent = 0usize;
    for (i, batch) in batches.into_iter().enumerate() {
        let sending = if args.partial {
            client.ingest_partial(batch.to_vec()).await
        } else {
            client.ingest(batch.to_vec()).await
        };
        let resp = sending.with_context(|| {
            format!(
                "batch {} of {nbatches} (readings {}..={} of {name}); {} readings acknowledged before it",
                i + 1,
                sent + 1,
                sent + batch.len(),
                stored + duplicates
            )
        })?;
        stored += resp.stored;
        duplicates += resp.duplicates;
        for r in &resp.rejected {
            let line = sent + r.index as usize + 1;
            eprintln!(
                "{name}: reading {line} (id {:?}) not stored: {}: {}",
                r.id, r.code, r.reason
            );
        }
        rejected += resp.rejected.len() as u64;
        sent += batch.len();
        if last_progress.elapsed() >= Duration::from_secs(1) && i + 1 < nbatches {
            eprintln!("ingest: {sent}/{total} readings sent");
            last_progress = Instant::now();
        }
    }
    let acknowledged = stored + duplicates;
    match ctx.output {
        Output::Json => print_json(&IngestSummary {
            acknowledged,
            stored,
            duplicates,
            rejected,
        })?,
        Output::Text | Output::Csv if args.partial => print_line(format_args!(
            "acknowledged {acknowledged} (stored {stored}, duplicates {duplicates}), rejected {rejected}"
        ))?,
        Output::Text | Output::Csv => print_line(format_args!(
            "acknowledged {acknowledged} (stored {stored}, duplicates {duplicates})"
        ))?,
    }
    if rejected > 0 {
        anyhow::bail!("{rejected} of {total} readings were not stored (listed above)");
    }
    Ok(())
}

pub async fn get(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let readings = client
        .get_current(args.tags.clone(), args.consistency.into())
        .await?;
    match ctx.output {
        Output::Json => print_json(&readings.iter().map(reading_to_json).collect::<Vec<_>>())?,
        Output::Text | Output::Csv => {
            let mut t = Table::new(&["TAG", "VALUE", "QUALITY", "TS", "REVISION"]);
            for tag in &args.tags {
                match readings.iter().find(|r| &r.tag == tag) {
                    Some(r) => t.row(vec![
                        r.tag.clone(),
                        value_to_text(r.value.as_ref()),
                        quality_text(r),
                        format_ts_us(r.ts_us),
                        r.revision.to_string(),
                    ]),
                    None => t.row(vec![tag.clone(), "(no value)".into()]),
                }
            }
            t.print()?;
        }
    }
    Ok(())
}

pub async fn history(ctx: &Ctx, args: HistoryArgs) -> anyhow::Result<()> {
    let from_us = args
        .from
        .as_deref()
        .map(parse_time_arg)
        .transpose()
        .context("--from")?;
    let to_us = args
        .to
        .as_deref()
        .map(parse_time_arg)
        .transpose()
        .context("--to")?;
    if let (Some(f), Some(t)) = (from_us, to_us) {
        if f >= t {
            anyhow::bail!(
                "--from ({}) must be before --to ({})",
                format_ts_us(f),
                format_ts_us(t)
            );
        }
    }
    let client = ctx.client()?;
    let mut stream = client
        .history(HistoryQuery {
            tag: args.tag,
            from_us,
            to_us,
            limit: args.limit.unwrap_or(0),
            consistency: args.consistency.into(),
        })
        .await?;

    // Buffered, but flushed whenever the stream has to wait for the server,
    // so output appears chunk by chunk while a long history streams.
    let mut out = BufWriter::new(io::stdout());
    if ctx.output != Output::Json {
        writeln!(
            out,
            "{:<27}  {:<20}  {:<16}  REVISION",
            "TS", "VALUE", "QUALITY"
        )?;
    }
    loop {
        let next = match stream.next().now_or_never() {
            Some(item) => item,
            None => {
                out.flush()?;
                stream.next().await
            }
        };
        let Some(item) = next else { break };
        let r = item?;
        match ctx.output {
            Output::Json => {
                serde_json::to_writer(&mut out, &reading_to_json(&r))?;
                writeln!(out)?;
            }
            Output::Text | Output::Csv => writeln!(
                out,
                "{:<27}  {:<20}  {:<16}  {}",
                format_ts_us(r.ts_us),
                value_to_text(r.value.as_ref()),
                quality_text(&r),
                r.revision
            )?,
        }
    }
    out.flush()?;
    Ok(())
}

/// `good`, or `bad:comm_failure` when there is a reason.
fn quality_text(r: &Reading) -> String {
    let q = r.quality.clone().unwrap_or_default();
    if q.reason.is_empty() {
        quality_name(q.level)
    } else {
        format!("{}:{}", quality_name(q.level), q.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_summary_json_is_in_the_documented_order() {
        let s = IngestSummary {
            acknowledged: 5,
            stored: 3,
            duplicates: 2,
            rejected: 1,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"acknowledged":5,"stored":3,"duplicates":2,"rejected":1}"#
        );
    }
}
