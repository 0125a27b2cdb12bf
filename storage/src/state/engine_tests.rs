//! Tests of the history engine across flushes: whatever is flushed, merged,
//! compacted or reopened, reads give what a plain list of readings gives.

use rand::{Rng, SeedableRng};

use super::chunks::{run_key, RunEntry, CF_RUNS};
use crate::model::{DataType, Device, NewReading, Protocol, Quality, Tag, Value};
use crate::{Error, StateStore};

fn store() -> (tempfile::TempDir, StateStore) {
    store_with_tags(["t0", "t1", "t2"].map(String::from))
}

/// A new store with device `plc` and an f64 tag of each name.
fn store_with_tags(names: impl IntoIterator<Item = String>) -> (tempfile::TempDir, StateStore) {
    store_in_budget(&crate::MemoryBudget::default(), names)
}

/// [`store_with_tags`] under `budget`.
fn store_in_budget(
    budget: &crate::MemoryBudget,
    names: impl IntoIterator<Item = String>,
) -> (tempfile::TempDir, StateStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = StateStore::open_with(dir.path(), budget).unwrap();
    let mut b = s.batch();
    b.put_device(
        Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502"),
        true,
        None,
        1,
    )
    .unwrap();
    for name in names {
        b.put_tag(Tag::new(name, "plc", "hr:0", DataType::F64), true, None, 1)
            .unwrap();
    }
    b.commit().unwrap();
    (dir, s)
}

/// Every reading after `after`, page by page from `page(after)`, until a
/// page ends where it began.
pub(super) fn read_pages(
    mut after: u64,
    mut page: impl FnMut(u64) -> crate::Result<(Vec<crate::model::Reading>, u64)>,
) -> Vec<crate::model::Reading> {
    let mut out = Vec::new();
    loop {
        let (readings, last) = page(after).unwrap();
        out.extend(readings);
        if last == after {
            return out;
        }
        after = last;
    }
}

fn reading(id: String, tag: &str, ts: i64, v: f64) -> NewReading {
    NewReading {
        id,
        tag: tag.into(),
        ts_us: ts,
        server_ts_us: ts,
        value: Some(Value::Float(v)),
        quality: Quality::good(),
    }
}

/// `(ts, revision, value)` of every reading of `tag`, in the given direction.
fn scan(
    s: &StateStore,
    tag: &str,
    from: (i64, u64),
    to: (i64, u64),
    reverse: bool,
) -> Vec<(i64, u64, f64)> {
    let tag = s.tag(tag).unwrap();
    let mut out = Vec::new();
    s.scan_history_between(&tag, from, to, reverse, |r| {
        let Some(Value::Float(v)) = r.value else {
            panic!("{r:?}")
        };
        out.push((r.ts_us, r.revision, v));
        true
    })
    .unwrap();
    out
}

/// Stores `n` readings per batch in `batches` batches, flushing after some,
/// with one reading in twenty late by up to two hours; returns the model.
fn fill(s: &StateStore, batches: usize, n: usize, seed: u64) -> Vec<(String, i64, u64, f64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut model = Vec::new();
    let mut ts = 1_000_000_000_000i64;
    for b in 0..batches {
        let mut batch = s.batch();
        let mut readings = Vec::new();
        for i in 0..n {
            ts += 1_000_000;
            let tag = ["t0", "t1", "t2"][rng.random_range(0..3)];
            let late = if rng.random_range(0..20) == 0 {
                rng.random_range(1..7_200_000_000i64)
            } else {
                0
            };
            readings.push(reading(
                format!("r{b}-{i}"),
                tag,
                ts - late,
                rng.random_range(-1e3..1e3),
            ));
        }
        let first = batch
            .insert_readings(readings.clone(), false)
            .unwrap()
            .unwrap()
            .last_revision
            - readings.len() as u64
            + 1;
        batch.commit().unwrap();
        for (i, r) in readings.into_iter().enumerate() {
            let Some(Value::Float(v)) = r.value else {
                unreachable!()
            };
            model.push((r.tag, r.ts_us, first + i as u64, v));
        }
        if rng.random_range(0..3) == 0 {
            s.flush().unwrap();
        }
    }
    model
}

fn expected(
    model: &[(String, i64, u64, f64)],
    tag: &str,
    from: (i64, u64),
    to: (i64, u64),
) -> Vec<(i64, u64, f64)> {
    let mut out: Vec<_> = model
        .iter()
        .filter(|m| m.0 == tag && (m.1, m.2) >= from && (m.1, m.2) <= to)
        .map(|m| (m.1, m.2, m.3))
        .collect();
    out.sort_by_key(|m| (m.0, m.1));
    out
}

/// The run index entries of tag id `id`, one per chunk.
fn runs_of(s: &StateStore, id: u64) -> Vec<RunEntry> {
    let inner = s.inner();
    let cf = inner.db.cf_handle(CF_RUNS).unwrap();
    let prefix = run_key(id, 0);
    inner
        .db
        .prefix_iterator_cf(cf, &prefix[..8])
        .map(|item| item.unwrap())
        .take_while(|(k, _)| k[..8] == prefix[..8])
        .map(|(k, v)| RunEntry::parse(&k, &v).unwrap())
        .collect()
}

fn chunk_count(s: &StateStore, tag: &str) -> usize {
    let runs = runs_of(s, s.tag(tag).unwrap().id);
    let points: u32 = runs.iter().map(|r| r.points).sum();
    assert!(points > 0 || runs.is_empty());
    runs.len()
}

#[test]
fn time_scans_agree_with_a_plain_list_across_flushes_merges_and_late_readings() {
    let (_d, s) = store();
    let model = fill(&s, 400, 10, 7);
    let all = ((i64::MIN, 0), (i64::MAX, u64::MAX));
    for tag in ["t0", "t1", "t2"] {
        let want = expected(&model, tag, all.0, all.1);
        assert_eq!(scan(&s, tag, all.0, all.1, false), want, "{tag} forward");
        let mut back = want.clone();
        back.reverse();
        assert_eq!(scan(&s, tag, all.0, all.1, true), back, "{tag} reverse");
    }
    // Random windows, both directions, bounds inside runs of equal times.
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for _ in 0..200 {
        let a = model[rng.random_range(0..model.len())].clone();
        let b = model[rng.random_range(0..model.len())].clone();
        let (from, to) = if (a.1, a.2) <= (b.1, b.2) {
            ((a.1, a.2), (b.1, b.2))
        } else {
            ((b.1, b.2), (a.1, a.2))
        };
        let want = expected(&model, "t1", from, to);
        assert_eq!(scan(&s, "t1", from, to, false), want);
        let mut back = want;
        back.reverse();
        assert_eq!(scan(&s, "t1", from, to, true), back);
    }
    // Small runs were merged: far fewer chunks than flushes.
    s.flush().unwrap();
    let chunks = chunk_count(&s, "t0");
    assert!(chunks < 60, "{chunks} chunks for t0 after ~130 flushes");
}

#[test]
fn the_last_reading_before_a_time_is_found_whatever_was_flushed() {
    let (_d, s) = store();
    let model = fill(&s, 120, 5, 3);
    s.flush().unwrap();
    let t = model[model.len() / 2].1;
    let want = expected(&model, "t2", (i64::MIN, 0), (t, u64::MAX)).pop();
    let got = {
        let tag = s.tag("t2").unwrap();
        let mut got = None;
        s.scan_history_between(&tag, (i64::MIN, 0), (t, u64::MAX), true, |r| {
            got = Some((r.ts_us, r.revision));
            false
        })
        .unwrap();
        got
    };
    assert_eq!(got, want.map(|w| (w.0, w.1)));
}

#[test]
fn revision_pages_cross_the_flushed_and_unflushed_parts_in_order() {
    let (_d, s) = store();
    let model = fill(&s, 50, 7, 5);
    // Some unflushed readings at the end.
    let mut b = s.batch();
    b.insert_readings(vec![reading("tail".into(), "t0", 5, 1.0)], false)
        .unwrap()
        .unwrap();
    b.commit().unwrap();
    let seen: Vec<_> = read_pages(0, |after| s.readings_page(after, 33))
        .into_iter()
        .map(|r| (r.revision, r.tag, r.ts_us))
        .collect();
    let mut want: Vec<_> = model.iter().map(|m| (m.2, m.0.clone(), m.1)).collect();
    want.push((model.len() as u64 + 1, "t0".into(), 5));
    assert_eq!(seen, want);
}

#[test]
fn reopening_keeps_what_was_flushed_and_current_values() {
    let dir;
    let model;
    {
        let (d, s) = store();
        model = fill(&s, 60, 5, 9);
        dir = d;
    } // the last clone flushes on drop
    let s = StateStore::open(dir.path()).unwrap();
    let all = ((i64::MIN, 0), (i64::MAX, u64::MAX));
    assert_eq!(
        scan(&s, "t1", all.0, all.1, false),
        expected(&model, "t1", all.0, all.1)
    );
    assert_eq!(s.revision(), model.len() as u64);
    let newest = expected(&model, "t1", all.0, all.1).pop().unwrap();
    let cur = s.current("t1").unwrap().unwrap().unwrap();
    assert_eq!((cur.ts_us, cur.revision), (newest.0, newest.1));
    // A reading id stored before the reopen is still a duplicate.
    let mut b = s.batch();
    let out = b
        .insert_readings(vec![reading("r0-0".into(), "t0", 1, 0.0)], false)
        .unwrap()
        .unwrap();
    assert_eq!(out.duplicates, 1);
}

#[test]
fn retention_removes_flushed_readings_and_their_ids_stay_for_their_window() {
    let (_d, s) = store();
    let model = fill(&s, 40, 10, 13);
    let below = 150;
    let mut b = s.batch();
    let removed = b.compact(below).unwrap();
    b.commit().unwrap();
    assert_eq!(removed, below - 1);
    assert_eq!(s.oldest_revision(), below);
    let all = ((i64::MIN, 0), (i64::MAX, u64::MAX));
    let kept: Vec<_> = model.iter().filter(|m| m.2 >= below).cloned().collect();
    for tag in ["t0", "t1", "t2"] {
        assert_eq!(
            scan(&s, tag, all.0, all.1, false),
            expected(&kept, tag, all.0, all.1)
        );
    }
    assert_eq!(s.readings_after(0, 10).unwrap()[0].revision, below);
    s.flush().unwrap();
    // Ids are forgotten by their window, not with their readings: a
    // removed reading sent again is still a duplicate, like a kept one.
    let mut b = s.batch();
    let out = b
        .insert_readings(
            vec![
                reading("r0-0".into(), "t0", 1, 0.0),
                reading("r39-9".into(), "t0", 1, 0.0),
            ],
            false,
        )
        .unwrap()
        .unwrap();
    assert_eq!((out.stored, out.duplicates), (0, 2));
}

#[test]
fn purging_a_tag_removes_its_flushed_and_unflushed_history() {
    let (_d, s) = store();
    fill(&s, 30, 10, 17);
    s.flush().unwrap();
    let mut b = s.batch();
    b.insert_readings(vec![reading("late".into(), "t2", 1, 1.0)], false)
        .unwrap()
        .unwrap();
    b.commit().unwrap();
    let id = s.tag("t2").unwrap().id;
    let mut b = s.batch();
    b.delete_tag("t2", true).unwrap();
    b.commit().unwrap();
    s.flush().unwrap();
    let mut b = s.batch();
    let again = b
        .put_tag(Tag::new("t2", "plc", "hr:0", DataType::F64), true, None, 9)
        .unwrap();
    b.commit().unwrap();
    assert_ne!(again.id, id);
    assert!(scan(&s, "t2", (i64::MIN, 0), (i64::MAX, u64::MAX), false).is_empty());
    assert_eq!(chunk_count(&s, "t2"), 0);
    let left = runs_of(&s, id).len();
    assert_eq!(left, 0, "the purged tag's chunks are gone from disk");
}

#[test]
fn a_checkpoint_holds_everything_applied_before_it() {
    let (d, s) = store();
    let model = fill(&s, 20, 5, 21);
    let cp = d.path().join("cp");
    s.checkpoint(&cp).unwrap();
    let root = tempfile::tempdir().unwrap();
    std::fs::rename(&cp, root.path().join("sm-1")).unwrap();
    let copy = StateStore::open(root.path()).unwrap();
    let all = ((i64::MIN, 0), (i64::MAX, u64::MAX));
    assert_eq!(
        scan(&copy, "t0", all.0, all.1, false),
        expected(&model, "t0", all.0, all.1)
    );
    assert_eq!(copy.revision(), model.len() as u64);
}

#[test]
fn a_database_of_the_old_format_is_refused_with_what_to_do() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("sm-1");
    {
        let mut o = rocksdb::Options::default();
        o.create_if_missing(true);
        o.create_missing_column_families(true);
        rocksdb::DB::open_cf(&o, &dir, ["history", "revisions"]).unwrap();
    }
    let err = match StateStore::open(root.path()) {
        Err(e) => e,
        Ok(_) => panic!("an old database was opened"),
    };
    assert!(matches!(err, Error::Format { found: 1, .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("empty data directory"),
        "{msg}"
    );
}

#[test]
fn a_database_a_newer_release_wrote_is_refused_saying_to_upgrade() {
    let (d, s) = store();
    let cp = d.path().join("cp");
    s.checkpoint(&cp).unwrap();
    drop(s);
    // What a newer release would leave: its format number in the meta family.
    {
        let families = rocksdb::DB::list_cf(&rocksdb::Options::default(), &cp).unwrap();
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), &cp, families).unwrap();
        let meta = db.cf_handle(super::CF_META).unwrap();
        db.put_cf(
            meta,
            super::META_FORMAT,
            crate::keys::u64_key(super::FORMAT + 1),
        )
        .unwrap();
    }
    // A snapshot's reader sees the format before it uses anything.
    let meta = StateStore::checkpoint_meta(&cp).unwrap();
    assert_eq!(meta.format, super::FORMAT + 1);
    // A node whose state it is does not open it.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("sm-1");
    std::fs::rename(&cp, &dir).unwrap();
    let err = match StateStore::open(root.path()) {
        Err(e) => e,
        Ok(_) => panic!("a newer release's database was opened"),
    };
    assert!(matches!(err, Error::NewerFormat { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.display().to_string())
            && msg.contains("written by a newer Bifrost")
            && msg.contains("upgrade this node"),
        "{msg}"
    );
}

#[test]
fn readings_being_flushed_stay_visible_and_a_failed_write_loses_nothing() {
    let dir;
    let model;
    {
        let (d, s) = store();
        model = fill(&s, 10, 5, 23);
        s.flush().unwrap();
        // Late readings (ts 7 and 8), received after those of `fill`: the
        // server time is what keeps an id remembered (see `ingest_ids`).
        let late = |id: &str, ts, v| NewReading {
            server_ts_us: 2_000_000_000_000,
            ..reading(id.into(), "t0", ts, v)
        };
        let mut b = s.batch();
        b.insert_readings(vec![late("frozen", 7, 2.0)], false)
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        // A flush froze what is unflushed and has not written it yet.
        let frozen = s.inner().hot.write().freeze();
        let mut b = s.batch();
        let out = b
            .insert_readings(vec![late("frozen", 7, 2.0), late("after", 8, 3.0)], false)
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        assert_eq!(
            (out.stored, out.duplicates),
            (1, 1),
            "the frozen id is known"
        );
        let all = ((i64::MIN, 0), (i64::MAX, u64::MAX));
        let t0 = scan(&s, "t0", all.0, all.1, false);
        assert!(t0.contains(&(7, model.len() as u64 + 1, 2.0)), "{t0:?}");
        assert!(t0.contains(&(8, model.len() as u64 + 2, 3.0)), "{t0:?}");
        let page = s.readings_after(model.len() as u64, 10).unwrap();
        let ids: Vec<&str> = page.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["frozen", "after"]);
        // The write failed: the frozen part goes back in front.
        s.inner().hot.write().thaw(&frozen);
        dir = d;
    }
    let s = StateStore::open(dir.path()).unwrap();
    let ids: Vec<String> = s
        .readings_after(model.len() as u64, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, ["frozen", "after"], "both written by the last flush");
    assert_eq!(s.revision(), model.len() as u64 + 2);
}

/// `(tag, ts, revision, value)` of every reading stored, in revision order.
type Model = Vec<(String, i64, u64, f64)>;

/// A store with tags `m0..m{n}` and readings for them in `flushes`
/// segments: every tag a few readings per segment (some late), and `m1`
/// more than a block holds in each. Returns the model as `fill` does.
fn segmented(n: usize, flushes: usize) -> (tempfile::TempDir, StateStore, Model) {
    segmented_with(n, flushes, &|_, i| {
        if i == 1 {
            super::segments::BLOCK_POINTS + 300
        } else {
            3
        }
    })
}

/// Like [`segmented`], with `count(flush, tag index)` readings per tag.
fn segmented_with(
    n: usize,
    flushes: usize,
    count: &dyn Fn(usize, usize) -> usize,
) -> (tempfile::TempDir, StateStore, Model) {
    let (dir, s) = store_with_tags((0..n).map(|i| format!("m{i}")));
    let mut rng = rand::rngs::StdRng::seed_from_u64(29);
    let mut model = Vec::new();
    let mut ts = 2_000_000_000_000i64;
    for f in 0..flushes {
        let mut readings = Vec::new();
        for i in 0..n {
            for j in 0..count(f, i) {
                ts += 1_000;
                let late = if rng.random_range(0..10) == 0 {
                    3_600_000_000
                } else {
                    0
                };
                readings.push(reading(
                    format!("s{f}-{i}-{j}"),
                    &format!("m{i}"),
                    ts - late,
                    rng.random_range(-1e3..1e3),
                ));
            }
        }
        let mut b = s.batch();
        let last = b
            .insert_readings(readings.clone(), false)
            .unwrap()
            .unwrap()
            .last_revision;
        b.commit().unwrap();
        let first = last + 1 - readings.len() as u64;
        for (k, r) in readings.into_iter().enumerate() {
            let Some(Value::Float(v)) = r.value else {
                unreachable!()
            };
            model.push((r.tag, r.ts_us, first + k as u64, v));
        }
        s.flush().unwrap();
    }
    (dir, s, model)
}

/// Every tag's history and every revision page agree with the model.
fn check_all(s: &StateStore, model: &[(String, i64, u64, f64)], n: usize, when: &str) {
    let all = ((i64::MIN, 0), (i64::MAX, u64::MAX));
    for i in 0..n {
        let tag = format!("m{i}");
        assert_eq!(
            scan(s, &tag, all.0, all.1, false),
            expected(model, &tag, all.0, all.1),
            "{tag} {when}"
        );
    }
    let seen: Vec<_> = read_pages(0, |after| s.readings_page(after, 997))
        .into_iter()
        .map(|r| (r.tag, r.ts_us, r.revision))
        .collect();
    let want: Vec<_> = model.iter().map(|m| (m.0.clone(), m.1, m.2)).collect();
    assert_eq!(seen.len(), want.len(), "pages {when}");
    assert!(seen == want, "pages {when}");
    // Tag by tag, from the middle, in small pages: the same readings.
    let names = ["m1", "m7", &format!("m{}", n - 1)];
    let ids: Vec<u64> = names.iter().map(|t| s.tag(t).unwrap().id).collect();
    let from = model.len() as u64 / 3;
    let seen: Vec<_> = read_pages(from, |after| {
        let page = s.tag_readings_page(&ids, after, 50)?;
        assert!(page.0.len() <= 50);
        Ok(page)
    })
    .into_iter()
    .map(|r| (r.tag, r.ts_us, r.revision))
    .collect();
    let want: Vec<_> = want
        .into_iter()
        .filter(|m| m.2 > from && names.contains(&m.0.as_str()))
        .collect();
    assert!(
        seen == want,
        "tag pages {when}: {} of {}",
        seen.len(),
        want.len()
    );
}

/// Writes one merge step of the first group of segments, of about
/// `step_points` readings; returns the tags it merged.
fn merge_one_step(s: &StateStore, step_points: usize) -> Vec<u64> {
    let inner = s.inner();
    let headers = super::segments::headers(&inner.db, rocksdb::ReadOptions::default()).unwrap();
    let group = super::segments::group(headers, 1);
    let step = super::segments::merge_step(&inner.db, group, 0, step_points).unwrap();
    step.write(&inner.db).unwrap()
}

#[test]
fn segments_read_the_same_before_during_and_after_their_merge_and_across_a_reopen() {
    let n = 400;
    let (dir, s, model) = segmented(n, 3);
    assert_eq!(
        s.segments_waiting().unwrap(),
        3,
        "fewer than the fan-in wait"
    );
    check_all(&s, &model, n, "in segments");
    // One small step: the group is merged for its lowest tags only.
    {
        let tags = merge_one_step(&s, 1_500);
        assert!(
            !tags.is_empty() && tags.len() < n,
            "{} tags in one step",
            tags.len()
        );
        let after =
            super::segments::headers(&s.inner().db, rocksdb::ReadOptions::default()).unwrap();
        assert!(
            after
                .iter()
                .all(|h| h.merged_below == tags.last().unwrap() + 1),
            "{after:?}"
        );
    }
    check_all(&s, &model, n, "half merged");
    drop(s);
    let s = StateStore::open(dir.path()).unwrap();
    check_all(&s, &model, n, "half merged, reopened");
    s.merge_segments().unwrap();
    assert_eq!(s.segments_waiting().unwrap(), 0);
    check_all(&s, &model, n, "merged");
    // The big tag's readings became full chunks, the others one run each.
    assert_eq!(chunk_count(&s, "m7"), 1);
    assert!(
        chunk_count(&s, "m1")
            >= 3 * (super::segments::BLOCK_POINTS + 300) / super::chunks::CHUNK_POINTS
    );
}

#[test]
fn flushes_merge_segments_once_enough_wait_and_a_purged_tag_is_left_out() {
    let n = 50;
    let (_dir, s, model) = segmented(n, super::segments::SEGMENT_FAN_IN - 1);
    assert_eq!(
        s.segments_waiting().unwrap(),
        super::segments::SEGMENT_FAN_IN - 1
    );
    let gone = s.tag("m3").unwrap().id;
    let mut b = s.batch();
    b.delete_tag("m3", true).unwrap();
    b.insert_readings(vec![reading("one-more".into(), "m0", 5, 5.0)], false)
        .unwrap()
        .unwrap();
    b.commit().unwrap();
    s.flush().unwrap();
    wait_for_merger(&s);
    assert_eq!(
        s.segments_waiting().unwrap(),
        0,
        "the eighth flush woke the merger"
    );
    assert!(
        runs_of(&s, gone).is_empty(),
        "a purged tag gets no runs from a merge"
    );
    let mut kept: Vec<_> = model.into_iter().filter(|m| m.0 != "m3").collect();
    kept.push((
        "m0".into(),
        5,
        kept.iter().map(|m| m.2).max().unwrap() + 1,
        5.0,
    ));
    let all = ((i64::MIN, 0), (i64::MAX, u64::MAX));
    assert_eq!(
        scan(&s, "m0", all.0, all.1, false),
        expected(&kept, "m0", all.0, all.1)
    );
    let page = s.readings_after(0, usize::MAX / 2).unwrap();
    assert!(page.iter().all(|r| r.tag != "m3"));
    assert_eq!(page.len(), kept.len());
}

/// Waits (at most ten seconds) until the background merger has merged
/// every segment.
fn wait_for_merger(s: &StateStore) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while s.segments_waiting().unwrap() > 0 && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_tag_merged_in_one_segment_is_not_read_again_from_a_block_of_another() {
    // Flush 0 has 7 readings per tag (two blocks, cut around tag 290),
    // flush 1 has 3 (one block): a step ending at the first cut leaves
    // flush 1's block holding merged and unmerged tags side by side.
    let n = 400;
    let (_dir, s, model) = segmented_with(n, 2, &|f, _| if f == 0 { 7 } else { 3 });
    let tags = merge_one_step(&s, 2_000);
    assert!(
        tags.len() > 100 && tags.len() < n - 50,
        "{} tags merged",
        tags.len()
    );
    check_all(&s, &model, n, "merged below a cut inside a block");
}

#[test]
fn apply_waits_for_the_flush_when_unflushed_state_reaches_twice_its_limit() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    let budget = crate::MemoryBudget::new(crate::MemoryBudget::MIN);
    let limit = budget.unflushed_limit();
    // Many tags, as in a plant.
    const TAGS: u64 = 50;
    let (_dir, s) = store_in_budget(&budget, (0..TAGS).map(|t| format!("t{t}")));
    // Enough readings for three times the limit (each holds well over 48
    // bytes), so apply cannot get through them without a flush.
    const BATCH: u64 = 1_000;
    let batches = (3 * limit as u64 / 48).div_ceil(BATCH);
    let applied = std::sync::Arc::new(AtomicU64::new(0));
    // Unflushed bytes before each batch was applied.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // A flush that cannot start: the lock every flush takes is held here.
    let inner = s.inner();
    let held = inner.flushing.lock();
    let apply = {
        let (s, applied, seen) = (s.clone(), applied.clone(), seen.clone());
        std::thread::spawn(move || {
            for n in 0..batches {
                let readings = (0..BATCH)
                    .map(|i| {
                        let k = n * BATCH + i;
                        reading(
                            format!("r{k}"),
                            &format!("t{}", k % TAGS),
                            k as i64,
                            k as f64,
                        )
                    })
                    .collect();
                seen.lock().unwrap().push(s.memory_usage().unflushed);
                let mut b = s.batch();
                b.insert_readings(readings, false).unwrap().unwrap();
                b.commit().unwrap();
                applied.store(n + 1, Ordering::SeqCst);
            }
        })
    };
    // Wait until apply stops moving (it waits for the flush) or ends.
    let started = Instant::now();
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = applied.load(Ordering::SeqCst);
        if now == last || apply.is_finished() || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        last = now;
    }
    let stopped_at = applied.load(Ordering::SeqCst);
    assert!(
        !apply.is_finished() && stopped_at < batches,
        "apply went through all {batches} batches without a flush"
    );
    // Every batch before the one waiting began under twice the limit, and
    // that one took the state past it.
    let before = seen.lock().unwrap().clone();
    let unflushed = s.memory_usage().unflushed;
    assert_eq!(
        before.len() as u64,
        stopped_at + 1,
        "the waiting batch is counted"
    );
    assert!(
        before.iter().all(|&b| b < 2 * limit) && unflushed >= 2 * limit,
        "apply waits at {unflushed} unflushed bytes, limit {limit}, before batches: {before:?}"
    );
    drop(held);
    apply.join().unwrap();
    assert_eq!(s.revision(), batches * BATCH, "every reading applied");
    s.flush().unwrap();
    assert_eq!(s.memory_usage().unflushed, 0, "nothing left unflushed");
    assert_eq!(s.readings_after(0, 5).unwrap().len(), 5);
}
