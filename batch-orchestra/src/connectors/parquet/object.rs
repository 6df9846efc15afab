//! Parquet objects in a store: the [`ParquetObject`] source, read by ranged gets.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;
use parquet::file::metadata::PageIndexPolicy;

use super::source::{Input, ParquetReader, reader_options};
use crate::error::ConnectorError;

/// A Parquet object in an object store, read by row group as
/// [`ParquetFile`](super::ParquetFile) reads a file,
/// with ranged gets of the row groups and columns a batch needs.
///
/// ```
/// use batch_orchestra::connectors::parquet::ParquetObject;
///
/// let source = ParquetObject::new("s3://exports/people.parquet").option("region", "us-east-1");
/// assert_eq!(source.options["region"], "us-east-1");
/// ```
#[crate::batch_source(name = "parquet-object", reader = ParquetReader)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetObject {
    /// `s3://bucket/key`, `gs://bucket/key`, `az://container/blob` or `file:///path`.
    pub url: String,
    /// Store options without secrets: `endpoint`, `region`, `allow_http`, ...
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// The columns to read; all of them when empty.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl ParquetObject {
    /// The object at `url`, every column.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            options: Default::default(),
            columns: Vec::new(),
        }
    }

    /// Sets a store option (`endpoint`, `region`, `allow_http`, ...).
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Reads only these columns.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    async fn build_source(&self) -> Result<ParquetReader, ConnectorError> {
        let (store, path) = crate::store::store_for(&self.url, &self.options)?;
        let meta = store
            .head(&path)
            .await
            .map_err(|e| crate::store::classify(&self.url, e))?;
        let object = StoreObject {
            store,
            path,
            url: self.url.clone(),
            meta,
        };
        let metadata = ArrowReaderMetadata::load_async(&mut object.reader(), reader_options())
            .await
            .map_err(|e| {
                store_error(&self.url, e, |url, e| {
                    ConnectorError::config(format!("Parquet `{url}`: not a Parquet file: {e}"))
                })
            })?;
        ParquetReader::new(
            Input::Object(object),
            self.url.clone(),
            metadata,
            &self.columns,
        )
    }
}

/// An object, and the version of it whose metadata was read.
pub(super) struct StoreObject {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    url: String,
    meta: object_store::ObjectMeta,
}

impl StoreObject {
    /// A reader of the object for Parquet's async reader.
    pub(super) fn reader(&self) -> StoreReader {
        StoreReader {
            store: self.store.clone(),
            path: self.path.clone(),
            url: self.url.clone(),
            size: self.meta.size,
            etag: self.meta.e_tag.clone(),
        }
    }

    /// Whether the object is still the version that was read (same etag, or size and time).
    /// The object's version, for record ids.
    pub(super) fn version(&self) -> String {
        crate::connectors::object_store::object_version(&self.meta)
    }

    pub(super) async fn is_current(&self) -> bool {
        match self.store.head(&self.path).await {
            Ok(now) => crate::connectors::object_store::same_version(&self.meta, &now),
            Err(_) => false,
        }
    }
}

/// A failure of Parquet's async reader: the store's is retried; any other is `otherwise`'s.
pub(super) fn store_error(
    url: &str,
    e: ParquetError,
    otherwise: fn(&str, ParquetError) -> ConnectorError,
) -> ConnectorError {
    match e {
        ParquetError::External(e) => ConnectorError::transient(format!("Parquet `{url}`: {e}")),
        e => otherwise(url, e),
    }
}

/// An object read with ranged gets, for Parquet's async reader.
pub(super) struct StoreReader {
    store: Arc<dyn ObjectStore>,
    path: object_store::path::Path,
    url: String,
    size: u64,
    /// The version read: a replaced object is an error, not other bytes.
    etag: Option<String>,
}

impl parquet::arrow::async_reader::AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        Box::pin(async move {
            let etag = self.etag.as_deref();
            crate::store::read_pinned(&*self.store, &self.path, &self.url, range, etag)
                .await
                .map_err(|e| match e.kind() {
                    // Deterministic (the object was replaced): the batch fails as such.
                    crate::error::ErrorKind::Batch => ParquetError::General(e.to_string()),
                    _ => ParquetError::External(Box::new(e)),
                })
        })
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> futures::future::BoxFuture<
        'a,
        parquet::errors::Result<std::sync::Arc<parquet::file::metadata::ParquetMetaData>>,
    > {
        Box::pin(async move {
            let size = self.size;
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .with_offset_index_policy(PageIndexPolicy::Optional)
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(std::sync::Arc::new(metadata))
        })
    }
}
