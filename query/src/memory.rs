//! [`MemoryStore`]: the catalog and history in plain collections. It is the
//! reference implementation of the store traits: the query tests run on it,
//! and a real store is checked against it.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::model::{Assignment, AuditRecord, Device, Reading, Tag};
use crate::store::{
    scan_ordered, Catalog, History, Position, ScanOutcome, ScanRequest, StoreError,
};

/// Tags, devices, owners and readings in memory. Revisions are given in
/// insertion order, from 1, like the replicated store does.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    tags: BTreeMap<String, Tag>,
    devices: BTreeMap<String, Device>,
    assignments: BTreeMap<String, Assignment>,
    /// By tag id, then position.
    history: BTreeMap<u64, BTreeMap<Position, Reading>>,
    revision: u64,
    audit: Vec<AuditRecord>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Adds an audit record (kept in the order added).
    pub fn add_audit(&mut self, record: AuditRecord) {
        self.audit.push(record);
    }

    /// Adds or replaces a tag; a new tag gets the next id.
    pub fn put_tag(&mut self, mut tag: Tag) {
        tag.id = match self.tags.get(&tag.name) {
            Some(old) => old.id,
            None => self.tags.len() as u64 + 1,
        };
        self.tags.insert(tag.name.clone(), tag);
    }

    pub fn put_device(&mut self, device: Device) {
        self.devices.insert(device.name.clone(), device);
    }

    pub fn assign(&mut self, device: &str, node: u64, epoch: u64) {
        self.assignments
            .insert(device.to_string(), Assignment { node, epoch });
    }

    /// Stores `reading` (its `revision` is ignored) under the next
    /// revision, which it returns.
    ///
    /// # Panics
    /// When the reading's tag is unknown: that is a bug in the caller.
    pub fn insert(&mut self, mut reading: Reading) -> u64 {
        let tag = self
            .tags
            .get(&reading.tag)
            .unwrap_or_else(|| panic!("unknown tag '{}'", reading.tag));
        self.revision += 1;
        reading.revision = self.revision;
        self.history
            .entry(tag.id)
            .or_default()
            .insert(Position::of(&reading), reading);
        self.revision
    }
}

impl Catalog for MemoryStore {
    fn tags_with_prefix(&self, prefix: &str) -> Vec<Tag> {
        self.tags
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn tag(&self, name: &str) -> Option<Tag> {
        self.tags.get(name).cloned()
    }

    fn current_many(&self, tags: &[Tag]) -> Result<Vec<Option<Reading>>, StoreError> {
        Ok(tags
            .iter()
            .map(|t| {
                let h = self.history.get(&t.id)?;
                h.last_key_value().map(|(_, r)| r.clone())
            })
            .collect())
    }

    fn devices(&self) -> Vec<Device> {
        self.devices.values().cloned().collect()
    }

    fn assignments(&self) -> BTreeMap<String, Assignment> {
        self.assignments.clone()
    }

    fn audit(&self) -> Vec<AuditRecord> {
        self.audit.clone()
    }
}

impl History for MemoryStore {
    fn scan(
        &self,
        req: &ScanRequest<'_>,
        visit: &mut dyn FnMut(Reading) -> bool,
    ) -> Result<ScanOutcome, StoreError> {
        let Some(h) = self.history.get(&req.tag.id).filter(|_| req.from <= req.to) else {
            return Ok(ScanOutcome::default());
        };
        let range = h.range(req.from..=req.to).map(|(_, r)| Ok(r.clone()));
        if req.backward {
            scan_ordered(req, range.rev(), visit)
        } else {
            scan_ordered(req, range, visit)
        }
    }
}
