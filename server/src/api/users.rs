//! Users and sessions: `Login`, `Logout`, `WhoAmI`, and the administration
//! of users, grants and passwords. Passwords are checked and hashed here,
//! on the node that took the call (see [`crate::auth`]); what is proposed
//! holds hashes only.
//!
//! Who may call what: `Login` anyone; `Logout` and `WhoAmI` any caller;
//! `SetPassword` the user themself (giving the old password) or an admin;
//! the rest admins only (checked in `api/mod.rs` before these run).

use bifrost_model::{now_us, Grant, User};
use bifrost_proto::convert::{grant_from_pb, user_to_pb};
use bifrost_proto::v1 as pb;
use bifrost_raft::{Command, Outcome, UserChange};
use tonic::Status;

use super::config::once;
use super::{status, Api};
use crate::auth::{self, Caller};

/// The same answer for an unknown user and a wrong password.
const LOGIN_FAILED: &str = "login failed: unknown user or wrong password";

pub async fn login(api: &Api, req: pb::LoginRequest) -> Result<pb::LoginResponse, Status> {
    if !api.auth.options().enforce {
        return Err(Status::failed_precondition(
            "this node runs --insecure and checks no credential; there is nothing to log in to",
        ));
    }
    api.auth.login_attempt(&req.user)?;
    api.linearizable_barrier().await?;
    let user = api.node.state().user(&req.user);
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    if !auth::verify_password(hash, req.password).await {
        tracing::warn!(user = %req.user, "login failed");
        return Err(Status::unauthenticated(LOGIN_FAILED));
    }
    let user = user.ok_or_else(|| Status::unauthenticated(LOGIN_FAILED))?;
    let (token, session) = api.auth.new_session(&user.name);
    let expires_us = session.expires_us;
    api.write(Command::Users(UserChange::StartSession {
        session,
        now_us: now_us(),
    }))
    .await?;
    Ok(pb::LoginResponse {
        token,
        expires_us,
        user: Some(user_pb(api, &user)),
    })
}

pub async fn logout(api: &Api, caller: &Caller) -> Result<pb::LogoutResponse, Status> {
    let token_hash = caller.token_hash.ok_or_else(|| {
        Status::failed_precondition(
            "this call carries no session token, so there is no session to end",
        )
    })?;
    api.write(Command::Users(UserChange::EndSession { token_hash }))
        .await?;
    Ok(pb::LogoutResponse {})
}

pub fn whoami(api: &Api, caller: &Caller) -> pb::WhoAmIResponse {
    pb::WhoAmIResponse {
        user: caller.user.as_ref().map(|u| user_pb(api, u)),
        via: caller.via.as_str().into(),
    }
}

pub async fn add_user(api: &Api, req: pb::AddUserRequest) -> Result<pb::UserResponse, Status> {
    bifrost_model::validate_user_name(&req.name).map_err(status::invalid)?;
    let grants = grants(req.grants)?;
    let password_hash = new_password_hash(req.password).await?;
    let user = User {
        name: req.name,
        password_hash,
        grants,
        revision: 0,
    };
    let cmd = Command::Users(UserChange::Add { user });
    user_reply(api, api.write(once(&req.request_id, cmd)?).await?)
}

pub async fn delete_user(
    api: &Api,
    req: pb::DeleteUserRequest,
) -> Result<pb::DeleteResponse, Status> {
    let cmd = Command::Users(UserChange::Delete { name: req.name });
    api.write(once(&req.request_id, cmd)?).await?;
    Ok(pb::DeleteResponse {
        revision: api.node.commit_index(),
    })
}

pub async fn list_users(
    api: &Api,
    req: pb::ListUsersRequest,
) -> Result<pb::ListUsersResponse, Status> {
    api.read_barrier(req.consistency).await?;
    let state = api.node.state();
    let counts = state.session_counts();
    let users = state
        .users()
        .iter()
        .map(|u| user_to_pb(u, counts.get(&u.name).copied().unwrap_or(0)))
        .collect();
    Ok(pb::ListUsersResponse { users })
}

pub async fn change_grants(
    api: &Api,
    req: pb::ChangeGrantsRequest,
) -> Result<pb::UserResponse, Status> {
    let cmd = Command::Users(UserChange::ChangeGrants {
        name: req.name,
        add: grants(req.add)?,
        remove: grants(req.remove)?,
    });
    user_reply(api, api.write(once(&req.request_id, cmd)?).await?)
}

/// Users change their own password by giving the old one; an admin sets
/// anyone's.
pub async fn set_password(
    api: &Api,
    caller: &Caller,
    req: pb::SetPasswordRequest,
) -> Result<pb::UserResponse, Status> {
    let own = caller.user.as_ref().is_some_and(|u| u.name == req.name);
    if own {
        api.linearizable_barrier().await?;
        let hash = api.node.state().user(&req.name).map(|u| u.password_hash);
        if !auth::verify_password(hash, req.old_password).await {
            return Err(Status::permission_denied(format!(
                "user '{}': the old password is wrong",
                req.name
            )));
        }
    } else {
        caller.check(bifrost_model::Permission::Administer, None)?;
    }
    let password_hash = new_password_hash(req.new_password).await?;
    let cmd = Command::Users(UserChange::SetPassword {
        name: req.name,
        password_hash,
    });
    user_reply(api, api.write(once(&req.request_id, cmd)?).await?)
}

pub async fn end_sessions(
    api: &Api,
    req: pb::EndSessionsRequest,
) -> Result<pb::EndSessionsResponse, Status> {
    match api
        .write(Command::Users(UserChange::EndSessions { name: req.name }))
        .await?
    {
        Outcome::SessionsEnded(ended) => Ok(pb::EndSessionsResponse { ended }),
        other => Err(status::unexpected(other)),
    }
}

async fn new_password_hash(password: String) -> Result<String, Status> {
    auth::check_password_strength(&password)?;
    auth::hash_password(password).await
}

fn grants(list: Vec<pb::Grant>) -> Result<Vec<Grant>, Status> {
    list.into_iter()
        .map(|g| grant_from_pb(g).map_err(status::invalid))
        .collect()
}

fn user_pb(api: &Api, u: &User) -> pb::User {
    let sessions = api
        .node
        .state()
        .session_counts()
        .get(&u.name)
        .copied()
        .unwrap_or(0);
    user_to_pb(u, sessions)
}

fn user_reply(api: &Api, outcome: Outcome) -> Result<pb::UserResponse, Status> {
    match outcome {
        Outcome::User(u) => Ok(pb::UserResponse {
            user: Some(user_pb(api, &u)),
        }),
        other => Err(status::unexpected(other)),
    }
}
