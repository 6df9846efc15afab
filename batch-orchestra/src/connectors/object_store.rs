//! Objects in an object store: S3 (`s3://`), Google Cloud Storage (`gs://`), Azure Blob
//! Storage (`az://`) or a local file system (`file://`), read with ranged gets: CSV
//! (`CsvObject`, feature `csv`) and JSON Lines ([`JsonLinesObject`]).
//!
//! The record semantics are those of the local sources ([`CsvFile`](super::csv::CsvFile),
//! [`JsonLinesFile`](super::jsonl::JsonLinesFile)): one parser serves both.
//! Credentials come from the worker's environment (the standard `AWS_*`, `GOOGLE_*` and
//! `AZURE_*` variables), never from the request: options that look like secrets are refused.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

#[cfg(feature = "csv")]
use super::csv::{CsvOptions, CsvReader};
use super::input::ByteInput;
use super::jsonl::JsonLinesReader;
use crate::error::ConnectorError;
use crate::store::{ListedObject, bad_url, classify, list_objects, read_pinned, store_for};

/// A page of listed objects, each read by the config `source` makes of its URL.
fn shard_page<S>(
    found: Vec<ListedObject>,
    limit: usize,
    source: impl Fn(String) -> S,
) -> crate::connector::ShardPage<S> {
    let shards = found
        .into_iter()
        .map(|o| crate::connector::Shard {
            key: o.key,
            source: source(o.url),
            bytes: Some(o.bytes),
            // An object is never written in place: a new version is a new object, so its
            // last write is its creation, and no run tells it from a new object.
            times: Some(crate::connector::FileTimes {
                changed_ns: o.modified_ns,
                created_ns: None,
            }),
        })
        .collect();
    crate::connector::ShardPage::from_sorted(shards, limit)
}

/// A CSV object in an object store.
#[cfg(feature = "csv")]
///
/// ```
/// use batch_orchestra::connectors::object_store::CsvObject;
///
/// let source = CsvObject::new("s3://exports/people.csv")
///     .option("endpoint", "http://127.0.0.1:9000")
///     .option("region", "us-east-1");
/// assert_eq!(source.options["region"], "us-east-1");
/// ```
#[crate::batch_source(name = "csv-object", reader = CsvReader<ObjectInput>, shards = list)]
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

#[cfg(feature = "csv")]
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

    /// Lists the objects `url` matches (a glob after the bucket: `s3://bucket/in/*.csv`), for
    /// a sharded job.
    async fn list(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<crate::connector::ShardPage<Self>, ConnectorError> {
        let found = list_objects(&self.url, &self.options, after.as_deref(), limit).await?;
        Ok(shard_page(found, limit, |url| Self {
            url,
            options: self.options.clone(),
            csv: self.csv.clone(),
        }))
    }

    async fn build_source(&self) -> Result<CsvReader<ObjectInput>, ConnectorError> {
        // Bad options fail before the store is asked anything.
        self.csv.delimiter_byte(&self.url)?;
        let input = ObjectInput::open(&self.url, &self.options).await?;
        CsvReader::open(input, &self.csv).await
    }
}

/// A JSON Lines object in an object store: one JSON value a line, as
/// [`JsonLinesFile`](super::jsonl::JsonLinesFile) reads a local file.
///
/// ```
/// use batch_orchestra::connectors::object_store::JsonLinesObject;
///
/// let source = JsonLinesObject::new("s3://exports/events.jsonl").option("region", "us-east-1");
/// assert_eq!(source.options["region"], "us-east-1");
/// ```
#[crate::batch_source(name = "json-lines-object", reader = JsonLinesReader<ObjectInput>, shards = list)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonLinesObject {
    /// `s3://bucket/key`, `gs://bucket/key`, `az://container/blob` or `file:///path`.
    pub url: String,
    /// Store options without secrets: `endpoint`, `region`, `allow_http`, ...
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl JsonLinesObject {
    /// The object at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            options: BTreeMap::new(),
        }
    }

    /// Sets a store option (`endpoint`, `region`, `allow_http`, ...).
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Lists the objects `url` matches (a glob after the bucket), for a sharded job.
    async fn list(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<crate::connector::ShardPage<Self>, ConnectorError> {
        let found = list_objects(&self.url, &self.options, after.as_deref(), limit).await?;
        Ok(shard_page(found, limit, |url| Self {
            url,
            options: self.options.clone(),
        }))
    }

    async fn build_source(&self) -> Result<JsonLinesReader<ObjectInput>, ConnectorError> {
        let input = ObjectInput::open(&self.url, &self.options).await?;
        Ok(JsonLinesReader::new(input))
    }
}

/// An object read with ranged gets.
pub struct ObjectInput {
    store: Arc<dyn ObjectStore>,
    path: Path,
    url: String,
    len: u64,
    /// The object's metadata at open: its etag (or size and modification time) tells whether
    /// it was replaced since.
    meta: ObjectMeta,
}

/// Whether `now` describes the same version of the object as `then`: the same etag when the
/// store gives etags, else the same size and modification time.
pub(crate) fn same_version(then: &ObjectMeta, now: &ObjectMeta) -> bool {
    match (&then.e_tag, &now.e_tag) {
        (Some(then_tag), Some(now_tag)) => then_tag == now_tag && then.size == now.size,
        _ => then.size == now.size && then.last_modified == now.last_modified,
    }
}

/// An object's version for record ids: its etag, else its size and modification time.
pub(crate) fn object_version(meta: &ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => format!("{}:{tag}", meta.size),
        None => format!(
            "{}:{}",
            meta.size,
            meta.last_modified.timestamp_nanos_opt().unwrap_or(0)
        ),
    }
}

impl ObjectInput {
    pub(crate) async fn open(
        url: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<Self, ConnectorError> {
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
            meta,
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

    fn version(&self) -> Option<String> {
        Some(object_version(&self.meta))
    }

    async fn read(&self, start: u64, end: u64) -> Result<Vec<u8>, ConnectorError> {
        if start >= end {
            return Ok(Vec::new());
        }
        let etag = self.meta.e_tag.as_deref();
        let bytes = read_pinned(&*self.store, &self.path, &self.url, start..end, etag).await?;
        Ok(bytes.to_vec())
    }

    /// Heads the object again: it is current while its etag (or size and modification time)
    /// is the one seen at open.
    async fn is_current(&self) -> bool {
        match self.store.head(&self.path).await {
            Ok(now) => same_version(&self.meta, &now),
            Err(_) => false,
        }
    }
}

#[cfg(all(test, feature = "csv"))]
mod tests {
    use super::*;
    use crate::connector::{Source, SourceConfig};
    use crate::error::ErrorKind;
    use std::time::{Duration, SystemTime};

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "batch-orchestra-object-tests-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// Writes `text` over the file and moves its modification time on, so its etag changes
    /// even within the file system's time resolution.
    fn rewrite(path: &std::path::Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
    }

    #[tokio::test]
    async fn an_object_is_not_current_once_replaced_or_removed() {
        let path = temp_path("people.csv");
        std::fs::write(&path, "id,name\n1,a\n").unwrap();
        let config = CsvObject::new(format!("file://{}", path.display()));

        let source = config.build().await.unwrap();
        assert!(source.is_current().await, "an untouched object is current");

        // Rewritten with as many bytes: a new etag.
        rewrite(&path, "id,name\n2,b\n");
        assert!(!source.is_current().await, "an object with a new etag");

        let source = config.build().await.unwrap();
        assert!(source.is_current().await);
        std::fs::remove_file(&path).unwrap();
        assert!(!source.is_current().await, "a removed object");
    }

    #[tokio::test]
    async fn a_range_of_a_replaced_object_is_a_batch_error_naming_it() {
        let path = temp_path("replaced.csv");
        std::fs::write(&path, "id,name\n1,a\n2,b\n").unwrap();
        let url = format!("file://{}", path.display());
        let input = ObjectInput::open(&url, &BTreeMap::new()).await.unwrap();
        assert_eq!(input.read(8, 12).await.unwrap(), b"1,a\n");

        // Replaced with as many bytes: another version.
        rewrite(&path, "id,name\n9,z\n8,y\n");
        let err = input.read(8, 12).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Batch, "{err}");
        assert!(
            err.to_string()
                .contains("replaced.csv: the object was replaced"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_line_break_delimiter_is_refused_before_the_store_is_asked() {
        let url = "s3://exports/people.csv";
        let config = CsvObject::new(url).csv(CsvOptions {
            delimiter: '\n',
            ..CsvOptions::default()
        });
        let err = match config.build().await {
            Ok(_) => panic!("a line break delimiter was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            err.message(),
            "CSV `s3://exports/people.csv`: the delimiter cannot be a line break or a quote (got '\\n'); use ',' ';' '\\t' or '|'"
        );
    }

    #[test]
    fn versions_compare_etags_or_else_size_and_time() {
        let then = ObjectMeta {
            location: Path::from("people.csv"),
            last_modified: SystemTime::UNIX_EPOCH.into(),
            size: 12,
            e_tag: Some("\"v1\"".to_owned()),
            version: None,
        };
        assert!(same_version(&then, &then.clone()));
        let retagged = ObjectMeta {
            e_tag: Some("\"v2\"".to_owned()),
            ..then.clone()
        };
        assert!(!same_version(&then, &retagged));
        let touched = ObjectMeta {
            last_modified: (SystemTime::UNIX_EPOCH + Duration::from_secs(60)).into(),
            ..then.clone()
        };
        assert!(same_version(&then, &touched), "the etag decides");
        let untagged = ObjectMeta {
            e_tag: None,
            ..then.clone()
        };
        assert!(same_version(&untagged, &untagged.clone()));
        let untagged_touched = ObjectMeta {
            e_tag: None,
            ..touched
        };
        assert!(!same_version(&untagged, &untagged_touched));
        let untagged_longer = ObjectMeta {
            size: 13,
            ..untagged.clone()
        };
        assert!(!same_version(&untagged, &untagged_longer));
    }
}
