//! `bifrost serve`'s settings from a TOML file and the environment, besides
//! its flags, with one precedence: flag > environment > file > default.
//!
//! Every long flag `--data-dir` of a command given to [`with_env`] is also
//! the variable `BIFROST_DATA_DIR` (clap reads it when the flag is absent)
//! and the file key `data-dir`. A [`SettingsFile`] turns its keys into the
//! flags they stand for, and [`merged_args`] puts them before the command
//! line's own, leaving out those the command line or the environment sets,
//! so that clap parses and checks every value the same way wherever it came
//! from. A file value clap refuses is reported at its file and line
//! ([`explain`]).
//!
//! Knows clap and TOML only: nothing of what the settings mean.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue};
use clap::{ArgAction, Command};

/// The flag (and key) naming the settings file.
pub const CONFIG_FLAG: &str = "config";

/// `BIFROST_` and the flag in upper snake case: `data-dir` → `BIFROST_DATA_DIR`.
pub fn env_name(long: &str) -> String {
    format!("BIFROST_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// `cmd` with every long flag also read from its [`env_name`] variable.
pub fn with_env(cmd: Command) -> Command {
    cmd.mut_args(|a| match a.get_long() {
        Some(long) if long != "help" && long != "version" => {
            // clap keeps the name for the life of the program: one per flag.
            let name: &'static str = Box::leak(env_name(long).into_boxed_str());
            a.env(name)
        }
        _ => a,
    })
}

/// `cmd` with nothing required, to look at or check a partial configuration.
pub fn relaxed(cmd: Command) -> Command {
    let groups: Vec<String> = cmd.get_groups().map(|g| g.get_id().to_string()).collect();
    let cmd = cmd.mut_args(|a| {
        a.required(false)
            .required_unless_present(clap::builder::Resettable::Reset)
    });
    groups
        .into_iter()
        .fold(cmd, |c, g| c.mut_group(g, |g| g.required(false)))
}

/// One key of a settings file.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: String,
    pub line: usize,
    /// The value as written, for messages.
    pub shown: String,
    /// The flags it stands for: `--key VALUE` (once per element of an
    /// array), `--key` for a switch set to true, nothing for false.
    args: Vec<OsString>,
}

/// A settings file, its keys checked against the flags of a command.
#[derive(Clone, Debug)]
pub struct SettingsFile {
    pub path: PathBuf,
    pub entries: BTreeMap<String, Entry>,
}

impl SettingsFile {
    /// Reads `path`, refusing a key that is no flag of `cmd`, a table, and
    /// a value the flag cannot take in that form; errors name the file and
    /// the line.
    pub fn load(path: &Path, cmd: &Command) -> Result<SettingsFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("settings file {}: {e}", path.display()))?;
        SettingsFile::parse(path, &text, cmd)
    }

    pub fn parse(path: &Path, text: &str, cmd: &Command) -> Result<SettingsFile, String> {
        type Raw = BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>>;
        let at = |offset: usize| format!("{}:{}", path.display(), line_of(text, offset));
        let raw: Raw = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => format!("{}: {}", at(span.start), e.message()),
            None => format!("{}: {}", path.display(), e.message()),
        })?;
        let mut entries = BTreeMap::new();
        for (key, value) in raw {
            let line = line_of(text, key.span().start);
            let where_ = at(key.span().start);
            let key = key.into_inner();
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(key.as_str()) && key != CONFIG_FLAG)
                .ok_or_else(|| unknown_key(&where_, &key, cmd))?;
            let switch = matches!(arg.get_action(), ArgAction::SetTrue);
            let value = value.into_inner();
            let args =
                flag_args(&key, &value, switch).map_err(|e| format!("{where_}: {key}: {e}"))?;
            let shown = value.to_string();
            entries.insert(
                key.clone(),
                Entry {
                    key,
                    line,
                    shown,
                    args,
                },
            );
        }
        Ok(SettingsFile {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The flags of every key, whatever the environment says (to check the file alone).
    pub fn all_args(&self) -> Vec<OsString> {
        self.entries
            .values()
            .flat_map(|e| e.args.iter().cloned())
            .collect()
    }

    /// Where `key` is set, as `FILE:LINE`.
    pub fn place(&self, key: &str) -> Option<String> {
        self.entries
            .get(key)
            .map(|e| format!("{}:{}", self.path.display(), e.line))
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn unknown_key(place: &str, key: &str, cmd: &Command) -> String {
    let dashed = key.replace('_', "-");
    let hint = if key == CONFIG_FLAG {
        " (a settings file cannot name another)".to_string()
    } else if dashed != key
        && cmd
            .get_arguments()
            .any(|a| a.get_long() == Some(dashed.as_str()))
    {
        format!(" (did you mean '{dashed}'? keys are the flags' names)")
    } else {
        format!(
            " (keys are the flags of `bifrost {} --help`)",
            cmd.get_name()
        )
    };
    format!("{place}: unknown key '{key}'{hint}")
}

/// The flags a key stands for.
fn flag_args(key: &str, value: &toml::Value, switch: bool) -> Result<Vec<OsString>, String> {
    let flag = OsString::from(format!("--{key}"));
    if switch {
        return match value {
            toml::Value::Boolean(true) => Ok(vec![flag]),
            toml::Value::Boolean(false) => Ok(vec![]),
            other => Err(format!("a switch takes true or false, not {other}")),
        };
    }
    let one = |v: &toml::Value| -> Result<OsString, String> {
        Ok(OsString::from(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(_) | toml::Value::Table(_) => {
                return Err(format!("{v} is not a single value"));
            }
        }))
    };
    let values = match value {
        toml::Value::Array(items) => items.iter().map(one).collect::<Result<Vec<_>, _>>()?,
        toml::Value::Table(_) => return Err("a table is not a setting".into()),
        v => vec![one(v)?],
    };
    Ok(values.into_iter().flat_map(|v| [flag.clone(), v]).collect())
}

/// The settings file the command line (`--config F`, `--config=F`) or the
/// environment names.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == flag {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix(&format!("{flag}=")) {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os(env_name(CONFIG_FLAG)).map(PathBuf::from)
}

/// Whether the command line sets `--long` (alone or as `--long=V`).
fn given(args: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    })
}

/// The file's flags that neither `args` nor the environment set, then
/// `args`; and the keys taken from the file.
pub fn merged_args(file: Option<&SettingsFile>, args: &[OsString]) -> (Vec<OsString>, Vec<String>) {
    let mut out = Vec::new();
    let mut from_file = Vec::new();
    for e in file.iter().flat_map(|f| f.entries.values()) {
        if given(args, &e.key) || std::env::var_os(env_name(&e.key)).is_some() {
            continue;
        }
        out.extend(e.args.iter().cloned());
        from_file.push(e.key.clone());
    }
    out.extend(args.iter().cloned());
    (out, from_file)
}

/// A parse error, told at the file and line when a file's value caused it,
/// and naming the variable when the environment's did (`args` is the
/// command line as given, without the file's flags).
pub fn explain(
    err: &clap::Error,
    file: Option<&SettingsFile>,
    from_file: &[String],
    args: &[OsString],
) -> String {
    let message = err.to_string();
    let message = message.trim().trim_start_matches("error: ");
    let flag = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.trim_start_matches("--").split([' ', '=']).next(),
        _ => None,
    };
    let first = message.lines().next().unwrap_or(message);
    match (file, flag) {
        (Some(f), Some(key)) if from_file.iter().any(|k| k == key) => {
            let e = &f.entries[key];
            format!(
                "{}: {} = {}: {first}",
                f.place(key).unwrap_or_default(),
                e.key,
                e.shown
            )
        }
        // Not the file's and not on the command line: the environment's.
        (_, Some(key)) if !given(args, key) && std::env::var_os(env_name(key)).is_some() => {
            format!("environment {}: {first}", env_name(key))
        }
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn cmd() -> Command {
        Command::new("serve")
            .arg(Arg::new("data_dir").long("data-dir").required(true))
            .arg(
                Arg::new("heartbeat_ms")
                    .long("heartbeat-ms")
                    .value_parser(clap::value_parser!(u64))
                    .default_value("100"),
            )
            .arg(
                Arg::new("label")
                    .long("node-label")
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("insecure")
                    .long("insecure")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("config").long("config"))
    }

    fn file(text: &str) -> Result<SettingsFile, String> {
        SettingsFile::parse(Path::new("/etc/bifrost.toml"), text, &cmd())
    }

    #[test]
    fn keys_become_flags_and_errors_name_the_file_and_line() {
        let f = file("data-dir = '/var/lib/b'\nheartbeat-ms = 50\nnode-label = ['zone=a', 'rack=2']\ninsecure = true\n")
            .unwrap();
        let (args, keys) = merged_args(Some(&f), &[]);
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--data-dir",
                "/var/lib/b",
                "--heartbeat-ms",
                "50",
                "--insecure",
                "--node-label",
                "zone=a",
                "--node-label",
                "rack=2"
            ]
        );
        assert_eq!(keys.len(), 4);
        assert_eq!(f.place("node-label").unwrap(), "/etc/bifrost.toml:3");

        let e = file("data-dir = 'x'\n\ndata_dir2 = 1\n").unwrap_err();
        assert!(
            e.starts_with("/etc/bifrost.toml:3: unknown key 'data_dir2'"),
            "{e}"
        );
        let e = file("heartbeat_ms = 1\n").unwrap_err();
        assert!(e.contains("did you mean 'heartbeat-ms'"), "{e}");
        let e = file("config = 'other.toml'\n").unwrap_err();
        assert!(e.contains("cannot name another"), "{e}");
        let e = file("insecure = 'yes'\n").unwrap_err();
        assert!(
            e.starts_with("/etc/bifrost.toml:1: insecure: a switch takes true or false"),
            "{e}"
        );
        let e = file("[serve]\ndata-dir = 'x'\n").unwrap_err();
        assert!(e.contains(":1: unknown key 'serve'"), "{e}");
        let e = file("data-dir = \n").unwrap_err();
        assert!(e.starts_with("/etc/bifrost.toml:1: "), "{e}");
    }

    #[test]
    fn flags_win_over_the_file_and_bad_file_values_are_told_at_their_line() {
        let f = file("data-dir = 'a'\nheartbeat-ms = 'soon'\n").unwrap();
        let user: Vec<OsString> = ["--data-dir=b"].iter().map(OsString::from).collect();
        let (args, keys) = merged_args(Some(&f), &user);
        assert_eq!(keys, ["heartbeat-ms"]);
        let err = cmd()
            .try_get_matches_from(std::iter::once(OsString::from("serve")).chain(args))
            .unwrap_err();
        let e = explain(&err, Some(&f), &keys, &user);
        assert!(
            e.starts_with("/etc/bifrost.toml:2: heartbeat-ms = \"soon\": invalid value 'soon'"),
            "{e}"
        );
        assert_eq!(
            config_path(&[OsString::from("--config=/x.toml")]),
            Some(PathBuf::from("/x.toml"))
        );
        assert_eq!(env_name("data-dir"), "BIFROST_DATA_DIR");
    }
}
