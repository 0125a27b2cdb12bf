//! `login`, `logout`, `whoami` and `user`: sessions and the administration
//! of users.
//!
//! Passwords come from a file (`--password-file`, its first line), else an
//! environment variable (`BIFROST_PASSWORD` for the password one logs in
//! with, `BIFROST_NEW_PASSWORD` for a new one), else the terminal, asked
//! without echo (a new one twice). With none of these (no terminal on
//! stdin), the command fails naming them. Passwords are never printed.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bifrost_client::proto::{self as pb, Consistency};
use bifrost_client::time::format_ts_us;
use bifrost_client::Client;
use bifrost_model::{Grant, Role};
use bifrost_proto::convert::grant_from_pb;
use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{print_json, print_line, Output, Table};
use super::session::{self, Session};
use super::{Common, ConsistencyArg, Ctx};

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// User to log in as.
    #[arg(long, env = "BIFROST_USER")]
    pub user: String,
    /// File whose first line is the password [else $BIFROST_PASSWORD, else
    /// asked on the terminal].
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user with one grant (more with `user grant`).
    Add(UserAddArgs),
    /// Delete a user, ending its sessions.
    Rm(UserNameArgs),
    /// List users with their grants and open sessions.
    List(UserListArgs),
    /// Give a user a role, on every tag or on those matching --tags.
    Grant(GrantArgs),
    /// Take back a grant, given exactly as it was granted.
    Revoke(GrantArgs),
    /// Change your own password (the old one is asked), or, as an
    /// administrator, set NAME's. Ends the user's sessions.
    Passwd(PasswdArgs),
    /// End all sessions of a user.
    Logout(UserNameArgs),
}

impl UserCmd {
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            UserCmd::Add(a) => a.common.timeout,
            UserCmd::Rm(a) | UserCmd::Logout(a) => a.common.timeout,
            UserCmd::List(a) => a.common.timeout,
            UserCmd::Grant(a) | UserCmd::Revoke(a) => a.common.timeout,
            UserCmd::Passwd(a) => a.common.timeout,
        }
    }
}

#[derive(Args, Debug)]
pub struct UserAddArgs {
    pub name: String,
    #[arg(long, value_enum)]
    pub role: Role,
    /// Restrict the role to tags matching GLOB (`*` within a segment, `**`
    /// across, `?` one character); repeatable. None: every tag.
    #[arg(long = "tags", value_name = "GLOB")]
    pub tags: Vec<String>,
    /// File whose first line is the new user's password [else
    /// $BIFROST_NEW_PASSWORD, else asked twice on the terminal].
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct UserNameArgs {
    pub name: String,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct UserListArgs {
    #[arg(long, value_enum, default_value_t = ConsistencyArg::Linearizable)]
    pub consistency: ConsistencyArg,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct GrantArgs {
    pub name: String,
    #[arg(value_enum)]
    pub role: Role,
    /// Tags the role is restricted to (GLOB, repeatable); none: every tag.
    #[arg(long = "tags", value_name = "GLOB")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct PasswdArgs {
    /// Whose password to set (administrators); without it, your own.
    pub name: Option<String>,
    /// File whose first line is the new password [else
    /// $BIFROST_NEW_PASSWORD, else asked twice on the terminal].
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// File whose first line is your current password [else
    /// $BIFROST_PASSWORD, else asked on the terminal]; for your own.
    #[arg(long, value_name = "FILE")]
    pub old_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// Where one password may come from, after its file.
struct Ask {
    /// What it is, as a prompt and in messages.
    what: &'static str,
    flag: &'static str,
    env: &'static str,
    /// Asked twice on a terminal (a new password).
    confirm: bool,
}

const LOGIN_PASSWORD: Ask = Ask {
    what: "Password",
    flag: "--password-file",
    env: "BIFROST_PASSWORD",
    confirm: false,
};
const OLD_PASSWORD: Ask = Ask {
    what: "Current password",
    flag: "--old-password-file",
    env: "BIFROST_PASSWORD",
    confirm: false,
};
const NEW_PASSWORD: Ask = Ask {
    what: "New password",
    flag: "--password-file",
    env: "BIFROST_NEW_PASSWORD",
    confirm: true,
};

/// A password from `file`, else from `ask.env`, else from the terminal.
fn password(file: Option<&Path>, ask: &Ask) -> anyhow::Result<String> {
    let env = std::env::var(ask.env).ok();
    password_from(file, env, ask, || prompt(ask))
}

/// [`password`] with the environment's value and the terminal given.
fn password_from(
    file: Option<&Path>,
    env: Option<String>,
    ask: &Ask,
    terminal: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let pw = match (file, env) {
        (Some(f), _) => first_line(f).with_context(|| format!("{} {}", ask.flag, f.display()))?,
        (None, Some(e)) if !e.is_empty() => e,
        _ => terminal()?,
    };
    if pw.is_empty() {
        bail!("{}: empty", ask.what.to_lowercase());
    }
    Ok(pw)
}

/// The first line of `path`, without its line end.
fn first_line(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Asks on the terminal without echo (twice if `ask.confirm`).
fn prompt(ask: &Ask) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{} needed: give {} FILE or set {}, or run on a terminal to be asked",
            ask.what.to_lowercase(),
            ask.flag,
            ask.env
        );
    }
    let pw = rpassword::prompt_password(format!("{}: ", ask.what)).context("reading password")?;
    if ask.confirm {
        let again = rpassword::prompt_password(format!("{} (again): ", ask.what))
            .context("reading password")?;
        if again != pw {
            bail!("the passwords differ");
        }
    }
    Ok(pw)
}

/// Where `login` keeps the session, and `logout` deletes it.
fn session_path() -> anyhow::Result<PathBuf> {
    session::default_path().ok_or_else(|| {
        anyhow!("no place for the session file: set BIFROST_SESSION_FILE, XDG_CONFIG_HOME or HOME")
    })
}

pub async fn login(ctx: &Ctx, a: LoginArgs) -> anyhow::Result<()> {
    let path = session_path()?;
    let password = password(a.password_file.as_deref(), &LOGIN_PASSWORD)?;
    let r = ctx.client()?.login(&a.user, &password).await?;
    let session = Session {
        user: a.user,
        token: r.token,
        expires_us: r.expires_us,
        endpoints: ctx.endpoints.clone(),
    };
    session::save(&path, &session)?;
    let until = format_ts_us(session.expires_us);
    match ctx.output {
        Output::Json => print_json(&json!({
            "user": session.user, "expires": until, "session_file": path,
        }))?,
        Output::Text | Output::Csv => {
            print_line(format_args!("logged in as {} until {until}", session.user))?
        }
    }
    Ok(())
}

/// Ends the session of the token in use (a refusal because it is no
/// longer valid is ignored), then deletes the session file.
pub async fn logout(ctx: &Ctx) -> anyhow::Result<()> {
    let path = session_path()?;
    let ended = match &ctx.token {
        Some(_) => end_own_session(&ctx.client()?, &path).await?,
        None => false,
    };
    let removed = session::remove(&path)?;
    match ctx.output {
        Output::Json => print_json(&json!({"ended": ended, "session_file_removed": removed}))?,
        Output::Text | Output::Csv if ended || removed => print_line("logged out")?,
        Output::Text | Output::Csv => print_line("not logged in")?,
    }
    Ok(())
}

/// Whether the server ended the session: false if it was no longer valid.
async fn end_own_session(client: &Client, path: &Path) -> anyhow::Result<bool> {
    match client.logout().await {
        Ok(()) => Ok(true),
        Err(e) if e.code() == Some(tonic::Code::Unauthenticated) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "logout (the session file {} is kept; try again, or delete it)",
            path.display()
        ))),
    }
}

pub async fn whoami(ctx: &Ctx) -> anyhow::Result<()> {
    let w = ctx.client()?.whoami().await?;
    let user = w.user.unwrap_or_default();
    match ctx.output {
        Output::Json => print_json(&json!({
            "user": user.name, "via": w.via, "grants": grants_json(&user.grants),
        }))?,
        Output::Text | Output::Csv => {
            let name = if user.name.is_empty() {
                "-"
            } else {
                &user.name
            };
            print_line(format_args!(
                "user    {name}\nvia     {}\ngrants  {}",
                w.via,
                grants_text(&user.grants)
            ))?
        }
    }
    Ok(())
}

pub async fn user(ctx: &Ctx, cmd: UserCmd) -> anyhow::Result<()> {
    let client = ctx.client()?;
    match cmd {
        UserCmd::Add(a) => add(ctx, &client, a).await,
        UserCmd::Rm(a) => {
            let revision = client.delete_user(&a.name).await?;
            match ctx.output {
                Output::Json => print_json(&json!({"deleted": a.name, "revision": revision}))?,
                Output::Text | Output::Csv => print_line(format_args!(
                    "deleted user {:?} (revision {revision})",
                    a.name
                ))?,
            }
            Ok(())
        }
        UserCmd::List(a) => list(ctx, &client, a.consistency.into()).await,
        UserCmd::Grant(a) => change(ctx, &client, a, true).await,
        UserCmd::Revoke(a) => change(ctx, &client, a, false).await,
        UserCmd::Passwd(a) => passwd(ctx, &client, a).await,
        UserCmd::Logout(a) => {
            let ended = client.end_sessions(&a.name).await?;
            match ctx.output {
                Output::Json => print_json(&json!({"user": a.name, "ended": ended}))?,
                Output::Text | Output::Csv => print_line(format_args!(
                    "ended {ended} session{} of {:?}",
                    if ended == 1 { "" } else { "s" },
                    a.name
                ))?,
            }
            Ok(())
        }
    }
}

async fn add(ctx: &Ctx, client: &Client, a: UserAddArgs) -> anyhow::Result<()> {
    let grant = Grant::new(a.role, a.tags).context("--role, --tags")?;
    let password = password(a.password_file.as_deref(), &NEW_PASSWORD)?;
    let user = client.add_user(&a.name, &password, vec![grant]).await?;
    print_user(ctx, "created user", &user)
}

async fn list(ctx: &Ctx, client: &Client, consistency: Consistency) -> anyhow::Result<()> {
    let mut users = client.list_users(consistency).await?;
    users.sort_by(|x, y| x.name.cmp(&y.name));
    match ctx.output {
        Output::Json => print_json(&users.iter().map(user_json).collect::<Vec<_>>())?,
        Output::Text | Output::Csv => users_table(&users).print()?,
    }
    Ok(())
}

async fn change(ctx: &Ctx, client: &Client, a: GrantArgs, add: bool) -> anyhow::Result<()> {
    let grant = Grant::new(a.role, a.tags).context("ROLE, --tags")?;
    let (adds, removes) = if add {
        (vec![grant], vec![])
    } else {
        (vec![], vec![grant])
    };
    let user = client.change_grants(&a.name, adds, removes).await?;
    print_user(ctx, "user", &user)
}

async fn passwd(ctx: &Ctx, client: &Client, a: PasswdArgs) -> anyhow::Result<()> {
    let (name, old) = match a.name {
        Some(name) => {
            let old = a.old_password_file.as_deref().map(first_line).transpose();
            (name, old.context("--old-password-file")?)
        }
        None => {
            let name = own_name(client).await?;
            let old = password(a.old_password_file.as_deref(), &OLD_PASSWORD)?;
            (name, Some(old))
        }
    };
    let new = password(a.password_file.as_deref(), &NEW_PASSWORD)?;
    let user = client.set_password(&name, old.as_deref(), &new).await?;
    match ctx.output {
        Output::Json => print_json(&user_json(&user))?,
        Output::Text | Output::Csv => print_line(format_args!(
            "password of {:?} changed; its sessions were ended (log in again)",
            user.name
        ))?,
    }
    Ok(())
}

/// The name of the user the client's credential names.
async fn own_name(client: &Client) -> anyhow::Result<String> {
    let w = client.whoami().await?;
    match w.user.map(|u| u.name).filter(|n| !n.is_empty()) {
        Some(name) => Ok(name),
        None => bail!(
            "the cluster does not know who you are (via {:?}): give NAME",
            w.via
        ),
    }
}

fn print_user(ctx: &Ctx, what: &str, user: &pb::User) -> anyhow::Result<()> {
    match ctx.output {
        Output::Json => print_json(&user_json(user))?,
        Output::Text | Output::Csv => print_line(format_args!(
            "{what} {:?} (revision {}): {}",
            user.name,
            user.revision,
            grants_text(&user.grants)
        ))?,
    }
    Ok(())
}

/// `operator on 'line1/**'; viewer on every tag`, or `none`.
pub fn grants_text(grants: &[pb::Grant]) -> String {
    if grants.is_empty() {
        return "none".into();
    }
    let text: Vec<String> = grants.iter().map(grant_text).collect();
    text.join("; ")
}

/// As the model words it; as sent if this client cannot read it (a newer
/// role, say).
fn grant_text(g: &pb::Grant) -> String {
    match grant_from_pb(g.clone()) {
        Ok(grant) => grant.to_string(),
        Err(_) if g.tags.is_empty() => format!("{} on every tag", g.role),
        Err(_) => format!("{} on {}", g.role, g.tags.join(", ")),
    }
}

fn grants_json(grants: &[pb::Grant]) -> serde_json::Value {
    grants
        .iter()
        .map(|g| json!({"role": g.role, "tags": g.tags}))
        .collect()
}

/// `{"name","grants","sessions","revision"}`.
pub fn user_json(u: &pb::User) -> serde_json::Value {
    json!({
        "name": u.name,
        "grants": grants_json(&u.grants),
        "sessions": u.sessions,
        "revision": u.revision,
    })
}

pub fn users_table(users: &[pb::User]) -> Table {
    let mut t = Table::new(&["NAME", "GRANTS", "SESSIONS", "REVISION"]);
    for u in users {
        t.row(vec![
            u.name.clone(),
            grants_text(&u.grants),
            u.sessions.to_string(),
            u.revision.to_string(),
        ]);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal_unused() -> anyhow::Result<String> {
        panic!("the terminal was asked")
    }

    #[test]
    fn a_password_file_gives_its_first_line_and_wins_over_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret pass\r\nsecond line\n").unwrap();
        let pw = password_from(
            Some(&file),
            Some("env".into()),
            &LOGIN_PASSWORD,
            terminal_unused,
        );
        assert_eq!(pw.unwrap(), "s3cret pass");
        let env = password_from(None, Some("env".into()), &NEW_PASSWORD, terminal_unused);
        assert_eq!(env.unwrap(), "env");
        let asked = password_from(None, None, &LOGIN_PASSWORD, || Ok("typed".into()));
        assert_eq!(asked.unwrap(), "typed");
    }

    #[test]
    fn an_empty_or_missing_password_is_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = password_from(Some(&empty), None, &NEW_PASSWORD, terminal_unused);
        assert!(e.unwrap_err().to_string().contains("empty"));
        let missing = dir.path().join("missing");
        let e = password_from(Some(&missing), None, &OLD_PASSWORD, terminal_unused);
        let e = format!("{:#}", e.unwrap_err());
        assert!(e.starts_with("--old-password-file "), "{e}");
    }

    #[test]
    fn without_a_terminal_the_ways_to_give_a_password_are_named() {
        // Under the test runner stdin is not a terminal; skip when it is.
        if std::io::stdin().is_terminal() {
            return;
        }
        let e = prompt(&NEW_PASSWORD).unwrap_err().to_string();
        assert!(
            e.contains("--password-file") && e.contains("BIFROST_NEW_PASSWORD"),
            "{e}"
        );
    }

    #[test]
    fn grants_are_shown_as_the_model_words_them() {
        let users = vec![pb::User {
            name: "ann".into(),
            grants: vec![
                pb::Grant {
                    role: "operator".into(),
                    tags: vec!["line1/**".into()],
                },
                pb::Grant {
                    role: "viewer".into(),
                    tags: vec![],
                },
            ],
            revision: 12,
            sessions: 2,
        }];
        assert_eq!(
            users_table(&users).render(),
            "NAME  GRANTS                                       SESSIONS  REVISION\n\
             ann   operator on 'line1/**'; viewer on every tag  2         12\n"
        );
        assert_eq!(
            user_json(&users[0]),
            json!({"name": "ann", "grants": [{"role": "operator", "tags": ["line1/**"]},
                   {"role": "viewer", "tags": []}], "sessions": 2, "revision": 12})
        );
        assert_eq!(grants_text(&[]), "none");
    }
}
