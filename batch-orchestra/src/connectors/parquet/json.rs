//! Arrow record batches as JSON objects, one a row: the records of the Parquet sources.

use serde_json::Value;

/// A record batch as JSON objects, one a row, as Arrow's JSON writer writes them (a null is
/// left out of its row): columns of booleans, integers, 64-bit floats and strings are turned
/// into JSON directly, and a batch with any other column type goes through the JSON writer.
pub(super) fn to_json_rows(
    batch: &arrow_array::RecordBatch,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        match column_values(array.as_ref()) {
            Some(values) => columns.push((field.name(), values)),
            None => return to_json_rows_by_writer(batch),
        }
    }
    let mut rows: Vec<serde_json::Map<String, Value>> = (0..batch.num_rows())
        .map(|_| serde_json::Map::with_capacity(columns.len()))
        .collect();
    for (name, values) in columns {
        for (row, value) in rows.iter_mut().zip(values) {
            if !value.is_null() {
                row.insert(name.clone(), value);
            }
        }
    }
    Ok(rows.into_iter().map(Value::Object).collect())
}

/// The values of a column of a simple type, `Value::Null` for nulls; `None` for other types.
fn column_values(array: &dyn arrow_array::Array) -> Option<Vec<Value>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    use arrow_schema::DataType as T;
    fn collect<I: Iterator<Item = Option<Value>>>(values: I) -> Vec<Value> {
        values.map(|v| v.unwrap_or(Value::Null)).collect()
    }
    macro_rules! numbers {
        ($ty:ty) => {
            collect(
                array
                    .as_primitive::<$ty>()
                    .iter()
                    .map(|v| v.map(Value::from)),
            )
        };
    }
    Some(match array.data_type() {
        T::Null => vec![Value::Null; array.len()],
        T::Boolean => collect(array.as_boolean().iter().map(|v| v.map(Value::Bool))),
        T::Int8 => numbers!(Int8Type),
        T::Int16 => numbers!(Int16Type),
        T::Int32 => numbers!(Int32Type),
        T::Int64 => numbers!(Int64Type),
        T::UInt8 => numbers!(UInt8Type),
        T::UInt16 => numbers!(UInt16Type),
        T::UInt32 => numbers!(UInt32Type),
        T::UInt64 => numbers!(UInt64Type),
        T::Float64 => collect(array.as_primitive::<Float64Type>().iter().map(|v| {
            v.map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number))
        })),
        T::Utf8 => collect(array.as_string::<i32>().iter().map(|v| v.map(Value::from))),
        T::LargeUtf8 => collect(array.as_string::<i64>().iter().map(|v| v.map(Value::from))),
        T::Utf8View => collect(array.as_string_view().iter().map(|v| v.map(Value::from))),
        _ => return None,
    })
}

/// Any record batch through Arrow's JSON writer: dates, timestamps, decimals, lists, structs.
fn to_json_rows_by_writer(
    batch: &arrow_array::RecordBatch,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let mut bytes = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut bytes);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    let mut rows = Vec::with_capacity(batch.num_rows());
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        rows.push(serde_json::from_slice(line)?);
    }
    // A row whose columns are all null is written as `{}`; it is still a row.
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray};
    use std::sync::Arc;

    #[test]
    fn simple_columns_become_the_rows_the_json_writer_makes() {
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int32Array::from(vec![Some(1), None, Some(-3)])) as ArrayRef,
            ),
            (
                "score",
                Arc::new(Float64Array::from(vec![Some(0.125), Some(2.0), None])) as ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("a \"q\"\n"), None, Some("✓")])) as ArrayRef,
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(vec![None, Some(true), Some(false)])) as ArrayRef,
            ),
        ])
        .unwrap();
        let fast = to_json_rows(&batch).unwrap();
        assert_eq!(fast, to_json_rows_by_writer(&batch).unwrap());
        assert_eq!(
            fast[1],
            serde_json::json!({"score": 2.0, "ok": true}),
            "nulls are left out"
        );
    }
}
