//! Access policy: what one user may do, given the role grants they hold.
//!
//! A user holds one or more [`Grant`]s. Each names a [`Role`] (`viewer <
//! operator < engineer < admin`) and, optionally, the tags it is restricted
//! to, as tag-name globs in the [`Pattern::glob`] syntax (`line1/**`,
//! `line?/valve`); a grant with no globs covers every tag. [`Access`]
//! combines a user's grants (their union) and answers, for a [`Permission`]
//! and possibly a tag name, whether the user has it; [`Access::check`] says
//! why not in a [`Denied`] error fit to show the caller.
//!
//! This module is pure policy: plain data and functions, no I/O, no clock,
//! no storage, no networking, no crypto, and it must stay that way (it
//! depends on `std`, `serde` and `thiserror` only, like the rest of the
//! model). Authentication is not here: who a caller is comes from a session
//! token or a client certificate, checked by the server at the API edge;
//! this module only answers what that user may do. The server builds one
//! [`Access`] per user from the replicated grants (rebuilding it when they
//! change) and asks it on every call: [`Access::check`] before a write, a
//! config change or an administrative call, [`Access::visible`] to filter
//! what a query, a tag listing, history, a watch or an export returns, and
//! [`Access::visible_prefixes`] to let the query planner visit only the tags
//! a user can see. A forwarded call is checked against the original
//! caller's access, never the forwarding node's.
//!
//! ## Which permissions a tag restriction can grant
//!
//! * [`Permission::Read`] of a tag (its readings, history, watch, its row in
//!   a listing or an export) needs a grant covering that tag. Reads that are
//!   about no tag (cluster status, members, health) are allowed to anyone
//!   holding any grant; answers that list tags must be filtered with
//!   [`Access::visible`].
//! * [`Permission::WriteDevice`] is always about a tag: an operator (or
//!   higher) grant covering the tag written. Asked without a tag
//!   ([`Access::allows`]), it means "write to any device", which needs an
//!   unrestricted grant.
//! * [`Permission::Configure`] of a tag (create, change, delete it) needs an
//!   engineer (or higher) grant covering the tag's name; a rename needs both
//!   names covered. Configuring a device (its endpoint, protocol and poll
//!   settings serve every tag on it) and importing a config file are
//!   cluster-wide: asked without a tag, they need an unrestricted engineer
//!   grant.
//! * [`Permission::Administer`] (users, grants, membership, retention,
//!   certificates) is cluster-wide whatever the tag: it needs an
//!   unrestricted admin grant. An admin grant restricted to tags would grant
//!   nothing an engineer grant does not, so [`Grant::new`] refuses it rather
//!   than let it look more powerful than it is.
//! * The glob `**` is refused too: it reads as "every tag" but would still
//!   be a restriction; an unrestricted grant is written as an empty list.
//!
//! ## Persisted layout
//!
//! [`Role`], [`Permission`] and [`Grant`] are replicated config, stored with
//! postcard (enum variants by position, struct fields in order): the variant
//! order of `Role` and `Permission` and the field order of `Grant` are
//! append-only, pinned by the `layout` tests. Serde names (`operator`,
//! `write`) are what JSON documents use. Decoding a `Grant` validates it as
//! [`Grant::new`] does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::name::MAX_NAME_LEN;
use crate::pattern::Pattern;

/// A role, from least to most privileged; each role has every permission of
/// the roles below it. Spelt in lower case everywhere. Variant order is
/// persisted and is also the privilege order (`Ord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Role {
    /// Read, query, watch, history, export, status.
    Viewer,
    /// A viewer who may also write to devices.
    Operator,
    /// An operator who may also change device and tag config and import.
    Engineer,
    /// An engineer who may also manage users, grants, membership, retention
    /// and certificates.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Engineer, Role::Admin];

    /// Lower-case name as written in flags, documents and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Engineer => "engineer",
            Role::Admin => "admin",
        }
    }

    /// Whether this role has `permission` (on the tags its grant covers).
    pub fn allows(self, permission: Permission) -> bool {
        self >= permission.least_role()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AccessError;

    fn from_str(s: &str) -> Result<Role, AccessError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| AccessError::UnknownRole(s.to_string()))
    }
}

/// What a call needs. Variant order is persisted (audit records may carry
/// it): append, never reorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Read, query, watch, history, export, status.
    Read,
    /// Write a value to a device through a tag.
    #[serde(rename = "write")]
    WriteDevice,
    /// Create, change or delete devices and tags; import config.
    Configure,
    /// Users, grants, cluster membership, retention, certificates.
    Administer,
}

impl Permission {
    pub const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::WriteDevice,
        Permission::Configure,
        Permission::Administer,
    ];

    /// Stable short name (`read`, `write`, `configure`, `administer`), as in
    /// documents, metrics labels and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::WriteDevice => "write",
            Permission::Configure => "configure",
            Permission::Administer => "administer",
        }
    }

    /// The least role that has this permission.
    pub fn least_role(self) -> Role {
        match self {
            Permission::Read => Role::Viewer,
            Permission::WriteDevice => Role::Operator,
            Permission::Configure => Role::Engineer,
            Permission::Administer => Role::Admin,
        }
    }

    /// Whether the permission is about the whole cluster even when a tag is
    /// named, so only an unrestricted grant can give it.
    pub fn is_cluster_wide(self) -> bool {
        self == Permission::Administer
    }
}

/// What an error names: `write to devices`.
impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Permission::Read => "read",
            Permission::WriteDevice => "write to devices",
            Permission::Configure => "configure devices and tags",
            Permission::Administer => "administer users and the cluster",
        })
    }
}

impl FromStr for Permission {
    type Err = AccessError;

    /// Parses the short name ([`Permission::as_str`]).
    fn from_str(s: &str) -> Result<Permission, AccessError> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| AccessError::UnknownPermission(s.to_string()))
    }
}

/// A role name, permission name or grant that is not valid; the message
/// names the bad input and what would be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("unknown role '{0}' (expected one of: viewer, operator, engineer, admin)")]
    UnknownRole(String),
    #[error("unknown permission '{0}' (expected one of: read, write, configure, administer)")]
    UnknownPermission(String),
    /// One of a grant's tag globs; `reason` names the pattern.
    #[error("{role} grant: {reason}")]
    BadPattern {
        role: Role,
        pattern: String,
        reason: String,
    },
    #[error("admin grant restricted to {tags}: administering users, grants, membership and retention is cluster-wide, so an admin grant cannot be restricted to tags (grant engineer on those tags, or admin on every tag)")]
    RestrictedAdmin { tags: String },
}

/// One role, on every tag or on the tags matching its globs. Validated on
/// construction and on decoding; field order is persisted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GrantRecord", into = "GrantRecord")]
pub struct Grant {
    role: Role,
    tags: Vec<String>,
    /// `tags` compiled, in the same order.
    patterns: Vec<Pattern>,
}

/// The persisted and JSON form of a [`Grant`]: `{"role": "operator",
/// "tags": ["line1/**"]}` (`tags` may be left out for every tag).
#[derive(Serialize, Deserialize)]
struct GrantRecord {
    role: Role,
    #[serde(default)]
    tags: Vec<String>,
}

impl TryFrom<GrantRecord> for Grant {
    type Error = AccessError;

    fn try_from(r: GrantRecord) -> Result<Grant, AccessError> {
        Grant::new(r.role, r.tags)
    }
}

impl From<Grant> for GrantRecord {
    fn from(g: Grant) -> GrantRecord {
        GrantRecord {
            role: g.role,
            tags: g.tags,
        }
    }
}

impl Grant {
    /// `role` on the tags matching any of `tags` (globs, [`Pattern::glob`]
    /// syntax), or on every tag if `tags` is empty. Refuses a glob that is
    /// malformed or can never match a tag name, the glob `**`, and an
    /// admin grant restricted to tags (see the module docs).
    pub fn new(role: Role, tags: Vec<String>) -> Result<Grant, AccessError> {
        if role == Role::Admin && !tags.is_empty() {
            return Err(AccessError::RestrictedAdmin {
                tags: quoted_list(&tags),
            });
        }
        let mut patterns = Vec::with_capacity(tags.len());
        for glob in &tags {
            let bad = |reason: String| AccessError::BadPattern {
                role,
                pattern: glob.clone(),
                reason,
            };
            if glob == "**" {
                return Err(bad("tag glob '**' covers every tag but would still count as a restriction; leave the tag list empty for a grant on every tag".into()));
            }
            patterns.push(compile_tag_glob(glob).map_err(bad)?);
        }
        Ok(Grant {
            role,
            tags,
            patterns,
        })
    }

    /// `role` on every tag.
    pub fn everywhere(role: Role) -> Grant {
        Grant {
            role,
            tags: Vec::new(),
            patterns: Vec::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The tag globs as written; empty for every tag.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether the grant covers every tag (no globs).
    pub fn is_unrestricted(&self) -> bool {
        self.tags.is_empty()
    }

    /// Whether the grant covers the tag named `tag`.
    pub fn covers(&self, tag: &str) -> bool {
        self.is_unrestricted() || self.patterns.iter().any(|p| p.matches(tag))
    }

    /// Whether this grant gives `permission` on `tag` (or, with no tag, on
    /// the whole cluster; see the module docs).
    fn gives(&self, permission: Permission, tag: Option<&str>) -> bool {
        if !self.role.allows(permission) {
            return false;
        }
        if self.is_unrestricted() {
            return true;
        }
        match tag {
            _ if permission.is_cluster_wide() => false,
            Some(tag) => self.covers(tag),
            None => permission == Permission::Read,
        }
    }
}

/// Checks one tag glob of a grant; the error names it.
fn compile_tag_glob(glob: &str) -> Result<Pattern, String> {
    if glob.is_empty() {
        return Err(
            "an empty tag glob matches no tag (leave the tag list empty for a grant on every tag)"
                .into(),
        );
    }
    if glob.len() > MAX_NAME_LEN {
        return Err(format!(
            "tag glob '{glob}' is {} bytes long; at most {MAX_NAME_LEN} are allowed, as for tag names",
            glob.len()
        ));
    }
    if let Some((pos, c)) = glob.char_indices().find(|&(_, c)| {
        !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*' | '?'))
    }) {
        return Err(format!(
            "tag glob '{glob}': character {c:?} at position {} can never match a tag name (tag names use letters, digits, '_', '-', '.' and '/'; globs add '*', '**' and '?')",
            pos + 1
        ));
    }
    if let Some(i) = glob.split('/').position(str::is_empty) {
        let hint = match glob.strip_suffix('/') {
            Some(dir) if !dir.is_empty() => {
                format!("; for every tag under '{glob}' write '{dir}/**'")
            }
            _ => String::new(),
        };
        return Err(format!(
            "tag glob '{glob}': segment {} is empty, so it can never match a tag name (no leading, trailing or double '/'){hint}",
            i + 1
        ));
    }
    Pattern::glob(glob).map_err(|e| format!("tag {e}"))
}

fn quoted_list(tags: &[String]) -> String {
    tags.iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `operator on 'line1/**', 'line2/*'`, `viewer on every tag`.
impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unrestricted() {
            write!(f, "{} on every tag", self.role)
        } else {
            write!(f, "{} on {}", self.role, quoted_list(&self.tags))
        }
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("role", &self.role)
            .field("tags", &self.tags)
            .finish()
    }
}

/// What one user may do: the union of their grants. Build it once per user
/// (the globs are compiled in the grants) and ask it per call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    grants: Vec<Grant>,
}

impl Access {
    pub fn new(grants: Vec<Grant>) -> Access {
        Access { grants }
    }

    /// Everything: admin on every tag (for a cluster run without
    /// authentication, and for the node's own internal calls).
    pub fn full() -> Access {
        Access::new(vec![Grant::everywhere(Role::Admin)])
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Whether the user has `permission` for a call that names no tag:
    /// `Read` with any grant; anything else only through an unrestricted
    /// grant whose role has it (see the module docs).
    pub fn allows(&self, permission: Permission) -> bool {
        self.grants.iter().any(|g| g.gives(permission, None))
    }

    /// Whether the user has `permission` on the tag named `tag`: through a
    /// grant whose role has it and that covers the tag (`Administer` only
    /// through an unrestricted grant).
    pub fn allows_tag(&self, permission: Permission, tag: &str) -> bool {
        self.grants.iter().any(|g| g.gives(permission, Some(tag)))
    }

    /// Whether the user may see the tag named `tag` (and its readings) in
    /// queries, listings, history, watch and exports.
    pub fn visible(&self, tag: &str) -> bool {
        self.allows_tag(Permission::Read, tag)
    }

    /// [`Access::allows`] or [`Access::allows_tag`], with an error saying
    /// what is missing.
    pub fn check(&self, permission: Permission, tag: Option<&str>) -> Result<(), Denied> {
        let allowed = match tag {
            Some(t) => self.allows_tag(permission, t),
            None => self.allows(permission),
        };
        if allowed {
            return Ok(());
        }
        Err(Denied {
            permission,
            tag: tag.map(str::to_string),
            needs: permission.least_role(),
            held: self.grants.iter().map(Grant::to_string).collect(),
        })
    }

    /// The literal prefixes of the tag names this user may see, for a
    /// planner that wants to visit only those: `None` when every tag is
    /// visible (no filtering needed); otherwise the sorted prefixes, none a
    /// prefix of another (an empty list when nothing is visible). Every
    /// visible tag starts with one of them, but not every tag that does is
    /// visible: filter with [`Access::visible`] as well.
    pub fn visible_prefixes(&self) -> Option<Vec<String>> {
        if self.grants.iter().any(Grant::is_unrestricted) {
            return None;
        }
        let mut prefixes: Vec<&str> = self
            .grants
            .iter()
            .flat_map(|g| g.patterns.iter().map(Pattern::literal_prefix))
            .collect();
        prefixes.sort_unstable();
        let mut kept: Vec<String> = Vec::new();
        for p in prefixes {
            if !kept.last().is_some_and(|k| p.starts_with(k.as_str())) {
                kept.push(p.to_string());
            }
        }
        Some(kept)
    }
}

/// A refused call: which permission was missing, on which tag if any, and
/// the least role that would have it. The message is fit to show the
/// caller (`permission_denied`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    permission: Permission,
    tag: Option<String>,
    needs: Role,
    /// The user's grants, as displayed.
    held: Vec<String>,
}

impl Denied {
    pub fn permission(&self) -> Permission {
        self.permission
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The least role that has the permission.
    pub fn needs(&self) -> Role {
        self.needs
    }
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_higher = if self.needs == Role::Admin {
            ""
        } else {
            " or higher"
        };
        write!(f, "permission denied: {}", self.permission)?;
        match &self.tag {
            _ if self.permission.is_cluster_wide() => write!(
                f,
                " needs role {}{or_higher} on a grant not restricted to tags",
                self.needs
            )?,
            Some(tag) => write!(
                f,
                " (tag '{tag}') needs role {}{or_higher} on a grant covering that tag",
                self.needs
            )?,
            None if self.permission == Permission::Read => {
                write!(f, " needs role {}{or_higher}", self.needs)?
            }
            None => write!(
                f,
                " needs role {}{or_higher} on a grant not restricted to tags",
                self.needs
            )?,
        }
        if self.held.is_empty() {
            f.write_str("; this user has no grants")
        } else {
            write!(f, "; this user has {}", self.held.join("; "))
        }
    }
}

impl std::error::Error for Denied {}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;
    use Role::*;

    fn grant(role: Role, tags: &[&str]) -> Grant {
        Grant::new(role, tags.iter().map(|t| t.to_string()).collect()).unwrap()
    }

    fn access(grants: &[(Role, &[&str])]) -> Access {
        Access::new(grants.iter().map(|(r, t)| grant(*r, t)).collect())
    }

    #[test]
    fn role_permission_matrix() {
        // rows: viewer, operator, engineer, admin; columns: read, write,
        // configure, administer
        let expected = [
            [true, false, false, false],
            [true, true, false, false],
            [true, true, true, false],
            [true, true, true, true],
        ];
        for (role, row) in Role::ALL.into_iter().zip(expected) {
            for (permission, allowed) in Permission::ALL.into_iter().zip(row) {
                assert_eq!(role.allows(permission), allowed, "{role} {permission}");
                // An unrestricted grant of the role gives the same, with or
                // without a tag.
                let a = Access::new(vec![Grant::everywhere(role)]);
                assert_eq!(a.allows(permission), allowed, "{role} {permission}");
                assert_eq!(
                    a.allows_tag(permission, "line1/a"),
                    allowed,
                    "{role} {permission} on a tag"
                );
                assert_eq!(a.check(permission, Some("x")).is_ok(), allowed);
                assert_eq!(a.check(permission, None).is_ok(), allowed);
            }
        }
        assert!(Viewer < Operator && Operator < Engineer && Engineer < Admin);
        for p in Permission::ALL {
            assert!(p.least_role().allows(p));
            assert!(Access::full().allows(p));
            assert!(!Access::default().allows(p), "no grants, no {p}");
            assert!(!Access::default().allows_tag(p, "a"), "no grants, no {p}");
        }
    }

    #[test]
    fn role_names_parse_and_errors_name_the_input_and_the_choices() {
        for r in Role::ALL {
            assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
        }
        let e = "superuser".parse::<Role>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown role 'superuser' (expected one of: viewer, operator, engineer, admin)"
        );
        assert!("Admin".parse::<Role>().is_err(), "names are lower case");
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
        }
        let e = "delete".parse::<Permission>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown permission 'delete' (expected one of: read, write, configure, administer)"
        );
        assert_eq!(WriteDevice.to_string(), "write to devices");
        assert_eq!(WriteDevice.as_str(), "write");
    }

    #[test]
    fn operator_of_a_line_writes_only_that_line() {
        let a = access(&[(Operator, &["line1/**"])]);
        assert!(a.allows_tag(WriteDevice, "line1/a/b"));
        assert!(a.allows_tag(WriteDevice, "line1/valve"));
        assert!(!a.allows_tag(WriteDevice, "line2/x"));
        assert!(
            !a.allows_tag(WriteDevice, "line10/x"),
            "not a string prefix"
        );
        assert!(!a.allows_tag(WriteDevice, "line1"), "'**' needs the '/'");
        assert!(a.visible("line1/a/b"));
        assert!(!a.visible("line2/x"));
        assert!(
            !a.allows_tag(Configure, "line1/a"),
            "operator, not engineer"
        );
        // Without a tag, writing is "to any device": not for a scoped grant.
        assert!(!a.allows(WriteDevice));
        // Reads that are about no tag (status) are allowed to any grant.
        assert!(a.allows(Read));
        assert!(!a.allows(Configure));
        assert!(!a.allows(Administer));
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        let a = access(&[(Viewer, &["line1/*"])]);
        assert!(a.visible("line1/a"));
        assert!(!a.visible("line1/a/b"));
        assert!(!a.visible("line2/a"));
        assert!(!a.allows_tag(WriteDevice, "line1/a"));
        let a = access(&[(Viewer, &["line?/temp"])]);
        assert!(a.visible("line1/temp"));
        assert!(!a.visible("line12/temp"));
        let a = access(&[(Viewer, &["line1/press3/temperature"])]);
        assert!(a.visible("line1/press3/temperature"));
        assert!(!a.visible("line1/press3/temperature2"));
    }

    #[test]
    fn grants_combine_as_a_union() {
        let a = access(&[
            (Viewer, &["line1/**"]),
            (Operator, &["line2/**", "line3/valve"]),
            (Engineer, &["line4/*"]),
        ]);
        assert!(a.visible("line1/a"));
        assert!(a.visible("line2/a/b"));
        assert!(a.visible("line3/valve"));
        assert!(a.visible("line4/x"));
        assert!(!a.visible("line3/other"));
        assert!(!a.visible("line5/x"));
        assert!(!a.allows_tag(WriteDevice, "line1/a"));
        assert!(a.allows_tag(WriteDevice, "line2/a"));
        assert!(a.allows_tag(WriteDevice, "line3/valve"));
        assert!(
            a.allows_tag(WriteDevice, "line4/x"),
            "engineer is an operator too"
        );
        assert!(!a.allows_tag(WriteDevice, "line4/x/y"));
        assert!(a.allows_tag(Configure, "line4/x"));
        assert!(!a.allows_tag(Configure, "line2/a"));
        assert!(!a.allows(Configure), "devices need an unrestricted grant");
    }

    #[test]
    fn unrestricted_viewer_plus_scoped_operator() {
        let a = access(&[(Viewer, &[]), (Operator, &["line1/**"])]);
        assert!(a.visible("line1/a"));
        assert!(a.visible("line2/a"));
        assert!(a.visible("anything"));
        assert!(a.allows_tag(WriteDevice, "line1/a"));
        assert!(!a.allows_tag(WriteDevice, "line2/a"));
        assert!(a.allows(Read));
        assert!(!a.allows(WriteDevice));
        assert_eq!(a.visible_prefixes(), None);
    }

    #[test]
    fn cluster_wide_permissions_need_an_unrestricted_grant() {
        let scoped = access(&[(Engineer, &["line1/**"])]);
        assert!(
            scoped.allows_tag(Configure, "line1/new"),
            "tag config: by tag"
        );
        assert!(!scoped.allows(Configure), "device config and import");
        assert!(!scoped.allows_tag(Administer, "line1/a"));
        let everywhere = access(&[(Engineer, &[])]);
        assert!(everywhere.allows(Configure));
        assert!(everywhere.allows(WriteDevice));
        assert!(!everywhere.allows(Administer));
        let admin = access(&[(Admin, &[])]);
        assert!(admin.allows(Administer));
        assert!(admin.allows_tag(Administer, "line1/a"));
    }

    #[test]
    fn denied_names_the_permission_the_tag_and_the_role() {
        let a = access(&[(Operator, &["line1/**"])]);
        let e = a.check(WriteDevice, Some("line2/valve")).unwrap_err();
        assert_eq!(e.permission(), WriteDevice);
        assert_eq!(e.tag(), Some("line2/valve"));
        assert_eq!(e.needs(), Operator);
        assert_eq!(
            e.to_string(),
            "permission denied: write to devices (tag 'line2/valve') needs role operator or higher \
             on a grant covering that tag; this user has operator on 'line1/**'"
        );
        assert!(a.check(WriteDevice, Some("line1/valve")).is_ok());

        let e = a.check(Configure, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "permission denied: configure devices and tags needs role engineer or higher \
             on a grant not restricted to tags; this user has operator on 'line1/**'"
        );
        let e = access(&[(Viewer, &[]), (Engineer, &["a/*"])])
            .check(Administer, Some("a/b"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "permission denied: administer users and the cluster needs role admin on a grant \
             not restricted to tags; this user has viewer on every tag; engineer on 'a/*'"
        );
        let e = Access::default().check(Read, None).unwrap_err().to_string();
        assert_eq!(
            e,
            "permission denied: read needs role viewer or higher; this user has no grants"
        );
    }

    #[test]
    fn bad_grants_are_refused_naming_the_glob() {
        let bad = |role: Role, tags: &[&str]| {
            Grant::new(role, tags.iter().map(|t| t.to_string()).collect())
                .unwrap_err()
                .to_string()
        };
        let e = bad(Operator, &["line1/**", "line2/***"]);
        assert!(
            e.starts_with("operator grant: tag glob 'line2/***': 3 '*'"),
            "{e}"
        );
        let e = bad(Viewer, &["line1/[ab]"]);
        assert!(e.contains("'line1/[ab]'"), "{e}");
        assert!(e.contains("character '[' at position 7"), "{e}");
        let e = bad(Viewer, &["line 1/**"]);
        assert!(
            e.contains("'line 1/**': character ' ' at position 5"),
            "{e}"
        );
        let e = bad(Viewer, &["line1/"]);
        assert!(e.contains("segment 2 is empty"), "{e}");
        assert!(e.contains("write 'line1/**'"), "{e}");
        let e = bad(Viewer, &["/line1/**"]);
        assert!(e.contains("segment 1 is empty"), "{e}");
        let e = bad(Viewer, &[""]);
        assert!(e.contains("empty tag glob"), "{e}");
        let e = bad(Viewer, &["**"]);
        assert!(e.contains("leave the tag list empty"), "{e}");
        let e = bad(Admin, &["line1/**"]);
        assert!(e.starts_with("admin grant restricted to 'line1/**'"), "{e}");
        assert!(e.contains("grant engineer on those tags"), "{e}");
        let e = bad(Viewer, &[&"a".repeat(MAX_NAME_LEN + 1)]);
        assert!(e.contains("at most 256"), "{e}");

        match Grant::new(Operator, vec!["ok/**".into(), "bad/***".into()]) {
            Err(AccessError::BadPattern { role, pattern, .. }) => {
                assert_eq!((role, pattern.as_str()), (Operator, "bad/***"));
            }
            other => panic!("{other:?}"),
        }
        let e = bad(Viewer, &["x/**", "**"]);
        assert!(e.contains("'**' covers every tag"), "{e}");
        assert!(Grant::new(Admin, vec![]).is_ok());
        assert!(Grant::new(Viewer, vec!["*/**".into()]).is_ok());
    }

    #[test]
    fn grants_display_and_decode_with_validation() {
        assert_eq!(
            grant(Operator, &["line1/**", "line2/*"]).to_string(),
            "operator on 'line1/**', 'line2/*'"
        );
        assert_eq!(grant(Viewer, &[]).to_string(), "viewer on every tag");
        let g = grant(Operator, &["line1/**"]);
        let bytes = postcard::to_stdvec(&g).unwrap();
        assert_eq!(postcard::from_bytes::<Grant>(&bytes).unwrap(), g);
        // A record that Grant::new would refuse does not decode either.
        let bad = postcard::to_stdvec(&GrantRecord {
            role: Viewer,
            tags: vec!["a/***".into()],
        })
        .unwrap();
        let e = postcard::from_bytes::<Grant>(&bad).unwrap_err();
        assert!(matches!(e, postcard::Error::SerdeDeCustom), "{e:?}");
    }

    #[test]
    fn visible_prefixes_bound_the_visible_tags() {
        assert_eq!(access(&[(Admin, &[])]).visible_prefixes(), None);
        assert_eq!(Access::default().visible_prefixes(), Some(vec![]));
        let a = access(&[
            (Viewer, &["line1/*", "line2/**"]),
            (Operator, &["line1/a/**", "line10/x?", "line3/valve"]),
        ]);
        assert_eq!(
            a.visible_prefixes(),
            Some(vec![
                "line1/".to_string(),
                "line10/x".to_string(),
                "line2/".to_string(),
                "line3/valve".to_string(),
            ])
        );
        let names = [
            "line1/a",
            "line1/a/b",
            "line10/x1",
            "line2/q",
            "line3/valve",
            "line4/z",
        ];
        let prefixes = a.visible_prefixes().unwrap();
        for n in names {
            if a.visible(n) {
                assert!(prefixes.iter().any(|p| n.starts_with(p.as_str())), "{n}");
            }
        }
        assert!(!a.visible("line4/z"));
        // A glob starting with a wildcard bounds nothing.
        assert_eq!(
            access(&[(Viewer, &["*/temp", "line1/**"])]).visible_prefixes(),
            Some(vec![String::new()])
        );
    }
}
