//! The Temporal glue every kind's workflow shares: its definition, the decoding and dispatch
//! of its signals and of the `progress` query. A kind's workflow state implements [`Steer`]
//! and invokes [`workflow_glue!`] once.

use std::any::Any;

use temporalio_common::data_converters::{
    GenericPayloadConverter, PayloadConverter, SerializationContext, SerializationContextData,
    TemporalDeserializable, WorkflowSerializationContext,
};
use temporalio_common::protos::temporal::api::common::v1::{Payload, Payloads};
use temporalio_sdk::workflows::{WorkflowDefinitionDescriptor, WorkflowError};

use std::time::UNIX_EPOCH;

use temporalio_sdk::WorkflowContext;

use super::signals::{Control, PROGRESS_QUERY};

/// What a kind's workflow state does with its signals and answers to the `progress` query.
pub(crate) trait Steer {
    /// The signals the workflow takes, by name.
    const SIGNALS: &'static [&'static str];
    /// The progress the query answers.
    type Progress;
    /// Applies a signal.
    fn steer(&mut self, control: Control);
    /// The progress now.
    fn progress(&self) -> Self::Progress;
}

/// The workflow's definition: its type, its signals and the `progress` query.
pub(crate) fn definition(workflow: &str, signals: &[&str]) -> WorkflowDefinitionDescriptor {
    WorkflowDefinitionDescriptor {
        workflow_type: workflow.to_owned(),
        has_init: true,
        init_takes_input: true,
        signals: signals.iter().map(|s| (*s).to_owned()).collect(),
        queries: vec![PROGRESS_QUERY.into()],
        updates: vec![],
    }
}

/// Decodes signal `name`, if the workflow takes it, as a [`Control`].
pub(crate) fn decode_signal(
    name: &str,
    signals: &[&str],
    payloads: Payloads,
    converter: &PayloadConverter,
) -> Result<Option<Box<dyn Any>>, WorkflowError> {
    if !signals.contains(&name) {
        return Ok(None);
    }
    let n = if Control::takes_number(name) {
        decode::<u32>(payloads.payloads, converter)?
    } else {
        decode::<()>(payloads.payloads, converter)?;
        0
    };
    Ok(Control::of(name, n).map(|c| Box::new(c) as Box<dyn Any>))
}

/// Decodes the `progress` query's input.
pub(crate) fn decode_query(
    name: &str,
    payloads: &Payloads,
    converter: &PayloadConverter,
) -> Result<Option<Box<dyn Any>>, WorkflowError> {
    match name {
        PROGRESS_QUERY => {
            decode::<()>(payloads.payloads.clone(), converter)?;
            Ok(Some(Box::new(())))
        }
        _ => Ok(None),
    }
}

/// Decodes a handler's input payloads as `T`.
fn decode<T: TemporalDeserializable + 'static>(
    payloads: Vec<Payload>,
    converter: &PayloadConverter,
) -> Result<T, WorkflowError> {
    let data = SerializationContextData::Workflow(WorkflowSerializationContext::new());
    let ctx = SerializationContext::new(&data, converter);
    Ok(converter.from_payloads(&ctx, payloads)?)
}

/// Workflow time in milliseconds since the Unix epoch.
pub(crate) fn workflow_ms<W>(ctx: &WorkflowContext<W>) -> u64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

/// The error for a signal, query or update name the workflow does not have.
pub(crate) fn unknown_handler(kind: &str, name: &str) -> WorkflowError {
    WorkflowError::Execution(format!("unknown {kind} `{name}`").into())
}

/// Makes `$state<P>` (which implements [`Steer`] and has `fn new(Option<request>) -> Self`)
/// the Temporal workflow of kind `$kind`, whose run is `$run::<P>(&ctx)`; a `where` after it
/// bounds `P` (a kind that needs a capability of the source).
macro_rules! workflow_glue {
    ($state:ident, $kind:ty, $($run:ident)::+ $(, where $($bound:tt)+)?) => {
        impl<P: $crate::pipeline::Pipeline> ::temporalio_sdk::workflows::WorkflowImplementation
            for $state<P>
        where
            $($($bound)+)?
        {
            type Run = $crate::job::Run<P, $kind>;
            const HAS_INIT: bool = true;
            const INIT_TAKES_INPUT: bool = true;

            fn name() -> &'static str {
                <$kind as $crate::job::JobKind<P>>::workflow()
            }

            fn definition() -> ::temporalio_sdk::workflows::WorkflowDefinitionDescriptor {
                $crate::job::glue::definition(
                    Self::name(),
                    <Self as $crate::job::Steer>::SIGNALS,
                )
            }

            fn init(
                _ctx: ::temporalio_sdk::WorkflowContextView,
                input: Option<<$kind as $crate::job::JobKind<P>>::Request>,
            ) -> Self {
                Self::new(input)
            }

            fn run(
                ctx: ::temporalio_sdk::WorkflowContext<Self>,
                _input: Option<<$kind as $crate::job::JobKind<P>>::Request>,
            ) -> ::futures::future::LocalBoxFuture<
                'static,
                Result<
                    Box<dyn ::temporalio_sdk::workflow_interceptors::WorkflowOutputValue>,
                    ::temporalio_sdk::WorkflowTermination,
                >,
            > {
                use ::futures::FutureExt;
                async move {
                    let report = $($run)::+::<P>(&ctx).await?;
                    Ok(Box::new(report)
                        as Box<
                            dyn ::temporalio_sdk::workflow_interceptors::WorkflowOutputValue,
                        >)
                }
                .boxed_local()
            }

            fn decode_signal_input(
                name: &str,
                payloads: ::temporalio_common::protos::temporal::api::common::v1::Payloads,
                converter: &::temporalio_common::data_converters::PayloadConverter,
            ) -> Result<Option<Box<dyn ::std::any::Any>>, ::temporalio_sdk::workflows::WorkflowError>
            {
                $crate::job::glue::decode_signal(
                    name,
                    <Self as $crate::job::Steer>::SIGNALS,
                    payloads,
                    converter,
                )
            }

            fn dispatch_signal(
                ctx: ::temporalio_sdk::WorkflowContext<Self>,
                name: &str,
                input: Box<dyn ::std::any::Any>,
            ) -> ::futures::future::LocalBoxFuture<
                'static,
                Result<(), ::temporalio_sdk::workflows::WorkflowError>,
            > {
                use ::futures::FutureExt;
                if !<Self as $crate::job::Steer>::SIGNALS.contains(&name) {
                    let error = $crate::job::glue::unknown_handler("signal", name);
                    return ::futures::future::ready(Err(error)).boxed_local();
                }
                <Self as ::temporalio_sdk::workflows::ExecutableSyncSignal<
                    $crate::job::ControlSignal<P, $kind>,
                >>::dispatch(ctx, input)
            }

            fn decode_query_input(
                name: &str,
                payloads: &::temporalio_common::protos::temporal::api::common::v1::Payloads,
                converter: &::temporalio_common::data_converters::PayloadConverter,
            ) -> Result<Option<Box<dyn ::std::any::Any>>, ::temporalio_sdk::workflows::WorkflowError>
            {
                $crate::job::glue::decode_query(name, payloads, converter)
            }

            fn dispatch_query(
                &self,
                ctx: ::temporalio_sdk::WorkflowContextView,
                name: &str,
                input: Box<dyn ::std::any::Any>,
            ) -> Result<
                Box<dyn ::temporalio_sdk::workflow_interceptors::WorkflowOutputValue>,
                ::temporalio_sdk::workflows::WorkflowError,
            > {
                match name {
                    $crate::job::PROGRESS_QUERY => <Self as ::temporalio_sdk::workflows::ExecutableQuery<
                        $crate::job::ProgressQuery<P, $kind>,
                    >>::dispatch(self, &ctx, input),
                    other => Err($crate::job::glue::unknown_handler("query", other)),
                }
            }

            fn dispatch_update(
                _ctx: ::temporalio_sdk::WorkflowContext<Self>,
                name: &str,
                _input: Box<dyn ::std::any::Any>,
            ) -> ::futures::future::LocalBoxFuture<
                'static,
                Result<
                    Box<dyn ::temporalio_sdk::workflow_interceptors::WorkflowOutputValue>,
                    ::temporalio_sdk::workflows::WorkflowError,
                >,
            > {
                use ::futures::FutureExt;
                let error = $crate::job::glue::unknown_handler("update", name);
                ::futures::future::ready(Err(error)).boxed_local()
            }

            fn validate_update(
                &self,
                _ctx: ::temporalio_sdk::WorkflowContextView,
                name: &str,
                _input: Box<dyn ::std::any::Any>,
            ) -> Result<(), ::temporalio_sdk::workflows::WorkflowError> {
                Err($crate::job::glue::unknown_handler("update", name))
            }
        }

        impl<P: $crate::pipeline::Pipeline>
            ::temporalio_sdk::workflows::ExecutableSyncSignal<$crate::job::ControlSignal<P, $kind>>
            for $state<P>
        where
            $($($bound)+)?
        {
            fn handle(
                &mut self,
                _ctx: &mut ::temporalio_sdk::SyncWorkflowContext<Self>,
                control: $crate::job::Control,
            ) {
                <Self as $crate::job::Steer>::steer(self, control);
            }
        }

        impl<P: $crate::pipeline::Pipeline>
            ::temporalio_sdk::workflows::ExecutableQuery<$crate::job::ProgressQuery<P, $kind>>
            for $state<P>
        where
            $($($bound)+)?
        {
            fn handle(
                &self,
                _ctx: &::temporalio_sdk::WorkflowContextView,
                _input: (),
            ) -> Result<
                <$kind as $crate::job::JobKind<P>>::Progress,
                Box<dyn ::std::error::Error + Send + Sync>,
            > {
                Ok(<Self as $crate::job::Steer>::progress(self))
            }
        }
    };
}

pub(crate) use workflow_glue;
