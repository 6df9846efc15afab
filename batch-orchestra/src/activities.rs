//! The activities of a pipeline: `plan`, `process` and `snapshot`, and `list` for sharded
//! jobs.
//!
//! They are generic over the pipeline and registered under its fixed names. Connectors are
//! built once per worker and config and reused by every batch; a built source whose input
//! changed ([`Source::is_current`]) and connectors that failed are built again.
//!
//! Liveness: activities heartbeat four times per heartbeat timeout, so a dead worker's
//! batches move on within that timeout; each read, write and plan call is bounded by the
//! job's `call_timeout`, so a hung call is abandoned and retried instead of looking alive.
//! Cancellation is heard through heartbeats: a cancelled `process` activity stops before its
//! next read, lets a write in progress finish, and reports exactly what it wrote.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use temporalio_common::ActivityDefinition;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{
    ActivityContext, ActivityDefinitions, ActivityError, ActivityImplementer, ExecutableActivity,
};

use crate::cache::ConnectorCache;
use crate::connector::{
    BatchRange, Plan, Positioned, Sink, SinkConfig, Source, SourceConfig, WriteContext,
};
use crate::error::{
    BATCH_ERROR_TYPE, CONFIG_ERROR_TYPE, ConnectorError, ErrorKind, RecordError,
    TRANSIENT_ERROR_TYPE,
};
use crate::metrics::MetricsSlot;
use crate::model::{BatchReport, JobReport};
use crate::pipeline::{OffsetOf, Pipeline, TransformState, Transformed};
use crate::sharding::ShardPage;
use crate::snapshot::SnapshotTarget;

/// The fingerprint of a source config and its input's identity: 12 hex digits of a 64-bit
/// FNV-1a hash, stable across builds and platforms (it is part of record ids).
pub(crate) fn input_fingerprint<S: serde::Serialize>(
    config: &S,
    identity: Option<String>,
) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let config = serde_json::to_vec(config).unwrap_or_default();
    let mut hash = OFFSET;
    let identity = identity.unwrap_or_default();
    for byte in config.iter().chain(&[0]).chain(identity.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    format!("{:012x}", hash >> 16)
}

/// A batch error when the input is not the one the job planned: its fingerprint (config and
/// [`Source::identity`]) differs from the job's, so the planned offsets would read other
/// records (a file rewritten or appended to, an object replaced). Each batch then fails
/// alone, naming the input, and nothing is read from the changed input.
fn unchanged_since_plan<S: SourceConfig>(
    config: &S,
    source: &S::Source,
    input: &ProcessInput<S, impl SinkConfig>,
) -> Result<(), ConnectorError> {
    let (Some(planned), Some(identity)) = (&input.input_fingerprint, source.identity()) else {
        return Ok(());
    };
    let now = input_fingerprint(config, Some(identity));
    if &now == planned {
        return Ok(());
    }
    Err(ConnectorError::batch(format!(
        "the input of source `{}` changed since the job planned it (fingerprint {planned}, now {now}): its planned batches would read other records; start a new job over the new input",
        S::NAME
    )))
}

/// Heartbeats per heartbeat timeout.
const HEARTBEATS_PER_TIMEOUT: u32 = 4;

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
    /// Longest time the plan call may take.
    #[serde(default = "no_timeout")]
    pub call_timeout: Duration,
}

fn no_timeout() -> Duration {
    Duration::MAX
}

/// Output of the `plan` activity: the source's plan and the fingerprint of its input.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PlanOutput<O: crate::connector::Offset> {
    /// The batches planned.
    #[serde(flatten)]
    pub plan: Plan<O>,
    /// The fingerprint of the source config and its input's [`Source::identity`]: the
    /// workflow keeps the one of the job's first plan and scopes record ids by it. Absent from
    /// histories recorded before fingerprints existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fingerprint: Option<String>,
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
    /// Longest time one read or write call may take.
    #[serde(default = "no_timeout")]
    pub call_timeout: Duration,
    /// The job's input fingerprint: sinks are told the id scope `<job id>@<fingerprint>`.
    /// Absent for jobs started before fingerprints existed, whose ids keep the bare job id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fingerprint: Option<String>,
}

/// Input of the `list` activity of a sharded job.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ListInput<S: SourceConfig> {
    /// The config that stands for many inputs.
    pub source: S,
    /// List inputs whose keys come after this one; from the first when `None`.
    pub after: Option<String>,
    /// Inputs to return, at most.
    pub limit: u32,
    /// Longest time the listing call may take.
    pub call_timeout: Duration,
}

/// Input of the `snapshot` activity.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SnapshotInput<O: crate::connector::Offset> {
    /// Where to save.
    pub target: SnapshotTarget,
    /// The name to save under: the workflow id.
    #[serde(default)]
    pub name: String,
    /// What to save.
    pub report: JobReport<O>,
}

/// The activity implementations of pipeline `P`, registered on a worker by
/// [`WorkerBuilder::pipeline`](crate::WorkerBuilder::pipeline).
pub struct PipelineActivities<P: Pipeline> {
    pub(crate) connectors: ConnectorCache,
    /// The transform's state, built by the first batch that needs it.
    state: tokio::sync::OnceCell<P::State>,
    pub(crate) metrics: MetricsSlot,
    _pipeline: PhantomData<fn() -> P>,
}

impl<P: Pipeline> PipelineActivities<P> {
    pub(crate) fn new(connectors: ConnectorCache, metrics: MetricsSlot) -> Self {
        Self {
            connectors,
            state: tokio::sync::OnceCell::new(),
            metrics,
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

    async fn source(
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

    async fn plan(
        &self,
        input: PlanInput<P::Source>,
    ) -> Result<PlanOutput<OffsetOf<P>>, ConnectorError> {
        let source = self.source(&input.source, input.call_timeout).await?;
        let max_batches = usize::try_from(input.max_batches)
            .unwrap_or(usize::MAX)
            .max(1);
        let from = input.from.as_ref();
        let planned = bounded(input.call_timeout, "planning batches", async {
            source
                .plan(from, input.batch_size.max(1), max_batches)
                .await
        })
        .await;
        if planned.is_err() {
            self.connectors.evict(&input.source, &source);
        }
        Ok(PlanOutput {
            plan: planned?,
            input_fingerprint: Some(input_fingerprint(&input.source, source.identity())),
        })
    }

    async fn process(
        &self,
        ctx: &ActivityContext,
        input: ProcessInput<P::Source, P::Sink>,
    ) -> Result<BatchReport, ConnectorError> {
        let metrics = self.metrics.get();
        let _running = metrics.map(|m| m.running());
        let processed = self.process_with_connectors(ctx, &input).await;
        // Counted per successful attempt, as the workflow counts them, so the metrics add up
        // to the report even when attempts fail and are retried.
        if let Some(m) = metrics {
            match &processed {
                Ok(report) => m.processed(report, input.batches.len()),
                Err(_) => m.failure(),
            }
        }
        processed
    }

    async fn process_with_connectors(
        &self,
        ctx: &ActivityContext,
        input: &ProcessInput<P::Source, P::Sink>,
    ) -> Result<BatchReport, ConnectorError> {
        let source = self.source(&input.source, input.call_timeout).await?;
        unchanged_since_plan::<P::Source>(&input.source, &*source, input)?;
        let sink = self.sink(&input.sink, input.call_timeout).await?;
        let state = self.state(input.call_timeout).await?;
        let processed = self
            .process_batches(ctx, input, &*source, &*sink, state)
            .await;
        if let Err(e) = &processed
            && e.kind() != ErrorKind::Batch
        {
            // A connector that failed may hold a broken connection: build it afresh.
            self.connectors.evict(&input.source, &source);
            self.connectors.evict(&input.sink, &sink);
        }
        processed
    }

    async fn process_batches(
        &self,
        ctx: &ActivityContext,
        input: &ProcessInput<P::Source, P::Sink>,
        source: &<P::Source as SourceConfig>::Source,
        sink: &<P::Sink as SinkConfig>::Sink,
        state: &P::State,
    ) -> Result<BatchReport, ConnectorError> {
        let started_work = std::time::Instant::now();
        let mut report = BatchReport::default();
        let mut samples = Vec::new();
        for (done, batch) in input.batches.iter().enumerate() {
            let started = std::time::Instant::now();
            let before = (
                report.records_read,
                report.records_written,
                report.already_present,
                report.records_filtered,
                report.record_errors,
            );
            // Cancelled: stop before reading more; what was written is reported exactly.
            let reading = bounded(
                input.call_timeout,
                format!(
                    "reading batch {} from source `{}`",
                    batch.index,
                    <P::Source as SourceConfig>::NAME
                ),
                source.read(batch),
            );
            let read = tokio::select! {
                biased;
                _ = ctx.cancelled() => None,
                read = reading => Some(read?),
            };
            let Some(read) = read else {
                report.cancelled_after = Some(done as u32);
                break;
            };
            let mut errors = read.errors;
            report.records_read += (read.records.len() + errors.len()) as u64;
            let mut out = Vec::with_capacity(read.records.len());
            for record in read.records {
                let position = record.position;
                match P::transform(record.value, state).await {
                    Ok(Transformed::One(value)) => out.push(Positioned { position, value }),
                    Ok(Transformed::Filtered) => report.records_filtered += 1,
                    // A record that made none is filtered out, as `None` would.
                    Ok(Transformed::Many(values)) if values.is_empty() => {
                        report.records_filtered += 1;
                    }
                    Ok(Transformed::Many(values)) => {
                        out.extend(values.into_iter().zip(0..).map(|(value, part)| Positioned {
                            position: position.part(part),
                            value,
                        }));
                    }
                    Err(e) => errors.push(RecordError::new(position, e.0)),
                }
            }
            // A source of several inputs names each (with its own version); a job over one
            // input is scoped by the fingerprint its first plan gave.
            let (job_id, batch_number) = match (source.scope(batch), &input.input_fingerprint) {
                (Some((name, first_record)), _) => {
                    (format!("{}/{name}", input.job_id), first_record)
                }
                (None, Some(fingerprint)) => {
                    (format!("{}@{fingerprint}", input.job_id), batch.index)
                }
                (None, None) => (input.job_id.clone(), batch.index),
            };
            let write_ctx = WriteContext {
                job_id,
                batch: batch_number,
                attempt: ctx.info().attempt,
            };
            // A write in progress is not interrupted by a cancel: it finishes (or times out), so
            // the counts say exactly what the sink holds.
            let outcome = if out.is_empty() {
                Default::default()
            } else {
                bounded(
                    input.call_timeout,
                    format!(
                        "writing batch {} to sink `{}`",
                        batch.index,
                        <P::Sink as SinkConfig>::NAME
                    ),
                    sink.write(&write_ctx, out),
                )
                .await?
            };
            report.records_written += outcome.written;
            report.already_present += outcome.already_present;
            errors.extend(outcome.errors);
            report.record_errors += errors.len() as u64;
            samples.extend(errors);
            samples.truncate(input.max_error_samples as usize);
            let this_batch = BatchReport {
                records_read: report.records_read - before.0,
                records_written: report.records_written - before.1,
                already_present: report.already_present - before.2,
                records_filtered: report.records_filtered - before.3,
                record_errors: report.record_errors - before.4,
                ..Default::default()
            };
            tracing::debug!(
                batch = batch.index,
                first_record = batch.first_record,
                read = this_batch.records_read,
                written = this_batch.records_written,
                already_present = this_batch.already_present,
                record_errors = this_batch.record_errors,
                "batch written"
            );
            if let Some(m) = self.metrics.get() {
                m.batch_took(started.elapsed());
            }
        }
        report.error_samples = samples;
        report.work_ms = Some(started_work.elapsed().as_millis() as u64);
        Ok(report)
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
async fn with_heartbeats<T>(ctx: &ActivityContext, work: impl Future<Output = T>) -> T {
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

/// Converts a connector error into an activity failure: configuration and batch errors are
/// non-retryable, the rest are retried by the activity's retry policy. The attempt is added to
/// the message (` (attempt 3)`), where the workflow reads it back for its failed-batch record.
pub(crate) fn activity_error(err: ConnectorError, attempt: u32) -> ActivityError {
    let (type_name, non_retryable) = match err.kind() {
        ErrorKind::Config => (CONFIG_ERROR_TYPE, true),
        ErrorKind::Transient => (TRANSIENT_ERROR_TYPE, false),
        ErrorKind::Batch => (BATCH_ERROR_TYPE, true),
    };
    let err = if attempt > 0 {
        ConnectorError::transient(format!("{err}{ATTEMPT_PREFIX}{attempt})"))
    } else {
        err
    };
    ActivityError::application(
        ApplicationFailure::builder(err)
            .type_name(type_name.to_owned())
            .non_retryable(non_retryable)
            .build(),
    )
}

/// What [`activity_error`] puts before the attempt number.
pub(crate) const ATTEMPT_PREFIX: &str = " (attempt ";

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
    PlanActivity, plan, PlanInput<P::Source>, PlanOutput<OffsetOf<P>>
);
activity_marker!(
    /// The `<workflow>.process` activity: reads, transforms and writes a group of batches.
    ProcessActivity, process, ProcessInput<P::Source, P::Sink>, BatchReport
);
activity_marker!(
    /// The `<workflow>.snapshot` activity: saves the job report.
    SnapshotActivity, snapshot, SnapshotInput<OffsetOf<P>>, ()
);
activity_marker!(
    /// The `<workflow>.list` activity: lists a page of a sharded job's inputs.
    ListActivity, list, ListInput<P::Source>, ShardPage<P::Source>
);

impl<P: Pipeline> ExecutableActivity for ListActivity<P> {
    type Implementer = PipelineActivities<P>;
    const REQUIRES_INSTANCE: bool = true;
    fn definition() -> Self {
        Self::new()
    }
    fn execute(
        _receiver: Option<Arc<Self::Implementer>>,
        ctx: ActivityContext,
        input: Self::Input,
    ) -> BoxFuture<'static, Result<Self::Output, ActivityError>> {
        Box::pin(async move {
            let attempt = ctx.info().attempt;
            let span = activity_span::<P>(&ctx, "list");
            let limit = input.limit.max(1) as usize;
            let listing = bounded(input.call_timeout, "listing inputs", async {
                input.source.list_shards(input.after.clone(), limit).await
            });
            let listed = with_heartbeats(&ctx, listing)
                .instrument(span.clone())
                .await;
            let _enter = span.enter();
            match &listed {
                Ok(page) => tracing::debug!(inputs = page.shards.len(), more = page.more, "listed"),
                Err(e) => tracing::warn!(kind = ?e.kind(), error = %e, "listing failed"),
            }
            listed.map_err(|e| activity_error(e, attempt))
        })
    }
}

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
            let attempt = ctx.info().attempt;
            let span = activity_span::<P>(&ctx, "plan");
            let planned = with_heartbeats(&ctx, me.plan(input))
                .instrument(span.clone())
                .await;
            let _enter = span.enter();
            match &planned {
                Ok(planned) => tracing::debug!(
                    batches = planned.plan.batches.len(),
                    end_of_source = planned.plan.end_of_source,
                    "planned"
                ),
                Err(e) => tracing::warn!(kind = ?e.kind(), error = %e, "plan failed"),
            }
            planned.map_err(|e| activity_error(e, attempt))
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
            let attempt = ctx.info().attempt;
            let span = activity_span::<P>(&ctx, "process");
            if let (Some(first), Some(last)) = (input.batches.first(), input.batches.last()) {
                span.record("first_batch", first.index);
                span.record("last_batch", last.index);
            }
            let processed = with_heartbeats(&ctx, me.process(&ctx, input))
                .instrument(span.clone())
                .await;
            let _enter = span.enter();
            match &processed {
                Ok(r) => tracing::debug!(
                    read = r.records_read,
                    written = r.records_written,
                    already_present = r.already_present,
                    record_errors = r.record_errors,
                    cancelled_after = r.cancelled_after,
                    "processed"
                ),
                Err(e) => tracing::warn!(kind = ?e.kind(), error = %e, "process failed"),
            }
            processed.map_err(|e| activity_error(e, attempt))
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
                activity_error(
                    ConnectorError::config(format!("cannot serialize the job report: {e}")),
                    0,
                )
            })?;
            let snapshotter = input.target.build().map_err(|e| activity_error(e, 0))?;
            let name = if input.name.is_empty() {
                &input.report.job_id
            } else {
                &input.name
            };
            snapshotter
                .save(name, &json)
                .await
                .map_err(|e| activity_error(e, 0))
        })
    }
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

impl<P: Pipeline> ActivityImplementer for PipelineActivities<P> {
    fn register_all(self: Arc<Self>, defs: &mut ActivityDefinitions) {
        if <P::Source as SourceConfig>::STREAMING {
            // A streaming pipeline has one activity: the queue executor.
            defs.register_activity::<crate::streaming::StreamActivity<P>>(self);
            return;
        }
        defs.register_activity::<PlanActivity<P>>(self.clone());
        defs.register_activity::<ProcessActivity<P>>(self.clone());
        // A shard's pipeline shares its parent's `list` activity: register it once.
        if P::NAMES.workflow == P::NAMES.shard {
            defs.register_activity::<SnapshotActivity<P>>(self);
        } else {
            defs.register_activity::<SnapshotActivity<P>>(self.clone());
            defs.register_activity::<ListActivity<P>>(self);
        }
    }
}
