//! `query`, `watch` and `retention`.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use anyhow::Context;
use bifrost_client::json::reading_to_json_line;
use bifrost_client::proto::{cell::Kind, Cell, WatchRequest};
use bifrost_client::time::format_ts_us;
use bifrost_client::WatchEvent;
use clap::Args;
use serde_json::Value as Json;

use super::output::{print_json, print_line, Output, Table};
use super::{Common, ConsistencyArg, Ctx};

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The query, e.g. "SELECT tag, avg(value) FROM readings WHERE tag LIKE
    /// 'line1/%' AND ts >= now() - INTERVAL '1 hour' GROUP BY tag".
    pub sql: String,
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    /// Print the rows read and the time taken on stderr.
    #[arg(long)]
    pub stats: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct WatchArgs {
    /// Glob patterns over tag names (`*` within a segment, `**` across
    /// segments); none and no --tag: every tag.
    pub patterns: Vec<String>,
    /// Exact tag names (repeatable).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Resume after this revision (the last one received). Default: only
    /// readings committed from now on.
    #[arg(long)]
    pub from_revision: Option<u64>,
    /// Exit after this many readings.
    #[arg(long)]
    pub count: Option<u64>,
    /// Also print progress messages ({"progress": REVISION}) as lines.
    #[arg(long)]
    pub progress: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RetentionArgs {
    /// New retention, e.g. 30d, 12h; `0` or `forever` keeps everything.
    /// Without it, shows the retention and the oldest revision held.
    pub retention: Option<String>,
    /// Also (or only) set how long audit records are kept, e.g. 400d; `0`
    /// or `forever` keeps them all.
    #[arg(long)]
    pub audit: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// A cell as text: NULL, timestamps in RFC 3339.
fn cell_text(c: &Cell) -> String {
    match &c.kind {
        None => "NULL".into(),
        Some(Kind::BoolValue(b)) => b.to_string(),
        Some(Kind::IntValue(i)) => i.to_string(),
        Some(Kind::FloatValue(f)) => f.to_string(),
        Some(Kind::TextValue(t)) => t.clone(),
        Some(Kind::TimestampUs(us)) => format_ts_us(*us),
    }
}

fn cell_json(c: &Cell) -> Json {
    match &c.kind {
        None => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::IntValue(i)) => Json::from(*i),
        Some(Kind::FloatValue(f)) => Json::from(*f),
        Some(Kind::TextValue(t)) => Json::String(t.clone()),
        Some(Kind::TimestampUs(us)) => Json::String(format_ts_us(*us)),
    }
}

/// Object keys for a query's columns: the column names, with a repeated name
/// (`SELECT value, value`) suffixed `_2`, `_3`, ... so no key is lost.
fn json_keys(names: &[String]) -> Vec<String> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    names
        .iter()
        .map(|n| {
            let count = seen.entry(n.as_str()).or_insert(0);
            *count += 1;
            if *count == 1 {
                n.clone()
            } else {
                format!("{n}_{count}")
            }
        })
        .collect()
}

/// One row as a JSON object whose keys keep the column order (a
/// `serde_json::Map` would sort them).
fn row_json(keys: &[String], cells: &[Cell]) -> String {
    let fields: Vec<String> = keys
        .iter()
        .zip(cells)
        .map(|(k, c)| format!("{}:{}", Json::String(k.clone()), cell_json(c)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

pub async fn query(ctx: &Ctx, args: QueryArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let mut rows = client.query(&args.sql, args.consistency.into()).await?;
    let names: Vec<String> = rows.columns.iter().map(|c| c.name.clone()).collect();
    let mut out = BufWriter::new(io::stdout());
    match ctx.output {
        Output::Text => {
            let header: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut table = Table::new(&header);
            let mut n = 0u64;
            while let Some(r) = rows.next().await? {
                table.row(r.cells.iter().map(cell_text).collect());
                n += 1;
            }
            out.write_all(table.render().as_bytes())?;
            writeln!(out, "({n} row{})", if n == 1 { "" } else { "s" })?;
        }
        Output::Json => {
            // JSON lines: one object per row, keyed by column name, in the
            // SELECT's column order.
            let keys = json_keys(&names);
            while let Some(r) = rows.next().await? {
                writeln!(out, "{}", row_json(&keys, &r.cells))?;
            }
        }
        Output::Csv => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(&names)?;
            while let Some(r) = rows.next().await? {
                w.write_record(r.cells.iter().map(|c| match &c.kind {
                    None => String::new(),
                    _ => cell_text(c),
                }))?;
            }
            w.flush()?;
        }
    }
    out.flush()?;
    if args.stats {
        if let Some(s) = rows.stats() {
            eprintln!(
                "rows: {}  scanned: {}  server time: {:.3} ms",
                s.rows,
                s.scanned,
                s.elapsed_us as f64 / 1000.0
            );
        }
    }
    Ok(())
}

pub async fn watch(ctx: &Ctx, args: WatchArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let mut w = client.watcher(WatchRequest {
        tags: args.tags,
        patterns: args.patterns,
        from_revision: args.from_revision,
        progress_ms: 0,
    });
    let mut seen = 0u64;
    let mut out = io::stdout();
    loop {
        if args.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        match w.next().await? {
            WatchEvent::Started {
                node_id,
                endpoint,
                revision,
                ..
            } => eprintln!("watching on node {node_id} ({endpoint}) after revision {revision}"),
            WatchEvent::Readings { readings, .. } => {
                let mut lock = out.lock();
                for r in &readings {
                    if args.count.is_some_and(|c| seen >= c) {
                        break;
                    }
                    writeln!(lock, "{}", reading_to_json_line(r))?;
                    seen += 1;
                }
                lock.flush()?;
            }
            WatchEvent::Progress { revision } => {
                if args.progress {
                    writeln!(out, "{{\"progress\":{revision}}}")?;
                    out.flush()?;
                }
            }
        }
    }
}

/// `0`/`forever` or a humantime duration, in seconds.
fn parse_retention(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    if s == "0" || s.eq_ignore_ascii_case("forever") {
        return Ok(0);
    }
    let d = humantime::parse_duration(s)
        .with_context(|| format!("retention '{s}': expected e.g. 30d, 12h, or 0 for forever"))?;
    if d < Duration::from_secs(1) {
        anyhow::bail!("retention '{s}': must be at least 1s (or 0 for forever)");
    }
    Ok(d.as_secs())
}

fn retention_text(seconds: u64) -> String {
    if seconds == 0 {
        "forever".into()
    } else {
        humantime::format_duration(Duration::from_secs(seconds)).to_string()
    }
}

pub async fn retention(ctx: &Ctx, args: RetentionArgs) -> anyhow::Result<()> {
    let client = ctx.client()?;
    if let Some(r) = &args.retention {
        let seconds = parse_retention(r)?;
        client.set_retention(seconds).await?;
    }
    if let Some(r) = &args.audit {
        let seconds = parse_retention(r)?;
        client.set_audit_retention(seconds).await?;
    }
    let s = client.status().await?;
    match ctx.output {
        Output::Json => print_json(&serde_json::json!({
            "retention_seconds": s.retention_seconds,
            "audit_retention_seconds": s.audit_retention_seconds,
            "oldest_revision": s.oldest_revision,
            "revision": s.revision,
        }))?,
        Output::Text | Output::Csv => print_line(format!(
            "retention: {}\naudit retention: {}\noldest revision held: {}\nnewest revision: {}",
            retention_text(s.retention_seconds),
            retention_text(s.audit_retention_seconds),
            s.oldest_revision,
            s.revision
        ))?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_values() {
        assert_eq!(parse_retention("0").unwrap(), 0);
        assert_eq!(parse_retention("forever").unwrap(), 0);
        assert_eq!(parse_retention("30d").unwrap(), 30 * 86400);
        assert_eq!(parse_retention("90s").unwrap(), 90);
        let e = parse_retention("soon").unwrap_err().to_string();
        assert!(e.contains("retention 'soon'"), "{e}");
        assert!(parse_retention("500ms").is_err());
    }

    #[test]
    fn json_rows_keep_the_select_column_order() {
        let names: Vec<String> = ["value", "tag", "ts", "value"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cells = [
            Cell {
                kind: Some(Kind::FloatValue(2.5)),
            },
            Cell {
                kind: Some(Kind::TextValue("a/\"b\"".into())),
            },
            Cell { kind: None },
            Cell {
                kind: Some(Kind::IntValue(7)),
            },
        ];
        let line = row_json(&json_keys(&names), &cells);
        assert_eq!(
            line,
            r#"{"value":2.5,"tag":"a/\"b\"","ts":null,"value_2":7}"#
        );
        let parsed: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["value_2"], Json::from(7));
    }

    #[test]
    fn cells_as_text_and_json() {
        let ts = Cell {
            kind: Some(Kind::TimestampUs(1_700_000_000_123_456)),
        };
        assert_eq!(cell_text(&ts), "2023-11-14T22:13:20.123456Z");
        assert_eq!(cell_json(&ts), Json::String(cell_text(&ts)));
        let null = Cell { kind: None };
        assert_eq!(cell_text(&null), "NULL");
        assert_eq!(cell_json(&null), Json::Null);
        let f = Cell {
            kind: Some(Kind::FloatValue(1.5)),
        };
        assert_eq!(cell_json(&f), Json::from(1.5));
    }
}
