//! `write` (a value to a device, through the node that polls it) and
//! `browse` (an OPC UA server's address space, optionally creating tags).

use anyhow::bail;
use bifrost_client::json::{value_to_json, value_to_text};
use bifrost_client::proto::{value::Kind, BrowseResponse, Value, WriteTagResponse};
use clap::Args;
use serde_json::json;

use super::output::{print_json, print_line, Output, Table};
use super::{Common, Ctx, QuietFailure};

#[derive(Args, Debug)]
pub struct WriteArgs {
    /// Tag to write (it must be writable).
    pub tag: String,
    /// `true`/`false` is a bool; an integer (decimal, or hex as 0x1F) an
    /// integer; a number with a point or exponent a float; anything else a
    /// string. The server converts it to the tag's type or refuses it.
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Send VALUE as a string, whatever it looks like.
    #[arg(long)]
    pub string: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct BrowseArgs {
    /// OPC UA server, opc.tcp://HOST:PORT[/path].
    pub endpoint: String,
    /// NodeId whose children to list, e.g. ns=2;s=Line1 [default: the Objects folder].
    pub node: Option<String>,
    /// Create (or replace) a tag on this existing device for every variable
    /// listed that has a Bifrost type.
    #[arg(long, value_name = "DEVICE")]
    pub create_tags: Option<String>,
    /// Name the created tags PREFIX/BROWSE_NAME [default: the device name].
    #[arg(long, requires = "create_tags")]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

/// Parses a VALUE argument; see [`WriteArgs::value`].
pub fn parse_write_value(text: &str, force_string: bool) -> Result<Value, String> {
    let kind = if force_string {
        Kind::StringValue(text.to_string())
    } else {
        guess_kind(text)?
    };
    Ok(Value { kind: Some(kind) })
}

fn guess_kind(text: &str) -> Result<Kind, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") {
        return Ok(Kind::BoolValue(true));
    }
    if t.eq_ignore_ascii_case("false") {
        return Ok(Kind::BoolValue(false));
    }
    let (negative, unsigned) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let too_big =
        || format!("integer {t} does not fit in 64 bits (use --string to send it as text)");
    if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            let magnitude = i128::from_str_radix(hex, 16).map_err(|_| too_big())?;
            let v = if negative { -magnitude } else { magnitude };
            return i64::try_from(v).map(Kind::IntValue).map_err(|_| too_big());
        }
        return Ok(Kind::StringValue(text.to_string()));
    }
    if !unsigned.is_empty() && unsigned.chars().all(|c| c.is_ascii_digit()) {
        return t.parse::<i64>().map(Kind::IntValue).map_err(|_| too_big());
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() {
            return Ok(Kind::FloatValue(f));
        }
        // 1e999: a number, but none a device can hold. `inf` and `nan`
        // (no digits) are left to be strings.
        if t.chars().any(|c| c.is_ascii_digit()) {
            return Err(format!(
                "number {t} is out of range for a 64-bit float (use --string to send it as text)"
            ));
        }
    }
    Ok(Kind::StringValue(text.to_string()))
}

/// `ok: wrote TAG = V (read back V) on node N`, or the outcome and why.
pub fn write_text(tag: &str, sent: &Value, r: &WriteTagResponse) -> String {
    let v = value_to_text(Some(sent));
    let read_back = r
        .read_back
        .as_ref()
        .map(|rb| format!(" (read back {})", value_to_text(Some(rb))))
        .unwrap_or_default();
    if r.outcome == "ok" {
        let read_back = if read_back.is_empty() {
            " (no read-back)".to_string()
        } else {
            read_back
        };
        format!("ok: wrote {tag} = {v}{read_back} on node {}", r.node)
    } else {
        let why = if r.message.is_empty() {
            "no reason given".to_string()
        } else {
            r.message.clone()
        };
        format!(
            "{}: writing {tag} = {v} on node {}: {why}{read_back}",
            if r.outcome.is_empty() {
                "unknown"
            } else {
                &r.outcome
            },
            r.node
        )
    }
}

pub fn write_json(r: &WriteTagResponse) -> serde_json::Value {
    json!({
        "outcome": r.outcome,
        "message": r.message,
        "read_back": value_to_json(r.read_back.as_ref()),
        "node": r.node,
    })
}

pub async fn write(ctx: &Ctx, args: WriteArgs) -> anyhow::Result<()> {
    let value =
        parse_write_value(&args.value, args.string).map_err(|e| anyhow::anyhow!("VALUE: {e}"))?;
    let client = ctx.client()?;
    let resp = client.write_tag(&args.tag, value.clone()).await?;
    match ctx.output {
        Output::Json => print_json(&write_json(&resp))?,
        Output::Text | Output::Csv => print_line(write_text(&args.tag, &value, &resp))?,
    }
    if resp.outcome == "ok" {
        Ok(())
    } else {
        // The outcome is printed; only the exit code is left to say it.
        Err(QuietFailure.into())
    }
}

pub async fn browse(ctx: &Ctx, args: BrowseArgs) -> anyhow::Result<()> {
    if !args.endpoint.starts_with("opc.tcp://") {
        bail!(
            "endpoint {:?} is not an OPC UA URL (expected opc.tcp://HOST:PORT[/path])",
            args.endpoint
        );
    }
    let prefix = args
        .prefix
        .clone()
        .or_else(|| args.create_tags.clone())
        .unwrap_or_default();
    let create_on = args
        .create_tags
        .as_deref()
        .map(|device| (device, prefix.as_str()));
    let client = ctx.client()?;
    let resp = client
        .browse(&args.endpoint, args.node.as_deref(), create_on)
        .await?;
    match ctx.output {
        Output::Json => print_json(&browse_json(&resp, args.create_tags.is_some()))?,
        Output::Text | Output::Csv => {
            browse_table(&resp).print()?;
            if let Some(device) = &args.create_tags {
                print_line(format_args!(
                    "created {} tag(s) on device {device:?} (named {}/<name>)",
                    resp.created,
                    prefix.trim_end_matches('/')
                ))?;
            }
        }
    }
    Ok(())
}

pub fn browse_table(r: &BrowseResponse) -> Table {
    let mut t = Table::new(&["ADDRESS", "NAME", "KIND", "TYPE", "WRITABLE"]);
    for i in &r.items {
        t.row(vec![
            i.address.clone(),
            i.name.clone(),
            i.kind.clone(),
            if i.data_type.is_empty() {
                "-".into()
            } else {
                i.data_type.clone()
            },
            if i.writable { "yes" } else { "no" }.into(),
        ]);
    }
    t
}

/// A list of items; with tag creation, `{"items": [...], "created": N}`.
pub fn browse_json(r: &BrowseResponse, with_created: bool) -> serde_json::Value {
    let items: Vec<_> = r
        .items
        .iter()
        .map(|i| {
            json!({
                "address": i.address,
                "name": i.name,
                "kind": i.kind,
                "data_type": (!i.data_type.is_empty()).then_some(&i.data_type),
                "writable": i.writable,
            })
        })
        .collect();
    if with_created {
        json!({"items": items, "created": r.created})
    } else {
        json!(items)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Cli, Command};
    use super::*;
    use bifrost_client::proto::BrowseItem;
    use clap::Parser;

    fn kind(text: &str) -> Kind {
        parse_write_value(text, false).unwrap().kind.unwrap()
    }

    #[test]
    fn write_values_are_typed_by_their_look() {
        assert_eq!(kind("true"), Kind::BoolValue(true));
        assert_eq!(kind("FALSE"), Kind::BoolValue(false));
        assert_eq!(kind("42"), Kind::IntValue(42));
        assert_eq!(kind("-7"), Kind::IntValue(-7));
        assert_eq!(kind("+7"), Kind::IntValue(7));
        assert_eq!(kind("0x1F"), Kind::IntValue(31));
        assert_eq!(kind("-0x10"), Kind::IntValue(-16));
        assert_eq!(kind("9223372036854775807"), Kind::IntValue(i64::MAX));
        assert_eq!(kind("-9223372036854775808"), Kind::IntValue(i64::MIN));
        assert_eq!(kind("1.5"), Kind::FloatValue(1.5));
        assert_eq!(kind("-2.5e3"), Kind::FloatValue(-2500.0));
        assert_eq!(kind("42.0"), Kind::FloatValue(42.0));
        assert_eq!(kind(".5"), Kind::FloatValue(0.5));
        assert_eq!(kind("open"), Kind::StringValue("open".into()));
        assert_eq!(kind(""), Kind::StringValue("".into()));
        assert_eq!(kind("0xZZ"), Kind::StringValue("0xZZ".into()));
        assert_eq!(kind("1.2.3"), Kind::StringValue("1.2.3".into()));
        // Words a float parser would take are text here.
        assert_eq!(kind("nan"), Kind::StringValue("nan".into()));
        assert_eq!(kind("inf"), Kind::StringValue("inf".into()));
        // Surrounding blanks do not hide a number; a string keeps them.
        assert_eq!(kind(" 5 "), Kind::IntValue(5));
        assert_eq!(kind(" a "), Kind::StringValue(" a ".into()));
    }

    #[test]
    fn string_flag_forces_a_string() {
        for text in ["42", "true", "1.5", "0x10"] {
            assert_eq!(
                parse_write_value(text, true).unwrap().kind,
                Some(Kind::StringValue(text.into()))
            );
        }
    }

    #[test]
    fn numbers_that_do_not_fit_are_errors_not_strings() {
        for text in [
            "9223372036854775808",
            "-9223372036854775809",
            "0x8000000000000000",
            "0x10000000000000000000000000000000000",
            "1e999",
        ] {
            let e = parse_write_value(text, false).unwrap_err();
            assert!(e.contains(text) && e.contains("--string"), "{text}: {e}");
        }
    }

    #[test]
    fn negative_values_are_not_taken_for_flags() {
        let cli = Cli::try_parse_from(["bifrostctl", "write", "line1/sp", "-5"]).unwrap();
        match cli.command {
            Command::Write(a) => {
                assert_eq!(a.value, "-5");
                assert!(!a.string);
            }
            other => panic!("{other:?}"),
        }
        let cli =
            Cli::try_parse_from(["bifrostctl", "write", "line1/sp", "--string", "12"]).unwrap();
        match cli.command {
            Command::Write(a) => assert!(a.string && a.value == "12"),
            other => panic!("{other:?}"),
        }
    }

    fn int(i: i64) -> Value {
        Value {
            kind: Some(Kind::IntValue(i)),
        }
    }

    #[test]
    fn write_outcome_text_and_json() {
        let ok = WriteTagResponse {
            outcome: "ok".into(),
            message: String::new(),
            read_back: Some(int(42)),
            node: 2,
        };
        assert_eq!(
            write_text("line1/sp", &int(42), &ok),
            "ok: wrote line1/sp = 42 (read back 42) on node 2"
        );
        assert_eq!(
            write_json(&ok).to_string(),
            r#"{"message":"","node":2,"outcome":"ok","read_back":42}"#
        );
        let rejected = WriteTagResponse {
            outcome: "rejected".into(),
            message: "device exception 2 (illegal data address)".into(),
            read_back: None,
            node: 3,
        };
        assert_eq!(
            write_text("line1/sp", &int(42), &rejected),
            "rejected: writing line1/sp = 42 on node 3: device exception 2 (illegal data address)"
        );
        assert_eq!(write_json(&rejected)["read_back"], serde_json::Value::Null);
    }

    #[test]
    fn browse_prefix_needs_create_tags() {
        assert!(
            Cli::try_parse_from(["bifrostctl", "browse", "opc.tcp://h:4840", "--prefix", "x"])
                .is_err()
        );
        let cli = Cli::try_parse_from([
            "bifrostctl",
            "browse",
            "opc.tcp://h:4840",
            "ns=2;s=Line1",
            "--create-tags",
            "ua1",
        ])
        .unwrap();
        match cli.command {
            Command::Browse(a) => {
                assert_eq!(a.node.as_deref(), Some("ns=2;s=Line1"));
                assert_eq!(a.create_tags.as_deref(), Some("ua1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn browse_output_shapes() {
        let r = BrowseResponse {
            items: vec![
                BrowseItem {
                    address: "ns=2;s=Temperature".into(),
                    name: "Temperature".into(),
                    kind: "variable".into(),
                    data_type: "f64".into(),
                    writable: false,
                },
                BrowseItem {
                    address: "ns=2;s=Line1".into(),
                    name: "Line1".into(),
                    kind: "object".into(),
                    data_type: String::new(),
                    writable: false,
                },
            ],
            created: 1,
        };
        assert_eq!(
            browse_table(&r).render(),
            "ADDRESS             NAME         KIND      TYPE  WRITABLE\n\
             ns=2;s=Temperature  Temperature  variable  f64   no\n\
             ns=2;s=Line1        Line1        object    -     no\n"
        );
        let j = browse_json(&r, false);
        assert_eq!(j[1]["data_type"], serde_json::Value::Null);
        assert_eq!(j[0]["data_type"], json!("f64"));
        assert_eq!(browse_json(&r, true)["created"], json!(1));
    }
}
