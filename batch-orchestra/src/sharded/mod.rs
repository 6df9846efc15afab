//! Sharded jobs: one job over many inputs (every file under a directory or an object-store
//! prefix matching a glob), run as one child pipeline workflow per input.
//!
//! A source that can stand for many inputs lists them, a page at a time, through
//! the capability [`ListInputs`](crate::connector::ListInputs); `#[batch_source(...,
//! shards = list)]` implements it with a config's own listing method. The built-in file and object
//! sources list by glob: `data/**/*.csv`, `s3://bucket/in/*.csv`.
//!
//! A [`ShardedRequest`] starts the `<workflow>.sharded` parent workflow: it lists the inputs
//! through the `<workflow>.list` activity, groups small inputs into shards (up to
//! `max_inputs_per_shard` inputs and `shard_bytes` bytes), runs one child `<workflow>.shard`
//! per shard (the [`Grouped`] pipeline: the job over the shard's inputs one after another)
//! with at most `max_concurrent_shards` at once, forwards pause, resume, in-flight and rate
//! changes to the running children, and adds their reports up into one [`ShardedReport`].

mod group;
mod kind;
pub(crate) mod list;
mod report;
mod request;
mod workflow;

pub use group::{GroupOffset, Grouped, Inputs, InputsReader};
pub use kind::ShardedJobHandle;
pub use report::{RunningShard, ShardReport, ShardStatus, ShardedProgress, ShardedReport};
pub use request::{RedriveShard, ShardedRedrive, ShardedRequest, ShardedState};
pub use workflow::ShardedWorkflow;

use crate::pipeline::Pipeline;

/// The sharded job request type of a pipeline.
pub type ShardedRequestOf<P> = ShardedRequest<<P as Pipeline>::Source, <P as Pipeline>::Sink>;
/// The sharded job report type of a pipeline.
pub type ShardedReportOf<P> = ShardedReport<<P as Pipeline>::Source>;
