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

// The macros expand to `::batch_orchestra::...`; this lets the crate use its own macros.
extern crate self as batch_orchestra;

pub mod activities;
mod cache;
pub mod client;
pub mod connector;
pub mod connectors;
pub mod error;
mod macro_support;
pub mod model;
pub mod pipeline;
pub mod snapshot;
#[cfg(feature = "object-store")]
mod store;
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
pub use worker::{PipelineList, Worker, WorkerBuilder, WorkerError};

/// Turns a config struct into a batch source.
///
/// Arguments: `name = "..."` (the connector's fixed name: lowercase letters, digits, dashes),
/// `reader = Type` (the type implementing [`Source`]) and optionally `build = method` (the
/// config's async method that makes the reader; `build_source` by default). It implements
/// [`SourceConfig`] and adds a `SOURCE_NAME` constant. See the crate docs for an example.
pub use batch_orchestra_macros::batch_source;

/// Turns a config struct into a batch sink.
///
/// Arguments: `name = "..."`, `writer = Type` (the type implementing [`Sink`]) and optionally
/// `build = method` (`build_sink` by default). It implements [`SinkConfig`] and adds a
/// `SINK_NAME` constant. See the crate docs for an example.
pub use batch_orchestra_macros::batch_sink;

/// Declares a pipeline: a unit struct implementing [`Pipeline`], its concrete workflow type
/// `<Name>Workflow`, name constants and typed helpers.
///
/// ```text
/// pipeline! {
///     pub CsvToMongo {
///         source: CsvSource,
///         transform: to_document,     // optional: fn(SourceRecord) -> Result<SinkRecord, TransformError>
///         sink: MongoSink,
///         workflow: "csv-to-mongo",   // optional: the type name in kebab-case by default
///     }
/// }
/// ```
///
/// Names are fixed: the workflow is `<workflow>` and its activities `<workflow>.plan`,
/// `<workflow>.process` and `<workflow>.snapshot`, whatever module the type lives in.
pub use batch_orchestra_macros::pipeline;

/// Lists the pipelines a worker serves, for [`WorkerBuilder::pipelines`]: two pipelines with
/// the same workflow name are a compile error.
///
/// ```ignore
/// let worker = Worker::builder(client, "jobs").pipelines(pipelines![CsvToMongo, CsvToJson])?.build()?;
/// ```
pub use batch_orchestra_macros::pipelines;
pub use workflow::PipelineWorkflow;

/// Re-exports used by generated code; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use temporalio_client;
    pub use temporalio_common;
    pub use temporalio_sdk;

    pub use crate::macro_support::*;
}
