//! Crash points: named places in the code where a test can make the
//! process die at once, to prove that a `kill -9` there loses nothing.
//!
//! A random kill seldom lands inside the few milliseconds of a flush's
//! write, a merge step or a snapshot install, yet those are where a
//! half-done write would hurt. So each such place calls [`point`] with its
//! name, and a node started with `BIFROST_CRASH_AT=NAME:N` (or just `NAME`,
//! meaning the first time) prints one line to stderr naming the point and
//! calls [`std::process::abort`] the `N`th time it gets there: no
//! destructors, no flush, no unwinding, as close to `kill -9` as a process
//! can do to itself. The variable is read once; unset, a point costs one
//! atomic load. `docs/architecture.md` lists the points.
//!
//! It lives in `storage` because that is the lowest crate doing the
//! writes that matter, and both crates with points (`storage` itself and
//! `raft`, for snapshots) depend on it; `model` holds shared data types
//! only and does no process-level I/O. The module knows no point's name:
//! each crate names its own, so storage still knows nothing of Raft.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable that arms a crash point: `NAME` or `NAME:N`.
pub const ENV: &str = "BIFROST_CRASH_AT";

/// The armed point: abort when `name` is reached for the `at`th time.
#[derive(Debug)]
struct Armed {
    name: String,
    at: u64,
    reached: AtomicU64,
}

impl Armed {
    /// Counts a reach of `name`; `true` when this one is the fatal one.
    fn reach(&self, name: &str) -> bool {
        name == self.name && self.reached.fetch_add(1, Ordering::Relaxed) + 1 == self.at
    }
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// Parses `NAME` or `NAME:N` (N at least 1) into the point and its count.
fn parse(spec: &str) -> Result<(String, u64), String> {
    let (name, at) = match spec.rsplit_once(':') {
        Some((name, n)) => match n.trim().parse::<u64>() {
            Ok(at) if at >= 1 => (name, at),
            _ => return Err(format!("the count {n:?} is not a number from 1 up")),
        },
        None => (spec, 1),
    };
    let name = name.trim();
    if name.is_empty() {
        return Err("no point named before the count".into());
    }
    Ok((name.to_string(), at))
}

/// Reads [`ENV`]: the armed point, or none (unset, or malformed: said on
/// stderr, since a test that arms nothing proves nothing).
fn from_env() -> Option<Armed> {
    let spec = std::env::var(ENV).ok()?;
    match parse(&spec) {
        Ok((name, at)) => Some(Armed {
            name,
            at,
            reached: AtomicU64::new(0),
        }),
        Err(e) => {
            eprintln!("bifrost: {ENV}={spec:?} ignored, no crash point armed: {e}");
            None
        }
    }
}

fn armed_point() -> Option<&'static Armed> {
    ARMED.get_or_init(from_env).as_ref()
}

/// The armed point as `NAME:N`, if [`ENV`] arms one: for a node to say at
/// start that it will die on purpose.
pub fn armed() -> Option<String> {
    armed_point().map(|a| format!("{}:{}", a.name, a.at))
}

/// Crash point `name`: aborts the process if [`ENV`] armed this point and
/// this is the time it names; otherwise does nothing.
#[inline]
pub fn point(name: &str) {
    if let Some(armed) = armed_point() {
        if armed.reach(name) {
            eprintln!(
                "bifrost: crash point {name} reached (time {}): aborting as {ENV} asks",
                armed.at
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_a_point_and_optionally_the_time() {
        assert_eq!(
            parse("flush-before-write:3"),
            Ok(("flush-before-write".into(), 3))
        );
        assert_eq!(parse("snapshot-build"), Ok(("snapshot-build".into(), 1)));
        assert_eq!(
            parse(" merge-after-write : 2"),
            Ok(("merge-after-write".into(), 2))
        );
    }

    #[test]
    fn a_malformed_spec_says_what_is_wrong() {
        let e = parse("flush-before-write:0").unwrap_err();
        assert!(e.contains("\"0\" is not a number from 1 up"), "{e}");
        let e = parse("flush-before-write:x").unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
        let e = parse(":2").unwrap_err();
        assert!(e.contains("no point named"), "{e}");
    }

    #[test]
    fn only_the_nth_reach_of_the_armed_point_is_fatal() {
        let armed = Armed {
            name: "merge-before-write".into(),
            at: 3,
            reached: AtomicU64::new(0),
        };
        let fatal: Vec<bool> = [
            "merge-before-write",
            "flush-before-write",
            "merge-before-write",
            "merge-after-write",
            "merge-before-write",
            "merge-before-write",
        ]
        .iter()
        .map(|name| armed.reach(name))
        .collect();
        assert_eq!(fatal, [false, false, false, false, true, false]);
    }
}
