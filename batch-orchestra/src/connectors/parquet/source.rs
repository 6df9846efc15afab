//! The Parquet source: a file read by row group, with projection.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};

use super::super::input::FileStamp;
use crate::connector::{BatchRange, Plan, PlannedBatch, Position, Positioned, ReadBatch, Source};
use crate::error::ConnectorError;

/// Where a Parquet source resumes: a row of a row group (both from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetOffset {
    /// The row group.
    pub row_group: u32,
    /// The row within the row group.
    pub row: u64,
}

/// A Parquet file on the worker's file system, read by row group.
///
/// Each batch is a range of rows, which may span row groups; reading decodes only the row
/// groups and the columns it needs (set [`columns`](Self::columns) to read fewer). Rows become
/// JSON objects in the file's column order: integers and floats as numbers, strings, booleans,
/// timestamps and dates as ISO 8601 strings, lists and structs as arrays and objects, nulls as
/// `null` (a column that is null in a row is left out of that row's object).
///
/// ```
/// use batch_orchestra::connectors::parquet::ParquetFile;
///
/// let source = ParquetFile::new("exports/people.parquet").columns(["id", "name"]);
/// assert_eq!(source.columns, ["id", "name"]);
/// ```
#[crate::batch_source(name = "parquet-file", reader = ParquetReader)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetFile {
    /// The file's path on the worker.
    pub path: String,
    /// The columns to read; all of them when empty.
    #[serde(default)]
    pub columns: Vec<String>,
}

impl ParquetFile {
    /// The file at `path`, every column.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            columns: Vec::new(),
        }
    }

    /// Reads only these columns.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = columns.into_iter().map(Into::into).collect();
        self
    }

    async fn build_source(&self) -> Result<ParquetReader, ConnectorError> {
        let path = self.path.clone();
        let (metadata, stamp) = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)
                .map_err(|e| ConnectorError::io(format!("Parquet `{path}`"), &e))?;
            let stamp = file
                .metadata()
                .map(|m| FileStamp::of(&m))
                .map_err(|e| ConnectorError::io(format!("Parquet `{path}`"), &e))?;
            let metadata =
                ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
                    ConnectorError::config(format!("Parquet `{path}`: not a Parquet file: {e}"))
                })?;
            Ok::<_, ConnectorError>((metadata, stamp))
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("Parquet `{}`: {e}", self.path)))??;
        ParquetReader::new(
            Input::Local(stamp),
            self.path.clone(),
            metadata,
            &self.columns,
        )
    }
}

/// A Parquet object in an object store, read by row group as [`ParquetFile`] reads a file,
/// with ranged gets of the row groups and columns a batch needs.
///
/// ```
/// use batch_orchestra::connectors::parquet::ParquetObject;
///
/// let source = ParquetObject::new("s3://exports/people.parquet").option("region", "us-east-1");
/// assert_eq!(source.options["region"], "us-east-1");
/// ```
#[cfg(feature = "object-store")]
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

#[cfg(feature = "object-store")]
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
        use object_store::ObjectStoreExt;
        let (store, path) = crate::store::store_for(&self.url, &self.options)?;
        let meta = store
            .head(&path)
            .await
            .map_err(|e| crate::store::classify(&self.url, e))?;
        let mut reader = StoreReader {
            store: store.clone(),
            path: path.clone(),
            size: meta.size,
        };
        let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(|e| match e {
                // The store failed: worth retrying.
                parquet::errors::ParquetError::External(e) => {
                    ConnectorError::transient(format!("Parquet `{}`: {e}", self.url))
                }
                e => ConnectorError::config(format!(
                    "Parquet `{}`: not a Parquet file: {e}",
                    self.url
                )),
            })?;
        let input = Input::Object {
            store,
            path,
            size: meta.size,
            meta,
        };
        ParquetReader::new(input, self.url.clone(), metadata, &self.columns)
    }
}

/// An object read with ranged gets, for Parquet's async reader.
#[cfg(feature = "object-store")]
struct StoreReader {
    store: std::sync::Arc<dyn object_store::ObjectStore>,
    path: object_store::path::Path,
    size: u64,
}

#[cfg(feature = "object-store")]
impl parquet::arrow::async_reader::AsyncFileReader for StoreReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> futures::future::BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        use object_store::ObjectStoreExt;
        Box::pin(async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
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
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(std::sync::Arc::new(metadata))
        })
    }
}

/// Where a Parquet source's bytes are, and the version that was read.
enum Input {
    /// A local file, at the reader's path.
    Local(FileStamp),
    /// An object.
    #[cfg(feature = "object-store")]
    Object {
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        path: object_store::path::Path,
        size: u64,
        meta: object_store::ObjectMeta,
    },
}

/// A built Parquet source: the file's metadata, read once.
pub struct ParquetReader {
    input: Input,
    /// The file's path or the object's URL.
    path: String,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    /// Rows in each row group.
    row_groups: Vec<u64>,
}

impl ParquetReader {
    fn new(
        input: Input,
        path: String,
        metadata: ArrowReaderMetadata,
        columns: &[String],
    ) -> Result<Self, ConnectorError> {
        let schema = metadata.schema();
        let mut roots = Vec::with_capacity(columns.len());
        for column in columns {
            let Some((index, _)) = schema.column_with_name(column) else {
                let known: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(ConnectorError::config(format!(
                    "Parquet `{path}` has no column `{column}` (its columns: {})",
                    known.join(", ")
                )));
            };
            roots.push(index);
        }
        let projection = if roots.is_empty() {
            ProjectionMask::all()
        } else {
            ProjectionMask::roots(metadata.parquet_schema(), roots)
        };
        let row_groups = metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows().max(0) as u64)
            .collect();
        Ok(Self {
            input,
            path,
            metadata,
            projection,
            row_groups,
        })
    }

    /// `at` moved past empty row groups and the ends of row groups.
    fn normalize(&self, mut at: ParquetOffset) -> ParquetOffset {
        while (at.row_group as usize) < self.row_groups.len()
            && at.row >= self.row_groups[at.row_group as usize]
        {
            at = ParquetOffset {
                row_group: at.row_group + 1,
                row: 0,
            };
        }
        at
    }
}

impl Source for ParquetReader {
    type Record = Value;
    type Offset = ParquetOffset;

    async fn plan(
        &self,
        from: Option<&ParquetOffset>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<ParquetOffset>, ConnectorError> {
        let start = from.copied().unwrap_or(ParquetOffset {
            row_group: 0,
            row: 0,
        });
        let mut at = self.normalize(start);
        let mut batch_start = start;
        let mut batches = Vec::new();
        while (at.row_group as usize) < self.row_groups.len() && batches.len() < max_batches {
            let mut records = 0;
            while records < batch_size && (at.row_group as usize) < self.row_groups.len() {
                let left = self.row_groups[at.row_group as usize] - at.row;
                let take = left.min(batch_size - records);
                records += take;
                at = self.normalize(ParquetOffset {
                    row_group: at.row_group,
                    row: at.row + take,
                });
            }
            batches.push(PlannedBatch {
                start: batch_start,
                end: at,
                records,
            });
            batch_start = at;
        }
        Ok(Plan {
            batches,
            end_of_source: (at.row_group as usize) >= self.row_groups.len(),
        })
    }

    async fn read(
        &self,
        range: &BatchRange<ParquetOffset>,
    ) -> Result<ReadBatch<Value>, ConnectorError> {
        if range.records == 0 {
            return Ok(ReadBatch::default());
        }
        let start = self.normalize(range.start);
        let last_group = if range.end.row == 0 {
            range.end.row_group.saturating_sub(1)
        } else {
            range.end.row_group
        };
        let groups: Vec<usize> = (start.row_group..=last_group).map(|g| g as usize).collect();
        let selection = RowSelection::from(vec![
            RowSelector::skip(start.row as usize),
            RowSelector::select(range.records as usize),
        ]);
        let (path, metadata, projection) = (
            self.path.clone(),
            self.metadata.clone(),
            self.projection.clone(),
        );
        #[cfg(feature = "object-store")]
        if let Input::Object {
            store,
            path: key,
            size,
            ..
        } = &self.input
        {
            use futures::TryStreamExt;
            let reader = StoreReader {
                store: store.clone(),
                path: key.clone(),
                size: *size,
            };
            let failed = |e: parquet::errors::ParquetError| match e {
                parquet::errors::ParquetError::External(e) => {
                    ConnectorError::transient(format!("Parquet `{path}`: {e}"))
                }
                e => ConnectorError::batch(format!("Parquet `{path}`: {e}")),
            };
            let batches: Vec<arrow_array::RecordBatch> =
                parquet::arrow::ParquetRecordBatchStreamBuilder::new_with_metadata(
                    reader, metadata,
                )
                .with_row_groups(groups)
                .with_row_selection(selection)
                .with_projection(projection)
                .build()
                .map_err(failed)?
                .try_collect()
                .await
                .map_err(failed)?;
            let mut rows = Vec::with_capacity(range.records as usize);
            for batch in &batches {
                rows.extend(to_json_rows(batch).map_err(|e| {
                    ConnectorError::batch(format!(
                        "Parquet `{path}`: cannot turn rows into JSON: {e}"
                    ))
                })?);
            }
            return self.positioned(range, rows);
        }
        let rows = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, ConnectorError> {
            let file = std::fs::File::open(&path)
                .map_err(|e| ConnectorError::io(format!("Parquet `{path}`"), &e))?;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
                .with_row_groups(groups)
                .with_row_selection(selection)
                .with_projection(projection)
                .build()
                .map_err(|e| ConnectorError::batch(format!("Parquet `{path}`: {e}")))?;
            let mut out = Vec::new();
            for batch in reader {
                let batch =
                    batch.map_err(|e| ConnectorError::batch(format!("Parquet `{path}`: {e}")))?;
                out.extend(to_json_rows(&batch).map_err(|e| {
                    ConnectorError::batch(format!(
                        "Parquet `{path}`: cannot turn rows into JSON: {e}"
                    ))
                })?);
            }
            Ok(out)
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("Parquet `{}`: {e}", self.path)))??;
        self.positioned(range, rows)
    }

    /// The file (or object) is current while it is the version whose metadata was read: a
    /// file rewritten in place or replaced, or an object with a new etag, is built again.
    async fn is_current(&self) -> bool {
        match &self.input {
            Input::Local(stamp) => {
                let path = self.path.clone();
                let now = tokio::task::spawn_blocking(move || std::fs::metadata(&path)).await;
                matches!(now, Ok(Ok(meta)) if FileStamp::of(&meta) == *stamp)
            }
            #[cfg(feature = "object-store")]
            Input::Object {
                store, path, meta, ..
            } => {
                use object_store::ObjectStoreExt;
                match store.head(path).await {
                    Ok(now) => crate::connectors::object_store::same_version(meta, &now),
                    Err(_) => false,
                }
            }
        }
    }
}

impl ParquetReader {
    /// The rows read for `range`, with their positions; a count other than the plan's is a
    /// batch error.
    fn positioned(
        &self,
        range: &BatchRange<ParquetOffset>,
        rows: Vec<Value>,
    ) -> Result<ReadBatch<Value>, ConnectorError> {
        if rows.len() as u64 != range.records {
            return Err(ConnectorError::batch(format!(
                "Parquet `{}`: rows from row group {} row {} hold {} rows where the plan counted {}: the file changed after planning",
                self.path,
                range.start.row_group,
                range.start.row,
                rows.len(),
                range.records
            )));
        }
        let records = rows
            .into_iter()
            .zip(range.first_record..)
            .map(|(value, record)| Positioned {
                position: Position::at(record),
                value,
            })
            .collect();
        Ok(ReadBatch {
            records,
            errors: Vec::new(),
        })
    }
}

/// A record batch as JSON objects, one a row.
pub(crate) fn to_json_rows(
    batch: &arrow_array::RecordBatch,
) -> Result<Vec<Value>, Box<dyn std::error::Error + Send + Sync>> {
    let mut bytes = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut bytes);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    let mut rows = Vec::with_capacity(batch.num_rows());
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        rows.push(serde_json::from_slice(line)?);
    }
    // A row whose columns are all null is written as `{}`; it is still a row.
    Ok(rows)
}
