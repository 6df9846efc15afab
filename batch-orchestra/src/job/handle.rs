//! Starting a job of any kind, and the handle that watches and steers it.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use temporalio_client::errors::{
    WorkflowGetResultError, WorkflowInteractionError, WorkflowQueryError, WorkflowStartError,
};
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowDescribeOptions, WorkflowFetchHistoryOptions,
    WorkflowGetResultOptions, WorkflowHandle, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
};
use temporalio_common::error::IncomingError;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::{HasWorkflowDefinition, MemoValues};

use super::kind::{JobKind, Run, Throttled};
use super::signals::{
    PAUSE_SIGNAL, ProgressQuery, RESUME_SIGNAL, SET_MAX_IN_FLIGHT_SIGNAL, SET_RATE_SIGNAL, Signal,
};
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::failure::ACTIVITY_FAILED_TYPE;
use crate::pipeline::Pipeline;

/// Starts jobs on a task queue and finds running ones.
#[derive(Clone)]
pub struct JobClient {
    pub(crate) client: Client,
    pub(crate) task_queue: String,
}

impl JobClient {
    /// A job client for `task_queue`, where workers for the pipelines run.
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
        }
    }

    /// Starts a job of kind `K` of pipeline `P`; [`start`](Self::start),
    /// [`start_sharded`](Self::start_sharded) and [`start_stream`](Self::start_stream) name
    /// the kind for you. The workflow id is the job id (`<job id>-redrive-<n>` for a
    /// redrive): starting a job whose id is already running is refused with
    /// [`JobError::AlreadyRunning`].
    pub async fn start_kind<P: Pipeline, K: JobKind<P>>(
        &self,
        request: K::Request,
    ) -> Result<JobHandle<P, K>, JobError> {
        K::validate(&request)?;
        let workflow_id = K::workflow_id(&request);
        let source = <P::Source as SourceConfig>::NAME;
        let sink = <P::Sink as SinkConfig>::NAME;
        let mut memo = MemoValues::new();
        memo.insert("pipeline", P::NAMES.workflow.to_owned())
            .insert("source", source.to_owned())
            .insert("sink", sink.to_owned())
            .insert("job_id", K::job_id(&request).to_owned());
        let detail = K::describe(&request, &mut memo);
        let summary = format!("{}: {source} -> {sink}, {detail}", P::NAMES.workflow);
        let options = WorkflowStartOptions::new(self.task_queue.clone(), workflow_id.clone())
            .memo(memo)
            .static_summary(summary)
            .build();
        match self
            .client
            .start_workflow(Run::<P, K>::new(), request, options)
            .await
        {
            Ok(_) => Ok(self.job_of(workflow_id)),
            Err(WorkflowStartError::AlreadyStarted { .. }) => Err(JobError::AlreadyRunning {
                job_id: workflow_id,
            }),
            Err(e) => Err(JobError::Temporal(format!(
                "cannot start job `{workflow_id}`: {e}"
            ))),
        }
    }

    /// A handle to the job `job_id` of kind `K` of pipeline `P`, started earlier (by anyone);
    /// [`job`](Self::job), [`sharded_job`](Self::sharded_job) and
    /// [`stream_job`](Self::stream_job) name the kind for you.
    pub fn job_of<P: Pipeline, K: JobKind<P>>(&self, job_id: impl Into<String>) -> JobHandle<P, K> {
        let job_id = job_id.into();
        JobHandle {
            handle: self.client.get_workflow_handle::<Run<P, K>>(job_id.clone()),
            jobs: self.clone(),
            job_id,
            _pipeline: PhantomData,
        }
    }

    /// The underlying Temporal client.
    pub fn temporal(&self) -> &Client {
        &self.client
    }
}

/// A job of kind `K` (a [`Batch`](super::Batch) job unless said otherwise) of pipeline `P`:
/// await its report, watch its progress, pause, resume or cancel it. Kinds with more
/// controls have them here too: [`set_max_in_flight`](Self::set_max_in_flight) and
/// [`set_rate`](Self::set_rate) for batch and sharded jobs, `redrive` for batch and sharded
/// jobs, `set_max_concurrent_shards` for sharded jobs.
pub struct JobHandle<P, K = super::Batch> {
    pub(crate) handle: WorkflowHandle<Client, Run<P, K>>,
    /// For what a kind asks of other jobs (a sharded job's shards).
    pub(crate) jobs: JobClient,
    pub(crate) job_id: String,
    _pipeline: PhantomData<fn() -> (P, K)>,
}

impl<P: Pipeline, K: JobKind<P>> JobHandle<P, K> {
    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Waits for the job to end (following continue-as-new) and returns its report, or the
    /// original cause of its failure.
    ///
    /// A job that ended with a report returns it, whatever its status: `Completed`,
    /// `CompletedWithFailures` (some batches failed for good: see the report's `failed` and
    /// `redrive`) or `Cancelled` (the counts are what was written). A failed job returns
    /// [`JobError::Failed`] with the original cause and, where the workflow attached it, its
    /// report.
    ///
    /// While the Temporal server is unreachable, it waits and asks again (every 1 to 10 s),
    /// so a server restart does not end the wait; bound it with your own timeout.
    pub async fn report(&self) -> Result<K::Report, JobError> {
        match wait_for(&self.handle, &self.job_id).await? {
            Ended::Done(report) => Ok(report),
            Ended::Cancelled(mut report) => {
                K::cancelled(&mut report, &self.jobs).await;
                Ok(report)
            }
        }
    }

    /// The job's live progress; for a batch job, with the running activities' ages and
    /// attempts, and those older than the job's `stuck_after` flagged.
    pub async fn progress(&self) -> Result<K::Progress, JobError> {
        let mut progress = self
            .handle
            .query(
                ProgressQuery::<P, K>::new(),
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map_err(|e| query_error(&self.job_id, e))?;
        if K::WATCHES_ACTIVITIES {
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            // Attempts come from the server's view of pending activities; best effort.
            let pending = match self
                .handle
                .describe(WorkflowDescribeOptions::default())
                .await
            {
                Ok(d) => d.raw_description.pending_activities,
                Err(_) => Vec::new(),
            };
            K::annotate(&mut progress, &pending, now_ms);
        }
        Ok(progress)
    }

    /// Stops new work from starting (batches, shards, slices); running work finishes.
    pub async fn pause(&self) -> Result<(), JobError> {
        self.signal(PAUSE_SIGNAL, ()).await
    }

    /// Lets new work start again.
    pub async fn resume(&self) -> Result<(), JobError> {
        self.signal(RESUME_SIGNAL, ()).await
    }

    /// Asks the job to stop. Running activities stop before their next read and finish a
    /// write in progress; the job ends within a few seconds (at most about one heartbeat
    /// timeout), and nothing is written after that. [`report`](Self::report) then returns
    /// the report with status `Cancelled` and exact counts.
    pub async fn cancel(&self) -> Result<(), JobError> {
        let r = self.handle.cancel(WorkflowCancelOptions::default()).await;
        r.map_err(|e| interaction_error(&self.job_id, e))
    }

    /// Sends signal `name` with `input`.
    pub(crate) async fn signal<I>(&self, name: &'static str, input: I) -> Result<(), JobError>
    where
        I: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    {
        let r = self
            .handle
            .signal(
                Signal::<Run<P, K>, I>::named(name),
                input,
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| interaction_error(&self.job_id, e))
    }

    /// The request the job's latest run started with, read from its history.
    pub(crate) async fn request(&self) -> Result<K::Request, JobError> {
        first_input(&self.handle, &self.job_id, K::workflow()).await
    }

    /// Refuses a redrive while the job runs.
    pub(crate) async fn refuse_while_running(&self) -> Result<(), JobError> {
        if is_running(&self.handle, &self.job_id).await? {
            return Err(JobError::NotRedrivable {
                job_id: self.job_id.clone(),
                reason: "it is still running; wait for its report first".into(),
            });
        }
        Ok(())
    }
}

impl<P: Pipeline, K: Throttled<P>> JobHandle<P, K> {
    /// Changes how many batches run at once (at least 1); for a sharded job, in each running
    /// shard and the shards still to start.
    pub async fn set_max_in_flight(&self, n: u32) -> Result<(), JobError> {
        self.signal(SET_MAX_IN_FLIGHT_SIGNAL, n).await
    }

    /// Sets the rate limit in records per second (for a sharded job, each shard's); 0 lifts
    /// it. Batches start no faster than that from now on (within a second).
    pub async fn set_rate(&self, records_per_s: u32) -> Result<(), JobError> {
        self.signal(SET_RATE_SIGNAL, records_per_s).await
    }
}

/// How a job's workflow ended, for a client: with its output, or cancelled with the output it
/// was cancelled with.
pub(crate) enum Ended<T> {
    Done(T),
    Cancelled(T),
}

/// Waits for the workflow of `handle` to end (following continue-as-new): its output, or the
/// original cause of its failure. While the server is unreachable, it waits and asks again
/// (every 1 to 10 s).
pub(crate) async fn wait_for<W>(
    handle: &WorkflowHandle<Client, W>,
    job_id: &str,
) -> Result<Ended<W::Output>, JobError>
where
    W: temporalio_common::WorkflowDefinition + HasWorkflowDefinition,
    W::Output: temporalio_common::data_converters::TemporalDeserializable + 'static,
{
    let job_id = job_id.to_owned();
    let mut wait = Duration::from_secs(1);
    loop {
        match handle.get_result(WorkflowGetResultOptions::default()).await {
            Ok(output) => return Ok(Ended::Done(output)),
            Err(WorkflowGetResultError::Failed(failure)) => {
                let (kind, message) = failure_cause(&failure);
                return Err(JobError::Failed {
                    job_id,
                    message,
                    kind,
                    report: failure_report(&failure).map(Box::new),
                });
            }
            Err(WorkflowGetResultError::Cancelled { details }) => {
                return match details.deserialize::<W::Output>() {
                    Ok(output) => Ok(Ended::Cancelled(output)),
                    Err(_) => Err(JobError::Cancelled { job_id }),
                };
            }
            Err(WorkflowGetResultError::Terminated { .. }) => {
                return Err(JobError::Terminated { job_id });
            }
            Err(WorkflowGetResultError::NotFound(_)) => {
                return Err(JobError::NotFound { job_id });
            }
            // The server is unreachable or restarting: the job goes on; wait for it.
            Err(WorkflowGetResultError::Rpc(_)) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(JobError::Temporal(format!("job `{job_id}`: {e}"))),
        }
    }
}

/// Whether the latest run of the workflow of `handle` is running.
pub(crate) async fn is_running<W: HasWorkflowDefinition>(
    handle: &WorkflowHandle<Client, W>,
    job_id: &str,
) -> Result<bool, JobError> {
    use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus;
    let described = handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .map_err(|e| interaction_error(job_id, e))?;
    Ok(described
        .raw_description
        .workflow_execution_info
        .is_some_and(|info| info.status == WorkflowExecutionStatus::Running as i32))
}

/// The input the workflow of `handle` started with (its latest run's), read from its history
/// as the request of `workflow`.
pub(crate) async fn first_input<W: HasWorkflowDefinition, T: serde::de::DeserializeOwned>(
    handle: &WorkflowHandle<Client, W>,
    job_id: &str,
    workflow: &str,
) -> Result<T, JobError> {
    let events = handle
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .map_err(|e| JobError::Temporal(format!("job `{job_id}`: {e}")))?;
    let input = events
        .into_iter()
        .find_map(|e| match e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a.input,
            _ => None,
        })
        .and_then(|p| p.payloads.into_iter().next())
        .ok_or_else(|| JobError::Temporal(format!("job `{job_id}`: no input in its history")))?;
    // History holds payloads as the codec left them (encrypted, say): decode them first.
    use temporalio_client::NamespacedClient;
    let input = handle
        .client()
        .data_converter()
        .codec()
        .decode(
            &temporalio_common::data_converters::SerializationContextData::None,
            vec![input],
        )
        .await
        .map_err(|e| JobError::Temporal(format!("job `{job_id}`: its request: {e}")))?
        .into_iter()
        .next()
        .ok_or_else(|| JobError::Temporal(format!("job `{job_id}`: no input in its history")))?;
    serde_json::from_slice(&input.data).map_err(|e| {
        JobError::Temporal(format!(
            "job `{job_id}`: its request does not match `{workflow}`: {e}"
        ))
    })
}

/// A signal, cancel or describe call's error, naming the job.
pub(crate) fn interaction_error(job_id: &str, e: WorkflowInteractionError) -> JobError {
    match e {
        WorkflowInteractionError::NotFound(_) => JobError::NotFound {
            job_id: job_id.to_owned(),
        },
        e => JobError::Temporal(format!("job `{job_id}`: {e}")),
    }
}

/// A query's error, naming the job.
pub(crate) fn query_error(job_id: &str, e: WorkflowQueryError) -> JobError {
    match e {
        WorkflowQueryError::NotFound(_) => JobError::NotFound {
            job_id: job_id.to_owned(),
        },
        e => JobError::Temporal(format!("job `{job_id}`: {e}")),
    }
}

/// The failure type and the deepest message of a workflow failure: the workflow already puts
/// the original cause in its own message, so nested wrappers add nothing.
pub(crate) fn failure_cause(error: &IncomingError) -> (String, String) {
    use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
    let failure = error.failure();
    let kind = match &failure.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) if !info.r#type.is_empty() => {
            info.r#type.clone()
        }
        _ => ACTIVITY_FAILED_TYPE.to_owned(),
    };
    let mut message = failure.message.clone();
    let mut cause = failure.cause.as_deref();
    while let Some(f) = cause {
        if message.is_empty() {
            message = f.message.clone();
        }
        cause = f.cause.as_deref();
    }
    (kind, message)
}

/// The report a failed job attached to its failure, as JSON.
fn failure_report(error: &IncomingError) -> Option<serde_json::Value> {
    use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
    match &error.failure().failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) => {
            let payload = info.details.as_ref()?.payloads.first()?;
            serde_json::from_slice(&payload.data).ok()
        }
        _ => None,
    }
}
