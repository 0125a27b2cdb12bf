//! Histories: what the clients of a system under test did and saw.
//!
//! A history is a sequence of [`Event`]s in the order they were recorded.
//! Each client *process* runs one operation at a time: it logs an `invoke`
//! event when it sends a request and a completion when it learns the
//! outcome. The completion is one of three kinds, with Jepsen's meanings:
//!
//! - `ok`: the operation took effect, once, somewhere between its invocation
//!   and its completion, and the completion carries its result (the value a
//!   read returned).
//! - `fail`: the operation certainly did *not* take effect (the server
//!   refused it before doing anything). The checker drops it.
//! - `info`: the outcome is unknown (a timeout, a connection lost after the
//!   request was sent). It may have taken effect at any time after its
//!   invocation, even long after the client gave up, or never; its result
//!   is unknown. A process whose last operation is still open when the
//!   history ends is treated the same way.
//!
//! [`History::operations`] pairs each invocation with its completion into an
//! [`Operation`], the unit the checker works with.

use std::collections::HashMap;
use std::fmt;

use crate::{Error, Result};

/// A value carried by an operation: the argument of a write, the result of a
/// read, or `[old new]` for a compare-and-set. Small on purpose: it is what
/// both the recorded histories and the models need, no more.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// No value: a read's argument, or a register that was never written.
    Nil,
    Int(i64),
    Str(String),
    /// A tuple, such as a compare-and-set's `[old new]`.
    List(Vec<Value>),
}

impl fmt::Display for Value {
    /// EDN-like, the way Jepsen prints values: `nil`, `3`, `"abc"`, `[1 2]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => f.write_str("nil"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// The kind of an event: an invocation or one of the three completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Invoke,
    Ok,
    Fail,
    Info,
}

impl EventType {
    /// Parses the names used in every format: `invoke`, `ok`, `fail`, `info`.
    pub fn parse(name: &str) -> Option<EventType> {
        Some(match name {
            "invoke" => EventType::Invoke,
            "ok" => EventType::Ok,
            "fail" => EventType::Fail,
            "info" => EventType::Info,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operation does. The register functions and the key-value
/// functions are separate sets; a [`Model`](crate::Model) says which it
/// understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Function {
    /// Register read; the completion carries the value read.
    Read,
    /// Register write of the argument.
    Write,
    /// Register compare-and-set; the argument is `[old new]`.
    Cas,
    /// Map read of a key; the completion carries the value (`""` if unset).
    Get,
    /// Map write of a key.
    Put,
    /// Map append of the argument to a key's string value.
    Append,
}

impl Function {
    pub const ALL: [Function; 6] = [
        Function::Read,
        Function::Write,
        Function::Cas,
        Function::Get,
        Function::Put,
        Function::Append,
    ];

    pub fn parse(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Function::Read => "read",
            Function::Write => "write",
            Function::Cas => "cas",
            Function::Get => "get",
            Function::Put => "put",
            Function::Append => "append",
        }
    }

    /// Whether the operation only observes. An observation with an unknown
    /// result constrains nothing, so the checker drops it.
    pub fn is_read_only(self) -> bool {
        matches!(self, Function::Read | Function::Get)
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One recorded event, as read from a history file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The client process. A process runs one operation at a time.
    pub process: u64,
    pub kind: EventType,
    pub f: Function,
    /// The key the operation is on; `""` for a history of a single register.
    pub key: String,
    /// The argument (on `invoke`) or the result (on `ok`); informational on
    /// `fail` and `info`.
    pub value: Value,
    /// When the event happened, in any unit, as long as every event of the
    /// history uses the same clock. Formats without times use the line
    /// number, which keeps the recorded order.
    pub time: u64,
    /// The 1-based line of the input the event was read from.
    pub line: usize,
}

/// A history: events in recorded order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub events: Vec<Event>,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It took effect; the value is the completion's (what a read returned).
    Ok(Value),
    /// It certainly did not take effect.
    Fail,
    /// It may or may not have taken effect (`info`, or never completed).
    Unknown,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Index in the list [`History::operations`] returns (invocation order).
    pub id: usize,
    pub process: u64,
    pub f: Function,
    pub key: String,
    /// The invocation's argument.
    pub value: Value,
    pub outcome: Outcome,
    pub invoke_time: u64,
    /// When the operation completed; `None` if its outcome is unknown, which
    /// the checker reads as "returned at +infinity": it may take effect at
    /// any point after its invocation.
    pub complete_time: Option<u64>,
    pub invoke_line: usize,
    /// The line of the completion event, if there was one (including `info`).
    pub complete_line: Option<usize>,
}

impl fmt::Display for Operation {
    /// `process 3 cas [1 2] -> ok (lines 10-14)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} {}", self.process, self.f)?;
        if !self.f.is_read_only() {
            write!(f, " {}", self.value)?;
        }
        match &self.outcome {
            Outcome::Ok(v) if self.f.is_read_only() => write!(f, " -> {v}")?,
            Outcome::Ok(_) => f.write_str(" -> ok")?,
            Outcome::Fail => f.write_str(" -> fail")?,
            Outcome::Unknown => f.write_str(" -> ?")?,
        }
        match (self.complete_line, &self.outcome) {
            (Some(c), Outcome::Unknown) => {
                write!(f, " (line {}, info at line {c})", self.invoke_line)
            }
            (Some(c), _) => write!(f, " (lines {}-{c})", self.invoke_line),
            (None, _) => write!(f, " (line {}, never completed)", self.invoke_line),
        }
    }
}

impl History {
    /// Pairs every invocation with the next completion of the same process.
    /// Errors (with the offending line) when a completion has no open
    /// invocation, when a process invokes while its previous operation is
    /// still open, when a completion names a different function or key than
    /// its invocation, or when it is earlier than its invocation.
    pub fn operations(&self) -> Result<Vec<Operation>> {
        let mut ops: Vec<Operation> = Vec::new();
        let mut open: HashMap<u64, usize> = HashMap::new();
        for e in &self.events {
            if e.kind == EventType::Invoke {
                if let Some(&prev) = open.get(&e.process) {
                    return Err(Error::input(
                        e.line,
                        format!(
                            "process {} invokes {} while its {} from line {} is still open",
                            e.process, e.f, ops[prev].f, ops[prev].invoke_line
                        ),
                    ));
                }
                open.insert(e.process, ops.len());
                ops.push(Operation {
                    id: ops.len(),
                    process: e.process,
                    f: e.f,
                    key: e.key.clone(),
                    value: e.value.clone(),
                    outcome: Outcome::Unknown,
                    invoke_time: e.time,
                    complete_time: None,
                    invoke_line: e.line,
                    complete_line: None,
                });
                continue;
            }
            let Some(i) = open.remove(&e.process) else {
                return Err(Error::input(
                    e.line,
                    format!(
                        "process {} completes ({}) an operation it never invoked",
                        e.process, e.kind
                    ),
                ));
            };
            let op = &mut ops[i];
            if op.f != e.f || op.key != e.key {
                return Err(Error::input(
                    e.line,
                    format!(
                        "process {} completes {} on key {:?}, but invoked {} on key {:?} at line {}",
                        e.process, e.f, e.key, op.f, op.key, op.invoke_line
                    ),
                ));
            }
            if e.time < op.invoke_time {
                return Err(Error::input(
                    e.line,
                    format!(
                        "completion time {} is before its invocation time {} (line {})",
                        e.time, op.invoke_time, op.invoke_line
                    ),
                ));
            }
            op.complete_line = Some(e.line);
            match e.kind {
                EventType::Ok => {
                    op.outcome = Outcome::Ok(e.value.clone());
                    op.complete_time = Some(e.time);
                }
                EventType::Fail => {
                    op.outcome = Outcome::Fail;
                    op.complete_time = Some(e.time);
                }
                EventType::Info => {}
                EventType::Invoke => unreachable!("handled above"),
            }
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(process: u64, kind: EventType, f: Function, value: Value, line: usize) -> Event {
        Event {
            process,
            kind,
            f,
            key: String::new(),
            value,
            time: line as u64,
            line,
        }
    }

    #[test]
    fn invocations_pair_with_the_next_completion_of_their_process() {
        let h = History {
            events: vec![
                ev(1, EventType::Invoke, Function::Write, Value::Int(1), 1),
                ev(2, EventType::Invoke, Function::Read, Value::Nil, 2),
                ev(2, EventType::Ok, Function::Read, Value::Int(1), 3),
                ev(1, EventType::Info, Function::Write, Value::Int(1), 4),
                ev(2, EventType::Invoke, Function::Cas, Value::Nil, 5),
            ],
        };
        let ops = h.operations().unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!(ops[0].outcome, Outcome::Unknown);
        assert_eq!(ops[0].complete_time, None);
        assert_eq!(ops[0].complete_line, Some(4));
        assert_eq!(ops[1].outcome, Outcome::Ok(Value::Int(1)));
        assert_eq!((ops[1].invoke_time, ops[1].complete_time), (2, Some(3)));
        assert_eq!(ops[2].complete_line, None);
        assert_eq!(
            ops[2].to_string(),
            "process 2 cas nil -> ? (line 5, never completed)"
        );
        assert_eq!(ops[1].to_string(), "process 2 read -> 1 (lines 2-3)");
    }

    #[test]
    fn completion_without_invocation_is_an_error_naming_its_line() {
        let h = History {
            events: vec![ev(1, EventType::Ok, Function::Read, Value::Nil, 7)],
        };
        let err = h.operations().unwrap_err();
        assert_eq!(err.line(), 7);
        assert!(err.to_string().contains("never invoked"), "{err}");
    }

    #[test]
    fn second_invocation_of_a_busy_process_is_an_error() {
        let h = History {
            events: vec![
                ev(1, EventType::Invoke, Function::Read, Value::Nil, 1),
                ev(1, EventType::Invoke, Function::Read, Value::Nil, 2),
            ],
        };
        assert_eq!(h.operations().unwrap_err().line(), 2);
    }

    #[test]
    fn completion_of_another_function_is_an_error() {
        let h = History {
            events: vec![
                ev(1, EventType::Invoke, Function::Read, Value::Nil, 1),
                ev(1, EventType::Ok, Function::Write, Value::Int(1), 2),
            ],
        };
        assert_eq!(h.operations().unwrap_err().line(), 2);
    }
}
