//! A streaming job's request, its report and its progress.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use crate::connector::{Offset, SinkConfig, SourceConfig};
use crate::error::{JobError, RecordError};
use crate::failure::RetrySettings;
use crate::job::JobStatus;

/// A streaming job: read an unbounded source through the queue executor into a sink, until
/// cancelled or until an end condition.
///
/// ```
/// use std::time::Duration;
/// use batch_orchestra::stream::StreamRequest;
/// use batch_orchestra::testing::{CountingSink, TickStream};
///
/// let request = StreamRequest::new("ticks-1", TickStream::new(1_000), CountingSink::new("ticks"))
///     .batch_size(500)
///     .linger(Duration::from_millis(50))
///     .max_records(1_000)
///     .idle_timeout(Duration::from_secs(30));
/// assert!(request.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StreamRequest<S: SourceConfig, K: SinkConfig> {
    /// The job id: the workflow id, and the prefix of the ids sinks derive.
    pub job_id: String,
    /// Where records come from.
    pub source: S,
    /// Where they go.
    pub sink: K,
    /// Records per write, at most (1,000).
    pub batch_size: u64,
    /// How long a write waits for its batch to fill before it writes what it has (100 ms).
    pub linger: Duration,
    /// Records read ahead of the sink, at most, per executor (10,000): a slow sink stops the
    /// reader here.
    pub buffer: u64,
    /// Length of one slice: how often an executor returns its checkpoint and counts to the
    /// workflow (5 s). Pause takes effect at the end of the running slice.
    pub checkpoint_interval: Duration,
    /// Executors reading at once (1): slices of the same source running side by side, as
    /// consumers of one durable JetStream consumer do.
    pub executors: u32,
    /// End the job once this many records were received.
    pub max_records: Option<u64>,
    /// End the job this long after it started.
    pub max_duration: Option<Duration>,
    /// End the job when the stream had nothing new for this long.
    pub idle_timeout: Option<Duration>,
    /// Fail the job past this many record errors; no limit by default.
    pub max_record_errors: Option<u64>,
    /// Record errors kept in the report with their positions (20).
    pub max_error_samples: u32,
    /// How long an executor keeps retrying a failing read or write before its slice fails
    /// and Temporal retries it (5 min). Meanwhile the buffer stays full: nothing more is read.
    pub retry_for: Duration,
    /// Longest time one read or write call may take (60 s).
    pub call_timeout: Duration,
    /// A dead worker's slice moves on within this time (5 s).
    pub heartbeat_timeout: Duration,
    /// Retries of a failed slice (unlimited by default, 1 s doubling to 30 s): a stream job
    /// outlives outages. Configuration errors are never retried.
    pub retry: RetrySettings,
    /// Slices per workflow run before it continues as new (500).
    pub max_slices_per_run: u32,
    /// State carried across continue-as-new; `None` for a new job.
    pub state: Option<StreamCarried<S::Offset>>,
}

impl<S: SourceConfig, K: SinkConfig> StreamRequest<S, K> {
    /// A request with default settings: it runs until cancelled.
    pub fn new(job_id: impl Into<String>, source: S, sink: K) -> Self {
        Self {
            job_id: job_id.into(),
            source,
            sink,
            batch_size: 1_000,
            linger: Duration::from_millis(100),
            buffer: 10_000,
            checkpoint_interval: Duration::from_secs(5),
            executors: 1,
            max_records: None,
            max_duration: None,
            idle_timeout: None,
            max_record_errors: None,
            max_error_samples: 20,
            retry_for: Duration::from_secs(300),
            call_timeout: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(5),
            retry: RetrySettings {
                maximum_attempts: 0,
                ..RetrySettings::default()
            },
            max_slices_per_run: 500,
            state: None,
        }
    }

    /// Records per write, at most.
    pub fn batch_size(mut self, n: u64) -> Self {
        self.batch_size = n;
        self
    }

    /// How long a write waits for its batch to fill.
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d;
        self
    }

    /// Records read ahead of the sink, at most, per executor.
    pub fn buffer(mut self, records: u64) -> Self {
        self.buffer = records;
        self
    }

    /// How often an executor reports its checkpoint to the workflow.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d;
        self
    }

    /// Executors reading at once.
    pub fn executors(mut self, n: u32) -> Self {
        self.executors = n;
        self
    }

    /// Ends the job after `n` records.
    pub fn max_records(mut self, n: u64) -> Self {
        self.max_records = Some(n);
        self
    }

    /// Ends the job `d` after it started.
    pub fn max_duration(mut self, d: Duration) -> Self {
        self.max_duration = Some(d);
        self
    }

    /// Ends the job when the stream had nothing new for `d`.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }

    /// Fails the job past `n` record errors.
    pub fn max_record_errors(mut self, n: u64) -> Self {
        self.max_record_errors = Some(n);
        self
    }

    /// Record errors kept in the report.
    pub fn max_error_samples(mut self, n: u32) -> Self {
        self.max_error_samples = n;
        self
    }

    /// How long an executor retries a failing read or write before its slice fails.
    pub fn retry_for(mut self, d: Duration) -> Self {
        self.retry_for = d;
        self
    }

    /// Longest time one read or write call may take.
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// How soon a dead worker's slice moves on.
    pub fn heartbeat_timeout(mut self, d: Duration) -> Self {
        self.heartbeat_timeout = d;
        self
    }

    /// Retries of a failed slice.
    pub fn retry(mut self, settings: RetrySettings) -> Self {
        self.retry = settings;
        self
    }

    /// Slices per workflow run before it continues as new.
    pub fn max_slices_per_run(mut self, n: u32) -> Self {
        self.max_slices_per_run = n;
        self
    }

    /// Checks the request: every error names the setting at fault.
    pub fn validate(&self) -> Result<(), JobError> {
        let bad = |what: &str| {
            Err(JobError::InvalidRequest(format!(
                "stream job `{}`: {what}",
                self.job_id
            )))
        };
        if self.job_id.trim().is_empty() {
            return Err(JobError::InvalidRequest("job_id is empty".into()));
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if self.buffer < self.batch_size {
            return bad("buffer must hold at least one batch (buffer >= batch_size)");
        }
        if self.executors == 0 || self.executors > 1_000 {
            return bad("executors must be 1 to 1,000");
        }
        if self.checkpoint_interval < Duration::from_millis(100) {
            return bad("checkpoint_interval must be at least 100 ms");
        }
        if self.heartbeat_timeout < Duration::from_secs(1) {
            return bad("heartbeat_timeout must be at least 1 s");
        }
        if self.max_slices_per_run == 0 {
            return bad("max_slices_per_run must be at least 1");
        }
        if self.max_records == Some(0) {
            return bad("max_records must be at least 1");
        }
        Ok(())
    }
}

/// What a streaming job carries into its next workflow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StreamCarried<O: Offset> {
    /// The report so far.
    pub report: StreamReport<O>,
    /// Paused when the run continued as new.
    pub paused: bool,
}

/// Why a streaming job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// It received `max_records` records.
    MaxRecords,
    /// It ran for `max_duration`.
    MaxDuration,
    /// The stream had nothing new for `idle_timeout`.
    Idle,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::MaxRecords => "it received max_records records",
            EndReason::MaxDuration => "it ran for max_duration",
            EndReason::Idle => "the stream was idle for idle_timeout",
        })
    }
}

/// What a streaming job did: counts, checkpoints and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StreamReport<O: Offset> {
    /// The job id.
    pub job_id: String,
    /// The pipeline's workflow name.
    pub workflow: String,
    /// Running, or how it ended.
    pub status: JobStatus,
    /// Records received from the stream, good and bad. A record delivered again after a crash
    /// counts again.
    pub records_received: u64,
    /// Records newly written. A slice whose worker was killed loses the counts of what it
    /// did after its last heartbeat reached the server (at most 80 % of `heartbeat_timeout`
    /// of work): those records are in the sink, acknowledged, and not counted here.
    pub records_written: u64,
    /// Records the sink already had (delivered again, not written twice).
    pub already_present: u64,
    /// Records an upserting sink held a newer version of.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub superseded: u64,
    /// Records the transform filtered out.
    pub records_filtered: u64,
    /// Records that could not be decoded, transformed or written; acknowledged, not retried.
    pub record_errors: u64,
    /// The first record errors, with their positions (stream sequences).
    pub error_samples: Vec<RecordError>,
    /// Each executor's checkpoint: the offset of the last record it wrote.
    pub checkpoints: Vec<Option<O>>,
    /// Slices run.
    pub slices: u64,
    /// Workflow runs (1 + continue-as-new count).
    pub runs: u32,
    /// When the job started, in ms since the Unix epoch (workflow time).
    pub started_at_ms: u64,
    /// Time since the job started, in ms.
    pub elapsed_ms: u64,
    /// Why the job ended, when an end condition ended it.
    pub ended: Option<EndReason>,
    /// The cause, for a failed job.
    pub failure: Option<String>,
}

impl<O: Offset> StreamReport<O> {
    pub(crate) fn new(job_id: &str, workflow: &str, executors: u32) -> Self {
        Self {
            job_id: job_id.to_owned(),
            workflow: workflow.to_owned(),
            status: JobStatus::Running,
            records_received: 0,
            records_written: 0,
            already_present: 0,
            superseded: 0,
            records_filtered: 0,
            record_errors: 0,
            error_samples: Vec::new(),
            checkpoints: vec![None; executors as usize],
            slices: 0,
            runs: 0,
            started_at_ms: 0,
            elapsed_ms: 0,
            ended: None,
            failure: None,
        }
    }
}

/// A running streaming job, as the `progress` query answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StreamProgress<O: Offset> {
    /// The report so far.
    pub report: StreamReport<O>,
    /// Paused: no new slice starts.
    pub paused: bool,
    /// Slices running now.
    pub running: u32,
    /// Records received per second over the last finished slices.
    pub records_per_s: f64,
    /// Records in the stream not yet received, where the source can tell, as of the last
    /// finished slice.
    pub lag: Option<u64>,
}
