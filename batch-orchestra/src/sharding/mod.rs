//! Sharded jobs: one job over many inputs (every file under a directory or an object-store
//! prefix matching a glob), run as one child pipeline workflow per input.
//!
//! A source that can stand for many inputs lists them, a page at a time, through
//! [`SourceConfig::list_shards`](crate::SourceConfig::list_shards); `#[batch_source(...,
//! shards = list)]` wires a config's own listing method to it. The built-in file and object
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
mod listing;
mod report;
mod request;

pub use group::{GroupOffset, Grouped, Inputs, InputsReader};
pub use kind::ShardedJobHandle;
pub use listing::{ListedFile, is_pattern, list_files, list_local};
#[cfg(feature = "object-store")]
pub(crate) use listing::{MATCH, literal_base, nothing_matches, pattern};
pub use report::{RunningShard, ShardReport, ShardStatus, ShardedProgress, ShardedReport};
pub use request::{RedriveShard, ShardedRedrive, ShardedRequest, ShardedState};

use serde::{Deserialize, Serialize};

/// One input of a sharded job: a file or an object, with the config that reads it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shard<S> {
    /// The input's name, unique within the listing and stable across listings (a path or an
    /// object key). Listings are in ascending order of keys. The child job's id is
    /// `<job id>/<key>`, so sink ids derived from it stay the same for a rerun.
    pub key: String,
    /// The config that reads this input alone.
    pub source: S,
    /// The input's size in bytes, where the listing knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl<S> Shard<S> {
    /// The input `key`, read by `source`.
    pub fn new(key: impl Into<String>, source: S) -> Self {
        Self {
            key: key.into(),
            source,
            bytes: None,
        }
    }
}

/// One page of a listing, in ascending order of keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardPage<S> {
    /// The inputs, at most the page size asked for.
    pub shards: Vec<Shard<S>>,
    /// True when inputs follow the last one of this page.
    pub more: bool,
}

impl<S> ShardPage<S> {
    /// A page of the files [`list_local`] found, each read by the config `source` makes of
    /// its path.
    pub fn of_files(files: Vec<ListedFile>, limit: usize, source: impl Fn(String) -> S) -> Self {
        let shards = files
            .into_iter()
            .map(|f| Shard {
                key: f.key,
                source: source(f.path),
                bytes: Some(f.bytes),
            })
            .collect();
        Self::from_sorted(shards, limit)
    }

    /// A page from a sorted listing that was asked for `limit` inputs and found up to one
    /// more (which only says that more follow).
    pub fn from_sorted(mut shards: Vec<Shard<S>>, limit: usize) -> Self {
        let more = shards.len() > limit;
        shards.truncate(limit);
        Self { shards, more }
    }
}
