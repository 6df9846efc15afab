//! The command's operations on sharded jobs: a job file with a `[shards]` table starts one,
//! and `status`, `watch`, `report`, `pause`, `resume`, `set-parallelism`, `set-rate`,
//! `cancel` and `redrive` find it by its workflow type (`<workflow>.sharded`).
//!
//! Progress and reports are shown through the same views as a single job's: the totals over
//! the shards, record errors named by their file, and each shard that failed (or has failed
//! batches) as one failed entry. `--json` keeps the per-shard reports too.

use std::path::Path;

use serde::Deserialize;

use super::batch::throttle;
use super::operate::{ConfigError, Control, Operated, Overrides, Ready, Request};
use crate::batch::RequestOf;
use crate::error::JobError;
use crate::job::{JobClient, JobHandle, JobKind, Sharded};
use crate::pipeline::Pipeline;
use crate::sharded::ShardedRequest;

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

/// The sharded request for a parsed job file with a `[shards]` table.
pub(crate) fn sharded_request<P: Pipeline>(
    path: &Path,
    job: RequestOf<P>,
    o: ShardOptions,
) -> Result<Box<dyn Ready>, ConfigError> {
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
    Ok(Request::<P, Sharded>::ready(r))
}

impl<P: Pipeline> Operated<P> for Sharded {
    const FOUND_BY_TYPE: bool = true;

    fn parse(
        _job_id: &str,
        path: &Path,
        _text: &str,
        _overrides: &Overrides,
    ) -> Result<Box<dyn Ready>, ConfigError> {
        Err(ConfigError(format!(
            "{}: start pipeline `{}` with a `[shards]` table to run it sharded",
            path.display(),
            P::NAMES.workflow
        )))
    }

    /// The report with the summary's record errors (named by their file) and failed shards;
    /// the per-shard reports stay.
    fn report_json(report: &Self::Report) -> serde_json::Value {
        let summary = <Self as JobKind<P>>::summary(report);
        let mut value = serde_json::to_value(report).unwrap_or_default();
        value["error_samples"] = serde_json::to_value(summary.error_samples).unwrap_or_default();
        value["failed"] = serde_json::to_value(summary.failed).unwrap_or_default();
        value
    }

    /// The summary's progress, with the kind's report and the shards beside it.
    fn progress_json(p: &Self::Progress) -> serde_json::Value {
        let summary = <Self as JobKind<P>>::progress_summary(p);
        let mut value = serde_json::to_value(summary).unwrap_or_default();
        value["report"] = <Self as Operated<P>>::report_json(&p.report);
        value["shards"] = serde_json::json!({
            "running": p.running,
            "queued": p.queued,
            "listing_done": p.listing_done,
            "max_concurrent_shards": p.max_concurrent_shards,
        });
        value
    }

    async fn control(job: &JobHandle<P, Sharded>, control: Control) -> Result<(), JobError> {
        throttle(job, control).await
    }

    async fn redrive(job: &JobHandle<P, Sharded>, jobs: &JobClient) -> Result<String, JobError> {
        Ok(job.redrive(jobs).await?.job_id().to_owned())
    }
}
