//! A pipeline: a source, a transform and a sink, with fixed workflow and activity names.

use std::future::Future;

use crate::connector::{Capabilities, SinkConfig, SourceConfig};
use crate::error::{ConnectorError, TransformError};

/// The fixed names under which a pipeline's workflow and activities are registered.
///
/// The scheme is `<workflow>` for the workflow and `<workflow>.plan`, `<workflow>.process`
/// and `<workflow>.snapshot` for its activities; a sharded job's parent workflow is
/// `<workflow>.sharded`, lists its inputs with `<workflow>.list` and runs each shard as
/// `<workflow>.shard` (with `<workflow>.shard.plan`, `.shard.process` and `.shard.snapshot`). A
/// streaming pipeline's workflow is `<workflow>` too, and its queue executor `<workflow>.stream`. Names never contain Rust type paths, so
/// renaming a module or upgrading the compiler never changes a name in history. Build them
/// with [`pipeline_names!`](crate::pipeline_names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipelineNames {
    /// The workflow type name.
    pub workflow: &'static str,
    /// The plan activity: scans ahead and returns batch boundaries.
    pub plan: &'static str,
    /// The process activity: reads, transforms and writes one batch.
    pub process: &'static str,
    /// The snapshot activity: saves the job report.
    pub snapshot: &'static str,
    /// The begin activity of an incremental job: finds the last run's cursor and pins this
    /// run's window.
    pub begin: &'static str,
    /// The parent workflow of a sharded job: runs one `<workflow>` child per input.
    pub sharded: &'static str,
    /// The list activity of a sharded job: lists inputs a page at a time.
    pub list: &'static str,
    /// The workflow of one shard of a sharded job (one input, or several small ones).
    pub shard: &'static str,
    /// The plan activity of a shard.
    pub shard_plan: &'static str,
    /// The process activity of a shard.
    pub shard_process: &'static str,
    /// The snapshot activity of a shard.
    pub shard_snapshot: &'static str,
    /// The queue executor of a streaming pipeline: reads, transforms and writes one slice of
    /// the stream.
    pub stream: &'static str,
}

/// Builds [`PipelineNames`] from a workflow name literal, at compile time.
///
/// ```
/// let names = batch_orchestra::pipeline_names!("csv-to-mongo");
/// assert_eq!(names.process, "csv-to-mongo.process");
/// ```
#[macro_export]
macro_rules! pipeline_names {
    ($workflow:literal) => {
        $crate::pipeline::PipelineNames {
            workflow: $workflow,
            plan: concat!($workflow, ".plan"),
            process: concat!($workflow, ".process"),
            snapshot: concat!($workflow, ".snapshot"),
            begin: concat!($workflow, ".begin"),
            sharded: concat!($workflow, ".sharded"),
            list: concat!($workflow, ".list"),
            shard: concat!($workflow, ".shard"),
            shard_plan: concat!($workflow, ".shard.plan"),
            shard_process: concat!($workflow, ".shard.process"),
            shard_snapshot: concat!($workflow, ".shard.snapshot"),
            stream: concat!($workflow, ".stream"),
        }
    };
}

/// A pipeline: what `pipeline!` generates. One concrete workflow and its activities are
/// registered per pipeline type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a pipeline",
    note = "declare it with `batch_orchestra::pipeline!`, or implement `batch_orchestra::Pipeline` for it"
)]
pub trait Pipeline: Send + Sync + 'static {
    /// The source's config type.
    type Source: SourceConfig;
    /// The sink's config type.
    type Sink: SinkConfig;
    /// The workflow and activity names.
    const NAMES: PipelineNames;

    /// What the transform shares across records: built once per worker (a lookup client, a
    /// cache); `()` when the pipeline declares no `state`.
    type State: TransformState;

    /// Turns a source record into sink records (one, none or many), or rejects it as a
    /// record error.
    fn transform(
        record: <Self::Source as SourceConfig>::Record,
        state: &Self::State,
    ) -> impl Future<
        Output = Result<Transformed<<Self::Sink as SinkConfig>::Record>, TransformError>,
    > + Send;

    /// What the source can do beyond the batch core (stream, list inputs): `pipeline!` finds
    /// it where the source's type is concrete.
    #[doc(hidden)]
    fn capabilities() -> Capabilities<Self::Source> {
        Capabilities::batch()
    }
}

/// What a transform made of one source record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transformed<T> {
    /// One record.
    One(T),
    /// None: the record is filtered out, and counted as filtered, not as an error.
    Filtered,
    /// Several records, in order; none counts as filtered.
    Many(Vec<T>),
}

/// What a transform may return, for sink records `T`:
///
/// - `Result<T, TransformError>`: one record;
/// - `Result<Option<T>, TransformError>`: `None` filters the record out;
/// - `Result<Vec<T>, TransformError>`: one record becomes many (each with the source record's
///   position and its index among them, so sinks keyed by position keep them apart); an empty
///   `Vec` counts as filtered.
///
/// An `Err` is a record error with the record's position.
#[diagnostic::on_unimplemented(
    message = "a transform returning `{Self}` cannot feed a sink of `{T}`",
    label = "expected `Result<{T}, TransformError>`, `Result<Option<{T}>, TransformError>` or `Result<Vec<{T}>, TransformError>`",
    note = "return `Ok(record)` for one record, `Ok(None)` to filter a record out, `Ok(vec![...])` for many"
)]
pub trait TransformOutput<T> {
    /// The records made.
    fn into_transformed(self) -> Result<Transformed<T>, TransformError>;
}

impl<T> TransformOutput<T> for Result<T, TransformError> {
    fn into_transformed(self) -> Result<Transformed<T>, TransformError> {
        self.map(Transformed::One)
    }
}

impl<T> TransformOutput<T> for Result<Option<T>, TransformError> {
    fn into_transformed(self) -> Result<Transformed<T>, TransformError> {
        self.map(|r| r.map_or(Transformed::Filtered, Transformed::One))
    }
}

impl<T> TransformOutput<T> for Result<Vec<T>, TransformError> {
    fn into_transformed(self) -> Result<Transformed<T>, TransformError> {
        self.map(Transformed::Many)
    }
}

/// State a pipeline's transform shares across records and batches: built once per worker, on
/// the first batch that needs it, and kept (a failed build is tried again on the next batch).
/// Declare it with `state: MyState` in `pipeline!`; the transform then takes `&MyState` as
/// its second argument.
///
/// Configuration comes from the worker's environment, as the connectors' does: state is never
/// in workflow history.
///
/// ```
/// use batch_orchestra::{ConnectorError, pipeline::TransformState};
/// use std::collections::HashMap;
///
/// /// Country names by code, loaded once per worker.
/// struct Countries(HashMap<String, String>);
///
/// impl TransformState for Countries {
///     async fn build() -> Result<Self, ConnectorError> {
///         Ok(Countries(HashMap::from([("fr".into(), "France".into())])))
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not transform state",
    label = "not transform state",
    note = "implement `batch_orchestra::pipeline::TransformState` for it: `async fn build() -> Result<Self, ConnectorError>`"
)]
pub trait TransformState: Send + Sync + Sized + 'static {
    /// Builds the state, once per worker.
    fn build() -> impl Future<Output = Result<Self, ConnectorError>> + Send;
}

impl TransformState for () {
    async fn build() -> Result<Self, ConnectorError> {
        Ok(())
    }
}

/// The offset type of a pipeline's source.
pub type OffsetOf<P> = <<P as Pipeline>::Source as SourceConfig>::Offset;
