//! Sessions and users: logging in and out, and the administration of users,
//! grants, passwords and sessions.
//!
//! The token of a session is kept in the client (shared by its clones) and
//! sent with every call as `authorization: Bearer TOKEN`; see
//! [`Client::login`] and [`Client::set_token`]. Passwords go only into the
//! request that carries them; nothing here logs a request.

use bifrost_model::Grant;
use bifrost_proto::convert::grant_to_pb;

use super::{new_request_id, timed, CallKind, Client, NORMAL};
use crate::proto::{
    AddUserRequest, ChangeGrantsRequest, Consistency, DeleteUserRequest, EndSessionsRequest,
    ListUsersRequest, LoginRequest, LoginResponse, LogoutRequest, SetPasswordRequest, User,
    UserResponse, WhoAmIRequest, WhoAmIResponse,
};
use crate::{Error, Result};

/// Login goes to whichever node is next (every node takes it): leader
/// discovery would ask `Status`, which needs the credential the client is
/// about to get. Retried only on failures that say nothing about the
/// password (a node down, no leader); a refusal is final.
const LOGIN: CallKind = CallKind {
    discover: false,
    long: false,
    idempotent: true,
};

impl Client {
    /// Checks `password` of `user` and starts a session; on success the
    /// client sends its token with every later call (as do its clones).
    /// Wrong credentials are `Unauthenticated`, returned at once.
    pub async fn login(&self, user: &str, password: &str) -> Result<LoginResponse> {
        let req = LoginRequest {
            user: user.to_string(),
            password: password.to_string(),
        };
        let resp: LoginResponse = self
            .call(LOGIN, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.login(req).await }
            })
            .await?;
        self.set_token(Some(resp.token.clone()));
        Ok(resp)
    }

    /// Sends `token` with every later call of this client and its clones
    /// (`None`: no token).
    pub fn set_token(&self, token: Option<String>) {
        self.inner.credentials.set(token);
    }

    /// The token this client sends, if any.
    pub fn token(&self) -> Option<String> {
        self.inner.credentials.get()
    }

    /// Ends the session whose token the client sends, then forgets the
    /// token, whether the call succeeded or not.
    pub async fn logout(&self) -> Result<()> {
        let r = self
            .call(NORMAL, |mut c, t| async move {
                c.logout(timed(LogoutRequest {}, t)).await
            })
            .await;
        self.set_token(None);
        r.map(|_| ())
    }

    /// Who the client's credential names, how it was recognised (`token`,
    /// `certificate`, or `insecure` for a node that checks nothing), and
    /// the user's grants.
    pub async fn whoami(&self) -> Result<WhoAmIResponse> {
        self.call(NORMAL, |mut c, t| async move {
            c.who_am_i(timed(WhoAmIRequest {}, t)).await
        })
        .await
    }

    /// Creates user `name` with `password` and `grants` (administrators
    /// only).
    pub async fn add_user(&self, name: &str, password: &str, grants: Vec<Grant>) -> Result<User> {
        let req = AddUserRequest {
            name: name.to_string(),
            password: password.to_string(),
            grants: grants.iter().map(grant_to_pb).collect(),
            request_id: new_request_id(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.add_user(req).await }
            })
            .await?;
        user_of(resp, "AddUser")
    }

    /// Deletes user `name` (ending its sessions); returns the revision of
    /// the change.
    pub async fn delete_user(&self, name: &str) -> Result<u64> {
        let req = DeleteUserRequest {
            name: name.to_string(),
            request_id: new_request_id(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.delete_user(req).await }
            })
            .await?;
        Ok(resp.revision)
    }

    pub async fn list_users(&self, consistency: Consistency) -> Result<Vec<User>> {
        let req = ListUsersRequest {
            consistency: consistency as i32,
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req, t);
                async move { c.list_users(req).await }
            })
            .await?;
        Ok(resp.users)
    }

    /// Adds the grants in `add` and removes those in `remove` (each held
    /// exactly as written), all or nothing; returns the user as changed.
    pub async fn change_grants(
        &self,
        name: &str,
        add: Vec<Grant>,
        remove: Vec<Grant>,
    ) -> Result<User> {
        let req = ChangeGrantsRequest {
            name: name.to_string(),
            add: add.iter().map(grant_to_pb).collect(),
            remove: remove.iter().map(grant_to_pb).collect(),
            request_id: new_request_id(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.change_grants(req).await }
            })
            .await?;
        user_of(resp, "ChangeGrants")
    }

    /// Sets the password of `name`, which ends all of its sessions.
    /// Users changing their own password give the old one; an
    /// administrator setting another's gives `None`.
    pub async fn set_password(
        &self,
        name: &str,
        old_password: Option<&str>,
        new_password: &str,
    ) -> Result<User> {
        let req = SetPasswordRequest {
            name: name.to_string(),
            old_password: old_password.unwrap_or_default().to_string(),
            new_password: new_password.to_string(),
            request_id: new_request_id(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.set_password(req).await }
            })
            .await?;
        user_of(resp, "SetPassword")
    }

    /// Ends all sessions of `name`; returns how many were open.
    pub async fn end_sessions(&self, name: &str) -> Result<u64> {
        let req = EndSessionsRequest {
            name: name.to_string(),
        };
        let resp = self
            .call(NORMAL, |mut c, t| {
                let req = timed(req.clone(), t);
                async move { c.end_sessions(req).await }
            })
            .await?;
        Ok(resp.ended)
    }
}

fn user_of(resp: UserResponse, call: &str) -> Result<User> {
    resp.user
        .ok_or_else(|| Error::Protocol(format!("{call} reply without a user")))
}
