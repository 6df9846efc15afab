//! Record boundaries with `csv_core`: the scanner that planning and reading share.

use super::CsvOffset;

/// Bytes read per call while planning.
pub(super) const PLAN_CHUNK: u64 = 1 << 20;

/// The `csv_core` reader and its buffers; yields one record at a time.
pub(super) struct Scanner {
    pub(super) core: csv_core::Reader,
    pub(super) out: Vec<u8>,
    pub(super) ends: Vec<usize>,
    pub(super) out_len: usize,
    pub(super) ends_len: usize,
}

pub(super) enum Step {
    /// All input consumed; feed more (or an empty slice at the end).
    NeedInput,
    /// A record ended after `consumed` bytes of this input.
    Record,
    /// No more records.
    End,
}

impl Scanner {
    pub(super) fn new(delimiter: u8) -> Self {
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
    pub(super) fn step(&mut self, mut input: &[u8]) -> (Step, usize) {
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
    pub(super) fn take(&mut self) -> csv::ByteRecord {
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

    pub(super) fn clear(&mut self) {
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
pub(super) struct Cursor {
    pub(super) next: CsvOffset,
    pub(super) record_start: Option<CsvOffset>,
    /// The last byte consumed was a `\r`: a `\n` now ends no new line.
    after_cr: bool,
}

impl Cursor {
    /// A cursor at `at`; `after_cr` tells whether the byte before `at` is a `\r`.
    pub(super) fn new(at: CsvOffset, after_cr: bool) -> Self {
        Self {
            next: at,
            record_start: None,
            after_cr,
        }
    }

    pub(super) fn advance(&mut self, bytes: &[u8]) {
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
    pub(super) fn finish_record(&mut self) -> CsvOffset {
        self.record_start.take().unwrap_or(self.next)
    }
}

/// A record as `scan_all` hands it over.
pub(super) struct Scanned<'a> {
    pub(super) start: CsvOffset,
    pub(super) raw: &'a [u8],
    /// The record ended because the input did, not at a line terminator.
    pub(super) ended_by_eof: bool,
    pub(super) fields: csv::ByteRecord,
}

/// Calls `on_record` for each record in `bytes` (which end at a record boundary or at the end
/// of the input); `after_cr` tells whether the byte before `at` is a `\r`.
pub(super) fn scan_all(
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
pub(super) fn ends_inside_quotes(raw: &[u8], delimiter: u8) -> bool {
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
