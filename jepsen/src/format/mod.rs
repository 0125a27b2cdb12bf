//! Readers for history files, one event per line. Blank lines are skipped;
//! anything else that does not parse is an [`Error::Input`] naming the
//! 1-based line.
//!
//! - [`Format::Jsonl`], our own harness's format (see [`jsonl`]).
//! - [`Format::EtcdJepsen`], the log lines of Jepsen's old etcd test:
//!   `INFO  jepsen.util - 3 :invoke :read nil`, tab-separated (one register).
//! - [`Format::Kv`], Jepsen's EDN history maps, one per line:
//!   `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`.
//!
//! Event times are optional in every format; a history with none uses line
//! numbers (recorded order), and a history must not mix the two.

pub mod edn;
pub mod jepsen;
pub mod jsonl;

use std::fmt;

use crate::history::{Event, History, Value};
use crate::model::ModelKind;
use crate::{Error, Result};

/// A history file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    EtcdJepsen,
    Kv,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Jsonl, Format::EtcdJepsen, Format::Kv];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::EtcdJepsen => "etcd-jepsen",
            Format::Kv => "kv",
        }
    }

    pub fn parse_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The model histories of this format are checked against; `None` if it
    /// depends on the functions used (JSON lines).
    pub fn model(self) -> Option<ModelKind> {
        match self {
            Format::Jsonl => None,
            Format::EtcdJepsen => Some(ModelKind::Register),
            Format::Kv => Some(ModelKind::Kv),
        }
    }

    /// Reads a whole history.
    pub fn parse(self, text: &str) -> Result<History> {
        let mut builder = Builder::default();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let parsed = match self {
                Format::Jsonl => jsonl::parse_line(line),
                Format::EtcdJepsen => jepsen::parse_etcd_line(line),
                Format::Kv => jepsen::parse_kv_line(line),
            };
            let raw = parsed.map_err(|message| Error::input(line_no, message))?;
            builder.push(raw, line_no)?;
        }
        Ok(builder.history)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An event as a line parser sees it: everything but the line number, and
/// the time only if the line had one.
#[derive(Debug)]
pub(crate) struct RawEvent {
    pub event: Event,
    pub time: Option<u64>,
}

#[derive(Default)]
struct Builder {
    history: History,
    timed: Option<bool>,
}

impl Builder {
    fn push(&mut self, raw: RawEvent, line: usize) -> Result<()> {
        let has_time = raw.time.is_some();
        match self.timed {
            None => self.timed = Some(has_time),
            Some(timed) if timed != has_time => {
                return Err(Error::input(
                    line,
                    if timed {
                        "this event has no time, but earlier ones do"
                    } else {
                        "this event has a time, but earlier ones do not"
                    },
                ))
            }
            Some(_) => {}
        }
        let mut event = raw.event;
        event.line = line;
        event.time = raw.time.unwrap_or(line as u64);
        self.history.events.push(event);
        Ok(())
    }
}

/// The value of a completion that is only informational (`fail`, `info`):
/// Jepsen puts things like `:timed-out` there, which are not values.
pub(crate) fn completion_value(
    kind: crate::history::EventType,
    v: std::result::Result<Value, String>,
) -> std::result::Result<Value, String> {
    use crate::history::EventType;
    match kind {
        EventType::Invoke | EventType::Ok => v,
        EventType::Fail | EventType::Info => Ok(v.unwrap_or(Value::Nil)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_line_numbers_when_absent_and_blank_lines_are_skipped() {
        let h = Format::Jsonl
            .parse("{\"process\":1,\"type\":\"invoke\",\"f\":\"read\"}\n\n{\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":2}\n")
            .unwrap();
        assert_eq!(h.events.len(), 2);
        assert_eq!((h.events[0].time, h.events[1].time), (1, 3));
        assert_eq!(h.events[1].line, 3);
    }

    #[test]
    fn mixing_timed_and_untimed_events_is_an_error() {
        let err = Format::Jsonl
            .parse("{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"time\":5}\n{\"process\":1,\"type\":\"ok\",\"f\":\"read\"}\n")
            .unwrap_err();
        assert_eq!(err.line(), 2);
    }
}
