//! What every activity of a pipeline shares: the per-worker implementer that builds and
//! caches connectors and transform state, the bound on each connector call, heartbeats, the
//! span, and the one wrapper that turns a kind's [`Work`] into a Temporal activity.
//!
//! Liveness: activities heartbeat four times per heartbeat timeout, so a dead worker's
//! batches move on within that timeout; each read, write and plan call is bounded by the
//! job's `call_timeout`, so a hung call is abandoned and retried instead of looking alive.
//! Cancellation is heard through heartbeats: a cancelled `process` activity stops before its
//! next read, lets a write in progress finish, and reports exactly what it wrote.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use temporalio_common::ActivityDefinition;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ExecutableActivity,
};
use tracing::Instrument;

use crate::cache::ConnectorCache;
use crate::connector::{SinkConfig, Source, SourceConfig};
use crate::error::ConnectorError;
use crate::failure::activity_error;
use crate::metrics::MetricsSlot;
use crate::pipeline::{Pipeline, PipelineNames, TransformState};

/// Heartbeats per heartbeat timeout.
const HEARTBEATS_PER_TIMEOUT: u32 = 4;

/// The activity implementations of pipeline `P`, registered on a worker by
/// [`WorkerBuilder::pipeline`](crate::WorkerBuilder::pipeline).
pub(crate) struct PipelineActivities<P: Pipeline> {
    pub(crate) connectors: ConnectorCache,
    /// The transform's state, built by the first batch that needs it.
    state: tokio::sync::OnceCell<P::State>,
    pub(crate) metrics: MetricsSlot,
    /// The worker's Temporal client, for activities that look up other runs (an incremental
    /// job's last cursor).
    pub(crate) client: temporalio_client::Client,
    /// Registers the activities of the kind these serve.
    register: Register<P>,
    _pipeline: PhantomData<fn() -> P>,
}

/// How a kind registers its activities.
pub(crate) type Register<P> = fn(Arc<PipelineActivities<P>>, &mut ActivityDefinitions);

impl<P: Pipeline> ActivityImplementer for PipelineActivities<P> {
    fn register_all(self: Arc<Self>, defs: &mut ActivityDefinitions) {
        (self.register)(self.clone(), defs);
    }
}

impl<P: Pipeline> PipelineActivities<P> {
    /// The implementer of a kind's activities, which `register` registers.
    pub(crate) fn new(
        connectors: ConnectorCache,
        metrics: MetricsSlot,
        register: Register<P>,
        client: temporalio_client::Client,
    ) -> Self {
        Self {
            connectors,
            state: tokio::sync::OnceCell::new(),
            metrics,
            client,
            register,
            _pipeline: PhantomData,
        }
    }

    /// The transform's state; a failed build is tried again by the next batch.
    pub(crate) async fn state(&self, call_timeout: Duration) -> Result<&P::State, ConnectorError> {
        self.state
            .get_or_try_init(|| {
                bounded(
                    call_timeout,
                    "building the transform's state",
                    <P::State as TransformState>::build(),
                )
            })
            .await
            .map_err(|e| {
                e.context(format_args!(
                    "building the state of pipeline `{}`",
                    P::NAMES.workflow
                ))
            })
    }

    pub(crate) async fn source(
        &self,
        config: &P::Source,
        call_timeout: Duration,
    ) -> Result<Arc<<P::Source as SourceConfig>::Source>, ConnectorError> {
        // The timeout is inside the shared build, so a hung connect fails and is forgotten.
        let build = || {
            let config = config.clone();
            bounded(
                call_timeout,
                "connecting",
                async move { config.build().await },
            )
        };
        let context = || format!("building source `{}`", <P::Source as SourceConfig>::NAME);
        let source = self
            .connectors
            .get_or_build(config, build)
            .await
            .map_err(|e| e.context(context()))?;
        if source.is_current().await {
            return Ok(source);
        }
        // The input changed since the source was built: build it again.
        self.connectors.evict(config, &source);
        self.connectors
            .get_or_build(config, build)
            .await
            .map_err(|e| e.context(context()))
    }

    pub(crate) async fn sink(
        &self,
        config: &P::Sink,
        call_timeout: Duration,
    ) -> Result<Arc<<P::Sink as SinkConfig>::Sink>, ConnectorError> {
        let build = || {
            let config = config.clone();
            bounded(
                call_timeout,
                "connecting",
                async move { config.build().await },
            )
        };
        self.connectors
            .get_or_build(config, build)
            .await
            .map_err(|e| {
                e.context(format_args!(
                    "building sink `{}`",
                    <P::Sink as SinkConfig>::NAME
                ))
            })
    }
}

/// Runs one connector call, abandoning it past `timeout` with a transient error naming it.
pub(crate) async fn bounded<T>(
    timeout: Duration,
    what: impl std::fmt::Display,
    call: impl Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(ConnectorError::transient(format!(
            "{what} took longer than {timeout:?} (the job's call_timeout): abandoned, to be retried"
        ))),
    }
}

/// Runs `work`, heartbeating while it goes so a dead worker is noticed within the heartbeat
/// timeout rather than the activity timeout, and a cancellation is heard.
pub(crate) async fn with_heartbeats<T>(ctx: &ActivityContext, work: impl Future<Output = T>) -> T {
    let every = ctx
        .info()
        .heartbeat_timeout
        .map_or(Duration::from_secs(5), |t| t / HEARTBEATS_PER_TIMEOUT)
        .max(Duration::from_millis(100));
    // No heartbeat up front: most activities finish well within one period, and an early
    // heartbeat would cost a server call per activity.
    let beat = async {
        loop {
            tokio::time::sleep(every).await;
            // A failed heartbeat is not the work's failure: the server times us out if it must.
            let _ = ctx.record_heartbeat(()).await;
        }
    };
    tokio::select! {
        out = work => out,
        never = beat => never,
    }
}

/// The implementer an activity was registered with.
pub(crate) fn instance<P: Pipeline>(
    receiver: Option<Arc<PipelineActivities<P>>>,
) -> Result<Arc<PipelineActivities<P>>, ActivityError> {
    receiver.ok_or_else(|| {
        activity_error(
            ConnectorError::config("pipeline activities were registered without an instance"),
            0,
        )
    })
}

/// The span of one activity attempt: the pipeline, the job, its run, the attempt and (for
/// `process`) the batches.
pub(crate) fn activity_span<P: Pipeline>(
    ctx: &ActivityContext,
    activity: &'static str,
) -> tracing::Span {
    let info = ctx.info();
    tracing::info_span!(
        "activity",
        activity,
        pipeline = P::NAMES.workflow,
        job_id = info.workflow_id.as_deref().unwrap_or(""),
        run = info.workflow_run_id.as_deref().unwrap_or(""),
        attempt = info.attempt,
        first_batch = tracing::field::Empty,
        last_batch = tracing::field::Empty,
    )
}

/// One activity of a pipeline: its name, its input and output, and the work it does. The
/// wrapper [`Activity`] does the rest alike for every activity: the implementer, the span,
/// heartbeats, logging the outcome, and the failure (with its attempt) on error.
pub(crate) trait Work<P: Pipeline>: Send + Sync + 'static {
    /// What the activity takes.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What it returns.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// What spans and logs call it: `plan`, `process`, `snapshot`, `list`, `stream`.
    const LABEL: &'static str;
    /// Whether the wrapper heartbeats while the work runs; the stream executor heartbeats its
    /// checkpoints itself.
    const HEARTBEATS: bool = true;

    /// Its name among the pipeline's names.
    fn name(names: &PipelineNames) -> &'static str;

    /// Does the work.
    fn run(
        me: Arc<PipelineActivities<P>>,
        ctx: &ActivityContext,
        input: Self::Input,
        span: &tracing::Span,
    ) -> impl Future<Output = Result<Self::Output, ConnectorError>> + Send;

    /// Logs what it did, inside its span.
    fn done(output: &Self::Output);
}

/// The Temporal activity of work `W` of pipeline `P`, registered under its fixed name; the
/// marker a workflow calls it with.
pub(crate) struct Activity<P, W>(PhantomData<fn() -> (P, W)>);

impl<P, W> Activity<P, W> {
    /// The activity marker, for calling it from a workflow.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<P, W> Default for Activity<P, W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Pipeline, W: Work<P>> ActivityDefinition for Activity<P, W> {
    type Input = W::Input;
    type Output = W::Output;
    fn name(&self) -> &str {
        W::name(&P::NAMES)
    }
}

impl<P: Pipeline, W: Work<P>> ExecutableActivity for Activity<P, W> {
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
            let attempt = ctx.info().attempt;
            let span = activity_span::<P>(&ctx, W::LABEL);
            let work = W::run(me, &ctx, input, &span);
            let done = if W::HEARTBEATS {
                with_heartbeats(&ctx, work).instrument(span.clone()).await
            } else {
                work.instrument(span.clone()).await
            };
            let _enter = span.enter();
            match &done {
                Ok(output) => W::done(output),
                Err(e) => tracing::warn!(kind = ?e.kind(), error = %e, "{} failed", W::LABEL),
            }
            done.map_err(|e| activity_error(e, attempt))
        })
    }
}
