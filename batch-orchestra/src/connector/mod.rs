//! Connector traits: how to read batches from a source and write them to a sink.
//!
//! A connector has two halves. The *config* (`SourceConfig`, `SinkConfig`) is a small
//! serializable value that travels in the job request and in activity inputs: it names where
//! the data is, never a secret. The *built* connector (`Source`, `Sink`) is what a worker makes
//! from a config (an open file, a database client with its pool); the worker caches it and
//! reuses it for every batch with the same config.
//!
//! Reading is split in two steps so that workflow history carries offsets, never records:
//! [`Source::plan`] scans ahead and returns the boundaries of the next batches, and
//! [`Source::read`] reads the records of one boundary range.

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use std::future::Future;

use crate::error::{ConnectorError, RecordError};
use crate::record::Positioned;

pub mod listing;
pub mod stream;

pub use listing::{Shard, ShardPage};
pub use stream::{NotABatch, NotAStream, Receipt, Received, StreamReader};

/// A position in a source from which reading can resume: a byte offset for a CSV file, a key
/// for a database cursor. It is stored in workflow history, so keep it small.
pub trait Offset:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
}

impl<T> Offset for T where
    T: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static
{
}

/// One batch found by [`Source::plan`]: the records in `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct PlannedBatch<O: Offset> {
    /// Offset of the batch's first record.
    pub start: O,
    /// Offset just past the batch's last record.
    pub end: O,
    /// How many records (good or bad) the range holds.
    pub records: u64,
}

/// The result of [`Source::plan`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Plan<O: Offset> {
    /// Consecutive batches, in order; the first starts at the offset planning started from.
    pub batches: Vec<PlannedBatch<O>>,
    /// True when the source has no records after the last batch.
    pub end_of_source: bool,
}

/// A range of records to read, as handed to [`Source::read`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BatchRange<O: Offset> {
    /// Sequence number of the batch in the job, from 0.
    pub index: u64,
    /// Offset of the first record.
    pub start: O,
    /// Offset just past the last record.
    pub end: O,
    /// Ordinal of the first record in the source, from 0.
    pub first_record: u64,
    /// How many records the range holds, as counted by the plan.
    pub records: u64,
}

/// The records of one range, and the records that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBatch<R> {
    /// Records read, in source order.
    pub records: Vec<Positioned<R>>,
    /// Records that could not be read (malformed, wrong types), with their positions.
    pub errors: Vec<RecordError>,
}

impl<R> Default for ReadBatch<R> {
    fn default() -> Self {
        Self {
            records: Vec::new(),
            errors: Vec::new(),
        }
    }
}

/// What a sink is told about the batch it writes.
#[derive(Debug, Clone)]
pub struct WriteContext {
    /// The scope of the record ids: derive idempotent ids from it and the record's position.
    /// It is the job id followed by `@` and a fingerprint of the job's input (its source
    /// config and [`Source::identity`], fixed at the job's first plan), so a job id reused
    /// over another input writes other ids; for a source of several inputs, `/<input name>`
    /// follows. Jobs started before fingerprints existed keep the bare job id.
    pub job_id: String,
    /// The batch sequence number; for a source of several inputs (see [`Source::scope`]),
    /// the ordinal of the batch's first record within its input.
    pub batch: u64,
    /// The activity attempt, from 1: above 1 means this batch may have been written before.
    pub attempt: u32,
}

/// What a sink did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Records newly written.
    pub written: u64,
    /// Records that were already there (a retried or replayed batch), not written again.
    pub already_present: u64,
    /// Records the sink refused, with their positions.
    pub errors: Vec<RecordError>,
}

/// A built source: plans batch boundaries and reads batches.
///
/// Both methods must be deterministic for a given source: planning twice from the same offset
/// gives the same boundaries, and reading a range twice gives the same records. Retries and
/// replays rely on it.
pub trait Source: Send + Sync + 'static {
    /// The record type produced.
    type Record: Send + 'static;
    /// The resumable position type.
    type Offset: Offset;

    /// Scans ahead from `from` (the source's start when `None`) and returns up to
    /// `max_batches` consecutive batches of at most `batch_size` records each.
    fn plan(
        &self,
        from: Option<&Self::Offset>,
        batch_size: u64,
        max_batches: usize,
    ) -> impl Future<Output = Result<Plan<Self::Offset>, ConnectorError>> + Send;

    /// Reads the records in `range`. Records that cannot be read go into
    /// [`ReadBatch::errors`]; an `Err` means the whole range could not be read.
    fn read(
        &self,
        range: &BatchRange<Self::Offset>,
    ) -> impl Future<Output = Result<ReadBatch<Self::Record>, ConnectorError>> + Send;

    /// Whether this built source still reflects its input. A worker keeps built sources for
    /// later jobs; return `false` when the input changed since [`SourceConfig::build`] (a file
    /// overwritten in place or replaced by rename, an object with a new etag), and the worker
    /// builds the source again before planning or reading. The default, `true`, suits inputs
    /// that cannot change.
    fn is_current(&self) -> impl Future<Output = bool> + Send {
        async { true }
    }

    /// What tells the input this source reads from another input under the same config: a
    /// file's length and modification time, an object's etag. The engine hashes it with the
    /// config into the job's record-id scope at the job's first plan (see
    /// [`WriteContext::job_id`]), so a job id reused over a new input writes new ids instead
    /// of counting new records as already present. `None` (the default) leaves the config
    /// alone to tell inputs apart: right for a source whose positions name their records
    /// (a table's key, a stream's sequence).
    fn identity(&self) -> Option<String> {
        None
    }

    /// The input `range` belongs to, when the source reads several inputs (a shard of many
    /// files): its name, and the ordinal of the range's first record within it. Sinks are
    /// then told the job id `<job id>/<name>` and that ordinal as the batch number, so they
    /// write the ids and names a job over that input alone would, however inputs are
    /// grouped. `None` (the default) for a source of one input.
    fn scope(&self, range: &BatchRange<Self::Offset>) -> Option<(&str, u64)> {
        let _ = range;
        None
    }
}

/// A built sink: writes batches.
///
/// Writing the same batch twice must be harmless (a retried activity does it): use
/// deterministic ids and count records that were already there, or upsert.
pub trait Sink: Send + Sync + 'static {
    /// The record type consumed.
    type Record: Send + 'static;

    /// Writes `records`. Records the sink refuses go into [`WriteOutcome::errors`]; an `Err`
    /// means the batch was not written and will be retried (or fail the job, for
    /// configuration errors).
    fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Self::Record>>,
    ) -> impl Future<Output = Result<WriteOutcome, ConnectorError>> + Send;
}

/// The serializable configuration of a source; it builds the [`Source`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch source",
    label = "not a batch source",
    note = "annotate the config struct with `#[batch_source(name = \"...\", reader = MyReader)]`, or implement `batch_orchestra::SourceConfig` for it"
)]
pub trait SourceConfig: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The connector's name: lowercase letters, digits and dashes.
    const NAME: &'static str;
    /// The record type produced.
    type Record: Send + 'static;
    /// The resumable position type.
    type Offset: Offset;
    /// The built source. A streaming source has [`NotABatch`],
    /// which refuses to plan.
    type Source: Source<Record = Self::Record, Offset = Self::Offset>;
    /// The reader of a streaming source; [`NotAStream`] for a
    /// batch source.
    type Stream: StreamReader<Record = Self::Record, Offset = Self::Offset>;
    /// Whether the source is a stream: its jobs run through the queue executor
    /// ([`streaming`](crate::stream)) instead of planned batches.
    const STREAMING: bool = false;

    /// Builds the source: opens files, connects clients. Called once per worker and config.
    fn build(&self) -> impl Future<Output = Result<Self::Source, ConnectorError>> + Send;

    /// Opens a reader of a streaming source for one slice of a job, resuming after the
    /// checkpoint `after` (from the source's start, or its own durable position, when
    /// `None`). The default refuses: the source is not a stream.
    /// `#[batch_source(..., streaming)]` implements it with the config's own `open_stream`.
    fn open_stream(
        &self,
        after: Option<&Self::Offset>,
    ) -> impl Future<Output = Result<Self::Stream, ConnectorError>> + Send {
        let _ = after;
        async {
            Err(ConnectorError::config(format!(
                "source `{}` is not a stream: declare it with `#[batch_source(..., streaming)]`",
                Self::NAME
            )))
        }
    }

    /// Lists the inputs this config stands for, for a sharded job: up to `limit` inputs
    /// whose keys come after `after` (from the first when `None`), in ascending order of key,
    /// each with the config that reads it alone. A listing that matches nothing at all is a
    /// configuration error naming the pattern.
    ///
    /// The default refuses: the source cannot be sharded. `#[batch_source(..., shards =
    /// list)]` implements it with the config's own `list` method.
    fn list_shards(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> impl Future<Output = Result<ShardPage<Self>, ConnectorError>> + Send {
        let _ = (after, limit);
        async {
            Err(ConnectorError::config(format!(
                "source `{}` cannot list inputs for a sharded job: give it a listing with `#[batch_source(..., shards = list)]`",
                Self::NAME
            )))
        }
    }
}

/// The serializable configuration of a sink; it builds the [`Sink`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a batch sink",
    label = "not a batch sink",
    note = "annotate the config struct with `#[batch_sink(name = \"...\", writer = MyWriter)]`, or implement `batch_orchestra::SinkConfig` for it"
)]
pub trait SinkConfig: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The connector's name: lowercase letters, digits and dashes.
    const NAME: &'static str;
    /// The record type consumed.
    type Record: Send + 'static;
    /// The built sink.
    type Sink: Sink<Record = Self::Record>;

    /// Builds the sink: connects clients. Called once per worker and config.
    fn build(&self) -> impl Future<Output = Result<Self::Sink, ConnectorError>> + Send;
}

/// The fingerprint of a source config and its input's identity: 12 hex digits of a 64-bit
/// FNV-1a hash, stable across builds and platforms (it is part of record ids).
pub(crate) fn input_fingerprint<S: serde::Serialize>(
    config: &S,
    identity: Option<String>,
) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let config = serde_json::to_vec(config).unwrap_or_default();
    let mut hash = OFFSET;
    let identity = identity.unwrap_or_default();
    for byte in config.iter().chain(&[0]).chain(identity.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    format!("{:012x}", hash >> 16)
}
