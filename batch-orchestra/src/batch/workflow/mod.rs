//! The batch workflow, generic over a pipeline and monomorphised once per pipeline type.
//!
//! One run of the workflow:
//! 1. asks the `plan` activity for the boundaries of the next batches (many per call, so one
//!    server round trip feeds many batches), while earlier batches are processed;
//! 2. keeps up to `max_in_flight` `process` activities running in a sliding window: the first
//!    to finish frees a slot (`window.rs`);
//! 3. records a batch that fails for good as a failed batch and goes on, up to
//!    `max_failed_batches` (`failures.rs`);
//! 4. after `max_batches_per_run` batches, or when the server suggests it, drains the window
//!    and continues as new with a bounded carried state (`carry.rs`);
//! 5. on completion, at continue-as-new, on failure and on cancellation, saves the report with
//!    the `snapshot` activity when the request asks for it.
//!
//! Signals and the progress query are in `handlers.rs`. History holds configs, offsets and
//! counts, never records.

use temporalio_sdk::{ApplicationFailure, WorkflowContext, WorkflowTermination};

mod carry;
pub(crate) mod failures;
pub(crate) mod job;
mod window;

use crate::batch::{JobReport, Progress};
use crate::batch::{ReportOf, RequestOf};
use crate::failure::Stop;
use crate::job::{Batch, Control, SET_MAX_IN_FLIGHT_SIGNAL, SET_RATE_SIGNAL, Steer, workflow_glue};
use crate::job::{InFlight, JobStatus, Outage};
use crate::job::{PAUSE_SIGNAL, RESUME_SIGNAL};
use crate::pipeline::{OffsetOf, Pipeline};
use job::Job;
use window::Next;

/// The workflow of pipeline `P`: one concrete workflow type per pipeline.
pub struct PipelineWorkflow<P: Pipeline> {
    request: Option<RequestOf<P>>,
    report: ReportOf<P>,
    in_flight: u32,
    running: Vec<InFlight>,
    max_in_flight: u32,
    paused: bool,
    stuck_after_ms: u64,
    max_records_per_s: Option<u32>,
    records_planned: u64,
    planning_done: bool,
    outage: Option<Outage>,
}

impl<P: Pipeline> PipelineWorkflow<P> {
    /// The state before the first activation: signals may arrive in it, so the carried
    /// state is set before they apply.
    fn new(input: Option<RequestOf<P>>) -> Self {
        let (report, paused, max_in_flight, max_records_per_s) = match &input {
            Some(req) => match &req.state {
                Some(carried) => (
                    carried.report.clone(),
                    carried.paused,
                    carried.max_in_flight,
                    carried.max_records_per_s,
                ),
                None => (
                    JobReport::new(req.workflow_id(), P::NAMES.workflow, req.start_at.clone())
                        .quarantined_in(req.quarantine.clone()),
                    false,
                    req.max_in_flight,
                    req.max_records_per_s,
                ),
            },
            None => (JobReport::new("", P::NAMES.workflow, None), false, 1, None),
        };
        let stuck_after_ms = input
            .as_ref()
            .map_or(0, |r| r.stuck_after.as_millis() as u64);
        Self {
            request: input,
            report,
            in_flight: 0,
            running: Vec::new(),
            max_in_flight: max_in_flight.max(1),
            paused,
            stuck_after_ms,
            max_records_per_s,
            records_planned: 0,
            planning_done: false,
            outage: None,
        }
    }
}

impl<P: Pipeline> Steer for PipelineWorkflow<P> {
    const SIGNALS: &'static [&'static str] = &[
        PAUSE_SIGNAL,
        RESUME_SIGNAL,
        SET_MAX_IN_FLIGHT_SIGNAL,
        SET_RATE_SIGNAL,
    ];
    type Progress = Progress<OffsetOf<P>>;

    fn steer(&mut self, control: Control) {
        match control {
            Control::Pause => self.paused = true,
            Control::Resume => self.paused = false,
            Control::SetMaxInFlight(n) => self.max_in_flight = n.max(1),
            Control::SetRate(n) => self.max_records_per_s = (n > 0).then_some(n),
            Control::SetMaxConcurrentShards(_) => {}
        }
    }

    fn progress(&self) -> Progress<OffsetOf<P>> {
        Progress {
            report: self.report.clone(),
            in_flight: self.in_flight,
            max_in_flight: self.max_in_flight,
            paused: self.paused,
            running: self.running.clone(),
            stuck_after_ms: self.stuck_after_ms,
            max_records_per_s: self.max_records_per_s,
            records_planned: self.records_planned,
            planning_done: self.planning_done,
            outage: self.outage.clone(),
        }
    }
}

workflow_glue!(PipelineWorkflow, Batch, run_job);

/// Runs one workflow run of a job to completion, failure, cancellation or continue-as-new.
async fn run_job<P: Pipeline>(
    ctx: &WorkflowContext<PipelineWorkflow<P>>,
) -> Result<ReportOf<P>, WorkflowTermination> {
    let req = ctx
        .state(|w| w.request.clone())
        .map(|r| scheduled_run::<P>(ctx.workflow_id(), r));
    let req = crate::failure::checked_request(req, |r| r.validate())?;
    let segments = carry::segments::<P>(&req);
    let begins = req.incremental.is_some() && req.state.is_none() && req.redrive.is_none();
    let mut job = carry::start(ctx, req, &segments);
    job.report.runs += 1;
    job.report.status = JobStatus::Running;
    job.publish(&[]);
    if begins && let Err(stop) = job.begin().await {
        return Err(fail(job, stop).await);
    }
    match window::drive(&mut job, &segments).await {
        Ok(Next::Done) => {
            job.touch();
            job.report.status = if job.report.failed_batches > 0 {
                JobStatus::CompletedWithFailures
            } else {
                JobStatus::Completed
            };
            job.publish(&[]);
            if let Err(stop) = job.snapshot().await {
                return Err(fail(job, stop).await);
            }
            Ok(job.report)
        }
        Ok(Next::ContinueAsNew) => {
            job.touch();
            job.publish(&[]);
            if let Err(stop) = job.snapshot().await {
                return Err(fail(job, stop).await);
            }
            // A cancel that came while the report was being saved ends the job here.
            if ctx.cancellation_token().is_cancelled() {
                job.report.status = JobStatus::Cancelled;
                job.publish(&[]);
                let _ = job.snapshot().await;
                return Err(WorkflowTermination::cancelled_with_details(job.report));
            }
            carry::continue_as_new(ctx, job)
        }
        Ok(Next::Cancelled) => {
            job.touch();
            job.report.status = JobStatus::Cancelled;
            job.publish(&[]);
            // Cancelled stays cancelled even if saving the report fails.
            let _ = job.snapshot().await;
            Err(WorkflowTermination::cancelled_with_details(job.report))
        }
        Err(stop) => Err(fail(job, stop).await),
    }
}

/// A schedule starts its runs as `<workflow id>-<scheduled time>` with the request it holds:
/// a new run whose workflow id extends the request's job id that way takes the workflow id as
/// its job id, so each run has its own record ids, report and place in its sync.
fn scheduled_run<P: Pipeline>(workflow_id: &str, mut req: RequestOf<P>) -> RequestOf<P> {
    let extends = workflow_id
        .strip_prefix(req.job_id.as_str())
        .is_some_and(|rest| rest.starts_with('-'));
    if req.state.is_none() && req.redrive.is_none() && extends {
        req.job_id = workflow_id.to_owned();
    }
    req
}

/// Fails the job with its original cause, saving a failed report first when asked to. The
/// failure carries the report (its counts, failed ranges and how far the job got) as its
/// details, so a client can show it and redrive the job.
async fn fail<P: Pipeline>(mut job: Job<'_, P>, stop: Stop) -> WorkflowTermination {
    job.touch();
    job.report.status = JobStatus::Failed;
    job.report.failure = Some(stop.message.clone());
    job.report.stopped_at = Some(job.stopped_at.clone());
    job.publish(&[]);
    // The job fails with its own cause even if saving the report fails too.
    let _ = job.snapshot().await;
    WorkflowTermination::failed_application(
        ApplicationFailure::builder(stop.message)
            .type_name(stop.kind.to_owned())
            .non_retryable(true)
            .details(job.report)
            .build(),
    )
}
