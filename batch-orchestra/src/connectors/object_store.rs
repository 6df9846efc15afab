//! CSV objects in an object store: S3 (`s3://`), Google Cloud Storage (`gs://`), Azure Blob
//! Storage (`az://`) or a local file system (`file://`), read with ranged gets.
//!
//! The record semantics are those of [`CsvFile`](super::csv::CsvFile): one parser serves both.
//! Credentials come from the worker's environment (the standard `AWS_*`, `GOOGLE_*` and
//! `AZURE_*` variables), never from the request: options that look like secrets are refused.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::csv::{ByteInput, CsvOptions, CsvReader};
use crate::error::ConnectorError;
use crate::store::{bad_url, classify, store_for};

/// A CSV object in an object store.
///
/// ```
/// use batch_orchestra::connectors::object_store::CsvObject;
///
/// let source = CsvObject::new("s3://exports/people.csv")
///     .option("endpoint", "http://127.0.0.1:9000")
///     .option("region", "us-east-1");
/// assert_eq!(source.options["region"], "us-east-1");
/// ```
#[crate::batch_source(name = "csv-object", reader = CsvReader<ObjectInput>)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvObject {
    /// `s3://bucket/key`, `gs://bucket/key`, `az://container/blob` or `file:///path`.
    pub url: String,
    /// Store options without secrets: `endpoint`, `region`, `allow_http`, ...
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Parsing options.
    #[serde(default)]
    pub csv: CsvOptions,
}

impl CsvObject {
    /// The object at `url`, comma-separated, with a header.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            options: BTreeMap::new(),
            csv: CsvOptions::default(),
        }
    }

    /// Sets a store option (`endpoint`, `region`, `allow_http`, ...).
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Sets the parsing options.
    pub fn csv(mut self, csv: CsvOptions) -> Self {
        self.csv = csv;
        self
    }

    async fn build_source(&self) -> Result<CsvReader<ObjectInput>, ConnectorError> {
        let input = ObjectInput::open(&self.url, &self.options).await?;
        CsvReader::open(input, &self.csv).await
    }
}

/// An object read with ranged gets.
pub struct ObjectInput {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    len: u64,
}

impl ObjectInput {
    async fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        let (store, path) = store_for(url, options)?;
        if path.as_ref().is_empty() {
            return Err(bad_url(url, "no object name after the bucket"));
        }
        let meta = store.head(&path).await.map_err(|e| classify(url, e))?;
        Ok(Self {
            store,
            path,
            url: url.to_owned(),
            len: meta.size,
        })
    }
}

impl ByteInput for ObjectInput {
    fn name(&self) -> &str {
        &self.url
    }

    fn len(&self) -> u64 {
        self.len
    }

    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, ConnectorError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let bytes = self
            .store
            .get_range(&self.path, start..end)
            .await
            .map_err(|e| classify(&self.url, e))?;
        Ok(bytes.to_vec())
    }
}
