//! The batch workflow, generic over a pipeline and monomorphised once per pipeline type.
//!
//! One run of the workflow:
//! 1. asks the `plan` activity for the boundaries of the next batches (many per call, so one
//!    server round trip feeds many batches), while earlier batches are processed;
//! 2. keeps up to `max_in_flight` `process` activities running in a sliding window: the first
//!    to finish frees a slot;
//! 3. after `max_batches_per_run` batches, or when the server suggests it, drains the window
//!    and continues as new with a bounded carried state;
//! 4. on completion, at continue-as-new and on failure, saves the report with the `snapshot`
//!    activity when the request asks for it.
//!
//! History holds configs, offsets and counts, never records.

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use std::any::Any;
use std::collections::{BTreeMap, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, UNIX_EPOCH};

use temporalio_common::data_converters::{
    GenericPayloadConverter, PayloadConverter, SerializationContext, SerializationContextData,
    TemporalDeserializable, WorkflowSerializationContext,
};
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_common::{
    HasWorkflowDefinition, QueryDefinition, RetryPolicy, SignalDefinition, WorkflowDefinition,
};
use temporalio_sdk::workflow_interceptors::WorkflowOutputValue;
use temporalio_sdk::workflows::{
    ExecutableQuery, ExecutableSyncSignal, WorkflowDefinitionDescriptor, WorkflowError,
    WorkflowImplementation,
};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, ContinueAsNewOptions,
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowTermination,
};

use crate::activities::{
    PlanActivity, PlanInput, ProcessActivity, ProcessInput, SnapshotActivity, SnapshotInput,
};
use crate::connector::{BatchRange, Plan, SourceConfig};
use crate::error::{ACTIVITY_FAILED_TYPE, CONFIG_ERROR_TYPE, RECORD_ERROR_LIMIT_TYPE};
use crate::model::{BatchReport, CarriedState, JobReport, JobStatus, Progress, RetrySettings};
use crate::pipeline::{OffsetOf, Pipeline, ReportOf, RequestOf};

/// Name of the query answering a job's [`Progress`].
pub const PROGRESS_QUERY: &str = "progress";
/// Name of the signal that stops new batches from starting (running ones finish).
pub const PAUSE_SIGNAL: &str = "pause";
/// Name of the signal that lets new batches start again.
pub const RESUME_SIGNAL: &str = "resume";
/// Name of the signal that changes how many batches run at once.
pub const SET_MAX_IN_FLIGHT_SIGNAL: &str = "set_max_in_flight";

/// How long the server waits without a heartbeat before it retries an activity elsewhere.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);
/// Failure type of a request the workflow cannot run.
const INVALID_REQUEST_TYPE: &str = "InvalidRequest";
/// Marks a [`Stop`] caused by cancellation of the job: it ends cancelled, not failed.
const CANCELLED: &str = "Cancelled";

/// The workflow of pipeline `P`: one concrete workflow type per pipeline.
pub struct PipelineWorkflow<P: Pipeline> {
    request: Option<RequestOf<P>>,
    report: ReportOf<P>,
    in_flight: u32,
    max_in_flight: u32,
    paused: bool,
}

impl<P: Pipeline> PipelineWorkflow<P> {
    fn progress(&self) -> Progress<OffsetOf<P>> {
        Progress {
            report: self.report.clone(),
            in_flight: self.in_flight,
            max_in_flight: self.max_in_flight,
            paused: self.paused,
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

macro_rules! handler_marker {
    ($(#[$doc:meta])* $marker:ident, $trait:ident, $name:expr, $input:ty $(, $output:ty)?) => {
        $(#[$doc])*
        pub struct $marker<P>(PhantomData<fn() -> P>);

        impl<P> $marker<P> {
            /// The marker.
            pub fn new() -> Self {
                Self(PhantomData)
            }
        }

        impl<P> Default for $marker<P> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<P: Pipeline> $trait for $marker<P> {
            type Workflow = JobRun<P>;
            type Input = $input;
            $(type Output = $output;)?
            fn name(&self) -> &str {
                $name
            }
        }
    };
}

handler_marker!(
    /// The `progress` query.
    ProgressQuery, QueryDefinition, PROGRESS_QUERY, (), Progress<OffsetOf<P>>
);
handler_marker!(
    /// The `pause` signal.
    PauseSignal, SignalDefinition, PAUSE_SIGNAL, ()
);
handler_marker!(
    /// The `resume` signal.
    ResumeSignal, SignalDefinition, RESUME_SIGNAL, ()
);
handler_marker!(
    /// The `set_max_in_flight` signal.
    SetMaxInFlightSignal, SignalDefinition, SET_MAX_IN_FLIGHT_SIGNAL, u32
);

impl<P: Pipeline> ExecutableSyncSignal<PauseSignal<P>> for PipelineWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.paused = true;
    }
}

impl<P: Pipeline> ExecutableSyncSignal<ResumeSignal<P>> for PipelineWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.paused = false;
    }
}

impl<P: Pipeline> ExecutableSyncSignal<SetMaxInFlightSignal<P>> for PipelineWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, input: u32) {
        self.max_in_flight = input.max(1);
    }
}

impl<P: Pipeline> ExecutableQuery<ProgressQuery<P>> for PipelineWorkflow<P> {
    fn handle(
        &self,
        _ctx: &WorkflowContextView,
        _input: (),
    ) -> Result<Progress<OffsetOf<P>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.progress())
    }
}

fn decode<T: TemporalDeserializable + 'static>(
    payloads: Vec<temporalio_common::protos::temporal::api::common::v1::Payload>,
    converter: &PayloadConverter,
) -> Result<Option<Box<dyn Any>>, WorkflowError> {
    let data = SerializationContextData::Workflow(WorkflowSerializationContext::new());
    let ctx = SerializationContext::new(&data, converter);
    let value: T = converter.from_payloads(&ctx, payloads)?;
    Ok(Some(Box::new(value)))
}

fn unknown_handler(kind: &str, name: &str) -> WorkflowError {
    WorkflowError::Execution(format!("unknown {kind} `{name}`").into())
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
            ],
            queries: vec![PROGRESS_QUERY.into()],
            updates: vec![],
        }
    }

    fn init(_ctx: WorkflowContextView, input: Option<RequestOf<P>>) -> Self {
        // Signals may arrive in the first activation: set the carried state before they apply.
        let (report, paused, max_in_flight) = match &input {
            Some(req) => match &req.state {
                Some(carried) => (
                    carried.report.clone(),
                    carried.paused,
                    carried.max_in_flight,
                ),
                None => (
                    JobReport::new(&req.job_id, P::NAMES.workflow, req.start_at.clone()),
                    false,
                    req.max_in_flight,
                ),
            },
            None => (JobReport::new("", P::NAMES.workflow, None), false, 1),
        };
        Self {
            request: input,
            report,
            in_flight: 0,
            max_in_flight: max_in_flight.max(1),
            paused,
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
            SET_MAX_IN_FLIGHT_SIGNAL => decode::<u32>(payloads.payloads, converter),
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

/// What the workflow waits for: a plan or a processed batch.
enum Event<O: crate::connector::Offset> {
    Planned(Result<Plan<O>, ActivityExecutionError>),
    Processed(
        Vec<BatchRange<O>>,
        Result<BatchReport, ActivityExecutionError>,
    ),
}

/// Why a job stops early.
struct Stop {
    kind: &'static str,
    message: String,
}

impl Stop {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn cancelled() -> Self {
        Self::new(CANCELLED, "the job was cancelled")
    }

    /// The original cause of an activity failure, unwrapped from Temporal's nesting.
    fn from_activity(context: String, err: &ActivityExecutionError) -> Self {
        let (kind, message) = match err.failure() {
            Some(failure) => root_cause(failure),
            None => (ACTIVITY_FAILED_TYPE, err.to_string()),
        };
        Self::new(kind, format!("{context}: {message}"))
    }
}

/// The deepest message in a failure chain, and whether it is a configuration error.
fn root_cause(failure: &Failure) -> (&'static str, String) {
    let mut kind = ACTIVITY_FAILED_TYPE;
    let mut message = failure.message.clone();
    let mut current = Some(failure);
    while let Some(f) = current {
        if !f.message.is_empty() {
            message = f.message.clone();
        }
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &f.failure_info
            && info.r#type == CONFIG_ERROR_TYPE
        {
            kind = CONFIG_ERROR_TYPE;
        }
        current = f.cause.as_deref();
    }
    (kind, message)
}

fn workflow_ms<W>(ctx: &WorkflowContext<W>) -> u64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

fn activity_options(settings: Option<&RetrySettings>, timeout: Duration) -> ActivityOptions {
    let settings = settings.cloned().unwrap_or_default();
    let mut non_retryable = settings.non_retryable_error_types;
    non_retryable.push(CONFIG_ERROR_TYPE.to_owned());
    non_retryable.push(INVALID_REQUEST_TYPE.to_owned());
    let policy = RetryPolicy::builder()
        .initial_interval(settings.initial_interval)
        .backoff_coefficient(settings.backoff_coefficient)
        .maximum_interval(settings.maximum_interval)
        .maximum_attempts(settings.maximum_attempts)
        .non_retryable_error_types(non_retryable)
        .build();
    ActivityOptions::with_start_to_close_timeout(timeout)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(policy)
        .build()
}

/// The job's state within one workflow run.
struct Job<'a, P: Pipeline> {
    ctx: &'a WorkflowContext<PipelineWorkflow<P>>,
    req: RequestOf<P>,
    report: ReportOf<P>,
    started_at_ms: u64,
    next_record: u64,
    throttle_mark: u64,
}

impl<'a, P: Pipeline> Job<'a, P> {
    fn options(&self, name: &str, kind: &str) -> ActivityOptions {
        let policies = &self.req.retry_policies;
        activity_options(
            policies.get(name).or_else(|| policies.get(kind)),
            self.req.activity_timeout,
        )
    }

    fn plan(&self, from: Option<OffsetOf<P>>) -> LocalBoxFuture<'a, Event<OffsetOf<P>>> {
        let input = PlanInput {
            source: self.req.source.clone(),
            from,
            batch_size: self.req.batch_size,
            max_batches: self.req.plan_ahead,
        };
        let opts = self.options(P::NAMES.plan, "plan");
        self.ctx
            .execute_activity(PlanActivity::<P>::new(), input, opts)
            .map(Event::Planned)
            .boxed_local()
    }

    fn process(
        &self,
        group: Vec<BatchRange<OffsetOf<P>>>,
    ) -> LocalBoxFuture<'a, Event<OffsetOf<P>>> {
        let input = ProcessInput {
            job_id: self.req.job_id.clone(),
            source: self.req.source.clone(),
            sink: self.req.sink.clone(),
            batches: group.clone(),
            max_error_samples: self.req.max_error_samples,
        };
        let opts = self.options(P::NAMES.process, "process");
        self.ctx
            .execute_activity(ProcessActivity::<P>::new(), input, opts)
            .map(move |result| Event::Processed(group, result))
            .boxed_local()
    }

    fn touch(&mut self) {
        self.report.elapsed_ms = workflow_ms(self.ctx).saturating_sub(self.started_at_ms);
    }

    fn publish(&self, in_flight: u32) {
        let report = self.report.clone();
        self.ctx.state_mut(|w| {
            w.report = report;
            w.in_flight = in_flight;
        });
    }

    fn add(&mut self, batches: u64, batch: BatchReport) -> Result<(), Stop> {
        let r = &mut self.report;
        r.records_read += batch.records_read;
        r.records_written += batch.records_written;
        r.already_present += batch.already_present;
        r.record_errors += batch.record_errors;
        r.batches += batches;
        // Keep the earliest errors by position, whatever order batches finish in.
        r.error_samples.extend(batch.error_samples);
        r.error_samples.sort_by_key(|e| e.position.record);
        r.error_samples
            .truncate(self.req.max_error_samples as usize);
        match self.req.max_record_errors {
            Some(max) if r.record_errors > max => {
                let first = r
                    .error_samples
                    .first()
                    .map(|e| format!("; first: {e}"))
                    .unwrap_or_default();
                Err(Stop::new(
                    RECORD_ERROR_LIMIT_TYPE,
                    format!(
                        "{} record errors, more than max_record_errors = {max}{first}",
                        r.record_errors
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    async fn snapshot(&self) -> Result<(), Stop> {
        let Some(target) = self.req.snapshot.clone() else {
            return Ok(());
        };
        let input = SnapshotInput {
            target,
            report: self.report.clone(),
        };
        let opts = self.options(P::NAMES.snapshot, "snapshot");
        self.ctx
            .execute_activity(SnapshotActivity::<P>::new(), input, opts)
            .await
            .map_err(|e| Stop::from_activity("saving the job report".into(), &e))
    }

    /// Fails the job with its original cause, saving a failed report first when asked to.
    async fn fail(mut self, stop: Stop) -> WorkflowTermination {
        self.touch();
        self.report.status = JobStatus::Failed;
        self.report.failure = Some(stop.message.clone());
        self.publish(0);
        // The job fails with its own cause even if saving the report fails too.
        let _ = self.snapshot().await;
        let message = format!("job `{}`: {}", self.req.job_id, stop.message);
        WorkflowTermination::failed_application(
            ApplicationFailure::builder(message)
                .type_name(stop.kind.to_owned())
                .non_retryable(true)
                .build(),
        )
    }
}

/// Runs one workflow run of a job to completion, failure or continue-as-new.
async fn run_job<P: Pipeline>(
    ctx: &WorkflowContext<PipelineWorkflow<P>>,
) -> Result<ReportOf<P>, WorkflowTermination> {
    let Some(req) = ctx.state(|w| w.request.clone()) else {
        return Err(WorkflowTermination::failed_application(
            ApplicationFailure::non_retryable("the workflow was started without a job request"),
        ));
    };
    if let Err(e) = req.validate() {
        return Err(WorkflowTermination::failed_application(
            ApplicationFailure::builder(e.to_string())
                .type_name(INVALID_REQUEST_TYPE.to_owned())
                .non_retryable(true)
                .build(),
        ));
    }
    let carried: Option<CarriedState<OffsetOf<P>>> = req.state.clone();
    let now = workflow_ms(ctx);
    let mut job = match carried {
        Some(c) => Job {
            ctx,
            report: c.report,
            started_at_ms: c.started_at_ms,
            next_record: c.next_record,
            throttle_mark: c.throttle_mark,
            req,
        },
        None => Job {
            ctx,
            report: JobReport::new(&req.job_id, P::NAMES.workflow, req.start_at.clone()),
            started_at_ms: now,
            next_record: 0,
            throttle_mark: 0,
            req,
        },
    };
    job.report.runs += 1;
    job.report.status = JobStatus::Running;
    job.publish(0);
    match drive(&mut job).await {
        Ok(Next::Done) => {
            job.touch();
            job.report.status = JobStatus::Completed;
            job.publish(0);
            if let Err(stop) = job.snapshot().await {
                return Err(job.fail(stop).await);
            }
            Ok(job.report)
        }
        Ok(Next::ContinueAsNew) => {
            job.touch();
            job.publish(0);
            if let Err(stop) = job.snapshot().await {
                return Err(job.fail(stop).await);
            }
            let (paused, max_in_flight) = ctx.state(|w| (w.paused, w.max_in_flight));
            let mut next = job.req.clone();
            next.state = Some(CarriedState {
                report: job.report,
                next_record: job.next_record,
                paused,
                max_in_flight,
                started_at_ms: job.started_at_ms,
                throttle_mark: job.throttle_mark,
            });
            match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
                Err(termination) => Err(termination),
                Ok(never) => match never {},
            }
        }
        Err(stop) if stop.kind == CANCELLED => Err(WorkflowTermination::cancelled()),
        Err(stop) => Err(job.fail(stop).await),
    }
}

enum Next {
    Done,
    ContinueAsNew,
}

/// The sliding window: plans ahead, keeps up to `max_in_flight` batches running, and returns
/// when the source is exhausted or the run should continue as new, with no batch in flight.
async fn drive<P: Pipeline>(job: &mut Job<'_, P>) -> Result<Next, Stop> {
    let ctx = job.ctx;
    let max_per_run = job.req.max_batches_per_run;
    let plan_ahead = job.req.plan_ahead as usize;
    let per_activity = job.req.batches_per_activity.max(1) as usize;
    // Batches are numbered across runs; all earlier batches completed before continue-as-new.
    let mut next_index = job.report.batches;
    let mut plan_cursor = job.report.end_offset.clone();
    let mut plan_record = job.next_record;
    let mut planned: VecDeque<BatchRange<OffsetOf<P>>> = VecDeque::new();
    // Ends of completed batches not yet contiguous with the resumable frontier.
    let mut completed: BTreeMap<u64, OffsetOf<P>> = BTreeMap::new();
    let mut frontier = next_index;
    let mut exhausted = false;
    let mut plan_pending = false;
    let mut rolling_over = false;
    let mut in_flight = 0u32;
    let mut this_run = 0u32;
    let mut window: Vec<LocalBoxFuture<'_, Event<OffsetOf<P>>>> = Vec::new();

    loop {
        if !rolling_over && (this_run >= max_per_run || ctx.continue_as_new_suggested()) {
            rolling_over = true;
        }
        let (paused, max_in_flight) = ctx.state(|w| (w.paused, w.max_in_flight.max(1)));
        let throttle = job
            .req
            .throttle
            .clone()
            .filter(|t| job.report.records_read >= job.throttle_mark + t.every_records);
        if !exhausted
            && !plan_pending
            && !rolling_over
            && planned.len()
                < plan_ahead
                    .div_ceil(2)
                    .max(max_in_flight as usize * per_activity)
        {
            window.push(job.plan(plan_cursor.clone()));
            plan_pending = true;
        }
        if !paused && throttle.is_none() && !rolling_over {
            while in_flight < max_in_flight && this_run < max_per_run && !planned.is_empty() {
                // A group of consecutive batches, within the run's limit.
                let take = per_activity
                    .min(planned.len())
                    .min((max_per_run - this_run) as usize);
                let group: Vec<_> = planned.drain(..take).collect();
                if let Some(last) = group.last() {
                    job.next_record = last.first_record + last.records;
                }
                in_flight += 1;
                this_run += take as u32;
                window.push(job.process(group));
            }
            job.publish(in_flight);
        }
        if window.is_empty() {
            if exhausted && planned.is_empty() {
                return Ok(Next::Done);
            }
            if rolling_over {
                return Ok(Next::ContinueAsNew);
            }
            if let Some(t) = throttle {
                ctx.timer(t.pause).await;
                let over = job.report.records_read - job.throttle_mark;
                job.throttle_mark += over - over % t.every_records;
                continue;
            }
            if paused {
                if ctx.wait_condition(|w| !w.paused).await.is_err() {
                    return Err(Stop::cancelled());
                }
                continue;
            }
            return Err(Stop::new(
                ACTIVITY_FAILED_TYPE,
                "the workflow has nothing to wait for (internal error)",
            ));
        }
        let (event, _, rest) = futures::future::select_all(window).await;
        window = rest;
        // A cancelled job sees its activities cancelled: end as cancelled, not as failed.
        if ctx.cancellation_token().is_cancelled() {
            return Err(Stop::cancelled());
        }
        match event {
            Event::Planned(result) => {
                plan_pending = false;
                let from = plan_cursor.clone();
                let plan = result.map_err(|e| {
                    Stop::from_activity(format!("planning batches from offset {from:?}"), &e)
                })?;
                if plan.batches.is_empty() && !plan.end_of_source {
                    return Err(Stop::new(
                        ACTIVITY_FAILED_TYPE,
                        format!(
                            "source `{}` planned no batch from offset {from:?} but did not report the end of the source",
                            <P::Source as SourceConfig>::NAME
                        ),
                    ));
                }
                for b in plan.batches {
                    plan_cursor = Some(b.end.clone());
                    planned.push_back(BatchRange {
                        index: next_index,
                        start: b.start,
                        end: b.end,
                        first_record: plan_record,
                        records: b.records,
                    });
                    plan_record += b.records;
                    next_index += 1;
                }
                exhausted = plan.end_of_source;
            }
            Event::Processed(group, result) => {
                in_flight -= 1;
                let batch = result.map_err(|e| Stop::from_activity(describe(&group), &e))?;
                let count = group.len() as u64;
                for range in group {
                    completed.insert(range.index, range.end);
                }
                while let Some(end) = completed.remove(&frontier) {
                    job.report.end_offset = Some(end);
                    frontier += 1;
                }
                job.touch();
                let added = job.add(count, batch);
                job.publish(in_flight);
                added?;
            }
        }
    }
}

/// `batch 3 (records 3000..4000, offsets ..)`, or `batches 3..=6 (...)`, for error messages.
fn describe<O: crate::connector::Offset>(group: &[BatchRange<O>]) -> String {
    match (group.first(), group.last()) {
        (Some(a), Some(b)) if a.index == b.index => format!(
            "batch {} (records {}..{}, offsets {:?}..{:?})",
            a.index,
            a.first_record,
            a.first_record + a.records,
            a.start,
            a.end
        ),
        (Some(a), Some(b)) => format!(
            "batches {}..={} (records {}..{}, offsets {:?}..{:?})",
            a.index,
            b.index,
            a.first_record,
            b.first_record + b.records,
            a.start,
            b.end
        ),
        _ => "an empty group of batches".to_owned(),
    }
}
