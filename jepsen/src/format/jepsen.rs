//! The two formats of published Jepsen histories.

use super::edn::{self, Edn};
use super::{completion_value, RawEvent};
use crate::history::{Event, EventType, Function};

/// `INFO  jepsen.util - PROCESS :TYPE :F VALUE`, fields separated by tabs or
/// spaces; `VALUE` is EDN (`nil`, `4`, `[1 2]`, `:timed-out`). One register,
/// so the key is `""`.
pub(crate) fn parse_etcd_line(line: &str) -> Result<RawEvent, String> {
    const SHAPE: &str = "expected `INFO  jepsen.util - PROCESS :TYPE :F VALUE`";
    let mut rest = line;
    let mut fields = [""; 6];
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let [info, logger, dash, process, kind, f] = fields;
    if info != "INFO" || logger != "jepsen.util" || dash != "-" {
        return Err(SHAPE.into());
    }
    let value = rest.trim();
    if value.is_empty() {
        return Err(format!("{SHAPE}; the value is missing"));
    }
    let process = process
        .parse::<u64>()
        .map_err(|_| format!("process {process:?} is not a number; {SHAPE}"))?;
    let kind = keyword(kind)
        .and_then(EventType::parse)
        .ok_or_else(|| format!("unknown type {kind:?} (expected :invoke, :ok, :fail or :info)"))?;
    let f = keyword(f)
        .and_then(Function::parse)
        .ok_or_else(|| format!("unknown function {f:?} (expected :read, :write or :cas)"))?;
    let value = completion_value(kind, edn::parse(value).and_then(|v| v.to_value()))?;
    Ok(RawEvent {
        event: Event {
            process,
            kind,
            f,
            key: String::new(),
            value,
            time: 0,
            line: 0,
        },
        time: None,
    })
}

fn keyword(s: &str) -> Option<&str> {
    s.strip_prefix(':')
}

/// `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}`,
/// with an optional `:time` (integer).
pub(crate) fn parse_kv_line(line: &str) -> Result<RawEvent, String> {
    let map = edn::parse(line)?;
    if !matches!(map, Edn::Map(_)) {
        return Err(format!(
            "expected a map {{:process ..}}, got {}",
            map.describe()
        ));
    }
    let field = |name: &str| map.get(name).ok_or_else(|| format!("missing :{name}"));
    let process = match field("process")? {
        Edn::Int(p) if *p >= 0 => *p as u64,
        other => {
            return Err(format!(
                ":process must be a non-negative integer, got {}",
                other.describe()
            ))
        }
    };
    let kind = match field("type")? {
        Edn::Keyword(k) => EventType::parse(k),
        _ => None,
    }
    .ok_or_else(|| ":type must be :invoke, :ok, :fail or :info".to_string())?;
    let f = match field("f")? {
        Edn::Keyword(k) => Function::parse(k),
        _ => None,
    }
    .ok_or_else(|| ":f must be :get, :put or :append".to_string())?;
    let key = match field("key")? {
        Edn::Str(s) => s.clone(),
        Edn::Int(i) => i.to_string(),
        other => return Err(format!(":key must be a string, got {}", other.describe())),
    };
    let value = match map.get("value") {
        Some(v) => completion_value(kind, v.to_value().map_err(|e| format!(":value: {e}")))?,
        None => crate::history::Value::Nil,
    };
    let time = match map.get("time") {
        None => None,
        Some(Edn::Int(t)) if *t >= 0 => Some(*t as u64),
        Some(other) => {
            return Err(format!(
                ":time must be a non-negative integer, got {}",
                other.describe()
            ))
        }
    };
    Ok(RawEvent {
        event: Event {
            process,
            kind,
            f,
            key,
            value,
            time: 0,
            line: 0,
        },
        time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Value;

    #[test]
    fn etcd_lines_with_tabs_or_spaces() {
        let e = parse_etcd_line("INFO  jepsen.util - 3\t:invoke\t:cas\t[2 0]")
            .unwrap()
            .event;
        assert_eq!(
            (e.process, e.kind, e.f),
            (3, EventType::Invoke, Function::Cas)
        );
        assert_eq!(e.value, Value::List(vec![Value::Int(2), Value::Int(0)]));
        let e = parse_etcd_line("INFO  jepsen.util - 4   :info   :write  :timed-out")
            .unwrap()
            .event;
        assert_eq!((e.kind, e.value), (EventType::Info, Value::Nil));
    }

    #[test]
    fn etcd_line_errors_say_what_is_wrong() {
        assert!(parse_etcd_line("WARN jepsen.core - x")
            .unwrap_err()
            .contains("expected"));
        assert!(parse_etcd_line("INFO  jepsen.util - 3\t:invoke\t:read")
            .unwrap_err()
            .contains("missing"));
        assert!(
            parse_etcd_line("INFO  jepsen.util - x\t:invoke\t:read\tnil")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(parse_etcd_line("INFO  jepsen.util - 1\t:done\t:read\tnil")
            .unwrap_err()
            .contains("unknown type"));
        // A keyword is not a value an ok write can carry.
        assert!(parse_etcd_line("INFO  jepsen.util - 1\t:ok\t:write\t:x").is_err());
    }

    #[test]
    fn kv_lines() {
        let r = parse_kv_line(r#"{:process 0, :type :ok, :f :get, :key "7", :value ""}"#).unwrap();
        assert_eq!(r.event.key, "7");
        assert_eq!(r.event.value, Value::Str(String::new()));
        assert_eq!(r.time, None);
        let err = parse_kv_line(r#"{:process 0, :type :ok, :f :get, :value ""}"#).unwrap_err();
        assert_eq!(err, "missing :key");
    }
}
