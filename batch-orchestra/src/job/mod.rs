//! What every job has, whatever its kind: the [`JobKind`] trait that a kind of run implements
//! (a batch job over one input, a sharded job over many, a streaming job), the one
//! [`JobHandle`] that starts, watches and steers a job of any kind, the signals and the
//! progress query every kind answers, and the glue that makes a kind's state a Temporal
//! workflow.
//!
//! A kind is one implementation of [`JobKind`]: its request, report and progress types, its
//! workflow name, how it checks a request and what it writes in the memo. Everything else
//! (starting, the already-running mapping, waiting for the report through a server restart,
//! signals, cancel, reading the request back from history) is written once here.

pub(crate) mod glue;
mod handle;
mod kind;
pub mod schedule;
mod signals;
mod status;
mod summary;

pub(crate) use glue::{Steer, workflow_glue, workflow_ms};
pub(crate) use handle::interaction_error;
pub use handle::{JobClient, JobHandle};
pub use kind::{Batch, JobKind, PendingActivity, Run, Sharded, Stream, Throttled};
pub(crate) use signals::{
    Control, ControlSignal, PAUSE_SIGNAL, PROGRESS_QUERY, ProgressQuery, RESUME_SIGNAL,
    SET_MAX_CONCURRENT_SHARDS_SIGNAL, SET_MAX_IN_FLIGHT_SIGNAL, SET_RATE_SIGNAL, Signal,
};
pub use status::JobStatus;
pub use summary::{FailedSummary, InFlight, Outage, ProgressSummary, ReportSummary};
