//! The kinds of run a pipeline has, as one trait.

use std::future::Future;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use temporalio_common::{HasWorkflowDefinition, MemoValues, WorkflowDefinition};

use super::handle::JobClient;
use super::summary::{ProgressSummary, ReportSummary};
use crate::error::JobError;
use crate::pipeline::Pipeline;

/// A running activity as the server describes it.
pub type PendingActivity =
    temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo;

/// A kind of run of pipeline `P`: a batch job over one input ([`Batch`]), a sharded job over
/// many ([`Sharded`]), a streaming job ([`Stream`]).
///
/// A kind names its request, report and progress types and its workflow, checks its requests
/// and says what its memo holds; [`JobClient`] and [`JobHandle`](super::JobHandle) do the rest
/// for every kind alike. Controls only some kinds have are capability traits beside it
/// ([`Throttled`]), so a handle offers them only where the kind has them.
pub trait JobKind<P: Pipeline>: Sized + Send + Sync + 'static {
    /// What starts a job: the workflow's input.
    type Request: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What a job ends with: the workflow's output.
    type Report: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What the `progress` query answers while the job runs.
    type Progress: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The kind's name in the memo and in messages: `batch`, `sharded` or `stream`.
    const NAME: &'static str;

    /// The workflow type the kind's jobs run as.
    fn workflow() -> &'static str;

    /// Checks a request before anything starts.
    fn validate(request: &Self::Request) -> Result<(), JobError>;

    /// The job id of a request.
    fn job_id(request: &Self::Request) -> &str;

    /// The workflow id a request starts (the job id; `<job id>-redrive-<n>` for a redrive).
    fn workflow_id(request: &Self::Request) -> String;

    /// Adds what the memo says of this kind's job beyond its pipeline, connectors and job id,
    /// and returns the one-line summary Temporal's UI shows.
    fn describe(request: &Self::Request, memo: &mut MemoValues) -> String;

    /// Marks a report the workflow was cancelled with as cancelled, completing it where the
    /// workflow could not know everything (a sharded job's cancelled shards).
    fn cancelled(report: &mut Self::Report, jobs: &JobClient) -> impl Future<Output = ()> + Send;

    /// Whether [`annotate`](Self::annotate) wants the job's pending activities.
    const WATCHES_ACTIVITIES: bool = false;

    /// Completes a progress the workflow answered with what only the server knows: the
    /// running activities' attempts and ages (`now_ms`, the client's clock). Nothing by
    /// default.
    fn annotate(progress: &mut Self::Progress, pending: &[PendingActivity], now_ms: u64) {
        let _ = (progress, pending, now_ms);
    }

    /// What every kind's report tells a person: counts, failed ranges, failure.
    fn summary(report: &Self::Report) -> ReportSummary;

    /// What every kind's progress tells a person.
    fn progress_summary(progress: &Self::Progress) -> ProgressSummary;
}

/// A kind whose jobs take a new in-flight limit and rate limit while they run.
pub trait Throttled<P: Pipeline>: JobKind<P> {}

/// A batch job: one input, planned into batches, run in a sliding window
/// ([`batch::BatchProcessingRequest`](crate::batch::BatchProcessingRequest) →
/// [`batch::JobReport`](crate::batch::JobReport)).
#[derive(Debug, Clone, Copy)]
pub enum Batch {}

/// A sharded job: every input a source lists, one child batch job per shard
/// ([`sharded::ShardedRequest`](crate::sharded::ShardedRequest) →
/// [`sharded::ShardedReport`](crate::sharded::ShardedReport)).
#[derive(Debug, Clone, Copy)]
pub enum Sharded {}

/// A streaming job: an unbounded source through the queue executor
/// ([`streaming::StreamRequest`](crate::stream::StreamRequest) →
/// [`streaming::StreamReport`](crate::stream::StreamReport)).
#[derive(Debug, Clone, Copy)]
pub enum Stream {}

/// The workflow of kind `K` of pipeline `P`, for typed client calls.
pub struct Run<P, K>(PhantomData<fn() -> (P, K)>);

impl<P, K> Run<P, K> {
    /// The marker.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<P, K> Default for Run<P, K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Pipeline, K: JobKind<P>> WorkflowDefinition for Run<P, K> {
    type Input = K::Request;
    type Output = K::Report;
    fn name(&self) -> &str {
        K::workflow()
    }
}

impl<P: Pipeline, K: JobKind<P>> HasWorkflowDefinition for Run<P, K> {
    type Run = Self;
}
