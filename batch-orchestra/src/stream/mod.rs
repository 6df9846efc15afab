//! Streaming jobs: an unbounded source (a message stream, a growing log) read by a queue
//! executor, written to any sink, with checkpoints, back-pressure and acknowledgements after
//! the write.
//!
//! A streaming source is declared like a batch one, with `streaming`:
//! `#[batch_source(name = "...", reader = MyReader, streaming)]`, where `MyReader` implements
//! [`StreamReader`](crate::connector::stream::StreamReader) and the config has `async fn open_stream(&self, after: Option<&Offset>)`.
//! `pipeline!` takes it as it takes a batch source; the worker then registers the stream
//! workflow under the pipeline's workflow name, and the queue executor as the
//! `<workflow>.stream` activity.
//!
//! # How a job runs
//! - The workflow runs up to `executors` `<workflow>.stream` activities at once, each for one
//!   *slice* of at most `checkpoint_interval` (5 s). A slice returns its counts and its
//!   checkpoint, which the workflow records; it continues as new after
//!   `max_slices_per_run` slices with bounded state.
//! - Inside a slice, a reader fills a bounded channel (`buffer` records) and a writer drains
//!   it into the sink in batches of up to `batch_size`, waiting at most `linger` for a batch
//!   to fill. A full channel stops the reader: a slow or down sink holds the stream back
//!   instead of filling memory.
//! - A record is acknowledged to the source only after the sink wrote it (or refused it as a
//!   record error). The checkpoint (the offset of the last record written) and the counts are
//!   heartbeated every second; a retried slice starts from them.
//! - Sinks write idempotently by position, so a record delivered twice (after a crash, or a
//!   redelivery) is counted as already present, never written twice.
//! - The job runs until cancelled, or until an end condition on the request: records, time,
//!   or idle time.

pub(crate) mod executor;
mod kind;
mod request;
mod workflow;

pub use executor::{SliceInput, SliceReport};
pub use kind::StreamJobHandle;
pub use request::{EndReason, StreamCarried, StreamProgress, StreamReport, StreamRequest};
pub use workflow::StreamWorkflow;

use crate::pipeline::{OffsetOf, Pipeline};

/// The streaming job request type of a pipeline.
pub type StreamRequestOf<P> = StreamRequest<<P as Pipeline>::Source, <P as Pipeline>::Sink>;
/// The streaming job report type of a pipeline.
pub type StreamReportOf<P> = StreamReport<OffsetOf<P>>;
