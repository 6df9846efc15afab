//! Runs and what they carry: starting a run from a new request or from the state the last run
//! carried, and continuing as new with bounded state (counts, a cursor, a bounded error sample
//! and failed-range list), whatever the size of the job.

use temporalio_sdk::{ContinueAsNewOptions, WorkflowContext, WorkflowTermination};

use super::PipelineWorkflow;
use super::job::Job;
use crate::batch::{CarriedState, JobReport, StoppedAt, Stretch};
use crate::batch::{ReportOf, RequestOf};
use crate::job::workflow_ms;
use crate::pipeline::{OffsetOf, Pipeline};

/// A stretch of the source a job covers: the whole source from `start_at`, or, for a
/// redrive, one failed range or a stretch its job had not reached.
pub(super) type Segment<O> = Stretch<O>;

/// The stretches a request covers, in order.
pub(super) fn segments<P: Pipeline>(req: &RequestOf<P>) -> Vec<Segment<OffsetOf<P>>> {
    Stretch::of_job(req.start_at.clone(), req.redrive.as_ref())
}

/// The job at the start of a run: new, or resumed from the carried state.
pub(super) fn start<'a, P: Pipeline>(
    ctx: &'a WorkflowContext<PipelineWorkflow<P>>,
    req: RequestOf<P>,
    segments: &[Segment<OffsetOf<P>>],
) -> Job<'a, P> {
    let mut job = match req.state.clone() {
        Some(c) => {
            // State carried by runs before the cursor was carried: every batch before the
            // report's end offset was done, and batches were numbered by the report's count.
            let (cursor, next_batch) = match c.cursor {
                Some(cursor) => (Some(cursor), c.next_batch),
                None => (c.report.end_offset.clone(), c.report.batches),
            };
            Job {
                ctx,
                report: c.report,
                started_at_ms: c.started_at_ms,
                next_record: c.next_record,
                next_batch,
                throttle_mark: c.throttle_mark,
                cursor,
                segment: c.segment,
                scheduled: 0,
                takes_fingerprint: false,
                stopped_at: StoppedAt::default(),
                activity_token: None,
                req,
            }
        }
        None => {
            let mut report = JobReport::new(req.workflow_id(), P::NAMES.workflow, None)
                .quarantined_in(req.quarantine.clone());
            let first = segments.first();
            report.start_offset = first.and_then(|s| s.start.clone());
            report.end_offset = report.start_offset.clone();
            if let Some(redrive) = &req.redrive {
                report.redrive_of = Some(req.job_id.clone());
                // A redrive writes the ids its job wrote.
                report.input_fingerprint = redrive.input_fingerprint.clone();
            }
            let takes_fingerprint = req.redrive.is_none();
            Job {
                ctx,
                report,
                started_at_ms: workflow_ms(ctx),
                next_record: first.map_or(0, |s| s.first_record),
                next_batch: first.map_or(0, |s| s.first_batch),
                throttle_mark: 0,
                cursor: first.and_then(|s| s.start.clone()),
                segment: 0,
                scheduled: 0,
                takes_fingerprint,
                stopped_at: StoppedAt::default(),
                activity_token: None,
                req,
            }
        }
    };
    // The last run ended at the end of a range (its end offset, or all its records): start
    // the next one.
    while let Some(s) = segments.get(job.segment as usize)
        && s.end.is_some()
        && (s.end == job.cursor
            || s.records
                .is_some_and(|r| job.next_record >= s.first_record + r))
    {
        job.segment += 1;
        if let Some(next) = segments.get(job.segment as usize) {
            job.cursor = next.start.clone();
            job.next_record = next.first_record;
            job.next_batch = next.first_batch;
        }
    }
    // Each run starts drained: everything before its cursor is done.
    job.stopped_at = StoppedAt {
        stretch: job.segment,
        offset: job.cursor.clone(),
        record: job.next_record,
        batch: job.next_batch,
    };
    job
}

/// Ends the run and starts the next one with the job's bounded state.
pub(super) fn continue_as_new<P: Pipeline>(
    ctx: &WorkflowContext<PipelineWorkflow<P>>,
    job: Job<'_, P>,
) -> Result<ReportOf<P>, WorkflowTermination> {
    let (paused, max_in_flight, max_records_per_s) =
        ctx.state(|w| (w.paused, w.max_in_flight, w.max_records_per_s));
    let mut next = job.req.clone();
    next.state = Some(CarriedState {
        report: job.report,
        next_record: job.next_record,
        paused,
        max_in_flight,
        started_at_ms: job.started_at_ms,
        throttle_mark: job.throttle_mark,
        cursor: job.cursor,
        next_batch: job.next_batch,
        segment: job.segment,
        max_records_per_s,
    });
    match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
        Err(termination) => Err(termination),
        Ok(never) => match never {},
    }
}
