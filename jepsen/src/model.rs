//! Sequential specifications: what one object does when operations on it
//! happen one at a time.
//!
//! The checker asks a model one question, over and over: "in this state, can
//! this operation take effect, and if so what is the state after it?"
//! ([`Model::step`]). A model describes *one* object (one register, one key
//! of a map); the checker splits a multi-key history per key and gives every
//! key its own copy of the initial state. That split is sound because
//! linearizability is compositional: a history is linearizable iff each
//! object's sub-history is (Herlihy & Wing's locality, the
//! "P-compositionality" of Horn & Kroening).
//!
//! Operations with an unknown outcome (`info`, or never completed) reach
//! `step` with [`Outcome::Unknown`]: the model must allow whatever the
//! operation could have done. A model may answer [`Step::Illegal`] when the
//! operation would change nothing at this point (a compare-and-set whose
//! comparison fails): an unknown operation need not be linearized at all, so
//! placing it as a no-op never helps, and refusing it prunes the search.

use std::fmt;
use std::hash::Hash;

use crate::history::{Function, Operation, Outcome, Value};

/// What happens when an operation takes effect in a state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<S> {
    /// It cannot take effect here: the result it reported is impossible in
    /// this state (or, for an unknown outcome, it would be a no-op).
    Illegal,
    /// It takes effect and leaves the state as it was (a read).
    Unchanged,
    /// It takes effect and the state becomes this.
    To(S),
}

/// A sequential specification of one object.
pub trait Model {
    /// The object's state. Cloned and hashed often: keep it small.
    type State: Clone + Eq + Hash + fmt::Display;

    /// The name used in messages (`register`, `kv`).
    fn name(&self) -> &'static str;

    /// The state of an object no one has touched yet.
    fn init(&self) -> Self::State;

    /// Whether the model has this operation.
    fn supports(&self, f: Function) -> bool;

    /// Checks an operation's argument and result have the shape the model
    /// needs (a compare-and-set carries `[old new]`), so that `step` never
    /// has to report bad input.
    fn validate(&self, op: &Operation) -> Result<(), String>;

    /// Applies `op` (whose outcome is `Ok` or `Unknown`; failed operations
    /// never get here) to `state`.
    fn step(&self, state: &Self::State, op: &Operation) -> Step<Self::State>;
}

/// Which model to check a history against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    Register,
    Kv,
}

impl ModelKind {
    /// The one model that has every function in `fs`, if there is one.
    pub fn for_functions(fs: impl IntoIterator<Item = Function>) -> Option<ModelKind> {
        let (mut register, mut kv) = (true, true);
        for f in fs {
            register &= Register.supports(f);
            kv &= KvMap.supports(f);
        }
        match (register, kv) {
            (true, false) => Some(ModelKind::Register),
            (false, true) => Some(ModelKind::Kv),
            // An empty history: any model will do.
            (true, true) => Some(ModelKind::Register),
            (false, false) => None,
        }
    }
}

/// A register holding any [`Value`], initially `nil`, with `read`, `write`
/// and `cas` (`[old new]`: if the value is `old`, set it to `new`; an `ok`
/// completion means the comparison succeeded).
///
/// A `cas` whose comparison failed should be recorded as `fail`: it did not
/// take effect, and the checker drops it (Jepsen's and Knossos's reading).
/// That ignores what the failure observed ("the value was not `old`"),
/// which is sound but can miss a violation that only that observation
/// reveals.
#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

fn cas_args(v: &Value) -> Option<(&Value, &Value)> {
    match v {
        Value::List(items) if items.len() == 2 => Some((&items[0], &items[1])),
        _ => None,
    }
}

impl Model for Register {
    type State = Value;

    fn name(&self) -> &'static str {
        "register"
    }

    fn init(&self) -> Value {
        Value::Nil
    }

    fn supports(&self, f: Function) -> bool {
        matches!(f, Function::Read | Function::Write | Function::Cas)
    }

    fn validate(&self, op: &Operation) -> Result<(), String> {
        if op.f == Function::Cas && cas_args(&op.value).is_none() {
            return Err(format!("cas needs a value [old new], got {}", op.value));
        }
        Ok(())
    }

    fn step(&self, state: &Value, op: &Operation) -> Step<Value> {
        match (op.f, &op.outcome) {
            (Function::Read, Outcome::Ok(read)) if read == state => Step::Unchanged,
            (Function::Write, Outcome::Ok(_) | Outcome::Unknown) => Step::To(op.value.clone()),
            (Function::Cas, Outcome::Ok(_) | Outcome::Unknown) => match cas_args(&op.value) {
                Some((old, new)) if old == state => Step::To(new.clone()),
                _ => Step::Illegal,
            },
            _ => Step::Illegal,
        }
    }
}

/// One key of a string map, initially `""`, with `get`, `put` and `append`
/// (string concatenation). A `get` that returns `nil` is read as `""`: a
/// store may answer "no such key" for a key never written.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvMap;

/// A key's value in [`KvMap`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvState(pub String);

impl fmt::Display for KvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl Model for KvMap {
    type State = KvState;

    fn name(&self) -> &'static str {
        "kv"
    }

    fn init(&self) -> KvState {
        KvState(String::new())
    }

    fn supports(&self, f: Function) -> bool {
        matches!(f, Function::Get | Function::Put | Function::Append)
    }

    fn validate(&self, op: &Operation) -> Result<(), String> {
        match (op.f, &op.value, &op.outcome) {
            (Function::Put | Function::Append, Value::Str(_), _) => Ok(()),
            (Function::Put | Function::Append, v, _) => {
                Err(format!("{} needs a string value, got {v}", op.f))
            }
            (Function::Get, _, Outcome::Ok(Value::Str(_) | Value::Nil)) => Ok(()),
            (Function::Get, _, Outcome::Ok(v)) => {
                Err(format!("get must return a string or nil, got {v}"))
            }
            _ => Ok(()),
        }
    }

    fn step(&self, state: &KvState, op: &Operation) -> Step<KvState> {
        let arg = match &op.value {
            Value::Str(s) => s.as_str(),
            _ => "",
        };
        match (op.f, &op.outcome) {
            (Function::Get, Outcome::Ok(Value::Str(s))) if *s == state.0 => Step::Unchanged,
            (Function::Get, Outcome::Ok(Value::Nil)) if state.0.is_empty() => Step::Unchanged,
            (Function::Put, Outcome::Ok(_) | Outcome::Unknown) => Step::To(KvState(arg.into())),
            (Function::Append, Outcome::Ok(_) | Outcome::Unknown) => {
                Step::To(KvState(format!("{}{arg}", state.0)))
            }
            _ => Step::Illegal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(f: Function, value: Value, outcome: Outcome) -> Operation {
        Operation {
            id: 0,
            process: 0,
            f,
            key: String::new(),
            value,
            outcome,
            invoke_time: 0,
            complete_time: None,
            invoke_line: 1,
            complete_line: None,
        }
    }

    fn cas(old: i64, new: i64, outcome: Outcome) -> Operation {
        op(
            Function::Cas,
            Value::List(vec![Value::Int(old), Value::Int(new)]),
            outcome,
        )
    }

    #[test]
    fn register_read_must_return_the_current_value() {
        let read1 = op(Function::Read, Value::Nil, Outcome::Ok(Value::Int(1)));
        assert_eq!(Register.step(&Value::Int(1), &read1), Step::Unchanged);
        assert_eq!(Register.step(&Value::Nil, &read1), Step::Illegal);
    }

    #[test]
    fn register_cas_applies_only_when_the_old_value_matches() {
        let ok = cas(1, 2, Outcome::Ok(Value::Nil));
        assert_eq!(Register.step(&Value::Int(1), &ok), Step::To(Value::Int(2)));
        assert_eq!(Register.step(&Value::Int(3), &ok), Step::Illegal);
        // Unknown and not matching: a no-op, which the model refuses.
        let unknown = cas(1, 2, Outcome::Unknown);
        assert_eq!(Register.step(&Value::Int(3), &unknown), Step::Illegal);
        assert_eq!(
            Register.step(&Value::Int(1), &unknown),
            Step::To(Value::Int(2))
        );
    }

    #[test]
    fn register_rejects_a_cas_without_two_values() {
        assert!(Register
            .validate(&op(Function::Cas, Value::Int(1), Outcome::Unknown))
            .is_err());
    }

    #[test]
    fn kv_append_concatenates_and_get_of_nil_means_empty() {
        let s = KvState("a".into());
        let append = op(Function::Append, Value::Str("b".into()), Outcome::Unknown);
        assert_eq!(KvMap.step(&s, &append), Step::To(KvState("ab".into())));
        let get_nil = op(Function::Get, Value::Nil, Outcome::Ok(Value::Nil));
        assert_eq!(KvMap.step(&KvMap.init(), &get_nil), Step::Unchanged);
        assert_eq!(KvMap.step(&s, &get_nil), Step::Illegal);
    }

    #[test]
    fn model_is_chosen_by_the_functions_used() {
        use Function::*;
        assert_eq!(
            ModelKind::for_functions([Read, Cas]),
            Some(ModelKind::Register)
        );
        assert_eq!(ModelKind::for_functions([Get, Append]), Some(ModelKind::Kv));
        assert_eq!(ModelKind::for_functions([Get, Write]), None);
    }
}
