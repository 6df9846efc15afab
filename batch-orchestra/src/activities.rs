//! The three activities of a pipeline: `plan`, `process` and `snapshot`.
//!
//! They are generic over the pipeline and registered under its fixed names. Connectors are
//! built once per worker and config (see [`ConnectorCache`]) and reused by every batch.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use temporalio_common::ActivityDefinition;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ExecutableActivity,
};

use crate::cache::ConnectorCache;
use crate::connector::{BatchRange, Plan, Sink, SinkConfig, Source, SourceConfig, WriteContext};
use crate::error::{CONFIG_ERROR_TYPE, ConnectorError, ErrorKind, RecordError};
use crate::model::{BatchReport, JobReport};
use crate::pipeline::{OffsetOf, Pipeline};
use crate::snapshot::SnapshotTarget;

/// How often a long activity tells the server it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Failure type of retryable connector errors.
const TRANSIENT_ERROR_TYPE: &str = "TransientError";

/// Input of the `plan` activity.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PlanInput<S: SourceConfig> {
    /// The source's config.
    pub source: S,
    /// Offset to plan from; the source's start when `None`.
    pub from: Option<S::Offset>,
    /// Records per batch, at most.
    pub batch_size: u64,
    /// Batches to return, at most.
    pub max_batches: u32,
}

/// Input of the `process` activity: configs and consecutive offset ranges, never records.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ProcessInput<S: SourceConfig, K: SinkConfig> {
    /// The job id.
    pub job_id: String,
    /// The source's config.
    pub source: S,
    /// The sink's config.
    pub sink: K,
    /// The consecutive ranges to read, in order.
    pub batches: Vec<BatchRange<S::Offset>>,
    /// Record errors to return with positions, at most.
    pub max_error_samples: u32,
}

/// Input of the `snapshot` activity.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SnapshotInput<O: crate::connector::Offset> {
    /// Where to save.
    pub target: SnapshotTarget,
    /// What to save.
    pub report: JobReport<O>,
}

/// The activity implementations of pipeline `P`, registered on a worker by
/// [`WorkerBuilder::pipeline`](crate::WorkerBuilder::pipeline).
pub struct PipelineActivities<P> {
    connectors: ConnectorCache,
    _pipeline: PhantomData<fn() -> P>,
}

impl<P: Pipeline> PipelineActivities<P> {
    pub(crate) fn new(connectors: ConnectorCache) -> Self {
        Self {
            connectors,
            _pipeline: PhantomData,
        }
    }

    async fn source(
        &self,
        config: &P::Source,
    ) -> Result<Arc<<P::Source as SourceConfig>::Source>, ConnectorError> {
        self.connectors
            .get_or_build(config, || config.build())
            .await
            .map_err(|e| {
                e.context(format_args!(
                    "building source `{}`",
                    <P::Source as SourceConfig>::NAME
                ))
            })
    }

    async fn sink(
        &self,
        config: &P::Sink,
    ) -> Result<Arc<<P::Sink as SinkConfig>::Sink>, ConnectorError> {
        self.connectors
            .get_or_build(config, || config.build())
            .await
            .map_err(|e| {
                e.context(format_args!(
                    "building sink `{}`",
                    <P::Sink as SinkConfig>::NAME
                ))
            })
    }

    async fn plan(&self, input: PlanInput<P::Source>) -> Result<Plan<OffsetOf<P>>, ConnectorError> {
        let source = self.source(&input.source).await?;
        let max_batches = usize::try_from(input.max_batches)
            .unwrap_or(usize::MAX)
            .max(1);
        source
            .plan(input.from.as_ref(), input.batch_size.max(1), max_batches)
            .await
    }

    async fn process(
        &self,
        ctx: &ActivityContext,
        input: ProcessInput<P::Source, P::Sink>,
    ) -> Result<BatchReport, ConnectorError> {
        let source = self.source(&input.source).await?;
        let sink = self.sink(&input.sink).await?;
        let mut report = BatchReport::default();
        let mut samples = Vec::new();
        for batch in &input.batches {
            let read = source.read(batch).await?;
            let mut errors = read.errors;
            report.records_read += (read.records.len() + errors.len()) as u64;
            let mut out = Vec::with_capacity(read.records.len());
            for record in read.records {
                match P::transform(record.value) {
                    Ok(value) => out.push(crate::connector::Positioned {
                        position: record.position,
                        value,
                    }),
                    Err(e) => errors.push(RecordError::new(record.position, e.0)),
                }
            }
            let write_ctx = WriteContext {
                job_id: input.job_id.clone(),
                batch: batch.index,
                attempt: ctx.info().attempt,
            };
            let outcome = if out.is_empty() {
                Default::default()
            } else {
                sink.write(&write_ctx, out).await?
            };
            report.records_written += outcome.written;
            report.already_present += outcome.already_present;
            errors.extend(outcome.errors);
            report.record_errors += errors.len() as u64;
            samples.extend(errors);
            samples.truncate(input.max_error_samples as usize);
        }
        report.error_samples = samples;
        Ok(report)
    }
}

/// Runs `work`, heartbeating while it goes so a dead worker is noticed within the heartbeat
/// timeout rather than the activity timeout.
async fn with_heartbeats<T>(ctx: &ActivityContext, work: impl Future<Output = T>) -> T {
    let beat = async {
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            // A failed heartbeat is not the work's failure: the server times us out if it must.
            let _ = ctx.record_heartbeat(()).await;
        }
    };
    tokio::select! {
        out = work => out,
        never = beat => never,
    }
}

/// Converts a connector error into an activity failure: configuration errors are
/// non-retryable, the rest are retried by the activity's retry policy.
pub(crate) fn activity_error(err: ConnectorError) -> ActivityError {
    let (type_name, non_retryable) = match err.kind() {
        ErrorKind::Config => (CONFIG_ERROR_TYPE, true),
        ErrorKind::Transient => (TRANSIENT_ERROR_TYPE, false),
    };
    ActivityError::application(
        ApplicationFailure::builder(err)
            .type_name(type_name.to_owned())
            .non_retryable(non_retryable)
            .build(),
    )
}

fn instance<P>(
    receiver: Option<Arc<PipelineActivities<P>>>,
) -> Result<Arc<PipelineActivities<P>>, ActivityError> {
    receiver.ok_or_else(|| {
        activity_error(ConnectorError::config(
            "pipeline activities were registered without an instance",
        ))
    })
}

macro_rules! activity_marker {
    ($(#[$doc:meta])* $marker:ident, $field:ident, $input:ty, $output:ty) => {
        $(#[$doc])*
        pub struct $marker<P>(PhantomData<fn() -> P>);

        impl<P> $marker<P> {
            /// The activity marker, for calling it from a workflow.
            pub fn new() -> Self {
                Self(PhantomData)
            }
        }

        impl<P> Default for $marker<P> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<P: Pipeline> ActivityDefinition for $marker<P> {
            type Input = $input;
            type Output = $output;
            fn name(&self) -> &str {
                P::NAMES.$field
            }
        }
    };
}

activity_marker!(
    /// The `<workflow>.plan` activity: scans ahead and returns batch boundaries.
    PlanActivity, plan, PlanInput<P::Source>, Plan<OffsetOf<P>>
);
activity_marker!(
    /// The `<workflow>.process` activity: reads, transforms and writes a group of batches.
    ProcessActivity, process, ProcessInput<P::Source, P::Sink>, BatchReport
);
activity_marker!(
    /// The `<workflow>.snapshot` activity: saves the job report.
    SnapshotActivity, snapshot, SnapshotInput<OffsetOf<P>>, ()
);

impl<P: Pipeline> ExecutableActivity for PlanActivity<P> {
    type Implementer = PipelineActivities<P>;
    const REQUIRES_INSTANCE: bool = true;
    fn definition() -> Self {
        Self::new()
    }
    fn execute(
        receiver: Option<Arc<Self::Implementer>>,
        ctx: ActivityContext,
        input: Self::Input,
    ) -> BoxFuture<'static, Result<Self::Output, ActivityError>> {
        Box::pin(async move {
            let me = instance(receiver)?;
            with_heartbeats(&ctx, me.plan(input))
                .await
                .map_err(activity_error)
        })
    }
}

impl<P: Pipeline> ExecutableActivity for ProcessActivity<P> {
    type Implementer = PipelineActivities<P>;
    const REQUIRES_INSTANCE: bool = true;
    fn definition() -> Self {
        Self::new()
    }
    fn execute(
        receiver: Option<Arc<Self::Implementer>>,
        ctx: ActivityContext,
        input: Self::Input,
    ) -> BoxFuture<'static, Result<Self::Output, ActivityError>> {
        Box::pin(async move {
            let me = instance(receiver)?;
            with_heartbeats(&ctx, me.process(&ctx, input))
                .await
                .map_err(activity_error)
        })
    }
}

impl<P: Pipeline> ExecutableActivity for SnapshotActivity<P> {
    type Implementer = PipelineActivities<P>;
    const REQUIRES_INSTANCE: bool = true;
    fn definition() -> Self {
        Self::new()
    }
    fn execute(
        _receiver: Option<Arc<Self::Implementer>>,
        _ctx: ActivityContext,
        input: Self::Input,
    ) -> BoxFuture<'static, Result<Self::Output, ActivityError>> {
        Box::pin(async move {
            let json = serde_json::to_vec_pretty(&input.report).map_err(|e| {
                activity_error(ConnectorError::config(format!(
                    "cannot serialize the job report: {e}"
                )))
            })?;
            let snapshotter = input.target.build().map_err(activity_error)?;
            snapshotter
                .save(&input.report.job_id, &json)
                .await
                .map_err(activity_error)
        })
    }
}

impl<P: Pipeline> ActivityImplementer for PipelineActivities<P> {
    fn register_all(self: Arc<Self>, defs: &mut ActivityDefinitions) {
        defs.register_activity::<PlanActivity<P>>(self.clone());
        defs.register_activity::<ProcessActivity<P>>(self.clone());
        defs.register_activity::<SnapshotActivity<P>>(self);
    }
}
