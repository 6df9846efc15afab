//! The workflow of a streaming pipeline, registered under the pipeline's workflow name: runs
//! slices of the stream through the queue executor (`<workflow>.stream`), up to `executors`
//! at once, records their checkpoints and counts, and ends when cancelled or at an end
//! condition. The loop is in `run.rs`; this file holds the definition, signals and query.

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use std::any::Any;
use std::marker::PhantomData;

use temporalio_common::data_converters::PayloadConverter;
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::{
    HasWorkflowDefinition, QueryDefinition, SignalDefinition, WorkflowDefinition,
};
use temporalio_sdk::workflow_interceptors::WorkflowOutputValue;
use temporalio_sdk::workflows::{
    ExecutableQuery, ExecutableSyncSignal, WorkflowDefinitionDescriptor, WorkflowError,
    WorkflowImplementation,
};
use temporalio_sdk::{
    SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowTermination,
};

mod run;

use super::handlers::{
    PAUSE_SIGNAL, PROGRESS_QUERY, RESUME_SIGNAL, decode, handler_marker, unknown_handler,
};
use crate::pipeline::{OffsetOf, Pipeline, StreamReportOf, StreamRequestOf};
use crate::streaming::{StreamProgress, StreamReport};

/// The workflow of streaming pipeline `P`.
pub struct StreamWorkflow<P: Pipeline> {
    request: Option<StreamRequestOf<P>>,
    report: StreamReportOf<P>,
    paused: bool,
    running: u32,
    records_per_s: f64,
    lag: Option<u64>,
}

/// The run marker of streaming pipeline `P`'s workflow, for typed client calls.
pub struct StreamRun<P>(PhantomData<fn() -> P>);

impl<P: Pipeline> WorkflowDefinition for StreamRun<P> {
    type Input = StreamRequestOf<P>;
    type Output = StreamReportOf<P>;
    fn name(&self) -> &str {
        P::NAMES.workflow
    }
}

impl<P: Pipeline> HasWorkflowDefinition for StreamRun<P> {
    type Run = Self;
}

impl<P> StreamRun<P> {
    /// The marker.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<P> Default for StreamRun<P> {
    fn default() -> Self {
        Self::new()
    }
}

handler_marker!(
    /// The `progress` query of a streaming job.
    StreamProgressQuery of StreamRun, QueryDefinition, PROGRESS_QUERY, (), StreamProgress<OffsetOf<P>>
);
handler_marker!(
    /// The `pause` signal of a streaming job: no new slice starts; the running ones finish.
    StreamPauseSignal of StreamRun, SignalDefinition, PAUSE_SIGNAL, ()
);
handler_marker!(
    /// The `resume` signal of a streaming job.
    StreamResumeSignal of StreamRun, SignalDefinition, RESUME_SIGNAL, ()
);

impl<P: Pipeline> ExecutableSyncSignal<StreamPauseSignal<P>> for StreamWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.paused = true;
    }
}

impl<P: Pipeline> ExecutableSyncSignal<StreamResumeSignal<P>> for StreamWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.paused = false;
    }
}

impl<P: Pipeline> ExecutableQuery<StreamProgressQuery<P>> for StreamWorkflow<P> {
    fn handle(
        &self,
        _ctx: &WorkflowContextView,
        _input: (),
    ) -> Result<StreamProgress<OffsetOf<P>>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(StreamProgress {
            report: self.report.clone(),
            paused: self.paused,
            running: self.running,
            records_per_s: self.records_per_s,
            lag: self.lag,
        })
    }
}

impl<P: Pipeline> WorkflowImplementation for StreamWorkflow<P> {
    type Run = StreamRun<P>;
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
            signals: vec![PAUSE_SIGNAL.into(), RESUME_SIGNAL.into()],
            queries: vec![PROGRESS_QUERY.into()],
            updates: vec![],
        }
    }

    fn init(_ctx: WorkflowContextView, input: Option<StreamRequestOf<P>>) -> Self {
        // Signals may arrive in the first activation: set the carried state before they apply.
        let (report, paused) = match &input {
            Some(req) => match &req.state {
                Some(carried) => (carried.report.clone(), carried.paused),
                None => (
                    StreamReport::new(&req.job_id, P::NAMES.workflow, req.executors),
                    false,
                ),
            },
            None => (StreamReport::new("", P::NAMES.workflow, 1), false),
        };
        Self {
            request: input,
            report,
            paused,
            running: 0,
            records_per_s: 0.0,
            lag: None,
        }
    }

    fn run(
        ctx: WorkflowContext<Self>,
        _input: Option<StreamRequestOf<P>>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        async move {
            let report = run::run_stream::<P>(&ctx).await?;
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
            _ => Ok(None),
        }
    }

    fn dispatch_signal(
        ctx: WorkflowContext<Self>,
        name: &str,
        input: Box<dyn Any>,
    ) -> LocalBoxFuture<'static, Result<(), WorkflowError>> {
        match name {
            PAUSE_SIGNAL => {
                <Self as ExecutableSyncSignal<StreamPauseSignal<P>>>::dispatch(ctx, input)
            }
            RESUME_SIGNAL => {
                <Self as ExecutableSyncSignal<StreamResumeSignal<P>>>::dispatch(ctx, input)
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
                <Self as ExecutableQuery<StreamProgressQuery<P>>>::dispatch(self, &ctx, input)
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
