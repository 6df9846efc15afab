//! Snapshots: saving the job report where people and tools can read it.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::error::ConnectorError;

/// Where job reports are saved. Reports are JSON, one file per job, overwritten as the job
/// goes on: at each continue-as-new, on completion and on failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SnapshotTarget {
    /// `<path>/<job id>.json` on the worker's file system.
    Directory {
        /// The directory; created when missing.
        path: String,
    },
}

impl SnapshotTarget {
    /// Reports go to `<path>/<job id>.json`.
    pub fn directory(path: impl Into<String>) -> Self {
        Self::Directory { path: path.into() }
    }

    /// Builds the snapshotter for this target.
    pub fn build(&self) -> Box<dyn Snapshotter> {
        match self {
            Self::Directory { path } => Box::new(DirectorySnapshotter { dir: PathBuf::from(path) }),
        }
    }
}

/// Saves job reports. Implement it to send reports somewhere new.
pub trait Snapshotter: Send + Sync {
    /// Saves `report` (JSON) for `job_id`, replacing any earlier one.
    fn save<'a>(&'a self, job_id: &'a str, report: &'a [u8]) -> BoxFuture<'a, Result<(), ConnectorError>>;
}

/// Writes `<dir>/<job id>.json`, atomically (a temporary file, then a rename).
#[derive(Debug, Clone)]
pub struct DirectorySnapshotter {
    dir: PathBuf,
}

impl DirectorySnapshotter {
    /// The file a job's report goes to.
    pub fn file_for(dir: &Path, job_id: &str) -> PathBuf {
        let safe: String = job_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        dir.join(format!("{safe}.json"))
    }
}

impl Snapshotter for DirectorySnapshotter {
    fn save<'a>(&'a self, job_id: &'a str, report: &'a [u8]) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let dir = &self.dir;
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| ConnectorError::io(format!("snapshot directory {}", dir.display()), &e))?;
            let file = Self::file_for(dir, job_id);
            let tmp = file.with_extension("json.tmp");
            tokio::fs::write(&tmp, report)
                .await
                .map_err(|e| ConnectorError::io(format!("snapshot file {}", tmp.display()), &e))?;
            tokio::fs::rename(&tmp, &file)
                .await
                .map_err(|e| ConnectorError::io(format!("snapshot file {}", file.display()), &e))
        })
    }
}
