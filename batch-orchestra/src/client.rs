//! Clients: start jobs, await their reports, watch and steer them.

use std::marker::PhantomData;
use std::str::FromStr;

use temporalio_client::errors::{
    WorkflowGetResultError, WorkflowInteractionError, WorkflowQueryError, WorkflowStartError,
};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowCancelOptions,
    WorkflowGetResultOptions, WorkflowHandle, WorkflowQueryOptions, WorkflowSignalOptions,
    WorkflowStartOptions,
};
use temporalio_common::error::IncomingError;

use crate::error::{ACTIVITY_FAILED_TYPE, JobError};
use crate::model::Progress;
use crate::pipeline::{OffsetOf, Pipeline, ReportOf, RequestOf};
use crate::workflow::{JobRun, PauseSignal, ProgressQuery, ResumeSignal, SetMaxInFlightSignal};

/// Connects to the Temporal server at `address` (`127.0.0.1:7233` or
/// `http://127.0.0.1:7233`), in `namespace`.
pub async fn connect(address: &str, namespace: &str) -> Result<Client, JobError> {
    let url = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    let url = Url::from_str(&url)
        .map_err(|e| JobError::Temporal(format!("bad Temporal address `{address}`: {e}")))?;
    let connection = Connection::connect(ConnectionOptions::new(url).build())
        .await
        .map_err(|e| {
            JobError::Temporal(format!("cannot connect to Temporal at `{address}`: {e}"))
        })?;
    Client::new(connection, ClientOptions::new(namespace.to_owned()).build()).map_err(|e| {
        JobError::Temporal(format!(
            "cannot create a Temporal client for `{address}`: {e}"
        ))
    })
}

/// Connects with `TEMPORAL_ADDRESS` (default `127.0.0.1:7233`) and `TEMPORAL_NAMESPACE`
/// (default `default`).
pub async fn connect_from_env() -> Result<Client, JobError> {
    let address = std::env::var("TEMPORAL_ADDRESS").unwrap_or_else(|_| "127.0.0.1:7233".to_owned());
    let namespace = std::env::var("TEMPORAL_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    connect(&address, &namespace).await
}

/// Starts jobs on a task queue and finds running ones.
#[derive(Clone)]
pub struct JobClient {
    client: Client,
    task_queue: String,
}

impl JobClient {
    /// A job client for `task_queue`, where workers for the pipelines run.
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
        }
    }

    /// Starts a job of pipeline `P`. The workflow id is the job id: starting a job whose id
    /// is already running is refused with [`JobError::AlreadyRunning`].
    pub async fn start<P: Pipeline>(
        &self,
        request: RequestOf<P>,
    ) -> Result<JobHandle<P>, JobError> {
        request.validate()?;
        let job_id = request.job_id.clone();
        let options = WorkflowStartOptions::new(self.task_queue.clone(), job_id.clone()).build();
        match self
            .client
            .start_workflow(JobRun::<P>::new(), request, options)
            .await
        {
            Ok(_) => Ok(self.job(job_id)),
            Err(WorkflowStartError::AlreadyStarted { .. }) => {
                Err(JobError::AlreadyRunning { job_id })
            }
            Err(e) => Err(JobError::Temporal(format!(
                "cannot start job `{job_id}`: {e}"
            ))),
        }
    }

    /// A handle to the job `job_id` of pipeline `P`, started earlier (by anyone).
    pub fn job<P: Pipeline>(&self, job_id: impl Into<String>) -> JobHandle<P> {
        let job_id = job_id.into();
        JobHandle {
            handle: self.client.get_workflow_handle::<JobRun<P>>(job_id.clone()),
            job_id,
            _pipeline: PhantomData,
        }
    }

    /// The underlying Temporal client.
    pub fn temporal(&self) -> &Client {
        &self.client
    }
}

/// A job: await its report, watch its progress, pause, resume or cancel it.
pub struct JobHandle<P> {
    handle: WorkflowHandle<Client, JobRun<P>>,
    job_id: String,
    _pipeline: PhantomData<fn() -> P>,
}

impl<P: Pipeline> JobHandle<P> {
    /// The job id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Waits for the job to end (following continue-as-new) and returns its report, or the
    /// original cause of its failure.
    pub async fn report(&self) -> Result<ReportOf<P>, JobError> {
        let job_id = self.job_id.clone();
        match self
            .handle
            .get_result(WorkflowGetResultOptions::default())
            .await
        {
            Ok(report) => Ok(report),
            Err(WorkflowGetResultError::Failed(failure)) => {
                let (kind, message) = failure_cause(&failure);
                Err(JobError::Failed {
                    job_id,
                    message,
                    kind,
                })
            }
            Err(WorkflowGetResultError::Cancelled { .. }) => Err(JobError::Cancelled { job_id }),
            Err(WorkflowGetResultError::Terminated { .. }) => Err(JobError::Terminated { job_id }),
            Err(WorkflowGetResultError::NotFound(_)) => Err(JobError::NotFound { job_id }),
            Err(e) => Err(JobError::Temporal(format!("job `{job_id}`: {e}"))),
        }
    }

    /// The job's live progress.
    pub async fn progress(&self) -> Result<Progress<OffsetOf<P>>, JobError> {
        self.handle
            .query(
                ProgressQuery::<P>::new(),
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map_err(|e| self.query_error(e))
    }

    /// Stops new batches from starting; running batches finish.
    pub async fn pause(&self) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                PauseSignal::<P>::new(),
                (),
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Lets new batches start again.
    pub async fn resume(&self) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                ResumeSignal::<P>::new(),
                (),
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Changes how many batches run at once (at least 1).
    pub async fn set_max_in_flight(&self, n: u32) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                SetMaxInFlightSignal::<P>::new(),
                n,
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Asks the job to stop; [`report`](Self::report) then returns [`JobError::Cancelled`].
    pub async fn cancel(&self) -> Result<(), JobError> {
        let r = self.handle.cancel(WorkflowCancelOptions::default()).await;
        r.map_err(|e| self.interaction_error(e))
    }

    fn interaction_error(&self, e: WorkflowInteractionError) -> JobError {
        match e {
            WorkflowInteractionError::NotFound(_) => JobError::NotFound {
                job_id: self.job_id.clone(),
            },
            e => JobError::Temporal(format!("job `{}`: {e}", self.job_id)),
        }
    }

    fn query_error(&self, e: WorkflowQueryError) -> JobError {
        match e {
            WorkflowQueryError::NotFound(_) => JobError::NotFound {
                job_id: self.job_id.clone(),
            },
            e => JobError::Temporal(format!("job `{}`: {e}", self.job_id)),
        }
    }
}

/// The failure type and the deepest message of a workflow failure: the workflow already puts
/// the original cause in its own message, so nested wrappers add nothing.
fn failure_cause(error: &IncomingError) -> (String, String) {
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
