//! Clients: start jobs, await their reports, watch and steer them.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use temporalio_client::errors::{
    WorkflowGetResultError, WorkflowInteractionError, WorkflowQueryError, WorkflowStartError,
};
use temporalio_client::{
    Client, ClientOptions, Connection, ConnectionOptions, Url, WorkflowCancelOptions,
    WorkflowDescribeOptions, WorkflowFetchHistoryOptions, WorkflowGetResultOptions, WorkflowHandle,
    WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::error::IncomingError;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_common::{HasWorkflowDefinition, MemoValues};

use crate::error::{ACTIVITY_FAILED_TYPE, JobError};
use crate::model::{JobStatus, Progress, Redrive, Stretch, redrive_workflow_id};
use crate::pipeline::{OffsetOf, Pipeline, ReportOf, RequestOf};
use crate::workflow::{
    JobRun, PauseSignal, ProgressQuery, ResumeSignal, SetMaxInFlightSignal, SetRateSignal,
};

/// Connects to the Temporal server at `address` (`127.0.0.1:7233` or
/// `http://127.0.0.1:7233`), in `namespace`.
pub async fn connect(address: &str, namespace: &str) -> Result<Client, JobError> {
    let url = address_url(address)
        .parse::<Url>()
        .map_err(|e| JobError::Settings(format!("bad Temporal address `{address}`: {e}")))?;
    let connection = Connection::connect(ConnectionOptions::new(url).build())
        .await
        .map_err(|e| {
            JobError::Temporal(format!(
                "cannot connect to Temporal at `{address}` ({}): is the server running, and is TEMPORAL_ADDRESS right?",
                root_message(&e)
            ))
        })?;
    let encryption = Encryption::from_env(None)?;
    Client::new(connection, encryption.client_options(namespace)).map_err(|e| {
        JobError::Temporal(format!(
            "cannot create a Temporal client for `{address}`: {e}"
        ))
    })
}

/// `address` as a URL: `host:port` is taken as `http://host:port`.
fn address_url(address: &str) -> String {
    if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    }
}

/// The payload encryption of a connection: the keys from the environment
/// ([`encryption`](crate::encryption)), if any.
#[derive(Clone, Debug, Default)]
struct Encryption {
    #[cfg(feature = "encryption")]
    keys: Option<crate::encryption::Keyring>,
}

impl Encryption {
    /// The keys from `env` (else the process's environment); none without the feature.
    #[allow(unused_variables)]
    fn from_env(env: Option<&std::collections::HashMap<String, String>>) -> Result<Self, JobError> {
        #[cfg(feature = "encryption")]
        {
            let keys = crate::encryption::Keyring::from_vars(|name| match env {
                Some(env) => env.get(name).cloned(),
                None => std::env::var(name).ok(),
            })
            .map_err(|e| JobError::Settings(e.to_string()))?;
            Ok(Self { keys })
        }
        #[cfg(not(feature = "encryption"))]
        Ok(Self {})
    }

    fn client_options(&self, namespace: &str) -> ClientOptions {
        #[cfg(feature = "encryption")]
        if let Some(keys) = &self.keys {
            return ClientOptions::new(namespace.to_owned())
                .data_converter(keys.data_converter())
                .build();
        }
        ClientOptions::new(namespace.to_owned()).build()
    }
}

/// Connects the way the `temporal` CLI and Temporal's SDKs do: the profile named by
/// `TEMPORAL_PROFILE` (else `default`) from the config file named by `TEMPORAL_CONFIG_FILE`
/// (else `~/.config/temporalio/temporal.toml`, if it exists), overridden by the variables
/// `TEMPORAL_ADDRESS` (default `127.0.0.1:7233`), `TEMPORAL_NAMESPACE` (default `default`),
/// `TEMPORAL_API_KEY`, `TEMPORAL_TLS`, `TEMPORAL_TLS_CLIENT_CERT_PATH`,
/// `TEMPORAL_TLS_CLIENT_KEY_PATH`, `TEMPORAL_TLS_SERVER_CA_CERT_PATH`,
/// `TEMPORAL_TLS_SERVER_NAME` and `TEMPORAL_GRPC_META_*`. An API key or a TLS setting turns TLS
/// on, as for Temporal Cloud.
///
/// A setting that cannot be used (an unknown profile, a file that does not parse, a missing
/// certificate) is a [`JobError::Temporal`] naming it.
pub async fn connect_from_env() -> Result<Client, JobError> {
    connect_profile(None).await
}

/// Like [`connect_from_env`], with the profile `profile` of the config file instead of
/// `TEMPORAL_PROFILE`'s.
pub async fn connect_profile(profile: Option<&str>) -> Result<Client, JobError> {
    let settings = TemporalSettings::resolve(profile, None)?;
    settings.connect().await
}

/// Resolved Temporal connection settings: a profile of the config file with the environment
/// applied, as [`connect_from_env`] uses them. Its `Debug` output leaves out the API key and
/// the TLS material.
#[derive(Clone)]
pub struct TemporalSettings {
    profile: temporalio_client::envconfig::ClientConfigProfile,
    /// The server's address (`host:port` or a URL).
    pub address: String,
    /// The namespace.
    pub namespace: String,
    /// Whether the connection uses TLS.
    pub tls: bool,
    /// Whether an API key is sent.
    pub api_key: bool,
    encryption: Encryption,
}

impl TemporalSettings {
    /// Resolves the settings from `profile` (or `TEMPORAL_PROFILE`) and the environment;
    /// `env` replaces the process's variables when given (for tests).
    pub fn resolve(
        profile: Option<&str>,
        env: Option<&std::collections::HashMap<String, String>>,
    ) -> Result<Self, JobError> {
        use temporalio_client::envconfig::LoadClientConfigProfileOptions;
        let options = LoadClientConfigProfileOptions::builder()
            .maybe_config_file_profile(profile.map(str::to_owned))
            .build();
        let mut loaded = temporalio_common::envconfig::load_client_config_profile(options, env)
            .map_err(|e| JobError::Settings(settings_error(profile, env, &e)))?;
        let address = loaded
            .address
            .get_or_insert_with(|| DEFAULT_ADDRESS.to_owned())
            .clone();
        if let Err(e) = address_url(&address).parse::<Url>() {
            return Err(JobError::Settings(format!(
                "the address `{address}` (TEMPORAL_ADDRESS or the profile's `address`) is not a host:port or URL: {e}"
            )));
        }
        let namespace = loaded
            .namespace
            .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned())
            .clone();
        let api_key = loaded.api_key.is_some();
        let tls = match &loaded.tls {
            Some(t) => t.disabled != Some(true),
            None => api_key,
        };
        let encryption = Encryption::from_env(env)?;
        Ok(Self {
            profile: loaded,
            address,
            namespace,
            tls,
            api_key,
            encryption,
        })
    }

    /// Encrypts payloads with `keys` instead of the keys of the environment.
    #[cfg(feature = "encryption")]
    pub fn with_encryption(mut self, keys: crate::encryption::Keyring) -> Self {
        self.encryption.keys = Some(keys);
        self
    }

    /// The id of the key payloads are encrypted with, when they are.
    #[cfg(feature = "encryption")]
    pub fn encryption_key_id(&self) -> Option<&str> {
        self.encryption.keys.as_ref().map(|k| k.current_id())
    }

    /// Connects with these settings.
    pub async fn connect(&self) -> Result<Client, JobError> {
        let address = &self.address;
        let options = ConnectionOptions::try_from(self.profile.clone())
            .map_err(|e| JobError::Settings(e.to_string()))?;
        let connection = Connection::connect(options).await.map_err(|e| {
            JobError::Temporal(format!(
                "cannot connect to Temporal at `{address}` ({}): is the server running, and is TEMPORAL_ADDRESS right?",
                root_message(&e)
            ))
        })?;
        Client::new(connection, self.encryption.client_options(&self.namespace)).map_err(|e| {
            JobError::Temporal(format!(
                "cannot create a Temporal client for `{address}`: {e}"
            ))
        })
    }
}

impl std::fmt::Debug for TemporalSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemporalSettings")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

const DEFAULT_ADDRESS: &str = "127.0.0.1:7233";
const DEFAULT_NAMESPACE: &str = "default";

/// Names where a bad setting came from: the profile and the file.
fn settings_error(
    profile: Option<&str>,
    env: Option<&std::collections::HashMap<String, String>>,
    e: &temporalio_client::envconfig::ConfigError,
) -> String {
    let var = |k: &str| match env {
        Some(map) => map.get(k).cloned(),
        None => std::env::var(k).ok(),
    };
    let file = var("TEMPORAL_CONFIG_FILE")
        .filter(|f| !f.is_empty())
        .map(|f| format!("`{f}` (TEMPORAL_CONFIG_FILE)"))
        .unwrap_or_else(|| "`~/.config/temporalio/temporal.toml`".to_owned());
    let profile = profile
        .map(|p| format!("`{p}`"))
        .or_else(|| var("TEMPORAL_PROFILE").map(|p| format!("`{p}` (TEMPORAL_PROFILE)")))
        .unwrap_or_else(|| "`default`".to_owned());
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    format!(
        "Temporal connection settings, profile {profile} of {file} and the TEMPORAL_* variables: {cause}"
    )
}

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

    /// Starts a job of pipeline `P`. The workflow id is the job id (`<job id>-redrive-<n>`
    /// for a redrive): starting a job whose id is already running is refused with
    /// [`JobError::AlreadyRunning`].
    pub async fn start<P: Pipeline>(
        &self,
        request: RequestOf<P>,
    ) -> Result<JobHandle<P>, JobError> {
        request.validate()?;
        let job_id = request.workflow_id();
        let source = <P::Source as crate::connector::SourceConfig>::NAME;
        let sink = <P::Sink as crate::connector::SinkConfig>::NAME;
        let mut memo = MemoValues::new();
        memo.insert("pipeline", P::NAMES.workflow.to_owned())
            .insert("source", source.to_owned())
            .insert("sink", sink.to_owned())
            .insert("batch_size", request.batch_size)
            .insert("job_id", request.job_id.clone());
        let summary = format!(
            "{}: {source} -> {sink}, batches of {}",
            P::NAMES.workflow,
            request.batch_size
        );
        let options = WorkflowStartOptions::new(self.task_queue.clone(), job_id.clone())
            .memo(memo)
            .static_summary(summary)
            .build();
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
    ///
    /// A job that ended with a report returns it, whatever its [`JobStatus`]: `Completed`,
    /// `CompletedWithFailures` (some batches failed for good: see [`JobReport::failed`] and
    /// [`redrive`](Self::redrive)) or `Cancelled` (the counts are what was written). Check
    /// [`JobReport::is_complete`], or call [`JobReport::into_result`] to turn anything but a
    /// clean run into an error. A failed job returns [`JobError::Failed`] with the original
    /// cause.
    ///
    /// While the Temporal server is unreachable, it waits and asks again (every 1 to 10 s),
    /// so a server restart does not end the wait; bound it with your own timeout.
    ///
    /// [`JobReport::failed`]: crate::JobReport::failed
    /// [`JobReport::is_complete`]: crate::JobReport::is_complete
    /// [`JobReport::into_result`]: crate::JobReport::into_result
    pub async fn report(&self) -> Result<ReportOf<P>, JobError> {
        match wait_for(&self.handle, &self.job_id).await? {
            Ended::Done(report) => Ok(report),
            Ended::Cancelled(mut report) => {
                report.status = JobStatus::Cancelled;
                Ok(report)
            }
        }
    }

    /// The job's live progress, with the running activities' ages and attempts and those
    /// older than the job's `stuck_after` flagged.
    pub async fn progress(&self) -> Result<Progress<OffsetOf<P>>, JobError> {
        let mut progress = self
            .handle
            .query(
                ProgressQuery::<P>::new(),
                (),
                WorkflowQueryOptions::default(),
            )
            .await
            .map_err(|e| self.query_error(e))?;
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
        let stuck_after = progress.stuck_after_ms;
        for running in &mut progress.running {
            running.age_ms = now_ms.saturating_sub(running.scheduled_at_ms);
            running.stuck = stuck_after > 0 && running.age_ms > stuck_after;
            running.attempt = pending
                .iter()
                .find(|p| p.activity_id == running.activity_id)
                .map(|p| p.attempt.max(1) as u32);
        }
        Ok(progress)
    }

    /// Reruns the failed batches of this finished job as a follow-up job, with the same
    /// configs, and returns its handle. Its id is `<job id>-redrive-<n>`, n the first number
    /// not taken by an earlier redrive of the job (1, then 2, ...), so it is easy to find,
    /// cannot run twice at once, and never replaces an earlier redrive's history.
    /// Writes are idempotent, so batches that were partly written are not written twice. The
    /// redrive's report counts what was recovered; what failed again is in its
    /// [`failed`](crate::JobReport::failed) list and can be redriven in turn.
    ///
    /// A job that failed (a limit reached, an outage past its budget) is redriven too: its
    /// failed ranges, then the rest of its input from where it stopped
    /// ([`stopped_at`](crate::JobReport::stopped_at)), with the same record ids.
    ///
    /// Refused with [`JobError::NotRedrivable`] while the job runs, and when it has nothing
    /// to rerun.
    pub async fn redrive(&self, jobs: &JobClient) -> Result<JobHandle<P>, JobError> {
        if is_running(&self.handle, &self.job_id).await? {
            return Err(JobError::NotRedrivable {
                job_id: self.job_id.clone(),
                reason: "it is still running; wait for its report first".into(),
            });
        }
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

    /// The request the job's latest run started with, read from its history.
    async fn request(&self) -> Result<RequestOf<P>, JobError> {
        first_input(&self.handle, &self.job_id, P::NAMES.workflow).await
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

    /// Sets the job's rate limit in records per second; 0 lifts it. Batches start no faster
    /// than that from now on (within a second).
    pub async fn set_rate(&self, records_per_s: u32) -> Result<(), JobError> {
        let r = self
            .handle
            .signal(
                SetRateSignal::<P>::new(),
                records_per_s,
                WorkflowSignalOptions::default(),
            )
            .await;
        r.map_err(|e| self.interaction_error(e))
    }

    /// Asks the job to stop. Running activities stop before their next read and finish a write
    /// in progress; the job ends within a few seconds (at most about one heartbeat timeout),
    /// and nothing is written after that. [`report`](Self::report) then returns the report
    /// with status `Cancelled` and exact counts; a new job started at its `end_offset`
    /// resumes the work.
    pub async fn cancel(&self) -> Result<(), JobError> {
        let r = self.handle.cancel(WorkflowCancelOptions::default()).await;
        r.map_err(|e| self.interaction_error(e))
    }

    fn interaction_error(&self, e: WorkflowInteractionError) -> JobError {
        interaction_error(&self.job_id, e)
    }

    fn query_error(&self, e: WorkflowQueryError) -> JobError {
        query_error(&self.job_id, e)
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

/// The deepest message of an error's source chain: the transport's own words, without the
/// wrappers' `Debug` text.
fn root_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_come_from_a_profile_of_the_config_file_then_the_variables() {
        let dir = std::env::temp_dir().join(format!("bo-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("temporal.toml");
        std::fs::write(
            &file,
            "[profile.default]\naddress = \"127.0.0.1:1111\"\nnamespace = \"ns-default\"\n\n\
             [profile.cloud]\naddress = \"127.0.0.1:7234\"\nnamespace = \"prod\"\napi_key = \"fake-key\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();

        let s =
            TemporalSettings::resolve(None, Some(&env(&[("TEMPORAL_CONFIG_FILE", path)]))).unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:1111", "ns-default")
        );
        assert!(!s.tls && !s.api_key);

        // A named profile; an API key turns TLS on, as for Temporal Cloud.
        let s =
            TemporalSettings::resolve(Some("cloud"), Some(&env(&[("TEMPORAL_CONFIG_FILE", path)])))
                .unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:7234", "prod")
        );
        assert!(s.tls && s.api_key);

        // TEMPORAL_PROFILE picks the profile; variables override its values.
        let s = TemporalSettings::resolve(
            None,
            Some(&env(&[
                ("TEMPORAL_CONFIG_FILE", path),
                ("TEMPORAL_PROFILE", "cloud"),
                ("TEMPORAL_NAMESPACE", "override"),
                ("TEMPORAL_TLS", "false"),
            ])),
        )
        .unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:7234", "override")
        );
        assert!(!s.tls);

        // No file, no variables: the local dev server.
        let missing = dir.join("missing.toml");
        let s = TemporalSettings::resolve(
            None,
            Some(&env(&[("TEMPORAL_CONFIG_FILE", missing.to_str().unwrap())])),
        )
        .unwrap();
        assert_eq!(
            (s.address.as_str(), s.namespace.as_str()),
            ("127.0.0.1:7233", "default")
        );
        let s = TemporalSettings::resolve(
            None,
            Some(&env(&[
                ("TEMPORAL_CONFIG_FILE", missing.to_str().unwrap()),
                ("TEMPORAL_ADDRESS", "127.0.0.1:9999"),
            ])),
        )
        .unwrap();
        assert_eq!(s.address, "127.0.0.1:9999");

        // An unknown profile names the profile and the file.
        let err = TemporalSettings::resolve(
            Some("staging"),
            Some(&env(&[("TEMPORAL_CONFIG_FILE", path)])),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`staging`") && err.contains(path), "{err}");

        // A file that does not parse names the file and the line.
        std::fs::write(&file, "[profile.default\naddress = 1\n").unwrap();
        let err = TemporalSettings::resolve(None, Some(&env(&[("TEMPORAL_CONFIG_FILE", path)])))
            .unwrap_err()
            .to_string();
        assert!(err.contains(path) && err.contains("line 1"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_in_one_readable_sentence() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let Err(err) = connect(&format!("127.0.0.1:{port}"), "default").await else {
            panic!("nothing listens there")
        };
        let text = err.to_string();
        assert!(
            text.contains(&format!("cannot connect to Temporal at `127.0.0.1:{port}`")),
            "{text}"
        );
        assert!(text.contains("is the server running"), "{text}");
        assert!(
            !text.contains("Error {") && !text.contains("kind:"),
            "no Debug text: {text}"
        );
    }
}
