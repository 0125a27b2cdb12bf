//! The tag configuration in memory, indexed the two ways it is read: by id,
//! which apply does for every polled or ingested reading, and by name, in
//! name order, which the API does. Deleted tags whose history is kept
//! (retired) are held by name and by id too: their history is still read
//! and named.
//!
//! Each tag is held once, by id, boxed: the table then holds pointers, so
//! its empty slots and its growth (old and new table side by side while it
//! rehashes) cost 16 bytes a slot rather than a whole `Tag`, about 200. The
//! name index holds ids. Lookups by id hash a `u64` (FxHash), never a
//! string.
//!
//! Knows nothing of Raft or of the database: `state` loads and changes it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use rustc_hash::FxBuildHasher;

use crate::model::Tag;

/// A map keyed by tag id, hashed with FxHash (ids are small integers chosen
/// by the state machine, not by clients, so a fast hash is safe).
pub(crate) type TagMap<V> = HashMap<u64, V, FxBuildHasher>;

/// Live tags by id and by name, and retired tags by name and by id.
#[derive(Default)]
pub(super) struct TagIndex {
    by_id: TagMap<Box<Tag>>,
    by_name: BTreeMap<String, u64>,
    /// Deleted tags whose history is kept: name -> id. A tag created again
    /// under the name takes the id back, continuing its history.
    retired: HashMap<String, u64>,
    /// The same, id -> name.
    retired_names: TagMap<String>,
}

impl TagIndex {
    /// The live tag named `name`.
    pub fn get(&self, name: &str) -> Option<&Tag> {
        self.by_name.get(name).and_then(|id| self.by_id(*id))
    }

    /// The live tag with id `id`.
    pub fn by_id(&self, id: u64) -> Option<&Tag> {
        self.by_id.get(&id).map(|t| &**t)
    }

    /// Live tags in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.by_name.values().filter_map(|id| self.by_id(*id))
    }

    /// Live tags whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Tag> {
        self.by_name
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(name, _)| name.starts_with(prefix))
            .filter_map(|(_, id)| self.by_id(*id))
    }

    /// Adds or replaces the live tag named `tag.name`.
    pub fn insert(&mut self, tag: Tag) {
        self.remove(&tag.name);
        self.by_name.insert(tag.name.clone(), tag.id);
        self.by_id.insert(tag.id, Box::new(tag));
    }

    /// Removes the live tag named `name` (a retired entry is not touched).
    pub fn remove(&mut self, name: &str) -> Option<Tag> {
        let id = self.by_name.remove(name)?;
        self.by_id.remove(&id).map(|t| *t)
    }

    /// The id a retired tag named `name` had.
    pub fn retired_id(&self, name: &str) -> Option<u64> {
        self.retired.get(name).copied()
    }

    /// Records that the tag `name` with id `id` was deleted with its history
    /// kept.
    pub fn retire(&mut self, name: String, id: u64) {
        self.retired_names.insert(id, name.clone());
        self.retired.insert(name, id);
    }

    /// Forgets the retired tag `name` (created again, or purged).
    pub fn unretire(&mut self, name: &str) {
        if let Some(id) = self.retired.remove(name) {
            self.retired_names.remove(&id);
        }
    }

    /// The name of the tag with id `id`, live or retired.
    pub fn name_of(&self, id: u64) -> Option<&str> {
        match self.by_id.get(&id) {
            Some(t) => Some(&t.name),
            None => self.retired_names.get(&id).map(String::as_str),
        }
    }

    /// Whether the history of tag id `id` is held (the tag is live or
    /// retired).
    pub fn holds_history(&self, id: u64) -> bool {
        self.by_id.contains_key(&id) || self.retired_names.contains_key(&id)
    }

    /// How many tags have their history held, live or retired (retired
    /// tags are few: this does not visit the live ones).
    pub fn with_history_count(&self) -> usize {
        let retired_only = self.retired_names.keys();
        self.by_id.len()
            + retired_only
                .filter(|id| !self.by_id.contains_key(id))
                .count()
    }

    /// Every tag whose history is held, live or retired, each once: (id,
    /// name).
    pub fn with_history(&self) -> impl Iterator<Item = (u64, &str)> {
        let live = self.by_id.iter().map(|(id, t)| (*id, t.name.as_str()));
        let retired = self
            .retired_names
            .iter()
            .filter(|(id, _)| !self.by_id.contains_key(id))
            .map(|(id, name)| (*id, name.as_str()));
        live.chain(retired)
    }
}

#[cfg(test)]
mod tests {
    use super::TagIndex;
    use crate::model::{DataType, Tag};

    fn tag(name: &str, id: u64) -> Tag {
        Tag {
            id,
            ..Tag::new(name, "plc", "hr:0", DataType::U16)
        }
    }

    #[test]
    fn a_tag_is_found_by_name_and_by_id_until_it_is_replaced_or_removed() {
        let mut x = TagIndex::default();
        x.insert(tag("b/t", 2));
        x.insert(tag("a/t", 1));
        x.insert(tag("a/u", 3));
        assert_eq!(x.get("a/t").map(|t| t.id), Some(1));
        assert_eq!(x.by_id(3).map(|t| t.name.as_str()), Some("a/u"));
        let names: Vec<&str> = x.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a/t", "a/u", "b/t"]);
        let under_a: Vec<u64> = x.with_prefix("a/").map(|t| t.id).collect();
        assert_eq!(under_a, [1, 3]);

        // Replaced under a new id: the old id is gone.
        x.insert(tag("a/t", 7));
        assert!(x.by_id(1).is_none());
        assert_eq!(x.get("a/t").map(|t| t.id), Some(7));
        assert_eq!(x.remove("a/t").map(|t| t.id), Some(7));
        assert!(x.get("a/t").is_none() && x.by_id(7).is_none());
        assert_eq!(x.iter().count(), 2);
    }

    #[test]
    fn a_retired_tag_keeps_its_name_for_its_history_until_it_is_forgotten() {
        let mut x = TagIndex::default();
        x.insert(tag("a/t", 1));
        x.remove("a/t");
        x.retire("a/t".into(), 1);
        assert!(x.get("a/t").is_none());
        assert_eq!(x.retired_id("a/t"), Some(1));
        assert_eq!(x.name_of(1), Some("a/t"));
        assert!(x.holds_history(1));
        assert_eq!(x.with_history_count(), 1);

        // Created again, it takes the id back: listed once.
        x.insert(tag("a/t", 1));
        let held: Vec<(u64, &str)> = x.with_history().collect();
        assert_eq!(held, [(1, "a/t")]);
        assert_eq!(x.with_history_count(), 1);
        x.unretire("a/t");
        assert_eq!(x.name_of(1), Some("a/t"));

        x.remove("a/t");
        assert!(!x.holds_history(1));
        assert_eq!(x.name_of(1), None);
        assert_eq!(x.with_history().count(), 0);
        assert_eq!(x.with_history_count(), 0);
    }
}
