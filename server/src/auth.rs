//! Who calls the public API (gRPC and WebSocket), and what they may do.
//!
//! A call names its user with a session token (`authorization: Bearer
//! TOKEN`, from `Login`) or, on a TLS port, with a client certificate
//! naming `urn:bifrost:user:NAME`. [`Auth::resolve`] turns that into a
//! [`Caller`]: the user and their [`Access`], rebuilt from the replicated
//! grants on every call, so a revoked grant or an ended session counts on
//! the next call. Handlers then ask [`Caller::check`] (writes, config,
//! administration) or [`Caller::visible`] (what listings, queries, history
//! and watch show). A forwarded write is checked here, on the node that
//! took the call, with the caller's access; the peer port never sees users.
//!
//! Passwords are hashed here (argon2id, on a blocking thread) before any
//! command is proposed, and tokens are hashed (BLAKE3) before they are
//! stored: neither a password nor a token enters the Raft log.
//!
//! An `--insecure` node checks nothing: every call is an anonymous caller
//! with full access (said in its log and `/readyz`).
//!
//! Depends on the Raft node (for the replicated users and sessions and for
//! read barriers) and on the model's access policy; knows no API handler.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bifrost_model::{now_us, Access, Permission, Session, User};
use bifrost_raft::{Consistency, RaftNode};
use bifrost_tls::Identity;
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

use crate::api::status::overloaded;
use crate::limits::RateLimit;
use crate::metrics::Metrics;
use crate::watch::Credential;

pub mod bootstrap;

pub use bootstrap::bootstrap_admin;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Calls a second per user unless the node's options say otherwise.
pub const DEFAULT_MAX_REQUESTS_PER_USER: u32 = 10_000;
/// Login attempts a second per user name, in bursts of
/// [`LOGIN_BURST`]: enough for people and scripts, far too few to guess.
const LOGINS_PER_SECOND: u32 = 1;
const LOGIN_BURST: u32 = 10;
/// Client certificates whose user is remembered (the table is emptied
/// when full).
const CERT_CACHE: usize = 1024;
/// How long a session lasts unless the node's options say otherwise.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The WebSocket subprotocol prefix that carries a token from a browser
/// (which cannot set headers on a WebSocket): `bifrost.token.TOKEN`.
pub const WS_TOKEN_PROTOCOL: &str = "bifrost.token.";

/// How a node authenticates callers.
#[derive(Clone, Debug)]
pub struct AuthOptions {
    /// False on an `--insecure` node: nothing is checked.
    pub enforce: bool,
    pub session_ttl: Duration,
    /// The bootstrap admin's password, if given (`--admin-password-file`);
    /// else a random one is printed once in the log.
    pub admin_password_file: Option<PathBuf>,
    /// Calls a second one user may make over all their connections (bursts
    /// of twice that); 0: no limit.
    pub max_requests_per_user: u32,
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            enforce: true,
            session_ttl: DEFAULT_SESSION_TTL,
            admin_password_file: None,
            max_requests_per_user: DEFAULT_MAX_REQUESTS_PER_USER,
        }
    }
}

/// How a call proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Token,
    Certificate,
    /// An `--insecure` node: nobody is asked.
    Insecure,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Certificate => "certificate",
            Via::Insecure => "insecure",
        }
    }
}

/// The user behind one call and what they may do.
#[derive(Clone, Debug)]
pub struct Caller {
    /// `None` on an `--insecure` node.
    pub user: Option<User>,
    pub access: Access,
    pub via: Via,
    /// The hash of the token the call carried, if any (for `Logout`).
    pub token_hash: Option<[u8; 32]>,
}

impl Caller {
    /// Anyone, on an `--insecure` node.
    pub fn anonymous() -> Caller {
        Caller {
            user: None,
            access: Access::full(),
            via: Via::Insecure,
            token_hash: None,
        }
    }

    /// The user's name, for messages and audit records.
    pub fn name(&self) -> &str {
        self.user.as_ref().map_or("anonymous", |u| u.name.as_str())
    }

    /// `permission_denied` naming the user, the permission and the tag,
    /// unless the caller has `permission` (on `tag`, if given).
    pub fn check(&self, permission: Permission, tag: Option<&str>) -> Result<(), Status> {
        self.access.check(permission, tag).map_err(|denied| {
            Status::permission_denied(format!("user '{}': {denied}", self.name()))
        })
    }

    /// Whether the caller may see `tag` (in listings, queries, history and
    /// watch).
    pub fn visible(&self, tag: &str) -> bool {
        self.access.visible(tag)
    }

    /// The caller's access if it hides any tag (no grant covers every
    /// tag), else `None`.
    pub fn restriction(&self) -> Option<&Access> {
        let everything = self.access.grants().iter().any(|g| g.is_unrestricted());
        (!everything).then_some(&self.access)
    }
}

/// Authentication of one node's public API.
pub struct Auth {
    node: Arc<RaftNode>,
    opts: AuthOptions,
    metrics: Arc<Metrics>,
    /// Calls per user, over all their connections.
    per_user: RateLimit<String>,
    /// Login attempts per user name tried.
    logins: RateLimit<String>,
    /// The user each client certificate seen names, by the certificate's
    /// BLAKE3 hash.
    cert_users: std::sync::Mutex<std::collections::HashMap<[u8; 32], String>>,
}

impl Auth {
    pub fn new(node: Arc<RaftNode>, opts: AuthOptions, metrics: Arc<Metrics>) -> Arc<Auth> {
        let per_user = RateLimit::new(
            opts.max_requests_per_user,
            opts.max_requests_per_user.saturating_mul(2),
        );
        Arc::new(Auth {
            node,
            opts,
            metrics,
            per_user,
            logins: RateLimit::new(LOGINS_PER_SECOND, LOGIN_BURST),
            cert_users: Default::default(),
        })
    }

    /// Refuses a call of `caller` over their user's rate, with a retry
    /// hint; counted in `bifrost_rate_limited_requests_total`.
    fn within_rate(&self, caller: Caller) -> Result<Caller, Status> {
        let Some(user) = &caller.user else {
            return Ok(caller);
        };
        match self.per_user.take(Some(user.name.clone()), Instant::now()) {
            Ok(()) => Ok(caller),
            Err(wait) => {
                self.metrics.rate_limited.inc();
                Err(overloaded(
                    format!(
                        "rate limit: more than {} requests/s by user '{}' (--max-requests-per-user)",
                        self.per_user.per_second(),
                        user.name
                    ),
                    wait,
                ))
            }
        }
    }

    /// Refuses a login attempt for `user` beyond a few a second (whoever
    /// tries), so that passwords cannot be guessed at the speed of the
    /// network.
    pub fn login_attempt(&self, user: &str) -> Result<(), Status> {
        self.logins
            .take(Some(user.to_string()), Instant::now())
            .map_err(|wait| {
                self.metrics.rate_limited.inc();
                overloaded(format!("too many login attempts for user '{user}'"), wait)
            })
    }

    pub fn options(&self) -> &AuthOptions {
        &self.opts
    }

    /// The caller of a gRPC call: its bearer token, else its client
    /// certificate.
    pub async fn caller<T>(&self, req: &Request<T>) -> Result<Caller, Status> {
        if !self.opts.enforce {
            return Ok(Caller::anonymous());
        }
        let token = bearer(req.metadata())?;
        let certs = req.peer_certs();
        let leaf = certs.as_ref().and_then(|c| c.first()).map(|c| c.to_vec());
        self.resolve(token.as_deref(), leaf.as_deref()).await
    }

    /// The caller with `token` (preferred) or the certificate `leaf` (DER).
    pub async fn resolve(
        &self,
        token: Option<&str>,
        leaf: Option<&[u8]>,
    ) -> Result<Caller, Status> {
        if !self.opts.enforce {
            return Ok(Caller::anonymous());
        }
        let caller = match (token, leaf) {
            (Some(token), _) => self.by_token(token).await?,
            (None, Some(der)) => self.by_certificate(der).await?,
            (None, None) => return Err(Status::unauthenticated(
                "no credential: send a session token (authorization: Bearer TOKEN, from Login) \
                     or connect with a user certificate",
            )),
        };
        self.within_rate(caller)
    }

    async fn by_token(&self, token: &str) -> Result<Caller, Status> {
        let hash = token_hash(token)?;
        let state = self.node.state();
        let session = match state.session(&hash) {
            Some(s) => s,
            // Perhaps the login committed but is not applied here yet.
            None => {
                self.catch_up().await;
                state.session(&hash).ok_or_else(|| {
                    Status::unauthenticated(
                        "session token unknown: it ended (logout, password change, user removed) \
                         or never existed; log in again",
                    )
                })?
            }
        };
        if session.expires_us <= now_us() {
            return Err(Status::unauthenticated(format!(
                "session of user '{}' expired at {}; log in again",
                session.user,
                bifrost_model::time::format_rfc3339_us(session.expires_us)
                    .unwrap_or_else(|| session.expires_us.to_string())
            )));
        }
        let user = state.user(&session.user).ok_or_else(|| {
            Status::unauthenticated(format!("user '{}' no longer exists", session.user))
        })?;
        Ok(Caller {
            access: user.access(),
            user: Some(user),
            via: Via::Token,
            token_hash: Some(hash),
        })
    }

    /// The user a client certificate names; parsed once per certificate
    /// (a connection's calls all show the same one).
    fn certificate_user(&self, der: &[u8]) -> Result<String, Status> {
        let key = *blake3::hash(der).as_bytes();
        let mut known = self.cert_users.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(name) = known.get(&key) {
            return Ok(name.clone());
        }
        let name = match Identity::of_certificate(der) {
            Ok(Identity::User(name)) => name,
            Ok(Identity::Node(id)) => {
                return Err(Status::unauthenticated(format!(
                    "the client certificate names node {id}, not a user; send a session token"
                )))
            }
            Err(e) => return Err(Status::unauthenticated(format!("client certificate: {e}"))),
        };
        if known.len() >= CERT_CACHE {
            known.clear();
        }
        known.insert(key, name.clone());
        Ok(name)
    }

    async fn by_certificate(&self, der: &[u8]) -> Result<Caller, Status> {
        let name = self.certificate_user(der)?;
        let state = self.node.state();
        let user =
            match state.user(&name) {
                Some(u) => u,
                None => {
                    self.catch_up().await;
                    match state.user(&name) {
                        Some(u) => u,
                        // A new cluster's first leader is creating its admin.
                        None if !state.has_users() => return Err(Status::unavailable(
                            "the cluster has no users yet: its bootstrap admin is being created",
                        )),
                        None => {
                            return Err(Status::unauthenticated(format!(
                                "the client certificate names user '{name}', who does not exist"
                            )))
                        }
                    }
                }
            };
        Ok(Caller {
            access: user.access(),
            user: Some(user),
            via: Via::Certificate,
            token_hash: None,
        })
    }

    /// Waits (briefly) until this node has applied what the leader has
    /// committed, so that a credential made a moment ago elsewhere is seen.
    async fn catch_up(&self) {
        let barrier = self.node.read_barrier(Consistency::Linearizable);
        let _ = tokio::time::timeout(Duration::from_secs(2), barrier).await;
    }

    /// A check that `caller`'s credential still holds, for a subscription
    /// that outlives the call that opened it: the session is still there
    /// and not expired, and the user still exists with the grants it had.
    /// `None` on an `--insecure` node.
    pub fn credential(&self, caller: &Caller) -> Option<Credential> {
        let user = caller.user.clone()?;
        let state = self.node.state().clone();
        let token = caller.token_hash;
        Some(Credential(Arc::new(move || {
            if let Some(hash) = &token {
                match state.session(hash) {
                    Some(s) if s.expires_us > now_us() => {}
                    Some(_) => return Err("the session expired; log in again".into()),
                    None => return Err("the session ended; log in again".into()),
                }
            }
            match state.user(&user.name) {
                Some(now) if now.revision == user.revision => Ok(()),
                Some(_) => Err(format!(
                    "user '{}' changed (grants or password); subscribe again",
                    user.name
                )),
                None => Err(format!("user '{}' was removed", user.name)),
            }
        })))
    }

    /// A new session for `user`: the token to give the client, and the
    /// session (holding only the token's hash) to propose.
    pub fn new_session(&self, user: &str) -> (String, Session) {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let ttl = i64::try_from(self.opts.session_ttl.as_micros()).unwrap_or(i64::MAX);
        let session = Session {
            token_hash: *blake3::hash(&bytes).as_bytes(),
            user: user.to_string(),
            expires_us: now_us().saturating_add(ttl),
        };
        (token, session)
    }
}

/// The bearer token of a call, if it carries one.
fn bearer(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not ASCII"))?;
    bearer_value(value).map(|t| Some(t.to_string()))
}

/// The token in an `authorization` header value (`Bearer TOKEN`).
pub fn bearer_value(value: &str) -> Result<&str, Status> {
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(Status::unauthenticated(
            "the authorization header must be 'Bearer TOKEN'",
        )),
    }
}

/// The stored hash of a token; a token that is not one (wrong length or
/// alphabet) is refused without looking anything up.
fn token_hash(token: &str) -> Result<[u8; 32], Status> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            Status::unauthenticated("malformed session token (expected 43 base64url characters)")
        })?;
    Ok(*blake3::hash(&bytes).as_bytes())
}

/// Refuses a password too short to keep.
pub fn check_password_strength(password: &str) -> Result<(), Status> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        return Err(Status::invalid_argument(format!(
            "the password is {n} characters long; at least {MIN_PASSWORD_CHARS} are required"
        )));
    }
    Ok(())
}

/// The argon2id hash (PHC string) of `password`, made on a blocking thread.
pub async fn hash_password(password: String) -> Result<String, Status> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Status::internal(format!("hashing the password: {e}")))
    })
    .await
    .map_err(|e| Status::internal(format!("hashing the password: {e}")))?
}

/// Whether `password` matches the PHC string `hash`. An empty hash (a user
/// without a password) matches nothing; a user that does not exist is
/// checked against a dummy hash, so that the answer takes as long.
pub async fn verify_password(hash: Option<String>, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let real = hash.as_deref().is_some_and(|h| !h.is_empty());
        let hash = match hash {
            Some(h) if real => h,
            _ => dummy_hash(),
        };
        let ok = PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        ok && real
    })
    .await
    .unwrap_or(false)
}

/// A hash no password matches in practice, made once.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(&bytes, &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(Some(hash.clone()), "correct horse battery".into()).await);
        assert!(!verify_password(Some(hash), "correct horse battery!".into()).await);
        assert!(!verify_password(None, "correct horse battery".into()).await);
        assert!(!verify_password(Some(String::new()), "".into()).await);
    }

    #[test]
    fn tokens_are_bearer_base64url_of_32_bytes() {
        assert_eq!(bearer_value("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer_value("bearer  abc ").unwrap(), "abc");
        let e = bearer_value("Basic abc").unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        let e = token_hash("short").unwrap_err();
        assert!(e.message().contains("malformed session token"), "{e}");
        let token = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert_eq!(token.len(), 43);
        assert_eq!(
            token_hash(&token).unwrap(),
            *blake3::hash(&[7u8; 32]).as_bytes()
        );
    }

    #[test]
    fn short_passwords_are_refused_with_the_rule() {
        let e = check_password_strength("short").unwrap_err();
        assert!(
            e.message().contains("5 characters long; at least 10"),
            "{e}"
        );
        assert!(check_password_strength("long enough pw").is_ok());
    }

    #[test]
    fn an_insecure_caller_may_do_anything_and_a_restricted_one_is_told_why() {
        let anyone = Caller::anonymous();
        assert!(anyone.check(Permission::Administer, None).is_ok());
        assert!(anyone.restriction().is_none());
        let user = User {
            name: "op".into(),
            password_hash: String::new(),
            grants: vec![bifrost_model::Grant::new(
                bifrost_model::Role::Operator,
                vec!["line1/**".into()],
            )
            .unwrap()],
            revision: 1,
        };
        let op = Caller {
            access: user.access(),
            user: Some(user),
            via: Via::Token,
            token_hash: None,
        };
        assert!(op
            .check(Permission::WriteDevice, Some("line1/valve"))
            .is_ok());
        let e = op
            .check(Permission::WriteDevice, Some("line2/valve"))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().starts_with("user 'op': "), "{e}");
        assert!(e.message().contains("line2/valve"), "{e}");
        assert!(op.restriction().is_some());
        assert!(op.visible("line1/x") && !op.visible("line2/x"));
    }
}
