//! The batch kind: one input, planned into batches ([`Batch`]).

use temporalio_client::WorkflowDescribeOptions;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_common::MemoValues;

use crate::batch::{Progress, Redrive, Stretch, redrive_workflow_id};
use crate::batch::{ReportOf, RequestOf};
use crate::connector::SourceConfig;
use crate::error::JobError;
use crate::job::JobStatus;
use crate::job::{
    Batch, FailedSummary, JobClient, JobHandle, JobKind, PendingActivity, ProgressSummary,
    ReportSummary, Throttled, interaction_error,
};
use crate::pipeline::{OffsetOf, Pipeline};

impl<P: Pipeline> JobKind<P> for Batch {
    type Request = RequestOf<P>;
    type Report = ReportOf<P>;
    type Progress = Progress<OffsetOf<P>>;
    const NAME: &'static str = "batch";
    const WATCHES_ACTIVITIES: bool = true;

    fn workflow() -> &'static str {
        P::NAMES.workflow
    }

    fn validate(request: &Self::Request) -> Result<(), JobError> {
        refuse_a_stream::<P>(&request.job_id)?;
        request.validate()
    }

    fn job_id(request: &Self::Request) -> &str {
        &request.job_id
    }

    fn workflow_id(request: &Self::Request) -> String {
        request.workflow_id()
    }

    fn describe(request: &Self::Request, memo: &mut MemoValues) -> String {
        memo.insert("batch_size", request.batch_size);
        format!("batches of {}", request.batch_size)
    }

    async fn cancelled(report: &mut Self::Report, _jobs: &JobClient) {
        report.status = JobStatus::Cancelled;
    }

    fn annotate(progress: &mut Self::Progress, pending: &[PendingActivity], now_ms: u64) {
        let stuck_after = progress.stuck_after_ms;
        for running in &mut progress.running {
            running.age_ms = now_ms.saturating_sub(running.scheduled_at_ms);
            running.stuck = stuck_after > 0 && running.age_ms > stuck_after;
            running.attempt = pending
                .iter()
                .find(|p| p.activity_id == running.activity_id)
                .map(|p| p.attempt.max(1) as u32);
        }
    }

    fn summary(r: &Self::Report) -> ReportSummary {
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
            error_samples: r.error_samples.clone(),
            batches: r.batches,
            failed_batches: r.failed_batches,
            failed: r
                .failed
                .iter()
                .map(|f| FailedSummary {
                    first_batch: f.first_batch,
                    batches: f.batches,
                    records: f.records,
                    kind: f.kind.clone(),
                    message: f.message.clone(),
                })
                .collect(),
            redrive_of: r.redrive_of.clone(),
            elapsed_ms: r.elapsed_ms,
            failure: r.failure.clone(),
            kind: None,
        }
    }

    fn progress_summary(p: &Self::Progress) -> ProgressSummary {
        ProgressSummary {
            report: <Self as JobKind<P>>::summary(&p.report),
            in_flight: p.in_flight,
            max_in_flight: p.max_in_flight,
            paused: p.paused,
            running: p.running.clone(),
            max_records_per_s: p.max_records_per_s,
            records_planned: p.records_planned,
            planning_done: p.planning_done,
            outage: p.outage.clone(),
        }
    }
}

impl<P: Pipeline> Throttled<P> for Batch {}

/// Refuses a batch or sharded job of a pipeline whose source is a stream: no worker runs it.
pub(crate) fn refuse_a_stream<P: Pipeline>(job_id: &str) -> Result<(), JobError> {
    if P::capabilities().is_stream() {
        return Err(JobError::InvalidRequest(format!(
            "job `{job_id}`: source `{}` is a stream: start it with `start_stream` and a `StreamRequest`",
            <P::Source as SourceConfig>::NAME
        )));
    }
    Ok(())
}

impl JobClient {
    /// Starts a batch job of pipeline `P`. The workflow id is the job id
    /// (`<job id>-redrive-<n>` for a redrive): starting a job whose id is already running is
    /// refused with [`JobError::AlreadyRunning`].
    pub async fn start<P: Pipeline>(
        &self,
        request: RequestOf<P>,
    ) -> Result<JobHandle<P>, JobError> {
        self.start_kind::<P, Batch>(request).await
    }

    /// A handle to the batch job `job_id` of pipeline `P`, started earlier (by anyone).
    pub fn job<P: Pipeline>(&self, job_id: impl Into<String>) -> JobHandle<P> {
        self.job_of::<P, Batch>(job_id)
    }
}

impl<P: Pipeline> JobHandle<P, Batch> {
    /// Reruns the failed batches of this finished job as a follow-up job, with the same
    /// configs, and returns its handle. Its id is `<job id>-redrive-<n>`, n the first number
    /// not taken by an earlier redrive of the job (1, then 2, ...), so it is easy to find,
    /// cannot run twice at once, and never replaces an earlier redrive's history.
    /// Writes are idempotent, so batches that were partly written are not written twice. The
    /// redrive's report counts what was recovered; what failed again is in its
    /// [`failed`](crate::batch::JobReport::failed) list and can be redriven in turn.
    ///
    /// A job that failed (a limit reached, an outage past its budget) is redriven too: its
    /// failed ranges, then the rest of its input from where it stopped
    /// ([`stopped_at`](crate::batch::JobReport::stopped_at)), with the same record ids.
    ///
    /// Refused with [`JobError::NotRedrivable`] while the job runs, and when it has nothing
    /// to rerun.
    pub async fn redrive(&self, jobs: &JobClient) -> Result<JobHandle<P>, JobError> {
        self.refuse_while_running().await?;
        let report = match self.report().await {
            Ok(report) => report,
            Err(JobError::Failed {
                report: Some(report),
                ..
            }) => serde_json::from_value::<ReportOf<P>>(*report).map_err(|e| {
                JobError::Temporal(format!(
                    "job `{}`: its failed report does not read: {e}",
                    self.job_id
                ))
            })?,
            Err(e) => return Err(e),
        };
        let mut request = self.request().await?;
        // A failed job reruns its failed ranges, then what it had not reached.
        let mut ranges = report.failed;
        let mut then = Vec::new();
        if let Some(stop) = &report.stopped_at {
            let stretches = Stretch::of_job(request.start_at.clone(), request.redrive.as_ref());
            ranges.retain(|f| f.first_record < stop.record);
            then = Stretch::after(&stretches, stop);
        }
        if ranges.is_empty() && then.is_empty() {
            return Err(JobError::NotRedrivable {
                job_id: self.job_id.clone(),
                reason: format!("it {} with no failed batch", report.status),
            });
        }
        let mut number = request.redrive.as_ref().map_or(1, |r| r.number + 1);
        // A job redriven before takes the next free number: an earlier redrive's history is
        // its record and is kept.
        while redrive_exists(jobs, &request.job_id, number).await? {
            number += 1;
        }
        request.state = None;
        request.start_at = None;
        request.done = false;
        request.redrive = Some(Redrive {
            number,
            ranges,
            input_fingerprint: report.input_fingerprint,
            then,
        });
        debug_assert_eq!(
            request.workflow_id(),
            redrive_workflow_id(&request.job_id, number)
        );
        jobs.start::<P>(request).await
    }
}

/// Whether redrive `number` of job `job_id` was started before.
async fn redrive_exists(jobs: &JobClient, job_id: &str, number: u32) -> Result<bool, JobError> {
    let id = redrive_workflow_id(job_id, number);
    let handle = jobs
        .temporal()
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(id.clone());
    match handle.describe(WorkflowDescribeOptions::default()).await {
        Ok(_) => Ok(true),
        Err(WorkflowInteractionError::NotFound(_)) => Ok(false),
        Err(e) => Err(interaction_error(&id, e)),
    }
}
