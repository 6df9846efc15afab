//! The activities of a batch job: `plan` scans ahead for batch boundaries, `process` reads,
//! transforms and writes a group of batches, `snapshot` saves the report. Connectors are
//! built once per worker and config and reused by every batch; a built source whose input
//! changed ([`Source::is_current`]) and connectors that failed are built again.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::{ActivityContext, ActivityDefinitions};

use super::{BatchReport, JobReport};
use crate::activity::{Activity, PipelineActivities, Work, bounded};
use crate::connector::{
    BatchRange, Plan, Sink, SinkConfig, Source, SourceConfig, WriteContext, input_fingerprint,
};
use crate::error::{ConnectorError, ErrorKind, RecordError};
use crate::metrics::Counts;
use crate::pipeline::{OffsetOf, Pipeline, PipelineNames, Transformed};
use crate::quarantine::{self, Quarantine, Stage};
use crate::record::Positioned;
use crate::snapshot::SnapshotTarget;

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
    /// Where failed records are kept, when the job keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Quarantine>,
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

impl<P: Pipeline> PipelineActivities<P> {
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
                // Fewer batches when it stopped early (`cancelled_after`).
                Ok(report) => m.processed(Counts {
                    read: report.records_read,
                    written: report.records_written,
                    already_present: report.already_present,
                    superseded: report.superseded,
                    quarantined: report.quarantined,
                    filtered: report.records_filtered,
                    record_errors: report.record_errors,
                    batches: report
                        .cancelled_after
                        .map_or(input.batches.len() as u64, u64::from),
                }),
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
                report.superseded,
                report.quarantined,
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
            let read_errors = errors.len();
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
            let transform_errors = errors.len() - read_errors;
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
            report.superseded += outcome.superseded;
            errors.extend(outcome.errors);
            if let Some(quarantine) = &input.quarantine {
                let file = quarantine::BatchFile {
                    job_id: &input.job_id,
                    input: &write_ctx.job_id,
                    batch: write_ctx.batch,
                };
                let failed: Vec<(Stage, RecordError)> = errors
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        let stage = if i < read_errors {
                            Stage::Read
                        } else if i < read_errors + transform_errors {
                            Stage::Transform
                        } else {
                            Stage::Write
                        };
                        (stage, e.clone())
                    })
                    .collect();
                report.quarantined += self
                    .quarantine(quarantine, &file, input, source, batch, &failed)
                    .await?;
            }
            report.record_errors += errors.len() as u64;
            samples.extend(errors);
            samples.truncate(input.max_error_samples as usize);
            let this_batch = BatchReport {
                records_read: report.records_read - before.0,
                records_written: report.records_written - before.1,
                already_present: report.already_present - before.2,
                records_filtered: report.records_filtered - before.3,
                record_errors: report.record_errors - before.4,
                superseded: report.superseded - before.5,
                quarantined: report.quarantined - before.6,
                ..Default::default()
            };
            tracing::debug!(
                batch = batch.index,
                first_record = batch.first_record,
                read = this_batch.records_read,
                written = this_batch.records_written,
                already_present = this_batch.already_present,
                superseded = this_batch.superseded,
                quarantined = this_batch.quarantined,
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

    /// Writes the failed records of `batch` to the job's quarantine, with their bytes read
    /// again from the source; returns how many were written. A batch without any removes
    /// its file, left by an earlier run of the same input.
    async fn quarantine(
        &self,
        quarantine: &Quarantine,
        file: &quarantine::BatchFile<'_>,
        input: &ProcessInput<P::Source, P::Sink>,
        source: &<P::Source as SourceConfig>::Source,
        batch: &BatchRange<OffsetOf<P>>,
        failed: &[(Stage, RecordError)],
    ) -> Result<u64, ConnectorError> {
        if failed.is_empty() {
            quarantine::clear_batch(quarantine, file).await?;
            return Ok(0);
        }
        let mut records: Vec<u64> = failed.iter().map(|(_, e)| e.position.record).collect();
        records.sort_unstable();
        records.dedup();
        let raw = bounded(
            input.call_timeout,
            format!(
                "reading the failed records of batch {} again from source `{}`",
                batch.index,
                <P::Source as SourceConfig>::NAME
            ),
            source.raw_records(batch, &records),
        )
        .await?;
        quarantine::write_batch(quarantine, file, failed, &raw.into_iter().collect()).await
    }
}

/// The `plan` work.
pub(crate) enum PlanWork {}
/// The `process` work.
pub(crate) enum ProcessWork {}
/// The `snapshot` work.
pub(crate) enum SnapshotWork {}

/// The `<workflow>.plan` activity: scans ahead and returns batch boundaries.
pub(crate) type PlanActivity<P> = Activity<P, PlanWork>;
/// The `<workflow>.process` activity: reads, transforms and writes a group of batches.
pub(crate) type ProcessActivity<P> = Activity<P, ProcessWork>;
/// The `<workflow>.snapshot` activity: saves the job report.
pub(crate) type SnapshotActivity<P> = Activity<P, SnapshotWork>;

impl<P: Pipeline> Work<P> for PlanWork {
    type Input = PlanInput<P::Source>;
    type Output = PlanOutput<OffsetOf<P>>;
    const LABEL: &'static str = "plan";

    fn name(names: &PipelineNames) -> &'static str {
        names.plan
    }

    async fn run(
        me: Arc<PipelineActivities<P>>,
        _ctx: &ActivityContext,
        input: Self::Input,
        _span: &tracing::Span,
    ) -> Result<Self::Output, ConnectorError> {
        me.plan(input).await
    }

    fn done(planned: &Self::Output) {
        tracing::debug!(
            batches = planned.plan.batches.len(),
            end_of_source = planned.plan.end_of_source,
            "planned"
        );
    }
}

impl<P: Pipeline> Work<P> for ProcessWork {
    type Input = ProcessInput<P::Source, P::Sink>;
    type Output = BatchReport;
    const LABEL: &'static str = "process";

    fn name(names: &PipelineNames) -> &'static str {
        names.process
    }

    async fn run(
        me: Arc<PipelineActivities<P>>,
        ctx: &ActivityContext,
        input: Self::Input,
        span: &tracing::Span,
    ) -> Result<Self::Output, ConnectorError> {
        if let (Some(first), Some(last)) = (input.batches.first(), input.batches.last()) {
            span.record("first_batch", first.index);
            span.record("last_batch", last.index);
        }
        me.process(ctx, input).await
    }

    fn done(r: &Self::Output) {
        tracing::debug!(
            read = r.records_read,
            written = r.records_written,
            already_present = r.already_present,
            record_errors = r.record_errors,
            cancelled_after = r.cancelled_after,
            "processed"
        );
    }
}

impl<P: Pipeline> Work<P> for SnapshotWork {
    type Input = SnapshotInput<OffsetOf<P>>;
    type Output = ();
    const LABEL: &'static str = "snapshot";

    fn name(names: &PipelineNames) -> &'static str {
        names.snapshot
    }

    async fn run(
        _me: Arc<PipelineActivities<P>>,
        _ctx: &ActivityContext,
        input: Self::Input,
        _span: &tracing::Span,
    ) -> Result<(), ConnectorError> {
        let json = serde_json::to_vec_pretty(&input.report)
            .map_err(|e| ConnectorError::config(format!("cannot serialize the job report: {e}")))?;
        let snapshotter = input.target.build()?;
        let name = if input.name.is_empty() {
            &input.report.job_id
        } else {
            &input.name
        };
        snapshotter.save(name, &json).await
    }

    fn done(_: &()) {
        tracing::debug!("report saved");
    }
}

/// Registers the batch activities of pipeline `P`.
pub(crate) fn register<P: Pipeline>(
    me: Arc<PipelineActivities<P>>,
    defs: &mut ActivityDefinitions,
) {
    defs.register_activity::<PlanActivity<P>>(me.clone());
    defs.register_activity::<ProcessActivity<P>>(me.clone());
    defs.register_activity::<SnapshotActivity<P>>(me);
}
