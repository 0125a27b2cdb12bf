//! The linearizability checker.
//!
//! A history is *linearizable* if every operation can be given a point in
//! time between its invocation and its completion at which it takes effect
//! atomically, such that the model, fed the operations in the order of those
//! points, produces exactly the results the clients saw (Herlihy & Wing).
//! Deciding that is NP-complete in general, so the checker searches, and
//! the search is made fast by the same ideas as porcupine's:
//!
//! - **Just-in-time linearization** (Wing & Gong's search, as improved by
//!   Lowe). Calls and returns are laid out in time order in a linked list.
//!   The search walks the list: at a call it tries to linearize that
//!   operation now (the model must accept it in the current state); if it
//!   can, the call and its return are unlinked and the walk restarts at the
//!   head. Reaching a *return* means an operation completed without having
//!   taken effect, so the last choice is undone (the entries are linked back
//!   in, dancing-links style) and the next candidate tried. Only operations
//!   invoked before the first pending return are ever candidates.
//! - **Memoisation.** Two search paths that have linearized the same *set* of
//!   operations and reached the same model state have the same future, so
//!   each (set, state) pair is explored once. The set is a bitset of `u64`
//!   words; its hash is kept incrementally (a random word per operation,
//!   XORed in and out), states are interned to small integers, and the
//!   visited pairs live in one flat arena, so a step costs no allocation.
//! - **Per-key partitioning.** Linearizability is local: a history is
//!   linearizable iff every key's sub-history is, so each key is searched on
//!   its own. The search space is exponential in the concurrency of one key,
//!   not of the whole history.
//!
//! Outcomes are read as Jepsen defines them. A failed operation did not
//! happen and is dropped. An operation with an unknown outcome (`info`, or
//! never completed) may take effect at any time after its invocation or
//! never: it has no return entry, so it never forces a backtrack, and the
//! search succeeds as soon as every *completed* operation is linearized
//! (placing the rest after everything else, or nowhere, is always allowed).
//! Unknown reads constrain nothing and are dropped. Identical unknown
//! operations (same function and argument) are interchangeable once both are
//! invoked, so only the earliest pending one of them is ever tried: without
//! that, ten timed-out `write 3`s could multiply the search by up to 2^10.
//!
//! A deadline is checked inside the search; when it passes, the verdict is
//! [`Verdict::Unknown`] rather than a search that never ends. When the
//! history is not linearizable, [`Failure`] describes where the search got
//! furthest: the longest prefix it could linearize, the state after it, and
//! the operation that completed without being able to take effect.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use crate::history::{Function, History, Operation, Outcome, Value};
use crate::model::{KvMap, Model, ModelKind, Register, Step};
use crate::{Error, Result};

/// How to check, and when to give up.
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Give up (verdict [`Verdict::Unknown`]) after this long.
    pub timeout: Duration,
    /// Give up when the memo of visited (set, state) pairs of the key being
    /// searched grows past this many bytes (roughly). A fast search fills
    /// memory quickly: about 50 bytes per pair, millions of pairs a second.
    pub max_memory: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            timeout: Duration::from_secs(60),
            max_memory: 2 << 30,
        }
    }
}

/// Why the checker gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// [`CheckOptions::timeout`] passed.
    Time,
    /// The memo outgrew [`CheckOptions::max_memory`].
    Memory,
}

/// Where and why the checker gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaveUp {
    /// The key being searched.
    pub key: String,
    pub limit: Limit,
}

/// The answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search ran out of time.
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        })
    }
}

/// The verdict and how it was reached.
#[derive(Clone, Debug)]
pub struct Report {
    pub verdict: Verdict,
    /// The model the history was checked against.
    pub model: &'static str,
    /// Keys searched (each key is searched on its own).
    pub keys: usize,
    /// Operations searched: all of them, less failed ones and reads with an
    /// unknown result.
    pub operations: usize,
    /// Distinct (linearized set, state) pairs visited, summed over keys.
    pub explored: u64,
    pub elapsed: Duration,
    /// Where the search got stuck, when the verdict is `NotLinearizable`.
    pub failure: Option<Failure>,
    /// Where and why the search stopped, when the verdict is `Unknown`.
    pub gave_up: Option<GaveUp>,
}

/// Why a key's history is not linearizable: the furthest the search got.
#[derive(Clone, Debug)]
pub struct Failure {
    pub key: String,
    /// Operations of the key that were searched.
    pub operations: usize,
    /// The longest linearizable prefix found, in linearization order, each
    /// with the model state after it (as text).
    pub prefix: Vec<(Operation, String)>,
    /// The state after the prefix.
    pub state: String,
    /// The operation that completed without the search being able to make it
    /// take effect after the prefix.
    pub stuck: Operation,
    /// Other operations that had been invoked and not yet linearized at
    /// that point (the candidates the search tried).
    pub pending: Vec<Operation>,
}

impl Failure {
    /// How many prefix operations [`Failure`]'s `Display` shows.
    const SHOWN_PREFIX: usize = 8;
    const SHOWN_PENDING: usize = 12;
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            writeln!(f, "not linearizable ({} operations)", self.operations)?;
        } else {
            writeln!(
                f,
                "not linearizable on key {:?} ({} operations of that key)",
                self.key, self.operations
            )?;
        }
        let shown = self.prefix.len().min(Self::SHOWN_PREFIX);
        writeln!(
            f,
            "longest linearizable prefix: {} operations{}",
            self.prefix.len(),
            if shown == 0 {
                String::new()
            } else if shown < self.prefix.len() {
                format!("; the last {shown}, with the state after each:")
            } else {
                ", with the state after each:".to_string()
            }
        )?;
        for (op, state) in &self.prefix[self.prefix.len() - shown..] {
            writeln!(f, "    {op}  => {state}")?;
        }
        writeln!(
            f,
            "stuck in state {}: this operation completed, but no order of the pending \
             operations lets it take effect first:",
            self.state
        )?;
        writeln!(f, "    {}", self.stuck)?;
        if !self.pending.is_empty() {
            writeln!(f, "pending at that point:")?;
            for op in self.pending.iter().take(Self::SHOWN_PENDING) {
                writeln!(f, "    {op}")?;
            }
            if self.pending.len() > Self::SHOWN_PENDING {
                writeln!(
                    f,
                    "    ... and {} more",
                    self.pending.len() - Self::SHOWN_PENDING
                )?;
            }
        }
        Ok(())
    }
}

/// Checks a parsed history. `model` chooses the model; `None` picks the one
/// that has every function the history uses.
pub fn check_history(
    history: &History,
    model: Option<ModelKind>,
    opts: &CheckOptions,
) -> Result<Report> {
    let ops = history.operations()?;
    let kind = match model {
        Some(kind) => kind,
        None => match ModelKind::for_functions(ops.iter().map(|op| op.f)) {
            Some(kind) => kind,
            // Mixed: let validation name the first operation that does not
            // fit the model of the first one.
            None if Register.supports(ops[0].f) => ModelKind::Register,
            None => ModelKind::Kv,
        },
    };
    match kind {
        ModelKind::Register => check(&Register, &ops, opts),
        ModelKind::Kv => check(&KvMap, &ops, opts),
    }
}

/// Checks operations (as paired by [`History::operations`]) against a
/// model, one key at a time. Errors only if an operation does not fit the
/// model.
pub fn check<M: Model>(model: &M, ops: &[Operation], opts: &CheckOptions) -> Result<Report> {
    let start = Instant::now();
    let deadline = start + opts.timeout;

    let mut by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    for op in ops {
        if !model.supports(op.f) {
            return Err(Error::UnsupportedOperation {
                line: op.invoke_line,
                model: model.name(),
                function: op.f,
            });
        }
        model
            .validate(op)
            .map_err(|message| Error::input(op.invoke_line, message))?;
        let dropped = match op.outcome {
            Outcome::Fail => true,
            Outcome::Unknown => op.f.is_read_only(),
            Outcome::Ok(_) => false,
        };
        if !dropped {
            by_key.entry(&op.key).or_default().push(op);
        }
    }
    // Small keys first: a violation in a small key is found quickly even if
    // a big key would exhaust the time.
    let mut keys: Vec<(&str, Vec<&Operation>)> = by_key.into_iter().collect();
    keys.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then(a.0.cmp(b.0)));

    let mut report = Report {
        verdict: Verdict::Linearizable,
        model: model.name(),
        keys: keys.len(),
        operations: keys.iter().map(|(_, ops)| ops.len()).sum(),
        explored: 0,
        elapsed: Duration::ZERO,
        failure: None,
        gave_up: None,
    };
    for (key, key_ops) in keys {
        let mut search = Search::new(model, &key_ops, deadline, opts.max_memory);
        let result = search.run();
        report.explored += search.explored();
        match result {
            SearchResult::Linearizable => {}
            SearchResult::NotLinearizable => {
                report.verdict = Verdict::NotLinearizable;
                report.failure = Some(search.failure(key));
                break;
            }
            SearchResult::GaveUp(limit) => {
                report.verdict = Verdict::Unknown;
                report.gave_up = Some(GaveUp {
                    key: key.to_string(),
                    limit,
                });
                break;
            }
        }
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

enum SearchResult {
    Linearizable,
    NotLinearizable,
    GaveUp(Limit),
}

/// "No entry" in the linked list and in the memo chains.
const NIL: usize = usize::MAX;
const END_OF_CHAIN: u32 = u32::MAX;

/// The furthest dead end seen so far.
struct Stuck {
    /// (op, state id after it), in linearization order.
    prefix: Vec<(usize, u32)>,
    state: u32,
    stuck: usize,
    pending: Vec<usize>,
}

/// The search over one key's operations (indexed locally, 0..n).
struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [&'a Operation],
    deadline: Instant,
    max_memory: usize,

    // The list of call and return entries, in time order. Entry `e` belongs
    // to operation `entry_op[e]`; `head` is a sentinel before the first.
    entry_op: Vec<usize>,
    entry_is_call: Vec<bool>,
    next: Vec<usize>,
    prev: Vec<usize>,
    head: usize,
    call_entry: Vec<usize>,
    /// `None` for operations with an unknown outcome: they never complete.
    return_entry: Vec<Option<usize>>,
    /// For an unknown operation, the previous unknown operation (in call
    /// order) with the same function and argument: this one is only tried
    /// once that one is linearized.
    twin: Vec<Option<usize>>,
    /// A random word per operation; the linearized set's hash is their XOR.
    zobrist: Vec<u64>,

    // Interned model states; id 0 is the initial state.
    states: Vec<M::State>,
    state_ids: HashMap<M::State, u32>,

    // Visited (set, state) pairs: `memo` maps a hash to the newest arena
    // slot with that hash; slots chain to older ones with the same hash.
    memo: HashMap<u64, u32, BuildHasherDefault<PassThroughHasher>>,
    arena_bits: Vec<u64>,
    arena_state: Vec<u32>,
    arena_chain: Vec<u32>,

    words: usize,
    best: Option<Stuck>,
    /// The linearization so far: (operation, state id before it).
    stack: Vec<(usize, u32)>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [&'a Operation], deadline: Instant, max_memory: usize) -> Self {
        let n = ops.len();
        // Calls before returns at equal times: operations whose intervals
        // touch are taken as concurrent, which never invents a violation.
        let mut entries: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
        for (i, op) in ops.iter().enumerate() {
            entries.push((op.invoke_time, false, i));
            if let (Outcome::Ok(_), Some(t)) = (&op.outcome, op.complete_time) {
                entries.push((t, true, i));
            }
        }
        entries.sort_unstable();
        let len = entries.len();
        let head = len;
        let mut call_entry = vec![NIL; n];
        let mut return_entry = vec![None; n];
        let mut entry_op = Vec::with_capacity(len);
        let mut entry_is_call = Vec::with_capacity(len);
        let mut last_twin: HashMap<(Function, &Value), usize> = HashMap::new();
        let mut twin = vec![None; n];
        for (e, &(_, is_return, i)) in entries.iter().enumerate() {
            entry_op.push(i);
            entry_is_call.push(!is_return);
            if is_return {
                return_entry[i] = Some(e);
            } else {
                call_entry[i] = e;
                if ops[i].outcome == Outcome::Unknown {
                    twin[i] = last_twin.insert((ops[i].f, &ops[i].value), i);
                }
            }
        }
        // Entries 0..len, then the head sentinel.
        let mut next: Vec<usize> = (1..=len).collect();
        next.push(if len == 0 { NIL } else { 0 });
        if len > 0 {
            next[len - 1] = NIL;
        }
        let mut prev: Vec<usize> = (0..len).map(|e| e.wrapping_sub(1)).collect();
        if len > 0 {
            prev[0] = head;
        }
        prev.push(NIL);

        let init = model.init();
        let mut state_ids = HashMap::new();
        state_ids.insert(init.clone(), 0);
        let mut seed = 0x243f_6a88_85a3_08d3_u64;
        Search {
            model,
            ops,
            deadline,
            max_memory,
            entry_op,
            entry_is_call,
            next,
            prev,
            head,
            call_entry,
            return_entry,
            twin,
            zobrist: (0..n).map(|_| splitmix64(&mut seed)).collect(),
            states: vec![init],
            state_ids,
            memo: HashMap::default(),
            arena_bits: Vec::new(),
            arena_state: Vec::new(),
            arena_chain: Vec::new(),
            words: n.div_ceil(64),
            best: None,
            stack: Vec::new(),
        }
    }

    fn explored(&self) -> u64 {
        self.arena_state.len() as u64
    }

    /// Roughly the bytes the memo takes (the part that grows).
    fn memory(&self) -> usize {
        self.arena_bits.capacity() * 8
            + (self.arena_state.capacity() + self.arena_chain.capacity()) * 4
            + self.memo.capacity() * (8 + 4 + 1)
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    /// Undoes `unlink(e)`; must happen in the reverse order of the unlinks.
    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        if n != NIL {
            self.prev[n] = e;
        }
    }

    fn lift(&mut self, i: usize) {
        self.unlink(self.call_entry[i]);
        if let Some(r) = self.return_entry[i] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, i: usize) {
        if let Some(r) = self.return_entry[i] {
            self.relink(r);
        }
        self.relink(self.call_entry[i]);
    }

    fn intern(&mut self, s: M::State) -> u32 {
        if let Some(&id) = self.state_ids.get(&s) {
            return id;
        }
        let id = self.states.len() as u32;
        self.states.push(s.clone());
        self.state_ids.insert(s, id);
        id
    }

    /// Records (bits, state) as visited; false if it already was.
    fn remember(&mut self, bits: &[u64], set_hash: u64, state: u32) -> bool {
        let hash = set_hash ^ u64::from(state).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let w = self.words;
        let mut slot = self.memo.get(&hash).copied().unwrap_or(END_OF_CHAIN);
        let newest = slot;
        while slot != END_OF_CHAIN {
            let s = slot as usize;
            if self.arena_state[s] == state && self.arena_bits[s * w..(s + 1) * w] == *bits {
                return false;
            }
            slot = self.arena_chain[s];
        }
        let s = self.arena_state.len() as u32;
        self.arena_bits.extend_from_slice(bits);
        self.arena_state.push(state);
        self.arena_chain.push(newest);
        self.memo.insert(hash, s);
        true
    }

    fn run(&mut self) -> SearchResult {
        let mut remaining = self.return_entry.iter().filter(|r| r.is_some()).count();
        let mut bits = vec![0u64; self.words];
        let mut set_hash = 0u64;
        let mut state = 0u32;
        let mut cur = self.next[self.head];
        let mut steps = 0u32;
        loop {
            if remaining == 0 {
                return SearchResult::Linearizable;
            }
            steps = steps.wrapping_add(1);
            if steps & 0xfff == 0 {
                if Instant::now() >= self.deadline {
                    return SearchResult::GaveUp(Limit::Time);
                }
                if self.memory() > self.max_memory {
                    return SearchResult::GaveUp(Limit::Memory);
                }
            }
            if cur != NIL && self.entry_is_call[cur] {
                let i = self.entry_op[cur];
                let blocked_by_twin =
                    self.twin[i].is_some_and(|t| bits[t / 64] & (1 << (t % 64)) == 0);
                if !blocked_by_twin {
                    let next_state =
                        match self.model.step(&self.states[state as usize], self.ops[i]) {
                            Step::Illegal => None,
                            Step::Unchanged => Some(state),
                            Step::To(s) => Some(self.intern(s)),
                        };
                    if let Some(next_state) = next_state {
                        bits[i / 64] |= 1 << (i % 64);
                        set_hash ^= self.zobrist[i];
                        if self.remember(&bits, set_hash, next_state) {
                            self.stack.push((i, state));
                            state = next_state;
                            self.lift(i);
                            if self.return_entry[i].is_some() {
                                remaining -= 1;
                            }
                            cur = self.next[self.head];
                            continue;
                        }
                        bits[i / 64] &= !(1 << (i % 64));
                        set_hash ^= self.zobrist[i];
                    }
                }
                cur = self.next[cur];
                continue;
            }
            // A return of an operation not yet linearized (or, defensively,
            // the end of the list): a dead end.
            if cur != NIL
                && self
                    .best
                    .as_ref()
                    .is_none_or(|b| self.stack.len() > b.prefix.len())
            {
                self.record_stuck(cur, state);
            }
            let Some((i, prev_state)) = self.stack.pop() else {
                return SearchResult::NotLinearizable;
            };
            state = prev_state;
            bits[i / 64] &= !(1 << (i % 64));
            set_hash ^= self.zobrist[i];
            self.unlift(i);
            if self.return_entry[i].is_some() {
                remaining += 1;
            }
            cur = self.next[self.call_entry[i]];
        }
    }

    fn record_stuck(&mut self, return_entry: usize, state: u32) {
        let mut prefix = Vec::with_capacity(self.stack.len());
        for (k, &(op, _)) in self.stack.iter().enumerate() {
            let after = self.stack.get(k + 1).map_or(state, |&(_, before)| before);
            prefix.push((op, after));
        }
        let stuck = self.entry_op[return_entry];
        let mut pending = Vec::new();
        let mut e = self.next[self.head];
        while e != return_entry && e != NIL {
            if self.entry_is_call[e] && self.entry_op[e] != stuck {
                pending.push(self.entry_op[e]);
            }
            e = self.next[e];
        }
        self.best = Some(Stuck {
            prefix,
            state,
            stuck,
            pending,
        });
    }

    fn failure(&self, key: &str) -> Failure {
        let best = self.best.as_ref().expect("a failed search has a dead end");
        let show = |s: u32| self.states[s as usize].to_string();
        Failure {
            key: key.to_string(),
            operations: self.ops.len(),
            prefix: best
                .prefix
                .iter()
                .map(|&(op, s)| (self.ops[op].clone(), show(s)))
                .collect(),
            state: show(best.state),
            stuck: self.ops[best.stuck].clone(),
            pending: best
                .pending
                .iter()
                .map(|&op| self.ops[op].clone())
                .collect(),
        }
    }
}

/// The memo's keys are already well-mixed hashes: use them as they are.
#[derive(Default)]
struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Deterministic pseudo-random words (Steele, Lea & Flood's SplitMix64), so
/// that runs are reproducible.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg_op(
        id: usize,
        f: Function,
        value: Value,
        outcome: Outcome,
        t: (u64, Option<u64>),
    ) -> Operation {
        Operation {
            id,
            process: id as u64,
            f,
            key: String::new(),
            value,
            outcome,
            invoke_time: t.0,
            complete_time: t.1,
            invoke_line: id + 1,
            complete_line: t.1.map(|_| id + 1),
        }
    }

    /// An independent, exhaustive oracle for small register histories: try
    /// every order that respects real time, with register semantics written
    /// out again rather than taken from `Register`.
    fn brute_force(ops: &[Operation]) -> bool {
        let ops: Vec<&Operation> = ops.iter().filter(|o| o.outcome != Outcome::Fail).collect();
        fn go(ops: &[&Operation], placed: &mut Vec<bool>, state: &Value) -> bool {
            let all_done = ops
                .iter()
                .zip(placed.iter())
                .all(|(o, &p)| p || o.outcome == Outcome::Unknown);
            if all_done {
                return true;
            }
            for i in 0..ops.len() {
                if placed[i] {
                    continue;
                }
                // Every unplaced completed op must not have returned before
                // this one was invoked.
                let blocked = ops.iter().zip(placed.iter()).any(|(p, &done)| {
                    !done && p.complete_time.is_some_and(|r| r < ops[i].invoke_time)
                });
                if blocked {
                    continue;
                }
                let o = ops[i];
                let next = match (o.f, &o.outcome) {
                    (Function::Read, Outcome::Ok(v)) => (v == state).then(|| state.clone()),
                    (Function::Read, _) => Some(state.clone()),
                    (Function::Write, _) => Some(o.value.clone()),
                    (Function::Cas, _) => match &o.value {
                        Value::List(a) if a[0] == *state => Some(a[1].clone()),
                        _ => None,
                    },
                    _ => unreachable!(),
                };
                if let Some(next) = next {
                    placed[i] = true;
                    if go(ops, placed, &next) {
                        return true;
                    }
                    placed[i] = false;
                }
            }
            false
        }
        go(&ops, &mut vec![false; ops.len()], &Value::Nil)
    }

    /// A random history of a real register (operations take effect at a
    /// random point inside their interval, info operations maybe long after
    /// or never), sometimes with one read result corrupted.
    fn random_history(seed: &mut u64) -> Vec<Operation> {
        let mut rand = |n: u64| splitmix64(seed) % n;
        let n = 3 + rand(6) as usize;
        let procs = 1 + rand(4);
        let mut free_at = vec![0u64; procs as usize];
        // (op, effect point if it takes effect)
        let mut planned: Vec<(Operation, Option<u64>)> = Vec::new();
        for id in 0..n {
            let p = rand(procs) as usize;
            let inv = free_at[p] + rand(4);
            let ret = inv + 1 + rand(6);
            free_at[p] = ret + 1;
            let (f, value) = match rand(3) {
                0 => (Function::Read, Value::Nil),
                1 => (Function::Write, Value::Int(rand(3) as i64)),
                _ => (
                    Function::Cas,
                    Value::List(vec![Value::Int(rand(3) as i64), Value::Int(rand(3) as i64)]),
                ),
            };
            let kind = rand(10);
            let mut op = reg_op(id, f, value, Outcome::Ok(Value::Nil), (inv, Some(ret)));
            op.process = p as u64;
            let effect = if kind == 0 {
                op.outcome = Outcome::Unknown;
                op.complete_time = None;
                (rand(2) == 0).then(|| inv + rand(20))
            } else if kind == 1 && f != Function::Read {
                op.outcome = Outcome::Fail;
                None
            } else {
                Some(inv + rand(ret - inv + 1))
            };
            planned.push((op, effect));
        }
        let mut order: Vec<usize> = (0..n).filter(|&i| planned[i].1.is_some()).collect();
        order.sort_by_key(|&i| (planned[i].1, i));
        let mut state = Value::Nil;
        for i in order {
            let op = &mut planned[i].0;
            match op.f {
                Function::Read => {
                    if op.outcome != Outcome::Unknown {
                        op.outcome = Outcome::Ok(state.clone());
                    }
                }
                Function::Write => state = op.value.clone(),
                _ => {
                    let Value::List(a) = &op.value else {
                        unreachable!()
                    };
                    if a[0] == state {
                        state = a[1].clone();
                    } else if op.outcome != Outcome::Unknown {
                        // The comparison failed: the client saw a failure.
                        op.outcome = Outcome::Fail;
                    }
                }
            }
        }
        let mut ops: Vec<Operation> = planned.into_iter().map(|(op, _)| op).collect();
        if rand(2) == 0 {
            let reads: Vec<usize> = (0..n)
                .filter(|&i| ops[i].f == Function::Read && matches!(ops[i].outcome, Outcome::Ok(_)))
                .collect();
            if !reads.is_empty() {
                let r = reads[rand(reads.len() as u64) as usize];
                ops[r].outcome = Outcome::Ok(match rand(4) {
                    3 => Value::Nil,
                    v => Value::Int(v as i64),
                });
            }
        }
        ops
    }

    #[test]
    fn agrees_with_brute_force_on_random_register_histories() {
        let mut seed = 42;
        let (mut yes, mut no) = (0, 0);
        for round in 0..3000 {
            let ops = random_history(&mut seed);
            let expected = brute_force(&ops);
            let report = check(&Register, &ops, &CheckOptions::default()).unwrap();
            let got = report.verdict == Verdict::Linearizable;
            assert_eq!(got, expected, "round {round}: {ops:#?}");
            if expected {
                yes += 1
            } else {
                no += 1
            }
        }
        // Both verdicts are well represented.
        assert!(yes > 500 && no > 500, "{yes} linearizable, {no} not");
    }

    #[test]
    fn a_search_too_large_for_its_time_answers_unknown() {
        // 40 concurrent writes of distinct values, then a read of a value
        // never written: every order of the writes must be ruled out.
        let n = 40;
        let mut ops: Vec<Operation> = (0..n)
            .map(|i| {
                reg_op(
                    i,
                    Function::Write,
                    Value::Int(i as i64),
                    Outcome::Ok(Value::Nil),
                    (0, Some(10)),
                )
            })
            .collect();
        ops.push(reg_op(
            n,
            Function::Read,
            Value::Nil,
            Outcome::Ok(Value::Int(-1)),
            (20, Some(21)),
        ));
        let opts = CheckOptions {
            timeout: Duration::from_millis(200),
            ..CheckOptions::default()
        };
        // The search would run for ages: that it ends at all, with the time
        // limit named as the reason, is what is checked (no wall-clock bound
        // on how long giving up took, which a loaded machine can stretch).
        let (tx, rx) = std::sync::mpsc::channel();
        let (search_ops, search_opts) = (ops.clone(), opts.clone());
        std::thread::spawn(move || {
            let _ = tx.send(check(&Register, &search_ops, &search_opts));
        });
        let report = bifrost_testkit::wait_until(
            "the checker to give up at its 200 ms time limit",
            Duration::from_secs(120),
            || rx.try_recv().ok(),
        )
        .unwrap();
        assert_eq!(report.verdict, Verdict::Unknown);
        let expected = GaveUp {
            key: String::new(),
            limit: Limit::Time,
        };
        assert_eq!(report.gave_up, Some(expected));

        let opts = CheckOptions {
            max_memory: 1 << 20,
            ..CheckOptions::default()
        };
        let report = check(&Register, &ops, &opts).unwrap();
        assert_eq!(report.verdict, Verdict::Unknown);
        assert_eq!(report.gave_up.unwrap().limit, Limit::Memory);
    }
}
