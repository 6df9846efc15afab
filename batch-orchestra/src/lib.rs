//! Batch Orchestra: batch data pipelines from any source to any sink, orchestrated by Temporal.
//!
//! Read in chunks, process reliably, write with retries, resume after any crash. A pipeline is
//! a source, an optional transform and a sink; the framework runs it as one Temporal workflow
//! whose history holds offsets and counts, never records.
//!
//! The pieces, one module each:
//! - [`connector`]: the `SourceConfig`/`Source` and `SinkConfig`/`Sink` traits;
//! - [`pipeline`]: the `Pipeline` trait and its fixed names;
//! - [`model`]: the job request, report and progress;
//! - [`workflow`] and [`activities`]: the generic workflow and its `plan`, `process` and
//!   `snapshot` activities;
//! - [`worker`] and [`client`]: running workers, and starting and watching jobs;
//! - [`snapshot`]: saving job reports;
//! - `testing` (feature `testing`): real dev servers on loopback for tests.

#![warn(missing_docs)]

pub mod activities;
mod cache;
pub mod client;
pub mod connector;
pub mod error;
pub mod model;
pub mod pipeline;
pub mod snapshot;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;
pub mod workflow;

pub use client::{JobClient, JobHandle, connect, connect_from_env};
pub use connector::{
    BatchRange, Offset, Plan, PlannedBatch, Position, Positioned, ReadBatch, Sink, SinkConfig,
    Source, SourceConfig, WriteContext, WriteOutcome,
};
pub use error::{ConnectorError, ErrorKind, JobError, RecordError, TransformError};
pub use model::{
    BatchProcessingRequest, BatchReport, CarriedState, JobReport, JobStatus, Progress,
    RetrySettings, Throttle,
};
pub use pipeline::{OffsetOf, Pipeline, PipelineNames, ReportOf, RequestOf};
pub use snapshot::{SnapshotTarget, Snapshotter};
pub use worker::{Worker, WorkerBuilder, WorkerError};
pub use workflow::PipelineWorkflow;

/// Re-exports used by generated code; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use temporalio_client;
    pub use temporalio_common;
    pub use temporalio_sdk;
}
