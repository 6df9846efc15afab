//! Parsing options: the delimiter, and what a ragged row is.

use serde::{Deserialize, Serialize};

use crate::error::ConnectorError;

/// What to do with a row whose field count differs from the header's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RaggedRows {
    /// Report it as a record error (the default).
    #[default]
    Error,
    /// Accept it as it is: missing fields are absent, extra fields are named `column<N>`.
    Accept,
}

/// Parsing options shared by the CSV sources. Each key is optional in a config or job file
/// (`[source.options]` with only `delimiter = ";"` keeps the other defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsvOptions {
    /// The field delimiter (an ASCII character), `,` by default.
    pub delimiter: char,
    /// Whether the first record is a header, `true` by default.
    pub has_header: bool,
    /// What to do with ragged rows.
    pub ragged: RaggedRows,
}

impl CsvOptions {
    /// The delimiter as a byte, or a configuration error naming `input`: it must be ASCII, and
    /// neither a line break nor the quote (either would silently change what a record is).
    pub(crate) fn delimiter_byte(&self, input: &str) -> Result<u8, ConnectorError> {
        let delimiter = self.delimiter;
        if !delimiter.is_ascii() {
            return Err(ConnectorError::config(format!(
                "CSV `{input}`: the delimiter `{delimiter}` is not an ASCII character; use ',' ';' '\\t' or '|'"
            )));
        }
        if matches!(delimiter, '\n' | '\r' | '"') {
            return Err(ConnectorError::config(format!(
                "CSV `{input}`: the delimiter cannot be a line break or a quote (got {delimiter:?}); use ',' ';' '\\t' or '|'"
            )));
        }
        Ok(delimiter as u8)
    }
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: ',',
            has_header: true,
            ragged: RaggedRows::Error,
        }
    }
}
