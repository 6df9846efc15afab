//! JSON Lines: a source ([`JsonLinesFile`], and `JsonLinesObject` in an object store) that
//! reads one JSON value a line, and a sink ([`JsonLinesDir`]) that writes one file per batch,
//! so a retried batch overwrites its own file and nothing is written twice.
//!
//! The source resumes at byte offsets, like the CSV source: planning counts lines ahead and
//! returns many batch boundaries per call, and reading parses the lines of one range. Blank
//! lines are skipped (they are not records); a line that is not JSON is a record error with
//! its line and byte, and the batch goes on. Records are [`serde_json::Value`]s: turn them
//! into your own type in a transform with [`from_value`], whose errors become record errors
//! with the record's position.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

use super::growing::{self, FileWindow};
use super::input::{ByteInput, LineOffset, LocalFile};
use crate::connector::{
    BatchRange, Bounds, Plan, PlannedBatch, ReadBatch, Sink, Source, Window, WriteContext,
    WriteOutcome,
};
use crate::error::{ConnectorError, RecordError, TransformError, redact_values};
use crate::record::{Position, Positioned};

/// Bytes read per call while planning; doubled while a single line is longer.
const PLAN_CHUNK: u64 = 1 << 20;
/// The longest line planning accepts.
const MAX_LINE: u64 = 256 << 20;

/// A JSON Lines file on the worker's file system: one JSON value a line.
///
/// ```
/// use batch_orchestra::connectors::jsonl::JsonLinesFile;
///
/// let source = JsonLinesFile::new("data/events.jsonl");
/// assert_eq!(source.path, "data/events.jsonl");
/// ```
///
/// Read incrementally (an incremental job, [`BatchProcessingRequest::incremental`]), a file
/// that only grows is read from where the last run ended; see [`growing`].
///
/// [`BatchProcessingRequest::incremental`]: crate::batch::BatchProcessingRequest::incremental
#[crate::batch_source(
    name = "json-lines-file",
    reader = JsonLinesReader<LocalFile>,
    shards = list,
    incremental = since_last_run
)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonLinesFile {
    /// The file's path on the worker.
    pub path: String,
    /// An incremental run's window, pinned by the run: `None` reads the whole file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<FileWindow>,
}

impl JsonLinesFile {
    /// The file at `path`.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            window: None,
        }
    }

    /// Pins an incremental run's window: from the last run's end, when the file only grew
    /// since, to the end of its last complete line.
    async fn since_last_run(&self, bounds: Bounds) -> Result<Window<Self>, ConnectorError> {
        let file = LocalFile::open(&self.path).await?;
        let (start, to) = growing::bounds_in(&file, &bounds).await?;
        let start = start.unwrap_or(LineOffset { byte: 0, line: 1 });
        let end = match to {
            Some(to) => to,
            None => growing::last_line_end(&file, start).await?,
        };
        let (window, next) = growing::window_of(&file, start.min(end), end).await?;
        Ok(Window {
            source: Self {
                window: Some(window),
                ..self.clone()
            },
            next,
        })
    }

    /// Lists the files `path` matches (a glob), for a sharded job.
    async fn list(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<crate::connector::ShardPage<Self>, ConnectorError> {
        crate::connector::listing::list_files(&self.path, after, limit, |path| Self {
            path,
            window: None,
        })
        .await
    }

    async fn build_source(&self) -> Result<JsonLinesReader<LocalFile>, ConnectorError> {
        match &self.window {
            None => Ok(JsonLinesReader::new(LocalFile::open(&self.path).await?)),
            Some(w) => {
                let file = LocalFile::open_prefix(&self.path, w.end.byte, &w.check).await?;
                Ok(JsonLinesReader {
                    input: file,
                    start: w.start,
                })
            }
        }
    }
}

/// Deserializes a JSON Lines record into `T`, for a transform: the error names the field path
/// and what was expected, never the value (record errors travel in workflow history).
///
/// ```
/// use batch_orchestra::connectors::jsonl::from_value;
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Event { id: u64 }
///
/// let event: Event = from_value(serde_json::json!({"id": 7})).unwrap();
/// assert_eq!(event.id, 7);
/// let err = from_value::<Event>(serde_json::json!({"id": "seven"})).err().unwrap();
/// assert_eq!(err.to_string(), "invalid type: a string, expected u64");
/// ```
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, TransformError> {
    serde_json::from_value(value).map_err(|e| TransformError::new(redact_values(&e.to_string())))
}

/// A built JSON Lines source over any [`ByteInput`].
pub struct JsonLinesReader<B> {
    input: B,
    /// Where planning starts when the job has no offset yet.
    start: LineOffset,
}

impl<B: ByteInput> JsonLinesReader<B> {
    /// A reader of `input`.
    pub fn new(input: B) -> Self {
        Self {
            input,
            start: LineOffset { byte: 0, line: 1 },
        }
    }
}

/// A line's content without its line end (`\n` or `\r\n`), and whether it holds anything.
fn content(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_blank(line: &[u8]) -> bool {
    content(line).iter().all(u8::is_ascii_whitespace)
}

impl<B: ByteInput> Source for JsonLinesReader<B> {
    type Record = serde_json::Value;
    type Offset = LineOffset;

    async fn plan(
        &self,
        from: Option<&LineOffset>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<LineOffset>, ConnectorError> {
        let len = self.input.len();
        let mut at = from.copied().unwrap_or(self.start).max(self.start);
        let mut batches = Vec::new();
        let mut start = at;
        let mut records = 0u64;
        // A line cut by a chunk's end is read again with the next chunk.
        let mut chunk_size = PLAN_CHUNK;
        while at.byte < len && batches.len() < max_batches {
            let chunk_end = (at.byte + chunk_size).min(len);
            let chunk = self.input.read(at.byte, chunk_end).await?;
            if chunk.len() as u64 != chunk_end - at.byte {
                return Err(ConnectorError::transient(format!(
                    "JSON Lines `{}`: asked for bytes {}..{chunk_end}, got {}",
                    self.input.name(),
                    at.byte,
                    chunk.len()
                )));
            }
            let mut pos = 0usize;
            while pos < chunk.len() && batches.len() < max_batches {
                let Some(nl) = chunk[pos..].iter().position(|&b| b == b'\n') else {
                    if chunk_end < len {
                        break;
                    }
                    // The last line has no line end.
                    let line = &chunk[pos..];
                    if !is_blank(line) {
                        records += 1;
                    }
                    pos = chunk.len();
                    at = LineOffset {
                        byte: len,
                        line: at.line + 1,
                    };
                    break;
                };
                let line = &chunk[pos..pos + nl + 1];
                if !is_blank(line) {
                    records += 1;
                }
                pos += nl + 1;
                at = LineOffset {
                    byte: at.byte + nl as u64 + 1,
                    line: at.line + 1,
                };
                if records == batch_size {
                    batches.push(PlannedBatch {
                        start,
                        end: at,
                        records,
                    });
                    start = at;
                    records = 0;
                }
            }
            if pos == 0 && chunk_end < len {
                // One line longer than the chunk: read more at once.
                chunk_size *= 2;
                if chunk_size > MAX_LINE {
                    return Err(ConnectorError::config(format!(
                        "JSON Lines `{}`: the line at {at} is longer than {MAX_LINE} bytes",
                        self.input.name()
                    )));
                }
            }
        }
        if records > 0 || (start.byte < at.byte && batches.len() < max_batches) {
            // The rest of the input: records, or only blank lines to step over.
            batches.push(PlannedBatch {
                start,
                end: at,
                records,
            });
        }
        let end_of_source = batches.last().map_or(at.byte >= len, |b| b.end.byte >= len);
        Ok(Plan {
            batches,
            end_of_source,
        })
    }

    async fn read(
        &self,
        range: &BatchRange<LineOffset>,
    ) -> Result<ReadBatch<serde_json::Value>, ConnectorError> {
        let name = self.input.name();
        let bytes = self.input.read(range.start.byte, range.end.byte).await?;
        let mut batch = ReadBatch::default();
        let (mut byte, mut line, mut record) =
            (range.start.byte, range.start.line, range.first_record);
        for raw in bytes.split_inclusive(|&b| b == b'\n') {
            if !is_blank(raw) {
                let position = Position::at(record).line(line).byte(byte);
                match serde_json::from_slice(content(raw)) {
                    Ok(value) => batch.records.push(Positioned { position, value }),
                    Err(e) => batch.errors.push(RecordError::new(
                        position,
                        format!(
                            "not a JSON value ({} at column {})",
                            json_error_kind(&e),
                            e.column()
                        ),
                    )),
                }
                record += 1;
            }
            byte += raw.len() as u64;
            line += 1;
        }
        let found = record - range.first_record;
        if found != range.records {
            return Err(ConnectorError::batch(format!(
                "JSON Lines `{name}`: bytes {}..{} now hold {found} records where the plan counted {}: the file changed after planning",
                range.start.byte, range.end.byte, range.records
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

    async fn raw_records(
        &self,
        range: &BatchRange<LineOffset>,
        records: &[u64],
    ) -> Result<Vec<(u64, Vec<u8>)>, ConnectorError> {
        let bytes = self.input.read(range.start.byte, range.end.byte).await?;
        let mut found = Vec::with_capacity(records.len());
        let mut record = range.first_record;
        for raw in bytes.split_inclusive(|&b| b == b'\n') {
            if !is_blank(raw) {
                if records.binary_search(&record).is_ok() {
                    found.push((record, content(raw).to_vec()));
                }
                record += 1;
            }
        }
        // The file changed since the read: no bytes rather than another record's.
        if record - range.first_record != range.records {
            return Ok(Vec::new());
        }
        Ok(found)
    }
}

/// What kind of JSON error, in words, without the input's text.
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Eof => "unexpected end of line",
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Data => "unexpected data",
    }
}

/// A directory of JSON-lines files, `<dir>/<scope>-<batch>.jsonl`, one JSON value a line. The
/// scope is [`WriteContext::job_id`](crate::connector::WriteContext::job_id) made file-safe: the job id and
/// the input's fingerprint (`daily_3f2a9c01b7e4`), so a job id reused over new input adds files
/// instead of overwriting the last run's.
#[crate::batch_sink(name = "json-lines", writer = JsonLinesWriter)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonLinesDir {
    /// The directory, created when missing.
    pub dir: String,
}

impl JsonLinesDir {
    /// Files go to `dir`.
    pub fn new(dir: impl Into<String>) -> Self {
        Self { dir: dir.into() }
    }

    async fn build_sink(&self) -> Result<JsonLinesWriter, ConnectorError> {
        let dir = PathBuf::from(&self.dir);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| ConnectorError::io(format!("cannot create {}", self.dir), &e))?;
        Ok(JsonLinesWriter { dir })
    }
}

/// A built JSON-lines sink.
pub struct JsonLinesWriter {
    dir: PathBuf,
}

impl Sink for JsonLinesWriter {
    type Record = serde_json::Value;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<serde_json::Value>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let job = crate::snapshot::file_safe(&ctx.job_id);
        let file = self.dir.join(format!("{job}-{:08}.jsonl", ctx.batch));
        let tmp = file.with_extension("jsonl.tmp");
        let count = records.len() as u64;
        let (tmp2, file2) = (tmp.clone(), file.clone());
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp2)?);
            for record in &records {
                serde_json::to_writer(&mut out, &record.value)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
            std::fs::rename(&tmp2, &file2)
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("{}: {e}", file.display())))?
        .map_err(|e| ConnectorError::io(format!("cannot write {}", tmp.display()), &e))?;
        Ok(WriteOutcome {
            written: count,
            ..WriteOutcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input in memory.
    struct Mem(Vec<u8>);

    impl ByteInput for Mem {
        fn name(&self) -> &str {
            "mem.jsonl"
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, ConnectorError> {
            Ok(self.0[start as usize..end as usize].to_vec())
        }
    }

    /// Plans the whole input in batches of `size` and reads every batch.
    async fn read_all(
        text: &[u8],
        size: u64,
    ) -> (Vec<Positioned<serde_json::Value>>, Vec<RecordError>, usize) {
        let reader = JsonLinesReader::new(Mem(text.to_vec()));
        let (mut from, mut first, mut index) = (None, 0, 0);
        let (mut records, mut errors, mut batches) = (Vec::new(), Vec::new(), 0);
        loop {
            let plan = reader.plan(from.as_ref(), size, 2).await.unwrap();
            for b in &plan.batches {
                let range = BatchRange {
                    index,
                    start: b.start,
                    end: b.end,
                    first_record: first,
                    records: b.records,
                };
                let read = reader.read(&range).await.unwrap();
                records.extend(read.records);
                errors.extend(read.errors);
                first += b.records;
                index += 1;
                batches += 1;
                from = Some(b.end);
            }
            if plan.end_of_source {
                return (records, errors, batches);
            }
        }
    }

    #[tokio::test]
    async fn lines_become_values_with_positions_and_bad_lines_become_errors() {
        let text = b"{\"id\":1}\n\n{\"id\":2}\r\n  \n{oops\n[1,2]\n\"last\"";
        for size in [1, 2, 3, 10] {
            let (records, errors, _) = read_all(text, size).await;
            let values: Vec<_> = records.iter().map(|r| r.value.to_string()).collect();
            assert_eq!(
                values,
                ["{\"id\":1}", "{\"id\":2}", "[1,2]", "\"last\""],
                "size {size}"
            );
            let lines: Vec<_> = records
                .iter()
                .map(|r| (r.position.record, r.position.line))
                .collect();
            assert_eq!(
                lines,
                [(0, Some(1)), (1, Some(3)), (3, Some(6)), (4, Some(7))],
                "size {size}"
            );
            assert_eq!(errors.len(), 1);
            let e = &errors[0];
            assert_eq!(
                (e.position.record, e.position.line, e.position.byte),
                (2, Some(5), Some(23))
            );
            assert_eq!(
                e.to_string(),
                "record 2 (line 5, byte 23): not a JSON value (syntax error at column 2)"
            );
            assert!(!e.message.contains("oops"), "no input text in the message");
        }
    }

    #[tokio::test]
    async fn empty_and_blank_inputs_have_no_records() {
        assert_eq!(read_all(b"", 5).await.0.len(), 0);
        let (records, errors, _) = read_all(b"\n  \n\r\n", 5).await;
        assert!(records.is_empty() && errors.is_empty());
    }

    #[tokio::test]
    async fn a_range_that_changed_after_planning_is_a_batch_error() {
        let reader = JsonLinesReader::new(Mem(b"1\n2\n".to_vec()));
        let range = BatchRange {
            index: 0,
            start: LineOffset { byte: 0, line: 1 },
            end: LineOffset { byte: 4, line: 3 },
            first_record: 0,
            records: 3,
        };
        let err = reader.read(&range).await.err().unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Batch);
        assert!(
            err.message()
                .contains("now hold 2 records where the plan counted 3"),
            "{err}"
        );
    }

    #[test]
    fn serde_values_are_removed_from_messages() {
        assert_eq!(
            redact_values("invalid type: string \"secret\", expected u64"),
            "invalid type: a string, expected u64"
        );
        assert_eq!(
            redact_values("unknown field `nmae`, expected `name`"),
            "unknown field `nmae`, expected `name`"
        );
    }
}
