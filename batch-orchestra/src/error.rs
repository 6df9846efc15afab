//! Errors: what went wrong with a connector, a record, or a job.
//!
//! Three kinds of failure are kept apart because they call for different reactions:
//! - a [`RecordError`] concerns one record (a ragged row, a value that does not deserialize):
//!   it is reported with its position and the batch goes on;
//! - a [`ConnectorError`] of kind [`ErrorKind::Transient`] (a sink that is down) is retried
//!   with back-off by Temporal;
//! - a [`ConnectorError`] of kind [`ErrorKind::Batch`] concerns one batch and is deterministic
//!   (a range that no longer holds what the plan counted): the batch is recorded as failed at
//!   once, without retries, and the job goes on with the others;
//! - a [`ConnectorError`] of kind [`ErrorKind::Config`] (a missing file, a bad URL, bad
//!   credentials) fails the job at once: retrying cannot fix it.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::record::Position;

/// How a [`ConnectorError`] should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The configuration is wrong (missing file, bad URL, bad credentials): fail the job now.
    Config,
    /// The infrastructure failed (server down, timeout): retry with back-off.
    Transient,
    /// This batch cannot be processed and retrying will not change that (its range no longer
    /// holds what the plan counted): record the batch as failed and go on with the others.
    Batch,
}

/// An error raised by a source or a sink while building, planning, reading or writing.
///
/// ```
/// use batch_orchestra::{ConnectorError, ErrorKind};
///
/// let err = ConnectorError::config("cannot open data/in.csv: No such file or directory");
/// assert_eq!(err.kind(), ErrorKind::Config);
/// assert!(err.to_string().contains("data/in.csv"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorError {
    kind: ErrorKind,
    message: String,
}

impl ConnectorError {
    /// A configuration error: the job fails at once, without retries.
    pub fn config(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Config,
            message: message.into(),
        }
    }

    /// An infrastructure error: the activity is retried with back-off.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }

    /// A deterministic error of one batch: recorded as a failed batch at once, not retried.
    pub fn batch(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Batch,
            message: message.into(),
        }
    }

    /// Classifies an I/O error on `what` (a path or URL): missing files and denied access are
    /// configuration errors, everything else is transient.
    pub fn io(what: impl fmt::Display, err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let message = format!("{what}: {err}");
        match err.kind() {
            K::NotFound | K::PermissionDenied | K::InvalidInput | K::IsADirectory => {
                Self::config(message)
            }
            _ => Self::transient(message),
        }
    }

    /// The kind of error, which decides whether it is retried.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, naming the input at fault.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message with context, keeping the kind.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for ConnectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectorError {}

/// A problem with one record: reported with its position, counted, and skipped.
///
/// ```
/// use batch_orchestra::{Position, RecordError};
///
/// let err = RecordError::new(Position::at(4).line(6).byte(120), "expected 3 fields, found 2");
/// assert_eq!(err.to_string(), "record 4 (line 6, byte 120): expected 3 fields, found 2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordError {
    /// Where the record sits in the source.
    pub position: Position,
    /// What is wrong with it.
    pub message: String,
}

/// Longest record-error message kept, in bytes: messages travel in workflow history, so a
/// connector that quotes a field value cannot carry much of it there.
pub const MAX_RECORD_ERROR_MESSAGE: usize = 200;

impl RecordError {
    /// A record error at `position`. Messages longer than [`MAX_RECORD_ERROR_MESSAGE`] bytes
    /// are cut (with `...`): name the column and what was expected, not the value.
    pub fn new(position: Position, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_RECORD_ERROR_MESSAGE {
            let mut cut = MAX_RECORD_ERROR_MESSAGE - 3;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        Self { position, message }
    }
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position, self.message)
    }
}

impl std::error::Error for RecordError {}

/// Why a transform rejected a record. The engine adds the record's position and reports it as
/// a [`RecordError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError(pub String);

impl TransformError {
    /// A rejection with a message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self(message.to_string())
    }
}

impl fmt::Display for TransformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransformError {}

impl From<String> for TransformError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for TransformError {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

/// An error seen by a client of a job: starting it, awaiting it, querying or signalling it.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A job with this id is already running; a second start is refused.
    #[error("job `{job_id}` is already running; wait for it, cancel it, or use another job id")]
    AlreadyRunning {
        /// The job id.
        job_id: String,
    },
    /// No job with this id exists.
    #[error("job `{job_id}` was not found")]
    NotFound {
        /// The job id.
        job_id: String,
    },
    /// No schedule with this id exists.
    #[error("schedule `{id}` was not found (`batch-orchestra schedule list` lists them)")]
    ScheduleNotFound {
        /// The schedule id.
        id: String,
    },
    /// A schedule with this id exists already.
    #[error("schedule `{id}` exists already: delete it first, or use another job id")]
    ScheduleExists {
        /// The schedule id.
        id: String,
    },
    /// The job failed. The message is the original cause (for example the connector's error
    /// naming the file and position), not Temporal's nested failure wrapper.
    #[error("job `{job_id}` failed: {message}")]
    Failed {
        /// The job id.
        job_id: String,
        /// The root cause.
        message: String,
        /// The failure type, such as `ConfigError`, `RecordErrorLimit` or `ActivityFailed`.
        kind: String,
        /// The failed job's report as JSON, with status `Failed`: a
        /// [`JobReport`](crate::batch::JobReport) (its counts, failed ranges, `end_offset` and
        /// `stopped_at`), or a sharded or streaming job's report. `None` for jobs whose
        /// workflow failed without one (runs recorded before reports were attached).
        report: Option<Box<serde_json::Value>>,
    },
    /// The job reached the end of its source but some batches failed for good.
    #[error(
        "job `{job_id}` completed with {failed_batches} failed batch(es); first: {first}; rerun them with `redrive`"
    )]
    CompletedWithFailures {
        /// The job id.
        job_id: String,
        /// How many batches failed.
        failed_batches: u64,
        /// The first failed range, described.
        first: String,
    },
    /// The job has no failed batch to rerun, or is not finished.
    #[error("job `{job_id}` cannot be redriven: {reason}")]
    NotRedrivable {
        /// The job id.
        job_id: String,
        /// Why.
        reason: String,
    },
    /// The job was cancelled.
    #[error("job `{job_id}` was cancelled")]
    Cancelled {
        /// The job id.
        job_id: String,
    },
    /// The job was terminated.
    #[error("job `{job_id}` was terminated")]
    Terminated {
        /// The job id.
        job_id: String,
    },
    /// The request was invalid before anything was started.
    #[error("invalid job request: {0}")]
    InvalidRequest(String),
    /// Talking to the Temporal server failed.
    #[error("Temporal server error: {0}")]
    Temporal(String),
    /// The Temporal connection settings cannot be used (an address that does not parse, an
    /// unknown profile, a missing certificate): nothing was sent to a server.
    #[error("Temporal connection settings: {0}")]
    Settings(String),
}

/// Removes the values that serde and csv quote in their messages, so that a record error
/// names what was expected without copying data into workflow history:
/// `invalid type: string "abc", expected u32` becomes `invalid type: a string, expected u32`.
pub(crate) fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    'scan: while !rest.is_empty() {
        // `string "…"`, the value escaped as by `Debug`.
        if let Some(after) = rest.strip_prefix("string \"") {
            let mut chars = after.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        out.push_str("a string");
                        rest = &after[i + 1..];
                        continue 'scan;
                    }
                    _ => {}
                }
            }
            out.push_str("a string");
            break;
        }
        // `integer `5``, `floating point `1.5``, `boolean `true``, `character `c``.
        for (prefix, replacement) in [
            ("integer `", "an integer"),
            ("floating point `", "a floating point number"),
            ("boolean `", "a boolean"),
        ] {
            if let Some(after) = rest.strip_prefix(prefix)
                && let Some(end) = after.find('`')
            {
                out.push_str(replacement);
                rest = &after[end + 1..];
                continue 'scan;
            }
        }
        if let Some(after) = rest.strip_prefix("character `") {
            let mut chars = after.chars();
            chars.next();
            out.push_str("a character");
            rest = chars.as_str().strip_prefix('`').unwrap_or(chars.as_str());
            continue 'scan;
        }
        // serde_derive: "unknown variant `…`, expected one of `a`, `b`".
        if let Some(after) = rest.strip_prefix("unknown variant `") {
            let end = ["`, expected ", "`, there are no variants"]
                .iter()
                .find_map(|close| after.rfind(close))
                .or_else(|| after.rfind('`'));
            out.push_str("unknown variant");
            rest = end.map_or("", |end| &after[end + 1..]);
            continue 'scan;
        }
        // csv: "expected single character but got 3 characters in 'abc'".
        if let Some(after) = rest.strip_prefix(" characters in '") {
            out.push_str(" characters");
            rest = after.rfind('\'').map_or("", |end| &after[end + 1..]);
            continue 'scan;
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_record_error_messages_are_cut_on_a_char_boundary() {
        let long = format!("column `note`: {}", "é".repeat(300));
        let err = RecordError::new(Position::at(1), long);
        assert!(
            err.message.len() <= MAX_RECORD_ERROR_MESSAGE,
            "{}",
            err.message.len()
        );
        assert!(err.message.ends_with("..."));
        assert!(err.message.starts_with("column `note`: é"));
        let short = RecordError::new(Position::at(1), "expected 3 fields, found 2");
        assert_eq!(short.message, "expected 3 fields, found 2");
    }
}
