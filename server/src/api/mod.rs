//! The public gRPC service (`bifrost.v1.Bifrost`). [`Api`] implements the
//! tonic trait by delegating each call to a handler in the file for its
//! area; what the handlers share lives here (the write path, read barriers).
//!
//! - devices, tags, bulk import: [`config`]
//! - ingest, current values, history: [`readings`]
//! - SQL queries: [`query`], their results as Arrow IPC: [`arrow`]
//! - subscriptions: [`watch`]
//! - status, members, retention, replica digests: [`cluster`]
//! - writes to a device, browsing a device, discovering devices: [`device_io`]
//! - login, sessions, users and grants: [`users`]
//! - audit records of the calls that change something: [`audit`]
//! - backups of the replicated state: [`backup`]
//!
//! Every call but `Login` first resolves its caller ([`crate::auth`]) and
//! checks the permission it needs here, before its handler runs; calls
//! that answer with tags (listings, queries, watch) get the caller and
//! show only the tags it may see.
//!
//! Every error becomes a `Status` in [`status`]; every conversion of a
//! server-only type to a message is in [`convert`] (model records convert in
//! `bifrost_proto::convert`); long answers stream through [`stream`].
//! Handlers validate, turn requests into commands or reads, and never build
//! a `Status` from another error type themselves.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bifrost_model::Permission;
use bifrost_proto::v1 as pb;
use bifrost_proto::v1::bifrost_server::Bifrost;
use bifrost_raft::{Command, Consistency, Outcome, RaftNode};
use tonic::{Request, Response, Status};

use crate::auth::{Auth, Caller};
use crate::metrics::Metrics;
use audit::Action;

mod arrow;
mod audit;
mod backup;
mod cluster;
mod config;
pub(crate) mod convert;
mod device_io;
mod query;
mod readings;
pub mod status;
mod stream;
mod users;
mod watch;

pub use query::{
    QueryLimits, DEFAULT_MAX_QUERY_ROWS, DEFAULT_MAX_QUERY_SCAN, DEFAULT_QUERY_TIMEOUT,
};
pub use readings::MAX_INGEST_BATCH;

/// Largest request or reply message of the public service, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// The service's state: the node and what the handlers reach through it.
pub struct Api {
    /// Who calls, and what they may do.
    pub auth: Arc<Auth>,
    /// Seals device secrets (see [`crate::secrets`]); none if not given.
    pub data_key: Option<Arc<crate::secrets::DataKey>>,
    pub node: Arc<RaftNode>,
    pub metrics: Arc<Metrics>,
    pub local: Arc<crate::local::Local>,
    pub peers: Arc<crate::peer::Peers>,
    pub hub: Arc<crate::watch::Hub>,
    pub limits: QueryLimits,
    /// The devices this node (or, on the leader, the cluster) cannot reach.
    pub reach: Arc<crate::reach::Reachability>,
}

impl Api {
    /// Proposes `cmd` and waits for it to be applied here; counts the
    /// proposal in the metrics. A rejection by the state machine is an error.
    async fn write(&self, cmd: Command) -> Result<Outcome, Status> {
        let kind = cmd.kind();
        let start = Instant::now();
        let res = self.node.propose(cmd).await;
        self.metrics.observe_proposal(
            kind,
            start.elapsed(),
            res.as_ref().map(|r| r.result.is_ok()).unwrap_or(false),
        );
        let resp = res.map_err(status::propose)?;
        resp.result.map_err(status::rejection)
    }

    /// Waits until a read here sees what the request's consistency level
    /// (the proto's `Consistency` value) asks for.
    async fn read_barrier(&self, consistency: i32) -> Result<(), Status> {
        self.node
            .read_barrier(convert::consistency(consistency)?)
            .await
            .map_err(status::propose)
    }

    /// The current readings of `tags` that `caller` may read (see
    /// [`readings::current`]).
    pub async fn current_readings(
        &self,
        caller: &Caller,
        tags: &[String],
        consistency: i32,
    ) -> Result<Vec<bifrost_storage::Reading>, Status> {
        readings::current(self, caller, tags, consistency).await
    }

    /// The call's caller, if they have `permission` on `tag` (or, with no
    /// tag, the permission as such); else `unauthenticated` or
    /// `permission_denied`.
    async fn allowed<T>(
        &self,
        req: &Request<T>,
        permission: Permission,
        tag: Option<&str>,
    ) -> Result<Caller, Status> {
        let caller = self.auth.caller(req).await?;
        caller.check(permission, tag)?;
        Ok(caller)
    }

    /// The call's caller, if they hold `permission` without naming a tag
    /// (`Read`: any grant at all); what they see is then filtered with
    /// [`Caller::visible`].
    async fn caller<T>(&self, req: &Request<T>, permission: Permission) -> Result<Caller, Status> {
        let caller = self.auth.caller(req).await?;
        caller.check(permission, None)?;
        Ok(caller)
    }

    /// Waits until a read here sees every write committed before the call:
    /// for checks against records a client may have just written.
    async fn linearizable_barrier(&self) -> Result<(), Status> {
        self.node
            .read_barrier(Consistency::Linearizable)
            .await
            .map_err(status::propose)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Grants as an audit record's detail shows them (`operator on line1/**`).
fn grants_text(grants: &[pb::Grant]) -> String {
    let each: Vec<String> = grants
        .iter()
        .map(|g| match g.tags.as_slice() {
            [] => format!("{} on every tag", g.role),
            tags => format!("{} on {}", g.role, tags.join(" ")),
        })
        .collect();
    each.join("; ")
}

/// A handler's answer as the call's reply.
async fn reply<T>(answer: impl Future<Output = Result<T, Status>>) -> Reply<T> {
    answer.await.map(Response::new)
}

#[tonic::async_trait]
impl Bifrost for Api {
    type HistoryStream = stream::ResponseStream<pb::HistoryResponse>;
    type QueryStream = stream::ResponseStream<pb::QueryResponse>;
    type WatchStream = stream::ResponseStream<pb::WatchResponse>;
    type DiscoverStream = stream::ResponseStream<pb::DiscoveredDevice>;
    type QueryArrowStream = stream::ResponseStream<pb::ArrowChunk>;
    type BackupStream = stream::ResponseStream<pb::BackupChunk>;

    async fn put_device(&self, req: Request<pb::PutDeviceRequest>) -> Reply<pb::PutDeviceResponse> {
        let caller = self.allowed(&req, Permission::Configure, None).await?;
        let (name, detail) = req
            .get_ref()
            .device
            .as_ref()
            .map_or_else(Default::default, |d| {
                let labels: Vec<&str> = d.labels.keys().map(String::as_str).collect();
                let detail = format!(
                    "{} {} enabled={} labels=[{}]",
                    d.protocol,
                    d.endpoint,
                    d.enabled,
                    labels.join(",")
                );
                (d.name.clone(), detail)
            });
        let action = Action::of(&caller, &req, "put_device", name, detail);
        let answer = config::put_device(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn delete_device(
        &self,
        req: Request<pb::DeleteDeviceRequest>,
    ) -> Reply<pb::DeleteResponse> {
        let caller = self.allowed(&req, Permission::Configure, None).await?;
        let action = Action::of(&caller, &req, "delete_device", &req.get_ref().name, "");
        let answer = config::delete_device(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn list_devices(
        &self,
        req: Request<pb::ListDevicesRequest>,
    ) -> Reply<pb::ListDevicesResponse> {
        self.allowed(&req, Permission::Read, None).await?;
        reply(config::list_devices(self, req.into_inner())).await
    }

    async fn put_tag(&self, req: Request<pb::PutTagRequest>) -> Reply<pb::PutTagResponse> {
        let (name, detail) = req
            .get_ref()
            .tag
            .as_ref()
            .map_or_else(Default::default, |t| {
                let detail = format!("{} {} {}", t.device, t.address, t.data_type);
                (t.name.clone(), detail)
            });
        let caller = self
            .allowed(&req, Permission::Configure, Some(&name))
            .await?;
        let action = Action::of(&caller, &req, "put_tag", name, detail);
        let answer = config::put_tag(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn delete_tag(&self, req: Request<pb::DeleteTagRequest>) -> Reply<pb::DeleteResponse> {
        let name = req.get_ref().name.clone();
        let caller = self
            .allowed(&req, Permission::Configure, Some(&name))
            .await?;
        let detail = if req.get_ref().purge {
            "purge"
        } else {
            "history kept"
        };
        let action = Action::of(&caller, &req, "delete_tag", name, detail);
        let answer = config::delete_tag(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn list_tags(&self, req: Request<pb::ListTagsRequest>) -> Reply<pb::ListTagsResponse> {
        let caller = self.caller(&req, Permission::Read).await?;
        reply(config::list_tags(self, &caller, req.into_inner())).await
    }

    async fn ingest(&self, req: Request<pb::IngestRequest>) -> Reply<pb::IngestResponse> {
        let caller = self.auth.caller(&req).await?;
        for r in &req.get_ref().readings {
            caller.check(Permission::WriteDevice, Some(&r.tag))?;
        }
        reply(readings::ingest(self, req.into_inner())).await
    }

    async fn get_current(
        &self,
        req: Request<pb::GetCurrentRequest>,
    ) -> Reply<pb::GetCurrentResponse> {
        let caller = self.auth.caller(&req).await?;
        let req = req.into_inner();
        let readings = self
            .current_readings(&caller, &req.tags, req.consistency)
            .await?;
        Ok(Response::new(pb::GetCurrentResponse {
            readings: readings
                .into_iter()
                .map(bifrost_proto::convert::reading_to_pb)
                .collect(),
        }))
    }

    async fn history(&self, req: Request<pb::HistoryRequest>) -> Reply<Self::HistoryStream> {
        let tag = req.get_ref().tag.clone();
        self.allowed(&req, Permission::Read, Some(&tag)).await?;
        reply(readings::history(self, req.into_inner())).await
    }

    async fn query(&self, req: Request<pb::QueryRequest>) -> Reply<Self::QueryStream> {
        let caller = self.caller(&req, Permission::Read).await?;
        reply(query::query(self, caller, req.into_inner())).await
    }

    async fn query_arrow(&self, req: Request<pb::QueryRequest>) -> Reply<Self::QueryArrowStream> {
        let caller = self.caller(&req, Permission::Read).await?;
        reply(query::query_arrow(self, caller, req.into_inner())).await
    }

    async fn watch(&self, req: Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        let caller = self.caller(&req, Permission::Read).await?;
        watch::watch(self, &caller, req.into_inner()).map(Response::new)
    }

    async fn set_retention(
        &self,
        req: Request<pb::SetRetentionRequest>,
    ) -> Reply<pb::SetRetentionResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let detail = format!("{} s", req.get_ref().seconds);
        let action = Action::of(&caller, &req, "set_retention", "history", detail);
        let answer = cluster::set_retention(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn replica_digests(
        &self,
        req: Request<pb::ReplicaDigestsRequest>,
    ) -> Reply<pb::ReplicaDigestsResponse> {
        self.allowed(&req, Permission::Read, None).await?;
        reply(cluster::replica_digests(self, req.into_inner())).await
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        self.allowed(&req, Permission::Read, None).await?;
        Ok(Response::new(cluster::status(self)))
    }

    async fn write_tag(&self, req: Request<pb::WriteTagRequest>) -> Reply<pb::WriteTagResponse> {
        let tag = req.get_ref().tag.clone();
        let caller = self
            .allowed(&req, Permission::WriteDevice, Some(&tag))
            .await?;
        let value = bifrost_proto::convert::value_from_pb(req.get_ref().value.clone())
            .map_or_else(|| "(none)".to_string(), |v| v.to_string());
        let action = Action::of(&caller, &req, "write", tag, value);
        let answer = device_io::write_tag(self, req.into_inner()).await;
        // A write the device refused is an answer, not an error: its
        // outcome is the record's.
        let outcome = match &answer {
            Ok(w) if w.outcome == "ok" => "ok".to_string(),
            Ok(w) => format!("{}: {}", w.outcome, w.message),
            Err(s) => format!("{:?}: {}", s.code(), s.message()),
        };
        self.record(action, outcome).await;
        answer.map(Response::new)
    }

    async fn browse(&self, req: Request<pb::BrowseRequest>) -> Reply<pb::BrowseResponse> {
        self.allowed(&req, Permission::Configure, None).await?;
        reply(device_io::browse(self, req.into_inner())).await
    }

    async fn discover(&self, req: Request<pb::DiscoverRequest>) -> Reply<Self::DiscoverStream> {
        let r = req.get_ref();
        // A Modbus probe sends requests to addresses that may be PLCs.
        let needs = if r.protocol == bifrost_model::Protocol::ModbusTcp.as_str() {
            Permission::Administer
        } else {
            Permission::Configure
        };
        let caller = self.allowed(&req, needs, None).await?;
        let r = req.get_ref();
        let action = Action::of(&caller, &req, "discover", &r.protocol, r.targets.join(" "));
        let answer = device_io::discover(req.into_inner());
        self.audited(action, answer).await.map(Response::new)
    }

    async fn import(&self, req: Request<pb::ImportRequest>) -> Reply<pb::ImportResponse> {
        let caller = self.allowed(&req, Permission::Configure, None).await?;
        let r = req.get_ref();
        let detail = format!("{} devices, {} tags", r.devices.len(), r.tags.len());
        let action = Action::of(&caller, &req, "import", "config", detail);
        let answer = config::import(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn add_member(&self, req: Request<pb::AddMemberRequest>) -> Reply<pb::AddMemberResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let r = req.get_ref();
        let target = format!("node {}", r.id);
        let action = Action::of(&caller, &req, "add_member", target, &r.addr);
        let answer = cluster::add_member(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn remove_member(
        &self,
        req: Request<pb::RemoveMemberRequest>,
    ) -> Reply<pb::RemoveMemberResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let target = format!("node {}", req.get_ref().id);
        let action = Action::of(&caller, &req, "remove_member", target, "");
        let answer = cluster::remove_member(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn login(&self, req: Request<pb::LoginRequest>) -> Reply<pb::LoginResponse> {
        let user = req.get_ref().user.clone();
        let action = Action::by(&user, &req, "login", &user, "");
        let answer = users::login(self, req.into_inner()).await;
        // Logins are recorded where they are checked (an --insecure node
        // has nothing to log in to).
        if self.auth.options().enforce {
            return self.audited(action, answer).await.map(Response::new);
        }
        answer.map(Response::new)
    }

    async fn logout(&self, req: Request<pb::LogoutRequest>) -> Reply<pb::LogoutResponse> {
        let caller = self.auth.caller(&req).await?;
        reply(users::logout(self, &caller)).await
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Reply<pb::WhoAmIResponse> {
        let caller = self.auth.caller(&req).await?;
        Ok(Response::new(users::whoami(self, &caller)))
    }

    async fn add_user(&self, req: Request<pb::AddUserRequest>) -> Reply<pb::UserResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let r = req.get_ref();
        let action = Action::of(&caller, &req, "add_user", &r.name, grants_text(&r.grants));
        let answer = users::add_user(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn delete_user(&self, req: Request<pb::DeleteUserRequest>) -> Reply<pb::DeleteResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let action = Action::of(&caller, &req, "delete_user", &req.get_ref().name, "");
        let answer = users::delete_user(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        self.allowed(&req, Permission::Administer, None).await?;
        reply(users::list_users(self, req.into_inner())).await
    }

    async fn change_grants(
        &self,
        req: Request<pb::ChangeGrantsRequest>,
    ) -> Reply<pb::UserResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let r = req.get_ref();
        let detail = format!("+[{}] -[{}]", grants_text(&r.add), grants_text(&r.remove));
        let action = Action::of(&caller, &req, "change_grants", &r.name, detail);
        let answer = users::change_grants(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn set_password(&self, req: Request<pb::SetPasswordRequest>) -> Reply<pb::UserResponse> {
        let caller = self.auth.caller(&req).await?;
        let action = Action::of(&caller, &req, "set_password", &req.get_ref().name, "");
        let answer = users::set_password(self, &caller, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn end_sessions(
        &self,
        req: Request<pb::EndSessionsRequest>,
    ) -> Reply<pb::EndSessionsResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let action = Action::of(&caller, &req, "end_sessions", &req.get_ref().name, "");
        let answer = users::end_sessions(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn set_audit_retention(
        &self,
        req: Request<pb::SetAuditRetentionRequest>,
    ) -> Reply<pb::SetAuditRetentionResponse> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let detail = format!("{} s", req.get_ref().seconds);
        let action = Action::of(&caller, &req, "set_retention", "audit", detail);
        let answer = cluster::set_audit_retention(self, req.into_inner()).await;
        self.audited(action, answer).await.map(Response::new)
    }

    async fn backup(&self, req: Request<pb::BackupRequest>) -> Reply<Self::BackupStream> {
        let caller = self.allowed(&req, Permission::Administer, None).await?;
        let target = format!("node {}", self.node.id());
        let action = Action::of(&caller, &req, "backup", target, "");
        let answer = backup::backup(self).await;
        self.audited(action, answer).await.map(Response::new)
    }
}
