//! The reconnect state every connection-oriented driver keeps (Modbus,
//! EtherNet/IP, S7): after a failed connect, no new attempt before a backoff
//! that starts at `backoff_min` and doubles up to `backoff_max`, with ±20%
//! jitter so that the devices of a restarted gateway do not reconnect in
//! lockstep; meanwhile reads fail at once, naming the last error. Pure
//! bookkeeping: no I/O, no protocol.

use std::time::{Duration, Instant};

use crate::Health;

#[derive(Debug, Default)]
pub(crate) struct Reconnect {
    backoff: Duration,
    /// No connect attempt before this instant (set after a failed connect).
    next_attempt: Option<Instant>,
    last_error: Option<String>,
}

impl Reconnect {
    /// Why a connect may not be tried now (`reconnect pending after: WHY`),
    /// unless `force` (a write: someone waits for the answer).
    pub fn refused(&self, force: bool) -> Option<String> {
        let at = self.next_attempt.filter(|_| !force)?;
        if Instant::now() >= at {
            return None;
        }
        let why = self.last_error.as_deref().unwrap_or("connect failed");
        Some(format!("reconnect pending after: {why}"))
    }

    /// A connect succeeded: the next failure starts the backoff afresh.
    pub fn connected(&mut self) {
        *self = Reconnect::default();
    }

    /// The connection was dropped or closed, for `why`.
    pub fn lost(&mut self, why: impl Into<String>) {
        self.last_error = Some(why.into());
    }

    /// A connect failed with `why`; returns the backoff now in force.
    pub fn failed(&mut self, min: Duration, max: Duration, why: String) -> Duration {
        self.backoff = if self.backoff.is_zero() {
            min
        } else {
            (self.backoff * 2).min(max)
        };
        let jitter = rand::random_range(0.8..1.2);
        self.next_attempt = Some(Instant::now() + self.backoff.mul_f64(jitter));
        self.last_error = Some(why);
        self.backoff
    }

    /// Health of a driver that is (or is not) `connected` now.
    pub fn health(&self, connected: bool) -> Health {
        match (connected, &self.last_error) {
            (true, _) => Health::Connected,
            (false, Some(e)) => Health::Down(e.clone()),
            (false, None) => Health::Connecting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum_and_resets_on_success() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(350));
        let mut r = Reconnect::default();
        assert_eq!(r.health(false), Health::Connecting);
        assert_eq!(r.refused(false), None);
        assert_eq!(r.failed(min, max, "refused".into()), min);
        assert_eq!(
            r.refused(false).as_deref(),
            Some("reconnect pending after: refused")
        );
        assert_eq!(r.refused(true), None, "a write connects anyway");
        assert_eq!(r.health(false), Health::Down("refused".into()));
        assert_eq!(r.failed(min, max, "x".into()), min * 2);
        assert_eq!(r.failed(min, max, "x".into()), max);
        r.connected();
        assert_eq!(r.health(true), Health::Connected);
        assert_eq!(r.refused(false), None);
        assert_eq!(r.failed(min, max, "again".into()), min);
        r.lost("reset");
        assert_eq!(r.health(false), Health::Down("reset".into()));
    }
}
