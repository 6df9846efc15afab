//! Starting streaming jobs and steering them from a client.

use std::marker::PhantomData;

use temporalio_client::errors::WorkflowStartError;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowHandle, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
};
use temporalio_common::MemoValues;

use super::StreamProgress;
use crate::client::{Ended, JobClient, interaction_error, query_error, wait_for};
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::model::JobStatus;
use crate::pipeline::{OffsetOf, Pipeline, StreamReportOf, StreamRequestOf};
use crate::workflow::{StreamPauseSignal, StreamProgressQuery, StreamResumeSignal, StreamRun};

impl JobClient {
    /// Starts a streaming job of pipeline `P`, whose source is a stream. The workflow id is
    /// the job id. It runs until cancelled, or until an end condition of the request.
    ///
    /// A batch source is refused with [`JobError::InvalidRequest`] before anything starts.
    pub async fn start_stream<P: Pipeline>(
        &self,
        request: StreamRequestOf<P>,
    ) -> Result<StreamJobHandle<P>, JobError> {
        request.validate()?;
        let job_id = request.job_id.clone();
        let source = <P::Source as SourceConfig>::NAME;
        let sink = <P::Sink as SinkConfig>::NAME;
        let mut memo = MemoValues::new();
        memo.insert("pipeline", P::NAMES.workflow.to_owned())
            .insert("source", source.to_owned())
            .insert("sink", sink.to_owned())
            .insert("batch_size", request.batch_size)
            .insert("job_id", job_id.clone())
            .insert("streaming", true);
        let summary = format!(
            "{}: {source} -> {sink}, streaming, {} executor(s)",
            P::NAMES.workflow,
            request.executors
        );
        let options = WorkflowStartOptions::new(self.task_queue.clone(), job_id.clone())
            .memo(memo)
            .static_summary(summary)
            .build();
        match self
            .client
            .start_workflow(StreamRun::<P>::new(), request, options)
            .await
        {
            Ok(_) => Ok(self.stream_job(job_id)),
            Err(WorkflowStartError::AlreadyStarted { .. }) => {
                Err(JobError::AlreadyRunning { job_id })
            }
            Err(e) => Err(JobError::Temporal(format!(
                "cannot start job `{job_id}`: {e}"
            ))),
        }
    }

    /// A handle to the streaming job `job_id` of pipeline `P`, started earlier (by anyone).
    pub fn stream_job<P: Pipeline>(&self, job_id: impl Into<String>) -> StreamJobHandle<P> {
        let job_id = job_id.into();
        StreamJobHandle {
            handle: self
                .client
                .get_workflow_handle::<StreamRun<P>>(job_id.clone()),
            job_id,
            _pipeline: PhantomData,
        }
    }
}

/// A streaming job: watch its progress, pause, resume or cancel it, await its report.
pub struct StreamJobHandle<P> {
    handle: WorkflowHandle<Client, StreamRun<P>>,
    job_id: String,
    _pipeline: PhantomData<fn() -> P>,
}

impl<P: Pipeline> StreamJobHandle<P> {
    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Waits for the job to end (following continue-as-new) and returns its report, or the
    /// original cause of its failure. A cancelled job returns its report with status
    /// `Cancelled`.
    pub async fn report(&self) -> Result<StreamReportOf<P>, JobError> {
        match wait_for(&self.handle, &self.job_id).await? {
            Ended::Done(report) => Ok(report),
            Ended::Cancelled(mut report) => {
                report.status = JobStatus::Cancelled;
                Ok(report)
            }
        }
    }

    /// The job's live progress: counts and checkpoints as of the last finished slice, the
    /// rate, and the lag behind the stream's head where the source can tell.
    pub async fn progress(&self) -> Result<StreamProgress<OffsetOf<P>>, JobError> {
        self.handle
            .query(
                StreamProgressQuery::<P>::new(),
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map_err(|e| query_error(&self.job_id, e))
    }

    /// Stops new slices from starting; the running ones finish (within
    /// `checkpoint_interval`) and acknowledge what they wrote.
    pub async fn pause(&self) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                StreamPauseSignal::<P>::new(),
                (),
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| interaction_error(&self.job_id, e))
    }

    /// Lets slices start again.
    pub async fn resume(&self) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                StreamResumeSignal::<P>::new(),
                (),
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| interaction_error(&self.job_id, e))
    }

    /// Cancels the job: running slices stop reading, write and acknowledge what they hold,
    /// and [`report`](Self::report) returns the counts.
    pub async fn cancel(&self) -> Result<(), JobError> {
        let r = self.handle.cancel(WorkflowCancelOptions::default()).await;
        r.map_err(|e| interaction_error(&self.job_id, e))
    }
}
