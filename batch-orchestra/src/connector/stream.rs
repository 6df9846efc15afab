//! What a streaming source can do (the capability streaming jobs use): open a reader that
//! hands out records with receipts, acknowledged after the write.

use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use super::{BatchRange, Offset, Plan, ReadBatch, Source, SourceConfig};
use crate::error::{ConnectorError, RecordError};
use crate::record::Positioned;

/// A source that never ends (a JetStream consumer, a growing log): its jobs run through the
/// queue executor ([`stream`](crate::stream)) instead of planned batches.
///
/// `#[batch_source(name = "...", reader = MyReader, streaming)]` implements it with the
/// config's own `async fn open_stream(&self, after: Option<&Offset>)`; the config's
/// [`SourceConfig::Source`] is then a [`NotABatch`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a stream source",
    label = "not a stream source",
    note = "declare the source with `#[batch_source(name = \"...\", reader = MyReader, streaming)]` and an `async fn open_stream(&self, after: Option<&Offset>)`, or implement `batch_orchestra::connector::StreamSource` for it"
)]
pub trait StreamSource: SourceConfig {
    /// The reader one slice of a job reads with.
    type Reader: StreamReader<Record = Self::Record, Offset = Self::Offset>;

    /// Opens a reader for one slice of a job, resuming after the checkpoint `after` (from the
    /// source's start, or its own durable position, when `None`).
    fn open(
        &self,
        after: Option<&Self::Offset>,
    ) -> impl Future<Output = Result<Self::Reader, ConnectorError>> + Send;
}

/// A reader of an unbounded source, opened by a streaming source config for one slice of a
/// streaming job.
///
/// Records come with their offset and a [`Receipt`]. The executor acknowledges a record
/// through its receipt only after the sink wrote it, so a reader over a source with
/// acknowledgements (a JetStream consumer) redelivers what a crashed worker never wrote.
pub trait StreamReader: Send + 'static {
    /// The record type produced.
    type Record: Send + 'static;
    /// A record's place in the stream: the checkpoint a job keeps (a stream sequence).
    type Offset: Offset;
    /// What acknowledges a record to the source.
    type Receipt: Receipt;

    /// Waits up to `wait` for records and returns up to `max` of them, in stream order; none
    /// when the stream had nothing new in that time. A record that cannot be decoded is a
    /// [`Received`] whose `record` is an `Err`, with its position: it is counted as a record
    /// error and acknowledged, never redelivered forever. An `Err` of the call itself is a
    /// connection problem (retried) or a configuration error (the job fails).
    fn next(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Received<Self>>, ConnectorError>> + Send;

    /// How many records the stream holds that this reader was not given yet, where the source
    /// can tell; shown as the job's lag. `None` by default.
    fn lag(&mut self) -> impl Future<Output = Option<u64>> + Send {
        async { None }
    }
}

/// One record from a [`StreamReader`].
pub struct Received<R: StreamReader + ?Sized> {
    /// Where the record sits in the stream.
    pub offset: R::Offset,
    /// The record with its position, or why it could not be decoded.
    pub record: Result<Positioned<R::Record>, RecordError>,
    /// Acknowledges the record to the source, once written.
    pub receipt: R::Receipt,
}

/// Acknowledges one record to its source.
pub trait Receipt: Send + 'static {
    /// Tells the source the record was written: it will not be delivered again.
    fn ack(self) -> impl Future<Output = Result<(), ConnectorError>> + Send;

    /// Hands the record back unwritten (a write failed), so the source delivers it again
    /// soon. The default does nothing: the source redelivers what was never acknowledged, or
    /// the retried slice reads again after its checkpoint.
    fn release(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// The receipt of a source without acknowledgements: nothing to do.
impl Receipt for () {
    async fn ack(self) -> Result<(), ConnectorError> {
        Ok(())
    }
}

/// The [`SourceConfig::Source`] of a streaming source: it plans
/// and reads nothing, and says how to run the source instead.
pub struct NotABatch<R, O> {
    name: &'static str,
    _types: PhantomData<fn() -> (R, O)>,
}

impl<R, O> NotABatch<R, O> {
    /// The refusal for source `name`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    fn refusal(&self) -> ConnectorError {
        ConnectorError::config(format!(
            "source `{}` is a stream: start its job with `start_stream` and a `StreamRequest`, not as a batch job",
            self.name
        ))
    }
}

impl<R: Send + 'static, O: Offset> Source for NotABatch<R, O> {
    type Record = R;
    type Offset = O;

    async fn plan(
        &self,
        _from: Option<&O>,
        _batch_size: u64,
        _max_batches: usize,
    ) -> Result<Plan<O>, ConnectorError> {
        Err(self.refusal())
    }

    async fn read(&self, _range: &BatchRange<O>) -> Result<ReadBatch<R>, ConnectorError> {
        Err(self.refusal())
    }
}
