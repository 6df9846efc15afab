//! The command's operations on streaming jobs: a job file with a `[stream]` table starts one;
//! `status`, `watch`, `report`, `pause`, `resume` and `cancel` work as for batch jobs.

use std::path::Path;

use serde::Deserialize;

use super::batch::{parse_file, seconds_in};
use super::operate::{ConfigError, Control, Operated, Overrides, Ready, Request};
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::job::{JobClient, JobHandle, JobKind, Stream};
use crate::pipeline::Pipeline;
use crate::stream::StreamRequest;
use crate::stream::StreamRequestOf;

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

impl<P: Pipeline> Operated<P> for Stream {
    fn parse(
        job_id: &str,
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Box<dyn Ready>, ConfigError> {
        if overrides.from_cursor.is_some() || overrides.to_cursor.is_some() {
            return Err(ConfigError(format!(
                "pipeline `{}` streams: it resumes where it stopped, not from a cursor (`--from-cursor`, `--to-cursor`)",
                P::NAMES.workflow
            )));
        }
        if overrides.rate.is_some() {
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
        Ok(Request::<P, Stream>::ready(r))
    }

    /// The report with the summary's pipeline, records read and batches.
    fn report_json(r: &Self::Report) -> serde_json::Value {
        let summary = <Self as JobKind<P>>::summary(r);
        let mut value = serde_json::to_value(r).unwrap_or_default();
        value["pipeline"] = summary.pipeline.into();
        value["records_read"] = summary.records_read.into();
        value["batches"] = summary.batches.into();
        value
    }

    /// The summary's progress, with the kind's report and the stream's rate and lag.
    fn progress_json(p: &Self::Progress) -> serde_json::Value {
        let summary = <Self as JobKind<P>>::progress_summary(p);
        let mut value = serde_json::to_value(summary).unwrap_or_default();
        value["report"] = <Self as Operated<P>>::report_json(&p.report);
        value["stream"] = serde_json::json!({
            "records_per_s": p.records_per_s,
            "lag": p.lag,
        });
        value
    }

    async fn control(job: &JobHandle<P, Stream>, control: Control) -> Result<(), JobError> {
        let job_id = job.job_id();
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
    }

    async fn redrive(job: &JobHandle<P, Stream>, _jobs: &JobClient) -> Result<String, JobError> {
        Err(JobError::NotRedrivable {
            job_id: job.job_id().to_owned(),
            reason: "a streaming job has no failed batches: what it could not write went back to its source".into(),
        })
    }
}
