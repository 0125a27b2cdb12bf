//! The back half of the engine: running a [`Plan`] against a [`Catalog`]
//! and a [`History`]. Choose the tags and the time range to read
//! (`select.rs`), read them in the order the query needs when scans can
//! give it, merging tags by time if needed (`history.rs`, `plain.rs`), so
//! rows stream and LIMIT stops the reading; otherwise collect, aggregate
//! (`agg.rs`, from summaries where it can: `summarized.rs`) or sort in
//! memory. Expressions are evaluated in `eval.rs`.
//! Nothing here knows SQL text or how the store keeps readings.

mod agg;
mod eval;
mod history;
mod plain;
mod select;
mod source;
mod summarized;

use std::time::Instant;

use crate::cell::Cell;
use crate::error::{ErrorKind, QueryError, Result};
use crate::front::{Plan, Table};
use crate::store::{Catalog, ClusterInfo, History};

/// Bounds on one execution. Zero means "no limit" for the counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Most result rows; more is an error (a smaller LIMIT in the query wins).
    pub max_rows: u64,
    /// Most rows read from storage (readings for `readings`, tags for `tags`).
    pub max_scan: u64,
    /// When to give up with a `Timeout` error.
    pub deadline: Option<Instant>,
}

/// What a query runs against.
pub struct ExecContext<'a> {
    pub catalog: &'a dyn Catalog,
    pub history: &'a dyn History,
    pub cluster: &'a ClusterInfo,
    /// The query's `now()`, microseconds since the Unix epoch.
    pub now_us: i64,
    pub limits: Limits,
}

/// What an execution did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Rows passed to the sink.
    pub rows: u64,
    /// Rows read from storage.
    pub scanned: u64,
}

/// What a row consumer wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    /// Done with this tag's history; go on with the next tag.
    NextTag,
    Stop,
}

/// Counts rows read against the scan limit and watches the deadline.
struct Budget {
    scanned: u64,
    max_scan: u64,
    deadline: Option<Instant>,
    noun: &'static str,
}

impl Budget {
    fn tick(&mut self) -> Result<()> {
        self.add(1)?;
        // Every 256 rows: reading the clock per row would cost more than the row.
        if self.scanned & 255 == 0 {
            self.check_deadline()?;
        }
        Ok(())
    }

    /// Counts `n` rows read at once (a scan's readings its filter skipped).
    fn add(&mut self, n: u64) -> Result<()> {
        self.scanned += n;
        if self.max_scan > 0 && self.scanned > self.max_scan {
            return Err(QueryError::new(
                ErrorKind::Limit,
                format!(
                    "query would scan more than {} {} (limit); narrow the tag filter or time range",
                    self.max_scan, self.noun
                ),
            ));
        }
        Ok(())
    }

    /// How many more rows one scan may read before the limit is passed
    /// (one more than allowed, so that passing it is seen).
    fn remaining(&self) -> Option<u64> {
        (self.max_scan > 0).then(|| (self.max_scan + 1).saturating_sub(self.scanned))
    }

    fn check_deadline(&self) -> Result<()> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(QueryError::new(
                ErrorKind::Timeout,
                format!(
                    "query passed its deadline after scanning {} {}; narrow the tag filter or time range",
                    self.scanned, self.noun
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Applies OFFSET, LIMIT and the row limit, and hands rows to the sink.
struct Emitter<'s> {
    sink: &'s mut dyn FnMut(Vec<Cell>) -> bool,
    visible: usize,
    skip: u64,
    limit: Option<u64>,
    max_rows: u64,
    rows: u64,
}

impl Emitter<'_> {
    fn emit(&mut self, mut row: Vec<Cell>) -> Result<Flow> {
        if self.limit.is_some_and(|l| self.rows >= l) {
            return Ok(Flow::Stop);
        }
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(Flow::Continue);
        }
        if self.max_rows > 0 && self.rows >= self.max_rows {
            return Err(QueryError::new(
                ErrorKind::Limit,
                format!(
                    "query returns more than {} rows (limit); add a LIMIT or narrow the query",
                    self.max_rows
                ),
            ));
        }
        row.truncate(self.visible);
        self.rows += 1;
        if !(self.sink)(row) || self.limit.is_some_and(|l| self.rows >= l) {
            return Ok(Flow::Stop);
        }
        Ok(Flow::Continue)
    }

    /// Emits sorted rows until the limit.
    fn emit_all(&mut self, rows: Vec<Vec<Cell>>) -> Result<()> {
        for row in rows {
            if self.emit(row)? == Flow::Stop {
                break;
            }
        }
        Ok(())
    }
}

pub(crate) fn execute(
    plan: &Plan,
    ctx: &ExecContext<'_>,
    sink: &mut dyn FnMut(Vec<Cell>) -> bool,
) -> Result<ExecStats> {
    let mut budget = Budget {
        scanned: 0,
        max_scan: ctx.limits.max_scan,
        deadline: ctx.limits.deadline,
        noun: match plan.table {
            Table::Readings => "readings",
            Table::Tags => "tags",
            Table::Devices => "devices",
            Table::Cluster => "members",
            Table::Audit => "audit records",
        },
    };
    budget.check_deadline()?;
    let mut em = Emitter {
        sink,
        visible: plan.columns.len(),
        skip: plan.offset,
        limit: plan.limit,
        max_rows: ctx.limits.max_rows,
        rows: 0,
    };
    if plan.limit != Some(0) {
        match &plan.agg {
            None => plain::run_plain(plan, ctx, &mut budget, &mut em)?,
            Some(a) => agg::run_agg(plan, a, ctx, &mut budget, &mut em)?,
        }
    }
    Ok(ExecStats {
        rows: em.rows,
        scanned: budget.scanned,
    })
}
