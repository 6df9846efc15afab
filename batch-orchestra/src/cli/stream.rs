//! The command's operations on streaming jobs: a job file with a `[stream]` table starts one;
//! `status`, `watch`, `report`, `pause`, `resume` and `cancel` work as for batch jobs.

use std::marker::PhantomData;
use std::path::Path;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::operator::{ConfigError, Control, Operate, parse_file, seconds_in};
use crate::client::JobClient;
use crate::connector::{Offset, SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::pipeline::{Pipeline, StreamRequestOf};
use crate::streaming::{StreamProgress, StreamReport, StreamRequest};

/// A streaming job file: the source's and the sink's configs, and the `[stream]` table.
///
/// ```toml
/// [source]
/// stream = "ORDERS"
/// consumer = "orders-to-mongo"
/// url_env = "NATS_URL"
///
/// [sink]
/// uri_env = "MONGODB_URI"
/// database = "shop"
/// collection = "orders"
///
/// [stream]
/// batch_size = 1000
/// linger_s = 0.1
/// idle_timeout_s = 600
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
struct StreamFile<S: SourceConfig, K: SinkConfig> {
    source: S,
    sink: K,
    #[serde(default)]
    stream: StreamOptions,
}

/// The `[stream]` table: every key is optional; durations are in seconds.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StreamOptions {
    batch_size: Option<u64>,
    linger_s: Option<f64>,
    buffer: Option<u64>,
    checkpoint_interval_s: Option<f64>,
    executors: Option<u32>,
    max_records: Option<u64>,
    max_duration_s: Option<f64>,
    idle_timeout_s: Option<f64>,
    max_record_errors: Option<u64>,
    max_error_samples: Option<u32>,
    retry_for_s: Option<f64>,
    call_timeout_s: Option<f64>,
    heartbeat_timeout_s: Option<f64>,
    max_slices_per_run: Option<u32>,
}

/// The operations of streaming pipeline `P`'s jobs.
pub(crate) fn stream_operator<P: Pipeline>() -> Box<dyn Operate> {
    Box::new(StreamOperator::<P>(PhantomData))
}

struct StreamOperator<P>(PhantomData<fn() -> P>);

impl<P: Pipeline> Operate for StreamOperator<P> {
    fn name(&self) -> &'static str {
        P::NAMES.workflow
    }

    fn connectors(&self) -> (&'static str, &'static str) {
        (
            <P::Source as SourceConfig>::NAME,
            <P::Sink as SinkConfig>::NAME,
        )
    }

    fn parse(
        &self,
        job_id: &str,
        path: &Path,
        text: &str,
        rate: Option<u32>,
    ) -> Result<serde_json::Value, ConfigError> {
        if rate.is_some() {
            return Err(ConfigError(format!(
                "pipeline `{}` streams: it has no rate limit (`--rate`); size it with `[stream]` batch_size and executors",
                P::NAMES.workflow
            )));
        }
        let file: StreamFile<P::Source, P::Sink> = parse_file::<P, _>(path, text)?;
        let o = file.stream;
        let mut r: StreamRequestOf<P> = StreamRequest::new(job_id, file.source, file.sink);
        r.batch_size = o.batch_size.unwrap_or(r.batch_size);
        r.buffer = o.buffer.unwrap_or(r.buffer);
        r.executors = o.executors.unwrap_or(r.executors);
        r.max_records = o.max_records.or(r.max_records);
        r.max_record_errors = o.max_record_errors.or(r.max_record_errors);
        r.max_error_samples = o.max_error_samples.unwrap_or(r.max_error_samples);
        r.max_slices_per_run = o.max_slices_per_run.unwrap_or(r.max_slices_per_run);
        for (key, value, field) in [
            ("linger_s", o.linger_s, &mut r.linger),
            (
                "checkpoint_interval_s",
                o.checkpoint_interval_s,
                &mut r.checkpoint_interval,
            ),
            ("retry_for_s", o.retry_for_s, &mut r.retry_for),
            ("call_timeout_s", o.call_timeout_s, &mut r.call_timeout),
            (
                "heartbeat_timeout_s",
                o.heartbeat_timeout_s,
                &mut r.heartbeat_timeout,
            ),
        ] {
            if let Some(v) = value {
                *field = seconds_in(path, "stream", key, v)?;
            }
        }
        if let Some(v) = o.max_duration_s {
            r.max_duration = Some(seconds_in(path, "stream", "max_duration_s", v)?);
        }
        if let Some(v) = o.idle_timeout_s {
            r.idle_timeout = Some(seconds_in(path, "stream", "idle_timeout_s", v)?);
        }
        r.validate()
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        serde_json::to_value(&r).map_err(|e| {
            ConfigError(format!(
                "{}: the request does not serialize: {e}",
                path.display()
            ))
        })
    }

    fn start<'a>(
        &'a self,
        jobs: &'a JobClient,
        request: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let request: StreamRequestOf<P> = serde_json::from_value(request)
                .map_err(|e| JobError::Temporal(format!("bad request: {e}")))?;
            jobs.start_stream::<P>(request).await.map(drop)
        })
    }

    fn progress<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let progress = jobs.stream_job::<P>(job_id).progress().await?;
            Ok(progress_json(&progress))
        })
    }

    fn report<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let report = jobs.stream_job::<P>(job_id).report().await?;
            Ok(report_json(&report))
        })
    }

    fn control<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
        control: Control,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let job = jobs.stream_job::<P>(job_id);
            match control {
                Control::Pause => job.pause().await,
                Control::Resume => job.resume().await,
                Control::Cancel => job.cancel().await,
                Control::SetParallelism(_) | Control::SetRate(_) => {
                    Err(JobError::InvalidRequest(format!(
                        "job `{job_id}` streams: its executors and batch size are set when it starts; it has no in-flight limit or rate to change"
                    )))
                }
            }
        })
    }

    fn redrive<'a>(
        &'a self,
        _jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<String, JobError>> {
        Box::pin(async move {
            Err(JobError::NotRedrivable {
                job_id: job_id.to_owned(),
                reason: "a streaming job has no failed batches: what it could not write went back to its source".into(),
            })
        })
    }
}

/// A streaming job's progress in the shape of a batch job's: `in_flight` counts running
/// slices, `max_in_flight` is the executors. The stream's own figures are under `stream`.
fn progress_json<O: Offset>(p: &StreamProgress<O>) -> serde_json::Value {
    serde_json::json!({
        "report": report_json(&p.report),
        "in_flight": p.running,
        "max_in_flight": p.report.checkpoints.len(),
        "paused": p.paused,
        "running": [],
        "records_planned": 0,
        "planning_done": false,
        "stream": {
            "records_per_s": p.records_per_s,
            "lag": p.lag,
        },
    })
}

/// A streaming report with the fields a batch job's has: received records as read, slices as
/// batches. The rest stays as it is.
fn report_json<O: Offset>(r: &StreamReport<O>) -> serde_json::Value {
    let mut value = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("pipeline".into(), r.workflow.clone().into());
        map.insert("records_read".into(), r.records_received.into());
        map.insert("batches".into(), r.slices.into());
    }
    value
}
