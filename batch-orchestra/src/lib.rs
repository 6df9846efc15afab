//! Batch Orchestra: batch data pipelines from any source to any sink, orchestrated by Temporal.
//!
//! Read in chunks, process reliably, write with retries, resume after any crash. A pipeline is
//! a source, an optional transform and a sink; the framework runs it as one Temporal workflow
//! whose history holds offsets and counts, never records.
//!
//! # What a pipeline looks like
//!
//! ```rust,ignore
//! use batch_orchestra::connectors::csv::CsvFile;
//! use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
//! use batch_orchestra::{JobClient, Worker, connect_from_env, pipeline};
//!
//! pipeline! {
//!     /// CSV rows into MongoDB documents.
//!     pub CsvToMongo {
//!         source: CsvFile,
//!         transform: row_to_document,   // optional when the record types match
//!         sink: MongoSink,
//!         workflow: "csv-to-mongo",     // optional: the type name in kebab-case
//!     }
//! }
//!
//! let client = connect_from_env().await?;             // TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE
//! let mut worker = Worker::builder(client.clone(), "jobs").pipeline::<CsvToMongo>()?.build()?;
//! let jobs = JobClient::new(client, "jobs");
//! let request = CsvToMongo::request("people-2024", CsvFile::new("people.csv"), MongoSink::new("crm", "people"))
//!     .batch_size(1_000)
//!     .max_in_flight(8)
//!     .max_record_errors(100);
//! let report = worker.run_until(async { CsvToMongo::start(&jobs, request).await?.report().await }).await??;
//! println!("{} written, {} record errors, {}", report.records_written, report.record_errors, report.status);
//! ```
//!
//! A connector of your own is a config struct with [`batch_source`] or [`batch_sink`] and a
//! reader or writer implementing [`Source`] or [`Sink`]; the macros' docs below show a whole
//! one.
//!
//! A source that never ends (a NATS JetStream consumer) is declared with
//! `#[batch_source(..., streaming)]`; its jobs run through the queue executor with
//! [`JobClient::start_stream`] and a [`stream::StreamRequest`]: see [`mod@stream`].
//!
//! # Failure model
//!
//! - A bad record (ragged row, invalid UTF-8, a value that does not deserialize, a transform's
//!   rejection) is a [`RecordError`] with its position: counted, sampled in the report, and
//!   skipped. `max_record_errors` fails the job past a limit.
//! - An infrastructure error ([`ErrorKind::Transient`]: a sink down, a call past the job's
//!   `call_timeout`) is retried with back-off. A dead worker's activities move to another
//!   worker after the `heartbeat_timeout` (5 s by default).
//! - A batch that still fails after its retries, or with a deterministic
//!   [`ErrorKind::Batch`] error, is a *failed batch*: recorded with its offset range, cause and
//!   attempts in [`batch::JobReport::failed`], and the job goes on. The job ends
//!   [`JobStatus::CompletedWithFailures`], and [`JobHandle::redrive`] reruns just those ranges.
//!   Past `max_failed_batches` (10 by default) the job fails.
//! - A configuration error ([`ErrorKind::Config`]: missing file, bad URL, bad credentials)
//!   fails the job at once with the original message.
//! - [`JobHandle::cancel`] stops the job within seconds; nothing is written after its report
//!   says [`JobStatus::Cancelled`], and the counts are exact.
//!
//! # Operating jobs
//!
//! [`JobHandle`] waits for the report (riding out a Temporal restart), reads the live
//! [`batch::Progress`] (counts, running activities with their age and attempt, stuck ones flagged),
//! pauses, resumes, changes the parallelism, cancels and redrives.
//!
//! # The pieces, one module each
//!
//! - [`record`] and [`error`]: positions of records, and the errors of connectors, records,
//!   transforms and jobs;
//! - [`failure`]: what is retried, what is isolated, and how a failure carries its attempt;
//! - [`connector`]: the `SourceConfig`/`Source` and `SinkConfig`/`Sink` traits, with the
//!   capabilities of listing inputs ([`connector::listing`]) and streaming
//!   ([`connector::stream`]);
//! - [`mod@pipeline`]: the `Pipeline` trait and its fixed names;
//! - [`job`]: what every kind of job shares: the [`job::JobKind`] trait, [`JobHandle`],
//!   controls, progress and typed summaries;
//! - the kinds of job, one folder each: [`batch`] (one input, in planned batches),
//!   [`sharded`] (many inputs, one child workflow each) and [`stream`] (an unbounded source
//!   through the queue executor, acknowledged after the write);
//! - [`worker`] and [`client`]: running workers, and connecting to Temporal;
//! - [`snapshot`]: saving job reports;
//! - [`quarantine`]: the records a job could not read, transform or write, kept whole;
//! - [`ops`] and `cli` (feature `cli`): the operator's tool over every kind;
//! - `encryption` (feature `encryption`): payloads encrypted before they reach Temporal, and
//!   the codec server for its UI and CLI;
//! - [`connectors`]: CSV (`csv`), MongoDB (`mongodb`), PostgreSQL (`postgres`), Parquet
//!   (`parquet`), NATS (`nats`), object stores (`object-store`), JSON Lines and no-op;
//! - `testing` (feature `testing`): real dev servers on loopback, fakes with fault injection,
//!   and worker processes for crash tests.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

// The macros expand to `::batch_orchestra::...`; this lets the crate use its own macros.
extern crate self as batch_orchestra;

mod activity;
pub mod batch;
mod cache;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod client;
pub mod connector;
pub mod connectors;
#[cfg(feature = "encryption")]
pub mod encryption;
pub mod error;
pub mod failure;
pub mod job;
mod macro_support;
pub mod metrics;
pub mod ops;
pub mod pipeline;
pub mod quarantine;
pub mod record;
pub mod sharded;
pub mod snapshot;
#[cfg(feature = "object-store")]
mod store;
pub mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;

pub use client::{TemporalSettings, connect_from_env};
pub use connector::{Sink, SinkConfig, Source, SourceConfig};
pub use error::{ConnectorError, ErrorKind, JobError, RecordError, TransformError};
pub use job::{JobClient, JobHandle, JobStatus};
pub use ops::PipelineList;
pub use pipeline::Pipeline;
pub use record::{Position, Positioned};
pub use worker::{Worker, WorkerBuilder, WorkerError};

/// Turns a config struct into a batch source.
///
/// Arguments:
///
/// | argument | meaning |
/// |---|---|
/// | `name = "..."` | the connector's fixed name: lowercase letters, digits, dashes |
/// | `reader = Type` | the type implementing [`Source`] (for `streaming`, [`connector::StreamReader`]) |
/// | `build = method` | the config's `async fn(&self) -> Result<Reader, ConnectorError>` that makes the reader; `build_source` by default (`open_stream(&self, after)` for a stream) |
/// | `shards = method` | the config stands for many inputs (a glob): `async fn list(&self, after: Option<String>, limit: usize) -> Result<ShardPage<Self>, ConnectorError>`; its jobs can be sharded and read through [`connectors::files::Files`] |
/// | `incremental = method` | its incremental runs pin a window: `async fn(&self, bounds: Bounds) -> Result<Window<Self>, ConnectorError>` (see [`connector::incremental`]) |
/// | `streaming` | an unbounded source, read by the stream executor (see [`stream`]); not with `shards` or `incremental` |
///
/// It implements [`SourceConfig`] (and [`connector::ListInputs`] with `shards`,
/// [`connector::StreamSource`] with `streaming`) and adds a `SOURCE_NAME` constant. The
/// built-in connectors are written with it: [`connectors::csv::CsvFile`] uses `shards` and
/// `incremental`, `connectors::nats::NatsStream` `streaming`.
///
/// ```
/// use batch_orchestra::connector::*;
/// use batch_orchestra::*;
/// use serde::{Deserialize, Serialize};
///
/// /// The numbers `0..count`; the offset is the next number.
/// #[batch_source(name = "numbers", reader = Self)]
/// #[derive(Clone, Serialize, Deserialize)]
/// pub struct Numbers {
///     count: u64,
/// }
///
/// impl Numbers {
///     async fn build_source(&self) -> Result<Self, ConnectorError> {
///         Ok(self.clone())
///     }
/// }
///
/// impl Source for Numbers {
///     type Record = u64;
///     type Offset = u64;
///
///     async fn plan(&self, from: Option<&u64>, size: u64, max: usize) -> Result<Plan<u64>, ConnectorError> {
///         let mut start = from.copied().unwrap_or(0);
///         let mut batches = Vec::new();
///         while start < self.count && batches.len() < max {
///             let end = (start + size).min(self.count);
///             batches.push(PlannedBatch { start, end, records: end - start });
///             start = end;
///         }
///         Ok(Plan { batches, end_of_source: start >= self.count })
///     }
///
///     async fn read(&self, range: &BatchRange<u64>) -> Result<ReadBatch<u64>, ConnectorError> {
///         let records = (range.start..range.end).map(|n| Positioned { position: Position::at(n), value: n }).collect();
///         Ok(ReadBatch { records, errors: vec![] })
///     }
/// }
///
/// assert_eq!(Numbers::SOURCE_NAME, "numbers");
/// assert_eq!(<Numbers as SourceConfig>::NAME, "numbers");
/// ```
pub use batch_orchestra_macros::batch_source;

/// Turns a config struct into a batch sink.
///
/// Arguments: `name = "..."`, `writer = Type` (the type implementing [`Sink`]) and optionally
/// `build = method` (`build_sink` by default). It implements [`SinkConfig`] and adds a
/// `SINK_NAME` constant.
///
/// ```
/// use batch_orchestra::connector::*;
/// use batch_orchestra::*;
/// use serde::{Deserialize, Serialize};
///
/// /// Prints what it receives.
/// #[batch_sink(name = "stdout", writer = Self, build = open)]
/// #[derive(Clone, Serialize, Deserialize)]
/// pub struct Stdout;
///
/// impl Stdout {
///     async fn open(&self) -> Result<Self, ConnectorError> {
///         Ok(Stdout)
///     }
/// }
///
/// impl Sink for Stdout {
///     type Record = String;
///
///     async fn write(&self, _ctx: &WriteContext, records: Vec<Positioned<String>>) -> Result<WriteOutcome, ConnectorError> {
///         for r in &records {
///             println!("{}: {}", r.position, r.value);
///         }
///         Ok(WriteOutcome { written: records.len() as u64, ..Default::default() })
///     }
/// }
///
/// assert_eq!(Stdout::SINK_NAME, "stdout");
/// ```
pub use batch_orchestra_macros::batch_sink;

/// Declares a pipeline: a unit struct implementing [`Pipeline`], its concrete workflow type
/// `<Name>Workflow`, name constants and typed helpers.
///
/// Keys:
///
/// | key | value |
/// |---|---|
/// | `source` | a source config type ([`SourceConfig`]) |
/// | `sink` | a sink config type ([`SinkConfig`]) |
/// | `transform` | optional when the record types match; one of the shapes below |
/// | `state` | optional: a [`pipeline::TransformState`] built once per worker and given to the transform |
/// | `workflow` | optional: the workflow name, the type name in kebab-case by default |
///
/// The transform's shapes, from the source's record `In` to the sink's record `Out`:
///
/// | written | the function |
/// |---|---|
/// | `transform: f` | `fn(In) -> Result<Out, TransformError>`: one record for one |
/// | `transform: f` | `fn(In) -> Result<Option<Out>, TransformError>`: `None` filters the record out |
/// | `transform: f` | `fn(In) -> Result<Vec<Out>, TransformError>`: any number for one |
/// | `transform: async f` | `async fn(In) -> Result<_, TransformError>`, any of the three results |
/// | `transform: f, state: S` | `fn(In, &S) -> Result<_, TransformError>` |
/// | `transform: async f, state: S` | `async fn(In, &S) -> Result<_, TransformError>` |
///
/// An `Err` is a record error with the record's position; the batch goes on.
///
/// Generated, for `pipeline! { pub Name { .. } }`:
///
/// | item | what |
/// |---|---|
/// | `Name::request(job_id, source, sink) -> RequestOf<Name>` | a batch job request with default settings, to adjust with its builders |
/// | `Name::start(&JobClient, RequestOf<Name>) -> Result<JobHandle<Name>, JobError>` | starts a batch job |
/// | `Name::job(&JobClient, job_id) -> JobHandle<Name>` | a handle to a job by id |
/// | `Name::start_sharded`, `Name::start_stream`, `Name::stream_job` | the same for sharded and streaming jobs |
/// | `Name::register(WorkerBuilder) -> Result<WorkerBuilder, WorkerError>` | registers the workflows and activities on a worker (as `.pipeline::<Name>()`) |
/// | `Name::WORKFLOW`, `PLAN_ACTIVITY`, `PROCESS_ACTIVITY`, `SNAPSHOT_ACTIVITY`, `SHARDED_WORKFLOW` | the fixed names |
/// | `NameWorkflow` | the concrete Temporal workflow type |
///
/// Names are fixed: the workflow is `<workflow>` and its activities `<workflow>.plan`,
/// `<workflow>.process` and `<workflow>.snapshot`, whatever module the type lives in.
///
/// ```
/// use batch_orchestra::pipeline::TransformState;
/// use batch_orchestra::testing::{CountingSink, RangeSource, TestRecord};
/// use batch_orchestra::{ConnectorError, Pipeline, TransformError, pipeline};
///
/// fn shout(mut record: TestRecord) -> Result<TestRecord, TransformError> {
///     record.payload = record.payload.to_uppercase();
///     Ok(record)
/// }
///
/// pipeline! {
///     /// Copies records, shouting.
///     pub Loud {
///         source: RangeSource,
///         transform: shout,
///         sink: CountingSink,
///     }
/// }
///
/// fn even_only(record: TestRecord) -> Result<Option<TestRecord>, TransformError> {
///     Ok(record.id.is_multiple_of(2).then_some(record))
/// }
///
/// fn twice(record: TestRecord) -> Result<Vec<TestRecord>, TransformError> {
///     Ok(vec![record.clone(), record])
/// }
///
/// pipeline! { pub Evens { source: RangeSource, transform: even_only, sink: CountingSink } }
/// pipeline! { pub Twice { source: RangeSource, transform: twice, sink: CountingSink } }
///
/// /// Per-worker state: built once, shared by every batch.
/// pub struct Offset(u64);
///
/// impl TransformState for Offset {
///     async fn build() -> Result<Self, ConnectorError> {
///         Ok(Offset(1_000))
///     }
/// }
///
/// async fn shifted(record: TestRecord, offset: &Offset) -> Result<TestRecord, TransformError> {
///     Ok(TestRecord { id: record.id + offset.0, ..record })
/// }
///
/// pipeline! {
///     pub Shifted { source: RangeSource, transform: async shifted, state: Offset, sink: CountingSink }
/// }
///
/// assert_eq!(Loud::WORKFLOW, "loud");
/// assert_eq!(Loud::PROCESS_ACTIVITY, "loud.process");
/// assert_eq!(Shifted::WORKFLOW, "shifted");
/// let request = Loud::request("job-1", RangeSource::new(100), CountingSink::new("job-1")).batch_size(10);
/// assert_eq!(request.batch_size, 10);
/// let _workflow: Option<LoudWorkflow> = None;
/// ```
///
/// Mistakes are compile errors that say what to write: a sync transform of the wrong type,
/// an `async fn` written without `async`, a state the transform does not take, records that
/// differ with no transform, two pipelines with one workflow name.
pub use batch_orchestra_macros::pipeline;

/// Lists the pipelines a worker serves, for [`WorkerBuilder::pipelines`]: two pipelines with
/// the same workflow name are a compile error.
///
/// ```
/// use batch_orchestra::testing::{EvenOnly, RangeToCounting};
/// use batch_orchestra::{PipelineList, pipelines};
///
/// // `Worker::builder(client, "jobs").pipelines(list)?.build()?` registers both.
/// let list: PipelineList = pipelines![RangeToCounting, EvenOnly];
/// # drop(list);
/// ```
pub use batch_orchestra_macros::pipelines;

/// Re-exports used by generated code; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use temporalio_client;
    pub use temporalio_common;
    pub use temporalio_sdk;

    pub use crate::connector::{
        Capabilities, DoesNotList, DoesNotStream, Lists, SourceProbe, Streams,
    };
    pub use crate::macro_support::*;
    pub use crate::worker::{PipelineProbe, RegisterBatch, RegisterStream, Registered};
}
