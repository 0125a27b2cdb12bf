//! The session of `bifrostctl login`, kept in a file between commands, and
//! the token a command sends.
//!
//! The file is `$BIFROST_SESSION_FILE`, else
//! `$XDG_CONFIG_HOME/bifrost/session`, else `$HOME/.config/bifrost/session`:
//! JSON `{"user","token","expires_us","endpoints"}`, readable by its owner
//! only (0600, in a directory made 0700). It is written whole to a
//! temporary file in the same directory, created 0600, then renamed over
//! the old one. A file found with looser permissions is tightened (with a
//! note); one owned by another user is refused.
//!
//! A command's token ([`command_token`]): `--token` / `BIFROST_TOKEN`,
//! else the session file's if it has not expired (an expired one is
//! ignored with a one-line note), else none.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use bifrost_client::time::format_ts_us;

/// A secret given on the command line (a token): its `Debug` shows no
/// text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// What `bifrostctl login` keeps.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub user: String,
    pub token: String,
    /// When the token stops working, microseconds since the epoch.
    pub expires_us: i64,
    /// The endpoints logged in through.
    pub endpoints: Vec<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("token", &"<token>")
            .field("expires_us", &self.expires_us)
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl Session {
    pub fn expired(&self, now_us: i64) -> bool {
        self.expires_us <= now_us
    }
}

/// Where the session file is, from this process's environment; `None`
/// when neither `BIFROST_SESSION_FILE`, `XDG_CONFIG_HOME` nor `HOME` says.
pub fn default_path() -> Option<PathBuf> {
    path_from(|var| std::env::var_os(var))
}

/// Where the session file is, given the environment `env`.
pub fn path_from(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |var: &str| env(var).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(file) = set("BIFROST_SESSION_FILE") {
        return Some(file);
    }
    // The XDG spec ignores a relative XDG_CONFIG_HOME.
    let config = set("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| set("HOME").map(|h| h.join(".config")))?;
    Some(config.join("bifrost").join("session"))
}

/// The session in `path`; `None` if there is no such file. Tightens a file
/// others may read (saying so through `note`); refuses one owned by
/// another user, or one that is not a session.
pub fn load(path: &Path, note: &mut dyn FnMut(String)) -> anyhow::Result<Option<Session>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("session file {}", path.display())),
    };
    check_owner_and_mode(&file, path, note)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("session file {}", path.display()))?;
    let session = serde_json::from_str(&text).with_context(|| {
        format!(
            "session file {} is not a session (`bifrostctl logout` removes it)",
            path.display()
        )
    })?;
    Ok(Some(session))
}

fn check_owner_and_mode(
    file: &File,
    path: &Path,
    note: &mut dyn FnMut(String),
) -> anyhow::Result<()> {
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        bail!(
            "session file {} belongs to uid {}, not to you (uid {me}): not using it",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))
            .with_context(|| format!("making session file {} private", path.display()))?;
        note(format!(
            "session file {} was open to others (mode {mode:o}); made it 0600",
            path.display()
        ));
    }
    Ok(())
}

/// Writes `session` to `path` atomically, readable by its owner only;
/// makes missing directories 0700.
pub fn save(path: &Path, session: &Session) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("making directory {}", dir.display()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = write_private(&tmp, session).and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing session file {}", path.display()))
}

/// Creates `path` (which must not exist) with mode 0600 and writes
/// `session` to it.
fn write_private(path: &Path, session: &Session) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(&mut f, session)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// Deletes the session file; whether there was one.
pub fn remove(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("deleting session file {}", path.display())),
    }
}

/// The token a command sends: `flag` (`--token` / `BIFROST_TOKEN`) if
/// given, else that of the session in `path` unless it has expired at
/// `now_us`, else none. An expired or unreadable session is ignored, with
/// one line through `note`.
pub fn command_token(
    flag: Option<Secret>,
    path: Option<&Path>,
    now_us: i64,
    note: &mut dyn FnMut(String),
) -> Option<String> {
    if let Some(Secret(token)) = flag {
        return Some(token);
    }
    let path = path?;
    match load(path, note) {
        Ok(Some(s)) if s.expired(now_us) => {
            note(format!(
                "the session of {:?} in {} expired at {}; not using it (`bifrostctl login`)",
                s.user,
                path.display(),
                format_ts_us(s.expires_us)
            ));
            None
        }
        Ok(Some(s)) => Some(s.token),
        Ok(None) => None,
        Err(e) => {
            note(format!("{e:#}; going on without it"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(expires_us: i64) -> Session {
        Session {
            user: "ann".into(),
            token: "tok-ann".into(),
            expires_us,
            endpoints: vec!["n1:7001".into()],
        }
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    fn no_notes() -> impl FnMut(String) {
        |n| panic!("unexpected note: {n}")
    }

    #[test]
    fn the_file_is_private_in_a_private_directory_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/bifrost/session");
        save(&path, &sample(5)).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("cfg")), 0o700);
        assert_eq!(load(&path, &mut no_notes()).unwrap(), Some(sample(5)));
        // Replaced whole; no temporary file left behind.
        save(&path, &sample(9)).unwrap();
        assert_eq!(load(&path, &mut no_notes()).unwrap(), Some(sample(9)));
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("session")]);
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"user": "ann", "token": "tok-ann", "expires_us": 9,
                               "endpoints": ["n1:7001"]})
        );
        assert!(remove(&path).unwrap());
        assert!(!remove(&path).unwrap());
        assert_eq!(load(&path, &mut no_notes()).unwrap(), None);
    }

    #[test]
    fn a_file_open_to_others_is_tightened_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session");
        std::fs::write(&path, serde_json::to_string(&sample(5)).unwrap()).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let mut notes = vec![];
        let s = load(&path, &mut |n| notes.push(n)).unwrap();
        assert_eq!(s, Some(sample(5)));
        assert_eq!(mode(&path), 0o600);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("644"), "{notes:?}");
    }

    /// An environment of `vars`.
    fn env<'a>(vars: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_path_follows_the_environment() {
        let all = [
            ("BIFROST_SESSION_FILE", "/s/file"),
            ("XDG_CONFIG_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(path_from(env(&all[..])), Some("/s/file".into()));
        assert_eq!(path_from(env(&all[1..])), Some("/x/bifrost/session".into()));
        assert_eq!(
            path_from(env(&all[2..])),
            Some("/h/.config/bifrost/session".into())
        );
        let relative_xdg = [("XDG_CONFIG_HOME", "x"), ("HOME", "/h")];
        assert_eq!(
            path_from(env(&relative_xdg)),
            Some("/h/.config/bifrost/session".into())
        );
        assert_eq!(path_from(env(&[])), None);
    }

    #[test]
    fn the_flag_wins_then_a_live_session_then_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session");
        let flag = || Some(Secret("from-flag".into()));
        // No session file.
        assert_eq!(command_token(None, Some(&path), 10, &mut no_notes()), None);
        assert_eq!(
            command_token(flag(), Some(&path), 10, &mut no_notes()).as_deref(),
            Some("from-flag")
        );
        save(&path, &sample(100)).unwrap();
        assert_eq!(
            command_token(None, Some(&path), 10, &mut no_notes()).as_deref(),
            Some("tok-ann")
        );
        assert_eq!(
            command_token(flag(), Some(&path), 10, &mut no_notes()).as_deref(),
            Some("from-flag")
        );
        assert_eq!(command_token(None, None, 10, &mut no_notes()), None);
    }

    #[test]
    fn an_expired_session_is_ignored_with_one_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session");
        save(&path, &sample(100)).unwrap();
        let mut notes = vec![];
        assert_eq!(
            command_token(None, Some(&path), 100, &mut |n| notes.push(n)),
            None
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("expired") && !notes[0].contains('\n'),
            "{notes:?}"
        );
        // The file is kept (logout deletes it).
        assert!(path.exists());
    }

    #[test]
    fn a_broken_session_file_is_ignored_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session");
        std::fs::write(&path, "not json").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let mut notes = vec![];
        assert_eq!(
            command_token(None, Some(&path), 1, &mut |n| notes.push(n)),
            None
        );
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("not a session"), "{notes:?}");
    }

    #[test]
    fn secrets_and_sessions_do_not_show_their_tokens() {
        assert_eq!(format!("{:?}", Secret("t0ps3cret".into())), "<secret>");
        assert!(!format!("{:?}", sample(1)).contains("tok-ann"));
    }
}
