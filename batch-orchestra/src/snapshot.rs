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
    /// `<url>/<job id>.json` in an object store (`s3://bucket/reports`, `gs://...`,
    /// `az://...`), with credentials from the worker's environment. Feature `object-store`.
    ObjectStore {
        /// The bucket and prefix.
        url: String,
        /// Store options without secrets: `endpoint`, `region`, `allow_http`, ...
        options: std::collections::BTreeMap<String, String>,
    },
}

impl SnapshotTarget {
    /// Reports go to `<path>/<job id>.json`.
    pub fn directory(path: impl Into<String>) -> Self {
        Self::Directory { path: path.into() }
    }

    /// Reports go to `<url>/<job id>.json` in an object store.
    pub fn object_store(
        url: impl Into<String>,
        options: std::collections::BTreeMap<String, String>,
    ) -> Self {
        Self::ObjectStore {
            url: url.into(),
            options,
        }
    }

    /// Builds the snapshotter for this target.
    pub fn build(&self) -> Result<Box<dyn Snapshotter>, ConnectorError> {
        match self {
            Self::Directory { path } => Ok(Box::new(DirectorySnapshotter {
                dir: PathBuf::from(path),
            })),
            #[cfg(feature = "object-store")]
            Self::ObjectStore { url, options } => {
                let (store, prefix) = crate::store::store_for(url, options)?;
                Ok(Box::new(ObjectStoreSnapshotter {
                    store,
                    prefix,
                    url: url.clone(),
                }))
            }
            #[cfg(not(feature = "object-store"))]
            Self::ObjectStore { url, .. } => Err(ConnectorError::config(format!(
                "snapshots to `{url}` need the `object-store` feature of batch-orchestra on the worker"
            ))),
        }
    }
}

/// Saves job reports. Implement it to send reports somewhere new.
pub trait Snapshotter: Send + Sync {
    /// Saves `report` (JSON) for `job_id`, replacing any earlier one.
    fn save<'a>(
        &'a self,
        job_id: &'a str,
        report: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectorError>>;
}

/// Writes `<dir>/<job id>.json`, atomically (a temporary file, then a rename).
#[derive(Debug, Clone)]
pub struct DirectorySnapshotter {
    dir: PathBuf,
}

/// `job_id` as a file name: characters other than ASCII letters, digits, `-`, `_` and `.`
/// become `_`. Shared by every connector that names files after jobs.
pub(crate) fn file_safe(job_id: &str) -> String {
    job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl DirectorySnapshotter {
    /// The file a job's report goes to.
    pub fn file_for(dir: &Path, job_id: &str) -> PathBuf {
        dir.join(format!("{}.json", file_safe(job_id)))
    }
}

impl Snapshotter for DirectorySnapshotter {
    fn save<'a>(
        &'a self,
        job_id: &'a str,
        report: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            let dir = &self.dir;
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                ConnectorError::io(format!("snapshot directory {}", dir.display()), &e)
            })?;
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

/// Writes `<prefix>/<job id>.json` in an object store (one put: atomic).
#[cfg(feature = "object-store")]
pub struct ObjectStoreSnapshotter {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    prefix: object_store::path::Path,
    url: String,
}

#[cfg(feature = "object-store")]
impl Snapshotter for ObjectStoreSnapshotter {
    fn save<'a>(
        &'a self,
        job_id: &'a str,
        report: &'a [u8],
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        use object_store::ObjectStoreExt;
        Box::pin(async move {
            let name = format!("{}.json", file_safe(job_id));
            let path = self.prefix.clone().join(name.as_str());
            self.store
                .put(&path, report.to_vec().into())
                .await
                .map(drop)
                .map_err(|e| {
                    crate::store::classify(&format!("{}/{name}", self.url.trim_end_matches('/')), e)
                })
        })
    }
}
