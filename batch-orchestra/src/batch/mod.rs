//! Batch jobs: one input, planned into batches and run in a sliding window of `process`
//! activities, with failed batches recorded and redriven.
//!
//! A [`BatchProcessingRequest`] starts the pipeline's workflow `<workflow>`; it ends with a
//! [`JobReport`]; while it runs the `progress` query answers a [`Progress`]. The workflow is
//! in `workflow/`, the kind's [`JobKind`](crate::job::JobKind) implementation in `kind.rs`.

pub(crate) mod activities;
pub(crate) mod begin;
mod kind;
mod report;
mod request;
pub(crate) mod workflow;

pub use report::{BatchReport, FailedBatch, JobReport, Progress, StoppedAt};
pub use request::{
    BatchProcessingRequest, CarriedState, Incremental, Redrive, Stretch, Throttle,
    redrive_workflow_id,
};
pub use workflow::PipelineWorkflow;

pub(crate) use kind::refuse_a_stream;

use crate::pipeline::{OffsetOf, Pipeline};

/// The batch job request type of a pipeline.
pub type RequestOf<P> = BatchProcessingRequest<<P as Pipeline>::Source, <P as Pipeline>::Sink>;
/// The batch job report type of a pipeline.
pub type ReportOf<P> = JobReport<OffsetOf<P>>;
