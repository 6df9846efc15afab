//! Signals and queries: their fixed names, typed markers for clients, and the handlers.
//!
//! Signals change the workflow's shared state; the window reads it before each dispatch, so a
//! pause stops new batches (running ones finish) and a new in-flight limit applies at once.

use std::any::Any;
use std::marker::PhantomData;

use temporalio_common::data_converters::{
    GenericPayloadConverter, PayloadConverter, SerializationContext, SerializationContextData,
    TemporalDeserializable, WorkflowSerializationContext,
};
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::{QueryDefinition, SignalDefinition};
use temporalio_sdk::workflows::{ExecutableQuery, ExecutableSyncSignal, WorkflowError};
use temporalio_sdk::{SyncWorkflowContext, WorkflowContextView};

use super::{JobRun, PipelineWorkflow};
use crate::model::Progress;
use crate::pipeline::{OffsetOf, Pipeline};

/// Name of the query answering a job's [`Progress`].
pub const PROGRESS_QUERY: &str = "progress";
/// Name of the signal that stops new batches from starting (running ones finish).
pub const PAUSE_SIGNAL: &str = "pause";
/// Name of the signal that lets new batches start again.
pub const RESUME_SIGNAL: &str = "resume";
/// Name of the signal that changes how many batches run at once.
pub const SET_MAX_IN_FLIGHT_SIGNAL: &str = "set_max_in_flight";
/// Name of the signal that sets the rate limit in records per second (0: no limit).
pub const SET_RATE_SIGNAL: &str = "set_rate";

macro_rules! handler_marker {
    ($(#[$doc:meta])* $marker:ident of $run:ident, $trait:ident, $name:expr, $input:ty $(, $output:ty)?) => {
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
            type Workflow = $run<P>;
            type Input = $input;
            $(type Output = $output;)?
            fn name(&self) -> &str {
                $name
            }
        }
    };
    ($(#[$doc:meta])* $marker:ident, $trait:ident, $name:expr, $input:ty $(, $output:ty)?) => {
        handler_marker!($(#[$doc])* $marker of JobRun, $trait, $name, $input $(, $output)?);
    };
}

pub(super) use handler_marker;

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
handler_marker!(
    /// The `set_rate` signal.
    SetRateSignal, SignalDefinition, SET_RATE_SIGNAL, u32
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

impl<P: Pipeline> ExecutableSyncSignal<SetRateSignal<P>> for PipelineWorkflow<P> {
    fn handle(&mut self, _ctx: &mut SyncWorkflowContext<Self>, input: u32) {
        self.max_records_per_s = (input > 0).then_some(input);
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

/// Decodes a handler's input payloads as `T`.
pub(super) fn decode<T: TemporalDeserializable + 'static>(
    payloads: Vec<Payload>,
    converter: &PayloadConverter,
) -> Result<Option<Box<dyn Any>>, WorkflowError> {
    let data = SerializationContextData::Workflow(WorkflowSerializationContext::new());
    let ctx = SerializationContext::new(&data, converter);
    let value: T = converter.from_payloads(&ctx, payloads)?;
    Ok(Some(Box::new(value)))
}

/// The error for a signal, query or update name the workflow does not have.
pub(super) fn unknown_handler(kind: &str, name: &str) -> WorkflowError {
    WorkflowError::Execution(format!("unknown {kind} `{name}`").into())
}
