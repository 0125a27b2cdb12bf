//! jemalloc's settings that follow the node's own: with a small
//! `--memory-budget` (an edge box where memory is what is scarce) freed
//! pages go back to the system at once instead of within a second.
//!
//! Why: a half-hour soak at `--memory-budget 32MiB` (release build,
//! `bifrostctl bench soak`) grew 11-12 MB/h beyond RocksDB's caches, all of
//! it dirty pages jemalloc had not yet returned (resident less active less
//! metadata), which follow the size of RocksDB's ever larger compactions;
//! with freed pages returned at once it grew 3.1-3.5 MB/h and passed. At
//! the default budget the one-second decay stays: returning pages at once
//! cost a third of the readings committed at 10,000 devices.
//!
//! The allocator options fixed at start are in `main.rs`; `MALLOC_CONF`
//! overrides both. Knows nothing of Raft or storage.

/// Budgets below this return freed pages at once.
pub const SMALL_BUDGET: usize = 64 << 20;

/// What [`fit_to_budget`] did, for the start-up log.
#[derive(Debug, PartialEq, Eq)]
pub enum Decay {
    /// Freed pages go back to the system at once (`dirty_decay_ms` 0).
    AtOnce,
    /// jemalloc's options as they were (the budget is not small, the
    /// operator set `dirty_decay_ms` in `MALLOC_CONF`, or the node was
    /// built without jemalloc).
    Unchanged(&'static str),
}

/// Sets jemalloc's dirty-page decay for a node whose budget is `budget`
/// bytes: 0 (return at once) below [`SMALL_BUDGET`], unless `MALLOC_CONF`
/// says otherwise. Errors name the jemalloc setting that was refused.
pub fn fit_to_budget(budget: usize) -> Result<Decay, String> {
    if budget >= SMALL_BUDGET {
        return Ok(Decay::Unchanged("the memory budget is not small"));
    }
    let conf = std::env::var("MALLOC_CONF").unwrap_or_default();
    if conf.contains("dirty_decay_ms") {
        return Ok(Decay::Unchanged("MALLOC_CONF sets dirty_decay_ms"));
    }
    return_freed_pages_at_once()
}

#[cfg(feature = "jemalloc")]
fn return_freed_pages_at_once() -> Result<Decay, String> {
    use tikv_jemalloc_ctl::raw;
    let set = |name: String| {
        let key = format!("{name}\0");
        // SAFETY: `key` is NUL-terminated and names a setting of type
        // ssize_t, which isize is.
        unsafe { raw::write(key.as_bytes(), 0isize) }
            .map_err(|e| format!("jemalloc setting {name} = 0: {e}"))
    };
    // Arenas made from now on, then each existing one (an index not yet
    // in use refuses the setting: there is nothing to set there).
    set("arenas.dirty_decay_ms".into())?;
    // SAFETY: `arenas.narenas` is an unsigned int, which u32 is.
    let arenas: u32 = unsafe { raw::read(b"arenas.narenas\0") }
        .map_err(|e| format!("jemalloc setting arenas.narenas: {e}"))?;
    for i in 0..arenas {
        let _ = set(format!("arena.{i}.dirty_decay_ms"));
    }
    Ok(Decay::AtOnce)
}

#[cfg(not(feature = "jemalloc"))]
fn return_freed_pages_at_once() -> Result<Decay, String> {
    Ok(Decay::Unchanged("built without jemalloc"))
}

#[cfg(all(test, feature = "jemalloc"))]
mod tests {
    use super::*;
    use tikv_jemalloc_ctl::raw;

    fn decay(name: &[u8]) -> isize {
        // SAFETY: NUL-terminated names of ssize_t settings.
        unsafe { raw::read(name) }.unwrap()
    }

    #[test]
    fn a_small_budget_returns_freed_pages_at_once_and_a_large_one_changes_nothing() {
        // The test binary's jemalloc runs with its default decay (10 s).
        assert_ne!(decay(b"arena.0.dirty_decay_ms\0"), 0);
        assert!(matches!(fit_to_budget(96 << 20), Ok(Decay::Unchanged(_))));
        assert_ne!(decay(b"arena.0.dirty_decay_ms\0"), 0);
        if std::env::var("MALLOC_CONF").is_ok_and(|c| c.contains("dirty_decay_ms")) {
            panic!("unset MALLOC_CONF to run this test: it sets dirty_decay_ms");
        }
        assert_eq!(fit_to_budget(32 << 20), Ok(Decay::AtOnce));
        assert_eq!(decay(b"arena.0.dirty_decay_ms\0"), 0);
        assert_eq!(decay(b"arenas.dirty_decay_ms\0"), 0);
    }
}
