//! Limits at the public edge, so that one client cannot starve the plant
//! (issue 12, part 7): a request rate per client connection, refused
//! beyond it with `resource_exhausted` and a `retry-after-ms` hint, which
//! clients retry. Message sizes are bounded where each service is built
//! (`api::MAX_MESSAGE_BYTES`, the WebSocket limits in `http`).
//!
//! A connection is known by its remote address (tonic puts it in every
//! request's extensions). Buckets of connections idle for a while are
//! swept, so the table holds the connections of the last minute or so.
//! The same [`RateLimit`], keyed by user name, limits each user's calls
//! over all their connections and each user name's login attempts (see
//! `auth`).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::{Request, Status};

use crate::api::status::overloaded;
use crate::metrics::Metrics;

/// Buckets unused this long are dropped at the next sweep.
const IDLE: Duration = Duration::from_secs(60);

/// A token bucket per key (a client connection by default, a user name):
/// `per_second` requests a second, and bursts of up to `burst`.
pub struct RateLimit<K = SocketAddr> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<Buckets<K>>,
}

struct Buckets<K> {
    by_peer: HashMap<K, Bucket>,
    last_sweep: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq> RateLimit<K> {
    /// `per_second` of 0 turns the limit off.
    pub fn new(per_second: u32, burst: u32) -> RateLimit<K> {
        RateLimit {
            per_second: per_second.into(),
            burst: burst.max(1).into(),
            buckets: Mutex::new(Buckets {
                by_peer: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// The requests a second it allows (0: no limit).
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Takes one request's token for `peer`, or says how long until one
    /// is there. A request whose connection is unknown is let through.
    pub fn take(&self, peer: Option<K>, now: Instant) -> Result<(), Duration> {
        let Some(peer) = peer.filter(|_| self.per_second > 0.0) else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().expect("rate limit lock");
        if now.duration_since(buckets.last_sweep) >= IDLE {
            buckets
                .by_peer
                .retain(|_, b| now.duration_since(b.at) < IDLE);
            buckets.last_sweep = now;
        }
        let bucket = buckets.by_peer.entry(peer).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait).max(Duration::from_millis(1)))
        }
    }

    /// Connections with a bucket.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().expect("rate limit lock").by_peer.len()
    }
}

/// The interceptor of the public service: refuses a request over its
/// connection's rate, counted in `bifrost_rate_limited_requests_total`.
pub fn interceptor(
    limit: Arc<RateLimit>,
    metrics: Arc<Metrics>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| match limit.take(req.remote_addr(), Instant::now()) {
        Ok(()) => Ok(req),
        Err(wait) => {
            metrics.rate_limited.inc();
            Err(overloaded(
                format!(
                    "rate limit: more than {} requests/s on this connection (--max-requests-per-second)",
                    limit.per_second
                ),
                wait,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> Option<SocketAddr> {
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn a_connection_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let limit = RateLimit::new(10, 5);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(limit.take(peer(1), t0), Ok(()), "request {i} of the burst");
        }
        let wait = limit.take(peer(1), t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert_eq!(
            limit.take(peer(2), t0),
            Ok(()),
            "another connection has its own bucket"
        );
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limit.take(peer(1), t1), Ok(()));
        assert!(limit.take(peer(1), t1).is_err());
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(30);
        for _ in 0..5 {
            assert_eq!(limit.take(peer(1), t2), Ok(()));
        }
        assert!(limit.take(peer(1), t2).is_err());
    }

    #[test]
    fn idle_connections_are_forgotten_and_zero_turns_the_limit_off() {
        let limit = RateLimit::new(10, 5);
        let t0 = Instant::now();
        for port in 1..=100 {
            limit.take(peer(port), t0).unwrap();
        }
        assert_eq!(limit.tracked(), 100);
        limit.take(peer(1), t0 + IDLE).unwrap();
        assert_eq!(limit.tracked(), 1, "only the connection just seen is kept");

        let off = RateLimit::new(0, 1);
        for _ in 0..1000 {
            assert_eq!(off.take(peer(1), t0), Ok(()));
        }
        assert_eq!(off.tracked(), 0);
        assert_eq!(limit.take(None, t0), Ok(()), "an unknown connection passes");
    }
}
