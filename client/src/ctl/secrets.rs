//! Secret label values given to `import` (`--secret DEVICE:LABEL=VALUE`,
//! `--secrets-file FILE`), put into the document's devices before it is
//! sent.
//!
//! A secret label is one whose last dot-part is `password`, `private_key`
//! or `secret` ([`bifrost_model::Device::is_secret_label`]). The cluster
//! never shows such a value: `device list`, queries and `export` show
//! [`bifrost_model::Device::SECRET_PLACEHOLDER`] (`"(secret)"`) instead. A
//! device imported with the placeholder keeps the secret the cluster has
//! for it, and is refused where the cluster has none (an export imported
//! into a new cluster), so the secrets are given here.
//!
//! Values given on the command line are visible to other local users (`ps`)
//! and in shell history; `--secrets-file` is the better place. No error or
//! note here shows a value.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use bifrost_client::proto::Device;
use bifrost_model::Device as ModelDevice;

use super::session::Secret;

/// One secret label value and where it was given.
#[derive(Clone, PartialEq, Eq)]
pub struct GivenSecret {
    pub device: String,
    pub label: String,
    pub value: String,
    /// `--secret #2` or `--secrets-file FILE`, for errors.
    pub from: String,
}

impl std::fmt::Debug for GivenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}=<secret> ({})", self.device, self.label, self.from)
    }
}

/// The `n`th (from 1) `--secret`: `DEVICE:LABEL=VALUE`, split at the first
/// `:` and the first `=` after it. Errors name the flag by its position and
/// show at most the `DEVICE:LABEL` part, never the value.
pub fn parse_secret_flag(n: usize, text: &str) -> anyhow::Result<GivenSecret> {
    let from = format!("--secret #{n}");
    let expected = "expected DEVICE:LABEL=VALUE";
    let Some((device, rest)) = text.split_once(':') else {
        // Whatever precedes an '=' is a name, not the value.
        match text.split_once('=') {
            Some((names, _)) => bail!("{from} ({names:?}=...) has no ':' ({expected})"),
            None => bail!("{from} has no ':' or '=' ({expected})"),
        }
    };
    let device = device.trim();
    let Some((label, value)) = rest.split_once('=') else {
        bail!("{from} ({device:?}:...) has no '=' after the ':' ({expected})");
    };
    let label = label.trim();
    if device.is_empty() {
        bail!("{from} (:{label:?}=...) has an empty DEVICE ({expected})");
    }
    if label.is_empty() {
        bail!("{from} ({device:?}:=...) has an empty LABEL ({expected})");
    }
    if value.is_empty() {
        bail!("{from} ({device}:{label}=) has an empty VALUE");
    }
    Ok(GivenSecret {
        device: device.to_string(),
        label: label.to_string(),
        value: value.to_string(),
        from,
    })
}

/// A secrets file, `{"DEVICE": {"LABEL": "VALUE"}}`, read from `name`.
/// Errors name the file and the path of the bad field.
pub fn parse_secrets_file(name: &str, text: &str) -> anyhow::Result<Vec<GivenSecret>> {
    let from = format!("--secrets-file {name}");
    let de = &mut serde_json::Deserializer::from_str(text);
    let map: BTreeMap<String, BTreeMap<String, String>> = serde_path_to_error::deserialize(de)
        .map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." {
                String::new()
            } else {
                format!(" at {path}")
            };
            anyhow::anyhow!(
                "{from}{at}: {} (expected {{\"DEVICE\": {{\"LABEL\": \"VALUE\"}}}})",
                e.into_inner()
            )
        })?;
    let mut given = Vec::new();
    for (device, labels) in map {
        for (label, value) in labels {
            if value.is_empty() {
                bail!("{from}: device {device:?} label {label:?} has an empty value");
            }
            given.push(GivenSecret {
                device: device.clone(),
                label,
                value,
                from: from.clone(),
            });
        }
    }
    Ok(given)
}

/// The `--secret` flags and the secrets file as one list, a flag winning
/// over the file for the same device and label. The same device and label
/// given by two flags is an error.
pub fn gather(flags: &[Secret], file: Vec<GivenSecret>) -> anyhow::Result<Vec<GivenSecret>> {
    let mut by_key: BTreeMap<(String, String), GivenSecret> = BTreeMap::new();
    for g in file {
        by_key.insert((g.device.clone(), g.label.clone()), g);
    }
    let mut from_flags: BTreeMap<(String, String), String> = BTreeMap::new();
    for (i, Secret(text)) in flags.iter().enumerate() {
        let g = parse_secret_flag(i + 1, text)?;
        let key = (g.device.clone(), g.label.clone());
        if let Some(first) = from_flags.insert(key.clone(), g.from.clone()) {
            bail!(
                "{}: device {:?} label {:?} given twice (also {first})",
                g.from,
                g.device,
                g.label
            );
        }
        by_key.insert(key, g);
    }
    Ok(by_key.into_values().collect())
}

/// Puts the `given` secrets into `devices` (a label the device lacks is
/// added). Checked whole before anything changes: a secret for a device not
/// in `devices`, or for a label that is not a secret label, is an error
/// naming it and where it was given.
///
/// Returns one note per secret label still holding the placeholder, device
/// by device in document order, labels sorted: the cluster keeps the secret
/// it has for such a label, or refuses the import where it has none.
pub fn apply(devices: &mut [Device], given: Vec<GivenSecret>) -> anyhow::Result<Vec<String>> {
    for g in &given {
        if !devices.iter().any(|d| d.name == g.device) {
            bail!(
                "{}: device {:?} is not in the document (label {:?})",
                g.from,
                g.device,
                g.label
            );
        }
        if !ModelDevice::is_secret_label(&g.label) {
            bail!(
                "{}: label {:?} of device {:?} is not a secret label (one whose last \
                 dot-part is password, private_key or secret); give it in the \
                 document's labels",
                g.from,
                g.label,
                g.device
            );
        }
    }
    for g in given {
        let device = devices
            .iter_mut()
            .find(|d| d.name == g.device)
            .context("device checked above")?;
        device.labels.insert(g.label, g.value);
    }
    Ok(placeholder_notes(devices))
}

/// One note per secret label of `devices` whose value is the placeholder.
pub fn placeholder_notes(devices: &[Device]) -> Vec<String> {
    let mut notes = Vec::new();
    for d in devices {
        let mut labels: Vec<&str> = d
            .labels
            .iter()
            .filter(|(k, v)| {
                ModelDevice::is_secret_label(k) && v.as_str() == ModelDevice::SECRET_PLACEHOLDER
            })
            .map(|(k, _)| k.as_str())
            .collect();
        labels.sort_unstable();
        for label in labels {
            notes.push(format!(
                "device '{device}' label '{label}' is the export placeholder; the cluster \
                 keeps the secret it has, or refuses the import if it has none (give it \
                 with --secret {device}:{label}=...)",
                device = d.name
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctl::{Cli, Command};
    use clap::Parser;

    const PH: &str = ModelDevice::SECRET_PLACEHOLDER;

    fn device(name: &str, labels: &[(&str, &str)]) -> Device {
        Device {
            name: name.into(),
            protocol: "opcua".into(),
            endpoint: "opc.tcp://h:4840".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn flags(texts: &[&str]) -> Vec<Secret> {
        texts.iter().map(|t| Secret(t.to_string())).collect()
    }

    fn label<'a>(devices: &'a [Device], name: &str, key: &str) -> Option<&'a str> {
        let d = devices.iter().find(|d| d.name == name)?;
        d.labels.get(key).map(String::as_str)
    }

    #[test]
    fn secret_flag_splits_at_the_first_colon_then_the_first_equals() {
        let g = parse_secret_flag(1, "plc1:opcua.password=a:b=c").unwrap();
        assert_eq!(
            (g.device.as_str(), g.label.as_str(), g.value.as_str()),
            ("plc1", "opcua.password", "a:b=c")
        );
        assert_eq!(g.from, "--secret #1");
        // Debug never shows the value.
        assert!(!format!("{g:?}").contains("a:b=c"), "{g:?}");
    }

    #[test]
    fn malformed_secret_flags_are_errors_that_hide_the_value() {
        for (text, want) in [
            ("plc1.opcua.password=hunter2", "no ':'"),
            ("hunter2", "no ':' or '='"),
            ("plc1:opcua.password", "no '='"),
            (":opcua.password=hunter2", "empty DEVICE"),
            ("plc1:=hunter2", "empty LABEL"),
            ("plc1:opcua.password=", "empty VALUE"),
        ] {
            let e = parse_secret_flag(3, text).unwrap_err().to_string();
            assert!(e.contains("--secret #3") && e.contains(want), "{text}: {e}");
            assert!(!e.contains("hunter2"), "{text}: {e}");
        }
    }

    #[test]
    fn secrets_are_put_in_from_the_flag_and_the_file_the_flag_winning() {
        let mut devices = vec![
            device("plc1", &[("opcua.password", PH), ("line", "1")]),
            device("plc2", &[("opcua.password", PH), ("tls.private_key", PH)]),
        ];
        let file = parse_secrets_file(
            "s.json",
            r#"{"plc1": {"opcua.password": "from-file"},
                "plc2": {"opcua.password": "file2", "tls.private_key": "key2"}}"#,
        )
        .unwrap();
        let given = gather(&flags(&["plc1:opcua.password=from-flag"]), file).unwrap();
        let notes = apply(&mut devices, given).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(label(&devices, "plc1", "opcua.password"), Some("from-flag"));
        assert_eq!(label(&devices, "plc1", "line"), Some("1"));
        assert_eq!(label(&devices, "plc2", "opcua.password"), Some("file2"));
        assert_eq!(label(&devices, "plc2", "tls.private_key"), Some("key2"));
    }

    #[test]
    fn a_secret_replaces_any_value_and_adds_a_missing_label() {
        let mut devices = vec![device("plc1", &[("opcua.password", "old")])];
        let given = gather(
            &flags(&["plc1:opcua.password=new", "plc1:mqtt.secret=s"]),
            vec![],
        )
        .unwrap();
        apply(&mut devices, given).unwrap();
        assert_eq!(label(&devices, "plc1", "opcua.password"), Some("new"));
        assert_eq!(label(&devices, "plc1", "mqtt.secret"), Some("s"));
    }

    #[test]
    fn secret_for_unknown_device_or_plain_label_is_an_error_naming_it() {
        let doc = || vec![device("plc1", &[("opcua.password", PH)])];
        let e = apply(
            &mut doc(),
            gather(&flags(&["plc9:opcua.password=x"]), vec![]).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--secret #1")
                && e.contains("\"plc9\"")
                && e.contains("not in the document"),
            "{e}"
        );
        let e = apply(
            &mut doc(),
            gather(
                &[],
                parse_secrets_file("s.json", r#"{"plc1": {"line": "x"}}"#).unwrap(),
            )
            .unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--secrets-file s.json")
                && e.contains("\"line\"")
                && e.contains("\"plc1\"")
                && e.contains("not a secret label"),
            "{e}"
        );
        // Nothing was changed by a failed apply.
        let mut devices = doc();
        let given = gather(&flags(&["plc1:opcua.password=x", "plc1:line=2"]), vec![]).unwrap();
        apply(&mut devices, given).unwrap_err();
        assert_eq!(label(&devices, "plc1", "opcua.password"), Some(PH));
    }

    #[test]
    fn the_same_secret_given_twice_by_flags_is_an_error() {
        let e = gather(&flags(&["p:a.password=1", "p:a.password=2"]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--secret #2") && e.contains("given twice") && e.contains("--secret #1"),
            "{e}"
        );
    }

    #[test]
    fn bad_secrets_file_names_the_file_and_the_field() {
        let e = parse_secrets_file("s.json", r#"{"plc1": {"opcua.password": 5}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--secrets-file s.json") && e.contains("plc1"),
            "{e}"
        );
        let e = parse_secrets_file("s.json", r#"["plc1"]"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--secrets-file s.json"), "{e}");
        let e = parse_secrets_file("s.json", r#"{"plc1": {"opcua.password": ""}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("empty value") && e.contains("opcua.password"),
            "{e}"
        );
    }

    #[test]
    fn placeholder_left_for_a_secret_label_gives_a_note() {
        let mut devices = vec![
            device(
                "plc1",
                &[("opcua.password", PH), ("a.secret", PH), ("line", PH)],
            ),
            device("plc2", &[("opcua.password", PH)]),
        ];
        let given = gather(&flags(&["plc2:opcua.password=x"]), vec![]).unwrap();
        let notes = apply(&mut devices, given).unwrap();
        assert_eq!(
            notes,
            vec![
                "device 'plc1' label 'a.secret' is the export placeholder; the cluster keeps \
                 the secret it has, or refuses the import if it has none (give it with \
                 --secret plc1:a.secret=...)",
                "device 'plc1' label 'opcua.password' is the export placeholder; the cluster \
                 keeps the secret it has, or refuses the import if it has none (give it with \
                 --secret plc1:opcua.password=...)",
            ]
        );
    }

    #[test]
    fn import_takes_secret_flags_and_a_secrets_file() {
        let cli = Cli::try_parse_from([
            "bifrostctl",
            "import",
            "plant.json",
            "--secret",
            "plc1:opcua.password=hunter2",
            "--secret",
            "plc2:opcua.password=x=y",
            "--secrets-file",
            "secrets.json",
        ])
        .unwrap();
        let Command::Import(a) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert_eq!(
            a.secrets,
            flags(&["plc1:opcua.password=hunter2", "plc2:opcua.password=x=y"])
        );
        assert_eq!(a.secrets_file.as_deref(), Some("secrets.json".as_ref()));
        assert!(!format!("{a:?}").contains("hunter2"), "{a:?}");
        let given = gather(&a.secrets, vec![]).unwrap();
        assert_eq!(given[1].value, "x=y");
        // Malformed values are reported by the command, which hides them;
        // clap would echo them.
        let cli =
            Cli::try_parse_from(["bifrostctl", "import", "-", "--secret", "hunter2"]).unwrap();
        let Command::Import(a) = cli.command else {
            panic!("{:?}", cli.command)
        };
        let e = gather(&a.secrets, vec![]).unwrap_err().to_string();
        assert!(e.contains("--secret #1") && !e.contains("hunter2"), "{e}");
        let cli = Cli::try_parse_from(["bifrostctl", "import", "plant.json"]).unwrap();
        let Command::Import(a) = cli.command else {
            panic!("{:?}", cli.command)
        };
        assert!(a.secrets.is_empty() && a.secrets_file.is_none());
    }
}
