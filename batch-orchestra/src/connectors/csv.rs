//! CSV sources: a local file ([`CsvFile`]) or an object in a store ([`CsvObject`], feature
//! `object-store`), with one parser for both.
//!
//! Offsets are byte offsets (with the line number, for messages). Planning scans record
//! boundaries with `csv_core` from a recorded boundary, so quoted fields with commas and
//! newlines are always split correctly; reading parses the same bytes with the same engine, so
//! a batch holds exactly the records its plan counted. The header is read once, when the
//! source is built, and never counted as a record.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::connector::{BatchRange, Plan, PlannedBatch, Position, Positioned, ReadBatch, Source};
use crate::error::{ConnectorError, RecordError, TransformError};

/// Bytes read per call while planning.
const PLAN_CHUNK: u64 = 1 << 20;

/// A resumable position in a CSV file: the byte where a record starts, and its line (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CsvOffset {
    /// Byte offset of the record.
    pub byte: u64,
    /// Line of the record, from 1.
    pub line: u64,
}

/// What to do with a row whose field count differs from the header's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RaggedRows {
    /// Report it as a record error (the default).
    #[default]
    Error,
    /// Accept it as it is: missing fields are absent, extra fields are named `column<N>`.
    Accept,
}

/// Parsing options shared by the CSV sources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvOptions {
    /// The field delimiter (an ASCII character), `,` by default.
    pub delimiter: char,
    /// Whether the first record is a header, `true` by default.
    pub has_header: bool,
    /// What to do with ragged rows.
    pub ragged: RaggedRows,
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

/// A CSV record: its values, with the header's column names.
#[derive(Clone, PartialEq)]
pub struct CsvRow {
    header: Option<Arc<csv::StringRecord>>,
    values: csv::StringRecord,
}

impl CsvRow {
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
    pub fn deserialize<T: serde::de::DeserializeOwned>(&self) -> Result<T, TransformError> {
        self.values
            .deserialize(self.header.as_deref())
            .map_err(|e| TransformError::new(e.to_string()))
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

/// Random access to the bytes of a CSV input.
pub trait ByteInput: Send + Sync + 'static {
    /// The input's name for messages: a path or a URL.
    fn name(&self) -> &str;
    /// Its length in bytes.
    fn len(&self) -> u64;
    /// Whether it has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes in `[start, end)`.
    fn read(
        &self,
        start: u64,
        end: u64,
    ) -> impl Future<Output = Result<Vec<u8>, ConnectorError>> + Send;
}

/// A built CSV source over any [`ByteInput`].
pub struct CsvReader<B> {
    input: B,
    header: Option<Arc<csv::StringRecord>>,
    data_start: CsvOffset,
    delimiter: u8,
    ragged: RaggedRows,
}

/// The `csv_core` reader and its buffers; yields one record at a time.
struct Scanner {
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    out_len: usize,
    ends_len: usize,
}

enum Step {
    /// All input consumed; feed more (or an empty slice at the end).
    NeedInput,
    /// A record ended after `consumed` bytes of this input.
    Record,
    /// No more records.
    End,
}

impl Scanner {
    fn new(delimiter: u8) -> Self {
        let core = csv_core::ReaderBuilder::new().delimiter(delimiter).build();
        Self {
            core,
            out: vec![0; 4096],
            ends: vec![0; 64],
            out_len: 0,
            ends_len: 0,
        }
    }

    /// Consumes input up to the end of a record or of `input`; returns the step and the
    /// bytes consumed.
    fn step(&mut self, mut input: &[u8]) -> (Step, usize) {
        let mut consumed = 0;
        loop {
            let (result, nin, nout, nend) = self.core.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            consumed += nin;
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => return (Step::NeedInput, consumed),
                csv_core::ReadRecordResult::OutputFull => self.out.resize(self.out.len() * 2, 0),
                csv_core::ReadRecordResult::OutputEndsFull => {
                    self.ends.resize(self.ends.len() * 2, 0)
                }
                csv_core::ReadRecordResult::Record => return (Step::Record, consumed),
                csv_core::ReadRecordResult::End => return (Step::End, consumed),
            }
        }
    }

    /// The last record's fields, and clears them for the next record.
    fn take(&mut self) -> csv::ByteRecord {
        let mut record = csv::ByteRecord::with_capacity(self.out_len, self.ends_len);
        let mut start = 0;
        for &end in &self.ends[..self.ends_len] {
            record.push_field(&self.out[start..end]);
            start = end;
        }
        self.out_len = 0;
        self.ends_len = 0;
        record
    }

    fn clear(&mut self) {
        self.out_len = 0;
        self.ends_len = 0;
    }
}

/// Tracks byte and line while records are consumed, and where each record's content starts
/// (past blank lines and terminators left over from the previous record).
struct Cursor {
    next: CsvOffset,
    record_start: Option<CsvOffset>,
}

impl Cursor {
    fn new(at: CsvOffset) -> Self {
        Self {
            next: at,
            record_start: None,
        }
    }

    fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.record_start.is_none() && b != b'\r' && b != b'\n' {
                self.record_start = Some(self.next);
            }
            self.next.byte += 1;
            if b == b'\n' {
                self.next.line += 1;
            }
        }
    }

    /// The start of the record that just ended.
    fn finish_record(&mut self) -> CsvOffset {
        self.record_start.take().unwrap_or(self.next)
    }
}

/// A record as `scan_all` hands it over.
struct Scanned<'a> {
    start: CsvOffset,
    raw: &'a [u8],
    /// The record ended because the input did, not at a line terminator.
    ended_by_eof: bool,
    fields: csv::ByteRecord,
}

/// Calls `on_record` for each record in `bytes` (which end at a record boundary or at the end
/// of the input).
fn scan_all(
    scanner: &mut Scanner,
    at: CsvOffset,
    bytes: &[u8],
    mut on_record: impl FnMut(Scanned<'_>),
) {
    let mut cursor = Cursor::new(at);
    let mut rest = bytes;
    let mut eof = false;
    loop {
        let fed_eof = rest.is_empty();
        let (step, n) = scanner.step(rest);
        cursor.advance(&rest[..n]);
        rest = &rest[n..];
        match step {
            Step::Record => {
                let start = cursor.finish_record();
                let raw =
                    &bytes[(start.byte - at.byte) as usize..(cursor.next.byte - at.byte) as usize];
                on_record(Scanned {
                    start,
                    raw,
                    ended_by_eof: fed_eof,
                    fields: scanner.take(),
                });
            }
            Step::NeedInput if !eof => eof = rest.is_empty(),
            Step::NeedInput | Step::End => return,
        }
    }
}

impl<B: ByteInput> CsvReader<B> {
    /// Opens the input: skips a UTF-8 byte-order mark and reads the header.
    pub(crate) async fn open(input: B, options: &CsvOptions) -> Result<Self, ConnectorError> {
        if !options.delimiter.is_ascii() {
            return Err(ConnectorError::config(format!(
                "{}: the delimiter `{}` is not an ASCII character",
                input.name(),
                options.delimiter
            )));
        }
        let delimiter = options.delimiter as u8;
        let head = input.read(0, input.len().min(3)).await?;
        let bom = if head.starts_with(b"\xEF\xBB\xBF") {
            3
        } else {
            0
        };
        let mut data_start = CsvOffset { byte: bom, line: 1 };
        let mut header = None;
        if options.has_header {
            let mut scanner = Scanner::new(delimiter);
            let mut cursor = Cursor::new(data_start);
            let mut at = bom;
            loop {
                let chunk = input.read(at, input.len().min(at + PLAN_CHUNK)).await?;
                at += chunk.len() as u64;
                let (step, n) = scanner.step(&chunk);
                cursor.advance(&chunk[..n]);
                match step {
                    Step::Record => {
                        let fields =
                            csv::StringRecord::from_byte_record(scanner.take()).map_err(|e| {
                                ConnectorError::config(format!(
                                    "{}: the header is not valid UTF-8 ({e})",
                                    input.name()
                                ))
                            })?;
                        header = Some(Arc::new(fields));
                        data_start = cursor.next;
                        break;
                    }
                    Step::NeedInput if !chunk.is_empty() => continue,
                    // An empty file, or one without a complete header: no records.
                    Step::NeedInput | Step::End => {
                        data_start = CsvOffset {
                            byte: input.len(),
                            line: cursor.next.line,
                        };
                        break;
                    }
                }
            }
        }
        Ok(Self {
            input,
            header,
            data_start,
            delimiter,
            ragged: options.ragged,
        })
    }

    /// The header's column names, when the file has one.
    pub fn header(&self) -> Option<&csv::StringRecord> {
        self.header.as_deref()
    }

    fn to_row(&self, position: Position, scanned: Scanned<'_>) -> Result<CsvRow, RecordError> {
        let record = scanned.fields;
        // A record cut by the end of the file with an odd number of quotes (they come in pairs,
        // `""` escaping one) had a quoted field that was never closed.
        if scanned.ended_by_eof && scanned.raw.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
            return Err(RecordError::new(
                position,
                "a quoted field is never closed: it runs to the end of the file",
            ));
        }
        if let (Some(header), RaggedRows::Error) = (&self.header, self.ragged)
            && record.len() != header.len()
        {
            return Err(RecordError::new(
                position,
                format!(
                    "expected {} fields as in the header, found {}",
                    header.len(),
                    record.len()
                ),
            ));
        }
        let values = csv::StringRecord::from_byte_record(record).map_err(|e| {
            let field = e.utf8_error().field() + 1;
            RecordError::new(position, format!("invalid UTF-8 in field {field}"))
        })?;
        Ok(CsvRow {
            header: self.header.clone(),
            values,
        })
    }
}

impl<B: ByteInput> Source for CsvReader<B> {
    type Record = CsvRow;
    type Offset = CsvOffset;

    async fn plan(
        &self,
        from: Option<&CsvOffset>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<CsvOffset>, ConnectorError> {
        let start = from
            .copied()
            .unwrap_or(self.data_start)
            .max(self.data_start);
        let len = self.input.len();
        let mut scanner = Scanner::new(self.delimiter);
        let mut cursor = Cursor::new(start);
        let mut batches = Vec::new();
        let (mut batch_start, mut count) = (start, 0u64);
        let mut at = start.byte;
        loop {
            let chunk = self.input.read(at, len.min(at + PLAN_CHUNK)).await?;
            at += chunk.len() as u64;
            let mut rest = &chunk[..];
            loop {
                let (step, n) = scanner.step(rest);
                cursor.advance(&rest[..n]);
                rest = &rest[n..];
                match step {
                    Step::Record => {
                        cursor.finish_record();
                        scanner.clear();
                        count += 1;
                        if count == batch_size {
                            batches.push(PlannedBatch {
                                start: batch_start,
                                end: cursor.next,
                                records: count,
                            });
                            (batch_start, count) = (cursor.next, 0);
                            if batches.len() >= max_batches {
                                return Ok(Plan {
                                    batches,
                                    end_of_source: cursor.next.byte >= len,
                                });
                            }
                        }
                    }
                    Step::NeedInput if !chunk.is_empty() => break,
                    Step::NeedInput | Step::End => {
                        if count > 0 {
                            batches.push(PlannedBatch {
                                start: batch_start,
                                end: cursor.next,
                                records: count,
                            });
                        }
                        return Ok(Plan {
                            batches,
                            end_of_source: true,
                        });
                    }
                }
            }
        }
    }

    async fn read(
        &self,
        range: &BatchRange<CsvOffset>,
    ) -> Result<ReadBatch<CsvRow>, ConnectorError> {
        let bytes = self.input.read(range.start.byte, range.end.byte).await?;
        let mut scanner = Scanner::new(self.delimiter);
        let mut batch = ReadBatch::default();
        let mut ordinal = range.first_record;
        scan_all(&mut scanner, range.start, &bytes, |scanned| {
            let position = Position::at(ordinal)
                .line(scanned.start.line)
                .byte(scanned.start.byte);
            ordinal += 1;
            match self.to_row(position, scanned) {
                Ok(row) => batch.records.push(Positioned {
                    position,
                    value: row,
                }),
                Err(e) => batch.errors.push(e),
            }
        });
        let found = batch.records.len() + batch.errors.len();
        if found as u64 != range.records {
            return Err(ConnectorError::transient(format!(
                "{}: bytes {}..{} hold {found} records, but {} were planned (was the file changed while the job ran?)",
                self.input.name(),
                range.start.byte,
                range.end.byte,
                range.records
            )));
        }
        Ok(batch)
    }
}

/// A local file read with positioned reads, so concurrent batches share one open file.
pub struct LocalFile {
    file: Arc<std::fs::File>,
    path: String,
    len: u64,
}

impl LocalFile {
    async fn open(path: &str) -> Result<Self, ConnectorError> {
        let owned = path.to_owned();
        let opened = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&owned)?;
            let meta = file.metadata()?;
            if meta.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "is a directory",
                ));
            }
            Ok((file, meta.len()))
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("cannot open {path}: {e}")))?;
        let (file, len) =
            opened.map_err(|e| ConnectorError::io(format!("cannot open {path}"), &e))?;
        Ok(Self {
            file: Arc::new(file),
            path: path.to_owned(),
            len,
        })
    }
}

impl ByteInput for LocalFile {
    fn name(&self) -> &str {
        &self.path
    }

    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, ConnectorError> {
        use std::os::unix::fs::FileExt;
        let file = self.file.clone();
        let size = end.saturating_sub(start) as usize;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; size];
            file.read_exact_at(&mut buf, start).map(|()| buf)
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("{}: {e}", self.path)))?;
        read.map_err(|e| {
            ConnectorError::io(format!("{}: reading bytes {start}..{end}", self.path), &e)
        })
    }
}

/// A CSV file on the worker's file system.
///
/// ```
/// use batch_orchestra::connectors::csv::CsvFile;
///
/// let source = CsvFile::new("data/people.csv").delimiter(';');
/// assert_eq!(source.options.delimiter, ';');
/// ```
#[crate::batch_source(name = "csv-file", reader = CsvReader<LocalFile>)]
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

    async fn build_source(&self) -> Result<CsvReader<LocalFile>, ConnectorError> {
        CsvReader::open(LocalFile::open(&self.path).await?, &self.options).await
    }
}
