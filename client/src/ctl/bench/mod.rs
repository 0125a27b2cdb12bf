//! `bifrostctl bench`: benchmarks of a cluster (ingest, poll, query,
//! watch, soak) and of storage on disk (run by the server binary), one
//! module each.
//!
//! Each benchmark module imports only [`common`] (statistics, the bench
//! device and tags, and the benchmarks' own cluster, started through
//! `bifrost-testkit`), except `soak`, which runs `poll`'s plant and probes
//! its nodes as `poll` does (poll's `pub(super)` items); no other module
//! imports another, and `common` imports none of them.

mod common;
mod ingest;
mod poll;
mod query;
mod soak;
mod storage;
mod watch;

use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Subcommand;

use super::Ctx;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Ingest throughput (readings/s) and per-batch commit latency.
    Ingest(ingest::BenchIngestArgs),
    /// Polling: a simulated plant polled by an own three-node cluster;
    /// committed readings/s, missed deadlines, CPU and memory per node.
    Poll(poll::BenchPollArgs),
    /// SQL queries on one node: current value of one tag (p50/p99), of
    /// 10,000 tags, and one-minute buckets over a day of one tag.
    Query(query::BenchQueryArgs),
    /// Subscriptions: delivery latency from commit on the serving node to
    /// the subscriber, under paced ingest, with every reading accounted for.
    Watch(watch::BenchWatchArgs),
    /// Bytes on disk per reading (history, Raft log, outbox) per signal
    /// kind: runs `bifrost bench-storage`, which measures in-process.
    Storage(storage::BenchStorageArgs),
    /// Hours of polling, ingest, queries and subscriptions on an own
    /// cluster; fails if RSS, open fds, threads, RocksDB memory or disk per
    /// reading keeps growing after the warm-up. Draws a chart (PNG).
    Soak(soak::BenchSoakArgs),
}

impl BenchCmd {
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            BenchCmd::Ingest(a) => a.common.timeout,
            BenchCmd::Poll(a) => a.common.timeout,
            BenchCmd::Query(a) => a.common.timeout,
            BenchCmd::Watch(a) => a.common.timeout,
            BenchCmd::Soak(a) => a.common.timeout,
            BenchCmd::Storage(_) => None,
        }
    }
}

pub async fn run(ctx: &Ctx, cmd: BenchCmd) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let bench = async {
        match cmd {
            BenchCmd::Ingest(args) => ingest::ingest(ctx, args).await,
            BenchCmd::Poll(args) => poll::poll(ctx, args).await,
            BenchCmd::Query(args) => query::query(ctx, args).await,
            BenchCmd::Watch(args) => watch::watch(ctx, args).await,
            BenchCmd::Storage(args) => storage::storage(ctx, args).await,
            BenchCmd::Soak(args) => soak::soak(ctx, args).await,
        }
    };
    // Dropping the benchmark future drops its cluster: children die.
    tokio::select! {
        r = bench => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow!("terminated")),
    }
}
