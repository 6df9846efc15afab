//! The report of a sharded job, each shard's report in it, and its live progress.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::GroupOffset;
use crate::batch::{FailedBatch, JobReport};
use crate::connector::Shard;
use crate::connector::SourceConfig;
use crate::error::{JobError, RecordError};
use crate::job::JobStatus;

/// How a shard ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardStatus {
    /// Every batch was processed.
    Completed,
    /// Some batches failed for good: they are in the shard's `failed` list.
    CompletedWithFailures,
    /// The shard's job failed (a file that vanished, a sink that refused every batch); its
    /// `failure` says why.
    Failed,
    /// Cancelled with the job; its counts are what it wrote.
    Cancelled,
    /// An earlier run of this job had completed it already (its child workflow's id was
    /// taken by a completed run): not run again, not counted again.
    AlreadyDone,
}

impl fmt::Display for ShardStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShardStatus::Completed => "completed",
            ShardStatus::CompletedWithFailures => "completed with failed batches",
            ShardStatus::Failed => "failed",
            ShardStatus::Cancelled => "cancelled",
            ShardStatus::AlreadyDone => "already done",
        })
    }
}

/// One shard's outcome in a [`ShardedReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ShardReport<S: SourceConfig> {
    /// Its position among the job's shards, from 0.
    pub index: u64,
    /// Its first input's key (a path, an object key).
    pub key: String,
    /// Its inputs' keys, in order (one for a shard of one input).
    pub inputs: Vec<String>,
    /// Its child workflow's id.
    pub workflow_id: String,
    /// How it ended.
    pub status: ShardStatus,
    /// Records read.
    pub records_read: u64,
    /// Records newly written.
    pub records_written: u64,
    /// Records found already written.
    pub already_present: u64,
    /// Records an upserting sink held a newer version of.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub superseded: u64,
    /// Failed records written to the job's quarantine.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub quarantined: u64,
    /// Records filtered out by the transform.
    pub records_filtered: u64,
    /// Records that could not be read, transformed or written.
    pub record_errors: u64,
    /// Batches processed.
    pub batches: u64,
    /// Batches that failed for good.
    pub failed_batches: u64,
    /// The failed batch ranges (with the input of each), for a redrive.
    pub failed: Vec<FailedBatch<GroupOffset<S::Offset>>>,
    /// Why the shard failed.
    pub failure: Option<String>,
    /// The inputs' configs, kept for shards with failures so a redrive can rerun them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redrive_inputs: Vec<Shard<S>>,
}

impl<S: SourceConfig> ShardReport<S> {
    /// A shard's report from its job's report.
    pub fn from_job(
        index: u64,
        inputs: Vec<String>,
        workflow_id: String,
        report: JobReport<GroupOffset<S::Offset>>,
    ) -> Self {
        let status = match report.status {
            JobStatus::Cancelled => ShardStatus::Cancelled,
            JobStatus::Failed => ShardStatus::Failed,
            _ if report.failed_batches > 0 => ShardStatus::CompletedWithFailures,
            _ => ShardStatus::Completed,
        };
        Self {
            index,
            key: inputs.first().cloned().unwrap_or_default(),
            inputs,
            workflow_id,
            status,
            records_read: report.records_read,
            records_written: report.records_written,
            already_present: report.already_present,
            superseded: report.superseded,
            quarantined: report.quarantined,
            records_filtered: report.records_filtered,
            record_errors: report.record_errors,
            batches: report.batches,
            failed_batches: report.failed_batches,
            failed: report.failed,
            failure: report.failure,
            redrive_inputs: Vec::new(),
        }
    }

    /// A shard that ended without a report.
    pub fn without_counts(
        index: u64,
        inputs: Vec<String>,
        workflow_id: String,
        status: ShardStatus,
        failure: Option<String>,
    ) -> Self {
        Self {
            index,
            key: inputs.first().cloned().unwrap_or_default(),
            inputs,
            workflow_id,
            status,
            records_read: 0,
            records_written: 0,
            already_present: 0,
            superseded: 0,
            quarantined: 0,
            records_filtered: 0,
            record_errors: 0,
            batches: 0,
            failed_batches: 0,
            failed: Vec::new(),
            failure,
            redrive_inputs: Vec::new(),
        }
    }

    /// Why it needs a redrive: its failure, or its first failed batch range.
    pub fn cause(&self) -> String {
        self.failure
            .clone()
            .or_else(|| self.failed.first().map(|f| f.to_string()))
            .unwrap_or_default()
    }

    /// Whether a redrive would rerun it: it failed, or some of its batches did.
    pub fn needs_redrive(&self) -> bool {
        matches!(
            self.status,
            ShardStatus::Failed | ShardStatus::CompletedWithFailures
        )
    }
}

/// A record error, with the shard it happened in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardRecordError {
    /// The shard's first input's key (a shard of several inputs names the input in the
    /// message).
    pub shard: String,
    /// The error, with its position in that input.
    pub error: RecordError,
}

impl fmt::Display for ShardRecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.shard, self.error)
    }
}

/// The report of a sharded job: the totals of its shards, and a report per shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ShardedReport<S: SourceConfig> {
    /// The job id.
    pub job_id: String,
    /// The pipeline's workflow name.
    pub pipeline: String,
    /// Running, completed, completed with failures (some shards or batches failed), failed or
    /// cancelled.
    pub status: JobStatus,
    /// Shards finished (any outcome).
    pub shards: u64,
    /// Shards completed with every batch processed.
    pub shards_completed: u64,
    /// Shards completed with failed batches.
    pub shards_with_failures: u64,
    /// Shards whose job failed.
    pub shards_failed: u64,
    /// Shards cancelled with the job.
    pub shards_cancelled: u64,
    /// Shards an earlier run of the job had completed already.
    pub shards_already_done: u64,
    /// Records read, over every shard.
    pub records_read: u64,
    /// Records newly written.
    pub records_written: u64,
    /// Records found already written.
    pub already_present: u64,
    /// Records an upserting sink held a newer version of.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub superseded: u64,
    /// Failed records written to the job's quarantine.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub quarantined: u64,
    /// Records filtered out.
    pub records_filtered: u64,
    /// Records that could not be read, transformed or written.
    pub record_errors: u64,
    /// The first record errors, by shard order, at most the template's `max_error_samples`.
    pub error_samples: Vec<ShardRecordError>,
    /// Batches processed.
    pub batches: u64,
    /// Batches that failed for good.
    pub failed_batches: u64,
    /// Per-shard reports, in listing order: the first `max_shard_reports`, and every shard
    /// with failures or cancelled.
    pub shard_reports: Vec<ShardReport<S>>,
    /// Set on a redrive: the job it reran shards of.
    #[serde(default)]
    pub redrive_of: Option<String>,
    /// Workflow runs so far (continue-as-new starts a new run).
    pub runs: u32,
    /// Time since the job started.
    pub elapsed_ms: u64,
    /// Why the job failed.
    pub failure: Option<String>,
    /// Where the shards keep their failed records, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crate::quarantine::Quarantine>,
}

impl<S: SourceConfig> ShardedReport<S> {
    /// An empty report.
    pub fn new(job_id: impl Into<String>, pipeline: impl Into<String>) -> Self {
        Self {
            job_id: job_id.into(),
            pipeline: pipeline.into(),
            status: JobStatus::Running,
            shards: 0,
            shards_completed: 0,
            shards_with_failures: 0,
            shards_failed: 0,
            shards_cancelled: 0,
            shards_already_done: 0,
            records_read: 0,
            records_written: 0,
            already_present: 0,
            superseded: 0,
            quarantined: 0,
            records_filtered: 0,
            record_errors: 0,
            error_samples: Vec::new(),
            batches: 0,
            failed_batches: 0,
            shard_reports: Vec::new(),
            redrive_of: None,
            runs: 0,
            elapsed_ms: 0,
            failure: None,
            quarantine: None,
        }
    }

    /// Adds a finished shard: its counts, its error samples (up to `max_error_samples` over
    /// the job) and its report (up to `max_shard_reports`, shards with failures always).
    pub fn add(
        &mut self,
        shard: ShardReport<S>,
        samples: Vec<RecordError>,
        max_error_samples: u32,
        max_shard_reports: u32,
    ) {
        self.shards += 1;
        match shard.status {
            ShardStatus::Completed => self.shards_completed += 1,
            ShardStatus::CompletedWithFailures => self.shards_with_failures += 1,
            ShardStatus::Failed => self.shards_failed += 1,
            ShardStatus::Cancelled => self.shards_cancelled += 1,
            ShardStatus::AlreadyDone => self.shards_already_done += 1,
        }
        self.records_read += shard.records_read;
        self.records_written += shard.records_written;
        self.already_present += shard.already_present;
        self.superseded += shard.superseded;
        self.quarantined += shard.quarantined;
        self.records_filtered += shard.records_filtered;
        self.record_errors += shard.record_errors;
        self.batches += shard.batches;
        self.failed_batches += shard.failed_batches;
        let index = shard.index;
        self.error_samples
            .extend(samples.into_iter().map(|error| ShardRecordError {
                shard: shard.key.clone(),
                error,
            }));
        // Shards finish in any order: keep the first by listing order.
        let order = |key: &str| {
            self.shard_reports
                .iter()
                .find(|s| s.key == key)
                .map_or(index, |s| s.index)
        };
        let mut samples = std::mem::take(&mut self.error_samples);
        samples.sort_by_key(|e| (order(&e.shard), e.error.position.record));
        samples.truncate(max_error_samples as usize);
        self.error_samples = samples;
        let at = self.shard_reports.partition_point(|s| s.index < index);
        self.shard_reports.insert(at, shard);
        let mut kept = 0u32;
        self.shard_reports.retain(|s| {
            kept += 1;
            kept <= max_shard_reports || s.needs_redrive() || s.status == ShardStatus::Cancelled
        });
    }

    /// Shards that failed or completed with failed batches.
    pub fn shards_needing_redrive(&self) -> u64 {
        self.shards_failed + self.shards_with_failures
    }

    /// The report of the shard holding input `key`, if kept.
    pub fn shard(&self, key: &str) -> Option<&ShardReport<S>> {
        self.shard_reports
            .iter()
            .find(|s| s.inputs.iter().any(|k| k == key))
    }

    /// Whether every shard completed with every batch.
    pub fn is_complete(&self) -> bool {
        self.status == JobStatus::Completed
    }

    /// Records read per second of the job's elapsed time.
    pub fn records_per_second(&self) -> f64 {
        let secs = self.elapsed_ms as f64 / 1_000.0;
        if secs > 0.0 {
            self.records_read as f64 / secs
        } else {
            0.0
        }
    }

    /// The report when every shard completed; otherwise an error saying what did not.
    pub fn into_result(self) -> Result<Self, JobError> {
        match self.status {
            JobStatus::Completed => Ok(self),
            JobStatus::CompletedWithFailures => {
                let first = self
                    .shard_reports
                    .iter()
                    .find(|s| s.needs_redrive())
                    .map(|s| format!("shard `{}` {}: {}", s.key, s.status, s.cause()))
                    .unwrap_or_default();
                Err(JobError::CompletedWithFailures {
                    job_id: self.job_id.clone(),
                    failed_batches: self.failed_batches,
                    first,
                })
            }
            JobStatus::Cancelled => Err(JobError::Cancelled {
                job_id: self.job_id.clone(),
            }),
            JobStatus::Failed | JobStatus::Running => Err(JobError::Failed {
                job_id: self.job_id.clone(),
                message: self
                    .failure
                    .clone()
                    .unwrap_or_else(|| format!("the job is {}", self.status)),
                kind: crate::failure::ACTIVITY_FAILED_TYPE.to_owned(),
                report: serde_json::to_value(&self).ok().map(Box::new),
            }),
        }
    }
}

/// A shard whose child workflow is running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningShard {
    /// Its position among the job's shards.
    pub index: u64,
    /// Its first input's key.
    pub key: String,
    /// Its inputs.
    pub inputs: u32,
    /// Its child workflow's id: query it for the shard's own progress.
    pub workflow_id: String,
    /// When it started, in milliseconds since the Unix epoch (workflow time).
    pub started_at_ms: u64,
}

/// A sharded job's live progress, answered by its `progress` query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ShardedProgress<S: SourceConfig> {
    /// The report so far: the totals of the finished shards.
    pub report: ShardedReport<S>,
    /// The shards running now.
    pub running: Vec<RunningShard>,
    /// Inputs listed and waiting for a slot.
    pub queued: u64,
    /// Whether every input has been listed.
    pub listing_done: bool,
    /// Paused: no new shard starts, and every running shard is paused.
    pub paused: bool,
    /// Each shard's in-flight limit.
    pub max_in_flight: u32,
    /// Each shard's rate limit.
    pub max_records_per_s: Option<u32>,
    /// Shards at once, at most.
    pub max_concurrent_shards: u32,
}
