//! The value column. A tag's type may change while its history is kept, and
//! Bad readings may have no value, so one chunk can mix `Value` variants:
//! the column is first the variant of each reading as runs (none, bool, int,
//! float, text — one run for a tag that never changed type), then one
//! length-prefixed sub-column per variant present: booleans as runs,
//! integers by [`crate::ints`], floats by [`crate::floats`], text by
//! dictionary ([`crate::strings`]).

use bifrost_model::Value;

use crate::floats::{put_floats, read_floats};
use crate::ints::{put_ints, read_ints};
use crate::runs::{put_runs, read_runs};
use crate::strings::{put_dictionary, read_dictionary};
use crate::wire::{put_section, Reader, Result};

const NONE: u32 = 0;
const BOOL: u32 = 1;
const INT: u32 = 2;
const FLOAT: u32 = 3;
const TEXT: u32 = 4;
const VARIANTS: u32 = 5;

fn variant(v: Option<&Value>) -> u32 {
    match v {
        None => NONE,
        Some(Value::Bool(_)) => BOOL,
        Some(Value::Int(_)) => INT,
        Some(Value::Float(_)) => FLOAT,
        Some(Value::Text(_)) => TEXT,
    }
}

/// The values of one variant, in order.
#[derive(Default)]
struct Split<'a> {
    bools: Vec<u32>,
    ints: Vec<i64>,
    floats: Vec<f64>,
    texts: Vec<&'a str>,
}

fn split<'a>(values: &[Option<&'a Value>]) -> Split<'a> {
    let mut s = Split::default();
    for v in values.iter().flatten() {
        match v {
            Value::Bool(b) => s.bools.push(*b as u32),
            Value::Int(i) => s.ints.push(*i),
            Value::Float(f) => s.floats.push(*f),
            Value::Text(t) => s.texts.push(t),
        }
    }
    s
}

/// Appends the value column.
pub(crate) fn put_values(out: &mut Vec<u8>, values: &[Option<&Value>]) {
    put_runs(out, values.iter().map(|v| variant(*v)));
    let s = split(values);
    if !s.bools.is_empty() {
        put_section(out, |o| put_runs(o, s.bools));
    }
    if !s.ints.is_empty() {
        put_section(out, |o| put_ints(o, &s.ints));
    }
    if !s.floats.is_empty() {
        put_section(out, |o| put_floats(o, &s.floats));
    }
    if !s.texts.is_empty() {
        put_section(out, |o| put_dictionary(o, s.texts));
    }
}

/// Reads a value column of `n` readings.
pub(crate) fn read_values(r: &mut Reader, n: usize) -> Result<Vec<Option<Value>>> {
    let variants = read_runs(r, n, VARIANTS)?;
    let count = |v: u32| variants.iter().filter(|&&x| x == v).count();
    let bools = sub(r, "values.bool", count(BOOL), |r, n| read_runs(r, n, 2))?;
    let ints = sub(r, "values.int", count(INT), read_ints)?;
    let floats = sub(r, "values.float", count(FLOAT), read_floats)?;
    let texts = sub(r, "values.text", count(TEXT), read_dictionary)?;
    let (mut b, mut i, mut f) = (bools.into_iter(), ints.into_iter(), floats.into_iter());
    let mut t = texts.into_iter();
    // Each iterator holds exactly as many values as the variant column asks
    // of it, so none runs dry.
    Ok(variants
        .into_iter()
        .map(|v| match v {
            BOOL => b.next().map(|x| Value::Bool(x == 1)),
            INT => i.next().map(Value::Int),
            FLOAT => f.next().map(Value::Float),
            TEXT => t.next().map(Value::Text),
            _ => None,
        })
        .collect())
}

/// Reads the sub-column `name` of `n` values, if there are any.
fn sub<'a, T>(
    r: &mut Reader<'a>,
    name: &'static str,
    n: usize,
    read: impl FnOnce(&mut Reader<'a>, usize) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    match n {
        0 => Ok(Vec::new()),
        _ => r.read_section(name, n, read),
    }
}
