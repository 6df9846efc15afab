//! The queue executor: the `<workflow>.stream` activity, which runs one slice of a streaming
//! job.
//!
//! A reader fills a bounded channel from the stream; a writer drains it into the sink in
//! batches, then acknowledges what it wrote. Both run in the activity's task, side by side.
//! The checkpoint and counts are heartbeated every second and a retried slice starts from
//! them. A failed write hands the records it held back to the source (`Receipt::release`)
//! and fails the slice: Temporal retries it with backoff while the sink is down, and the
//! channel never grows past `buffer`.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use temporalio_sdk::activities::{ActivityContext, ActivityDefinitions};

use crate::activity::{Activity, PipelineActivities, Work, bounded};
use crate::connector::{Offset, Sink, SinkConfig, SourceConfig, WriteContext};
use crate::connector::{Receipt, Received, StreamReader, StreamSource};
use crate::error::{ConnectorError, ErrorKind, RecordError};
use crate::pipeline::{OffsetOf, Pipeline, PipelineNames, Transformed};
use crate::record::Positioned;

/// Input of the `<workflow>.stream` activity: one slice of a streaming job.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SliceInput<S: SourceConfig, K: SinkConfig> {
    /// The job id.
    pub job_id: String,
    /// The source's config.
    pub source: S,
    /// The sink's config.
    pub sink: K,
    /// Which executor of the job runs the slice, from 0.
    pub executor: u32,
    /// The executor's checkpoint: read after it.
    pub after: Option<S::Offset>,
    /// Records per write, at most.
    pub batch_size: u64,
    /// How long a read waits for records.
    pub linger: Duration,
    /// Records read ahead of the sink, at most.
    pub buffer: u64,
    /// How long the slice reads.
    pub length: Duration,
    /// Records to receive in this slice, at most.
    pub max_records: Option<u64>,
    /// End the slice as idle after this long without a record.
    pub idle_after: Option<Duration>,
    /// Record errors to return with positions, at most.
    pub max_error_samples: u32,
    /// How long a failing read is retried before the slice fails.
    pub retry_for: Duration,
    /// Longest time one read or write call may take.
    pub call_timeout: Duration,
}

/// What one slice did: also its heartbeat details, from which a retried slice resumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SliceReport<O: Offset> {
    /// Records received, good and bad.
    pub received: u64,
    /// Records newly written.
    pub written: u64,
    /// Records the sink already had.
    pub already_present: u64,
    /// Records an upserting sink held a newer version of.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub superseded: u64,
    /// Records the transform filtered out.
    pub filtered: u64,
    /// Records that could not be decoded, transformed or written.
    pub record_errors: u64,
    /// The first record errors.
    pub error_samples: Vec<RecordError>,
    /// The offset of the last record written (and acknowledged).
    pub checkpoint: Option<O>,
    /// Time since the last record received when the slice ended, in ms.
    pub idle_ms: u64,
    /// The slice ended because the stream was idle for `idle_after`.
    pub idle: bool,
    /// Records in the stream not received yet, where the source can tell.
    pub lag: Option<u64>,
    /// How long the slice ran, in ms.
    pub work_ms: u64,
}

impl<O: Offset> Default for SliceReport<O> {
    fn default() -> Self {
        Self {
            received: 0,
            written: 0,
            already_present: 0,
            superseded: 0,
            filtered: 0,
            record_errors: 0,
            error_samples: Vec::new(),
            checkpoint: None,
            idle_ms: 0,
            idle: false,
            lag: None,
            work_ms: 0,
        }
    }
}

/// The queue executor's work.
pub(crate) enum SliceWork {}

/// The `<workflow>.stream` activity: the queue executor of a streaming pipeline.
pub(crate) type StreamActivity<P> = Activity<P, SliceWork>;

impl<P: Pipeline> Work<P> for SliceWork
where
    P::Source: StreamSource,
{
    type Input = SliceInput<P::Source, P::Sink>;
    type Output = SliceReport<OffsetOf<P>>;
    const LABEL: &'static str = "stream";
    // A slice heartbeats its checkpoint itself.
    const HEARTBEATS: bool = false;

    fn name(names: &PipelineNames) -> &'static str {
        names.stream
    }

    async fn run(
        me: Arc<PipelineActivities<P>>,
        ctx: &ActivityContext,
        input: Self::Input,
        _span: &tracing::Span,
    ) -> Result<Self::Output, ConnectorError> {
        run_slice::<P>(&me, ctx, input).await
    }

    fn done(r: &Self::Output) {
        tracing::debug!(
            received = r.received,
            written = r.written,
            already_present = r.already_present,
            record_errors = r.record_errors,
            idle = r.idle,
            "slice done"
        );
    }
}

/// Registers the queue executor of streaming pipeline `P`.
pub(crate) fn register<P: Pipeline>(me: Arc<PipelineActivities<P>>, defs: &mut ActivityDefinitions)
where
    P::Source: StreamSource,
{
    defs.register_activity::<StreamActivity<P>>(me);
}

type ReceivedOf<P> = Received<<<P as Pipeline>::Source as StreamSource>::Reader>;

/// How often a slice heartbeats its checkpoint.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// Runs one slice: reader and writer side by side until the slice's time, its record limit
/// or idleness ends it, or the activity is cancelled; then the writer drains the channel.
async fn run_slice<P: Pipeline>(
    me: &PipelineActivities<P>,
    ctx: &ActivityContext,
    input: SliceInput<P::Source, P::Sink>,
) -> Result<SliceReport<OffsetOf<P>>, ConnectorError>
where
    P::Source: StreamSource,
{
    let started = Instant::now();
    // A retried slice goes on from its last heartbeat: counts and checkpoint.
    let mut report = ctx
        .heartbeat_details()
        .deserialize::<SliceReport<OffsetOf<P>>>()
        .ok()
        .flatten()
        .unwrap_or_default();
    report.idle = false;
    let after = report.checkpoint.clone().or_else(|| input.after.clone());
    let sink = me.sink(&input.sink, input.call_timeout).await?;
    let state = me.state(input.call_timeout).await?;
    let name = <P::Source as SourceConfig>::NAME;
    let mut reader = bounded(
        input.call_timeout,
        format!("opening stream source `{name}`"),
        input.source.open(after.as_ref()),
    )
    .await
    .map_err(|e| e.context(format_args!("opening stream source `{name}`")))?;

    let batch_size = input.batch_size.max(1) as usize;
    let capacity = (input.buffer as usize / batch_size).max(1);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<ReceivedOf<P>>>(capacity);
    let progress = std::sync::Mutex::new(report);

    let reading = async {
        let deadline = started + input.length;
        let mut received = 0u64;
        let mut last_record = Instant::now();
        let mut failing_since: Option<Instant> = None;
        let mut idle = false;
        loop {
            let now = Instant::now();
            if ctx.is_cancelled() || now >= deadline {
                break;
            }
            if let Some(idle_after) = input.idle_after
                && now.duration_since(last_record) >= idle_after
            {
                idle = true;
                break;
            }
            let want = match input.max_records {
                Some(max) => max.saturating_sub(received).min(batch_size as u64) as usize,
                None => batch_size,
            };
            if want == 0 {
                break;
            }
            let wait = input.linger.min(deadline - now);
            let next = bounded(
                input.call_timeout,
                format!("reading stream source `{name}`"),
                reader.next(want, wait),
            );
            let got = tokio::select! {
                biased;
                _ = ctx.cancelled() => break,
                got = next => got,
            };
            match got {
                Ok(items) if items.is_empty() => failing_since = None,
                Ok(items) => {
                    failing_since = None;
                    received += items.len() as u64;
                    last_record = Instant::now();
                    // A full channel waits here: the sink holds the stream back. A writer
                    // that gave up takes nothing more: hand the records back at once.
                    if let Err(unsent) = tx.send(items).await {
                        for item in unsent.0 {
                            item.receipt.release().await;
                        }
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Transient => {
                    // A source that cannot be reached is not idle: idleness counts again
                    // from its recovery.
                    last_record = Instant::now();
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= input.retry_for {
                        return Err(e.context(format_args!(
                            "reading stream source `{name}` failed for {:?} (retry_for)",
                            input.retry_for
                        )));
                    }
                    tracing::warn!(error = %e, "reading the stream failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e.context(format_args!("reading stream source `{name}`"))),
            }
        }
        drop(tx);
        let lag = reader.lag().await;
        Ok::<_, ConnectorError>((last_record.elapsed(), idle, lag))
    };

    let attempt = ctx.info().attempt;
    let writing = async {
        while let Some(mut items) = rx.recv().await {
            // Take what else is waiting, up to a batch, without waiting for it.
            while items.len() < batch_size {
                match rx.try_recv() {
                    Ok(more) => items.extend(more),
                    Err(_) => break,
                }
            }
            let batch = match write_batch::<P>(&input, attempt, &*sink, state, items).await {
                Ok(batch) => batch,
                Err(e) => {
                    // Hand back what the channel still holds, so the next attempt gets it at
                    // once instead of after the source's redelivery delay.
                    rx.close();
                    while let Some(items) = rx.recv().await {
                        for item in items {
                            item.receipt.release().await;
                        }
                    }
                    return Err(e);
                }
            };
            let mut r = progress.lock().expect("slice progress lock");
            r.received += batch.received;
            r.written += batch.written;
            r.already_present += batch.already_present;
            r.superseded += batch.superseded;
            r.filtered += batch.filtered;
            r.record_errors += batch.record_errors;
            r.error_samples.extend(batch.error_samples);
            r.error_samples.truncate(input.max_error_samples as usize);
            if batch.checkpoint.is_some() {
                r.checkpoint = batch.checkpoint;
            }
        }
        Ok(())
    };

    let heartbeats = async {
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            let details = progress.lock().expect("slice progress lock").clone();
            let _ = ctx.record_heartbeat(details).await;
        }
    };

    let both = async { tokio::join!(reading, writing) };
    let (read, wrote) = tokio::select! {
        both = both => both,
        never = heartbeats => never,
    };
    // The writer's failure is the cause when both failed: a reader fails when the writer is
    // gone, not the other way.
    wrote?;
    let (idle_for, idle, lag) = read?;
    let mut report = progress.into_inner().expect("slice progress lock");
    report.idle = idle;
    report.idle_ms = idle_for.as_millis() as u64;
    report.lag = lag;
    report.work_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Counts of one written batch.
struct Written<O> {
    received: u64,
    written: u64,
    already_present: u64,
    superseded: u64,
    filtered: u64,
    record_errors: u64,
    error_samples: Vec<RecordError>,
    checkpoint: Option<O>,
}

/// Transforms and writes one batch, then acknowledges it. A failed write releases every
/// record of the batch back to the source.
async fn write_batch<P: Pipeline>(
    input: &SliceInput<P::Source, P::Sink>,
    attempt: u32,
    sink: &<P::Sink as SinkConfig>::Sink,
    state: &P::State,
    items: Vec<ReceivedOf<P>>,
) -> Result<Written<OffsetOf<P>>, ConnectorError>
where
    P::Source: StreamSource,
{
    let mut done = Written {
        received: items.len() as u64,
        written: 0,
        already_present: 0,
        superseded: 0,
        filtered: 0,
        record_errors: 0,
        error_samples: Vec::new(),
        checkpoint: None,
    };
    let mut receipts = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    let mut first_record = None;
    for item in items {
        receipts.push(item.receipt);
        done.checkpoint = Some(item.offset);
        let record = match item.record {
            Ok(record) => record,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let position = record.position;
        first_record.get_or_insert(position.record);
        match P::transform(record.value, state).await {
            Ok(Transformed::One(value)) => out.push(Positioned { position, value }),
            Ok(Transformed::Filtered) => done.filtered += 1,
            Ok(Transformed::Many(values)) if values.is_empty() => done.filtered += 1,
            Ok(Transformed::Many(values)) => {
                out.extend(values.into_iter().zip(0..).map(|(value, part)| Positioned {
                    position: position.part(part),
                    value,
                }));
            }
            Err(e) => errors.push(RecordError::new(position, e.0)),
        }
    }
    if !out.is_empty() {
        let write_ctx = WriteContext {
            job_id: input.job_id.clone(),
            batch: first_record.unwrap_or(0),
            attempt,
        };
        let written = bounded(
            input.call_timeout,
            format!("writing to sink `{}`", <P::Sink as SinkConfig>::NAME),
            sink.write(&write_ctx, out),
        )
        .await;
        match written {
            Ok(outcome) => {
                done.written = outcome.written;
                done.already_present = outcome.already_present;
                done.superseded = outcome.superseded;
                errors.extend(outcome.errors);
            }
            Err(e) => {
                for receipt in receipts {
                    receipt.release().await;
                }
                return Err(e.context(format_args!(
                    "writing to sink `{}`",
                    <P::Sink as SinkConfig>::NAME
                )));
            }
        }
    }
    // Written, or refused record by record: acknowledged, never delivered again. A lost
    // acknowledgement only means a redelivery the sink absorbs.
    for receipt in receipts {
        if let Err(e) = receipt.ack().await {
            tracing::warn!(error = %e, "acknowledging a record failed; it may be delivered again");
        }
    }
    done.record_errors = errors.len() as u64;
    errors.truncate(input.max_error_samples as usize);
    done.error_samples = errors;
    Ok(done)
}
