//! Where a job is: the status every kind's report carries.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How a job ended, or that it is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum JobStatus {
    /// Still running.
    #[default]
    Running,
    /// Every batch was processed (record errors, if any, are counted in the report).
    Completed,
    /// The job reached the end of its source, but some batches failed for good: see
    /// [`JobReport::failed`](crate::batch::JobReport::failed). Rerun them with [`JobHandle::redrive`](crate::JobHandle::redrive).
    CompletedWithFailures,
    /// The job failed; see [`JobReport::failure`](crate::batch::JobReport::failure).
    Failed,
    /// The job was cancelled: the counts are what was written before it stopped, and nothing
    /// more is written. Resume it with a new job started at [`JobReport::end_offset`](crate::batch::JobReport::end_offset).
    Cancelled,
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::CompletedWithFailures => "completed with failed batches",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        })
    }
}
