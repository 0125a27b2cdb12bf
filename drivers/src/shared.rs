//! Connections shared by the drivers of every device at one endpoint (a
//! Modbus gateway's units, an S7 CPU's or a Logix controller's devices):
//! a process-wide registry that hands out the live one for a key, or makes
//! it. An entry lives as long as some driver holds it; the last driver gone,
//! the connection closes. Pure bookkeeping: no I/O, no protocol.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};

pub(crate) struct Registry<T> {
    live: Mutex<BTreeMap<String, Weak<T>>>,
}

impl<T> Registry<T> {
    pub const fn new() -> Registry<T> {
        Registry {
            live: Mutex::new(BTreeMap::new()),
        }
    }

    /// The live entry for `key`, or a new one from `make`.
    pub fn shared(&self, key: String, make: impl FnOnce() -> T) -> Arc<T> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, w| w.strong_count() > 0);
        if let Some(entry) = live.get(&key).and_then(Weak::upgrade) {
            return entry;
        }
        let entry = Arc::new(make());
        live.insert(key, Arc::downgrade(&entry));
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_key_while_someone_holds_it() {
        static R: Registry<String> = Registry::new();
        let a = R.shared("plc:102".into(), || "first".into());
        let b = R.shared("plc:102".into(), || "second".into());
        assert!(Arc::ptr_eq(&a, &b));
        let other = R.shared("plc2:102".into(), || "other".into());
        assert_eq!(*other, "other");
        drop((a, b));
        let again = R.shared("plc:102".into(), || "third".into());
        assert_eq!(*again, "third", "the last holder gone, a new one is made");
    }
}
