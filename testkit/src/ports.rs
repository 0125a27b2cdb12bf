//! Free loopback ports below Linux's ephemeral range.
//!
//! A port from the ephemeral range (what binding port 0 gives) can be
//! taken, while its node is down, by some client's outgoing connection, and
//! a client dialling a dead node on loopback can even connect to itself on
//! it; then the node cannot come back on its port. So ports are picked from
//! 20000 up to the start of that range, by a counter seeded per process
//! (so that concurrent test binaries start far apart), and checked by
//! binding them.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

const LOWEST: u32 = 20_000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// First port of the kernel's ephemeral range (32768 if unknown).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|lo| *lo > LOWEST + 1_000)
        .unwrap_or(32_768)
}

/// Takes `n` consecutive candidates from the per-process counter: the
/// offset of the first in `LOWEST..ephemeral_low()`.
fn next_offsets(n: u32, span: u32) -> u32 {
    let seed = std::process::id().wrapping_mul(97).wrapping_add(
        std::time::UNIX_EPOCH
            .elapsed()
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    );
    let _ = NEXT.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    NEXT.fetch_add(n, Ordering::Relaxed) % (span - n)
}

/// A loopback port that is free now.
pub fn free_port() -> u16 {
    free_port_block(1).expect("a free loopback port below the ephemeral range")
}

/// The first of `n` consecutive loopback ports that are all free now.
pub fn free_port_block(n: u32) -> Result<u16> {
    let span = ephemeral_low() - LOWEST;
    if n == 0 || n >= span {
        return Err(Error::Setup(format!(
            "cannot find {n} consecutive free ports in {LOWEST}..{}",
            LOWEST + span
        )));
    }
    // Every candidate block at most once, then give up.
    for _ in 0..span.div_ceil(n) {
        let base = LOWEST + next_offsets(n, span);
        if block_is_free(base as u16, n) {
            return Ok(base as u16);
        }
    }
    Err(Error::Setup(format!(
        "found no {n} consecutive free ports in {LOWEST}..{}",
        LOWEST + span
    )))
}

fn block_is_free(base: u16, n: u32) -> bool {
    let mut held = Vec::with_capacity(n as usize);
    for p in 0..n {
        match TcpListener::bind(("127.0.0.1", base + p as u16)) {
            Ok(l) => held.push(l),
            Err(_) => return false,
        }
    }
    true
}

/// This process's established TCP connections to `port` on IPv4 (client
/// side), as the kernel lists them. The kernel's table lists every socket
/// of the network namespace, other test processes' too, so only sockets
/// whose inode one of this process's descriptors holds are counted.
pub fn connections_to(port: u16) -> usize {
    let ours: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string("/proc/self/net/tcp").expect("/proc/self/net/tcp");
    let remote = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 9 && f[2].ends_with(&remote) && f[3] == "01" && ours.contains(f[9])
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_free_and_below_the_ephemeral_range() {
        let base = free_port_block(5).unwrap();
        assert!(u32::from(base) >= LOWEST && u32::from(base) + 5 <= ephemeral_low());
        for p in base..base + 5 {
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }

    #[test]
    fn taken_ports_are_seen_as_taken() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!block_is_free(port, 1));
    }

    #[test]
    fn consecutive_calls_give_different_ports() {
        assert_ne!(free_port(), free_port());
    }
}
