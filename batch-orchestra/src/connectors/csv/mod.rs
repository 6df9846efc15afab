//! CSV sources: a local file ([`CsvFile`]) or an object in a store
//! ([`CsvObject`](crate::connectors::object_store::CsvObject), feature `object-store`), with
//! one parser for both.
//!
//! Offsets are byte offsets (with the line number, for messages). Planning scans record
//! boundaries with `csv_core` from a recorded boundary, so quoted fields with commas and
//! newlines are always split correctly; reading parses the same bytes with the same engine, so
//! a batch holds exactly the records its plan counted. The header is read once, when the
//! source is built, and never counted as a record.

mod options;
mod reader;
mod row;
mod scanner;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use super::input::{ByteInput, LineOffset, LocalFile};
pub use options::{CsvOptions, RaggedRows};
pub use reader::CsvReader;
pub use row::CsvRow;

use crate::error::ConnectorError;

/// A resumable position in a CSV file: the byte where a record starts, and its line (from 1).
pub type CsvOffset = LineOffset;

/// A CSV file on the worker's file system; for a sharded job, every file matching a glob
/// (`exports/**/*.csv`: `*` stays within a directory, `**` crosses them).
///
/// ```
/// use batch_orchestra::connectors::csv::CsvFile;
///
/// let source = CsvFile::new("data/people.csv").delimiter(';');
/// assert_eq!(source.options.delimiter, ';');
/// ```
#[crate::batch_source(name = "csv-file", reader = CsvReader<LocalFile>, shards = list)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvFile {
    /// The file's path on the worker.
    pub path: String,
    /// Parsing options.
    #[serde(default)]
    pub options: CsvOptions,
}

impl CsvFile {
    /// The file at `path`, comma-separated, with a header.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            options: CsvOptions::default(),
        }
    }

    /// Sets the delimiter.
    pub fn delimiter(mut self, delimiter: char) -> Self {
        self.options.delimiter = delimiter;
        self
    }

    /// Sets whether the first record is a header.
    pub fn has_header(mut self, has_header: bool) -> Self {
        self.options.has_header = has_header;
        self
    }

    /// Sets what to do with ragged rows.
    pub fn ragged(mut self, ragged: RaggedRows) -> Self {
        self.options.ragged = ragged;
        self
    }

    /// Lists the files `path` matches, for a sharded job.
    async fn list(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<crate::connector::ShardPage<Self>, ConnectorError> {
        crate::connector::listing::list_files(&self.path, after, limit, |path| Self {
            path,
            options: self.options.clone(),
        })
        .await
    }

    async fn build_source(&self) -> Result<CsvReader<LocalFile>, ConnectorError> {
        // Bad options fail before the file is touched.
        self.options.delimiter_byte(&self.path)?;
        CsvReader::open(LocalFile::open(&self.path).await?, &self.options).await
    }
}

/// "1 record", "3 records".
fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
