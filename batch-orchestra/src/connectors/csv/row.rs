//! A CSV row: the header's names with the row's values.

use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

use super::plural;
use crate::error::TransformError;

/// A CSV record: its values, with the header's column names.
#[derive(Clone, PartialEq)]
pub struct CsvRow {
    pub(super) header: Option<Arc<csv::StringRecord>>,
    pub(super) values: csv::StringRecord,
}

impl CsvRow {
    /// A row with these column names and values, as the source would read it: for testing
    /// transforms.
    ///
    /// ```
    /// use batch_orchestra::connectors::csv::CsvRow;
    ///
    /// let row = CsvRow::new(vec!["id".into(), "name".into()], vec!["7".into(), "Ada".into()]);
    /// assert_eq!(row.get("name"), Some("Ada"));
    /// ```
    pub fn new(header: Vec<String>, values: Vec<String>) -> Self {
        Self {
            header: Some(Arc::new(csv::StringRecord::from(header))),
            values: csv::StringRecord::from(values),
        }
    }

    /// The value of column `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let index = self.header.as_ref()?.iter().position(|h| h == name)?;
        self.values.get(index)
    }

    /// The values, in file order.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.values.iter()
    }

    /// `(column, value)` pairs in file order; columns without a header name are `column<N>`
    /// (from 1).
    pub fn iter(&self) -> impl Iterator<Item = (std::borrow::Cow<'_, str>, &str)> {
        self.values.iter().enumerate().map(|(i, value)| {
            let name = match self.header.as_ref().and_then(|h| h.get(i)) {
                Some(name) => std::borrow::Cow::Borrowed(name),
                None => std::borrow::Cow::Owned(format!("column{}", i + 1)),
            };
            (name, value)
        })
    }

    /// Deserializes the row into `T` by column name (by position without a header), with
    /// serde: numbers, booleans and options are parsed from the text.
    ///
    /// An error names the column and its field number (from 1), never the value, which must
    /// not reach workflow history: "column `age` (field 3): invalid digit found in string
    /// (expected an integer)".
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, TransformError> {
        self.values
            .deserialize(self.header.as_deref())
            .map_err(|e| TransformError::new(self.deserialize_message(&e)))
    }

    /// The message for a failed [`CsvRow::deserialize`]: the column, then what is wrong.
    fn deserialize_message(&self, error: &csv::Error) -> String {
        use csv::DeserializeErrorKind as Kind;
        let csv::ErrorKind::Deserialize { err, .. } = error.kind() else {
            return crate::error::redact_values(&error.to_string());
        };
        let what = match err.kind() {
            Kind::Message(message) => crate::error::redact_values(message),
            Kind::Unsupported(method) => {
                format!("this type cannot be read from a CSV field ({method})")
            }
            Kind::UnexpectedEndOfRow => {
                return format!(
                    "the row has {}, fewer than the type reads",
                    plural(self.values.len() as u64, "field")
                );
            }
            Kind::InvalidUtf8(_) => "invalid UTF-8".to_owned(),
            Kind::ParseBool(e) => e.to_string(),
            Kind::ParseInt(e) => format!("{e} (expected an integer)"),
            Kind::ParseFloat(e) => format!("{e} (expected a number)"),
        };
        let Some(index) = err.field() else {
            return what;
        };
        let field = index + 1;
        match &self.header {
            Some(header) => match header.get(index as usize) {
                Some(name) => format!("column `{name}` (field {field}): {what}"),
                None => format!("column `column{field}` (field {field}): {what}"),
            },
            None => format!("field {field}: {what}"),
        }
    }
}

impl fmt::Debug for CsvRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for CsvRow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}
