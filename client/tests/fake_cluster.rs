//! The client against in-process fake nodes over real gRPC: leader discovery
//! (including a leader missing from the endpoint list), retries, history
//! streaming, and the replica check's procedure (retention moving on during
//! the check, a difference that goes away, one that does not, a node that
//! does not answer), and all of it over TLS when the client has a CA;
//! credentials: the session token reaches every kind of call once set or
//! logged in, refusals are not retried. The fakes answer from scripts, not
//! from a Raft log; the real server is tested end to end elsewhere.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::bifrost_client::proto::bifrost_server::{Bifrost, BifrostServer};
use ::bifrost_client::proto::{
    value, AddMemberRequest, AddMemberResponse, AddUserRequest, ArrowChunk, BackupChunk,
    BackupRequest, BrowseItem, BrowseRequest, BrowseResponse, ChangeGrantsRequest, Consistency,
    DeleteDeviceRequest, DeleteResponse, DeleteTagRequest, DeleteUserRequest, Device,
    DiscoverRequest, DiscoveredDevice, EndSessionsRequest, EndSessionsResponse, GetCurrentRequest,
    GetCurrentResponse, HistoryRequest, HistoryResponse, ImportRequest, ImportResponse,
    IngestRequest, IngestResponse, ListDevicesRequest, ListDevicesResponse, ListTagsRequest,
    ListTagsResponse, ListUsersRequest, ListUsersResponse, LoginRequest, LoginResponse,
    LogoutRequest, LogoutResponse, Member, PutDeviceRequest, PutDeviceResponse, PutTagRequest,
    PutTagResponse, Quality, QueryRequest, QueryResponse, RangeDigest, Reading,
    RemoveMemberRequest, RemoveMemberResponse, ReplicaDigestsRequest, ReplicaDigestsResponse,
    SetPasswordRequest, SetRetentionRequest, SetRetentionResponse, StatusRequest, StatusResponse,
    Tag, User, UserResponse, Value, WatchRequest, WatchResponse, WhoAmIRequest, WhoAmIResponse,
    WriteTagRequest, WriteTagResponse,
};
use ::bifrost_client::replica::CheckOptions;
use ::bifrost_client::{Client, ClientOptions, Error, Grant, HistoryQuery, Role, Security};
use bifrost_tls::{CertDir, NodeSpec};
use futures::Stream;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// What a fake node says and does.
#[derive(Default)]
struct Fake {
    id: u64,
    /// (leader id, leader address) reported by Status.
    leader: Mutex<(u64, String)>,
    /// Ingest calls to fail with Unavailable before answering.
    fail_ingests: AtomicU64,
    /// Ingest calls that reached this node (including failed ones).
    ingests: AtomicU64,
    statuses: AtomicU64,
    /// WriteTag calls that reached this node, and how it answers them.
    writes: AtomicU64,
    write_script: Mutex<WriteScript>,
    /// Members listed by Status.
    members: Mutex<Vec<Member>>,
    /// History for the replica check.
    history: Mutex<FakeHistory>,
    /// (call, its `authorization` metadata) of the calls that note it.
    auth: Mutex<Vec<(&'static str, Option<String>)>>,
    /// When set, those calls without `Bearer` this token are refused as
    /// Unauthenticated.
    require_token: Mutex<Option<String>>,
    /// Login calls that reached this node.
    logins: AtomicU64,
    /// What the user administration calls were given, one line each.
    admin: Mutex<Vec<String>>,
}

/// The user and password the fakes accept, and the token they give.
const USER: &str = "ann";
const PASSWORD: &str = "s3cret";
const TOKEN: &str = "tok-ann";

impl Fake {
    /// Notes the call's `authorization` metadata and refuses it as a
    /// server requiring `require_token` would.
    fn seen<T>(&self, call: &'static str, r: &Request<T>) -> Result<(), Status> {
        let auth = r
            .metadata()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string());
        self.auth.lock().unwrap().push((call, auth.clone()));
        match &*self.require_token.lock().unwrap() {
            Some(t) if auth != Some(format!("Bearer {t}")) => {
                Err(Status::unauthenticated("no valid session token"))
            }
            _ => Ok(()),
        }
    }

    /// The calls noted since the last time, with their metadata.
    fn take_auth(&self) -> Vec<(&'static str, Option<String>)> {
        std::mem::take(&mut *self.auth.lock().unwrap())
    }

    fn admin_call(&self, line: String) -> Result<Response<UserResponse>, Status> {
        self.admin.lock().unwrap().push(line);
        Ok(Response::new(UserResponse {
            user: Some(User {
                name: "bob".into(),
                revision: 9,
                ..Default::default()
            }),
        }))
    }
}

/// `role:glob,glob role:` of grants as sent.
fn grants_line(grants: &[::bifrost_client::proto::Grant]) -> String {
    let g: Vec<String> = grants
        .iter()
        .map(|g| format!("{}:{}", g.role, g.tags.join(",")))
        .collect();
    g.join(" ")
}

/// A history as the replica check sees it: one reading per revision in
/// `oldest..=values.len()`, whose "digest" is its value byte.
#[derive(Default)]
struct FakeHistory {
    oldest: u64,
    values: Vec<u8>,
    /// Retention moves the oldest revision here during the next digest call.
    retention_during_next_call: Option<u64>,
    /// The first answer covering this revision shows another value (a purge
    /// not yet applied here, say).
    passing_difference: Option<u64>,
}

impl FakeHistory {
    fn digests(&mut self, node_id: u64, r: ReplicaDigestsRequest) -> ReplicaDigestsResponse {
        let revision = self.values.len() as u64;
        let size = r.range_size;
        let to = if r.to_revision == 0 {
            revision
        } else {
            r.to_revision.min(revision)
        };
        let mut ranges = vec![];
        let mut first = r.from_revision.max(self.oldest).max(1);
        while first <= to {
            let last = (((first - 1) / size + 1) * size).min(to);
            let mut digest: Vec<u8> = self.values[first as usize - 1..last as usize].to_vec();
            if let Some(p) = self
                .passing_difference
                .filter(|p| (first..=last).contains(p))
            {
                digest[(p - first) as usize] ^= 0xff;
                self.passing_difference = None;
            }
            ranges.push(RangeDigest {
                first,
                last,
                count: last - first + 1,
                digest,
            });
            first = last + 1;
        }
        if let Some(o) = self.retention_during_next_call.take() {
            self.oldest = o;
        }
        ReplicaDigestsResponse {
            node_id,
            revision,
            oldest_revision: self.oldest.max(1),
            applied_index: 0,
            range_size: size,
            ranges,
        }
    }
}

#[derive(Clone, Copy, Default)]
enum WriteScript {
    /// Ok, reading back the value written.
    #[default]
    Echo,
    /// Fails with Unavailable, as a node whose owner link broke mid-write.
    Unavailable,
    /// Never answers in time.
    Hang,
}

type HistoryStream = Pin<Box<dyn Stream<Item = Result<HistoryResponse, Status>> + Send>>;

fn reading(tag: &str, ts_us: i64, revision: u64) -> Reading {
    Reading {
        id: format!("r{revision}"),
        tag: tag.into(),
        ts_us,
        value: Some(Value {
            kind: Some(value::Kind::IntValue(ts_us)),
        }),
        quality: Some(Quality::default()),
        server_ts_us: 0,
        revision,
    }
}

/// The served handle on a fake (the test keeps another to inspect it).
struct Node(Arc<Fake>);

impl std::ops::Deref for Node {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

#[tonic::async_trait]
impl Bifrost for Node {
    async fn put_device(
        &self,
        r: Request<PutDeviceRequest>,
    ) -> Result<Response<PutDeviceResponse>, Status> {
        self.seen("put_device", &r)?;
        let mut d = r.into_inner().device.unwrap_or_default();
        if d.name == "forbidden" {
            return Err(Status::permission_denied(
                "user \"ann\" lacks permission configure (engineer, unrestricted)",
            ));
        }
        if d.name == "dup" {
            return Err(Status::already_exists(format!(
                "device {:?} already exists",
                d.name
            )));
        }
        d.revision = 7;
        Ok(Response::new(PutDeviceResponse { device: Some(d) }))
    }
    async fn delete_device(
        &self,
        _: Request<DeleteDeviceRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_devices(
        &self,
        _: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn put_tag(&self, _: Request<PutTagRequest>) -> Result<Response<PutTagResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn delete_tag(
        &self,
        _: Request<DeleteTagRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_tags(
        &self,
        _: Request<ListTagsRequest>,
    ) -> Result<Response<ListTagsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn ingest(&self, r: Request<IngestRequest>) -> Result<Response<IngestResponse>, Status> {
        self.ingests.fetch_add(1, Ordering::SeqCst);
        let left = self.fail_ingests.load(Ordering::SeqCst);
        if left > 0 {
            self.fail_ingests.store(left - 1, Ordering::SeqCst);
            return Err(Status::unavailable(
                "no leader elected; is a majority of nodes up?",
            ));
        }
        let n = r.into_inner().readings.len() as u64;
        Ok(Response::new(IngestResponse {
            stored: n,
            duplicates: 0,
            last_revision: 100 + self.id,
            rejected: vec![],
        }))
    }
    async fn get_current(
        &self,
        _: Request<GetCurrentRequest>,
    ) -> Result<Response<GetCurrentResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type QueryStream = Pin<Box<dyn Stream<Item = Result<QueryResponse, Status>> + Send>>;
    async fn query(&self, r: Request<QueryRequest>) -> Result<Response<Self::QueryStream>, Status> {
        self.seen("query", &r)?;
        let empty = Ok(QueryResponse::default());
        Ok(Response::new(Box::pin(futures::stream::iter([empty]))))
    }
    type QueryArrowStream = Pin<Box<dyn Stream<Item = Result<ArrowChunk, Status>> + Send>>;
    async fn query_arrow(
        &self,
        r: Request<QueryRequest>,
    ) -> Result<Response<Self::QueryArrowStream>, Status> {
        self.seen("query_arrow", &r)?;
        Err(Status::unimplemented("not in the fake cluster"))
    }
    type DiscoverStream = Pin<Box<dyn Stream<Item = Result<DiscoveredDevice, Status>> + Send>>;
    async fn discover(
        &self,
        r: Request<DiscoverRequest>,
    ) -> Result<Response<Self::DiscoverStream>, Status> {
        self.seen("discover", &r)?;
        Err(Status::unimplemented("not in the fake cluster"))
    }
    type BackupStream = Pin<Box<dyn Stream<Item = Result<BackupChunk, Status>> + Send>>;
    async fn backup(
        &self,
        r: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        self.seen("backup", &r)?;
        Err(Status::unimplemented("not in the fake cluster"))
    }
    type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;
    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        self.seen("watch", &r)?;
        Err(Status::unimplemented("not in the fake cluster"))
    }
    async fn set_retention(
        &self,
        _r: Request<SetRetentionRequest>,
    ) -> Result<Response<SetRetentionResponse>, Status> {
        Err(Status::unimplemented("not in the fake cluster"))
    }
    type HistoryStream = HistoryStream;
    async fn history(&self, r: Request<HistoryRequest>) -> Result<Response<HistoryStream>, Status> {
        self.seen("history", &r)?;
        let tag = r.into_inner().tag;
        // Three chunks of two readings.
        let chunks: Vec<Result<HistoryResponse, Status>> = (0..3)
            .map(|c| {
                Ok(HistoryResponse {
                    readings: (0..2)
                        .map(|i| reading(&tag, c * 2 + i, (c * 2 + i) as u64))
                        .collect(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
    async fn status(&self, r: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        self.statuses.fetch_add(1, Ordering::SeqCst);
        self.seen("status", &r)?;
        let (leader_id, leader_addr) = self.leader.lock().unwrap().clone();
        let h = self.history.lock().unwrap();
        Ok(Response::new(StatusResponse {
            node_id: self.id,
            leader_id,
            leader_addr,
            term: 2,
            members: self.members.lock().unwrap().clone(),
            revision: h.values.len() as u64,
            oldest_revision: h.oldest.max(1),
            ..Default::default()
        }))
    }
    async fn replica_digests(
        &self,
        r: Request<ReplicaDigestsRequest>,
    ) -> Result<Response<ReplicaDigestsResponse>, Status> {
        let mut h = self.history.lock().unwrap();
        Ok(Response::new(h.digests(self.id, r.into_inner())))
    }
    async fn add_member(
        &self,
        _: Request<AddMemberRequest>,
    ) -> Result<Response<AddMemberResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_member(
        &self,
        _: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn write_tag(
        &self,
        r: Request<WriteTagRequest>,
    ) -> Result<Response<WriteTagResponse>, Status> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        let script = *self.write_script.lock().unwrap();
        match script {
            WriteScript::Echo => {
                let r = r.into_inner();
                Ok(Response::new(WriteTagResponse {
                    outcome: "ok".into(),
                    message: String::new(),
                    read_back: r.value,
                    node: self.id,
                }))
            }
            WriteScript::Unavailable => Err(Status::unavailable("owner node 3: connection reset")),
            WriteScript::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Err(Status::internal("hung"))
            }
        }
    }
    async fn browse(&self, r: Request<BrowseRequest>) -> Result<Response<BrowseResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(BrowseResponse {
            items: vec![BrowseItem {
                address: format!("ns=2;s={}", r.node),
                name: r.endpoint,
                kind: "variable".into(),
                data_type: "f64".into(),
                writable: true,
            }],
            created: u64::from(!r.create_tags_on_device.is_empty()),
        }))
    }
    async fn import(&self, r: Request<ImportRequest>) -> Result<Response<ImportResponse>, Status> {
        let r = r.into_inner();
        Ok(Response::new(ImportResponse {
            devices: r.devices.len() as u64,
            tags: r.tags.len() as u64,
        }))
    }
    async fn login(&self, r: Request<LoginRequest>) -> Result<Response<LoginResponse>, Status> {
        self.logins.fetch_add(1, Ordering::SeqCst);
        let r = r.into_inner();
        if (r.user.as_str(), r.password.as_str()) != (USER, PASSWORD) {
            return Err(Status::unauthenticated("wrong user name or password"));
        }
        Ok(Response::new(LoginResponse {
            token: TOKEN.into(),
            expires_us: 1_700_000_000_000_000,
            user: Some(User {
                name: r.user,
                ..Default::default()
            }),
        }))
    }
    async fn logout(&self, r: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        self.seen("logout", &r)?;
        Ok(Response::new(LogoutResponse {}))
    }
    async fn who_am_i(
        &self,
        r: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        self.seen("who_am_i", &r)?;
        Ok(Response::new(WhoAmIResponse {
            user: Some(User {
                name: USER.into(),
                ..Default::default()
            }),
            via: "token".into(),
        }))
    }
    async fn add_user(&self, r: Request<AddUserRequest>) -> Result<Response<UserResponse>, Status> {
        self.seen("add_user", &r)?;
        let r = r.into_inner();
        self.admin_call(format!(
            "add {} {} {} id:{}",
            r.name,
            r.password,
            grants_line(&r.grants),
            r.request_id.len()
        ))
    }
    async fn delete_user(
        &self,
        r: Request<DeleteUserRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        self.seen("delete_user", &r)?;
        let r = r.into_inner();
        self.admin_call(format!("rm {} id:{}", r.name, r.request_id.len()))?;
        Ok(Response::new(DeleteResponse { revision: 11 }))
    }
    async fn list_users(
        &self,
        r: Request<ListUsersRequest>,
    ) -> Result<Response<ListUsersResponse>, Status> {
        self.seen("list_users", &r)?;
        let users = vec![User {
            name: USER.into(),
            sessions: 2,
            ..Default::default()
        }];
        Ok(Response::new(ListUsersResponse { users }))
    }
    async fn change_grants(
        &self,
        r: Request<ChangeGrantsRequest>,
    ) -> Result<Response<UserResponse>, Status> {
        self.seen("change_grants", &r)?;
        let r = r.into_inner();
        self.admin_call(format!(
            "grants {} +{} -{} id:{}",
            r.name,
            grants_line(&r.add),
            grants_line(&r.remove),
            r.request_id.len()
        ))
    }
    async fn set_password(
        &self,
        r: Request<SetPasswordRequest>,
    ) -> Result<Response<UserResponse>, Status> {
        self.seen("set_password", &r)?;
        let r = r.into_inner();
        self.admin_call(format!(
            "passwd {} old:{} new:{} id:{}",
            r.name,
            r.old_password,
            r.new_password,
            r.request_id.len()
        ))
    }
    async fn end_sessions(
        &self,
        r: Request<EndSessionsRequest>,
    ) -> Result<Response<EndSessionsResponse>, Status> {
        self.seen("end_sessions", &r)?;
        Ok(Response::new(EndSessionsResponse { ended: 3 }))
    }

    async fn set_audit_retention(
        &self,
        r: Request<::bifrost_client::proto::SetAuditRetentionRequest>,
    ) -> Result<Response<::bifrost_client::proto::SetAuditRetentionResponse>, Status> {
        self.seen("set_audit_retention", &r)?;
        Ok(Response::new(
            ::bifrost_client::proto::SetAuditRetentionResponse {
                seconds: r.into_inner().seconds,
            },
        ))
    }
}

async fn spawn(fake: Arc<Fake>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BifrostServer::new(Node(fake)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// A cluster's certificates, as `bifrostctl certs init` makes them, for
/// node 1 at `localhost`, in a temporary directory (kept while the first
/// value lives).
fn cert_dir() -> (tempfile::TempDir, CertDir) {
    let dir = tempfile::tempdir().unwrap();
    let certs = CertDir::new(dir.path().join("certs"));
    let nodes = NodeSpec::parse_list("1=localhost").unwrap();
    certs.init(&nodes, "admin", 1).unwrap();
    (dir, certs)
}

/// Like [`spawn`], serving TLS only, with node 1's certificate of `certs`.
async fn spawn_tls(fake: Arc<Fake>, certs: &CertDir) -> SocketAddr {
    let identity = tonic::transport::Identity::from_pem(
        std::fs::read(certs.node_cert(1)).unwrap(),
        std::fs::read(certs.node_key(1)).unwrap(),
    );
    let tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(BifrostServer::new(Node(fake)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

/// [`fast`], checking the nodes against the CA of `certs`.
fn fast_tls(certs: &CertDir) -> ClientOptions {
    ClientOptions {
        security: Security::tls(certs.ca_cert(), None),
        ..fast()
    }
}

fn fast() -> ClientOptions {
    ClientOptions {
        deadline: Duration::from_secs(5),
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..Default::default()
    }
}

#[tokio::test]
async fn writes_go_to_a_leader_that_is_not_in_the_endpoint_list() {
    let leader = Arc::new(Fake {
        id: 4,
        ..Default::default()
    });
    let leader_addr = spawn(leader.clone()).await;
    *leader.leader.lock().unwrap() = (4, leader_addr.to_string());
    let follower = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    *follower.leader.lock().unwrap() = (4, leader_addr.to_string());
    let follower_addr = spawn(follower.clone()).await;

    let client = Client::connect_with(vec![follower_addr.to_string()], fast()).unwrap();
    let resp = client
        .ingest(vec![reading("t", 1, 0), reading("t", 2, 0)])
        .await
        .unwrap();
    assert_eq!((resp.stored, resp.last_revision), (2, 104));
    assert_eq!(follower.ingests.load(Ordering::SeqCst), 0);
    assert_eq!(leader.ingests.load(Ordering::SeqCst), 1);
    assert_eq!(client.leader(), Some(format!("http://{leader_addr}")));

    // The leader is remembered: no second discovery for the next call.
    client.ingest(vec![reading("t", 3, 0)]).await.unwrap();
    assert_eq!(follower.statuses.load(Ordering::SeqCst), 1);
    assert_eq!(leader.ingests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unavailable_is_retried_until_the_cluster_answers() {
    let node = Arc::new(Fake {
        id: 1,
        fail_ingests: AtomicU64::new(3),
        ..Default::default()
    });
    let addr = spawn(node.clone()).await;
    *node.leader.lock().unwrap() = (1, addr.to_string());
    let client = Client::connect_with(vec![addr.to_string()], fast()).unwrap();
    let resp = client.ingest(vec![reading("t", 1, 0)]).await.unwrap();
    assert_eq!(resp.stored, 1);
    assert_eq!(node.ingests.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped_for_a_live_one() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = Arc::new(Fake {
        id: 2,
        ..Default::default()
    });
    let addr = spawn(node.clone()).await;
    // No leader known anywhere: the live node itself is used.
    let client = Client::connect_with(vec![dead.to_string(), addr.to_string()], fast()).unwrap();
    let resp = client.ingest(vec![reading("t", 1, 0)]).await.unwrap();
    assert_eq!(resp.last_revision, 102);
}

#[tokio::test]
async fn already_exists_is_returned_at_once_with_code_and_message() {
    let node = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    let addr = spawn(node.clone()).await;
    let client = Client::connect_with(vec![addr.to_string()], fast()).unwrap();
    let err = client
        .put_device(
            Device {
                name: "dup".into(),
                ..Default::default()
            },
            true,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Rpc(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "AlreadyExists: device \"dup\" already exists"
    );
    let ok = client
        .put_device(
            Device {
                name: "p1".into(),
                ..Default::default()
            },
            true,
        )
        .await;
    assert_eq!(ok.unwrap().revision, 7);
}

#[tokio::test]
async fn history_chunks_are_flattened_in_order() {
    let node = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    let addr = spawn(node).await;
    let client = Client::connect_with(vec![addr.to_string()], fast()).unwrap();
    let readings = client
        .history_all(HistoryQuery {
            tag: "line1/t".into(),
            ..Default::default()
        })
        .await;
    let ts: Vec<i64> = readings.unwrap().iter().map(|r| r.ts_us).collect();
    assert_eq!(ts, vec![0, 1, 2, 3, 4, 5]);
}

fn int(i: i64) -> Value {
    Value {
        kind: Some(value::Kind::IntValue(i)),
    }
}

#[tokio::test]
async fn write_goes_to_the_leader_and_returns_the_outcome() {
    let leader = Arc::new(Fake {
        id: 4,
        ..Default::default()
    });
    let leader_addr = spawn(leader.clone()).await;
    *leader.leader.lock().unwrap() = (4, leader_addr.to_string());
    let follower = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    *follower.leader.lock().unwrap() = (4, leader_addr.to_string());
    let follower_addr = spawn(follower.clone()).await;
    let client = Client::connect_with(vec![follower_addr.to_string()], fast()).unwrap();
    let resp = client.write_tag("line1/sp", int(42)).await.unwrap();
    assert_eq!(resp.outcome, "ok");
    assert_eq!(resp.read_back, Some(int(42)));
    assert_eq!(resp.node, 4);
    assert_eq!(follower.writes.load(Ordering::SeqCst), 0);
    assert_eq!(leader.writes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn write_is_retried_when_the_connection_was_never_made() {
    // The follower names a leader that refuses connections, then (after the
    // failure made the client ask again) itself.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let node = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    *node.leader.lock().unwrap() = (3, dead.to_string());
    let addr = spawn(node.clone()).await;
    let client = Client::connect_with(vec![addr.to_string()], fast()).unwrap();
    let flip = {
        let node = node.clone();
        tokio::spawn(async move {
            // Flip as soon as the first discovery has happened.
            while node.statuses.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            *node.leader.lock().unwrap() = (1, addr.to_string());
        })
    };
    let resp = client.write_tag("line1/sp", int(7)).await.unwrap();
    flip.await.unwrap();
    assert_eq!(resp.outcome, "ok");
    assert_eq!(node.writes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn write_is_not_retried_after_it_was_sent() {
    let node = Arc::new(Fake {
        id: 1,
        write_script: Mutex::new(WriteScript::Unavailable),
        ..Default::default()
    });
    let addr = spawn(node.clone()).await;
    *node.leader.lock().unwrap() = (1, addr.to_string());
    let client = Client::connect_with(vec![addr.to_string()], fast()).unwrap();
    let err = client.write_tag("line1/sp", int(7)).await.unwrap_err();
    assert_eq!(node.writes.load(Ordering::SeqCst), 1);
    assert!(matches!(err, Error::Unconfirmed { .. }), "{err:?}");
    assert_eq!(err.code(), Some(tonic::Code::Unavailable));
    let msg = err.to_string();
    assert!(
        msg.starts_with("Unavailable: owner node 3: connection reset (sent to http://")
            && msg.contains("not retried"),
        "{msg}"
    );

    // A timeout after sending is not retried either.
    *node.write_script.lock().unwrap() = WriteScript::Hang;
    let opts = ClientOptions {
        deadline: Duration::from_millis(300),
        ..fast()
    };
    let client = Client::connect_with(vec![addr.to_string()], opts).unwrap();
    let err = client.write_tag("line1/sp", int(7)).await.unwrap_err();
    assert_eq!(node.writes.load(Ordering::SeqCst), 2);
    assert!(matches!(err, Error::Unconfirmed { .. }), "{err:?}");
    // tonic's own timer reports Cancelled ("Timeout expired").
    assert!(
        matches!(
            err.code(),
            Some(tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
        ),
        "{err}"
    );

    // Other calls are still retried on Unavailable: ingest fails 3 times here.
    node.fail_ingests.store(3, Ordering::SeqCst);
    let client = Client::connect_with(vec![addr.to_string()], fast()).unwrap();
    assert_eq!(
        client
            .ingest(vec![reading("t", 1, 0)])
            .await
            .unwrap()
            .stored,
        1
    );
}

#[tokio::test]
async fn browse_and_import_send_what_they_are_given() {
    let node = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    let addr = spawn(node).await;
    let client = Client::connect_with(vec![addr.to_string()], fast()).unwrap();
    let b = client
        .browse("opc.tcp://h:4840", Some("Line1"), None)
        .await
        .unwrap();
    assert_eq!(b.items[0].address, "ns=2;s=Line1");
    assert_eq!(b.items[0].name, "opc.tcp://h:4840");
    assert_eq!(b.created, 0);
    let b = client
        .browse("opc.tcp://h:4840", None, Some(("ua1", "line1")))
        .await
        .unwrap();
    assert_eq!(b.created, 1);
    let r = client
        .import(
            vec![Device::default(), Device::default()],
            vec![Tag::default()],
        )
        .await
        .unwrap();
    assert_eq!((r.devices, r.tags), (2, 1));
}

/// Three fakes listing each other as members, each with `revisions`
/// readings of value 7.
async fn replica_fakes(revisions: [usize; 3]) -> (Vec<Arc<Fake>>, Vec<String>) {
    let mut fakes = vec![];
    let mut addrs = vec![];
    for (i, n) in revisions.into_iter().enumerate() {
        let fake = Arc::new(Fake {
            id: i as u64 + 1,
            ..Default::default()
        });
        fake.history.lock().unwrap().values = vec![7; n];
        addrs.push(spawn(fake.clone()).await.to_string());
        fakes.push(fake);
    }
    let members: Vec<Member> = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| Member {
            id: i as u64 + 1,
            addr: a.clone(),
            role: "follower".into(),
            ..Default::default()
        })
        .collect();
    for f in &fakes {
        *f.members.lock().unwrap() = members.clone();
    }
    (fakes, addrs)
}

fn ranges_of(size: u64) -> CheckOptions {
    CheckOptions {
        range_size: size,
        settle: Duration::from_secs(1),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_replica_check_compares_what_all_applied_and_follows_retention() {
    let (fakes, addrs) = replica_fakes([45, 45, 40]).await;
    // Retention removes revisions below 12 on node 2 while it digests.
    fakes[1].history.lock().unwrap().retention_during_next_call = Some(12);
    let client = Client::connect_with(vec![addrs[0].clone()], fast()).unwrap();
    let mut seen = vec![];
    let report = client
        .check_replicas(&ranges_of(10), |p| seen.push(p))
        .await
        .unwrap();
    assert!(report.agrees(), "{}", report.text());
    let c = &report.comparison;
    assert_eq!((c.from, c.through, c.ranges, c.readings), (12, 40, 3, 29));
    assert_eq!(report.nodes.len(), 3);
    assert_eq!(
        report.verdict(),
        "replicas agree through revision 40 (3 ranges, 29 readings)"
    );
    assert!(
        matches!(seen.first(), Some(bifrost_client::replica::Progress::Nodes(n)) if n.len() == 3)
    );
}

#[tokio::test]
async fn the_replica_check_names_a_lasting_difference_not_a_passing_one() {
    let (fakes, addrs) = replica_fakes([40, 40, 40]).await;
    fakes[2].history.lock().unwrap().passing_difference = Some(5);
    fakes[1].history.lock().unwrap().values[32] = 8; // revision 33
    let client = Client::connect_with(vec![addrs[2].clone()], fast()).unwrap();
    let report = client.check_replicas(&ranges_of(10), |_| {}).await.unwrap();
    let c = &report.comparison;
    assert_eq!((c.from, c.through, c.ranges, c.readings), (1, 30, 3, 30));
    let d = c.difference.as_ref().expect("a difference");
    assert_eq!((d.first, d.last), (31, 40));
    assert_eq!(
        d.nodes
            .iter()
            .map(|n| (n.node_id, n.count))
            .collect::<Vec<_>>(),
        [(1, 10), (2, 10), (3, 10)]
    );
    assert_ne!(d.nodes[1].digest, d.nodes[0].digest);
    assert!(
        report
            .verdict()
            .starts_with("replicas differ in revisions 31..=40: node 1: 10 readings, digest 0707"),
        "{}",
        report.verdict()
    );
}

#[tokio::test]
async fn a_member_that_does_not_answer_is_named() {
    let (fakes, addrs) = replica_fakes([10, 10, 10]).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    for f in &fakes {
        f.members.lock().unwrap()[2].addr = dead.clone();
    }
    let client = Client::connect_with(vec![addrs[0].clone()], fast()).unwrap();
    let e = client
        .check_replicas(&ranges_of(10), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!("replica check: node 3 ({dead}): status: ")),
        "{e}"
    );
}

#[tokio::test]
async fn a_tls_client_finds_the_leader_it_is_told_of_as_host_and_port() {
    let (_dir, certs) = cert_dir();
    let leader = Arc::new(Fake {
        id: 4,
        ..Default::default()
    });
    // The name in the node certificate, not the IP address.
    let leader_addr = format!(
        "localhost:{}",
        spawn_tls(leader.clone(), &certs).await.port()
    );
    *leader.leader.lock().unwrap() = (4, leader_addr.clone());
    let follower = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    *follower.leader.lock().unwrap() = (4, leader_addr.clone());
    let follower_port = spawn_tls(follower.clone(), &certs).await.port();

    let endpoints = vec![format!("localhost:{follower_port}")];
    let client = Client::connect_with(endpoints.clone(), fast_tls(&certs)).unwrap();
    client.ingest(vec![reading("t", 1, 0)]).await.unwrap();
    assert_eq!(leader.ingests.load(Ordering::SeqCst), 1);
    assert_eq!(client.leader(), Some(format!("https://{leader_addr}")));

    // A plain-text client gets no answer from a TLS node.
    let brief = ClientOptions {
        deadline: Duration::from_millis(300),
        ..fast()
    };
    let plain = Client::connect_with(endpoints, brief).unwrap();
    assert!(plain.status().await.is_err());
}

#[tokio::test]
async fn the_replica_check_asks_the_members_over_tls() {
    let (_dir, certs) = cert_dir();
    let mut fakes = vec![];
    let mut members = vec![];
    for id in 1..=3 {
        let fake = Arc::new(Fake {
            id,
            ..Default::default()
        });
        fake.history.lock().unwrap().values = vec![7; 20];
        let port = spawn_tls(fake.clone(), &certs).await.port();
        members.push(Member {
            id,
            addr: format!("localhost:{port}"),
            role: "follower".into(),
            ..Default::default()
        });
        fakes.push(fake);
    }
    for f in &fakes {
        *f.members.lock().unwrap() = members.clone();
    }
    let client = Client::connect_with(vec![members[0].addr.clone()], fast_tls(&certs)).unwrap();
    // The options say plain text; the client's TLS is used.
    let report = client.check_replicas(&ranges_of(10), |_| {}).await.unwrap();
    assert!(report.agrees(), "{}", report.text());
    assert_eq!(report.nodes.len(), 3);
}

/// A fake that is its own leader, and a client of it (and of `more`
/// endpoints after it).
async fn leader_fake(more: &[String]) -> (Arc<Fake>, Client) {
    let node = Arc::new(Fake {
        id: 1,
        ..Default::default()
    });
    let addr = spawn(node.clone()).await;
    *node.leader.lock().unwrap() = (1, addr.to_string());
    let mut endpoints = vec![addr.to_string()];
    endpoints.extend_from_slice(more);
    let client = Client::connect_with(endpoints, fast()).unwrap();
    (node, client)
}

/// Status (with discovery), a config write, a query, a subscription and a
/// history stream.
async fn one_of_each(client: &Client) {
    client.status().await.unwrap();
    let device = Device {
        name: "p1".into(),
        ..Default::default()
    };
    client.put_device(device, false).await.unwrap();
    client
        .query("SELECT 1", Consistency::Linearizable)
        .await
        .unwrap();
    let mut watcher = client.watcher(WatchRequest::default());
    let e = watcher.next().await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unimplemented), "{e}");
    client
        .history_all(HistoryQuery {
            tag: "t".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// The calls noted, each with `auth`.
fn each_with(auth: Option<&str>) -> Vec<(&'static str, Option<String>)> {
    ["status", "put_device", "query", "watch", "history"]
        .into_iter()
        .map(|c| (c, auth.map(str::to_string)))
        .collect()
}

/// The calls noted, without the leader discoveries between them.
fn without_discovery(
    mut calls: Vec<(&'static str, Option<String>)>,
) -> Vec<(&'static str, Option<String>)> {
    let first_status = calls.iter().position(|(c, _)| *c == "status");
    let mut i = 0;
    calls.retain(|(c, _)| {
        i += 1;
        *c != "status" || Some(i - 1) == first_status
    });
    calls
}

#[tokio::test]
async fn no_token_is_sent_until_one_is_set_then_every_call_carries_it() {
    let (node, client) = leader_fake(&[]).await;
    one_of_each(&client).await;
    assert_eq!(without_discovery(node.take_auth()), each_with(None));

    let clone = client.clone();
    client.set_token(Some("abc".into()));
    assert_eq!(clone.token().as_deref(), Some("abc"));
    one_of_each(&clone).await;
    let calls = node.take_auth();
    // Discoveries carry it too.
    assert!(
        calls
            .iter()
            .all(|(_, a)| a.as_deref() == Some("Bearer abc")),
        "{calls:?}"
    );
    assert_eq!(without_discovery(calls), each_with(Some("Bearer abc")));

    clone.set_token(None);
    one_of_each(&client).await;
    assert_eq!(without_discovery(node.take_auth()), each_with(None));

    // A token given in the options is sent from the first call.
    let opts = ClientOptions {
        token: Some("opt".into()),
        ..fast()
    };
    assert!(!format!("{opts:?}").contains("opt\""), "{opts:?}");
    let client = Client::connect_with(client.endpoints(), opts).unwrap();
    // The first call finds the leader first: its Status carries it too.
    let device = Device {
        name: "p2".into(),
        ..Default::default()
    };
    client.put_device(device, false).await.unwrap();
    let opt = Some("Bearer opt".to_string());
    assert_eq!(
        node.take_auth(),
        [("status", opt.clone()), ("put_device", opt)]
    );
    one_of_each(&client).await;
    assert_eq!(
        without_discovery(node.take_auth()),
        each_with(Some("Bearer opt"))
    );
}

#[tokio::test]
async fn login_sets_the_token_and_logout_forgets_it() {
    let (node, client) = leader_fake(&[]).await;
    *node.require_token.lock().unwrap() = Some(TOKEN.into());
    let e = client.status().await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
    assert!(
        e.to_string().ends_with(
            "log in with `bifrostctl login` (or give --cert/--key of a user certificate)"
        ),
        "{e}"
    );
    assert_eq!(node.statuses.load(Ordering::SeqCst), 1, "not retried");

    let r = client.login(USER, PASSWORD).await.unwrap();
    assert_eq!(r.token, TOKEN);
    assert_eq!(client.token().as_deref(), Some(TOKEN));
    // Login needs no Status first (a node would refuse it).
    assert_eq!(node.statuses.load(Ordering::SeqCst), 1);
    node.take_auth();

    one_of_each(&client).await;
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        without_discovery(node.take_auth()),
        each_with(Some(&bearer))
    );
    let w = client.whoami().await.unwrap();
    assert_eq!(
        (w.user.unwrap().name.as_str(), w.via.as_str()),
        (USER, "token")
    );

    client.logout().await.unwrap();
    let logout = node.take_auth().into_iter().find(|(c, _)| *c == "logout");
    assert_eq!(logout, Some(("logout", Some(bearer))));
    assert_eq!(client.token(), None);
    let e = client.status().await.unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
}

#[tokio::test]
async fn a_refused_login_is_not_retried_and_says_how_to_log_in() {
    let other = Arc::new(Fake {
        id: 2,
        ..Default::default()
    });
    let other_addr = spawn(other.clone()).await.to_string();
    let (node, client) = leader_fake(&[other_addr]).await;
    let e = client.login(USER, "wrong").await.unwrap_err();
    assert!(matches!(e, Error::Rpc(_)), "{e:?}");
    assert_eq!(e.code(), Some(tonic::Code::Unauthenticated));
    let msg = e.to_string();
    assert!(
        msg.starts_with("Unauthenticated: wrong user name or password")
            && msg.contains("`bifrostctl login`"),
        "{msg}"
    );
    let logins = node.logins.load(Ordering::SeqCst) + other.logins.load(Ordering::SeqCst);
    assert_eq!(logins, 1);
    assert_eq!(client.token(), None);
    assert!(
        !format!("{e:?}").contains("wrong\""),
        "the password is not in the error"
    );
}

#[tokio::test]
async fn a_permission_refusal_is_final_and_shown_as_the_server_words_it() {
    let (node, client) = leader_fake(&[]).await;
    let device = Device {
        name: "forbidden".into(),
        ..Default::default()
    };
    let e = client.put_device(device, false).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "PermissionDenied: user \"ann\" lacks permission configure (engineer, unrestricted)"
    );
    let puts = node
        .take_auth()
        .iter()
        .filter(|(c, _)| *c == "put_device")
        .count();
    assert_eq!(puts, 1);
}

#[tokio::test]
async fn user_administration_sends_what_it_is_given() {
    let (node, client) = leader_fake(&[]).await;
    let op = Grant::new(Role::Operator, vec!["line1/**".into()]).unwrap();
    let viewer = Grant::everywhere(Role::Viewer);
    let u = client
        .add_user("bob", "pw1", vec![op.clone()])
        .await
        .unwrap();
    assert_eq!((u.name.as_str(), u.revision), ("bob", 9));
    client
        .change_grants("bob", vec![viewer], vec![op])
        .await
        .unwrap();
    client.set_password("bob", None, "pw2").await.unwrap();
    client
        .set_password("bob", Some("pw2"), "pw3")
        .await
        .unwrap();
    assert_eq!(client.delete_user("bob").await.unwrap(), 11);
    assert_eq!(
        *node.admin.lock().unwrap(),
        [
            "add bob pw1 operator:line1/** id:32",
            "grants bob +viewer: -operator:line1/** id:32",
            "passwd bob old: new:pw2 id:32",
            "passwd bob old:pw2 new:pw3 id:32",
            "rm bob id:32",
        ]
    );
    let users = client.list_users(Consistency::Local).await.unwrap();
    assert_eq!((users[0].name.as_str(), users[0].sessions), (USER, 2));
    assert_eq!(client.end_sessions(USER).await.unwrap(), 3);
}
