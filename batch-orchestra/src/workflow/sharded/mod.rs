//! The parent workflow of a sharded job (`<workflow>.sharded`): lists the inputs a page at a
//! time, runs one child `<workflow>` per input with at most `max_concurrent_shards` at once,
//! forwards pause, resume, in-flight and rate changes to the running children, and adds their
//! reports up. The loop is in `run.rs`; this file holds the workflow's definition, signals and
//! query.

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
    PAUSE_SIGNAL, PROGRESS_QUERY, RESUME_SIGNAL, SET_MAX_IN_FLIGHT_SIGNAL, SET_RATE_SIGNAL, decode,
    handler_marker, unknown_handler,
};
use crate::pipeline::{Pipeline, ShardedReportOf, ShardedRequestOf};
use crate::sharding::{RunningShard, ShardedProgress, ShardedReport};

/// Name of the signal that changes how many shards of a sharded job run at once.
pub const SET_MAX_CONCURRENT_SHARDS_SIGNAL: &str = "set_max_concurrent_shards";
/// Shards at once, at most, whatever a request or signal asks.
const MAX_CONCURRENT_SHARDS: u32 = 10_000;

/// The parent workflow of pipeline `P`'s sharded jobs.
pub struct ShardedWorkflow<P: Pipeline> {
    request: Option<ShardedRequestOf<P>>,
    report: ShardedReportOf<P>,
    running: Vec<RunningShard>,
    queued: u64,
    listing_done: bool,
    paused: bool,
    max_in_flight: u32,
    max_records_per_s: Option<u32>,
    max_concurrent_shards: u32,
}

impl<P: Pipeline> ShardedWorkflow<P> {
    fn progress(&self) -> ShardedProgress<P::Source> {
        ShardedProgress {
            report: self.report.clone(),
            running: self.running.clone(),
            queued: self.queued,
            listing_done: self.listing_done,
            paused: self.paused,
            max_in_flight: self.max_in_flight,
            max_records_per_s: self.max_records_per_s,
            max_concurrent_shards: self.max_concurrent_shards,
        }
    }

    /// What the running children must be told, compared to what they were told last.
    fn controls(&self) -> Controls {
        Controls {
            paused: self.paused,
            max_in_flight: self.max_in_flight,
            max_records_per_s: self.max_records_per_s,
        }
    }

    /// Everything a signal can change: the children's controls and the shards at once.
    fn settings(&self) -> (Controls, u32) {
        (self.controls(), self.max_concurrent_shards)
    }
}

/// The settings a sharded job forwards to its running shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Controls {
    paused: bool,
    max_in_flight: u32,
    max_records_per_s: Option<u32>,
}

/// The run marker of pipeline `P`'s sharded workflow, for typed client calls.
pub struct ShardedRun<P>(PhantomData<fn() -> P>);

impl<P: Pipeline> WorkflowDefinition for ShardedRun<P> {
    type Input = ShardedRequestOf<P>;
    type Output = ShardedReportOf<P>;
    fn name(&self) -> &str {
        P::NAMES.sharded
    }
}

impl<P: Pipeline> HasWorkflowDefinition for ShardedRun<P> {
    type Run = Self;
}

impl<P> ShardedRun<P> {
    /// The marker.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<P> Default for ShardedRun<P> {
    fn default() -> Self {
        Self::new()
    }
}

handler_marker!(
    /// The `progress` query of a sharded job.
    ShardedProgressQuery of ShardedRun, QueryDefinition, PROGRESS_QUERY, (), ShardedProgress<P::Source>
);
handler_marker!(
    /// The `pause` signal of a sharded job: no new shard starts, running shards pause.
    ShardedPauseSignal of ShardedRun, SignalDefinition, PAUSE_SIGNAL, ()
);
handler_marker!(
    /// The `resume` signal of a sharded job.
    ShardedResumeSignal of ShardedRun, SignalDefinition, RESUME_SIGNAL, ()
);
handler_marker!(
    /// The `set_max_in_flight` signal of a sharded job: each shard's in-flight limit.
    ShardedSetMaxInFlightSignal of ShardedRun, SignalDefinition, SET_MAX_IN_FLIGHT_SIGNAL, u32
);
handler_marker!(
    /// The `set_rate` signal of a sharded job: each shard's rate limit.
    ShardedSetRateSignal of ShardedRun, SignalDefinition, SET_RATE_SIGNAL, u32
);
handler_marker!(
    /// The `set_max_concurrent_shards` signal.
    SetMaxConcurrentShardsSignal of ShardedRun, SignalDefinition, SET_MAX_CONCURRENT_SHARDS_SIGNAL, u32
);

impl<P: Pipeline> ExecutableSyncSignal<ShardedPauseSignal<P>> for ShardedWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.paused = true;
    }
}

impl<P: Pipeline> ExecutableSyncSignal<ShardedResumeSignal<P>> for ShardedWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _input: ()) {
        self.paused = false;
    }
}

impl<P: Pipeline> ExecutableSyncSignal<ShardedSetMaxInFlightSignal<P>> for ShardedWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, input: u32) {
        self.max_in_flight = input.max(1);
    }
}

impl<P: Pipeline> ExecutableSyncSignal<ShardedSetRateSignal<P>> for ShardedWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, input: u32) {
        self.max_records_per_s = (input > 0).then_some(input);
    }
}

impl<P: Pipeline> ExecutableSyncSignal<SetMaxConcurrentShardsSignal<P>> for ShardedWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, input: u32) {
        self.max_concurrent_shards = input.clamp(1, MAX_CONCURRENT_SHARDS);
    }
}

impl<P: Pipeline> ExecutableQuery<ShardedProgressQuery<P>> for ShardedWorkflow<P> {
    fn handle(
        &self,
        _ctx: &WorkflowContextView,
        _input: (),
    ) -> Result<ShardedProgress<P::Source>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.progress())
    }
}

impl<P: Pipeline> WorkflowImplementation for ShardedWorkflow<P> {
    type Run = ShardedRun<P>;
    const HAS_INIT: bool = true;
    const INIT_TAKES_INPUT: bool = true;

    fn name() -> &'static str {
        P::NAMES.sharded
    }

    fn definition() -> WorkflowDefinitionDescriptor {
        WorkflowDefinitionDescriptor {
            workflow_type: P::NAMES.sharded.to_owned(),
            has_init: true,
            init_takes_input: true,
            signals: vec![
                PAUSE_SIGNAL.into(),
                RESUME_SIGNAL.into(),
                SET_MAX_IN_FLIGHT_SIGNAL.into(),
                SET_RATE_SIGNAL.into(),
                SET_MAX_CONCURRENT_SHARDS_SIGNAL.into(),
            ],
            queries: vec![PROGRESS_QUERY.into()],
            updates: vec![],
        }
    }

    fn init(_ctx: WorkflowContextView, input: Option<ShardedRequestOf<P>>) -> Self {
        // Signals may arrive in the first activation: set the carried state before they apply.
        let mut me = Self {
            report: ShardedReport::new("", P::NAMES.workflow),
            running: Vec::new(),
            queued: 0,
            listing_done: false,
            paused: false,
            max_in_flight: 1,
            max_records_per_s: None,
            max_concurrent_shards: 1,
            request: None,
        };
        if let Some(req) = &input {
            match &req.state {
                Some(carried) => {
                    me.report = carried.report.clone();
                    me.paused = carried.paused;
                    me.max_in_flight = carried.max_in_flight;
                    me.max_records_per_s = carried.max_records_per_s;
                    me.max_concurrent_shards = carried.max_concurrent_shards;
                    me.listing_done = carried.listing_done;
                }
                None => {
                    me.report = ShardedReport::new(req.workflow_id(), P::NAMES.workflow);
                    me.max_in_flight = req.job.max_in_flight;
                    me.max_records_per_s = req.job.max_records_per_s;
                    me.max_concurrent_shards = req.max_concurrent_shards;
                }
            }
        }
        me.max_in_flight = me.max_in_flight.max(1);
        me.max_concurrent_shards = me.max_concurrent_shards.clamp(1, MAX_CONCURRENT_SHARDS);
        me.request = input;
        me
    }

    fn run(
        ctx: WorkflowContext<Self>,
        _input: Option<ShardedRequestOf<P>>,
    ) -> LocalBoxFuture<'static, Result<Box<dyn WorkflowOutputValue>, WorkflowTermination>> {
        async move {
            let report = run::run_sharded::<P>(&ctx).await?;
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
            SET_MAX_IN_FLIGHT_SIGNAL | SET_RATE_SIGNAL | SET_MAX_CONCURRENT_SHARDS_SIGNAL => {
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
            PAUSE_SIGNAL => {
                <Self as ExecutableSyncSignal<ShardedPauseSignal<P>>>::dispatch(ctx, input)
            }
            RESUME_SIGNAL => {
                <Self as ExecutableSyncSignal<ShardedResumeSignal<P>>>::dispatch(ctx, input)
            }
            SET_MAX_IN_FLIGHT_SIGNAL => {
                <Self as ExecutableSyncSignal<ShardedSetMaxInFlightSignal<P>>>::dispatch(ctx, input)
            }
            SET_RATE_SIGNAL => {
                <Self as ExecutableSyncSignal<ShardedSetRateSignal<P>>>::dispatch(ctx, input)
            }
            SET_MAX_CONCURRENT_SHARDS_SIGNAL => <Self as ExecutableSyncSignal<
                SetMaxConcurrentShardsSignal<P>,
            >>::dispatch(ctx, input),
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
                <Self as ExecutableQuery<ShardedProgressQuery<P>>>::dispatch(self, &ctx, input)
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
