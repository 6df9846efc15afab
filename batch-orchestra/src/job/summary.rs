//! What every kind's report and progress tell a person, in one typed shape: each kind makes
//! it from its own report ([`JobKind::summary`](super::JobKind::summary)), so the command
//! line shows any job without knowing its kind, and a renamed field is a compile error.

use serde::{Deserialize, Serialize};

use super::status::JobStatus;
use crate::error::RecordError;

/// A job's report as a person reads it, whatever the kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportSummary {
    /// The job id.
    pub job_id: String,
    /// The pipeline's workflow name.
    pub pipeline: String,
    /// Where the job is.
    pub status: JobStatus,
    /// Records read (received, for a stream).
    pub records_read: u64,
    /// Records written.
    pub records_written: u64,
    /// Records that were already written.
    pub already_present: u64,
    /// Records an upserting sink holds a newer version of, so did not write.
    pub superseded: u64,
    /// Failed records kept whole in the job's quarantine.
    pub quarantined: u64,
    /// Where the job keeps its failed records, when it does.
    pub quarantine: Option<crate::quarantine::Quarantine>,
    /// Records a transform filtered out.
    pub records_filtered: u64,
    /// Records that could not be read, transformed or written.
    pub record_errors: u64,
    /// The first record errors, with their positions (and input, for a sharded job).
    pub error_samples: Vec<RecordError>,
    /// Batches done (slices, for a stream).
    pub batches: u64,
    /// Batches that failed for good.
    pub failed_batches: u64,
    /// What failed for good: ranges of batches, or whole shards.
    pub failed: Vec<FailedSummary>,
    /// For a redrive, the job it reruns.
    pub redrive_of: Option<String>,
    /// Time since the job started.
    pub elapsed_ms: u64,
    /// Why the job failed.
    pub failure: Option<String>,
    /// A failed job's failure type, shown beside its status.
    pub kind: Option<String>,
}

/// A failed stretch of a job: a range of batches, or a whole shard (no batches).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailedSummary {
    /// Number of the first batch.
    pub first_batch: u64,
    /// Batches in the range; 0 for a shard that failed whole.
    pub batches: u64,
    /// Records in the range.
    pub records: u64,
    /// The failure type.
    pub kind: String,
    /// The original cause.
    pub message: String,
}

/// A running job's progress as a person reads it, whatever the kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProgressSummary {
    /// The report so far.
    pub report: ReportSummary,
    /// Work running now: batches' activities, shards or slices.
    pub in_flight: u32,
    /// How much may run at once.
    pub max_in_flight: u32,
    /// Paused: nothing new starts.
    pub paused: bool,
    /// The running activities, with their age and attempt (batch jobs).
    pub running: Vec<InFlight>,
    /// The rate limit in records per second.
    pub max_records_per_s: Option<u32>,
    /// Records planned so far.
    pub records_planned: u64,
    /// Whether the whole input is planned, so `records_planned` is its size.
    pub planning_done: bool,
    /// The sink or source the job is waiting for, if any.
    pub outage: Option<Outage>,
}

/// An outage the job is holding through: every batch fails the same way, so the job waits
/// for the sink or source instead of counting failed batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outage {
    /// Workflow time the outage was seen first, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// When the job gives up, in milliseconds since the Unix epoch.
    pub until_ms: u64,
    /// The failure the last probe saw.
    pub cause: String,
    /// Batches held back, to run once a probe succeeds.
    pub held_batches: u64,
}

/// One running `process` activity, as the `progress` query lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// The activity id, as Temporal shows it.
    pub activity_id: String,
    /// Number of its first batch.
    pub first_batch: u64,
    /// Batches it carries.
    pub batches: u64,
    /// Ordinal of its first record.
    pub first_record: u64,
    /// Records it carries.
    pub records: u64,
    /// When it was scheduled, in milliseconds since the Unix epoch (workflow time).
    pub scheduled_at_ms: u64,
    /// Its age when the progress was read, in milliseconds (filled in by
    /// [`JobHandle::progress`](crate::JobHandle::progress)).
    #[serde(default)]
    pub age_ms: u64,
    /// The attempt running now, from 1 (filled in from the server's description of the job,
    /// when available).
    #[serde(default)]
    pub attempt: Option<u32>,
    /// True when it is older than the job's `stuck_after`.
    #[serde(default)]
    pub stuck: bool,
}
