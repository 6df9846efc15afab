//! What the command does with one pipeline's jobs, without knowing its types: each pipeline
//! of a [`PipelineList`](crate::PipelineList) brings an [`Operate`] made for it.

use std::marker::PhantomData;
use std::path::Path;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;

use crate::client::JobClient;
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::model::BatchProcessingRequest;
use crate::pipeline::{Pipeline, RequestOf};

/// A change an operator asks of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Pause,
    Resume,
    SetParallelism(u32),
    SetRate(u32),
    Cancel,
}

/// A job config file that cannot be used, with the file and what is wrong.
#[derive(Debug)]
pub(crate) struct ConfigError(pub String);

/// One pipeline's operations, with configs, progress and reports as JSON.
pub(crate) trait Operate: Send + Sync {
    /// The pipeline's workflow name (`<workflow>.sharded` for its sharded jobs).
    fn name(&self) -> &'static str;
    /// Whether it operates a pipeline's sharded jobs: found by workflow type, not listed or
    /// started by name.
    fn sharded(&self) -> bool {
        false
    }
    /// The source's and the sink's connector names.
    fn connectors(&self) -> (&'static str, &'static str);
    /// Reads a job file into a request, checked, as JSON (ready for [`Operate::start`]).
    fn parse(
        &self,
        job_id: &str,
        path: &Path,
        text: &str,
        rate: Option<u32>,
    ) -> Result<serde_json::Value, ConfigError>;
    /// Starts a job from a request made by [`Operate::parse`].
    fn start<'a>(
        &'a self,
        jobs: &'a JobClient,
        request: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), JobError>>;
    /// The live progress of a running job.
    fn progress<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>>;
    /// The final report (waits for the job to end).
    fn report<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>>;
    /// Sends a control signal.
    fn control<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
        control: Control,
    ) -> BoxFuture<'a, Result<(), JobError>>;
    /// Starts a redrive of a finished job's failed batches; returns its id.
    fn redrive<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<String, JobError>>;
}

/// The operations of pipeline `P`.
pub(crate) fn operator<P: Pipeline>() -> Box<dyn Operate> {
    Box::new(Operator::<P>(PhantomData))
}

struct Operator<P>(PhantomData<fn() -> P>);

/// A job file: the source's and the sink's configs, and the job's options.
///
/// ```toml
/// [source]
/// path = "data/people.csv"
///
/// # Optional, and so is each key.
/// [source.options]
/// delimiter = ";"
///
/// [sink]
/// uri_env = "MONGODB_URI"
/// database = "demo"
/// collection = "people"
///
/// [job]
/// batch_size = 1000
/// max_in_flight = 8
/// max_records_per_s = 5000
///
/// # Optional: one job over every file the source's path matches (a glob).
/// [shards]
/// max_concurrent = 8
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
struct JobFile<S: SourceConfig, K: SinkConfig> {
    source: S,
    sink: K,
    #[serde(default)]
    job: JobOptions<S::Offset>,
    /// Present: the job runs sharded over the inputs the source lists.
    #[serde(default)]
    shards: Option<super::sharded::ShardOptions>,
}

/// The `[job]` table: every key is optional; durations are in seconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
struct JobOptions<O: crate::connector::Offset> {
    batch_size: Option<u64>,
    max_in_flight: Option<u32>,
    batches_per_activity: Option<u32>,
    max_batches_per_activity: Option<u32>,
    plan_ahead: Option<u32>,
    max_batches_per_run: Option<u32>,
    max_record_errors: Option<u64>,
    max_error_samples: Option<u32>,
    max_failed_batches: Option<u64>,
    max_records_per_s: Option<u32>,
    activity_timeout_s: Option<f64>,
    call_timeout_s: Option<f64>,
    heartbeat_timeout_s: Option<f64>,
    stuck_after_s: Option<f64>,
    outage_budget_s: Option<f64>,
    start_at: Option<O>,
}

impl<O: crate::connector::Offset> Default for JobOptions<O> {
    fn default() -> Self {
        Self {
            batch_size: None,
            max_in_flight: None,
            batches_per_activity: None,
            max_batches_per_activity: None,
            plan_ahead: None,
            max_batches_per_run: None,
            max_record_errors: None,
            max_error_samples: None,
            max_failed_batches: None,
            max_records_per_s: None,
            activity_timeout_s: None,
            call_timeout_s: None,
            heartbeat_timeout_s: None,
            stuck_after_s: None,
            outage_budget_s: None,
            start_at: None,
        }
    }
}

/// Parses `text` (the file `path`) as a job file of pipeline `P`. Keys the configs do not
/// know are refused with their line, as are values of the wrong type.
fn parse_job_file<P: Pipeline>(
    path: &Path,
    text: &str,
) -> Result<JobFile<P::Source, P::Sink>, ConfigError> {
    parse_file::<P, _>(path, text)
}

/// Parses `text` (the file `path`) as `F`, a job file of pipeline `P`: unknown keys are
/// refused with their line, values of the wrong type with toml's own message.
pub(crate) fn parse_file<P: Pipeline, F: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<F, ConfigError> {
    let shown = path.display();
    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError(format!("{shown}: {}", e.to_string().trim_end())))?;
    let file: F = serde_ignored::deserialize(deserializer, |key| unknown.push(key.to_string()))
        .map_err(|e| ConfigError(format!("{shown}: {}", e.to_string().trim_end())))?;
    if let Some(key) = unknown.first() {
        let last = key.rsplit('.').next().unwrap_or(key);
        let line = text
            .lines()
            .position(|l| {
                let l = l.trim_start();
                l.strip_prefix(last)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|i| format!(", line {}", i + 1))
            .unwrap_or_default();
        return Err(ConfigError(format!(
            "{shown}{line}: unknown key `{key}` for pipeline `{}` (source `{}`, sink `{}`)",
            P::NAMES.workflow,
            <P::Source as SourceConfig>::NAME,
            <P::Sink as SinkConfig>::NAME,
        )));
    }
    Ok(file)
}

fn seconds(path: &Path, key: &str, value: f64) -> Result<Duration, ConfigError> {
    seconds_in(path, "job", key, value)
}

/// `value` seconds of key `table.key`, which must be positive.
pub(crate) fn seconds_in(
    path: &Path,
    table: &str,
    key: &str,
    value: f64,
) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ConfigError(format!(
                "{}: `{table}.{key}` must be a positive number of seconds, not {value}",
                path.display()
            ))
        })
}

impl<P: Pipeline> Operate for Operator<P> {
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
        let file = parse_job_file::<P>(path, text)?;
        let o = file.job;
        let mut r: RequestOf<P> = BatchProcessingRequest::new(job_id, file.source, file.sink);
        r.batch_size = o.batch_size.unwrap_or(r.batch_size);
        r.max_in_flight = o.max_in_flight.unwrap_or(r.max_in_flight);
        r.batches_per_activity = o.batches_per_activity.unwrap_or(r.batches_per_activity);
        r.max_batches_per_activity = o.max_batches_per_activity.or(r.max_batches_per_activity);
        r.plan_ahead = o.plan_ahead.unwrap_or(r.plan_ahead);
        r.max_batches_per_run = o.max_batches_per_run.unwrap_or(r.max_batches_per_run);
        r.max_record_errors = o.max_record_errors.or(r.max_record_errors);
        r.max_error_samples = o.max_error_samples.unwrap_or(r.max_error_samples);
        r.max_failed_batches = o.max_failed_batches.unwrap_or(r.max_failed_batches);
        r.max_records_per_s = rate.or(o.max_records_per_s).filter(|n| *n > 0);
        r.start_at = o.start_at;
        for (key, value, field) in [
            (
                "activity_timeout_s",
                o.activity_timeout_s,
                &mut r.activity_timeout,
            ),
            ("call_timeout_s", o.call_timeout_s, &mut r.call_timeout),
            (
                "heartbeat_timeout_s",
                o.heartbeat_timeout_s,
                &mut r.heartbeat_timeout,
            ),
            ("stuck_after_s", o.stuck_after_s, &mut r.stuck_after),
            ("outage_budget_s", o.outage_budget_s, &mut r.outage_budget),
        ] {
            if let Some(v) = value {
                *field = seconds(path, key, v)?;
            }
        }
        if let Some(shards) = file.shards {
            if r.start_at.is_some() {
                return Err(ConfigError(format!(
                    "{}: `job.start_at` is an offset in one input; a job with `[shards]` has many",
                    path.display()
                )));
            }
            return super::sharded::sharded_request(path, r, shards);
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
            if let Some(sharded) = request.get("sharded") {
                let request: crate::pipeline::ShardedRequestOf<P> =
                    serde_json::from_value(sharded.clone())
                        .map_err(|e| JobError::Temporal(format!("bad request: {e}")))?;
                return jobs.start_sharded::<P>(request).await.map(drop);
            }
            let request: RequestOf<P> = serde_json::from_value(request)
                .map_err(|e| JobError::Temporal(format!("bad request: {e}")))?;
            jobs.start::<P>(request).await.map(drop)
        })
    }

    fn progress<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let progress = jobs.job::<P>(job_id).progress().await?;
            Ok(to_json(&progress))
        })
    }

    fn report<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let report = jobs.job::<P>(job_id).report().await?;
            Ok(to_json(&report))
        })
    }

    fn control<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
        control: Control,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let job = jobs.job::<P>(job_id);
            match control {
                Control::Pause => job.pause().await,
                Control::Resume => job.resume().await,
                Control::SetParallelism(n) => job.set_max_in_flight(n).await,
                Control::SetRate(n) => job.set_rate(n).await,
                Control::Cancel => job.cancel().await,
            }
        })
    }

    fn redrive<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<String, JobError>> {
        Box::pin(async move {
            let redrive = jobs.job::<P>(job_id).redrive(jobs).await?;
            Ok(redrive.job_id().to_owned())
        })
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
