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

use super::growing::{self, FileWindow};
use crate::connector::{Bounds, Window};
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
///
/// Read incrementally (an incremental job, [`BatchProcessingRequest::incremental`]), a file
/// that only grows is read from where the last run ended; see [`growing`].
///
/// [`BatchProcessingRequest::incremental`]: crate::batch::BatchProcessingRequest::incremental
#[crate::batch_source(
    name = "csv-file",
    reader = CsvReader<LocalFile>,
    shards = list,
    incremental = since_last_run
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvFile {
    /// The file's path on the worker.
    pub path: String,
    /// Parsing options.
    #[serde(default)]
    pub options: CsvOptions,
    /// An incremental run's window, pinned by the run: `None` reads the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<FileWindow>,
}

impl CsvFile {
    /// The file at `path`, comma-separated, with a header.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            options: CsvOptions::default(),
            window: None,
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
            window: None,
        })
        .await
    }

    /// Pins an incremental run's window: from the last run's end, when the file only grew
    /// since, to the end of its last complete record.
    async fn since_last_run(&self, bounds: Bounds) -> Result<Window<Self>, ConnectorError> {
        self.options.delimiter_byte(&self.path)?;
        let file = LocalFile::open(&self.path).await?;
        let (start, to) = growing::bounds_in(&file, &bounds).await?;
        let reader = CsvReader::open(file, &self.options).await?;
        let start = start.unwrap_or(reader.data_start).max(reader.data_start);
        let end = match to {
            Some(to) => to,
            // A header still being written: nothing to read yet.
            None if self.options.has_header && reader.header().is_none() => {
                LineOffset { byte: 0, line: 1 }
            }
            None => reader.complete_end(start).await?,
        };
        let start = start.min(end);
        let (window, next) = growing::window_of(&reader.input, start, end).await?;
        Ok(Window {
            source: Self {
                window: Some(window),
                ..self.clone()
            },
            next,
        })
    }

    async fn build_source(&self) -> Result<CsvReader<LocalFile>, ConnectorError> {
        // Bad options fail before the file is touched.
        self.options.delimiter_byte(&self.path)?;
        match &self.window {
            None => CsvReader::open(LocalFile::open(&self.path).await?, &self.options).await,
            Some(w) => {
                let file = LocalFile::open_prefix(&self.path, w.end.byte, &w.check).await?;
                let reader = CsvReader::open(file, &self.options).await?;
                Ok(reader.starting_at(w.start))
            }
        }
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
