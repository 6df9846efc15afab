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

mod capability;
pub mod incremental;
pub mod listing;
pub mod stream;

#[doc(hidden)]
pub use capability::{
    Capabilities, DoesNotList, DoesNotStream, ListFn, Lists, SourceProbe, Streams,
};
pub use incremental::{Bounds, Cursor, Window};
pub use listing::{FileTimes, ListInputs, Shard, ShardPage};
pub use stream::{NotABatch, Receipt, Received, StreamReader, StreamSource};

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
    /// Records an upserting sink did not write because the destination already holds a
    /// newer version of them (a higher version under the same key): older data arriving
    /// late, never written over newer. Always 0 for sinks that only insert.
    pub superseded: u64,
    /// Records the sink refused, with their positions.
    pub errors: Vec<RecordError>,
}

/// For `skip_serializing_if` on counts added after jobs were running: a report that never
/// counted one serializes as it did before.
pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
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
    fn scope(&self, range: &BatchRange<Self::Offset>) -> Option<(String, u64)> {
        let _ = range;
        None
    }

    /// The bytes of the records numbered `records` (ordinals, as in
    /// [`Position::record`](crate::Position), ascending) in `range`, as the input holds them: what a
    /// [quarantine](crate::quarantine) keeps of a record that failed. The engine asks only
    /// for a batch with failed records, after they failed. Return those you can find, by
    /// ordinal; the default finds none, and quarantined records then carry their position
    /// and reason only. Files implement it (a CSV record, a JSON Lines line).
    fn raw_records(
        &self,
        range: &BatchRange<Self::Offset>,
        records: &[u64],
    ) -> impl Future<Output = Result<Vec<(u64, Vec<u8>)>, ConnectorError>> + Send {
        let _ = (range, records);
        async { Ok(Vec::new()) }
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
///
/// This is all a batch source needs. What only some sources can do sits in capability traits
/// beside it: [`ListInputs`] (list many inputs, for sharded jobs) and [`StreamSource`] (never
/// end, for streaming jobs).
///
/// Written by hand (the [`batch_source`](crate::batch_source) macro writes the same), with a
/// listing so that sharded jobs can run it over several inputs:
///
/// ```
/// use batch_orchestra::connector::*;
/// use batch_orchestra::{ConnectorError, Position, Positioned};
/// use serde::{Deserialize, Serialize};
///
/// /// The numbers `0..count`; the offset is the next number.
/// #[derive(Clone, Serialize, Deserialize)]
/// pub struct Numbers {
///     count: u64,
/// }
///
/// impl SourceConfig for Numbers {
///     const NAME: &'static str = "numbers";
///     type Record = u64;
///     type Offset = u64;
///     type Source = Numbers;
///
///     async fn build(&self) -> Result<Numbers, ConnectorError> {
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
///         let records = (range.start..range.end)
///             .map(|n| Positioned { position: Position::at(n), value: n })
///             .collect();
///         Ok(ReadBatch { records, errors: vec![] })
///     }
/// }
///
/// /// Three inputs: the first 10, 20 and 30 numbers.
/// impl ListInputs for Numbers {
///     async fn list_inputs(&self, after: Option<String>, limit: usize) -> Result<ShardPage<Self>, ConnectorError> {
///         let shards: Vec<Shard<Numbers>> = (1..=3u64)
///             .map(|i| Shard::new(format!("n{i}"), Numbers { count: 10 * i }))
///             .filter(|s| after.as_deref().is_none_or(|a| s.key.as_str() > a))
///             .take(limit)
///             .collect();
///         Ok(ShardPage { more: false, shards })
///     }
/// }
/// ```
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
    /// The built source. A streaming source ([`StreamSource`]) has [`NotABatch`], which
    /// refuses to plan.
    type Source: Source<Record = Self::Record, Offset = Self::Offset>;

    /// Builds the source: opens files, connects clients. Called once per worker and config.
    fn build(&self) -> impl Future<Output = Result<Self::Source, ConnectorError>> + Send;

    /// Pins the window of one incremental run between its [`Bounds`]: what changed since
    /// the last completed run (everything on a first run), or a range run's explicit range;
    /// and the cursor the next run starts from (see [`incremental`]). A source opts in with
    /// `incremental = <method>` in `#[batch_source]`; by default it cannot be read
    /// incrementally, and an incremental job of it fails at once saying so.
    fn begin_window(
        &self,
        bounds: Bounds,
    ) -> impl Future<Output = Result<Window<Self>, ConnectorError>> + Send {
        let _ = bounds;
        std::future::ready(Err(ConnectorError::config(format!(
            "the `{}` source cannot be read incrementally: drop `incremental` from the job, or use a source that supports it (postgres, csv-file, json-lines-file)",
            Self::NAME
        ))))
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
    let config = serde_json::to_vec(config).unwrap_or_default();
    let identity = identity.unwrap_or_default();
    let hash = fnv1a(config.iter().chain(&[0]).chain(identity.as_bytes()));
    format!("{:012x}", hash >> 16)
}

/// The 64-bit FNV-1a hash of `bytes`: stable across builds and platforms, for ids and
/// checks that are stored.
pub(crate) fn fnv1a<'a>(bytes: impl IntoIterator<Item = &'a u8>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}
