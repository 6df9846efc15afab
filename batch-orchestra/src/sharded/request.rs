//! The request of a sharded job, and the state its parent workflow carries across
//! continue-as-new.

use serde::{Deserialize, Serialize};

use super::{GroupOffset, ShardedReport};
use crate::batch::{BatchProcessingRequest, FailedBatch, redrive_workflow_id};
use crate::connector::Shard;
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;

/// A job over many inputs: `job` is the template of every shard's job (its source config is
/// the pattern the inputs are listed from; every other setting applies to each shard), and
/// the rest says how many shards run at once and how the listing is paged.
///
/// ```
/// use batch_orchestra::connectors::csv::CsvFile;
/// # use batch_orchestra::testing::CountingSink;
/// use batch_orchestra::batch::BatchProcessingRequest;
/// use batch_orchestra::sharded::ShardedRequest;
///
/// let job = BatchProcessingRequest::new("daily", CsvFile::new("exports/**/*.csv"), CountingSink::new("daily"));
/// let request = ShardedRequest::new(job).max_concurrent_shards(16);
/// assert!(request.validate().is_ok());
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ShardedRequest<S: SourceConfig, K: SinkConfig> {
    /// The template of every shard's job. Its `job_id` is the sharded job's id; its source
    /// config is listed; its settings (batch size, in-flight, retries, limits) apply to each
    /// shard.
    pub job: BatchProcessingRequest<S, K>,
    /// Shards (child workflows) running at once, at most. Default 8.
    pub max_concurrent_shards: u32,
    /// Inputs grouped into one shard, at most: small files run several to a child workflow,
    /// one after another, rather than one child each. 1 runs one shard per input. Default 128.
    #[serde(default = "default_inputs_per_shard")]
    pub max_inputs_per_shard: u32,
    /// Bytes of input grouped into one shard, at most (an input at least this large runs
    /// alone). Default 64 MiB.
    #[serde(default = "default_shard_bytes")]
    pub shard_bytes: u64,
    /// Inputs listed per `list` activity call. Default 500.
    pub list_page: u32,
    /// Shards started per run of the parent workflow before it continues as new. Default 500.
    pub max_shards_per_run: u32,
    /// Fail the job once more than this many shards failed or completed with failed batches;
    /// up to this many, they are recorded (for a redrive) and the job goes on. Default 100.
    pub max_failed_shards: u64,
    /// Per-shard reports kept in the job report, at most (the first shards by listing order;
    /// shards with failures are always kept). Every shard is counted. Default 1,000.
    pub max_shard_reports: u32,
    /// An explicit list of inputs instead of a listing of `job.source`.
    #[serde(default)]
    pub inputs: Option<Vec<Shard<S>>>,
    /// Set on a redrive: rerun only these shards of an earlier sharded job.
    #[serde(default)]
    pub redrive: Option<ShardedRedrive<S>>,
    /// State carried across continue-as-new; `None` for a new job.
    #[serde(default)]
    pub state: Option<ShardedState<S>>,
}

impl<S: SourceConfig, K: SinkConfig> ShardedRequest<S, K> {
    /// A sharded job over the inputs `job.source` lists, with default settings.
    pub fn new(job: BatchProcessingRequest<S, K>) -> Self {
        Self {
            job,
            max_concurrent_shards: 8,
            max_inputs_per_shard: default_inputs_per_shard(),
            shard_bytes: default_shard_bytes(),
            list_page: 500,
            max_shards_per_run: 500,
            max_failed_shards: 100,
            max_shard_reports: 1_000,
            inputs: None,
            redrive: None,
            state: None,
        }
    }

    /// Sets how many shards run at once.
    pub fn max_concurrent_shards(mut self, n: u32) -> Self {
        self.max_concurrent_shards = n;
        self
    }

    /// Sets how many inputs one shard groups at most (1: a shard per input).
    pub fn max_inputs_per_shard(mut self, n: u32) -> Self {
        self.max_inputs_per_shard = n;
        self
    }

    /// Sets how many bytes of input one shard groups at most.
    pub fn shard_bytes(mut self, bytes: u64) -> Self {
        self.shard_bytes = bytes;
        self
    }

    /// Sets how many inputs one `list` call returns.
    pub fn list_page(mut self, n: u32) -> Self {
        self.list_page = n;
        self
    }

    /// Sets how many shards one run of the parent starts before it continues as new.
    pub fn max_shards_per_run(mut self, n: u32) -> Self {
        self.max_shards_per_run = n;
        self
    }

    /// Records up to `n` failed shards and goes on; fails the job past that.
    pub fn max_failed_shards(mut self, n: u64) -> Self {
        self.max_failed_shards = n;
        self
    }

    /// Keeps at most `n` per-shard reports (shards with failures are always kept).
    pub fn max_shard_reports(mut self, n: u32) -> Self {
        self.max_shard_reports = n;
        self
    }

    /// Runs these inputs instead of listing `job.source`.
    pub fn inputs(mut self, inputs: Vec<Shard<S>>) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// The parent workflow's id: the job id, or `<job id>-redrive-<n>` for a redrive.
    pub fn workflow_id(&self) -> String {
        match &self.redrive {
            Some(r) => redrive_workflow_id(&self.job.job_id, r.number),
            None => self.job.job_id.clone(),
        }
    }

    /// The id of the input `key`'s part of the job: `<job id>/<key>`. Sinks derive record
    /// ids from it, so an input run again (a redrive, a restarted job, in another group)
    /// writes the same ids.
    pub fn input_job_id(&self, key: &str) -> String {
        format!("{}/{key}", self.job.job_id)
    }

    /// Checks the request before it is sent, naming the field at fault.
    pub fn validate(&self) -> Result<(), JobError> {
        let bad = |field: &str| {
            Err(JobError::InvalidRequest(format!(
                "job `{}`: {field} must be at least 1",
                self.job.job_id
            )))
        };
        if self.max_concurrent_shards == 0 {
            return bad("max_concurrent_shards");
        }
        if self.list_page == 0 {
            return bad("list_page");
        }
        if self.max_shards_per_run == 0 {
            return bad("max_shards_per_run");
        }
        if self.max_inputs_per_shard == 0 {
            return bad("max_inputs_per_shard");
        }
        if self.job.redrive.is_some() || self.job.state.is_some() || self.job.start_at.is_some() {
            return Err(JobError::InvalidRequest(format!(
                "job `{}`: the template of a sharded job cannot set start_at, redrive or state (they belong to one input)",
                self.job.job_id
            )));
        }
        self.job.validate()
    }
}

fn default_inputs_per_shard() -> u32 {
    128
}

fn default_shard_bytes() -> u64 {
    64 << 20
}

/// What a sharded redrive reruns: the shards of an earlier job that failed or have failed
/// batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ShardedRedrive<S: SourceConfig> {
    /// The redrive's number: 1 for the first redrive of a job, 2 for a redrive of that, ...
    pub number: u32,
    /// The shards to rerun, in order.
    pub shards: Vec<RedriveShard<S>>,
}

/// One shard of a redrive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct RedriveShard<S: SourceConfig> {
    /// Its position among the shards of the original job.
    pub index: u64,
    /// Its inputs.
    pub inputs: Vec<Shard<S>>,
    /// Its failed batches, to rerun alone; empty: the shard failed as a whole and runs again.
    pub failed: Vec<FailedBatch<GroupOffset<S::Offset>>>,
}

/// What the parent workflow carries across continue-as-new: the report so far and where the
/// listing resumes. Shards running at the end of a run are finished first, so none is carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ShardedState<S: SourceConfig> {
    /// The report so far.
    pub report: ShardedReport<S>,
    /// The key of the last shard started: the listing resumes after it.
    pub after: Option<String>,
    /// The index of the next shard.
    pub next_index: u64,
    /// Inputs started so far (listed, or taken from an explicit list or a redrive).
    #[serde(default)]
    pub inputs_started: u64,
    /// Whether every input has been listed (and, with `after`, started).
    pub listing_done: bool,
    /// Paused by signal.
    pub paused: bool,
    /// The shards' in-flight limit, as last set.
    pub max_in_flight: u32,
    /// The shards' rate limit, as last set.
    pub max_records_per_s: Option<u32>,
    /// Shards at once, as last set.
    pub max_concurrent_shards: u32,
    /// When the job started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}
