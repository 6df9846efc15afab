//! Starting sharded jobs and steering them from a client.

use std::marker::PhantomData;

use temporalio_client::errors::{WorkflowInteractionError, WorkflowQueryError, WorkflowStartError};
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowHandle, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
};
use temporalio_common::MemoValues;

use super::{Grouped, RedriveShard, ShardReport, ShardStatus, ShardedProgress, ShardedRedrive};
use crate::client::{
    Ended, JobClient, first_input, interaction_error, is_running, query_error, wait_for,
};
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::model::{JobStatus, redrive_workflow_id};
use crate::pipeline::{Pipeline, ShardedReportOf, ShardedRequestOf};
use crate::workflow::{
    SetMaxConcurrentShardsSignal, ShardedPauseSignal, ShardedProgressQuery, ShardedResumeSignal,
    ShardedRun, ShardedSetMaxInFlightSignal, ShardedSetRateSignal,
};

impl JobClient {
    /// Starts a sharded job of pipeline `P`: one child job per input its source lists. The
    /// workflow id is the job id (`<job id>-redrive-<n>` for a redrive); each shard's is
    /// `<job id>/<key>`.
    pub async fn start_sharded<P: Pipeline>(
        &self,
        request: ShardedRequestOf<P>,
    ) -> Result<ShardedJobHandle<P>, JobError> {
        request.validate()?;
        let job_id = request.workflow_id();
        let source = <P::Source as SourceConfig>::NAME;
        let sink = <P::Sink as SinkConfig>::NAME;
        let mut memo = MemoValues::new();
        memo.insert("pipeline", P::NAMES.workflow.to_owned())
            .insert("source", source.to_owned())
            .insert("sink", sink.to_owned())
            .insert("batch_size", request.job.batch_size)
            .insert("job_id", request.job.job_id.clone())
            .insert("sharded", true);
        let summary = format!(
            "{}: {source} -> {sink}, sharded, {} shards at once",
            P::NAMES.workflow,
            request.max_concurrent_shards
        );
        let options = WorkflowStartOptions::new(self.task_queue.clone(), job_id.clone())
            .memo(memo)
            .static_summary(summary)
            .build();
        match self
            .client
            .start_workflow(ShardedRun::<P>::new(), request, options)
            .await
        {
            Ok(_) => Ok(self.sharded_job(job_id)),
            Err(WorkflowStartError::AlreadyStarted { .. }) => {
                Err(JobError::AlreadyRunning { job_id })
            }
            Err(e) => Err(JobError::Temporal(format!(
                "cannot start job `{job_id}`: {e}"
            ))),
        }
    }

    /// A handle to the sharded job `job_id` of pipeline `P`, started earlier (by anyone).
    pub fn sharded_job<P: Pipeline>(&self, job_id: impl Into<String>) -> ShardedJobHandle<P> {
        let job_id = job_id.into();
        ShardedJobHandle {
            handle: self
                .client
                .get_workflow_handle::<ShardedRun<P>>(job_id.clone()),
            jobs: self.clone(),
            job_id,
            _pipeline: PhantomData,
        }
    }
}

/// A sharded job: await its report, watch its progress, pause, resume or cancel it (and with
/// it every running shard).
pub struct ShardedJobHandle<P> {
    handle: WorkflowHandle<Client, ShardedRun<P>>,
    /// For the shards' own reports.
    jobs: JobClient,
    job_id: String,
    _pipeline: PhantomData<fn() -> P>,
}

impl<P: Pipeline> ShardedJobHandle<P> {
    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Waits for the job to end (following continue-as-new) and returns its report, or the
    /// original cause of its failure. A cancelled job returns its report with status
    /// `Cancelled`. While the server is unreachable, it waits and asks again.
    pub async fn report(&self) -> Result<ShardedReportOf<P>, JobError> {
        match wait_for(&self.handle, &self.job_id).await? {
            Ended::Done(report) => Ok(report),
            Ended::Cancelled(mut report) => {
                report.status = JobStatus::Cancelled;
                self.add_cancelled_shards(&mut report).await;
                Ok(report)
            }
        }
    }

    /// Adds what the shards cancelled with the job wrote: a parent workflow learns only that
    /// a child was cancelled, so the counts come from each shard's own report.
    async fn add_cancelled_shards(&self, report: &mut ShardedReportOf<P>) {
        for shard in &mut report.shard_reports {
            if shard.status != ShardStatus::Cancelled || shard.records_read > 0 {
                continue;
            }
            let Ok(child) = self
                .jobs
                .job::<Grouped<P>>(shard.workflow_id.clone())
                .report()
                .await
            else {
                continue;
            };
            report.records_read += child.records_read;
            report.records_written += child.records_written;
            report.already_present += child.already_present;
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

    /// The job's live progress: the totals of the finished shards, the running shards (query
    /// a running shard's own progress with [`JobClient::job`] and its `workflow_id`), and the
    /// controls.
    pub async fn progress(&self) -> Result<ShardedProgress<P::Source>, JobError> {
        self.handle
            .query(
                ShardedProgressQuery::<P>::new(),
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map_err(|e| self.query_error(e))
    }

    /// Stops new shards from starting and pauses every running shard.
    pub async fn pause(&self) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                ShardedPauseSignal::<P>::new(),
                (),
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Resumes the running shards and lets new shards start.
    pub async fn resume(&self) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                ShardedResumeSignal::<P>::new(),
                (),
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Changes how many batches each shard runs at once (at least 1), in the running shards
    /// and the shards still to start.
    pub async fn set_max_in_flight(&self, n: u32) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                ShardedSetMaxInFlightSignal::<P>::new(),
                n,
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Sets each shard's rate limit in records per second (0 lifts it).
    pub async fn set_rate(&self, records_per_s: u32) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                ShardedSetRateSignal::<P>::new(),
                records_per_s,
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Changes how many shards run at once (at least 1). Running shards above a lowered
    /// limit finish; no new one starts until the count is below it.
    pub async fn set_max_concurrent_shards(&self, n: u32) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                SetMaxConcurrentShardsSignal::<P>::new(),
                n,
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Cancels the job and every running shard: each stops as a cancelled batch job does, and
    /// [`report`](Self::report) returns what was written, shard by shard.
    pub async fn cancel(&self) -> Result<(), JobError> {
        let r = self.handle.cancel(WorkflowCancelOptions::default()).await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Reruns the shards of this finished job that failed, or have failed batches, as a
    /// follow-up sharded job `<job id>-redrive-<n>`: a failed shard runs again whole, a shard
    /// with failed batches reruns only those. Writes are idempotent (each shard keeps its job
    /// id), so nothing is written twice.
    ///
    /// Refused with [`JobError::NotRedrivable`] while the job runs and when nothing failed.
    pub async fn redrive(&self, jobs: &JobClient) -> Result<ShardedJobHandle<P>, JobError> {
        if is_running(&self.handle, &self.job_id).await? {
            return Err(JobError::NotRedrivable {
                job_id: self.job_id.clone(),
                reason: "it is still running; wait for its report first".into(),
            });
        }
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

    /// The request the job's latest run started with, read from its history.
    async fn request(&self) -> Result<ShardedRequestOf<P>, JobError> {
        first_input(&self.handle, &self.job_id, P::NAMES.sharded).await
    }

    fn interaction_error(&self, e: WorkflowInteractionError) -> JobError {
        interaction_error(&self.job_id, e)
    }

    fn query_error(&self, e: WorkflowQueryError) -> JobError {
        query_error(&self.job_id, e)
    }
}
