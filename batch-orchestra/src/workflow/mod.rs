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

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use std::any::Any;
use std::marker::PhantomData;

use temporalio_common::data_converters::PayloadConverter;
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::{HasWorkflowDefinition, WorkflowDefinition};
use temporalio_sdk::workflow_interceptors::WorkflowOutputValue;
use temporalio_sdk::workflows::{
    ExecutableQuery, ExecutableSyncSignal, WorkflowDefinitionDescriptor, WorkflowError,
    WorkflowImplementation,
};
use temporalio_sdk::{
    ApplicationFailure, WorkflowContext, WorkflowContextView, WorkflowTermination,
};

mod carry;
mod failures;
mod handlers;
mod job;
mod sharded;
mod stream;
mod window;

pub use handlers::{
    PAUSE_SIGNAL, PROGRESS_QUERY, PauseSignal, ProgressQuery, RESUME_SIGNAL, ResumeSignal,
    SET_MAX_IN_FLIGHT_SIGNAL, SET_RATE_SIGNAL, SetMaxInFlightSignal, SetRateSignal,
};

pub use sharded::{
    SET_MAX_CONCURRENT_SHARDS_SIGNAL, SetMaxConcurrentShardsSignal, ShardedPauseSignal,
    ShardedProgressQuery, ShardedResumeSignal, ShardedRun, ShardedSetMaxInFlightSignal,
    ShardedSetRateSignal, ShardedWorkflow,
};

pub use stream::{
    StreamPauseSignal, StreamProgressQuery, StreamResumeSignal, StreamRun, StreamWorkflow,
};

use crate::model::{InFlight, JobReport, JobStatus, Outage, Progress};
use crate::pipeline::{OffsetOf, Pipeline, ReportOf, RequestOf};
use failures::Stop;
use handlers::{decode, unknown_handler};
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

/// The run marker of pipeline `P`'s workflow, for typed client calls.
pub struct JobRun<P>(PhantomData<fn() -> P>);

impl<P: Pipeline> WorkflowDefinition for JobRun<P> {
    type Input = RequestOf<P>;
    type Output = ReportOf<P>;
    fn name(&self) -> &str {
        P::NAMES.workflow
    }
}

impl<P: Pipeline> HasWorkflowDefinition for JobRun<P> {
    type Run = Self;
}

impl<P> JobRun<P> {
    /// The marker.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<P> Default for JobRun<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Pipeline> WorkflowImplementation for PipelineWorkflow<P> {
    type Run = JobRun<P>;
    const HAS_INIT: bool = true;
    const INIT_TAKES_INPUT: bool = true;

    fn name() -> &'static str {
        P::NAMES.workflow
    }

    fn definition() -> WorkflowDefinitionDescriptor {
        WorkflowDefinitionDescriptor {
            workflow_type: P::NAMES.workflow.to_owned(),
            has_init: true,
            init_takes_input: true,
            signals: vec![
                PAUSE_SIGNAL.into(),
                RESUME_SIGNAL.into(),
                SET_MAX_IN_FLIGHT_SIGNAL.into(),
                SET_RATE_SIGNAL.into(),
            ],
            queries: vec![PROGRESS_QUERY.into()],
            updates: vec![],
        }
    }

    fn init(_ctx: WorkflowContextView, input: Option<RequestOf<P>>) -> Self {
        // Signals may arrive in the first activation: set the carried state before they apply.
        let (report, paused, max_in_flight, max_records_per_s) = match &input {
            Some(req) => match &req.state {
                Some(carried) => (
                    carried.report.clone(),
                    carried.paused,
                    carried.max_in_flight,
                    carried.max_records_per_s,
                ),
                None => (
                    JobReport::new(req.workflow_id(), P::NAMES.workflow, req.start_at.clone()),
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

    fn run(
        ctx: WorkflowContext<Self>,
        _input: Option<RequestOf<P>>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        async move {
            let report = run_job::<P>(&ctx).await?;
            Ok(Box::new(report) as Box<dyn WorkflowOutputValue>)
        }
        .boxed_local()
    }

    fn decode_signal_input(
        name: &str,
        payloads: Payloads,
        converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        match name {
            PAUSE_SIGNAL | RESUME_SIGNAL => decode::<()>(payloads.payloads, converter),
            SET_MAX_IN_FLIGHT_SIGNAL | SET_RATE_SIGNAL => {
                decode::<u32>(payloads.payloads, converter)
            }
            _ => Ok(None),
        }
    }

    fn dispatch_signal(
        ctx: WorkflowContext<Self>,
        name: &str,
        input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<(), WorkflowError>> {
        match name {
            PAUSE_SIGNAL => <Self as ExecutableSyncSignal<PauseSignal<P>>>::dispatch(ctx, input),
            RESUME_SIGNAL => <Self as ExecutableSyncSignal<ResumeSignal<P>>>::dispatch(ctx, input),
            SET_MAX_IN_FLIGHT_SIGNAL => {
                <Self as ExecutableSyncSignal<SetMaxInFlightSignal<P>>>::dispatch(ctx, input)
            }
            SET_RATE_SIGNAL => {
                <Self as ExecutableSyncSignal<SetRateSignal<P>>>::dispatch(ctx, input)
            }
            other => futures::future::ready(Err(unknown_handler("signal", other))).boxed_local(),
        }
    }

    fn decode_query_input(
        name: &str,
        payloads: &Payloads,
        converter: &PayloadConverter,
    ) -> Result<Option<Box<dyn Any>>, WorkflowError> {
        match name {
            PROGRESS_QUERY => decode::<()>(payloads.payloads.clone(), converter),
            _ => Ok(None),
        }
    }

    fn dispatch_query(
        &self,
        ctx: WorkflowContextView,
        name: &str,
        input: Box<dyn Any>,
    ) -> Result<Box<dyn WorkflowOutputValue>, WorkflowError> {
        match name {
            PROGRESS_QUERY => {
                <Self as ExecutableQuery<ProgressQuery<P>>>::dispatch(self, &ctx, input)
            }
            other => Err(unknown_handler("query", other)),
        }
    }

    fn dispatch_update(
        _ctx: WorkflowContext<Self>,
        name: &str,
        _input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowError>> {
        futures::future::ready(Err(unknown_handler("update", name))).boxed_local()
    }

    fn validate_update(
        &self,
        _ctx: WorkflowContextView,
        name: &str,
        _input: Box<dyn Any>,
    ) -> Result<(), WorkflowError> {
        Err(unknown_handler("update", name))
    }
}

/// Runs one workflow run of a job to completion, failure, cancellation or continue-as-new.
async fn run_job<P: Pipeline>(
    ctx: &WorkflowContext<PipelineWorkflow<P>>,
) -> Result<ReportOf<P>, WorkflowTermination> {
    let req = job::checked_request(ctx.state(|w| w.request.clone()), |r| r.validate())?;
    let segments = carry::segments::<P>(&req);
    let mut job = carry::start(ctx, req, &segments);
    job.report.runs += 1;
    job.report.status = JobStatus::Running;
    job.publish(&[]);
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
