//! CSV sources: a local file ([`CsvFile`]) or an object in a store
//! ([`CsvObject`](crate::connectors::object_store::CsvObject), feature `object-store`), with
//! one parser for both.
//!
//! Offsets are byte offsets (with the line number, for messages). Planning scans record
//! boundaries with `csv_core` from a recorded boundary, so quoted fields with commas and
//! newlines are always split correctly; reading parses the same bytes with the same engine, so
//! a batch holds exactly the records its plan counted. The header is read once, when the
//! source is built, and never counted as a record.

use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

pub use super::input::{ByteInput, LineOffset, LocalFile};
use crate::connector::{BatchRange, Plan, PlannedBatch, ReadBatch, Source};
use crate::error::{ConnectorError, RecordError, TransformError};
use crate::record::{Position, Positioned};

/// Bytes read per call while planning.
const PLAN_CHUNK: u64 = 1 << 20;

/// A resumable position in a CSV file: the byte where a record starts, and its line (from 1).
pub type CsvOffset = LineOffset;

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

/// A CSV record: its values, with the header's column names.
#[derive(Clone, PartialEq)]
pub struct CsvRow {
    header: Option<Arc<csv::StringRecord>>,
    values: csv::StringRecord,
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
///
/// Lines end as records do for `csv_core`: at `\n`, at `\r\n` (once), and at a lone `\r`. A
/// line is counted at its `\r` when there is one, so an offset between the `\r` and the `\n` of
/// a CRLF (where `csv_core` ends a record) is already on the next line, and a cursor started
/// there must know that the byte before it was a `\r`.
struct Cursor {
    next: CsvOffset,
    record_start: Option<CsvOffset>,
    /// The last byte consumed was a `\r`: a `\n` now ends no new line.
    after_cr: bool,
}

impl Cursor {
    /// A cursor at `at`; `after_cr` tells whether the byte before `at` is a `\r`.
    fn new(at: CsvOffset, after_cr: bool) -> Self {
        Self {
            next: at,
            record_start: None,
            after_cr,
        }
    }

    fn advance(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.record_start.is_none() && b != b'\r' && b != b'\n' {
                self.record_start = Some(self.next);
            }
            self.next.byte += 1;
            if b == b'\r' || (b == b'\n' && !self.after_cr) {
                self.next.line += 1;
            }
            self.after_cr = b == b'\r';
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
/// of the input); `after_cr` tells whether the byte before `at` is a `\r`.
fn scan_all(
    scanner: &mut Scanner,
    at: CsvOffset,
    after_cr: bool,
    bytes: &[u8],
    mut on_record: impl FnMut(Scanned<'_>),
) {
    let mut cursor = Cursor::new(at, after_cr);
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

/// Whether a record that the end of the input cut short is inside a quoted field, as
/// `csv_core` parses it: a quote opens a quoted field only as a field's first byte (elsewhere
/// it is a literal character), and `""` inside a quoted field is an escaped quote.
fn ends_inside_quotes(raw: &[u8], delimiter: u8) -> bool {
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    for &b in raw {
        state = match state {
            State::FieldStart if b == b'"' => State::Quoted,
            State::FieldStart | State::Unquoted | State::QuoteInQuoted if b == delimiter => {
                State::FieldStart
            }
            State::FieldStart | State::Unquoted => State::Unquoted,
            State::Quoted if b == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
            State::QuoteInQuoted if b == b'"' => State::Quoted,
            State::QuoteInQuoted => State::Unquoted,
        };
    }
    matches!(state, State::Quoted)
}

impl<B: ByteInput> CsvReader<B> {
    /// Opens the input: checks the options, skips a UTF-8 byte-order mark and reads the header.
    pub(crate) async fn open(input: B, options: &CsvOptions) -> Result<Self, ConnectorError> {
        let delimiter = options.delimiter_byte(input.name())?;
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
            let mut cursor = Cursor::new(data_start, false);
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
                                    "CSV `{}`: the header is not valid UTF-8 (field {}); save the file as UTF-8",
                                    input.name(),
                                    e.utf8_error().field() + 1
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

    /// Reads `[start, end)` and tells whether the byte before `start` is a `\r` (one read: the
    /// byte is fetched with the range).
    async fn read_after(&self, start: u64, end: u64) -> Result<(Vec<u8>, bool), ConnectorError> {
        if start == 0 || start > end {
            return Ok((self.input.read(start, end).await?, false));
        }
        let mut bytes = self.input.read(start - 1, end).await?;
        let after_cr = bytes.first() == Some(&b'\r');
        bytes.drain(..bytes.len().min(1));
        Ok((bytes, after_cr))
    }

    fn to_row(&self, position: Position, scanned: Scanned<'_>) -> Result<CsvRow, RecordError> {
        let record = scanned.fields;
        // A record cut by the end of the file inside a quoted field: the quote was never
        // closed. (A quote inside an unquoted field is a literal character.)
        if scanned.ended_by_eof && ends_inside_quotes(scanned.raw, self.delimiter) {
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
        let mut batches = Vec::new();
        let (mut batch_start, mut count) = (start, 0u64);
        let mut at = start.byte;
        let (first, after_cr) = self.read_after(at, len.min(at + PLAN_CHUNK)).await?;
        let mut cursor = Cursor::new(start, after_cr);
        let mut first = Some(first);
        loop {
            let chunk = match first.take() {
                Some(chunk) => chunk,
                None => self.input.read(at, len.min(at + PLAN_CHUNK)).await?,
            };
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
        let name = self.input.name();
        if range.end.byte > self.input.len() {
            return Err(ConnectorError::batch(format!(
                "CSV `{name}`: bytes {}..{} are past the end of the file ({} bytes): the file changed after planning",
                range.start.byte,
                range.end.byte,
                self.input.len()
            )));
        }
        let (bytes, after_cr) = self.read_after(range.start.byte, range.end.byte).await?;
        let mut scanner = Scanner::new(self.delimiter);
        let mut batch = ReadBatch::default();
        let mut ordinal = range.first_record;
        scan_all(&mut scanner, range.start, after_cr, &bytes, |scanned| {
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
            return Err(ConnectorError::batch(format!(
                "CSV `{name}`: bytes {}..{} now hold {} where the plan counted {}: the file changed after planning",
                range.start.byte,
                range.end.byte,
                plural(found as u64, "record"),
                range.records
            )));
        }
        Ok(batch)
    }

    async fn is_current(&self) -> bool {
        self.input.is_current().await
    }

    fn identity(&self) -> Option<String> {
        self.input.version()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::SourceConfig;
    use crate::error::ErrorKind;
    use std::path::PathBuf;
    use std::sync::Mutex;
    use std::time::Duration;

    /// An input in memory whose bytes a test can change under a built reader.
    struct MemInput {
        name: String,
        bytes: Mutex<Vec<u8>>,
        len: u64,
    }

    impl MemInput {
        fn new(name: &str, bytes: &[u8]) -> Self {
            Self {
                name: name.to_owned(),
                bytes: Mutex::new(bytes.to_vec()),
                len: bytes.len() as u64,
            }
        }
    }

    impl ByteInput for MemInput {
        fn name(&self) -> &str {
            &self.name
        }

        fn len(&self) -> u64 {
            self.len
        }

        async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, ConnectorError> {
            let bytes = self.bytes.lock().unwrap();
            let end = (end as usize).min(bytes.len());
            let start = (start as usize).min(end);
            Ok(bytes[start..end].to_vec())
        }
    }

    async fn mem(bytes: &[u8], options: &CsvOptions) -> CsvReader<MemInput> {
        CsvReader::open(MemInput::new("mem.csv", bytes), options)
            .await
            .unwrap()
    }

    /// Plans one batch at a time, resuming from the previous end as a job does, and reads
    /// each batch.
    async fn read_all<B: ByteInput>(
        reader: &CsvReader<B>,
        batch_size: u64,
    ) -> (Vec<Positioned<CsvRow>>, Vec<RecordError>) {
        let (mut rows, mut errors) = (Vec::new(), Vec::new());
        let (mut from, mut index, mut first_record) = (None, 0, 0);
        loop {
            let plan = reader.plan(from.as_ref(), batch_size, 1).await.unwrap();
            for planned in &plan.batches {
                let range = BatchRange {
                    index,
                    start: planned.start,
                    end: planned.end,
                    first_record,
                    records: planned.records,
                };
                let batch = reader.read(&range).await.unwrap();
                rows.extend(batch.records);
                errors.extend(batch.errors);
                index += 1;
                first_record += planned.records;
                from = Some(planned.end);
            }
            if plan.end_of_source {
                return (rows, errors);
            }
        }
    }

    fn values(rows: &[Positioned<CsvRow>]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|row| row.value.values().map(str::to_owned).collect())
            .collect()
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("batch-orchestra-csv-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn set_modified(path: &PathBuf, time: std::time::SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    async fn build_error(config: CsvFile) -> ConnectorError {
        match config.build().await {
            Ok(_) => panic!("{config:?} was built"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_local_file_is_not_current_once_rewritten_replaced_or_removed() {
        let path = temp_path("current.csv");
        std::fs::write(&path, "id,name\n1,a\n").unwrap();
        let config = CsvFile::new(path.to_string_lossy());

        let source = config.build().await.unwrap();
        assert!(source.is_current().await, "an untouched file is current");
        let (rows, _) = read_all(&source, 10).await;
        assert_eq!(values(&rows), vec![vec!["1", "a"]]);

        // Rewritten in place with as many bytes.
        let opened_at = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "id,name\n2,b\n").unwrap();
        set_modified(&path, opened_at + Duration::from_secs(5));
        assert!(!source.is_current().await, "a file written in place");

        // Appended to: a new length.
        let source = config.build().await.unwrap();
        assert!(source.is_current().await);
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "id,name\n2,b\n3,c\n").unwrap();
        set_modified(&path, modified);
        assert!(!source.is_current().await, "a file with a new length");

        // Replaced by a rename with the same length and time: only the inode tells.
        let source = config.build().await.unwrap();
        assert!(source.is_current().await);
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let replacement = temp_path("current.csv.new");
        std::fs::write(&replacement, "id,name\n4,d\n5,e\n").unwrap();
        set_modified(&replacement, modified);
        std::fs::rename(&replacement, &path).unwrap();
        assert!(!source.is_current().await, "a file replaced by a rename");

        // Removed.
        let source = config.build().await.unwrap();
        assert!(source.is_current().await);
        let (rows, _) = read_all(&source, 10).await;
        assert_eq!(values(&rows), vec![vec!["4", "d"], vec!["5", "e"]]);
        std::fs::remove_file(&path).unwrap();
        assert!(!source.is_current().await, "a removed file");
    }

    #[tokio::test]
    async fn a_quote_inside_an_unquoted_field_reads_the_same_with_or_without_a_final_newline() {
        for bytes in [&b"a,b\n1,2\n3,ab\"c"[..], b"a,b\n1,2\n3,ab\"c\n"] {
            let reader = mem(bytes, &CsvOptions::default()).await;
            let (rows, errors) = read_all(&reader, 10).await;
            let text = String::from_utf8_lossy(bytes);
            assert!(errors.is_empty(), "{text:?}: {errors:?}");
            assert_eq!(
                values(&rows),
                vec![vec!["1", "2"], vec!["3", "ab\"c"]],
                "{text:?}"
            );
        }
        // Quoted fields at the end of the file: open ones are errors, closed ones are not.
        let cases: [(&[u8], Option<&str>); 5] = [
            (b"a,b\n1,2\n3,\"never closed", None),
            (b"a,b\n1,2\n3,\"x\"\"", None),
            (b"a,b\n1,2\n3,\"x\"\"y\"", Some("x\"y")),
            (b"a,b\n1,2\n3,\"ab\"c", Some("abc")),
            (b"a,b\n1,2\n\"3\",\"\"", Some("")),
        ];
        for (bytes, last) in cases {
            let reader = mem(bytes, &CsvOptions::default()).await;
            let (rows, errors) = read_all(&reader, 10).await;
            let text = String::from_utf8_lossy(bytes);
            match last {
                None => {
                    assert_eq!(rows.len(), 1, "{text:?}");
                    assert_eq!(errors.len(), 1, "{text:?}");
                    assert_eq!(
                        errors[0].message,
                        "a quoted field is never closed: it runs to the end of the file"
                    );
                    assert_eq!(errors[0].position.line, Some(3));
                }
                Some(last) => {
                    assert!(errors.is_empty(), "{text:?}: {errors:?}");
                    assert_eq!(rows[1].value.values().nth(1), Some(last), "{text:?}");
                }
            }
        }
    }

    #[tokio::test]
    async fn line_breaks_and_quotes_are_refused_as_delimiters() {
        let path = temp_path("two-rows.csv");
        std::fs::write(&path, "id,name\n1,a\n2,b\n").unwrap();
        let name = path.to_string_lossy().into_owned();
        for (delimiter, shown) in [('\n', r"'\n'"), ('\r', r"'\r'"), ('"', "'\"'")] {
            let err = build_error(CsvFile::new(&name).delimiter(delimiter)).await;
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
            assert_eq!(
                err.message(),
                format!(
                    "CSV `{name}`: the delimiter cannot be a line break or a quote (got {shown}); use ',' ';' '\\t' or '|'"
                )
            );
            // The reader refuses it too, whatever built its input.
            let options = CsvOptions {
                delimiter,
                ..CsvOptions::default()
            };
            match CsvReader::open(MemInput::new("mem.csv", b"id\n1\n"), &options).await {
                Ok(_) => panic!("{delimiter:?} accepted"),
                Err(e) => assert_eq!(e.kind(), ErrorKind::Config),
            }
        }
        let err = build_error(CsvFile::new(&name).delimiter('→')).await;
        assert_eq!(err.kind(), ErrorKind::Config);
        assert!(
            err.message().contains(&name)
                && err
                    .message()
                    .contains("the delimiter `→` is not an ASCII character"),
            "{err}"
        );
        // Checked before the file is opened.
        let err = build_error(CsvFile::new("/nonexistent/people.csv").delimiter('\n')).await;
        assert!(err.message().contains("line break"), "{err}");
        let source = CsvFile::new(&name).delimiter('|').build().await.unwrap();
        let (rows, errors) = read_all(&source, 10).await;
        assert_eq!((rows.len(), errors.len()), (2, 0));
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn lines_are_counted_for_lf_crlf_and_cr_line_ends() {
        for eol in ["\n", "\r\n", "\r"] {
            // A blank line, and a quoted field holding a line break.
            let text = format!("id,name{eol}1,a{eol}{eol}2,\"b{eol}c\"{eol}3,d{eol}4,e");
            let bytes: Vec<u64> = ["1,a", "2,\"", "3,d", "4,e"]
                .iter()
                .map(|r| text.find(r).unwrap() as u64)
                .collect();
            for batch_size in [1, 2, 3, 10] {
                let reader = mem(text.as_bytes(), &CsvOptions::default()).await;
                let (rows, errors) = read_all(&reader, batch_size).await;
                assert!(errors.is_empty(), "{eol:?}: {errors:?}");
                let positions: Vec<_> = rows
                    .iter()
                    .map(|r| (r.position.record, r.position.line, r.position.byte))
                    .collect();
                assert_eq!(
                    positions,
                    vec![
                        (0, Some(2), Some(bytes[0])),
                        (1, Some(4), Some(bytes[1])),
                        (2, Some(6), Some(bytes[2])),
                        (3, Some(7), Some(bytes[3])),
                    ],
                    "{eol:?}, batches of {batch_size}"
                );
                assert_eq!(rows[1].value.get("name"), Some(format!("b{eol}c").as_str()));
                let plan = reader.plan(None, batch_size, usize::MAX).await.unwrap();
                let last = plan.batches.last().unwrap();
                assert_eq!(last.end.byte, text.len() as u64);
                assert_eq!(
                    last.end.line, 7,
                    "{eol:?}: no line end after the last record"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_crlf_split_between_plan_chunks_counts_one_line() {
        // Rows of 16 bytes after a 3-byte header: the `\r` of row 65535 is the last byte of
        // the first planning chunk and its `\n` the first byte of the second; a batch of 65536
        // records ends between them.
        let rows = 2 * (PLAN_CHUNK / 16) + 3;
        let mut text = String::from("a\r\n");
        for k in 0..rows {
            text.push_str(&format!("{k:014}\r\n"));
        }
        let reader = mem(text.as_bytes(), &CsvOptions::default()).await;
        let plan = reader.plan(None, PLAN_CHUNK / 16, 1).await.unwrap();
        assert_eq!(plan.batches[0].end.byte, PLAN_CHUNK + 2);
        assert_eq!(&text.as_bytes()[PLAN_CHUNK as usize + 1..][..2], b"\r\n");
        let (read, errors) = read_all(&reader, PLAN_CHUNK / 16).await;
        assert!(errors.is_empty());
        assert_eq!(read.len() as u64, rows);
        for (k, row) in read.iter().enumerate() {
            let k = k as u64;
            assert_eq!(
                (row.position.line, row.position.byte),
                (Some(k + 2), Some(3 + 16 * k)),
                "row {k}"
            );
        }
    }

    fn row(header: Option<&[&str]>, values: &[&str]) -> CsvRow {
        CsvRow {
            header: header.map(|h| Arc::new(csv::StringRecord::from(h.to_vec()))),
            values: csv::StringRecord::from(values.to_vec()),
        }
    }

    #[test]
    fn deserialize_errors_name_the_column_and_never_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Person {
            id: u32,
            name: String,
            age: u32,
        }
        let header: &[&str] = &["id", "name", "age"];
        let err = row(Some(header), &["1", "ann", "abc"])
            .deserialize::<Person>()
            .unwrap_err();
        assert_eq!(
            err.0,
            "column `age` (field 3): invalid digit found in string (expected an integer)"
        );

        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Measure {
            id: u32,
            ok: bool,
            weight: f64,
            initial: char,
        }
        let header: &[&str] = &["id", "ok", "weight", "initial"];
        let cases = [
            (
                ["1", "yes-secret", "1.5", "a"],
                "column `ok` (field 2): provided string was not `true` or `false`",
            ),
            (
                ["1", "true", "heavy-secret", "a"],
                "column `weight` (field 3): invalid float literal (expected a number)",
            ),
            (
                ["1", "true", "1.5", "secret"],
                "column `initial` (field 4): expected single character but got 6 characters",
            ),
        ];
        for (values, message) in cases {
            let err = row(Some(header), &values)
                .deserialize::<Measure>()
                .unwrap_err();
            assert_eq!(err.0, message);
        }

        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Status {
            Active,
            Closed,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Account {
            id: u32,
            status: Status,
        }
        let _ = (Status::Active, Status::Closed);
        let err = row(Some(&["id", "status"]), &["1", "secret-status"])
            .deserialize::<Account>()
            .unwrap_err();
        assert!(!err.0.contains("secret"), "{}", err.0);
        assert!(err.0.contains("unknown variant"), "{}", err.0);

        // Without a header, by position, from 1.
        let err = row(None, &["1", "x-secret"])
            .deserialize::<(u32, u32)>()
            .unwrap_err();
        assert_eq!(
            err.0,
            "field 2: invalid digit found in string (expected an integer)"
        );
        let err = row(None, &["1"]).deserialize::<(u32, u32)>().unwrap_err();
        assert_eq!(err.0, "invalid length 1, expected a tuple of size 2");
        let err = row(None, &["1", "ann"])
            .deserialize::<Person>()
            .unwrap_err();
        assert_eq!(
            err.0,
            "invalid length 2, expected struct Person with 3 elements"
        );
    }

    #[test]
    fn values_quoted_by_serde_are_removed_from_messages() {
        let cases = [
            (
                r#"invalid type: string "abc", expected u32"#,
                "invalid type: a string, expected u32",
            ),
            (
                r#"invalid value: string "a \"quoted\" \\ one", expected a date"#,
                "invalid value: a string, expected a date",
            ),
            (
                "invalid type: integer `42`, expected a string",
                "invalid type: an integer, expected a string",
            ),
            (
                "invalid type: floating point `1.5`, expected u8",
                "invalid type: a floating point number, expected u8",
            ),
            (
                "invalid type: boolean `true`, expected u8",
                "invalid type: a boolean, expected u8",
            ),
            (
                "invalid type: character ```, expected u8",
                "invalid type: a character, expected u8",
            ),
            (
                "invalid type: character `x`, expected u8",
                "invalid type: a character, expected u8",
            ),
            (
                "unknown variant `se`cret`, expected one of `active`, `closed`",
                "unknown variant, expected one of `active`, `closed`",
            ),
            (
                "unknown variant `secret`, there are no variants",
                "unknown variant, there are no variants",
            ),
            (
                "expected single character but got 3 characters in 'a'b'",
                "expected single character but got 3 characters",
            ),
            ("missing field `age`", "missing field `age`"),
        ];
        for (message, redacted) in cases {
            assert_eq!(crate::error::redact_values(message), redacted, "{message}");
        }
    }

    #[tokio::test]
    async fn a_header_that_is_not_utf8_names_its_field_from_1() {
        let input = MemInput::new("mem.csv", b"id,n\xC3\x28me\n1,a\n");
        let err = match CsvReader::open(input, &CsvOptions::default()).await {
            Ok(_) => panic!("a header that is not UTF-8 was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            err.message(),
            "CSV `mem.csv`: the header is not valid UTF-8 (field 2); save the file as UTF-8"
        );
    }

    #[tokio::test]
    async fn a_range_that_changed_after_planning_is_a_batch_error() {
        let bytes = b"id,v\n1,a\n2,b\n";
        let reader = CsvReader::open(MemInput::new("x.csv", bytes), &CsvOptions::default())
            .await
            .unwrap();
        let plan = reader.plan(None, 10, 1).await.unwrap();
        let planned = &plan.batches[0];
        let range = BatchRange {
            index: 0,
            start: planned.start,
            end: planned.end,
            first_record: 0,
            records: planned.records,
        };
        assert_eq!(reader.read(&range).await.unwrap().records.len(), 2);
        // The same length, one record fewer.
        *reader.input.bytes.lock().unwrap() = b"id,v\n1,a,2,b\n".to_vec();
        let err = reader.read(&range).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Batch);
        assert_eq!(
            err.message(),
            "CSV `x.csv`: bytes 5..13 now hold 1 record where the plan counted 2: the file changed after planning"
        );

        // A shorter file, built again: the range is past its end.
        let shorter = CsvReader::open(
            MemInput::new("x.csv", b"id,v\n1,a\n"),
            &CsvOptions::default(),
        )
        .await
        .unwrap();
        let err = shorter.read(&range).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Batch);
        assert_eq!(
            err.message(),
            "CSV `x.csv`: bytes 5..13 are past the end of the file (9 bytes): the file changed after planning"
        );
    }

    #[test]
    fn offsets_display_as_byte_and_line() {
        let offset = CsvOffset { byte: 53, line: 2 };
        assert_eq!(offset.to_string(), "byte 53 (line 2)");
    }
}
