//! The Parquet source: a file read by row group, with projection.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::file::metadata::PageIndexPolicy;

use super::super::input::FileStamp;
use super::json::to_json_rows;
#[cfg(feature = "object-store")]
use super::object::{StoreObject, store_error};
use crate::connector::{BatchRange, Plan, PlannedBatch, ReadBatch, Source};
use crate::error::ConnectorError;
use crate::record::{Position, Positioned};

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
            let metadata = ArrowReaderMetadata::load(&file, reader_options()).map_err(|e| {
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

/// A local Parquet file read as Arrow record batches, for pipelines that work on columns: each
/// record is one [`RecordBatch`](arrow_array::RecordBatch) of up to `batch_size` rows (the job's
/// batch size), so the job's counts are record batches, not rows.
///
/// ```
/// use batch_orchestra::connectors::parquet::ParquetColumns;
///
/// let source = ParquetColumns::new("exports/people.parquet").columns(["id", "score"]);
/// assert_eq!(source.file.columns, ["id", "score"]);
/// ```
#[crate::batch_source(name = "parquet-columns", reader = ParquetColumnsReader)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetColumns {
    /// The file, and the columns to read.
    pub file: ParquetFile,
}

impl ParquetColumns {
    /// The file at `path`, every column.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            file: ParquetFile::new(path),
        }
    }

    /// Reads only these columns.
    pub fn columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.file = self.file.columns(columns);
        self
    }

    async fn build_source(&self) -> Result<ParquetColumnsReader, ConnectorError> {
        Ok(ParquetColumnsReader(self.file.build_source().await?))
    }
}

/// A built [`ParquetColumns`] source.
pub struct ParquetColumnsReader(ParquetReader);

impl Source for ParquetColumnsReader {
    type Record = arrow_array::RecordBatch;
    type Offset = ParquetOffset;

    async fn plan(
        &self,
        from: Option<&ParquetOffset>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<ParquetOffset>, ConnectorError> {
        let mut plan = self.0.plan(from, batch_size, max_batches).await?;
        for batch in &mut plan.batches {
            // One record batch a range.
            batch.records = u64::from(batch.records > 0);
        }
        Ok(plan)
    }

    async fn read(
        &self,
        range: &BatchRange<ParquetOffset>,
    ) -> Result<ReadBatch<arrow_array::RecordBatch>, ConnectorError> {
        let rows = self.0.rows_between(range.start, range.end);
        if range.records == 0 || rows == 0 {
            return Ok(ReadBatch::default());
        }
        let batches = self.0.decode(range.start, rows).await?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => return Ok(ReadBatch::default()),
        };
        let batch = arrow_select::concat::concat_batches(&schema, &batches)
            .map_err(|e| ConnectorError::batch(format!("Parquet `{}`: {e}", self.0.path)))?;
        if batch.num_rows() as u64 != rows {
            return Err(ConnectorError::batch(format!(
                "Parquet `{}`: {} rows where the plan counted {rows}: the file changed after planning",
                self.0.path,
                batch.num_rows()
            )));
        }
        Ok(ReadBatch {
            records: vec![Positioned {
                position: Position::at(range.first_record),
                value: batch,
            }],
            errors: Vec::new(),
        })
    }

    async fn is_current(&self) -> bool {
        self.0.is_current().await
    }

    fn identity(&self) -> Option<String> {
        self.0.identity()
    }
}

/// Metadata with the offset index where the file has one: a batch inside a large row group
/// then decodes only its own pages, not the whole row group's column chunks.
pub(super) fn reader_options() -> ArrowReaderOptions {
    ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional)
}

/// Where a Parquet source's bytes are, and the version that was read.
pub(super) enum Input {
    /// A local file, at the reader's path.
    Local(FileStamp),
    /// An object.
    #[cfg(feature = "object-store")]
    Object(StoreObject),
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
    /// The row groups decoded whole lately, oldest first.
    groups: std::sync::Mutex<GroupCache>,
}

/// Decoded row groups, each shared by the batches that wait for it.
type GroupCache = std::collections::VecDeque<(
    u32,
    Arc<tokio::sync::OnceCell<Arc<arrow_array::RecordBatch>>>,
)>;

/// Row groups up to this size (uncompressed, as the file's metadata says) are decoded whole.
const CACHED_GROUP_BYTES: u64 = 32 << 20;
/// How many decoded row groups a reader keeps.
const CACHED_GROUPS: usize = 4;

impl ParquetReader {
    pub(super) fn new(
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
            groups: Default::default(),
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
        let batches = self.decode(range.start, range.records).await?;
        let mut rows = Vec::with_capacity(range.records as usize);
        for batch in &batches {
            rows.extend(to_json_rows(batch).map_err(|e| {
                ConnectorError::batch(format!(
                    "Parquet `{}`: cannot turn rows into JSON: {e}",
                    self.path
                ))
            })?);
        }
        self.positioned(range, rows)
    }

    fn identity(&self) -> Option<String> {
        match &self.input {
            Input::Local(stamp) => Some(stamp.version()),
            #[cfg(feature = "object-store")]
            Input::Object(object) => Some(object.version()),
        }
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
            Input::Object(object) => object.is_current().await,
        }
    }
}

impl ParquetReader {
    /// Decodes `rows` rows from `start`, with the projection, as Arrow record batches.
    ///
    /// Pages are the smallest unit Parquet decodes, and a page often holds a whole row
    /// group's column: so row groups of at most [`CACHED_GROUP_BYTES`] are decoded whole,
    /// once, and kept (the last [`CACHED_GROUPS`] of them), and each batch is a slice of them;
    /// larger row groups are decoded per batch.
    async fn decode(
        &self,
        start: ParquetOffset,
        rows: u64,
    ) -> Result<Vec<arrow_array::RecordBatch>, ConnectorError> {
        let mut at = self.normalize(start);
        let end = self.advance(at, rows);
        let groups = self.metadata.metadata().row_groups();
        let small = (at.row_group..=end.row_group.min(groups.len().saturating_sub(1) as u32))
            .all(|g| groups[g as usize].total_byte_size() as u64 <= CACHED_GROUP_BYTES);
        if !small {
            return self.decode_range(at, rows).await;
        }
        let mut out = Vec::new();
        let mut left = rows;
        while left > 0 && (at.row_group as usize) < self.row_groups.len() {
            let group = self.whole_group(at.row_group).await?;
            let take = (self.row_groups[at.row_group as usize] - at.row).min(left);
            out.push(group.slice(at.row as usize, take as usize));
            left -= take;
            at = self.normalize(ParquetOffset {
                row_group: at.row_group,
                row: at.row + take,
            });
        }
        Ok(out)
    }

    /// Row group `g`, decoded whole (projected), from the cache or decoded once for every
    /// batch that waits for it.
    async fn whole_group(&self, g: u32) -> Result<Arc<arrow_array::RecordBatch>, ConnectorError> {
        let cell = {
            let mut cache = self.groups.lock().unwrap_or_else(|p| p.into_inner());
            match cache.iter().find(|(group, _)| *group == g) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell = Arc::new(tokio::sync::OnceCell::new());
                    cache.push_back((g, cell.clone()));
                    if cache.len() > CACHED_GROUPS {
                        cache.pop_front();
                    }
                    cell
                }
            }
        };
        cell.get_or_try_init(|| async {
            let rows = self.row_groups[g as usize];
            let batches = self
                .decode_range(
                    ParquetOffset {
                        row_group: g,
                        row: 0,
                    },
                    rows,
                )
                .await?;
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => {
                    return Err(ConnectorError::batch(format!(
                        "Parquet `{}`: row group {g} decoded to nothing",
                        self.path
                    )));
                }
            };
            arrow_select::concat::concat_batches(&schema, &batches)
                .map(Arc::new)
                .map_err(|e| ConnectorError::batch(format!("Parquet `{}`: {e}", self.path)))
        })
        .await
        .cloned()
    }

    /// Decodes `rows` rows from `start` with a row selection.
    async fn decode_range(
        &self,
        start: ParquetOffset,
        rows: u64,
    ) -> Result<Vec<arrow_array::RecordBatch>, ConnectorError> {
        let start = self.normalize(start);
        let end = self.advance(start, rows);
        let last_group = if end.row == 0 {
            end.row_group.saturating_sub(1)
        } else {
            end.row_group
        };
        let groups: Vec<usize> = (start.row_group..=last_group).map(|g| g as usize).collect();
        let selection = RowSelection::from(vec![
            RowSelector::skip(start.row as usize),
            RowSelector::select(rows as usize),
        ]);
        let (path, metadata, projection) = (
            self.path.clone(),
            self.metadata.clone(),
            self.projection.clone(),
        );
        #[cfg(feature = "object-store")]
        if let Input::Object(object) = &self.input {
            use futures::TryStreamExt;
            let failed = |e| {
                store_error(&path, e, |url, e| {
                    ConnectorError::batch(format!("Parquet `{url}`: {e}"))
                })
            };
            return parquet::arrow::ParquetRecordBatchStreamBuilder::new_with_metadata(
                object.reader(),
                metadata,
            )
            .with_row_groups(groups)
            .with_row_selection(selection)
            .with_projection(projection)
            .build()
            .map_err(failed)?
            .try_collect()
            .await
            .map_err(failed);
        }
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)
                .map_err(|e| ConnectorError::io(format!("Parquet `{path}`"), &e))?;
            ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata)
                .with_row_groups(groups)
                .with_row_selection(selection)
                .with_projection(projection)
                .build()
                .map_err(|e| ConnectorError::batch(format!("Parquet `{path}`: {e}")))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ConnectorError::batch(format!("Parquet `{path}`: {e}")))
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("Parquet `{}`: {e}", self.path)))?
    }

    /// The offset `rows` rows after `at`, or the end.
    fn advance(&self, mut at: ParquetOffset, mut rows: u64) -> ParquetOffset {
        at = self.normalize(at);
        while rows > 0 && (at.row_group as usize) < self.row_groups.len() {
            let take = (self.row_groups[at.row_group as usize] - at.row).min(rows);
            rows -= take;
            at = self.normalize(ParquetOffset {
                row_group: at.row_group,
                row: at.row + take,
            });
        }
        at
    }

    /// Rows from `start` to `end`.
    fn rows_between(&self, start: ParquetOffset, end: ParquetOffset) -> u64 {
        let (start, end) = (self.normalize(start), self.normalize(end));
        let mut rows = 0;
        let mut at = start;
        while at.row_group < end.row_group && (at.row_group as usize) < self.row_groups.len() {
            rows += self.row_groups[at.row_group as usize] - at.row;
            at = ParquetOffset {
                row_group: at.row_group + 1,
                row: 0,
            };
        }
        rows + end.row.saturating_sub(at.row)
    }

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
