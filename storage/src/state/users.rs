//! Users and sessions in the replicated state.
//!
//! Both live in the `meta` column family: `user/NAME` -> [`User`] and
//! `session/HASH` (the 32-byte BLAKE3 hash of the token) -> [`Session`].
//! They are few (people, not devices), so every node holds all of them in
//! memory: checking a token on a call is one map lookup. Like all config,
//! changes are made in an apply batch, published at commit and written by
//! the next flush; snapshots carry them with the rest of `meta`.
//!
//! What is stored is already safe to replicate: the server hashes passwords
//! (argon2id) and tokens (BLAKE3) before proposing. This module does no
//! crypto and knows no clock: expiry is decided by the caller's `now_us`
//! (the proposer's clock, carried in the command, so every replica prunes
//! the same sessions).

use std::collections::{BTreeMap, HashMap};

use rocksdb::{Direction, IteratorMode, DB};

use super::{ApplyBatch, StateStore, CF_META};
use crate::codec::{decode, encode};
use crate::model::{Grant, Session, User, MAX_SESSIONS_PER_USER};
use crate::{Error, Rejection, Result};

const META_USER_PREFIX: &str = "user/";
const META_SESSION_PREFIX: &str = "session/";

fn user_key(name: &str) -> Vec<u8> {
    format!("{META_USER_PREFIX}{name}").into_bytes()
}

fn session_key(hash: &[u8; 32]) -> Vec<u8> {
    let mut k = META_SESSION_PREFIX.as_bytes().to_vec();
    k.extend_from_slice(hash);
    k
}

/// Every user and session, as committed.
#[derive(Default)]
pub(super) struct Users {
    users: BTreeMap<String, User>,
    sessions: HashMap<[u8; 32], Session>,
}

impl Users {
    /// Reads them from `db`'s `meta` column family.
    pub fn load(db: &DB) -> Result<Users> {
        let meta = db.cf_handle(CF_META).expect("meta cf");
        let mut out = Users::default();
        for (k, v) in prefixed(db, meta, META_USER_PREFIX)? {
            let user: User = decode(&v)?;
            if user_key(&user.name) != k {
                return Err(Error::Corrupt(format!(
                    "user record under {:?} names '{}'",
                    String::from_utf8_lossy(&k),
                    user.name
                )));
            }
            out.users.insert(user.name.clone(), user);
        }
        for (_, v) in prefixed(db, meta, META_SESSION_PREFIX)? {
            let s: Session = decode(&v)?;
            out.sessions.insert(s.token_hash, s);
        }
        Ok(out)
    }

    /// Publishes a batch's changes.
    pub fn apply(&mut self, pending: Pending) {
        for (name, u) in pending.users {
            match u {
                Some(u) => self.users.insert(name, u),
                None => self.users.remove(&name),
            };
        }
        for (hash, s) in pending.sessions {
            match s {
                Some(s) => self.sessions.insert(hash, s),
                None => self.sessions.remove(&hash),
            };
        }
    }
}

/// The keys and values of `meta` under `prefix`.
fn prefixed(
    db: &DB,
    meta: &rocksdb::ColumnFamily,
    prefix: &str,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let prefix = prefix.as_bytes();
    let mut out = Vec::new();
    for item in db.iterator_cf(meta, IteratorMode::From(prefix, Direction::Forward)) {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

/// Users and sessions as changed by one apply batch (`None`: removed).
#[derive(Default)]
pub(super) struct Pending {
    users: HashMap<String, Option<User>>,
    sessions: HashMap<[u8; 32], Option<Session>>,
}

impl StateStore {
    pub fn user(&self, name: &str) -> Option<User> {
        self.inner().cache.read().users.users.get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<User> {
        let inner = self.inner();
        let c = inner.cache.read();
        c.users.users.values().cloned().collect()
    }

    pub fn has_users(&self) -> bool {
        !self.inner().cache.read().users.users.is_empty()
    }

    /// The session whose token hashes to `token_hash`, expired or not.
    pub fn session(&self, token_hash: &[u8; 32]) -> Option<Session> {
        self.inner()
            .cache
            .read()
            .users
            .sessions
            .get(token_hash)
            .cloned()
    }

    /// How many sessions each user holds (expired ones included until a
    /// login prunes them).
    pub fn session_counts(&self) -> HashMap<String, u64> {
        let inner = self.inner();
        let c = inner.cache.read();
        let mut out = HashMap::new();
        for s in c.users.sessions.values() {
            *out.entry(s.user.clone()).or_default() += 1;
        }
        out
    }
}

impl ApplyBatch {
    /// `name` as this batch sees it.
    fn user_now(&self, name: &str) -> Option<User> {
        match self.users.users.get(name) {
            Some(u) => u.clone(),
            None => self.inner.cache.read().users.users.get(name).cloned(),
        }
    }

    fn any_user(&self) -> bool {
        self.users.users.values().any(Option::is_some)
            || self
                .inner
                .cache
                .read()
                .users
                .users
                .keys()
                .any(|name| !self.users.users.contains_key(name))
    }

    /// Every session as this batch sees it.
    fn sessions_now(&self) -> Vec<Session> {
        let c = self.inner.cache.read();
        let mut out: Vec<Session> = c
            .users
            .sessions
            .values()
            .filter(|s| !self.users.sessions.contains_key(&s.token_hash))
            .cloned()
            .collect();
        out.extend(self.users.sessions.values().flatten().cloned());
        out
    }

    fn store_user(&mut self, user: User) -> User {
        self.ops.put(CF_META, user_key(&user.name), encode(&user));
        self.users
            .users
            .insert(user.name.clone(), Some(user.clone()));
        user
    }

    fn drop_session(&mut self, hash: [u8; 32]) {
        self.ops.delete(CF_META, session_key(&hash));
        self.users.sessions.insert(hash, None);
    }

    fn existing_user(&self, name: &str) -> Result<User, Rejection> {
        self.user_now(name)
            .ok_or_else(|| Rejection::not_found(format!("unknown user '{name}'")))
    }

    /// Creates `user` at log index `revision`. With `bootstrap`, only if no
    /// user exists at all.
    pub fn add_user(
        &mut self,
        mut user: User,
        bootstrap: bool,
        revision: u64,
    ) -> Result<User, Rejection> {
        user.validate()?;
        if bootstrap && self.any_user() {
            return Err(Rejection::precondition(
                "the cluster already has users; the bootstrap admin is made only for a cluster with none",
            ));
        }
        if self.user_now(&user.name).is_some() {
            return Err(Rejection::exists(format!(
                "user '{}' already exists",
                user.name
            )));
        }
        user.revision = revision;
        Ok(self.store_user(user))
    }

    /// Removes user `name` and ends their sessions; returns how many ended.
    pub fn delete_user(&mut self, name: &str) -> Result<u64, Rejection> {
        self.existing_user(name)?;
        self.ops.delete(CF_META, user_key(name));
        self.users.users.insert(name.to_string(), None);
        self.end_sessions(name)
    }

    /// Adds `add` (grants already held are left as they are) and removes
    /// `remove` (each must be held), all or nothing.
    pub fn change_grants(
        &mut self,
        name: &str,
        add: Vec<Grant>,
        remove: Vec<Grant>,
        revision: u64,
    ) -> Result<User, Rejection> {
        let mut user = self.existing_user(name)?;
        for g in &remove {
            let Some(at) = user.grants.iter().position(|h| h == g) else {
                let held: Vec<String> = user.grants.iter().map(|h| h.to_string()).collect();
                return Err(Rejection::not_found(format!(
                    "user '{name}' does not hold the grant {g} (holds: {})",
                    if held.is_empty() {
                        "none".to_string()
                    } else {
                        held.join(", ")
                    }
                )));
            };
            user.grants.remove(at);
        }
        for g in add {
            if !user.grants.contains(&g) {
                user.grants.push(g);
            }
        }
        user.revision = revision;
        Ok(self.store_user(user))
    }

    /// Replaces `name`'s password hash and ends their sessions.
    pub fn set_password(
        &mut self,
        name: &str,
        password_hash: String,
        revision: u64,
    ) -> Result<User, Rejection> {
        let mut user = self.existing_user(name)?;
        user.password_hash = password_hash;
        user.validate()?;
        user.revision = revision;
        let user = self.store_user(user);
        self.end_sessions(name)?;
        Ok(user)
    }

    /// Starts `session` for an existing user. Forgets every session that
    /// expired before `now_us`, and, past [`MAX_SESSIONS_PER_USER`], the
    /// user's sessions that expire first.
    pub fn start_session(&mut self, session: Session, now_us: i64) -> Result<(), Rejection> {
        self.existing_user(&session.user)?;
        let mut own = Vec::new();
        for s in self.sessions_now() {
            if s.expires_us <= now_us {
                self.drop_session(s.token_hash);
            } else if s.user == session.user {
                own.push((s.expires_us, s.token_hash));
            }
        }
        own.sort_unstable();
        let excess = (own.len() + 1).saturating_sub(MAX_SESSIONS_PER_USER);
        for (_, hash) in own.into_iter().take(excess) {
            self.drop_session(hash);
        }
        self.ops
            .put(CF_META, session_key(&session.token_hash), encode(&session));
        self.users
            .sessions
            .insert(session.token_hash, Some(session));
        Ok(())
    }

    /// Ends one session; returns 1 if it existed.
    pub fn end_session(&mut self, token_hash: [u8; 32]) -> u64 {
        let exists = match self.users.sessions.get(&token_hash) {
            Some(s) => s.is_some(),
            None => self
                .inner
                .cache
                .read()
                .users
                .sessions
                .contains_key(&token_hash),
        };
        if exists {
            self.drop_session(token_hash);
        }
        u64::from(exists)
    }

    /// Ends every session of `name`; returns how many.
    pub fn end_sessions(&mut self, name: &str) -> Result<u64, Rejection> {
        let ended: Vec<[u8; 32]> = self
            .sessions_now()
            .into_iter()
            .filter(|s| s.user == name)
            .map(|s| s.token_hash)
            .collect();
        for hash in &ended {
            self.drop_session(*hash);
        }
        Ok(ended.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            grants: vec![Grant::everywhere(Role::Viewer)],
            revision: 0,
        }
    }

    fn session(n: u8, user: &str, expires_us: i64) -> Session {
        Session {
            token_hash: [n; 32],
            user: user.into(),
            expires_us,
        }
    }

    #[test]
    fn users_and_sessions_survive_a_flush_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = StateStore::open(dir.path()).unwrap();
            let mut b = state.batch();
            b.add_user(user("alice"), true, 3).unwrap();
            b.start_session(session(1, "alice", 100), 0).unwrap();
            b.commit().unwrap();
            assert_eq!(state.user("alice").unwrap().revision, 3);
            state.flush().unwrap();
        }
        let state = StateStore::open(dir.path()).unwrap();
        assert_eq!(state.users().len(), 1);
        assert_eq!(state.session(&[1; 32]).unwrap().user, "alice");
        assert_eq!(state.session_counts()["alice"], 1);
    }

    #[test]
    fn bootstrap_only_into_an_empty_cluster_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(dir.path()).unwrap();
        let mut b = state.batch();
        b.add_user(user("admin"), true, 1).unwrap();
        // Seen within the same batch, and after commit.
        let e = b.add_user(user("other"), true, 2).unwrap_err();
        assert!(e.to_string().contains("already has users"), "{e}");
        b.commit().unwrap();
        let mut b = state.batch();
        let e = b.add_user(user("admin"), false, 3).unwrap_err();
        assert!(e.to_string().contains("user 'admin' already exists"), "{e}");
        let e = b.add_user(user("x y"), false, 3).unwrap_err();
        assert!(e.to_string().contains("' ' at position 2"), "{e}");
    }

    #[test]
    fn grants_change_all_or_nothing_and_name_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(dir.path()).unwrap();
        let mut b = state.batch();
        b.add_user(user("op"), false, 1).unwrap();
        let line1 = Grant::new(Role::Operator, vec!["line1/**".into()]).unwrap();
        let u = b
            .change_grants("op", vec![line1.clone(), line1.clone()], vec![], 2)
            .unwrap();
        assert_eq!(u.grants.len(), 2, "a grant held already is not added twice");
        let e = b
            .change_grants(
                "op",
                vec![Grant::everywhere(Role::Admin)],
                vec![Grant::everywhere(Role::Engineer)],
                3,
            )
            .unwrap_err();
        assert!(e.to_string().contains("does not hold the grant"), "{e}");
        assert!(e.to_string().contains("operator on 'line1/**'"), "{e}");
        b.commit().unwrap();
        assert_eq!(state.user("op").unwrap().grants.len(), 2, "nothing added");
        let e = state
            .batch()
            .change_grants("nobody", vec![], vec![], 4)
            .unwrap_err();
        assert!(e.to_string().contains("unknown user 'nobody'"), "{e}");
    }

    #[test]
    fn sessions_end_with_password_changes_deletion_expiry_and_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateStore::open(dir.path()).unwrap();
        let mut b = state.batch();
        b.add_user(user("a"), false, 1).unwrap();
        b.add_user(user("b"), false, 1).unwrap();
        b.start_session(session(1, "a", 50), 0).unwrap();
        b.start_session(session(2, "a", 500), 0).unwrap();
        b.start_session(session(3, "b", 500), 0).unwrap();
        b.commit().unwrap();
        // A login at time 100 forgets the session that expired at 50.
        let mut b = state.batch();
        b.start_session(session(4, "b", 900), 100).unwrap();
        b.commit().unwrap();
        assert!(state.session(&[1; 32]).is_none());
        assert!(state.session(&[2; 32]).is_some());
        let mut b = state.batch();
        b.set_password("a", user("a").password_hash, 2).unwrap();
        assert_eq!(b.delete_user("b").unwrap(), 2);
        b.commit().unwrap();
        assert!(state.session_counts().is_empty());
        assert!(state.user("b").is_none());
        let e = state
            .batch()
            .start_session(session(5, "b", 900), 100)
            .unwrap_err();
        assert!(e.to_string().contains("unknown user 'b'"), "{e}");
        // The cap keeps the sessions that expire last.
        let mut b = state.batch();
        for n in 0..(MAX_SESSIONS_PER_USER as u8 + 2) {
            b.start_session(session(100 + n, "a", 1000 + i64::from(n)), 100)
                .unwrap();
        }
        b.commit().unwrap();
        assert_eq!(state.session_counts()["a"], MAX_SESSIONS_PER_USER as u64);
        assert!(state.session(&[100; 32]).is_none());
        assert!(state
            .session(&[101 + MAX_SESSIONS_PER_USER as u8; 32])
            .is_some());
        let mut b = state.batch();
        assert_eq!(b.end_session([101 + MAX_SESSIONS_PER_USER as u8; 32]), 1);
        assert_eq!(b.end_session([7; 32]), 0);
        b.commit().unwrap();
    }
}
