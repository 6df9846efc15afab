//! The command's operations on sharded jobs: a job file with a `[shards]` table starts one,
//! and `status`, `watch`, `report`, `pause`, `resume`, `set-parallelism`, `set-rate`,
//! `cancel` and `redrive` find it by its workflow type (`<workflow>.sharded`).
//!
//! Progress and reports are shown through the same views as a single job's: the totals over
//! the shards, record errors named by their file, and each shard that failed (or has failed
//! batches) as one failed entry. `--json` keeps the per-shard reports too.

use std::marker::PhantomData;
use std::path::Path;

use futures::future::BoxFuture;
use serde::Deserialize;

use super::operator::{ConfigError, Control, Operate};
use crate::client::JobClient;
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::{JobError, RecordError};
use crate::model::BatchProcessingRequest;
use crate::pipeline::Pipeline;
use crate::sharding::{ShardedProgress, ShardedReport, ShardedRequest};

/// The `[shards]` table of a job file: the job runs sharded, one shard per input its source
/// lists (small inputs grouped). Every key is optional.
///
/// ```toml
/// [shards]
/// max_concurrent = 8
/// max_inputs_per_shard = 64
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShardOptions {
    max_concurrent: Option<u32>,
    max_inputs_per_shard: Option<u32>,
    shard_bytes: Option<u64>,
    list_page: Option<u32>,
    max_shards_per_run: Option<u32>,
    max_failed_shards: Option<u64>,
    max_shard_reports: Option<u32>,
}

/// The sharded request for a parsed job, as the JSON [`Operate::start`] takes:
/// `{"sharded": request}`.
pub(crate) fn sharded_request<S: SourceConfig, K: SinkConfig>(
    path: &Path,
    job: BatchProcessingRequest<S, K>,
    o: ShardOptions,
) -> Result<serde_json::Value, ConfigError> {
    let mut r = ShardedRequest::new(job);
    r.max_concurrent_shards = o.max_concurrent.unwrap_or(r.max_concurrent_shards);
    r.max_inputs_per_shard = o.max_inputs_per_shard.unwrap_or(r.max_inputs_per_shard);
    r.shard_bytes = o.shard_bytes.unwrap_or(r.shard_bytes);
    r.list_page = o.list_page.unwrap_or(r.list_page);
    r.max_shards_per_run = o.max_shards_per_run.unwrap_or(r.max_shards_per_run);
    r.max_failed_shards = o.max_failed_shards.unwrap_or(r.max_failed_shards);
    r.max_shard_reports = o.max_shard_reports.unwrap_or(r.max_shard_reports);
    r.validate()
        .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    Ok(serde_json::json!({ "sharded": r }))
}

/// The operations of pipeline `P`'s sharded jobs.
pub(crate) fn sharded_operator<P: Pipeline>() -> Box<dyn Operate> {
    Box::new(ShardedOperator::<P>(PhantomData))
}

struct ShardedOperator<P>(PhantomData<fn() -> P>);

impl<P: Pipeline> Operate for ShardedOperator<P> {
    fn name(&self) -> &'static str {
        P::NAMES.sharded
    }

    fn sharded(&self) -> bool {
        true
    }

    fn connectors(&self) -> (&'static str, &'static str) {
        (
            <P::Source as SourceConfig>::NAME,
            <P::Sink as SinkConfig>::NAME,
        )
    }

    fn parse(
        &self,
        _job_id: &str,
        path: &Path,
        _text: &str,
        _rate: Option<u32>,
    ) -> Result<serde_json::Value, ConfigError> {
        Err(ConfigError(format!(
            "{}: start pipeline `{}` with a `[shards]` table to run it sharded",
            path.display(),
            P::NAMES.workflow
        )))
    }

    fn start<'a>(
        &'a self,
        _jobs: &'a JobClient,
        _request: serde_json::Value,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            Err(JobError::InvalidRequest(format!(
                "start pipeline `{}` with a `[shards]` table to run it sharded",
                P::NAMES.workflow
            )))
        })
    }

    fn progress<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let progress = jobs.sharded_job::<P>(job_id).progress().await?;
            Ok(progress_json(&progress))
        })
    }

    fn report<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let report = jobs.sharded_job::<P>(job_id).report().await?;
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
            let job = jobs.sharded_job::<P>(job_id);
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
            let redrive = jobs.sharded_job::<P>(job_id).redrive(jobs).await?;
            Ok(redrive.job_id().to_owned())
        })
    }
}

/// A sharded job's progress in the shape of a single job's, with the shards beside it:
/// `in_flight` counts running shards, `max_in_flight` is each shard's limit.
fn progress_json<S: SourceConfig>(p: &ShardedProgress<S>) -> serde_json::Value {
    serde_json::json!({
        "report": report_json(&p.report),
        "in_flight": p.running.len(),
        "max_in_flight": p.max_in_flight,
        "paused": p.paused,
        "running": [],
        "max_records_per_s": p.max_records_per_s,
        "records_planned": 0,
        "planning_done": false,
        "shards": {
            "running": p.running,
            "queued": p.queued,
            "listing_done": p.listing_done,
            "max_concurrent_shards": p.max_concurrent_shards,
        },
    })
}

/// A sharded report with the fields a single job's has: record errors named by their file,
/// and each shard needing a redrive as one failed entry. The rest (per-shard reports, shard
/// counts) stays as it is.
fn report_json<S: SourceConfig>(r: &ShardedReport<S>) -> serde_json::Value {
    let mut value = serde_json::to_value(r).unwrap_or(serde_json::Value::Null);
    let samples: Vec<RecordError> = r
        .error_samples
        .iter()
        .map(|e| {
            RecordError::new(
                e.error.position,
                format!("{}: {}", e.shard, e.error.message),
            )
        })
        .collect();
    let failed: Vec<serde_json::Value> = r
        .shard_reports
        .iter()
        .filter(|s| s.needs_redrive())
        .map(|s| {
            let why = s.cause();
            serde_json::json!({
                "first_batch": 0,
                "batches": s.failed_batches,
                "records": s.failed.iter().map(|f| f.records).sum::<u64>(),
                "kind": s.status.to_string(),
                "message": format!("shard `{}` ({} input{}): {why}", s.key, s.inputs.len(), if s.inputs.len() == 1 { "" } else { "s" }),
            })
        })
        .collect();
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "error_samples".into(),
            serde_json::to_value(samples).unwrap_or_default(),
        );
        map.insert("failed".into(), serde_json::Value::Array(failed));
    }
    value
}
