//! Waiting for a condition with a deadline.
//!
//! A condition is a closure (or async closure) returning an [`Outcome`]:
//! `bool`, `Option<T>` (the value once there), `Result<T, E>` (where the
//! `Err` is what was seen last, named in the timeout's message), or a
//! [`Step`], which can also give up at once (a process died). On timeout
//! the error says what was awaited, for how long, and what was seen last.
//! [`wait_until`] and [`wait_until_async`] panic with that message (for
//! tests); [`Wait`] returns it (for programs).

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How often a condition is checked unless told otherwise.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// One check of a condition: done, not yet (with what was seen, if it
/// says), or failed for good (a process died: waiting longer is no use).
#[derive(Debug)]
pub enum Step<T> {
    Done(T),
    Pending(Option<String>),
    Abort(Error),
}

/// What a condition returns: `bool`, `Option<T>`, `Result<T, E>` (`Err`:
/// what was seen) or a [`Step`].
pub trait Outcome {
    type Value;
    fn into_step(self) -> Step<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn into_step(self) -> Step<()> {
        if self {
            Step::Done(())
        } else {
            Step::Pending(None)
        }
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_step(self) -> Step<T> {
        self.map_or(Step::Pending(None), Step::Done)
    }
}

impl<T, E: Debug> Outcome for std::result::Result<T, E> {
    type Value = T;
    fn into_step(self) -> Step<T> {
        match self {
            Ok(v) => Step::Done(v),
            Err(e) => Step::Pending(Some(format!("{e:?}"))),
        }
    }
}

impl<T> Outcome for Step<T> {
    type Value = T;
    fn into_step(self) -> Step<T> {
        self
    }
}

/// A wait for `what`, at most `timeout`, checking every `interval`.
#[derive(Debug, Clone)]
pub struct Wait {
    what: String,
    timeout: Duration,
    interval: Duration,
}

impl Wait {
    pub fn new(what: impl Into<String>, timeout: Duration) -> Wait {
        Wait {
            what: what.into(),
            timeout,
            interval: POLL_INTERVAL,
        }
    }

    /// Checks every `interval` instead of every [`POLL_INTERVAL`].
    pub fn every(mut self, interval: Duration) -> Wait {
        self.interval = interval;
        self
    }

    fn timed_out(&self, last: Option<String>) -> Error {
        Error::Timeout {
            what: self.what.clone(),
            timeout: self.timeout,
            last,
        }
    }

    /// Checks `condition` (blocking the thread between checks) until it
    /// holds or the time is up.
    pub fn until<O: Outcome>(&self, mut condition: impl FnMut() -> O) -> Result<O::Value> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match condition().into_step() {
                Step::Done(v) => return Ok(v),
                Step::Abort(e) => return Err(e),
                Step::Pending(last) if Instant::now() >= deadline => {
                    return Err(self.timed_out(last))
                }
                Step::Pending(_) => std::thread::sleep(self.interval),
            }
        }
    }

    /// Awaits `condition` until it holds or the time is up. A check that is
    /// still running at the deadline is waited for.
    pub async fn until_async<O, F>(&self, mut condition: impl FnMut() -> F) -> Result<O::Value>
    where
        O: Outcome,
        F: Future<Output = O>,
    {
        let deadline = Instant::now() + self.timeout;
        loop {
            match condition().await.into_step() {
                Step::Done(v) => return Ok(v),
                Step::Abort(e) => return Err(e),
                Step::Pending(last) if Instant::now() >= deadline => {
                    return Err(self.timed_out(last))
                }
                Step::Pending(_) => tokio::time::sleep(self.interval).await,
            }
        }
    }
}

/// Blocks until `condition` holds; panics after `timeout` with a message
/// naming `what`.
pub fn wait_until<O: Outcome>(
    what: impl Into<String>,
    timeout: Duration,
    condition: impl FnMut() -> O,
) -> O::Value {
    Wait::new(what, timeout)
        .until(condition)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Awaits until `condition` holds; panics after `timeout` with a message
/// naming `what`.
pub async fn wait_until_async<O, F>(
    what: impl Into<String>,
    timeout: Duration,
    condition: impl FnMut() -> F,
) -> O::Value
where
    O: Outcome,
    F: Future<Output = O>,
{
    Wait::new(what, timeout)
        .until_async(condition)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// For a loop whose check needs `&mut` state (a driver being read), which a
/// closure passed to [`wait_until_async`] cannot borrow:
///
/// ```ignore
/// let deadline = Deadline::new("data changes", Duration::from_secs(20));
/// while driver.status().data_changes < 2 {
///     deadline.pause(|| format!("{:?}", driver.status())).await;
/// }
/// ```
pub struct Deadline {
    what: String,
    timeout: Duration,
    until: Instant,
    interval: Duration,
}

impl Deadline {
    pub fn new(what: impl Into<String>, timeout: Duration) -> Deadline {
        Deadline {
            what: what.into(),
            timeout,
            until: Instant::now() + timeout,
            interval: Duration::from_millis(20),
        }
    }

    /// Sleep this long between checks (default 20 ms).
    pub fn every(mut self, interval: Duration) -> Deadline {
        self.interval = interval;
        self
    }

    /// Panics, naming what was awaited and `seen` (what the loop saw
    /// last), if the deadline has passed; else sleeps one interval.
    pub async fn pause(&self, seen: impl FnOnce() -> String) {
        if Instant::now() >= self.until {
            panic!(
                "{}: not within {:?}; last seen: {}",
                self.what,
                self.timeout,
                seen()
            );
        }
        tokio::time::sleep(self.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_condition_holds() {
        let mut n = 0;
        let v = wait_until("n to reach 3", Duration::from_secs(10), || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v, 3);
    }

    #[test]
    fn a_timeout_names_what_was_awaited_and_what_was_seen_last() {
        let e = Wait::new("the answer", Duration::ZERO)
            .until(|| Err::<(), _>("41"))
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("waiting for the answer"), "{text}");
        assert!(text.contains("last seen: \"41\""), "{text}");
    }

    #[test]
    #[should_panic(expected = "timed out after 0ns waiting for never")]
    fn wait_until_panics_on_timeout() {
        wait_until("never", Duration::ZERO, || false);
    }

    #[test]
    fn an_abort_ends_the_wait_at_once() {
        let e = Wait::new("a dead process", Duration::from_secs(3600))
            .until(|| Step::<()>::Abort(Error::Setup("it died".into())))
            .unwrap_err();
        assert_eq!(e.to_string(), "testkit: it died");
    }

    #[tokio::test]
    async fn async_conditions_are_awaited() {
        let mut n = 0;
        wait_until_async("n to reach 2", Duration::from_secs(10), || {
            n += 1;
            let done = n >= 2;
            async move { done }
        })
        .await;
        assert_eq!(n, 2);
    }

    #[tokio::test]
    async fn a_deadline_pauses_until_it_passes_then_names_what_and_the_last_seen() {
        let deadline = Deadline::new("the counter", Duration::from_millis(60));
        deadline.pause(|| unreachable!("not past yet")).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        let panicked = tokio::spawn(async move {
            deadline.pause(|| "3".to_string()).await;
        })
        .await
        .unwrap_err();
        let message = panicked.into_panic();
        let message = message.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("the counter: not within 60ms"),
            "{message}"
        );
        assert!(message.contains("last seen: 3"), "{message}");
    }
}
