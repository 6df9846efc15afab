//! The record of failed batches (dead letters) that lets a batch job go on without them.

use crate::batch::{FailedBatch, JobReport};
use crate::connector::{BatchRange, Offset};
use crate::failure::{Cause, FAILED_BATCH_LIMIT_TYPE, Stop};

/// Failed ranges kept in the report (adjacent failures merge into one range). A job whose
/// failures are scattered over more ranges than this fails: it has no single cause to fix.
pub(crate) const MAX_FAILED_RANGES: usize = 256;
/// Longest failure message kept per failed range, in bytes.
const MAX_FAILURE_MESSAGE: usize = 500;

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
                cause(crate::failure::TRANSIENT_ERROR_TYPE),
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
        record_failed(
            &mut report,
            &range(8),
            cause(crate::failure::BATCH_ERROR_TYPE),
            1,
            0,
            10,
        )
        .unwrap_or_else(|_| panic!("under the limit"));
        assert_eq!(report.failed.len(), 3, "another kind is another range");
        let stop = record_failed(
            &mut report,
            &range(20),
            cause(crate::failure::BATCH_ERROR_TYPE),
            1,
            0,
            5,
        )
        .expect_err("past the limit");
        assert_eq!(stop.kind, FAILED_BATCH_LIMIT_TYPE);
        assert!(
            stop.message.contains("batch 20 (records 200-209)"),
            "{}",
            stop.message
        );
    }
}
