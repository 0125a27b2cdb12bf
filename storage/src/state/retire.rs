//! Databases replaced by a snapshot install: each is closed and its
//! directory removed once no reader holds it any more, on a thread of its
//! own so that the install does not wait for readers.
//!
//! Those threads are joined when the last clone of the store drops. A
//! database still closing while the process exits is torn down under
//! RocksDB's static objects, which aborts the process ("pthread lock:
//! Invalid argument"): a test that installed a snapshot and ended at once
//! died that way after passing.

use std::fs;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::Inner;

/// How long a replaced database waits for its readers before it is
/// removed anyway (a reader still holding it then keeps its open files).
const READERS_WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The threads retiring replaced databases; joined on drop.
#[derive(Default)]
pub(super) struct Retirements {
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Retirements {
    /// Closes `old` and removes its directory once its readers are done.
    pub fn retire(&self, old: Arc<Inner>) {
        let thread = std::thread::Builder::new()
            .name("state-retire".into())
            .spawn(move || {
                let mut waited = Duration::ZERO;
                while Arc::strong_count(&old) > 1 && waited < READERS_WAIT {
                    std::thread::sleep(POLL);
                    waited += POLL;
                }
                let dir = old.dir.clone();
                drop(old);
                if let Err(e) = fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove old state directory");
                }
            })
            .expect("spawning a state thread");
        let mut threads = self.threads.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }
}

impl Drop for Retirements {
    fn drop(&mut self) {
        for thread in self.threads.get_mut().drain(..) {
            let _ = thread.join();
        }
    }
}
