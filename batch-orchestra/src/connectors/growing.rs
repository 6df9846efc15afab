//! Files that only grow (logs, exports appended to): the window an incremental run of a CSV
//! or JSON Lines file reads, and the cursor that tells a grown file from a rewritten one.
//!
//! A run's cursor is the byte and line where its window ended, with a check of the bytes
//! before it (a hash of the first and the last 64 KiB). The next run resumes there when the
//! file is at least that long and those bytes are unchanged; a file that is shorter, or whose
//! checked bytes changed, was rewritten and is read from the start as a new file. A window
//! ends after the last complete record, so a record being appended when the run begins is
//! read whole by the next run.

use serde::{Deserialize, Serialize};

use super::input::{ByteInput, LineOffset};
use crate::connector::{Bounds, Cursor};
use crate::error::ConnectorError;

/// Bytes checked at each end of what a cursor has read.
const CHECKED: u64 = 64 << 10;

/// The part of a growing file one incremental run reads: `[start, end)`, and the check of
/// the bytes before `end` that the file must still hold when the run reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileWindow {
    /// Where the run starts: the previous run's end, or the file's start.
    pub start: LineOffset,
    /// Where the run ends: after the last complete record when the run began.
    pub end: LineOffset,
    /// The check of the bytes before `end` (see [`FileCursor::check`]).
    pub check: String,
}

/// An incremental run's cursor over a growing file, as its report carries it:
/// `{"byte": 5120, "line": 81, "check": "…"}`. A cursor written by hand may leave out
/// `check`; its byte must then be where a record starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCursor {
    /// The byte the next run starts at.
    pub byte: u64,
    /// Its line, from 1.
    #[serde(default = "first_line")]
    pub line: u64,
    /// A hash of the first and the last 64 KiB before `byte`: what tells a file that only
    /// grew from one rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

fn first_line() -> u64 {
    1
}

impl FileCursor {
    fn parse(cursor: &Cursor, role: &str) -> Result<Self, ConnectorError> {
        serde_json::from_value(cursor.clone()).map_err(|e| {
            ConnectorError::config(format!(
                "the {role} cursor {cursor} is not a file cursor ({e}): write one a run reported, like {{\"byte\": 5120, \"line\": 81}}"
            ))
        })
    }

    fn offset(&self) -> LineOffset {
        LineOffset {
            byte: self.byte,
            line: self.line,
        }
    }

    /// Whether `input` still holds what this cursor read: it is long enough and the checked
    /// bytes are the same.
    async fn fits(&self, input: &impl ByteInput) -> Result<bool, ConnectorError> {
        if self.byte > input.len() {
            return Ok(false);
        }
        match &self.check {
            Some(check) => Ok(*check == check_of(input, self.byte).await?),
            None => Ok(true),
        }
    }
}

/// The check of `input`'s bytes before `end`: a 64-bit FNV-1a hash of the first and the last
/// 64 KiB (the whole prefix when shorter), as 16 hex digits.
pub(crate) async fn check_of(input: &impl ByteInput, end: u64) -> Result<String, ConnectorError> {
    let head = input.read(0, end.min(CHECKED)).await?;
    let tail_start = end.saturating_sub(CHECKED).max(head.len() as u64);
    let tail = input.read(tail_start, end).await?;
    let hash = crate::connector::fnv1a(head.iter().chain(&tail).chain(&end.to_le_bytes()));
    Ok(format!("{hash:016x}"))
}

/// Where a run over `input` starts and, for a range run, ends: the earlier of the last run's
/// end (when the file only grew since) and a rerun's `from`; the range's `to`. `None` starts
/// at the file's first record.
pub(crate) async fn bounds_in(
    input: &impl ByteInput,
    bounds: &Bounds,
) -> Result<(Option<LineOffset>, Option<LineOffset>), ConnectorError> {
    let name = input.name();
    let mut start: Option<LineOffset> = None;
    if let Some(previous) = &bounds.previous {
        let previous = FileCursor::parse(previous, "last run's")?;
        if previous.fits(input).await? {
            start = Some(previous.offset());
        } else {
            tracing::warn!(
                file = name,
                cursor = previous.byte,
                "the file was rewritten since the last run (shorter, or its bytes changed): reading it whole, as a new file"
            );
        }
    }
    if let Some(from) = &bounds.from {
        let from = FileCursor::parse(from, "starting")?;
        if !from.fits(input).await? {
            return Err(ConnectorError::config(format!(
                "the starting cursor (byte {}) does not fit `{name}` ({} bytes): the file is shorter or was rewritten since that cursor was written",
                from.byte,
                input.len()
            )));
        }
        start = Some(start.map_or(from.offset(), |s| s.min(from.offset())));
    }
    let end = match &bounds.to {
        Some(to) => {
            let to = FileCursor::parse(to, "ending")?;
            if !to.fits(input).await? {
                return Err(ConnectorError::config(format!(
                    "the ending cursor (byte {}) does not fit `{name}` ({} bytes): the file is shorter or was rewritten since that cursor was written",
                    to.byte,
                    input.len()
                )));
            }
            if let Some(s) = start
                && s.byte > to.byte
            {
                return Err(ConnectorError::config(format!(
                    "the range of `{name}` ends (byte {}) before it starts (byte {})",
                    to.byte, s.byte
                )));
            }
            Some(to.offset())
        }
        None => None,
    };
    Ok((start, end))
}

/// The window `[start, end)` of `input` and the cursor the next run starts from.
pub(crate) async fn window_of(
    input: &impl ByteInput,
    start: LineOffset,
    end: LineOffset,
) -> Result<(FileWindow, Cursor), ConnectorError> {
    let check = check_of(input, end.byte).await?;
    let next = FileCursor {
        byte: end.byte,
        line: end.line,
        check: Some(check.clone()),
    };
    let next = serde_json::to_value(next).map_err(|e| ConnectorError::config(e.to_string()))?;
    Ok((FileWindow { start, end, check }, next))
}

/// The end of the last complete line of `input` at or after `from`: after its `\n`.
pub(crate) async fn last_line_end(
    input: &impl ByteInput,
    from: LineOffset,
) -> Result<LineOffset, ConnectorError> {
    const CHUNK: u64 = 1 << 20;
    let len = input.len();
    let (mut at, mut end) = (from, from);
    while at.byte < len {
        let chunk = input.read(at.byte, len.min(at.byte + CHUNK)).await?;
        for (i, _) in chunk.iter().enumerate().filter(|(_, b)| **b == b'\n') {
            end = LineOffset {
                byte: at.byte + i as u64 + 1,
                line: end.line + 1,
            };
        }
        at.byte += chunk.len() as u64;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::input::LocalFile;

    async fn file(dir: &tempfile::TempDir, text: &str) -> LocalFile {
        let path = dir.path().join("f.jsonl");
        std::fs::write(&path, text).unwrap();
        LocalFile::open(path.to_str().unwrap()).await.unwrap()
    }

    fn cursor(byte: u64, line: u64, check: Option<String>) -> Cursor {
        serde_json::to_value(FileCursor { byte, line, check }).unwrap()
    }

    #[tokio::test]
    async fn a_window_ends_after_the_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let input = file(&dir, "{\"a\":1}\n{\"a\":2}\n{\"a\":").await;
        let end = last_line_end(&input, LineOffset { byte: 0, line: 1 })
            .await
            .unwrap();
        assert_eq!(end, LineOffset { byte: 16, line: 3 });
    }

    #[tokio::test]
    async fn a_grown_file_resumes_where_the_last_run_ended() {
        let dir = tempfile::tempdir().unwrap();
        let before = file(&dir, "one\ntwo\n").await;
        let check = check_of(&before, 8).await.unwrap();
        let after = file(&dir, "one\ntwo\nthree\n").await;
        let bounds = Bounds::after(Some(cursor(8, 3, Some(check))));
        let (start, end) = bounds_in(&after, &bounds).await.unwrap();
        assert_eq!(start, Some(LineOffset { byte: 8, line: 3 }));
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn a_rewritten_or_shorter_file_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let before = file(&dir, "one\ntwo\n").await;
        let check = check_of(&before, 8).await.unwrap();
        let rewritten = file(&dir, "uno\ntwo\nthree\n").await;
        let bounds = Bounds::after(Some(cursor(8, 3, Some(check.clone()))));
        assert_eq!(bounds_in(&rewritten, &bounds).await.unwrap().0, None);
        let shorter = file(&dir, "one\n").await;
        assert_eq!(bounds_in(&shorter, &bounds).await.unwrap().0, None);
    }

    #[tokio::test]
    async fn a_pinned_prefix_stays_current_while_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let whole = file(&dir, "one\ntwo\n").await;
        let check = check_of(&whole, 8).await.unwrap();
        let path = dir.path().join("f.jsonl");
        let path = path.to_str().unwrap();
        let prefix = LocalFile::open_prefix(path, 8, &check).await.unwrap();
        let version = prefix.version();
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"three\n"))
            .unwrap();
        assert!(
            prefix.is_current().await,
            "an appended file still holds the prefix"
        );
        let reopened = LocalFile::open_prefix(path, 8, &check).await.unwrap();
        assert_eq!(
            reopened.version(),
            version,
            "the same prefix, the same record ids"
        );
        assert_eq!(reopened.read(0, 8).await.unwrap(), b"one\ntwo\n");
        assert_eq!(reopened.len(), 8);
        std::fs::write(path, "uno\ntwo\nthree\n").unwrap();
        let err = LocalFile::open_prefix(path, 8, &check).await.err().unwrap();
        assert!(err.to_string().contains("was rewritten"), "{err}");
        std::fs::remove_file(path).unwrap();
        std::fs::write(path, "one\ntwo\nthree\n").unwrap();
        assert!(
            !prefix.is_current().await,
            "a file replaced by another is not current"
        );
    }

    #[tokio::test]
    async fn a_range_that_does_not_fit_the_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = file(&dir, "one\ntwo\n").await;
        let past_the_end = Bounds::default().to(Some(cursor(99, 9, None)));
        let err = bounds_in(&input, &past_the_end).await.unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        let backwards = Bounds::default()
            .from(Some(cursor(8, 3, None)))
            .to(Some(cursor(4, 2, None)));
        let err = bounds_in(&input, &backwards).await.unwrap_err();
        assert!(err.to_string().contains("before it starts"), "{err}");
        let not_a_cursor = Bounds::default().from(Some(serde_json::json!({"value": 3})));
        let err = bounds_in(&input, &not_a_cursor).await.unwrap_err();
        assert!(err.to_string().contains("not a file cursor"), "{err}");
    }
}
