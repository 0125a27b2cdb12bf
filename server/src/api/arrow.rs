//! Query results as an Arrow IPC stream (`QueryArrow`): the one conversion
//! from the query engine's rows ([`Cell`]s) to Arrow record batches.
//!
//! Column types: bool → Boolean, int → Int64, float → Float64, text →
//! Utf8, timestamp → Timestamp(µs, "UTC"). A column of any type (a
//! reading's `value`) becomes two: `NAME` as Float64 (numbers, booleans as
//! 0 and 1) and `NAME_text` as Utf8 (text values); each row fills the one
//! its value belongs in, the other is null. A cell that does not fit its
//! column's type (which the engine does not produce) is null.
//!
//! Depends on the query engine's cell types and the arrow crates only.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use bifrost_query::{Cell, Column, ColumnType};

/// Rows per record batch (and per message).
pub const BATCH_ROWS: usize = 16_384;

/// The end-of-stream marker of the Arrow IPC stream format.
pub const END_OF_STREAM: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// Encodes rows of a query's columns as the record batches of one IPC
/// stream; the first bytes it returns carry the schema too.
pub struct ArrowEncoder {
    columns: Vec<ColumnType>,
    schema: SchemaRef,
    writer: StreamWriter<Vec<u8>>,
}

impl ArrowEncoder {
    pub fn new(columns: &[Column]) -> Result<ArrowEncoder, ArrowError> {
        let schema = Arc::new(schema(columns));
        let writer = StreamWriter::try_new(Vec::new(), &schema)?;
        Ok(ArrowEncoder {
            columns: columns.iter().map(|c| c.ty).collect(),
            schema,
            writer,
        })
    }

    /// `rows` as one record batch; the IPC bytes written since the last call.
    pub fn encode(&mut self, rows: &[Vec<Cell>]) -> Result<Vec<u8>, ArrowError> {
        let batch = RecordBatch::try_new(self.schema.clone(), self.arrays(rows))?;
        self.writer.write(&batch)?;
        Ok(std::mem::take(self.writer.get_mut()))
    }

    fn arrays(&self, rows: &[Vec<Cell>]) -> Vec<ArrayRef> {
        let mut arrays = Vec::with_capacity(self.schema.fields().len());
        for (i, ty) in self.columns.iter().enumerate() {
            let cells = rows.iter().map(|r| r.get(i).unwrap_or(&Cell::Null));
            match ty {
                ColumnType::Any => {
                    let (numbers, texts) = any_arrays(cells, rows.len());
                    arrays.push(numbers);
                    arrays.push(texts);
                }
                ty => arrays.push(typed_array(*ty, cells, rows.len())),
            }
        }
        arrays
    }
}

/// The Arrow schema of a query's columns.
pub fn schema(columns: &[Column]) -> Schema {
    let mut fields = Vec::with_capacity(columns.len());
    for c in columns {
        let ty = match c.ty {
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::Text => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Any => {
                fields.push(Field::new(&c.name, DataType::Float64, true));
                fields.push(Field::new(format!("{}_text", c.name), DataType::Utf8, true));
                continue;
            }
        };
        fields.push(Field::new(&c.name, ty, true));
    }
    Schema::new(fields)
}

fn typed_array<'a>(ty: ColumnType, cells: impl Iterator<Item = &'a Cell>, n: usize) -> ArrayRef {
    match ty {
        ColumnType::Bool => {
            let mut b = BooleanBuilder::with_capacity(n);
            cells.for_each(|c| b.append_option(as_bool(c)));
            Arc::new(b.finish())
        }
        ColumnType::Int => {
            let mut b = Int64Builder::with_capacity(n);
            cells.for_each(|c| b.append_option(as_int(c)));
            Arc::new(b.finish())
        }
        ColumnType::Float => {
            let mut b = Float64Builder::with_capacity(n);
            cells.for_each(|c| b.append_option(as_float(c)));
            Arc::new(b.finish())
        }
        ColumnType::Text => {
            let mut b = StringBuilder::with_capacity(n, n * 16);
            cells.for_each(|c| b.append_option(as_text(c)));
            Arc::new(b.finish())
        }
        ColumnType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            cells.for_each(|c| b.append_option(as_timestamp(c)));
            Arc::new(b.finish())
        }
        ColumnType::Any => any_arrays(cells, n).0,
    }
}

/// A column of any type as (numbers, texts).
fn any_arrays<'a>(cells: impl Iterator<Item = &'a Cell>, n: usize) -> (ArrayRef, ArrayRef) {
    let mut numbers = Float64Builder::with_capacity(n);
    let mut texts = StringBuilder::with_capacity(n, 0);
    for c in cells {
        match c {
            Cell::Text(t) => {
                numbers.append_null();
                texts.append_value(t);
            }
            other => {
                numbers.append_option(as_float(other));
                texts.append_null();
            }
        }
    }
    (Arc::new(numbers.finish()), Arc::new(texts.finish()))
}

fn as_bool(c: &Cell) -> Option<bool> {
    match c {
        Cell::Bool(b) => Some(*b),
        _ => None,
    }
}

fn as_int(c: &Cell) -> Option<i64> {
    match c {
        Cell::Int(i) => Some(*i),
        _ => None,
    }
}

fn as_float(c: &Cell) -> Option<f64> {
    match c {
        Cell::Float(f) => Some(*f),
        Cell::Int(i) => Some(*i as f64),
        Cell::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn as_text(c: &Cell) -> Option<&str> {
    match c {
        Cell::Text(t) => Some(t),
        _ => None,
    }
}

fn as_timestamp(c: &Cell) -> Option<i64> {
    match c {
        Cell::Timestamp(us) => Some(*us),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampMicrosecondType};
    use arrow_array::Array;
    use arrow_ipc::reader::StreamReader;

    fn col(name: &str, ty: ColumnType) -> Column {
        Column {
            name: name.into(),
            ty,
        }
    }

    #[test]
    fn rows_become_typed_batches_of_one_readable_ipc_stream() {
        let columns = [
            col("ts", ColumnType::Timestamp),
            col("tag", ColumnType::Text),
            col("value", ColumnType::Any),
            col("n", ColumnType::Int),
            col("ok", ColumnType::Bool),
        ];
        let mut e = ArrowEncoder::new(&columns).unwrap();
        let row = |ts, tag: &str, v: Cell, n| {
            vec![
                Cell::Timestamp(ts),
                Cell::Text(tag.into()),
                v,
                n,
                Cell::Bool(true),
            ]
        };
        let mut bytes = e
            .encode(&[
                row(1, "a", Cell::Float(1.5), Cell::Int(7)),
                row(2, "b", Cell::Text("open".into()), Cell::Null),
            ])
            .unwrap();
        bytes.extend(
            e.encode(&[row(3, "a", Cell::Bool(true), Cell::Int(-1))])
                .unwrap(),
        );
        bytes.extend(END_OF_STREAM);
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        let schema = reader.schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["ts", "tag", "value", "value_text", "n", "ok"]);
        assert_eq!(
            schema.field(0).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            [2, 1]
        );
        let first = &batches[0];
        let ts = first.column(0).as_primitive::<TimestampMicrosecondType>();
        assert_eq!((ts.value(0), ts.value(1)), (1, 2));
        let value = first.column(2).as_primitive::<Float64Type>();
        assert_eq!(value.value(0), 1.5);
        assert!(value.is_null(1), "a text value is not a number");
        assert_eq!(first.column(3).as_string::<i32>().value(1), "open");
        let n = first.column(4).as_primitive::<Int64Type>();
        assert_eq!(n.value(0), 7);
        assert!(n.is_null(1));
        let bools = batches[1].column(2).as_primitive::<Float64Type>();
        assert_eq!(bools.value(0), 1.0, "a boolean value is 1");
    }

    #[test]
    fn no_rows_is_a_stream_with_a_schema_and_an_empty_batch() {
        let mut e = ArrowEncoder::new(&[col("name", ColumnType::Text)]).unwrap();
        let mut bytes = e.encode(&[]).unwrap();
        bytes.extend(END_OF_STREAM);
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        assert_eq!(reader.schema().fields().len(), 1);
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 0);
    }
}
