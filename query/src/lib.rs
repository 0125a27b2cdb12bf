//! Bifrost's query engine: a read-only SQL subset over the tag catalog, the
//! current values and the history of readings.
//!
//! The crate has two halves. The **front** (`front/`) parses a statement with
//! the `sqlparser` crate (generic dialect), checks it against the subset
//! below with the table catalog, and compiles it into a small plan: typed
//! expressions over the columns of one table, with literals and times already
//! parsed. Every error that depends only on the text is found there, with its
//! position. **Execution** (`exec/`) runs a plan against two traits defined
//! here ([`store`]): [`Catalog`] (tags, devices, owners, current values, all
//! small and in memory on a node) and [`History`], one narrow scan of one
//! tag's readings (tag, time range as `(ts, revision)` positions, direction,
//! limit, and a pushed-down quality/value filter). Execution is synchronous
//! and streams rows to a sink as they are found whenever the query has no
//! aggregate and no ORDER BY that the scans cannot provide; the server runs
//! it in `spawn_blocking`.
//!
//! **What it must not depend on.** No RocksDB, tonic, Raft or async runtime:
//! the store behind the traits is the caller's business. The server
//! implements them over its RocksDB state in a thin adapter
//! (`server/src/query.rs`); that keeps SQL out of `storage` and storage
//! internals out of here, and the next history store only has to implement
//! [`History`]. [`MemoryStore`] is a reference implementation over plain
//! collections, used by this crate's tests and as the yardstick a real store
//! is checked against. The model types (`Tag`, `Reading`, `Value`...) come
//! from `bifrost-model`, imported in one place, the `model` module below.
//!
//! # Tables
//!
//! | table      | columns |
//! |------------|---------|
//! | `tags`     | `name`, `device`, `address`, `type`, `units`, `description`, `writable`, `scan_rate_ms`, `config_revision`, and the current reading: `value`, `quality`, `reason`, `ts`, `revision` (all null when the tag has no reading yet) |
//! | `readings` | `tag`, `ts`, `value`, `quality`, `reason`, `revision`, `id`, `server_ts` |
//! | `devices`  | `name`, `protocol`, `endpoint`, `unit_id`, `poll_interval_ms`, `timeout_ms`, `retries`, `enabled`, `labels` (a JSON object as text), `config_revision`, `owner` (node id, null if unassigned), `owner_epoch` |
//! | `cluster`  | `node_id`, `address`, `role` (`leader`, `follower`, `learner`), `voter`, `is_leader`, `devices` (number assigned to the node) |
//! | `audit`    | `ts`, `username`, `source`, `action`, `target`, `detail`, `outcome`, `revision` (the record's log index), oldest first |
//!
//! `value` is dynamically typed (bool, integer, float or text, as the tag's
//! type says); `quality` is `'good'`, `'uncertain'` or `'bad'`; `reason` is
//! null for a good reading; `ts` and `server_ts` are timestamps (µs since the
//! Unix epoch, UTC).
//!
//! # Supported SQL
//!
//! * `SELECT` of columns, `*`, `table.column`, aliases (`AS`), arithmetic
//!   (`+ - * / %`), and the aggregates below; one table in `FROM` (an alias
//!   is allowed).
//! * `WHERE` with `AND`, `OR`, `NOT`, parentheses; `= != <> < <= > >=`;
//!   `BETWEEN`; `IN (...)`; `IS [NOT] NULL`; `LIKE` / `NOT LIKE` (`%`, `_`,
//!   `\` or `ESCAPE` to escape); globs as the function `glob(tag, 'plant/*/temp')`
//!   (sqlparser has no `GLOB` operator): `*` stays within one `/` segment, `**`
//!   crosses segments, `?` is one character other than `/`.
//! * Time: `now()` (the caller's clock, fixed for the whole query),
//!   `INTERVAL '90 seconds'` / `'1 hour'` / `'2 days'` (units microsecond,
//!   millisecond, second, minute, hour, day, week, singular or plural, several
//!   may be combined: `'1 hour 30 minutes'`), also `INTERVAL '5' MINUTE`;
//!   timestamp ± interval; RFC 3339 text compared with a timestamp
//!   (`ts >= '2026-11-28T10:00:00Z'`, a bare date means midnight UTC) or
//!   `TIMESTAMP '...'`. Comparing a timestamp with a number is a type error.
//! * Value and quality predicates: `value > 10`, `value = true`,
//!   `value = 'text'` (a reading whose value has another type simply does not
//!   match), `quality = 'bad'`, `quality != 'good'`, `reason = 'timeout'`.
//! * `ORDER BY` output columns (by name, alias or position) or any expression
//!   of the table's columns, `ASC`/`DESC`, `NULLS FIRST`/`LAST` (default:
//!   nulls last ascending, first descending), several keys; `LIMIT n`,
//!   `OFFSET n` (also `LIMIT offset, n`).
//! * Aggregates `count(*)`, `count(expr)`, `avg`, `sum`, `min`, `max`,
//!   `first(expr)`, `last(expr)` (first/last by `ts`, ties by `revision`; on
//!   `readings` and `tags`), also inside arithmetic (`max(value) - min(value)`).
//!   `GROUP BY` columns, `time_bucket(INTERVAL '1 minute', ts)` (a timestamp:
//!   the bucket start, buckets aligned to the Unix epoch), output aliases or
//!   positions. Only groups that have rows are emitted: a bucket without
//!   readings does not appear (there is no gap filling), and
//!   `... GROUP BY tag` has no row for a tag without matching readings. An
//!   aggregate query without `GROUP BY` always returns one row (`count` 0,
//!   the other aggregates null when nothing matched).
//!
//! **Which readings are aggregated.** On `readings`, aggregates skip Bad
//! readings and readings without a value, unless the `WHERE` clause itself
//! mentions `quality`: then exactly the rows it selects are aggregated (so
//! `WHERE quality = 'bad'` counts bad readings, and
//! `WHERE quality IN ('good', 'uncertain', 'bad')` aggregates everything).
//! The rule applies to every aggregate, `count(*)` included. On the other
//! tables aggregates see every selected row; nulls are skipped as in SQL.
//!
//! **Value at a time (carry-forward).** `SELECT tag, last(value) FROM readings
//! WHERE tag LIKE 'line1/%' AND ts <= '...' GROUP BY tag` gives each tag's
//! last usable value at or before the time, however old: it is answered with
//! one reverse seek per tag that stops at the first usable reading, not by
//! scanning history (likewise `first(...)` with a forward seek, whenever every
//! aggregate of the query is `last` — or every one is `first` — and it is
//! grouped by `tag` or not at all). A tag with no reading at or before the time
//! has no row (or, without `GROUP BY`, the single row holds null).
//!
//! **How much is read.** Tag predicates (`=`, `IN`, `LIKE`, `glob`, combined
//! with AND/OR) select the tags to visit from the in-memory tag list, using
//! the literal prefix of patterns; the history of any other tag is never
//! read. `ts` predicates become the key range of each tag's history scan;
//! `quality = '...'` / `quality IN (...)` tests ANDed into the WHERE clause,
//! and the aggregates' rule above, become the scan's filter, so the store
//! may skip those readings (they still count as read). Without ORDER BY, `readings` rows come by tag name, then time, then
//! revision. `ORDER BY tag, ts` in any directions is served by reading one
//! tag after another (each in reverse when descending); `ORDER BY ts [DESC]`
//! (optionally then `tag`) over several tags by merging their histories by
//! time, each read in small chunks. Both stream and stop as soon as `LIMIT`
//! is reached; other orders sort in memory, keeping only the best
//! `OFFSET + LIMIT` rows. Groups come out sorted by their keys unless ORDER
//! BY says otherwise.
//!
//! **Ties and mixed types in ORDER BY.** Rows equal on every ORDER BY key
//! come in a defined order: `readings` rows by tag ascending, then by (ts,
//! revision) ascending, or descending when the first ORDER BY key on `ts`
//! is descending (so `ORDER BY ts DESC` is exactly the reverse of
//! `ORDER BY ts`, readings of one timestamp newest revision first); `tags`
//! rows by name; groups by their keys ascending. Values of different types
//! sort (and compare in `min`/`max`) as: bools, then numbers, then text.
//! A query on `readings` without a
//! tag predicate is allowed, but every reading it reads counts against
//! [`Limits::max_scan`].
//!
//! # Limits and errors
//!
//! Reading more than `max_scan` rows (readings, or tags for `tags`), or
//! returning more than `max_rows` rows (unless the query's own LIMIT is
//! smaller), is an error, never a silent truncation; so is passing the
//! deadline. Every error has a kind ([`ErrorKind`]) and, when it comes from
//! the query text, its line and column.
//!
//! # Left out
//!
//! Joins and several tables, subqueries, `WITH`, `UNION`/`EXCEPT`/`INTERSECT`,
//! `HAVING`, window functions (`OVER`), `DISTINCT` (also inside aggregates),
//! `CASE`, `CAST`, `ILIKE`/`SIMILAR TO`/regular expressions, scalar functions
//! other than `now`, `time_bucket`, `glob`; gap filling of empty time buckets;
//! any statement other than `SELECT` (writes go through the config and ingest
//! APIs). Each is rejected with an `Unsupported` error naming the construct.
//! A query reads each tag's history through its own scan, so it is not one
//! snapshot across tags.

mod cell;
#[cfg(test)]
mod diff_tests;
mod error;
mod exec;
mod front;
pub mod memory;
pub mod store;
#[cfg(test)]
mod summary_tests;
#[cfg(test)]
mod tests;

/// The model types the engine's API speaks (from `bifrost-model`), imported
/// once for the whole crate.
pub mod model {
    pub use bifrost_model::{
        Assignment, AuditRecord, DataType, Device, Order, Quality, QualityLevel, Reading, Tag,
        Value,
    };
}

/// Tag-name patterns (`LIKE` and path globs) are a model concept shared with
/// subscriptions and access rules; the engine uses the model's, re-exported
/// here so `bifrost_query::pattern::Pattern` keeps working.
pub use bifrost_model::pattern::{self, Pattern};
pub use cell::{Cell, Column, ColumnType};
pub use error::{ErrorKind, QueryError};
pub use exec::{ExecContext, ExecStats, Limits};
pub use memory::MemoryStore;
pub use store::{Catalog, ClusterInfo, History, MemberInfo, StoreError};

/// A parsed and checked query, ready to run any number of times.
#[derive(Debug)]
pub struct Query {
    plan: front::Plan,
}

impl Query {
    /// Parses and checks `sql`. Every error that depends only on the text
    /// (syntax, unknown names, types, unsupported constructs) is found here.
    pub fn parse(sql: &str) -> Result<Query, QueryError> {
        Ok(Query {
            plan: front::compile(sql)?,
        })
    }

    /// The result columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.plan.columns
    }

    /// The table the query reads (`tags`, `readings`, `devices` or `cluster`).
    pub fn table(&self) -> &'static str {
        self.plan.table.name()
    }

    /// Runs the query, passing each result row to `sink` (in `columns()`
    /// order) until it returns false, which ends the run early without error.
    pub fn execute(
        &self,
        ctx: &ExecContext<'_>,
        sink: &mut dyn FnMut(Vec<Cell>) -> bool,
    ) -> Result<ExecStats, QueryError> {
        exec::execute(&self.plan, ctx, sink)
    }
}
