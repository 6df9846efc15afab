//! Scheduled jobs: a job's request run on a cron expression or an interval by a Temporal
//! Schedule. Each run is an ordinary job (reports, controls, redrive) whose id is the
//! schedule's id and its scheduled time, `<schedule id>-<time>`: a run started twice for one
//! time is one job, and its records get the same ids.
//!
//! ```no_run
//! # use batch_orchestra::testing::RangeToCounting;
//! # async fn demo(jobs: batch_orchestra::JobClient, request: batch_orchestra::batch::RequestOf<RangeToCounting>) -> Result<(), batch_orchestra::JobError> {
//! use std::time::Duration;
//! use batch_orchestra::job::schedule::Schedule;
//!
//! // Every 15 minutes; a run still going when the next is due makes that one skip.
//! let hourly = jobs
//!     .schedule::<RangeToCounting>(request, &Schedule::every(Duration::from_secs(900)))
//!     .await?;
//! hourly.trigger().await?; // and one run now
//! # Ok(()) }
//! ```

use std::time::{Duration, SystemTime};

use futures::StreamExt;
use temporalio_client::Client;
use temporalio_client::schedules::{
    BackfillScheduleOptions, CreateScheduleOptions, DeleteScheduleOptions, ListSchedulesOptions,
    PauseScheduleOptions, ScheduleAction, ScheduleBackfill, ScheduleError, ScheduleOverlapPolicy,
    ScheduleSpec, TriggerScheduleOptions, UnpauseScheduleOptions,
};

use super::{Batch, JobClient, JobKind, Run};
use crate::error::JobError;
use crate::pipeline::Pipeline;

/// What a schedule does when a run is due while an earlier one still runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overlap {
    /// The new run is skipped (the default): one run at a time, none queued.
    #[default]
    Skip,
    /// One run waits for the running one; later ones are skipped.
    BufferOne,
    /// Every run waits its turn.
    BufferAll,
    /// The running one is cancelled (its report says what it wrote) and the new one starts.
    CancelOther,
    /// Runs overlap freely.
    AllowAll,
}

impl Overlap {
    /// Reads `skip`, `buffer-one`, `buffer-all`, `cancel-other` or `allow-all`.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "skip" => Self::Skip,
            "buffer-one" => Self::BufferOne,
            "buffer-all" => Self::BufferAll,
            "cancel-other" => Self::CancelOther,
            "allow-all" => Self::AllowAll,
            _ => return None,
        })
    }

    fn policy(self) -> ScheduleOverlapPolicy {
        match self {
            Self::Skip => ScheduleOverlapPolicy::Skip,
            Self::BufferOne => ScheduleOverlapPolicy::BufferOne,
            Self::BufferAll => ScheduleOverlapPolicy::BufferAll,
            Self::CancelOther => ScheduleOverlapPolicy::CancelOther,
            Self::AllowAll => ScheduleOverlapPolicy::AllowAll,
        }
    }
}

/// When a scheduled job runs: a cron expression or an interval, and what happens on overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    cron: Option<String>,
    every: Option<Duration>,
    overlap: Overlap,
    paused: bool,
}

impl Schedule {
    /// Runs at the times of a cron expression, in UTC: `0 * * * *` is every hour on the hour.
    pub fn cron(expression: impl Into<String>) -> Self {
        Self {
            cron: Some(expression.into()),
            every: None,
            overlap: Overlap::default(),
            paused: false,
        }
    }

    /// Runs every `interval`, from the Unix epoch (so `every(1 h)` runs on the hour).
    pub fn every(interval: Duration) -> Self {
        Self {
            cron: None,
            every: Some(interval),
            overlap: Overlap::default(),
            paused: false,
        }
    }

    /// What happens when a run is due while an earlier one still runs ([`Overlap::Skip`]
    /// by default).
    pub fn overlap(mut self, overlap: Overlap) -> Self {
        self.overlap = overlap;
        self
    }

    /// Creates the schedule paused: no run starts until it is unpaused.
    pub fn paused(mut self) -> Self {
        self.paused = true;
        self
    }

    fn spec(&self) -> ScheduleSpec {
        match (&self.cron, self.every) {
            (Some(cron), _) => ScheduleSpec::builder()
                .cron_strings(vec![cron.clone()])
                .build(),
            (None, Some(every)) => ScheduleSpec::from_interval(every),
            (None, None) => ScheduleSpec::default(),
        }
    }
}

/// A run a schedule started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRun {
    /// The run's job id, `<schedule id>-<scheduled time>`.
    pub job_id: String,
    /// The time it was due.
    pub scheduled_at: Option<SystemTime>,
    /// The time it started.
    pub started_at: Option<SystemTime>,
}

/// A schedule as Temporal describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    /// The schedule's id (the job id its runs extend).
    pub id: String,
    /// The workflow type its runs start.
    pub workflow: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Why it was paused or changed, when someone said.
    pub note: Option<String>,
    /// When the next runs are due.
    pub next_runs: Vec<SystemTime>,
    /// The latest runs it started, oldest first (Temporal keeps the last 10).
    pub recent_runs: Vec<ScheduledRun>,
    /// The job ids of its runs still running.
    pub running: Vec<String>,
    /// Runs started so far.
    pub runs_started: i64,
    /// Runs skipped because one was still running.
    pub runs_skipped: i64,
}

/// A schedule in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleEntry {
    /// The schedule's id.
    pub id: String,
    /// The workflow type its runs start.
    pub workflow: String,
    /// Whether it is paused.
    pub paused: bool,
    /// When the next run is due.
    pub next_run: Option<SystemTime>,
}

/// A schedule of jobs: describe, pause, trigger, backfill or delete it. From
/// [`JobClient::schedule`] or [`JobClient::schedule_of`].
pub struct ScheduleHandle {
    client: Client,
    id: String,
}

impl std::fmt::Debug for ScheduleHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScheduleHandle")
            .field("id", &self.id)
            .finish()
    }
}

impl ScheduleHandle {
    /// The schedule's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn inner(&self) -> temporalio_client::schedules::ScheduleHandle<Client> {
        self.client.get_schedule_handle(self.id.clone())
    }

    fn error<'a>(&'a self, what: &'a str) -> impl Fn(ScheduleError) -> JobError + 'a {
        move |e| match e {
            ScheduleError::Rpc(status)
                if status.code() == temporalio_client::tonic::Code::NotFound =>
            {
                JobError::ScheduleNotFound {
                    id: self.id.clone(),
                }
            }
            other => JobError::Temporal(format!("cannot {what} schedule `{}`: {other}", self.id)),
        }
    }

    /// What the schedule is and did: its next runs, its recent runs and the ones running.
    pub async fn describe(&self) -> Result<ScheduleState, JobError> {
        let d = self
            .inner()
            .describe(temporalio_client::RpcOptions::default())
            .await
            .map_err(self.error("describe"))?;
        let workflow = match d.action() {
            temporalio_client::schedules::ScheduleDescriptionAction::StartWorkflow(a) => {
                a.workflow_type().to_owned()
            }
            _ => String::new(),
        };
        Ok(ScheduleState {
            id: self.id.clone(),
            workflow,
            paused: d.paused(),
            note: d.note().map(str::to_owned).filter(|n| !n.is_empty()),
            next_runs: d.future_action_times(),
            recent_runs: d
                .recent_actions()
                .into_iter()
                .map(|a| ScheduledRun {
                    job_id: a.workflow_id,
                    scheduled_at: a.schedule_time,
                    started_at: a.actual_time,
                })
                .collect(),
            running: d
                .running_actions()
                .into_iter()
                .map(|a| a.workflow_id)
                .collect(),
            runs_started: d.action_count(),
            runs_skipped: d.overlap_skipped(),
        })
    }

    /// Stops starting runs (a running one goes on); `note` says why.
    pub async fn pause(&self, note: &str) -> Result<(), JobError> {
        self.inner()
            .pause(Some(note), PauseScheduleOptions::default())
            .await
            .map_err(self.error("pause"))
    }

    /// Starts runs again at their times (missed ones are not run: see
    /// [`backfill`](Self::backfill)).
    pub async fn unpause(&self, note: &str) -> Result<(), JobError> {
        self.inner()
            .unpause(Some(note), UnpauseScheduleOptions::default())
            .await
            .map_err(self.error("unpause"))
    }

    /// Starts one run now, under the schedule's overlap policy.
    pub async fn trigger(&self) -> Result<(), JobError> {
        self.inner()
            .trigger(
                ScheduleOverlapPolicy::Unspecified,
                TriggerScheduleOptions::default(),
            )
            .await
            .map_err(self.error("trigger"))
    }

    /// Starts the runs that were due between `from` and `to`, each under the id it would
    /// have had (so a window already run is the same job and writes nothing twice). Runs
    /// wait their turn ([`Overlap::BufferAll`]).
    pub async fn backfill(&self, from: SystemTime, to: SystemTime) -> Result<(), JobError> {
        let window = ScheduleBackfill::new(from, to)
            .overlap_policy(ScheduleOverlapPolicy::BufferAll)
            .build();
        self.inner()
            .backfill([window], BackfillScheduleOptions::default())
            .await
            .map_err(self.error("backfill"))
    }

    /// Deletes the schedule; runs already started go on.
    pub async fn delete(&self) -> Result<(), JobError> {
        self.inner()
            .delete(DeleteScheduleOptions::default())
            .await
            .map_err(self.error("delete"))
    }
}

impl JobClient {
    /// Creates a schedule whose id is the request's job id and that starts a batch job of
    /// pipeline `P` from `request` at each time `schedule` names. Each run's job id is
    /// `<job id>-<scheduled time>` (a run started twice for one time is one job). A schedule
    /// with that id already there is refused with [`JobError::ScheduleExists`].
    pub async fn schedule<P: Pipeline>(
        &self,
        request: <Batch as JobKind<P>>::Request,
        schedule: &Schedule,
    ) -> Result<ScheduleHandle, JobError> {
        self.schedule_kind::<P, Batch>(request, schedule).await
    }

    /// Creates a schedule whose id is the request's job id and that starts a job of kind `K`
    /// from `request` at each time `schedule` names. Each run's job id is
    /// `<job id>-<scheduled time>`. A schedule with that id already there is refused with
    /// [`JobError::ScheduleExists`]. Batch jobs only: a sharded run would find the shards of
    /// the first run done, and a stream runs on its own.
    pub(crate) async fn schedule_kind<P: Pipeline, K: JobKind<P>>(
        &self,
        request: K::Request,
        schedule: &Schedule,
    ) -> Result<ScheduleHandle, JobError> {
        K::validate(&request)?;
        if K::NAME != <Batch as JobKind<P>>::NAME {
            return Err(JobError::InvalidRequest(format!(
                "only batch jobs can be scheduled, not {} jobs",
                K::NAME
            )));
        }
        if schedule.cron.is_none() && schedule.every.is_none_or(|e| e.is_zero()) {
            return Err(JobError::InvalidRequest(
                "a schedule needs a cron expression or an interval above zero".into(),
            ));
        }
        let id = K::job_id(&request).to_owned();
        let action =
            ScheduleAction::start_workflow(Run::<P, K>::new(), request, &self.task_queue, &id);
        let options = CreateScheduleOptions::builder()
            .action(action)
            .spec(schedule.spec())
            .overlap_policy(schedule.overlap.policy())
            .paused(schedule.paused)
            .build();
        match self.client.create_schedule(id.clone(), options).await {
            Ok(_) => Ok(self.schedule_of(id)),
            Err(ScheduleError::Rpc(status))
                if status.code() == temporalio_client::tonic::Code::AlreadyExists =>
            {
                Err(JobError::ScheduleExists { id })
            }
            Err(e) => Err(JobError::Temporal(format!(
                "cannot create schedule `{id}`: {e}"
            ))),
        }
    }

    /// A handle to the schedule `id`, created earlier (by anyone).
    pub fn schedule_of(&self, id: impl Into<String>) -> ScheduleHandle {
        ScheduleHandle {
            client: self.client.clone(),
            id: id.into(),
        }
    }

    /// Every schedule in the namespace.
    pub async fn schedules(&self) -> Result<Vec<ScheduleEntry>, JobError> {
        let mut listed = self.client.list_schedules(ListSchedulesOptions::default());
        let mut entries = Vec::new();
        while let Some(item) = listed.next().await {
            let s = item.map_err(|e| JobError::Temporal(format!("cannot list schedules: {e}")))?;
            entries.push(ScheduleEntry {
                id: s.schedule_id().to_owned(),
                workflow: s.workflow_type().unwrap_or_default().to_owned(),
                paused: s.paused(),
                next_run: s.future_action_times().first().copied(),
            });
        }
        Ok(entries)
    }
}
