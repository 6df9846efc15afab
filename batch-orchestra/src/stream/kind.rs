//! The streaming kind: an unbounded source through the queue executor ([`Stream`]).

use temporalio_common::MemoValues;

use super::StreamProgress;
use crate::connector::SourceConfig;
use crate::error::JobError;
use crate::job::JobStatus;
use crate::job::{JobClient, JobHandle, JobKind, ProgressSummary, ReportSummary, Stream};
use crate::pipeline::{OffsetOf, Pipeline};
use crate::stream::{StreamReportOf, StreamRequestOf};

impl<P: Pipeline> JobKind<P> for Stream {
    type Request = StreamRequestOf<P>;
    type Report = StreamReportOf<P>;
    type Progress = StreamProgress<OffsetOf<P>>;
    const NAME: &'static str = "stream";

    fn workflow() -> &'static str {
        P::NAMES.workflow
    }

    fn validate(request: &Self::Request) -> Result<(), JobError> {
        if !P::capabilities().is_stream() {
            return Err(JobError::InvalidRequest(format!(
                "job `{}`: source `{}` is not a stream: start a batch job with `start`, or declare the source with `#[batch_source(..., streaming)]`",
                request.job_id,
                <P::Source as SourceConfig>::NAME
            )));
        }
        request.validate()
    }

    fn job_id(request: &Self::Request) -> &str {
        &request.job_id
    }

    fn workflow_id(request: &Self::Request) -> String {
        request.job_id.clone()
    }

    fn describe(request: &Self::Request, memo: &mut MemoValues) -> String {
        memo.insert("batch_size", request.batch_size)
            .insert("streaming", true);
        format!("streaming, {} executor(s)", request.executors)
    }

    async fn cancelled(report: &mut Self::Report, _jobs: &JobClient) {
        report.status = JobStatus::Cancelled;
    }

    /// Records received count as read, slices as batches.
    fn summary(r: &Self::Report) -> ReportSummary {
        ReportSummary {
            job_id: r.job_id.clone(),
            pipeline: r.workflow.clone(),
            status: r.status,
            records_read: r.records_received,
            records_written: r.records_written,
            already_present: r.already_present,
            superseded: r.superseded,
            records_filtered: r.records_filtered,
            record_errors: r.record_errors,
            error_samples: r.error_samples.clone(),
            batches: r.slices,
            elapsed_ms: r.elapsed_ms,
            failure: r.failure.clone(),
            ..ReportSummary::default()
        }
    }

    /// `in_flight` counts running slices; `max_in_flight` is the executors.
    fn progress_summary(p: &Self::Progress) -> ProgressSummary {
        ProgressSummary {
            report: <Self as JobKind<P>>::summary(&p.report),
            in_flight: p.running,
            max_in_flight: p.report.checkpoints.len() as u32,
            paused: p.paused,
            ..ProgressSummary::default()
        }
    }
}

impl JobClient {
    /// Starts a streaming job of pipeline `P`, whose source is a stream. The workflow id is
    /// the job id. It runs until cancelled, or until an end condition of the request.
    ///
    /// A batch source is refused with [`JobError::InvalidRequest`] before anything starts.
    pub async fn start_stream<P: Pipeline>(
        &self,
        request: StreamRequestOf<P>,
    ) -> Result<StreamJobHandle<P>, JobError> {
        self.start_kind::<P, Stream>(request).await
    }

    /// A handle to the streaming job `job_id` of pipeline `P`, started earlier (by anyone).
    pub fn stream_job<P: Pipeline>(&self, job_id: impl Into<String>) -> StreamJobHandle<P> {
        self.job_of::<P, Stream>(job_id)
    }
}

/// A streaming job: watch its progress (counts and checkpoints as of the last finished
/// slice, the rate, the lag behind the stream's head where the source can tell), pause,
/// resume or cancel it (running slices stop reading, write and acknowledge what they hold),
/// await its report.
pub type StreamJobHandle<P> = JobHandle<P, Stream>;
