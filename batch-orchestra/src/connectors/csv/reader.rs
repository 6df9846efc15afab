//! The built CSV source: plans by scanning boundaries, reads by parsing the same bytes.

use std::sync::Arc;

use super::{CsvOffset, plural};
use crate::connector::{BatchRange, Plan, PlannedBatch, ReadBatch, Source};
use crate::connectors::input::ByteInput;
use crate::error::{ConnectorError, RecordError};
use crate::record::{Position, Positioned};

use super::options::{CsvOptions, RaggedRows};
use super::row::CsvRow;
use super::scanner::*;

/// A built CSV source over any [`ByteInput`].
pub struct CsvReader<B> {
    pub(super) input: B,
    header: Option<Arc<csv::StringRecord>>,
    pub(super) data_start: CsvOffset,
    delimiter: u8,
    ragged: RaggedRows,
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

    /// The reader of the records from `at` on (an incremental run's window).
    pub(super) fn starting_at(mut self, at: CsvOffset) -> Self {
        self.data_start = self.data_start.max(at);
        self
    }

    /// The end of the last record from `from` on that a line terminator ends: where a run
    /// over a file still being appended to stops, so a record being written is read whole by
    /// the next run.
    pub(super) async fn complete_end(&self, from: CsvOffset) -> Result<CsvOffset, ConnectorError> {
        let len = self.input.len();
        let (first, after_cr) = self
            .read_after(from.byte, len.min(from.byte + PLAN_CHUNK))
            .await?;
        let mut scanner = Scanner::new(self.delimiter);
        let mut cursor = Cursor::new(from, after_cr);
        let (mut at, mut end) = (from.byte, from);
        let mut first = Some(first);
        while at < len {
            let chunk = match first.take() {
                Some(chunk) => chunk,
                None => self.input.read(at, len.min(at + PLAN_CHUNK)).await?,
            };
            at += chunk.len() as u64;
            // Never fed an empty slice: that would end a record cut by the end of the file.
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let (step, n) = scanner.step(rest);
                cursor.advance(&rest[..n]);
                rest = &rest[n..];
                if let Step::Record = step {
                    cursor.finish_record();
                    scanner.clear();
                    end = cursor.next;
                }
            }
        }
        Ok(end)
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

    async fn raw_records(
        &self,
        range: &BatchRange<CsvOffset>,
        records: &[u64],
    ) -> Result<Vec<(u64, Vec<u8>)>, ConnectorError> {
        let (bytes, after_cr) = self.read_after(range.start.byte, range.end.byte).await?;
        let mut scanner = Scanner::new(self.delimiter);
        let mut found = Vec::with_capacity(records.len());
        let mut ordinal = range.first_record;
        scan_all(&mut scanner, range.start, after_cr, &bytes, |scanned| {
            if records.binary_search(&ordinal).is_ok() {
                found.push((ordinal, scanned.raw.to_vec()));
            }
            ordinal += 1;
        });
        // The file changed since the read: no bytes rather than another record's.
        if ordinal - range.first_record != range.records {
            return Ok(Vec::new());
        }
        Ok(found)
    }
}
