//! Printing: text tables for people, JSON for programs.
//!
//! All output goes through `io::Write` with `?`, never `println!`, so a closed
//! pipe ends the command quietly instead of panicking.

use std::io::{self, Write};
use std::time::Duration;

use bifrost_client::document::{DeviceJson, TagJson};
use bifrost_client::proto::{Device, Member, Tag};
use clap::ValueEnum;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Text tables for people (also accepted as `table`).
    #[value(alias = "table")]
    Text,
    Json,
    /// Comma-separated values with a header row (`query`; other commands
    /// print text).
    Csv,
}

/// Prints one JSON document on one line.
pub fn print_json(v: &impl serde::Serialize) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)
}

/// Prints one line of text.
pub fn print_line(line: impl std::fmt::Display) -> io::Result<()> {
    writeln!(io::stdout().lock(), "{line}")
}

/// A left-aligned text table with a header row.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) -> io::Result<()> {
        io::stdout().lock().write_all(self.render().as_bytes())
    }
}

/// A millisecond count as a humantime duration (`1s`, `500ms`).
pub fn ms(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

/// `{"id","addr","role"}`, in that order.
#[derive(serde::Serialize)]
pub struct MemberJson<'a> {
    pub id: u64,
    pub addr: &'a str,
    pub peer_addr: &'a str,
    pub role: &'a str,
}

pub fn member_json(m: &Member) -> MemberJson<'_> {
    MemberJson {
        id: m.id,
        addr: &m.addr,
        peer_addr: &m.peer_addr,
        role: &m.role,
    }
}

pub fn members_table(members: &[Member]) -> Table {
    let mut t = Table::new(&["ID", "ADDR", "PEER", "ROLE"]);
    for m in members {
        t.row(vec![
            m.id.to_string(),
            m.addr.clone(),
            m.peer_addr.clone(),
            m.role.clone(),
        ]);
    }
    t
}

/// The shape of `device list --output json` and of export documents.
pub fn device_json(d: &Device) -> DeviceJson<'_> {
    DeviceJson::from(d)
}

pub fn devices_table(devices: &[Device]) -> Table {
    let mut t = Table::new(&[
        "NAME", "PROTOCOL", "ENDPOINT", "UNIT", "INTERVAL", "TIMEOUT", "RETRIES", "ENABLED",
        "REVISION", "LABELS",
    ]);
    for d in devices {
        let mut labels: Vec<String> = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        t.row(vec![
            d.name.clone(),
            d.protocol.clone(),
            d.endpoint.clone(),
            d.unit_id.to_string(),
            ms(d.poll_interval_ms),
            ms(d.timeout_ms),
            d.retries.to_string(),
            if d.enabled { "yes" } else { "no" }.to_string(),
            d.revision.to_string(),
            labels.join(","),
        ]);
    }
    t
}

/// The shape of `tag list --output json` and of export documents.
pub fn tag_json(t: &Tag) -> TagJson<'_> {
    TagJson::from(t)
}

pub fn tags_table(tags: &[Tag]) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "DEVICE",
        "ADDRESS",
        "TYPE",
        "SCALE",
        "DEADBAND",
        "UNITS",
        "WRITABLE",
        "REVISION",
        "DESCRIPTION",
    ]);
    for tag in tags {
        let scale = tag
            .scale
            .as_ref()
            .map(|s| format!("{}:{}:{}:{}", s.raw_lo, s.raw_hi, s.eng_lo, s.eng_hi))
            .unwrap_or_else(|| "-".into());
        let deadband = tag
            .deadband
            .as_ref()
            .map(|d| format!("{}{}", d.value, if d.percent { "%" } else { "" }))
            .unwrap_or_else(|| "-".into());
        t.row(vec![
            tag.name.clone(),
            tag.device.clone(),
            tag.address.clone(),
            tag.data_type.clone(),
            scale,
            deadband,
            tag.units.clone(),
            if tag.writable { "yes" } else { "no" }.to_string(),
            tag.revision.to_string(),
            tag.description.clone(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use bifrost_client::proto::{Deadband, Scale};
    use serde_json::{json, Value as Json};

    #[test]
    fn table_aligns_columns_and_trims_line_ends() {
        let mut t = Table::new(&["ID", "ADDR", "ROLE"]);
        t.row(vec!["1".into(), "127.0.0.1:7001".into(), "leader".into()]);
        t.row(vec!["12".into(), "h:1".into(), "".into()]);
        assert_eq!(
            t.render(),
            "ID  ADDR            ROLE\n1   127.0.0.1:7001  leader\n12  h:1\n"
        );
    }

    #[test]
    fn tag_json_has_null_scale_when_unset_and_numbers_when_set() {
        let mut tag = Tag {
            name: "a".into(),
            data_type: "f64".into(),
            ..Default::default()
        };
        let j = serde_json::to_value(tag_json(&tag)).unwrap();
        assert_eq!(j["scale"], Json::Null);
        assert_eq!(j["deadband"], Json::Null);
        tag.scale = Some(Scale {
            raw_lo: 0.0,
            raw_hi: 4095.0,
            eng_lo: -10.0,
            eng_hi: 10.0,
        });
        tag.deadband = Some(Deadband {
            value: 2.5,
            percent: true,
        });
        let j = serde_json::to_value(tag_json(&tag)).unwrap();
        assert_eq!(
            j["scale"],
            json!({"raw_lo": 0.0, "raw_hi": 4095.0, "eng_lo": -10.0, "eng_hi": 10.0})
        );
        assert_eq!(j["deadband"], json!({"value": 2.5, "percent": true}));
    }

    #[test]
    fn durations_print_in_human_units() {
        assert_eq!(ms(1000), "1s");
        assert_eq!(ms(500), "500ms");
        assert_eq!(ms(90_000), "1m 30s");
    }
}
