//! What a batch job did: its report, its failed ranges, where it stopped, its live progress
//! and one `process` activity's counts.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

use crate::connector::Offset;
use crate::error::{JobError, RecordError};
use crate::job::{InFlight, JobStatus, Outage};

/// How far a job that stopped early had got: every record before `record` was processed
/// or recorded as failed; batches after it may have been written too (a rerun finds them
/// already present).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct StoppedAt<O: Offset> {
    /// Which of the job's stretches it was in (0 but for a redrive).
    pub stretch: u32,
    /// Offset of the first record not done (`None`: the stretch's start).
    pub offset: Option<O>,
    /// Ordinal of the first record not done.
    pub record: u64,
    /// Number of the first batch not done.
    pub batch: u64,
}

impl<O: Offset> Default for StoppedAt<O> {
    fn default() -> Self {
        Self {
            stretch: 0,
            offset: None,
            record: 0,
            batch: 0,
        }
    }
}

/// Batches that failed for good (after their retries, or at once for a deterministic batch
/// error): the job went on without them. Adjacent failed batches with the same kind of error
/// are kept as one range, so a sink outage over many batches stays one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct FailedBatch<O: Offset> {
    /// Number of the first batch of the range.
    pub first_batch: u64,
    /// Batches in the range.
    pub batches: u64,
    /// Ordinal of the range's first record.
    pub first_record: u64,
    /// Records in the range, as planned.
    pub records: u64,
    /// Offset of the range's first record.
    pub start: O,
    /// Offset just past the range's last record.
    pub end: O,
    /// The failure type: `TransientError` (retries exhausted), `BatchError` (deterministic),
    /// or a timeout.
    pub kind: String,
    /// The original cause of the first failure in the range, not Temporal's wrapper.
    pub message: String,
    /// Attempts made for the first batch of the range.
    pub attempts: u32,
    /// When the first batch of the range failed, in milliseconds since the Unix epoch
    /// (workflow time).
    pub failed_at_ms: u64,
}

impl<O: Offset> fmt::Display for FailedBatch<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last_record = (self.first_record + self.records).saturating_sub(1);
        if self.batches == 1 {
            write!(f, "batch {}", self.first_batch)?;
        } else {
            let last = self.first_batch + self.batches - 1;
            write!(f, "batches {}-{last}", self.first_batch)?;
        }
        write!(
            f,
            " (records {}-{last_record}) failed after {} attempt{}: {}",
            self.first_record,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.message
        )
    }
}

/// What a job did: counts, errors with positions, offsets, time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JobReport<O: Offset> {
    /// The job id.
    pub job_id: String,
    /// The pipeline's workflow name.
    pub pipeline: String,
    /// Running, completed or failed.
    pub status: JobStatus,
    /// Records read from the source, good or bad.
    pub records_read: u64,
    /// Records newly written to the sink.
    pub records_written: u64,
    /// Records the sink already had (retried or replayed batches): absorbed duplicates.
    pub already_present: u64,
    /// Records an upserting sink did not write because it holds a newer version of them.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub superseded: u64,
    /// Record errors kept whole in the job's [quarantine](crate::quarantine) (every record
    /// error, when the job has one).
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub quarantined: u64,
    /// Where the job keeps its failed records, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crate::quarantine::Quarantine>,
    /// Records the transform filtered out (returned `None` for): not errors, not written.
    #[serde(default)]
    pub records_filtered: u64,
    /// Records that could not be read, transformed or written.
    pub record_errors: u64,
    /// The earliest record errors by position (at most `max_error_samples`).
    pub error_samples: Vec<RecordError>,
    /// Batches processed (their records read and written).
    pub batches: u64,
    /// Batches that failed for good; the job went on without them.
    #[serde(default)]
    pub failed_batches: u64,
    /// The failed batches, as ranges (adjacent failures with the same kind merged), in order.
    #[serde(default = "Vec::new")]
    pub failed: Vec<FailedBatch<O>>,
    /// For a redrive: the workflow id of the job whose failed batches it reruns.
    #[serde(default)]
    pub redrive_of: Option<String>,
    /// Workflow runs (1 plus the number of continue-as-new).
    pub runs: u32,
    /// Offset the job started from (`None`: the source's start).
    pub start_offset: Option<O>,
    /// Offset after the last batch done (processed or failed): a new job started here
    /// resumes where this one stopped.
    pub end_offset: Option<O>,
    /// Milliseconds from the job's start to this report (workflow time).
    pub elapsed_ms: u64,
    /// Why the job failed, when it did.
    pub failure: Option<String>,
    /// The fingerprint of the job's input (its source config and the input's version) at
    /// its first plan. Sinks derive record ids from `<job id>@<fingerprint>`, so the same
    /// job id over a new input writes new ids, and the same input resumed is recognised.
    /// `None` for jobs started before fingerprints existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fingerprint: Option<String>,
    /// For a failed job: how far it had got. `redrive` reruns its failed ranges, then the
    /// rest from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<StoppedAt<O>>,
    /// For an incremental run: the sync it is a run of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// For an incremental run: the cursor it started from (`None` on a first run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_from: Option<crate::connector::Cursor>,
    /// For an incremental run: the cursor the next run starts from, once this run completed
    /// with every batch written (a run with failed batches leaves the next run where it
    /// started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<crate::connector::Cursor>,
    /// For a range run: the cursor its range ended at. A range run leaves the sync's cursor
    /// where it was (its `cursor` stays empty), so live runs pass over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor_to: Option<crate::connector::Cursor>,
}

impl<O: Offset> JobReport<O> {
    /// The report of a job that keeps its failed records in `quarantine`.
    pub(crate) fn quarantined_in(
        mut self,
        quarantine: Option<crate::quarantine::Quarantine>,
    ) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// An empty report for a new job.
    pub fn new(job_id: impl Into<String>, pipeline: impl Into<String>, start: Option<O>) -> Self {
        Self {
            job_id: job_id.into(),
            pipeline: pipeline.into(),
            status: JobStatus::Running,
            records_read: 0,
            records_written: 0,
            already_present: 0,
            superseded: 0,
            quarantined: 0,
            quarantine: None,
            records_filtered: 0,
            record_errors: 0,
            error_samples: Vec::new(),
            batches: 0,
            failed_batches: 0,
            failed: Vec::new(),
            redrive_of: None,
            runs: 0,
            start_offset: start.clone(),
            end_offset: start,
            elapsed_ms: 0,
            failure: None,
            input_fingerprint: None,
            stopped_at: None,
            sync: None,
            cursor_from: None,
            cursor: None,
            cursor_to: None,
        }
    }

    /// Elapsed time as a [`Duration`].
    pub fn elapsed(&self) -> Duration {
        Duration::from_millis(self.elapsed_ms)
    }

    /// True when the job completed with every batch processed.
    pub fn is_complete(&self) -> bool {
        self.status == JobStatus::Completed
    }

    /// The report when the job completed with every batch processed, and an error otherwise:
    /// [`JobError::CompletedWithFailures`] or [`JobError::Cancelled`]. Use it where anything but
    /// a clean run must stop the caller: `handle.report().await?.into_result()?`.
    pub fn into_result(self) -> Result<Self, JobError> {
        match self.status {
            JobStatus::Completed => Ok(self),
            JobStatus::CompletedWithFailures => Err(JobError::CompletedWithFailures {
                job_id: self.job_id.clone(),
                failed_batches: self.failed_batches,
                first: self
                    .failed
                    .first()
                    .map(|f| f.to_string())
                    .unwrap_or_default(),
            }),
            JobStatus::Cancelled => Err(JobError::Cancelled {
                job_id: self.job_id.clone(),
            }),
            JobStatus::Failed | JobStatus::Running => Err(JobError::Failed {
                job_id: self.job_id.clone(),
                message: self
                    .failure
                    .clone()
                    .unwrap_or_else(|| format!("the job is {}", self.status)),
                kind: crate::failure::ACTIVITY_FAILED_TYPE.to_owned(),
                report: serde_json::to_value(&self).ok().map(Box::new),
            }),
        }
    }

    /// Records per second over the elapsed time.
    pub fn records_per_second(&self) -> f64 {
        let secs = self.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.records_read as f64 / secs
        } else {
            0.0
        }
    }
}

/// A live view of a running job, answered by the `progress` query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Progress<O: Offset> {
    /// The report so far.
    pub report: JobReport<O>,
    /// Batches being processed now.
    pub in_flight: u32,
    /// The current in-flight limit.
    pub max_in_flight: u32,
    /// Whether the job is paused.
    pub paused: bool,
    /// The `process` activities running now, oldest first.
    #[serde(default = "Vec::new")]
    pub running: Vec<InFlight>,
    /// Age past which a running activity is flagged as stuck, in milliseconds.
    #[serde(default)]
    pub stuck_after_ms: u64,
    /// The rate limit in records per second, if any.
    #[serde(default)]
    pub max_records_per_s: Option<u32>,
    /// Records in the batches planned so far.
    #[serde(default)]
    pub records_planned: u64,
    /// Whether the whole input is planned: `records_planned` is then the job's total.
    #[serde(default)]
    pub planning_done: bool,
    /// Set while the job holds through an outage: no batch is dispatched but a probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outage: Option<Outage>,
}

impl<O: Offset> Progress<O> {
    /// The running activities flagged as stuck (older than the job's `stuck_after`).
    pub fn stuck(&self) -> impl Iterator<Item = &InFlight> {
        self.running.iter().filter(|r| r.stuck)
    }
}

/// The counts one `process` activity reports for its batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// Records read (good or bad).
    pub records_read: u64,
    /// Records newly written.
    pub records_written: u64,
    /// Records already present in the sink.
    pub already_present: u64,
    /// Records an upserting sink holds a newer version of.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub superseded: u64,
    /// Failed records written to the job's quarantine.
    #[serde(default, skip_serializing_if = "crate::connector::is_zero")]
    pub quarantined: u64,
    /// Records the transform filtered out.
    #[serde(default)]
    pub records_filtered: u64,
    /// Records that failed.
    pub record_errors: u64,
    /// The first record errors, with positions.
    pub error_samples: Vec<RecordError>,
    /// Set when the activity stopped early because the job was cancelled: the number of its
    /// batches that were processed (the counts cover exactly those).
    #[serde(default)]
    pub cancelled_after: Option<u32>,
    /// How long reading, transforming and writing the batches took, in milliseconds, as the
    /// activity measured it. The workflow sizes the next groups of batches by it: it is in
    /// history, so a replay sizes them the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_ms: Option<u64>,
}
