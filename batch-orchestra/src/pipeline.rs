//! A pipeline: a source, a transform and a sink, with fixed workflow and activity names.

use crate::connector::{SinkConfig, SourceConfig};
use crate::error::TransformError;
use crate::model::{BatchProcessingRequest, JobReport};

/// The fixed names under which a pipeline's workflow and activities are registered.
///
/// The scheme is `<workflow>` for the workflow and `<workflow>.plan`, `<workflow>.process`
/// and `<workflow>.snapshot` for its activities. Names never contain Rust type paths, so
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
        $crate::PipelineNames {
            workflow: $workflow,
            plan: concat!($workflow, ".plan"),
            process: concat!($workflow, ".process"),
            snapshot: concat!($workflow, ".snapshot"),
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

    /// Turns a source record into a sink record, or rejects it as a record error.
    fn transform(
        record: <Self::Source as SourceConfig>::Record,
    ) -> Result<<Self::Sink as SinkConfig>::Record, TransformError>;
}

/// The offset type of a pipeline's source.
pub type OffsetOf<P> = <<P as Pipeline>::Source as SourceConfig>::Offset;
/// The job request type of a pipeline.
pub type RequestOf<P> = BatchProcessingRequest<<P as Pipeline>::Source, <P as Pipeline>::Sink>;
/// The job report type of a pipeline.
pub type ReportOf<P> = JobReport<OffsetOf<P>>;
