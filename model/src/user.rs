//! Users and their sessions, as replicated config: a [`User`] holds a
//! password hash (a PHC string made by the server at the API edge, never a
//! password) and role grants; a [`Session`] is a logged-in token, held only
//! as the hash of the token.
//!
//! Pure data and validation, like the rest of the model: hashing, tokens
//! and clocks belong to the server. Field order is persisted (postcard):
//! append, never reorder.

use serde::{Deserialize, Serialize};

use crate::access::{Access, Grant};
use crate::Invalid;

/// Longest accepted user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 64;

/// How many sessions one user may hold at once; starting one more ends the
/// one that expires first.
pub const MAX_SESSIONS_PER_USER: usize = 64;

/// A user of the public API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// argon2id hash of the password in PHC string form (`$argon2id$...`);
    /// empty for a user who logs in with a certificate only.
    pub password_hash: String,
    /// What the user may do: the union of these.
    pub grants: Vec<Grant>,
    /// Raft log index of the last change; set by the state machine.
    pub revision: u64,
}

impl User {
    /// What this user may do.
    pub fn access(&self) -> Access {
        Access::new(self.grants.clone())
    }

    /// Checks the name (see [`validate_user_name`]) and that the password
    /// hash, if any, is a PHC string.
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_user_name(&self.name)?;
        if !self.password_hash.is_empty() && !self.password_hash.starts_with('$') {
            return Err(Invalid::new(format!(
                "user '{}': the password hash is not a PHC string",
                self.name
            )));
        }
        Ok(())
    }
}

/// User names: 1 to 64 of `[A-Za-z0-9_.-]`, starting with a letter or
/// digit (they appear in certificate URIs, `urn:bifrost:user:NAME`, and in
/// audit records).
pub fn validate_user_name(name: &str) -> Result<(), Invalid> {
    if name.is_empty() {
        return Err(Invalid::new("user name is empty"));
    }
    if name.len() > MAX_USER_NAME_LEN {
        return Err(Invalid::new(format!(
            "user name '{name}' is {} bytes long; at most {MAX_USER_NAME_LEN} are allowed",
            name.len()
        )));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Invalid::new(format!(
            "user name '{name}' must start with a letter or a digit"
        )));
    }
    if let Some((pos, c)) = name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(Invalid::new(format!(
            "user name '{name}': character {c:?} at position {} is not allowed (use letters, digits, '_', '-', '.')",
            pos + 1
        )));
    }
    Ok(())
}

/// A logged-in session. The token itself is shown once, to the client that
/// logged in; the cluster keeps only its BLAKE3 hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub token_hash: [u8; 32],
    pub user: String,
    /// When the session stops being accepted, microseconds since the epoch
    /// (each node compares it with its own clock).
    pub expires_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Role;

    #[test]
    fn user_names_are_checked_and_errors_say_where() {
        assert!(validate_user_name("alice").is_ok());
        assert!(validate_user_name("ops.team-1_b").is_ok());
        let e = validate_user_name("").unwrap_err();
        assert_eq!(e.message, "user name is empty");
        let e = validate_user_name("-x").unwrap_err();
        assert!(
            e.message.contains("must start with a letter"),
            "{}",
            e.message
        );
        let e = validate_user_name("al ice").unwrap_err();
        assert!(e.message.contains("' ' at position 3"), "{}", e.message);
        let e = validate_user_name(&"a".repeat(65)).unwrap_err();
        assert!(e.message.contains("65 bytes long"), "{}", e.message);
    }

    #[test]
    fn a_user_is_valid_only_with_a_phc_hash_or_none() {
        let mut u = User {
            name: "alice".into(),
            password_hash: String::new(),
            grants: vec![Grant::everywhere(Role::Viewer)],
            revision: 0,
        };
        assert!(u.validate().is_ok());
        u.password_hash = "hunter2".into();
        let e = u.validate().unwrap_err();
        assert!(e.message.contains("not a PHC string"), "{}", e.message);
        u.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into();
        assert!(u.validate().is_ok());
    }

    #[test]
    fn access_is_the_union_of_the_grants() {
        let u = User {
            name: "op".into(),
            password_hash: String::new(),
            grants: vec![
                Grant::new(Role::Operator, vec!["line1/**".into()]).unwrap(),
                Grant::new(Role::Viewer, vec!["line2/**".into()]).unwrap(),
            ],
            revision: 0,
        };
        let a = u.access();
        assert!(a.allows_tag(crate::Permission::WriteDevice, "line1/v"));
        assert!(!a.allows_tag(crate::Permission::WriteDevice, "line2/v"));
        assert!(a.visible("line2/v"));
        assert!(!a.visible("line3/v"));
    }
}
