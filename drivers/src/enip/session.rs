//! One EtherNet/IP session over TCP, and its reconnect state: Register
//! Session, Forward Open (with fallback to unconnected messaging), CIP
//! requests with a timeout and retries, and backoff with jitter after a
//! failed connect, as the Modbus driver does (see `modbus` for the why).
//!
//! It knows frames (the codec) and the options; it must not know tags,
//! plans or values.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::codec::{self, CipReply, CipStatus, EncapHeader, ForwardOpen, ForwardOpenReply};
use super::EnipOptions;
use crate::reconnect::Reconnect;
use crate::{Error, Health};

/// Why a request failed.
#[derive(Clone, Debug, PartialEq)]
pub enum CallError {
    Timeout(String),
    Comm(String),
    NotConnected(String),
    /// The device answered with a CIP error.
    Cip(CipStatus),
}

impl CallError {
    pub fn reason(&self) -> String {
        match self {
            CallError::Timeout(_) => "timeout".into(),
            CallError::Comm(_) => "comm_failure".into(),
            CallError::NotConnected(_) => "not_connected".into(),
            CallError::Cip(s) => s.reason(),
        }
    }

    pub fn is_transport(&self) -> bool {
        !matches!(self, CallError::Cip(_))
    }

    pub fn into_error(self) -> Error {
        match self {
            CallError::Timeout(m) => Error::Timeout(m),
            CallError::Comm(m) => Error::Io(m),
            CallError::NotConnected(m) => Error::NotConnected(m),
            CallError::Cip(s) => Error::Rejected(s.describe()),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout(m) | CallError::Comm(m) | CallError::NotConnected(m) => {
                f.write_str(m)
            }
            CallError::Cip(s) => f.write_str(&s.describe()),
        }
    }
}

/// A Forward Open connection in use.
struct Connection {
    open: ForwardOpen,
    o_t_id: u32,
    t_o_id: u32,
    seq: u16,
}

/// A registered session.
struct Session {
    stream: TcpStream,
    handle: u32,
    connection: Option<Connection>,
    _counted: crate::Counted,
}

/// A session and its reconnect state.
pub struct Link {
    host: String,
    port: u16,
    session: Option<Session>,
    context: u64,
    reconnect: Reconnect,
    /// Why the last Forward Open was refused, when it was.
    pub forward_open_refused: Option<String>,
    /// CIP requests sent (not counting session and connection setup).
    pub requests: u64,
}

/// Sends one encapsulation packet and reads the reply to it.
async fn exchange(
    stream: &mut TcpStream,
    packet: &[u8],
    context: u64,
) -> Result<(EncapHeader, Vec<u8>), CallError> {
    let comm = |e: std::io::Error| CallError::Comm(format!("{e}"));
    stream.write_all(packet).await.map_err(comm)?;
    let mut head = [0u8; codec::ENCAP_HEADER_LEN];
    stream.read_exact(&mut head).await.map_err(comm)?;
    let h = EncapHeader::parse(&head).map_err(CallError::Comm)?;
    let mut body = vec![0u8; h.length as usize];
    stream.read_exact(&mut body).await.map_err(comm)?;
    let sent = u16::from_le_bytes([packet[0], packet[1]]);
    if h.command != sent || h.context != context {
        return Err(CallError::Comm(format!(
            "reply (command 0x{:04X}, context {}) does not answer the request (command 0x{sent:04X}, context {context})",
            h.command, h.context
        )));
    }
    if h.status != 0 {
        return Err(CallError::Comm(format!(
            "encapsulation status 0x{:08X} for command 0x{sent:04X}",
            h.status
        )));
    }
    Ok((h, body))
}

async fn timed<T>(
    timeout: Duration,
    what: &str,
    f: impl std::future::Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    tokio::time::timeout(timeout, f).await.unwrap_or_else(|_| {
        Err(CallError::Timeout(format!(
            "{what}: no answer within {timeout:?}"
        )))
    })
}

impl Link {
    pub fn new(host: &str, port: u16) -> Link {
        Link {
            host: host.into(),
            port,
            session: None,
            context: 0,
            reconnect: Reconnect::default(),
            forward_open_refused: None,
            requests: 0,
        }
    }

    pub fn health(&self) -> Health {
        self.reconnect.health(self.session.is_some())
    }

    /// True when requests go over a Forward Open connection.
    pub fn connected_messaging(&self) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.connection.is_some())
    }

    fn next_context(&mut self) -> u64 {
        self.context = self.context.wrapping_add(1);
        self.context
    }

    pub fn drop_session(&mut self, why: &str) {
        if self.session.take().is_some() {
            tracing::debug!(host = %self.host, port = self.port, why, "enip: dropping session");
        }
        self.reconnect.lost(why);
    }

    /// Connects unless connected; without `force`, not during backoff.
    pub async fn ensure_connected(
        &mut self,
        opts: &EnipOptions,
        force: bool,
    ) -> Result<(), CallError> {
        if self.session.is_some() {
            return Ok(());
        }
        if let Some(why) = self.reconnect.refused(force) {
            return Err(CallError::NotConnected(why));
        }
        match self.open(opts).await {
            Ok(s) => {
                self.session = Some(s);
                self.reconnect.connected();
                Ok(())
            }
            Err(e) => Err(self.connect_failed(opts, e)),
        }
    }

    fn connect_failed(&mut self, opts: &EnipOptions, e: CallError) -> CallError {
        let backoff = self
            .reconnect
            .failed(opts.backoff_min, opts.backoff_max, e.to_string());
        tracing::debug!(host = %self.host, port = self.port, error = %e, ?backoff, "enip: connect failed");
        e
    }

    /// TCP connect, Register Session, and Forward Open when asked for.
    async fn open(&mut self, opts: &EnipOptions) -> Result<Session, CallError> {
        let addr = format!("{}:{}", self.host, self.port);
        let mut stream = timed(opts.timeout, "connect", async {
            let s = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(|e| CallError::Comm(format!("connect {addr}: {e}")))?;
            let _ = s.set_nodelay(true);
            Ok(s)
        })
        .await?;
        let ctx = self.next_context();
        let (h, _) = timed(
            opts.timeout,
            "register session",
            exchange(&mut stream, &codec::register_session(ctx), ctx),
        )
        .await?;
        let mut session = Session {
            stream,
            handle: h.session,
            connection: None,
            _counted: crate::Counted::new(),
        };
        if opts.connected {
            session.connection = self.forward_open(&mut session, opts).await?;
        }
        Ok(session)
    }

    /// Opens a connection, or returns `None` (unconnected messaging) when the
    /// device refuses.
    async fn forward_open(
        &mut self,
        s: &mut Session,
        opts: &EnipOptions,
    ) -> Result<Option<Connection>, CallError> {
        let open = ForwardOpen {
            t_o_id: rand::random(),
            connection_serial: rand::random(),
            vendor_id: 0x1337,
            originator_serial: rand::random(),
            rpi_us: 2_000_000,
            size: opts.connection_size,
            slot: opts.slot,
        };
        let ctx = self.next_context();
        let packet = codec::send_rr_data(s.handle, ctx, &open.encode());
        let (_, body) = timed(
            opts.timeout,
            "forward open",
            exchange(&mut s.stream, &packet, ctx),
        )
        .await?;
        let cip = codec::rr_data_reply(&body).map_err(CallError::Comm)?;
        let reply = CipReply::parse(cip).map_err(CallError::Comm)?;
        if reply.status != 0 {
            let why = reply.cip_status().describe();
            tracing::warn!(host = %self.host, port = self.port, status = %why, "enip: forward open refused, using unconnected messaging");
            self.forward_open_refused = Some(why);
            return Ok(None);
        }
        let r = ForwardOpenReply::parse(reply.data).map_err(CallError::Comm)?;
        self.forward_open_refused = None;
        Ok(Some(Connection {
            open,
            o_t_id: r.o_t_id,
            t_o_id: r.t_o_id,
            seq: 0,
        }))
    }

    /// One CIP request with timeout and retries; returns the CIP reply.
    /// `force` connects even during backoff (writes: someone is waiting).
    pub async fn call(
        &mut self,
        cip: &[u8],
        opts: &EnipOptions,
        force: bool,
    ) -> Result<Vec<u8>, CallError> {
        let mut attempt = 0;
        loop {
            self.ensure_connected(opts, force || attempt > 0).await?;
            self.requests += 1;
            let err = match timed(opts.timeout, "request", self.send(cip, opts.slot)).await {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            // A late reply would be taken for the next request's.
            self.drop_session(&err.to_string());
            attempt += 1;
            if attempt > opts.retries {
                return Err(err);
            }
        }
    }

    async fn send(&mut self, cip: &[u8], slot: u8) -> Result<Vec<u8>, CallError> {
        let ctx = self.next_context();
        let s = self
            .session
            .as_mut()
            .ok_or_else(|| CallError::NotConnected("no session".into()))?;
        match &mut s.connection {
            Some(c) => {
                c.seq = c.seq.wrapping_add(1);
                let packet = codec::send_unit_data(s.handle, ctx, c.o_t_id, c.seq, cip);
                let (_, body) = exchange(&mut s.stream, &packet, ctx).await?;
                let (conn, seq, reply) = codec::unit_data_reply(&body).map_err(CallError::Comm)?;
                // A controller answers on the T->O id; cpppo echoes the
                // O->T id. Either names this connection.
                if (conn != c.t_o_id && conn != c.o_t_id) || seq != c.seq {
                    return Err(CallError::Comm(format!(
                        "connected reply on connection 0x{conn:08X} seq {seq}, expected 0x{:08X} seq {}",
                        c.t_o_id, c.seq
                    )));
                }
                Ok(reply.to_vec())
            }
            None => {
                let packet =
                    codec::send_rr_data(s.handle, ctx, &codec::unconnected_send(cip, slot));
                let (_, body) = exchange(&mut s.stream, &packet, ctx).await?;
                Ok(codec::rr_data_reply(&body)
                    .map_err(CallError::Comm)?
                    .to_vec())
            }
        }
    }

    /// Forward Close and Unregister Session, best effort, then drops the
    /// socket.
    pub async fn close(&mut self, opts: &EnipOptions) {
        let Some(mut s) = self.session.take() else {
            return;
        };
        let ctx = self.next_context();
        if let Some(c) = s.connection.take() {
            let packet = codec::send_rr_data(s.handle, ctx, &c.open.close());
            let _ = timed(
                opts.timeout,
                "forward close",
                exchange(&mut s.stream, &packet, ctx),
            )
            .await;
        }
        let ctx = self.next_context();
        let _ = timed(opts.timeout, "unregister", async {
            s.stream
                .write_all(&codec::unregister_session(s.handle, ctx))
                .await
                .map_err(|e| CallError::Comm(e.to_string()))
        })
        .await;
        let _ = s.stream.shutdown().await;
        self.reconnect.lost("closed");
    }
}
