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

/// Option keys that would put a secret into workflow history.
const SECRET_WORDS: [&str; 7] = ["secret", "password", "token", "key", "sas", "credential", "signature"];

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
        Self { url: url.into(), options: BTreeMap::new(), csv: CsvOptions::default() }
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

fn bad_url(url: &str, why: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::config(format!("bad object URL `{url}`: {why}"))
}

/// Builds the store for `url` from the worker's environment and the request's options.
fn store_for(url: &str, options: &BTreeMap<String, String>) -> Result<(Arc<dyn ObjectStore>, Path), ConnectorError> {
    for key in options.keys() {
        if SECRET_WORDS.iter().any(|w| key.to_ascii_lowercase().contains(w)) {
            return Err(ConnectorError::config(format!(
                "`{url}`: the option `{key}` looks like a credential; credentials come from the worker's environment, never from the job request"
            )));
        }
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad_url(url, "expected s3://, gs://, az:// or file://"))?;
    let option_error = |key: &str, e: object_store::Error| bad_url(url, format!("option `{key}`: {e}"));
    let key_path = |rest: &str| -> Result<Path, ConnectorError> {
        let (_, key) = rest.split_once('/').ok_or_else(|| bad_url(url, "no object name after the bucket"))?;
        Path::parse(key).map_err(|e| bad_url(url, e))
    };
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad_url(url, e))?)
        }
        "gs" => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad_url(url, e))?)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url);
            for (k, v) in options {
                b = b.with_config(k.parse().map_err(|e| option_error(k, e))?, v);
            }
            Arc::new(b.build().map_err(|e| bad_url(url, e))?)
        }
        "file" => {
            let path = Path::from_filesystem_path(rest).map_err(|e| bad_url(url, e))?;
            return Ok((Arc::new(object_store::local::LocalFileSystem::new()), path));
        }
        other => return Err(bad_url(url, format!("unknown scheme `{other}`; expected s3, gs, az or file"))),
    };
    Ok((store, key_path(rest)?))
}

/// Missing objects and refused credentials are configuration errors; the rest is retried.
fn classify(url: &str, e: object_store::Error) -> ConnectorError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => ConnectorError::config(format!("{url}: no such object")),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } | E::InvalidPath { .. } => {
            ConnectorError::config(format!("{url}: {e}"))
        }
        e => ConnectorError::transient(format!("{url}: {e}")),
    }
}

impl ObjectInput {
    async fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        let (store, path) = store_for(url, options)?;
        let meta = store.head(&path).await.map_err(|e| classify(url, e))?;
        Ok(Self { store, path, url: url.to_owned(), len: meta.size })
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
        let bytes = self.store.get_range(&self.path, start..end).await.map_err(|e| classify(&self.url, e))?;
        Ok(bytes.to_vec())
    }
}
