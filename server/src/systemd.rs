//! Telling systemd how the node is, for a `Type=notify` service with a
//! watchdog (`packaging/bifrost.service`), through the `sd-notify` crate.
//!
//! - `READY=1` once the node's ports are bound and Raft has started: the
//!   service has started, whether or not the rest of the cluster is there
//!   (a node waiting for its peers is up, not failed).
//! - `STATUS=` says what `/readyz` says (caught up with the leader, or why
//!   not), every few seconds, for `systemctl status`.
//! - `WATCHDOG=1` every half of `WatchdogSec` from the async runtime, so a
//!   node whose runtime hangs is restarted.
//! - `STOPPING=1` when it shuts down.
//!
//! Without `NOTIFY_SOCKET` (not under systemd) all of it is skipped. Knows
//! the Raft node only for its readiness, which it asks `http::readiness`.

use std::sync::Arc;
use std::time::Duration;

use bifrost_raft::RaftNode;
use sd_notify::NotifyState;

/// How often `STATUS=` is brought up to date.
const STATUS_EVERY: Duration = Duration::from_secs(5);

fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Says the node is up, then keeps its status and the watchdog fed until
/// the process ends.
pub async fn run(node: Arc<RaftNode>) {
    if !under_systemd() {
        return;
    }
    send(&[
        NotifyState::Ready,
        NotifyState::Status("started; catching up with the cluster"),
    ]);
    tracing::info!("told systemd the node is ready");
    let mut usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut usec)
        .then(|| Duration::from_micros(usec / 2).max(Duration::from_millis(10)));
    if let Some(every) = watchdog {
        tracing::info!(
            every_ms = every.as_millis() as u64,
            "feeding the systemd watchdog"
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                send(&[NotifyState::Watchdog]);
            }
        });
    }
    let mut last = String::new();
    loop {
        let status = match crate::http::readiness(&node).await {
            Ok(()) => "ready: caught up with the leader".to_string(),
            Err(why) => format!("not ready: {why}"),
        };
        if status != last {
            send(&[NotifyState::Status(&status)]);
            last = status;
        }
        tokio::time::sleep(STATUS_EVERY).await;
    }
}

/// Says the node is stopping.
pub fn stopping() {
    if under_systemd() {
        send(&[NotifyState::Stopping]);
    }
}
