//! A format-1 state written record by record as the old code wrote it,
//! migrated, then read through the current store.

use std::path::Path;

use super::super::engine_tests::read_pages;
use super::*;
use crate::keys::ordered_i64;
use crate::model::{DataType, Device, NewReading, Protocol, Quality, Tag, Value};
use crate::StateStore;

/// `(tag name, ts, revision, value, id)` of every reading written.
type Model = Vec<(String, i64, u64, f64, String)>;

const OLD_FAMILIES: [&str; 10] = [
    "devices",
    "tags",
    "current",
    "history",
    "revisions",
    "reading_ids",
    "assignments",
    "meta",
    "requests",
    "requests_by_index",
];

/// A good reading of tag `a`, as a client sends it.
fn reading_of_a(id: &str, ts_us: i64, server_ts_us: i64, v: f64) -> NewReading {
    NewReading {
        id: id.into(),
        tag: "a".into(),
        ts_us,
        server_ts_us,
        value: Some(Value::Float(v)),
        quality: Quality::good(),
    }
}

fn history_key(tag: u64, ts: i64, revision: u64) -> Vec<u8> {
    [u64_key(tag), u64_key(ordered_i64(ts)), u64_key(revision)].concat()
}

/// Three tags; 3,000 revisions, some late, some polled (ids of the outbox
/// form), revision 1,500 purged with its tag's readings (a hole).
fn write_format1(root: &Path) -> Model {
    fs::create_dir_all(root).unwrap();
    fs::write(root.join(POINTER), "sm-1").unwrap();
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    let db = DB::open_cf(&o, root.join("sm-1"), OLD_FAMILIES).unwrap();
    let cf = |n: &str| db.cf_handle(n).unwrap();
    let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
    db.put_cf(cf("devices"), "plc", encode(&device)).unwrap();
    let names = ["a", "b", "c"];
    for (i, name) in names.iter().enumerate() {
        let mut tag = Tag::new(*name, "plc", "hr:0", DataType::F64);
        tag.id = i as u64 + 1;
        db.put_cf(cf("tags"), name, encode(&tag)).unwrap();
    }
    let mut model = Model::new();
    let mut newest: HashMap<u64, (i64, u64, Vec<u8>)> = HashMap::new();
    for revision in 1..=3_000u64 {
        if revision == 1_500 {
            continue; // purged long ago
        }
        let tag = revision % 3 + 1;
        let late = if revision % 17 == 0 { 7_200_000_000 } else { 0 };
        let ts = 1_000_000_000_000 + revision as i64 * 1_000_000 - late;
        let id = if revision % 2 == 0 {
            format!("2-1:{}:{}", revision / 10, revision % 10)
        } else {
            format!("client-{revision}")
        };
        let stored = StoredReading {
            id: id.clone(),
            ts_us: ts,
            server_ts_us: ts + 5,
            value: Some(Value::Float(revision as f64 / 4.0)),
            quality: Quality::good(),
        };
        let bytes = encode(&stored);
        let key = history_key(tag, ts, revision);
        db.put_cf(cf("history"), &key, &bytes).unwrap();
        db.put_cf(cf("revisions"), u64_key(revision), &key).unwrap();
        db.put_cf(cf("reading_ids"), &id, u64_key(revision))
            .unwrap();
        if newest.get(&tag).is_none_or(|n| (n.0, n.1) < (ts, revision)) {
            newest.insert(tag, (ts, revision, bytes));
        }
        let name = names[tag as usize - 1].to_string();
        model.push((name, ts, revision, revision as f64 / 4.0, id));
    }
    for (tag, (_, revision, bytes)) in newest {
        let v = [u64_key(revision).to_vec(), bytes].concat();
        db.put_cf(cf("current"), u64_key(tag), v).unwrap();
    }
    db.put_cf(cf("meta"), "revision", u64_key(3_000)).unwrap();
    db.put_cf(cf("meta"), "next_tag_id", u64_key(4)).unwrap();
    db.put_cf(cf("meta"), "applied", b"applied-log-id").unwrap();
    model
}

#[test]
fn a_format1_state_migrates_with_every_reading_and_revision_kept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let model = write_format1(&root);
    let refused = StateStore::open(&root).err().expect("format 1 is refused");
    assert!(
        refused.to_string().contains("bifrost migrate-data"),
        "{refused}"
    );

    let mut seen = Vec::new();
    let done = StateStore::migrate(&root, &mut |p| seen.push(p)).unwrap();
    assert_eq!((done.readings, done.tags, done.revision), (2_999, 3, 3_000));
    assert!(done.backup.join("CURRENT").exists(), "old database kept");
    assert!(matches!(
        seen.last(),
        Some(Progress::History { readings: 2_999 })
    ));

    let s = StateStore::open(&root).unwrap();
    assert_eq!(s.revision(), 3_000);
    assert_eq!(s.applied().as_deref(), Some(&b"applied-log-id"[..]));
    // Every revision in order, the purged one skipped.
    let pages: Vec<_> = read_pages(0, |after| s.readings_page(after, 700))
        .into_iter()
        .map(|r| (r.tag, r.ts_us, r.revision, r.id))
        .collect();
    let want: Vec<_> = model
        .iter()
        .map(|m| (m.0.clone(), m.1, m.2, m.4.clone()))
        .collect();
    assert!(
        pages == want,
        "{} of {} readings by revision",
        pages.len(),
        want.len()
    );
    // Each tag's history by time, and its current value.
    for name in ["a", "b", "c"] {
        let tag = s.tag(name).unwrap();
        let mut got = Vec::new();
        s.scan_history_between(&tag, (i64::MIN, 0), (i64::MAX, u64::MAX), false, |r| {
            got.push((r.ts_us, r.revision, r.value));
            true
        })
        .unwrap();
        let mut want: Vec<_> = model
            .iter()
            .filter(|m| m.0 == name)
            .map(|m| (m.1, m.2, Some(Value::Float(m.3))))
            .collect();
        want.sort_by_key(|w| (w.0, w.1));
        assert_eq!(got, want, "tag {name}");
        let current = s.current(name).unwrap().unwrap().unwrap();
        assert_eq!(
            (current.ts_us, current.revision),
            (want.last().unwrap().0, want.last().unwrap().1)
        );
    }
    // A client id stored before is still a duplicate; the next reading
    // continues the revisions.
    let mut b = s.batch();
    let out = b
        .insert_readings(
            vec![
                reading_of_a("client-1", 1, 1, 0.0),
                reading_of_a("new-one", 1, 1, 0.0),
            ],
            false,
        )
        .unwrap()
        .unwrap();
    b.commit().unwrap();
    assert_eq!(
        (out.stored, out.duplicates, out.last_revision),
        (1, 1, 3_001)
    );
    // The outbox the polled ids came from is settled up to its highest sequence.
    let origin: OriginState = s.with_db(|db| {
        let v = db
            .get_cf(db.cf_handle(CF_META).unwrap(), origin_key("2-1"))
            .unwrap()
            .unwrap();
        decode(&v).unwrap()
    });
    assert_eq!(origin.settled_below, 300 + 1);
    drop(s);
    // Nothing left to migrate: said so, and nothing changes.
    let again = StateStore::migrate(&root, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(again.contains("already in format 3"), "{again}");
}

#[test]
fn a_damaged_old_reading_stops_the_migration_and_leaves_the_old_state_active() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    write_format1(&root);
    {
        let db = DB::open_cf(&Options::default(), root.join("sm-1"), OLD_FAMILIES).unwrap();
        let key = history_key(2, 1_000_000_000_000 + 1_000_000, 1);
        db.put_cf(db.cf_handle("history").unwrap(), key, b"\x01garbage")
            .unwrap();
    }
    let err = StateStore::migrate(&root, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("tag 2 at revision 1"), "{err}");
    assert_eq!(fs::read_to_string(root.join(POINTER)).unwrap(), "sm-1");
    let still = StateStore::open(&root).err().expect("still format 1");
    assert!(matches!(still, Error::Format { found: 1, .. }), "{still}");
}

#[test]
fn polled_ids_are_told_from_client_ids() {
    assert_eq!(polled_id("2-1:7:0"), Some(("2-1", 7)));
    assert_eq!(polled_id("12-30:99:4"), Some(("12-30", 99)));
    for not in [
        "client-7",
        "a-1:7:0",
        "2-1:x:0",
        "2-1:7",
        "2-1:7:0:1",
        "2:7:0",
    ] {
        assert_eq!(polled_id(not), None, "{not}");
    }
}

/// A format-2 state: the current layout, but reading ids as strings in
/// `reading_ids` and no ingest id index. Returns the ids ingested.
fn write_format2(root: &Path) -> Vec<String> {
    let ids: Vec<String> = (0..500).map(|i| format!("gateway-{i}")).collect();
    {
        let s = StateStore::open(root).unwrap();
        let mut b = s.batch();
        let device = Device::new("plc", Protocol::ModbusTcp, "127.0.0.1:502");
        b.put_device(device, false, None, 1).unwrap();
        b.put_tag(Tag::new("a", "plc", "hr:0", DataType::F64), false, None, 2)
            .unwrap();
        b.commit().unwrap();
        let mut b = s.batch();
        let readings = ids.iter().enumerate().map(|(i, id)| {
            let ts = 1_000_000 * i as i64;
            reading_of_a(id, ts, ts, i as f64)
        });
        b.insert_readings(readings.collect(), false)
            .unwrap()
            .unwrap();
        b.commit().unwrap();
        s.flush().unwrap();
    }
    let dir = root.join(fs::read_to_string(root.join(POINTER)).unwrap().trim());
    let families = DB::list_cf(&Options::default(), &dir).unwrap();
    let mut db = DB::open_cf(&Options::default(), &dir, &families).unwrap();
    db.drop_cf(CF_INGEST_IDS).unwrap();
    db.create_cf(OLD_IDS, &Options::default()).unwrap();
    let old_ids = db.cf_handle(OLD_IDS).unwrap();
    for (i, id) in ids.iter().enumerate() {
        db.put_cf(old_ids, id, u64_key(i as u64 + 1)).unwrap();
    }
    db.put_cf(db.cf_handle(CF_META).unwrap(), META_FORMAT, u64_key(2))
        .unwrap();
    ids
}

#[test]
fn a_format2_state_migrates_its_reading_ids_into_the_compact_index() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let ids = write_format2(&root);
    let refused = StateStore::open(&root).err().expect("format 2 is refused");
    assert!(
        matches!(refused, Error::Format { found: 2, .. })
            && refused.to_string().contains("format 2"),
        "{refused}"
    );
    let mut seen = Vec::new();
    let done = StateStore::migrate(&root, &mut |p| seen.push(p)).unwrap();
    assert_eq!((done.readings, done.tags, done.revision), (500, 1, 500));
    assert!(done.backup.to_string_lossy().contains("format2-backup-"));
    assert!(seen.contains(&Progress::Ids { ids: 500 }), "{seen:?}");

    let s = StateStore::open(&root).unwrap();
    assert_eq!(s.revision(), 500);
    let pages = read_pages(0, |after| s.readings_page(after, 70));
    assert_eq!(pages.len(), 500, "every reading kept");
    assert!(pages.iter().zip(&ids).all(|(r, id)| &r.id == id));
    // Every old id is still a duplicate, however late the clock gets.
    let mut b = s.batch();
    let again = ids.iter().map(|id| reading_of_a(id, 1, i64::MAX / 2, 0.0));
    let out = b.insert_readings(again.collect(), false).unwrap().unwrap();
    b.commit().unwrap();
    assert_eq!((out.stored, out.duplicates), (0, 500));
}
