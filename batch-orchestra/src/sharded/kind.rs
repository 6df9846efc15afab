//! The sharded kind: every input a source lists, one child batch job per shard
//! ([`Sharded`]).

use temporalio_common::MemoValues;

use super::{Grouped, RedriveShard, ShardReport, ShardStatus, ShardedRedrive};
use crate::batch::{redrive_workflow_id, refuse_a_stream};
use crate::error::{JobError, RecordError};
use crate::job::JobStatus;
use crate::job::{
    FailedSummary, JobClient, JobHandle, JobKind, ProgressSummary, ReportSummary,
    SET_MAX_CONCURRENT_SHARDS_SIGNAL, Sharded, Throttled,
};
use crate::pipeline::Pipeline;
use crate::sharded::{ShardedReportOf, ShardedRequestOf};

impl<P: Pipeline> JobKind<P> for Sharded {
    type Request = ShardedRequestOf<P>;
    type Report = ShardedReportOf<P>;
    type Progress = super::ShardedProgress<P::Source>;
    const NAME: &'static str = "sharded";

    fn workflow() -> &'static str {
        P::NAMES.sharded
    }

    fn validate(request: &Self::Request) -> Result<(), JobError> {
        refuse_a_stream::<P>(&request.job.job_id)?;
        request.validate()
    }

    fn job_id(request: &Self::Request) -> &str {
        &request.job.job_id
    }

    fn workflow_id(request: &Self::Request) -> String {
        request.workflow_id()
    }

    fn describe(request: &Self::Request, memo: &mut MemoValues) -> String {
        memo.insert("batch_size", request.job.batch_size)
            .insert("sharded", true);
        format!("sharded, {} shards at once", request.max_concurrent_shards)
    }

    /// Adds what the shards cancelled with the job wrote: a parent workflow learns only that
    /// a child was cancelled, so the counts come from each shard's own report.
    async fn cancelled(report: &mut Self::Report, jobs: &JobClient) {
        report.status = JobStatus::Cancelled;
        for shard in &mut report.shard_reports {
            if shard.status != ShardStatus::Cancelled || shard.records_read > 0 {
                continue;
            }
            let Ok(child) = jobs
                .job::<Grouped<P>>(shard.workflow_id.clone())
                .report()
                .await
            else {
                continue;
            };
            report.records_read += child.records_read;
            report.records_written += child.records_written;
            report.already_present += child.already_present;
            report.superseded += child.superseded;
            report.quarantined += child.quarantined;
            report.records_filtered += child.records_filtered;
            report.record_errors += child.record_errors;
            report.batches += child.batches;
            report.failed_batches += child.failed_batches;
            let index = shard.index;
            let inputs = std::mem::take(&mut shard.inputs);
            let workflow_id = std::mem::take(&mut shard.workflow_id);
            *shard = ShardReport::from_job(index, inputs, workflow_id, child);
            shard.status = ShardStatus::Cancelled;
        }
    }

    /// Record errors named by their input, and each shard needing a redrive as one failed
    /// entry.
    fn summary(r: &Self::Report) -> ReportSummary {
        let failed = r
            .shard_reports
            .iter()
            .filter(|s| s.needs_redrive())
            .map(|s| {
                let inputs = s.inputs.len();
                FailedSummary {
                    first_batch: 0,
                    batches: s.failed_batches,
                    records: s.failed.iter().map(|f| f.records).sum(),
                    kind: s.status.to_string(),
                    message: format!(
                        "shard `{}` ({inputs} input{}): {}",
                        s.key,
                        if inputs == 1 { "" } else { "s" },
                        s.cause()
                    ),
                }
            })
            .collect();
        ReportSummary {
            job_id: r.job_id.clone(),
            pipeline: r.pipeline.clone(),
            status: r.status,
            records_read: r.records_read,
            records_written: r.records_written,
            already_present: r.already_present,
            superseded: r.superseded,
            quarantined: r.quarantined,
            quarantine: r.quarantine.clone(),
            records_filtered: r.records_filtered,
            record_errors: r.record_errors,
            error_samples: r
                .error_samples
                .iter()
                .map(|e| {
                    RecordError::new(
                        e.error.position,
                        format!("{}: {}", e.shard, e.error.message),
                    )
                })
                .collect(),
            batches: r.batches,
            failed_batches: r.failed_batches,
            failed,
            redrive_of: r.redrive_of.clone(),
            elapsed_ms: r.elapsed_ms,
            failure: r.failure.clone(),
            kind: None,
        }
    }

    /// `in_flight` counts running shards; `max_in_flight` is each shard's limit.
    fn progress_summary(p: &Self::Progress) -> ProgressSummary {
        ProgressSummary {
            report: <Self as JobKind<P>>::summary(&p.report),
            in_flight: p.running.len() as u32,
            max_in_flight: p.max_in_flight,
            paused: p.paused,
            max_records_per_s: p.max_records_per_s,
            ..ProgressSummary::default()
        }
    }
}

impl<P: Pipeline> Throttled<P> for Sharded {}

impl JobClient {
    /// Starts a sharded job of pipeline `P`: one child job per input its source lists. The
    /// workflow id is the job id (`<job id>-redrive-<n>` for a redrive); each shard's is
    /// `<job id>/<key>`.
    pub async fn start_sharded<P: Pipeline>(
        &self,
        request: ShardedRequestOf<P>,
    ) -> Result<ShardedJobHandle<P>, JobError> {
        self.start_kind::<P, Sharded>(request).await
    }

    /// A handle to the sharded job `job_id` of pipeline `P`, started earlier (by anyone).
    pub fn sharded_job<P: Pipeline>(&self, job_id: impl Into<String>) -> ShardedJobHandle<P> {
        self.job_of::<P, Sharded>(job_id)
    }
}

/// A sharded job: await its report, watch its progress (the totals of the finished shards,
/// the running shards: query a running shard's own progress with [`JobClient::job`] and its
/// `workflow_id`), pause, resume or cancel it (and with it every running shard).
pub type ShardedJobHandle<P> = JobHandle<P, Sharded>;

impl<P: Pipeline> JobHandle<P, Sharded> {
    /// Changes how many shards run at once (at least 1). Running shards above a lowered
    /// limit finish; no new one starts until the count is below it.
    pub async fn set_max_concurrent_shards(&self, n: u32) -> Result<(), JobError> {
        self.signal(SET_MAX_CONCURRENT_SHARDS_SIGNAL, n).await
    }

    /// Reruns the shards of this finished job that failed, or have failed batches, as a
    /// follow-up sharded job `<job id>-redrive-<n>`: a failed shard runs again whole, a shard
    /// with failed batches reruns only those. Writes are idempotent (each shard keeps its job
    /// id), so nothing is written twice.
    ///
    /// Refused with [`JobError::NotRedrivable`] while the job runs and when nothing failed.
    pub async fn redrive(&self, jobs: &JobClient) -> Result<ShardedJobHandle<P>, JobError> {
        self.refuse_while_running().await?;
        let report = self.report().await?;
        let shards: Vec<RedriveShard<P::Source>> = report
            .shard_reports
            .into_iter()
            .filter(|s| s.needs_redrive())
            .filter(|s| !s.redrive_inputs.is_empty())
            .map(|s| RedriveShard {
                index: s.index,
                inputs: s.redrive_inputs,
                failed: s.failed,
            })
            .collect();
        if shards.is_empty() {
            return Err(JobError::NotRedrivable {
                job_id: self.job_id.clone(),
                reason: format!("it {} with no failed shard", report.status),
            });
        }
        let mut request = self.request().await?;
        let number = request.redrive.as_ref().map_or(1, |r| r.number + 1);
        request.state = None;
        request.inputs = None;
        request.redrive = Some(ShardedRedrive { number, shards });
        debug_assert_eq!(
            request.workflow_id(),
            redrive_workflow_id(&request.job.job_id, number)
        );
        jobs.start_sharded::<P>(request).await
    }
}
