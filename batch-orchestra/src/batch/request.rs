//! The batch job request: which data, how to batch it, how to retry, when to stop; its
//! redrive and the state it carries across continue-as-new.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

use super::report::{FailedBatch, JobReport, StoppedAt};
use crate::connector::{Offset, SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::failure::RetrySettings;
use crate::quarantine::Quarantine;
use crate::snapshot::SnapshotTarget;

/// Everything a job needs: which data, how to batch it, how to retry, when to stop.
///
/// The workflow carries this request across continue-as-new with `state` filled in, so a
/// long job keeps a small history and resumes exactly where it was.
///
/// ```
/// # use batch_orchestra::testing::{CountingSink, RangeSource};
/// use batch_orchestra::batch::BatchProcessingRequest;
///
/// let request = BatchProcessingRequest::new("job-1", RangeSource::new(10_000), CountingSink::new("job-1"))
///     .batch_size(500)
///     .max_in_flight(8)
///     .max_record_errors(100);
/// assert!(request.validate().is_ok());
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BatchProcessingRequest<S: SourceConfig, K: SinkConfig> {
    /// Unique id of the job; the workflow id is derived from it.
    pub job_id: String,
    /// The source's configuration.
    pub source: S,
    /// The sink's configuration.
    pub sink: K,
    /// Records per batch, at most.
    pub batch_size: u64,
    /// Batches processed concurrently, at most (changeable by signal while running).
    pub max_in_flight: u32,
    /// Batches per workflow run before continue-as-new (it also happens earlier when the
    /// server suggests it).
    pub max_batches_per_run: u32,
    /// Batch boundaries returned per plan call: one server round trip yields this many batches.
    pub plan_ahead: u32,
    /// Consecutive batches one `process` activity handles: more amortizes the per-activity
    /// cost of orchestration; a retry then redoes the whole group (harmlessly: writes are
    /// idempotent).
    #[serde(default = "one")]
    pub batches_per_activity: u32,
    /// How far groups may grow while their work is quick: `None` (the default) lets them
    /// grow to 16 times `batches_per_activity` (64 batches at most); `Some(n)` caps them at
    /// `n` (`Some(batches_per_activity)` keeps the size fixed, for fine-grained progress and
    /// retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batches_per_activity: Option<u32>,
    /// Offset to start from; the source's start when `None`.
    pub start_at: Option<S::Offset>,
    /// Fail the job once more than this many record errors were seen; `None` for no limit.
    pub max_record_errors: Option<u64>,
    /// How many record errors to keep, with positions, in the report (all are counted).
    pub max_error_samples: u32,
    /// Pause for a while every so many records.
    pub throttle: Option<Throttle>,
    /// Records per second at most, over the job (changeable by signal while running); `None`
    /// for no limit. Batches are started no faster than this allows.
    #[serde(default)]
    pub max_records_per_s: Option<u32>,
    /// Retry settings by activity name (`<workflow>.process`) or kind (`process`).
    pub retry_policies: BTreeMap<String, RetrySettings>,
    /// How long one attempt of an activity may take.
    pub activity_timeout: Duration,
    /// Where to save the job report on completion, at continue-as-new, on failure and on
    /// cancellation.
    pub snapshot: Option<SnapshotTarget>,
    /// Fail the job once more than this many batches failed for good (after their retries);
    /// up to this many, failed batches are recorded and the job goes on. Default 10.
    #[serde(default = "default_max_failed_batches")]
    pub max_failed_batches: u64,
    /// Longest time one read, write or plan call may take before it is abandoned and the
    /// activity retried (a hung call). Default 30 s.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: Duration,
    /// How long the server waits without a heartbeat before it retries an activity elsewhere
    /// (a dead worker). Activities heartbeat four times per period. Default 5 s: a killed
    /// worker's batches run again elsewhere within about 7 s.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: Duration,
    /// In-flight batches older than this are flagged as stuck in [`Progress`](super::Progress). Default 60 s.
    #[serde(default = "default_stuck_after")]
    pub stuck_after: Duration,
    /// How long the job holds through an outage before it fails. A group of batches that
    /// fails for good while no other batch succeeded (the sink or source unreachable, not
    /// one bad batch) does not count as failed batches: the job stops dispatching, probes
    /// with one batch every few seconds, and goes on when a probe succeeds; past this budget
    /// it fails, resumable from its report's `end_offset`. Default 10 minutes; zero turns
    /// holding off (every failed group is isolated and counted, as a poison batch).
    #[serde(default = "default_outage_budget")]
    pub outage_budget: Duration,
    /// Where records that fail are kept whole (see [`quarantine`](crate::quarantine)); `None`
    /// (the default) counts and samples them only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Quarantine>,
    /// Set for an incremental run: read only what changed since the last completed run of
    /// its sync (see [`incremental`](Self::incremental)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<Incremental>,
    /// Set on a redrive: rerun only these failed ranges of an earlier job.
    #[serde(default)]
    pub redrive: Option<Redrive<S::Offset>>,
    /// True once the job has finished.
    pub done: bool,
    /// State carried across continue-as-new; `None` for a new job.
    pub state: Option<CarriedState<S::Offset>>,
}

impl<S: SourceConfig, K: SinkConfig> BatchProcessingRequest<S, K> {
    /// A request with default settings: batches of 1,000, 4 batches per activity, 8
    /// activities in flight, 1,000 batches per run.
    pub fn new(job_id: impl Into<String>, source: S, sink: K) -> Self {
        Self {
            job_id: job_id.into(),
            source,
            sink,
            batch_size: 1_000,
            max_in_flight: 8,
            max_batches_per_run: 1_000,
            plan_ahead: 64,
            batches_per_activity: 4,
            max_batches_per_activity: None,
            start_at: None,
            max_record_errors: None,
            max_error_samples: 20,
            throttle: None,
            max_records_per_s: None,
            retry_policies: BTreeMap::new(),
            activity_timeout: Duration::from_secs(300),
            snapshot: None,
            max_failed_batches: default_max_failed_batches(),
            call_timeout: default_call_timeout(),
            heartbeat_timeout: default_heartbeat_timeout(),
            stuck_after: default_stuck_after(),
            outage_budget: default_outage_budget(),
            quarantine: None,
            incremental: None,
            redrive: None,
            done: false,
            state: None,
        }
    }

    /// The same job settings over another source (a shard of a sharded job): no start
    /// offset, redrive or carried state, which belong to one source.
    pub(crate) fn retarget<S2: SourceConfig>(&self, source: S2) -> BatchProcessingRequest<S2, K> {
        BatchProcessingRequest {
            job_id: self.job_id.clone(),
            source,
            sink: self.sink.clone(),
            batch_size: self.batch_size,
            max_in_flight: self.max_in_flight,
            max_batches_per_run: self.max_batches_per_run,
            plan_ahead: self.plan_ahead,
            batches_per_activity: self.batches_per_activity,
            max_batches_per_activity: self.max_batches_per_activity,
            start_at: None,
            max_record_errors: self.max_record_errors,
            max_error_samples: self.max_error_samples,
            throttle: self.throttle.clone(),
            max_records_per_s: self.max_records_per_s,
            retry_policies: self.retry_policies.clone(),
            activity_timeout: self.activity_timeout,
            snapshot: self.snapshot.clone(),
            max_failed_batches: self.max_failed_batches,
            call_timeout: self.call_timeout,
            heartbeat_timeout: self.heartbeat_timeout,
            stuck_after: self.stuck_after,
            outage_budget: self.outage_budget,
            quarantine: self.quarantine.clone(),
            incremental: None,
            redrive: None,
            done: false,
            state: None,
        }
    }

    /// The workflow id of this job: the job id, or `<job id>-redrive-<n>` for a redrive.
    pub fn workflow_id(&self) -> String {
        match &self.redrive {
            Some(r) => redrive_workflow_id(&self.job_id, r.number),
            None => self.job_id.clone(),
        }
    }

    /// Makes this an incremental run of the sync `sync`: before reading, the job finds the
    /// cursor the last completed run of the sync left (its runs are this pipeline's jobs whose
    /// ids are `<sync>` or start with `<sync>-`; a schedule names its runs so) and reads only
    /// what changed
    /// since, as the source pins it ([`SourceConfig::begin_window`]). The first run reads
    /// everything. The run's report carries the cursor it started from and the one the next
    /// run starts from. Run ids must start with `<sync>-`, like `orders-2026-12-07T10:00:00Z`.
    ///
    /// ```
    /// use batch_orchestra::batch::BatchProcessingRequest;
    /// use batch_orchestra::connectors::postgres::{PostgresSink, PostgresSource};
    ///
    /// let source = PostgresSource::table("orders", "id").incremental("updated_at");
    /// let sink = PostgresSink::new("orders_copy").key_columns(["id"]).upsert("updated_at");
    /// let run = BatchProcessingRequest::new("orders-run-1", source, sink).incremental("orders");
    /// assert_eq!(run.incremental.unwrap().sync, "orders");
    /// ```
    pub fn incremental(mut self, sync: impl Into<String>) -> Self {
        self.incremental = Some(Incremental {
            sync: sync.into(),
            from: None,
            to: None,
        });
        self
    }

    /// Starts this incremental run from `cursor` instead of the last run's (a rerun of a
    /// window, or a first run's starting point). For PostgreSQL, `{"value": "<column value>"}`
    /// reads the rows whose cursor column is above it. Call after
    /// [`incremental`](Self::incremental).
    pub fn incremental_from(mut self, cursor: crate::connector::Cursor) -> Self {
        if let Some(run) = &mut self.incremental {
            run.from = Some(cursor);
        }
        self
    }

    /// Makes this incremental run a range run: it reads from its
    /// [`incremental_from`](Self::incremental_from) cursor (the start when there is none) to
    /// `cursor`, once, and does not move the sync's cursor (the next live run starts where
    /// the last live run ended). A backfill of a past range. Call after
    /// [`incremental`](Self::incremental).
    ///
    /// ```
    /// use batch_orchestra::batch::BatchProcessingRequest;
    /// use batch_orchestra::connectors::csv::{CsvFile, CsvRow};
    /// use batch_orchestra::connectors::noop::NoopSink;
    /// use serde_json::json;
    ///
    /// let sink = NoopSink::<CsvRow>::default();
    /// let run = BatchProcessingRequest::new("events-backfill-1", CsvFile::new("events.csv"), sink)
    ///     .incremental("events")
    ///     .incremental_from(json!({"byte": 0, "line": 1}))
    ///     .incremental_to(json!({"byte": 5000, "line": 81}));
    /// assert!(run.incremental.unwrap().to.is_some());
    /// ```
    pub fn incremental_to(mut self, cursor: crate::connector::Cursor) -> Self {
        if let Some(run) = &mut self.incremental {
            run.to = Some(cursor);
        }
        self
    }

    /// Starts batches no faster than `n` records per second on average (0 for no limit).
    /// Change it while the job runs with
    /// [`JobHandle::set_rate`](crate::JobHandle::set_rate).
    pub fn max_records_per_s(mut self, n: u32) -> Self {
        self.max_records_per_s = (n > 0).then_some(n);
        self
    }

    /// Records up to `n` failed batches and goes on; fails the job past that. 0 fails the job
    /// at the first failed batch, as a job without dead letters would.
    pub fn max_failed_batches(mut self, n: u64) -> Self {
        self.max_failed_batches = n;
        self
    }

    /// Abandons a read, write or plan call that takes longer than `timeout`, and retries.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets how long the server waits without a heartbeat before it moves an activity to
    /// another worker.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Holds through an outage of the sink or source for up to `budget` before failing
    /// (default 10 minutes; zero counts every failed group as failed batches).
    pub fn outage_budget(mut self, budget: Duration) -> Self {
        self.outage_budget = budget;
        self
    }

    /// Flags in-flight batches older than `age` as stuck in [`Progress`](super::Progress).
    pub fn stuck_after(mut self, age: Duration) -> Self {
        self.stuck_after = age;
        self
    }

    /// Sets the records per batch.
    pub fn batch_size(mut self, n: u64) -> Self {
        self.batch_size = n;
        self
    }

    /// Sets how many batches are processed concurrently.
    pub fn max_in_flight(mut self, n: u32) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets how many batches a workflow run processes before continue-as-new.
    pub fn max_batches_per_run(mut self, n: u32) -> Self {
        self.max_batches_per_run = n;
        self
    }

    /// Sets how many batch boundaries one plan call returns.
    pub fn plan_ahead(mut self, n: u32) -> Self {
        self.plan_ahead = n;
        self
    }

    /// Sets how many consecutive batches one `process` activity handles.
    pub fn batches_per_activity(mut self, n: u32) -> Self {
        self.batches_per_activity = n;
        self
    }

    /// Caps how many batches one `process` activity may carry when groups grow (they grow
    /// while their work is quick); `n` equal to `batches_per_activity` keeps the size fixed.
    pub fn max_batches_per_activity(mut self, n: u32) -> Self {
        self.max_batches_per_activity = Some(n);
        self
    }

    /// Starts from `offset` instead of the source's start.
    pub fn start_at(mut self, offset: S::Offset) -> Self {
        self.start_at = Some(offset);
        self
    }

    /// Fails the job once more than `n` record errors were seen.
    pub fn max_record_errors(mut self, n: u64) -> Self {
        self.max_record_errors = Some(n);
        self
    }

    /// Pauses for `pause` after every `every_records` records.
    pub fn throttle(mut self, every_records: u64, pause: Duration) -> Self {
        self.throttle = Some(Throttle {
            every_records,
            pause,
        });
        self
    }

    /// Sets the retry settings of one activity, by name (`<workflow>.process`) or kind
    /// (`plan`, `process`, `snapshot`).
    pub fn retry(mut self, activity: impl Into<String>, settings: RetrySettings) -> Self {
        self.retry_policies.insert(activity.into(), settings);
        self
    }

    /// Sets how long one activity attempt may take.
    pub fn activity_timeout(mut self, timeout: Duration) -> Self {
        self.activity_timeout = timeout;
        self
    }

    /// Saves the job report to `target` on completion, at continue-as-new, on failure and on
    /// cancellation.
    pub fn snapshot(mut self, target: SnapshotTarget) -> Self {
        self.snapshot = Some(target);
        self
    }

    /// Keeps every record that fails (its bytes, position, stage and reason) in
    /// `quarantine`, where it can be listed (`batch-orchestra errors <job>`) and repaired.
    pub fn quarantine(mut self, quarantine: Quarantine) -> Self {
        self.quarantine = Some(quarantine);
        self
    }

    /// Checks the request before it is sent, naming the field at fault.
    pub fn validate(&self) -> Result<(), JobError> {
        let bad = |msg: String| Err(JobError::InvalidRequest(msg));
        if self.job_id.trim().is_empty() {
            return bad("job_id is empty".into());
        }
        if let Some(run) = &self.incremental {
            if run.sync.trim().is_empty() {
                return bad(format!(
                    "job `{}`: the incremental sync name is empty",
                    self.job_id
                ));
            }
            if run.sync.contains(['\'', '"', '\\']) {
                return bad(format!(
                    "job `{}`: the incremental sync name `{}` holds a quote or a backslash",
                    self.job_id, run.sync
                ));
            }
            let of_sync =
                self.job_id == run.sync || self.job_id.starts_with(&format!("{}-", run.sync));
            if !of_sync {
                return bad(format!(
                    "job `{}`: an incremental run's id must start with `{}-` (its sync's name), so the next run finds it",
                    self.job_id, run.sync
                ));
            }
        }
        if self.batch_size == 0 {
            return bad(format!(
                "job `{}`: batch_size must be at least 1",
                self.job_id
            ));
        }
        if self.max_in_flight == 0 {
            return bad(format!(
                "job `{}`: max_in_flight must be at least 1",
                self.job_id
            ));
        }
        if self.max_batches_per_run == 0 {
            return bad(format!(
                "job `{}`: max_batches_per_run must be at least 1",
                self.job_id
            ));
        }
        if self.batches_per_activity == 0 {
            return bad(format!(
                "job `{}`: batches_per_activity must be at least 1",
                self.job_id
            ));
        }
        if self.plan_ahead == 0 {
            return bad(format!(
                "job `{}`: plan_ahead must be at least 1",
                self.job_id
            ));
        }
        if self.activity_timeout.is_zero() {
            return bad(format!(
                "job `{}`: activity_timeout must be more than zero",
                self.job_id
            ));
        }
        if self.call_timeout.is_zero() || self.heartbeat_timeout.is_zero() {
            return bad(format!(
                "job `{}`: call_timeout and heartbeat_timeout must be longer than zero",
                self.job_id
            ));
        }
        if self.throttle.as_ref().is_some_and(|t| t.every_records == 0) {
            return bad(format!(
                "job `{}`: throttle.every_records must be at least 1",
                self.job_id
            ));
        }
        Ok(())
    }
}

fn one() -> u32 {
    1
}

fn default_max_failed_batches() -> u64 {
    10
}

fn default_call_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_heartbeat_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_stuck_after() -> Duration {
    Duration::from_secs(60)
}

fn default_outage_budget() -> Duration {
    Duration::from_secs(600)
}

/// The workflow id of redrive number `number` of job `job_id`.
pub fn redrive_workflow_id(job_id: &str, number: u32) -> String {
    format!("{job_id}-redrive-{number}")
}

/// What a redrive reruns: the failed ranges of an earlier job, with that job's configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Redrive<O: Offset> {
    /// The redrive's number: 1 for the first redrive of a job, 2 for a redrive of that, ...
    pub number: u32,
    /// The ranges to rerun, in order.
    pub ranges: Vec<FailedBatch<O>>,
    /// The earlier job's input fingerprint, so the rerun writes the ids it would have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fingerprint: Option<String>,
    /// After the failed ranges: the stretches a failed job had not reached, run in order
    /// (the last one usually to the end of the source).
    #[serde(default = "Vec::new", skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Stretch<O>>,
}

/// A stretch of a job's source: from `start` to `end`, its records numbered from
/// `first_record` and its batches from `first_batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Stretch<O: Offset> {
    /// Offset of the first record (`None`: the source's start).
    pub start: Option<O>,
    /// Offset just past the last record (`None`: the end of the source).
    pub end: Option<O>,
    /// Records it holds, when known.
    pub records: Option<u64>,
    /// Ordinal of its first record.
    pub first_record: u64,
    /// Number of its first batch.
    pub first_batch: u64,
}

impl<O: Offset> Stretch<O> {
    /// The stretches a job covers, in order: the source from `start_at`, or, for a
    /// redrive, its failed ranges and then what its job had not reached.
    pub(crate) fn of_job(start_at: Option<O>, redrive: Option<&Redrive<O>>) -> Vec<Self> {
        match redrive {
            Some(redrive) => redrive
                .ranges
                .iter()
                .map(|f| Stretch {
                    start: Some(f.start.clone()),
                    end: Some(f.end.clone()),
                    records: Some(f.records),
                    first_record: f.first_record,
                    first_batch: f.first_batch,
                })
                .chain(redrive.then.iter().cloned())
                .collect(),
            None => vec![Stretch {
                start: start_at,
                end: None,
                records: None,
                first_record: 0,
                first_batch: 0,
            }],
        }
    }

    /// What of `stretches` lies at or after `stop`: the rest of its stretch, then the
    /// stretches after it.
    pub(crate) fn after(stretches: &[Self], stop: &StoppedAt<O>) -> Vec<Self> {
        let mut rest = Vec::new();
        for (i, s) in stretches.iter().enumerate().skip(stop.stretch as usize) {
            if i > stop.stretch as usize {
                rest.push(s.clone());
                continue;
            }
            let done = stop.record.saturating_sub(s.first_record);
            let records = s.records.map(|r| r.saturating_sub(done));
            let finished = records == Some(0) || (s.end.is_some() && s.end == stop.offset);
            if !finished {
                rest.push(Stretch {
                    start: stop.offset.clone().or_else(|| s.start.clone()),
                    end: s.end.clone(),
                    records,
                    first_record: stop.record,
                    first_batch: stop.batch,
                });
            }
        }
        rest
    }
}

/// Pause for `pause` after every `every_records` records. The count is checked between
/// `process` activities, so the pause comes at the first activity boundary past each mark: keep
/// `batch_size * batches_per_activity` at or below `every_records` for an exact cadence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    /// Records between pauses.
    pub every_records: u64,
    /// Length of each pause.
    pub pause: Duration,
}

/// The state carried from one workflow run to the next at continue-as-new. Bounded: counts,
/// one cursor and a bounded sample of errors, whatever the size of the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct CarriedState<O: Offset> {
    /// The report so far; its `end_offset` is where the next run resumes.
    pub report: JobReport<O>,
    /// Ordinal of the next record.
    pub next_record: u64,
    /// Whether the job is paused (set by signal).
    pub paused: bool,
    /// The in-flight limit (changeable by signal).
    pub max_in_flight: u32,
    /// Workflow time at which the job started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Records read when the throttle last paused.
    pub throttle_mark: u64,
    /// Where the next run plans from.
    #[serde(default)]
    pub cursor: Option<O>,
    /// Number of the next batch.
    #[serde(default)]
    pub next_batch: u64,
    /// For a redrive: the range being rerun.
    #[serde(default)]
    pub segment: u32,
    /// The rate limit in records per second (changeable by signal).
    #[serde(default)]
    pub max_records_per_s: Option<u32>,
}

/// What makes a batch job an incremental run: the sync it belongs to and, for a rerun, the
/// cursor to start from. See [`BatchProcessingRequest::incremental`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incremental {
    /// The sync's name: its runs are the pipeline's jobs whose ids are `<sync>` or start with
    /// `<sync>-`.
    pub sync: String,
    /// Start from this cursor instead of the last completed run's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<crate::connector::Cursor>,
    /// For a range run: end at this cursor, and leave the sync's cursor where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<crate::connector::Cursor>,
}
