//! openraft's own storage conformance suite, run against our RocksDB log
//! store and state machine.

use bifrost_raft::{LogStore, StateMachine, StorageError, TypeConfig};
use bifrost_storage::{NodeStore, StateStore};
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = NodeStore::open(&dir.path().join("node")).expect("node store");
        let state = StateStore::open(&dir.path().join("state")).expect("state store");
        let sm = StateMachine::new(state, &dir.path().join("snapshots")).expect("state machine");
        let log = LogStore::new(node, &sm);
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_conformance_suite_passes() {
    Suite::test_all(Builder).expect("conformance suite");
}
