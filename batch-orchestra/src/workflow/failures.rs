//! Failure bookkeeping: why a job stops, the original cause of an activity failure, and the
//! record of failed batches (dead letters) that lets a job go on without them.

use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_sdk::ActivityExecutionError;

use crate::activities::ATTEMPT_PREFIX;
use crate::connector::{BatchRange, Offset};
use crate::error::{
    ACTIVITY_FAILED_TYPE, BATCH_ERROR_TYPE, CONFIG_ERROR_TYPE, FAILED_BATCH_LIMIT_TYPE,
    TRANSIENT_ERROR_TYPE,
};
use crate::model::{FailedBatch, JobReport};

/// Failed ranges kept in the report (adjacent failures merge into one range). A job whose
/// failures are scattered over more ranges than this fails: it has no single cause to fix.
pub(crate) const MAX_FAILED_RANGES: usize = 256;
/// Longest failure message kept per failed range, in bytes.
const MAX_FAILURE_MESSAGE: usize = 500;

/// Why a job stops early.
pub(super) struct Stop {
    pub kind: &'static str,
    pub message: String,
}

impl Stop {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The original cause of an activity failure, unwrapped from Temporal's nesting.
#[derive(Clone)]
pub(super) struct Cause {
    /// The failure type: configuration, batch, transient, or a timeout.
    pub kind: &'static str,
    /// The deepest message, without the attempt suffix.
    pub message: String,
    /// The attempt it failed at, when the activity said so.
    pub attempt: Option<u32>,
}

impl Cause {
    pub fn of(err: &ActivityExecutionError) -> Self {
        let Some(failure) = err.failure() else {
            return Self {
                kind: ACTIVITY_FAILED_TYPE,
                message: err.to_string(),
                attempt: None,
            };
        };
        let (kind, message) = root_cause(failure);
        let (message, attempt) = split_attempt(message);
        Self {
            kind,
            message,
            attempt,
        }
    }

    /// A stop with `context` (what was being done) before the cause.
    pub fn stop(self, context: impl std::fmt::Display) -> Stop {
        let kind = if self.kind == CONFIG_ERROR_TYPE {
            CONFIG_ERROR_TYPE
        } else {
            ACTIVITY_FAILED_TYPE
        };
        Stop::new(kind, format!("{context}: {}", self.message))
    }
}

/// The deepest message in a failure chain, and the failure type that matters most.
pub(super) fn root_cause(failure: &Failure) -> (&'static str, String) {
    let mut kind = ACTIVITY_FAILED_TYPE;
    let mut message = message_of(failure);
    let mut current = Some(failure);
    while let Some(f) = current {
        let text = message_of(f);
        if !text.is_empty() {
            message = text;
        }
        match &f.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(info)) => {
                for known in [CONFIG_ERROR_TYPE, BATCH_ERROR_TYPE, TRANSIENT_ERROR_TYPE] {
                    if info.r#type == known && kind != CONFIG_ERROR_TYPE {
                        kind = known;
                    }
                }
            }
            Some(FailureInfo::TimeoutFailureInfo(_)) => {
                kind = "Timeout";
                message = format!(
                    "the activity timed out ({}): its worker died or stopped heartbeating",
                    f.message
                );
            }
            _ => {}
        }
        current = f.cause.as_deref();
    }
    (kind, message)
}

/// Records each of `ranges` as failed with `cause`; past the limit, the stop of the last
/// (whose message counts them all).
pub(super) fn record_all_failed<O: Offset>(
    report: &mut JobReport<O>,
    ranges: &[BatchRange<O>],
    cause: &Cause,
    attempts: u32,
    now_ms: u64,
    max_failed_batches: u64,
) -> Result<(), Stop> {
    let mut recorded = Ok(());
    for range in ranges {
        let r = record_failed(
            report,
            range,
            cause.clone(),
            attempts,
            now_ms,
            max_failed_batches,
        );
        if r.is_err() {
            recorded = r;
        }
    }
    recorded
}

/// A failure's message. With payload encryption the worker moves it into the failure's
/// encoded attributes (`{"message": ...}`, decrypted by the time the workflow sees it) and
/// leaves "Encoded failure" in its place.
fn message_of(failure: &Failure) -> String {
    let encoded = failure
        .encoded_attributes
        .as_ref()
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
    encoded.unwrap_or_else(|| failure.message.clone())
}

/// Splits ` (attempt 3)` off the end of a message.
fn split_attempt(message: String) -> (String, Option<u32>) {
    if let Some(at) = message.rfind(ATTEMPT_PREFIX)
        && let Some(number) = message[at + ATTEMPT_PREFIX.len()..].strip_suffix(')')
        && let Ok(attempt) = number.parse()
    {
        return (message[..at].to_owned(), Some(attempt));
    }
    (message, None)
}

/// Records `range` as failed with `cause`, merging it with an adjacent failed range of the
/// same kind, and stops the job past `max_failed_batches` or [`MAX_FAILED_RANGES`].
pub(super) fn record_failed<O: Offset>(
    report: &mut JobReport<O>,
    range: &BatchRange<O>,
    cause: Cause,
    attempts: u32,
    now_ms: u64,
    max_failed_batches: u64,
) -> Result<(), Stop> {
    report.failed_batches += 1;
    let mut message = cause.message;
    if message.len() > MAX_FAILURE_MESSAGE {
        let mut cut = MAX_FAILURE_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    let entry = FailedBatch {
        first_batch: range.index,
        batches: 1,
        first_record: range.first_record,
        records: range.records,
        start: range.start.clone(),
        end: range.end.clone(),
        kind: cause.kind.to_owned(),
        message,
        attempts: cause.attempt.unwrap_or(attempts),
        failed_at_ms: now_ms,
    };
    let described = describe_one(range);
    let failed = &mut report.failed;
    // Keep the list in batch order, whatever order batches fail in, and merge neighbours.
    let at = failed.partition_point(|f| f.first_batch < entry.first_batch);
    failed.insert(at, entry.clone());
    let mut i = at.saturating_sub(1);
    while i + 1 < failed.len() && i <= at {
        let (a, b) = (&failed[i], &failed[i + 1]);
        if a.first_batch + a.batches == b.first_batch && a.kind == b.kind {
            let b = failed.remove(i + 1);
            let a = &mut failed[i];
            a.batches += b.batches;
            a.records += b.records;
            a.end = b.end;
        } else {
            i += 1;
        }
    }
    if report.failed_batches > max_failed_batches {
        return Err(Stop::new(
            FAILED_BATCH_LIMIT_TYPE,
            format!(
                "{} batches failed, more than max_failed_batches = {max_failed_batches}; the last: {described}: {}",
                report.failed_batches, entry.message
            ),
        ));
    }
    if report.failed.len() > MAX_FAILED_RANGES {
        return Err(Stop::new(
            FAILED_BATCH_LIMIT_TYPE,
            format!(
                "failed batches are scattered over more than {MAX_FAILED_RANGES} separate ranges; the last: {described}: {}",
                entry.message
            ),
        ));
    }
    Ok(())
}

/// `batch 3 (records 3000-3999)`, for messages.
pub(super) fn describe_one<O: Offset>(range: &BatchRange<O>) -> String {
    format!(
        "batch {} (records {}-{})",
        range.index,
        range.first_record,
        (range.first_record + range.records).saturating_sub(1)
    )
}

/// `batch 3 (records 3000-3999)`, or `batches 3-6 (records 3000-6999)`, for messages.
pub(super) fn describe<O: Offset>(group: &[BatchRange<O>]) -> String {
    match (group.first(), group.last()) {
        (Some(a), Some(b)) if a.index == b.index => describe_one(a),
        (Some(a), Some(b)) => format!(
            "batches {}-{} (records {}-{})",
            a.index,
            b.index,
            a.first_record,
            (b.first_record + b.records).saturating_sub(1)
        ),
        _ => "an empty group of batches".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(index: u64) -> BatchRange<u64> {
        BatchRange {
            index,
            start: index * 10,
            end: index * 10 + 10,
            first_record: index * 10,
            records: 10,
        }
    }

    fn cause(kind: &'static str) -> Cause {
        Cause {
            kind,
            message: "sink down".into(),
            attempt: Some(5),
        }
    }

    #[test]
    fn adjacent_failures_merge_and_the_limit_stops_the_job() {
        let mut report = JobReport::<u64>::new("j", "p", None);
        for i in [3, 1, 2, 7] {
            record_failed(
                &mut report,
                &range(i),
                cause(TRANSIENT_ERROR_TYPE),
                1,
                0,
                10,
            )
            .unwrap_or_else(|_| panic!("under the limit"));
        }
        assert_eq!(report.failed_batches, 4);
        let ranges: Vec<_> = report
            .failed
            .iter()
            .map(|f| (f.first_batch, f.batches, f.start, f.end, f.records))
            .collect();
        assert_eq!(ranges, vec![(1, 3, 10, 40, 30), (7, 1, 70, 80, 10)]);
        assert_eq!(report.failed[0].attempts, 5);
        record_failed(&mut report, &range(8), cause(BATCH_ERROR_TYPE), 1, 0, 10)
            .unwrap_or_else(|_| panic!("under the limit"));
        assert_eq!(report.failed.len(), 3, "another kind is another range");
        let stop = record_failed(&mut report, &range(20), cause(BATCH_ERROR_TYPE), 1, 0, 5)
            .expect_err("past the limit");
        assert_eq!(stop.kind, FAILED_BATCH_LIMIT_TYPE);
        assert!(
            stop.message.contains("batch 20 (records 200-209)"),
            "{}",
            stop.message
        );
    }

    #[test]
    fn the_attempt_suffix_is_read_back() {
        assert_eq!(
            split_attempt("sink down (attempt 3)".into()),
            ("sink down".into(), Some(3))
        );
        assert_eq!(
            split_attempt("sink down".into()),
            ("sink down".into(), None)
        );
    }
}
