//! The Parquet source: a file read by row group, with projection.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};

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
        let metadata = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)
                .map_err(|e| ConnectorError::io(format!("Parquet `{path}`"), &e))?;
            ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
                ConnectorError::config(format!("Parquet `{path}`: not a Parquet file: {e}"))
            })
        })
        .await
        .map_err(|e| ConnectorError::transient(format!("Parquet `{}`: {e}", self.path)))??;
        let schema = metadata.schema();
        let mut roots = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            let Some((index, _)) = schema.column_with_name(column) else {
                let known: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(ConnectorError::config(format!(
                    "Parquet `{}` has no column `{column}` (its columns: {})",
                    self.path,
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
        Ok(ParquetReader {
            path: self.path.clone(),
            metadata,
            projection,
            row_groups,
        })
    }
}

/// A built Parquet source: the file's metadata, read once.
pub struct ParquetReader {
    path: String,
    metadata: ArrowReaderMetadata,
    projection: ProjectionMask,
    /// Rows in each row group.
    row_groups: Vec<u64>,
}

impl ParquetReader {
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
