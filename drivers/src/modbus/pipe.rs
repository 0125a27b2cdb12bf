//! A Modbus TCP connection that may carry several requests at once
//! (pipelining), each matched to its reply by the MBAP header's
//! transaction id.
//!
//! tokio-modbus's TCP client sends one request and waits for its reply, and
//! after a timeout the late reply would be read as the next request's. Here
//! a reader task hands each reply to whoever waits for its transaction id,
//! and drops replies nobody waits for (a late one after a timeout), so a
//! timeout no longer costs the connection. Up to `depth` requests are in
//! flight at once (1 unless the device allows more: many gateways answer
//! one at a time, and some drop a second request). Request PDUs are
//! encoded here (tokio-modbus keeps its encoder private); reply PDUs are
//! decoded by tokio-modbus (`Response::try_from`).
//!
//! Knows nothing of tags, plans or retries: `modbus` does those.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio_modbus::bytes::Bytes;
use tokio_modbus::{Request, Response};

/// Why a request on a pipe failed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PipeError {
    /// No reply within the timeout; the connection is still good.
    Timeout,
    /// The connection is gone (or the reply was malformed); reconnect.
    Broken(String),
    /// The device answered with an exception.
    Exception(u8),
}

type Waiters = HashMap<u16, oneshot::Sender<Result<(u8, Bytes), String>>>;

/// One TCP connection to a Modbus server.
pub(crate) struct Pipe {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Arc<Mutex<Shared>>,
    slots: Semaphore,
    next_tid: AtomicU16,
    reader: tokio::task::JoinHandle<()>,
    _counted: crate::Counted,
}

#[derive(Default)]
struct Shared {
    waiters: Waiters,
    /// Set once the reader stopped: why the connection is gone.
    broken: Option<String>,
}

/// The largest MBAP length field: unit id plus a 253-byte PDU.
const MAX_LENGTH: usize = 254;

impl Pipe {
    /// Takes a connected stream; at most `depth` requests in flight.
    pub fn new(stream: TcpStream, depth: usize) -> Pipe {
        let (read, write) = stream.into_split();
        let waiters = Arc::new(Mutex::new(Shared::default()));
        let reader = tokio::spawn(read_replies(read, waiters.clone()));
        Pipe {
            writer: tokio::sync::Mutex::new(write),
            waiters,
            slots: Semaphore::new(depth.max(1)),
            next_tid: AtomicU16::new(1),
            reader,
            _counted: crate::Counted::new(),
        }
    }

    /// Why the connection is gone, once it is.
    pub fn broken(&self) -> Option<String> {
        self.shared().broken.clone()
    }

    fn shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` to unit `unit` and waits up to `timeout` (from now,
    /// waiting for a free slot included) for its reply.
    pub async fn call(
        &self,
        unit: u8,
        req: &Request<'_>,
        timeout: Duration,
    ) -> Result<Response, PipeError> {
        let pdu = encode_request(req).map_err(PipeError::Broken)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let _slot = tokio::time::timeout_at(deadline, self.slots.acquire())
            .await
            .map_err(|_| PipeError::Timeout)?
            .expect("the semaphore is never closed");
        let (tid, rx) = self.register()?;
        let sent = tokio::time::timeout_at(deadline, self.send(tid, unit, &pdu)).await;
        let result = match sent {
            Err(_) => Err(PipeError::Timeout),
            Ok(Err(e)) => Err(PipeError::Broken(format!("send: {e}"))),
            Ok(Ok(())) => match tokio::time::timeout_at(deadline, rx).await {
                Err(_) => Err(PipeError::Timeout),
                Ok(Err(_)) => Err(PipeError::Broken("connection closed".into())),
                Ok(Ok(Err(why))) => Err(PipeError::Broken(why)),
                Ok(Ok(Ok((from, _)))) if from != unit => Err(PipeError::Broken(format!(
                    "reply from unit {from} to a request for unit {unit}"
                ))),
                Ok(Ok(Ok((_, reply)))) => decode_reply(reply),
            },
        };
        // A reply after a timeout finds no waiter and is dropped.
        self.shared().waiters.remove(&tid);
        result
    }

    /// A free transaction id and the channel its reply will come on.
    #[allow(clippy::type_complexity)]
    fn register(&self) -> Result<(u16, oneshot::Receiver<Result<(u8, Bytes), String>>), PipeError> {
        let mut shared = self.shared();
        if let Some(why) = &shared.broken {
            return Err(PipeError::Broken(why.clone()));
        }
        loop {
            let tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
            if let std::collections::hash_map::Entry::Vacant(e) = shared.waiters.entry(tid) {
                let (tx, rx) = oneshot::channel();
                e.insert(tx);
                return Ok((tid, rx));
            }
        }
    }

    async fn send(&self, tid: u16, unit: u8, pdu: &[u8]) -> std::io::Result<()> {
        let mut frame = Vec::with_capacity(7 + pdu.len());
        frame.extend_from_slice(&tid.to_be_bytes());
        frame.extend_from_slice(&0u16.to_be_bytes()); // protocol id: Modbus
        frame.extend_from_slice(&(pdu.len() as u16 + 1).to_be_bytes());
        frame.push(unit);
        frame.extend_from_slice(pdu);
        let mut w = self.writer.lock().await;
        w.write_all(&frame).await
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads replies until the connection ends, handing each to its waiter.
async fn read_replies(mut read: OwnedReadHalf, shared: Arc<Mutex<Shared>>) {
    let why = loop {
        let mut header = [0u8; 7];
        if let Err(e) = read.read_exact(&mut header).await {
            break format!("connection closed: {e}");
        }
        let tid = u16::from_be_bytes([header[0], header[1]]);
        let protocol = u16::from_be_bytes([header[2], header[3]]);
        let length = u16::from_be_bytes([header[4], header[5]]) as usize;
        if protocol != 0 || !(2..=MAX_LENGTH).contains(&length) {
            break format!("malformed reply header (protocol {protocol}, length {length})");
        }
        let mut pdu = vec![0u8; length - 1];
        if let Err(e) = read.read_exact(&mut pdu).await {
            break format!("connection closed inside a reply: {e}");
        }
        let waiter = shared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiters
            .remove(&tid);
        match waiter {
            Some(tx) => {
                let _ = tx.send(Ok((header[6], Bytes::from(pdu))));
            }
            None => tracing::debug!(tid, "modbus: reply nobody waits for (late) dropped"),
        }
    };
    let mut shared = shared.lock().unwrap_or_else(|p| p.into_inner());
    for (_, tx) in shared.waiters.drain() {
        let _ = tx.send(Err(why.clone()));
    }
    shared.broken = Some(why);
}

fn decode_reply(pdu: Bytes) -> Result<Response, PipeError> {
    let malformed = |e: std::io::Error| PipeError::Broken(format!("malformed reply: {e}"));
    match pdu.first() {
        Some(fc) if fc & 0x80 != 0 => {
            let exc = tokio_modbus::ExceptionResponse::try_from(pdu).map_err(malformed)?;
            Err(PipeError::Exception(u8::from(exc.exception)))
        }
        Some(_) => Response::try_from(pdu).map_err(malformed),
        None => Err(PipeError::Broken("empty reply".into())),
    }
}

/// The PDU of the requests the driver sends (reads, single and multiple
/// writes).
fn encode_request(req: &Request<'_>) -> Result<Vec<u8>, String> {
    let mut pdu = Vec::with_capacity(8);
    let mut words = |fc: u8, values: &[u16]| {
        pdu.push(fc);
        for v in values {
            pdu.extend_from_slice(&v.to_be_bytes());
        }
    };
    match req {
        Request::ReadCoils(a, n) => words(0x01, &[*a, *n]),
        Request::ReadDiscreteInputs(a, n) => words(0x02, &[*a, *n]),
        Request::ReadHoldingRegisters(a, n) => words(0x03, &[*a, *n]),
        Request::ReadInputRegisters(a, n) => words(0x04, &[*a, *n]),
        Request::WriteSingleCoil(a, on) => words(0x05, &[*a, if *on { 0xFF00 } else { 0 }]),
        Request::WriteSingleRegister(a, v) => words(0x06, &[*a, *v]),
        Request::WriteMultipleRegisters(a, values) => {
            let n = u16::try_from(values.len())
                .ok()
                .filter(|n| (1..=123).contains(n))
                .ok_or_else(|| format!("{} registers in one write (1-123)", values.len()))?;
            words(0x10, &[*a, n]);
            pdu.push((n * 2) as u8);
            for v in values.iter() {
                pdu.extend_from_slice(&v.to_be_bytes());
            }
        }
        other => return Err(format!("request {other:?} is not sent by this driver")),
    }
    Ok(pdu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn requests_encode_as_the_spec_lays_them_out() {
        let e = |r: Request<'_>| encode_request(&r).unwrap();
        assert_eq!(
            e(Request::ReadHoldingRegisters(0x006B, 3)),
            [0x03, 0x00, 0x6B, 0x00, 0x03]
        );
        assert_eq!(
            e(Request::ReadCoils(0x13, 0x25)),
            [0x01, 0x00, 0x13, 0x00, 0x25]
        );
        assert_eq!(
            e(Request::WriteSingleCoil(0xAC, true)),
            [0x05, 0x00, 0xAC, 0xFF, 0x00]
        );
        assert_eq!(
            e(Request::WriteSingleRegister(1, 3)),
            [0x06, 0x00, 0x01, 0x00, 0x03]
        );
        assert_eq!(
            e(Request::WriteMultipleRegisters(
                1,
                vec![0x000A, 0x0102].into()
            )),
            [0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02]
        );
        assert!(encode_request(&Request::WriteMultipleRegisters(0, vec![].into())).is_err());
        assert!(encode_request(&Request::ReadWriteMultipleRegisters(
            0,
            1,
            2,
            vec![1].into()
        ))
        .is_err());
    }

    /// A server that reads `n` requests before answering any, then answers
    /// them in reverse order (each with its request's start address as the
    /// register value, from unit `unit`), then one late reply for a
    /// transaction nobody sent.
    async fn reverse_server(n: usize) -> (u16, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            while got.len() < n {
                let mut frame = [0u8; 12];
                s.read_exact(&mut frame).await.unwrap();
                got.push(frame);
            }
            let stray = [0xEE, 0xEE, 0, 0, 0, 5, 1, 3, 2, 0, 0];
            s.write_all(&stray).await.unwrap();
            for f in got.iter().rev() {
                let (tid, unit, start) = ([f[0], f[1]], f[6], [f[8], f[9]]);
                let reply = [tid[0], tid[1], 0, 0, 0, 5, unit, 3, 2, start[0], start[1]];
                s.write_all(&reply).await.unwrap();
            }
            got.len()
        });
        (port, handle)
    }

    #[tokio::test]
    async fn replies_in_any_order_reach_their_requests() {
        let (port, server) = reverse_server(4).await;
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let pipe = Pipe::new(stream, 4);
        let calls = (0..4u16).map(|i| {
            let pipe = &pipe;
            async move {
                let r = pipe
                    .call(
                        1,
                        &Request::ReadHoldingRegisters(100 + i, 1),
                        Duration::from_secs(5),
                    )
                    .await;
                (i, r)
            }
        });
        // All four are in flight at once: the server answers none before
        // it has read all four.
        for (i, r) in futures::future::join_all(calls).await {
            assert_eq!(r, Ok(Response::ReadHoldingRegisters(vec![100 + i])));
        }
        assert_eq!(server.await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_depth_of_one_sends_one_at_a_time_and_a_timeout_keeps_the_connection() {
        let (port, _server) = reverse_server(2).await;
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let pipe = Pipe::new(stream, 1);
        let short = Duration::from_millis(200);
        // One slot: the second request waits for the first, which the
        // server never answers alone, so both time out.
        let (a, b) = tokio::join!(
            pipe.call(1, &Request::ReadHoldingRegisters(1, 1), short),
            pipe.call(1, &Request::ReadHoldingRegisters(2, 1), short),
        );
        assert_eq!((a, b), (Err(PipeError::Timeout), Err(PipeError::Timeout)));
        assert_eq!(pipe.broken(), None, "a timeout leaves the connection up");
    }

    #[tokio::test]
    async fn exceptions_wrong_units_and_a_closed_connection_are_told_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut f = [0u8; 12];
            s.read_exact(&mut f).await.unwrap();
            s.write_all(&[f[0], f[1], 0, 0, 0, 3, 1, 0x83, 2])
                .await
                .unwrap();
            s.read_exact(&mut f).await.unwrap();
            s.write_all(&[f[0], f[1], 0, 0, 0, 5, 9, 3, 2, 0, 1])
                .await
                .unwrap();
            s.read_exact(&mut f).await.unwrap();
        });
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let pipe = Pipe::new(stream, 1);
        let t = Duration::from_secs(5);
        let read = Request::ReadHoldingRegisters(0, 1);
        assert_eq!(pipe.call(1, &read, t).await, Err(PipeError::Exception(2)));
        let Err(PipeError::Broken(why)) = pipe.call(1, &read, t).await else {
            panic!("a reply from another unit is refused");
        };
        assert!(why.contains("unit 9"), "{why}");
        let Err(PipeError::Broken(why)) = pipe.call(1, &read, t).await else {
            panic!("the server closed the connection");
        };
        assert!(why.contains("closed"), "{why}");
        assert!(pipe.broken().is_some());
    }
}
