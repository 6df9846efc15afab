//! The Parquet sink: one file per batch, written aside and renamed into place.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::{FieldRef, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::ZstdLevel;
use parquet::file::properties::WriterProperties;

use crate::connector::{Sink, WriteContext, WriteOutcome};
use crate::error::{ConnectorError, RecordError};
use crate::record::Positioned;

/// How the sink compresses the column chunks it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Compression {
    /// Zstandard at its default level: small files, fast to read.
    #[default]
    Zstd,
    /// Snappy: faster to write, larger.
    Snappy,
    /// No compression.
    None,
}

/// A directory of Parquet files, `<dir>/<scope>-<batch>.parquet` (the scope as for
/// [`JsonLinesDir`](crate::connectors::jsonl::JsonLinesDir): job id and input fingerprint), one file per batch; with
/// the `object-store` feature, `dir` may be a prefix in a store (`s3://bucket/exports`,
/// `gs://...`, `az://...`), with credentials from the worker's environment.
///
/// The file of a batch is written under a temporary name and renamed into place (an object is
/// put whole), so a reader never sees half a file, and a retried or redriven batch overwrites
/// its own file: nothing is written twice. Rows are JSON objects of column values; the schema is the one you give
/// ([`schema_of`](Self::schema_of) derives it from your record type), or else inferred from
/// each batch's rows (then a column that is null in every row of a batch is left out of that
/// batch's file). A row that does not fit the schema is a record error with its position.
///
/// ```
/// use batch_orchestra::connectors::parquet::{Compression, ParquetDir};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Person { id: i64, name: String, score: Option<f64> }
///
/// let sink = ParquetDir::new("exports/people").schema_of::<Person>().unwrap();
/// assert_eq!(sink.compression, Compression::Zstd);
/// let schema = sink.schema.unwrap();
/// assert_eq!(schema.field(0).name(), "id");
/// assert!(schema.field(2).is_nullable());
/// ```
#[crate::batch_sink(name = "parquet", writer = ParquetWriter)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetDir {
    /// The directory, created when missing, or an object-store prefix URL.
    pub dir: String,
    /// Store options without secrets (`endpoint`, `region`, `allow_http`, ...), for a URL.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// The files' schema; inferred from each batch when `None`.
    #[serde(default)]
    pub schema: Option<Schema>,
    /// The compression of column chunks.
    #[serde(default)]
    pub compression: Compression,
    /// Rows per row group, at most; the Parquet writer's default (1,048,576) when `None`.
    #[serde(default)]
    pub row_group_rows: Option<usize>,
}

impl ParquetDir {
    /// Files go to `dir`, zstd-compressed, with schemas inferred from the rows.
    pub fn new(dir: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            options: Default::default(),
            schema: None,
            compression: Compression::Zstd,
            row_group_rows: None,
        }
    }

    /// Starts a new row group every `rows` rows.
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = Some(rows.max(1));
        self
    }

    /// Sets a store option (`endpoint`, `region`, `allow_http`, ...), for a URL `dir`.
    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.insert(key.into(), value.into());
        self
    }

    /// Uses `schema` for every file.
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Uses the schema of the serde type `T` for every file: its fields become columns, with
    /// `Option` fields nullable. Fails on types Arrow has no column for.
    pub fn schema_of<T: serde::de::DeserializeOwned>(self) -> Result<Self, ConnectorError> {
        use serde_arrow::schema::{SchemaLike, TracingOptions};
        let fields = Vec::<FieldRef>::from_type::<T>(TracingOptions::default()).map_err(|e| {
            ConnectorError::config(format!(
                "no Parquet schema for `{}`: {e}",
                std::any::type_name::<T>()
            ))
        })?;
        Ok(self.schema(Schema::new(fields)))
    }

    /// Sets the compression.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    async fn build_sink(&self) -> Result<ParquetWriter, ConnectorError> {
        let destination = if self.dir.contains("://") {
            #[cfg(feature = "object-store")]
            {
                let (store, prefix) = crate::store::store_for(&self.dir, &self.options)?;
                Destination::Store {
                    store,
                    prefix,
                    url: self.dir.trim_end_matches('/').to_owned(),
                }
            }
            #[cfg(not(feature = "object-store"))]
            return Err(ConnectorError::config(format!(
                "Parquet sink `{}`: writing to an object store needs the `object-store` feature",
                self.dir
            )));
        } else {
            let dir = PathBuf::from(&self.dir);
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| ConnectorError::io(format!("cannot create {}", self.dir), &e))?;
            Destination::Dir(dir)
        };
        let compression = match self.compression {
            Compression::Zstd => parquet::basic::Compression::ZSTD(ZstdLevel::default()),
            Compression::Snappy => parquet::basic::Compression::SNAPPY,
            Compression::None => parquet::basic::Compression::UNCOMPRESSED,
        };
        Ok(ParquetWriter {
            destination,
            schema: self.schema.clone().map(Arc::new),
            properties: {
                let builder = WriterProperties::builder().set_compression(compression);
                match self.row_group_rows {
                    Some(rows) => builder.set_max_row_group_row_count(Some(rows.max(1))),
                    None => builder,
                }
                .build()
            },
        })
    }
}

/// A built Parquet sink.
pub struct ParquetWriter {
    destination: Destination,
    schema: Option<SchemaRef>,
    properties: WriterProperties,
}

/// Where the files go.
enum Destination {
    Dir(PathBuf),
    #[cfg(feature = "object-store")]
    Store {
        store: Arc<dyn object_store::ObjectStore>,
        prefix: object_store::path::Path,
        url: String,
    },
}

impl Sink for ParquetWriter {
    type Record = Value;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Value>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let job = crate::snapshot::file_safe(&ctx.job_id);
        let name = format!("{job}-{:08}.parquet", ctx.batch);
        let (schema, properties) = (self.schema.clone(), self.properties.clone());
        let (bytes, outcome) =
            tokio::task::spawn_blocking(move || encode_file(schema, properties, records))
                .await
                .map_err(|e| ConnectorError::transient(format!("Parquet sink: {e}")))??;
        match &self.destination {
            Destination::Dir(dir) => {
                use tokio::io::AsyncWriteExt;
                let file = dir.join(&name);
                // A name of this attempt's own, so an abandoned attempt still writing cannot
                // rename half a file over this one; synced before the rename, so a crash
                // leaves the old file or the whole new one.
                let tmp = dir.join(format!(
                    ".{name}.{}-{}.tmp",
                    ctx.attempt,
                    std::process::id()
                ));
                let io = |e: std::io::Error| {
                    ConnectorError::io(format!("cannot write {}", tmp.display()), &e)
                };
                let mut out = tokio::fs::File::create(&tmp).await.map_err(io)?;
                out.write_all(&bytes).await.map_err(io)?;
                out.sync_all().await.map_err(io)?;
                drop(out);
                tokio::fs::rename(&tmp, &file).await.map_err(io)?;
            }
            #[cfg(feature = "object-store")]
            Destination::Store { store, prefix, url } => {
                use object_store::ObjectStoreExt;
                let path = object_store::path::Path::from_iter(prefix.parts().chain(
                    std::iter::once(object_store::path::PathPart::from(name.as_str())),
                ));
                store
                    .put(&path, bytes.into())
                    .await
                    .map_err(|e| crate::store::classify(&format!("{url}/{name}"), e))?;
            }
        }
        Ok(outcome)
    }
}

/// Encodes `records` as the bytes of one Parquet file.
fn encode_file(
    schema: Option<SchemaRef>,
    properties: WriterProperties,
    records: Vec<Positioned<Value>>,
) -> Result<(Vec<u8>, WriteOutcome), ConnectorError> {
    let mut outcome = WriteOutcome::default();
    let mut rows = Vec::with_capacity(records.len());
    for record in records {
        if record.value.is_object() {
            rows.push(record);
        } else {
            outcome.errors.push(RecordError::new(
                record.position,
                "the Parquet sink takes a JSON object of column values",
            ));
        }
    }
    let schema = match schema {
        Some(schema) => schema,
        None => Arc::new(
            arrow_json::reader::infer_json_schema_from_iterator(
                rows.iter().map(|r| Ok(r.value.clone())),
            )
            .map_err(|e| {
                ConnectorError::batch(format!("Parquet sink: no schema for the batch: {e}"))
            })?,
        ),
    };
    let batch = match encode(&schema, rows.iter().map(|r| &r.value)) {
        Ok(batch) => batch,
        Err(_) => {
            // Find the rows that do not fit, one by one, and write the others.
            let mut good = Vec::with_capacity(rows.len());
            for row in rows {
                match encode(&schema, std::iter::once(&row.value)) {
                    Ok(_) => good.push(row),
                    Err(e) => outcome.errors.push(RecordError::new(
                        row.position,
                        format!(
                            "the row does not fit the Parquet schema: {}",
                            without_values(&e)
                        ),
                    )),
                }
            }
            rows = good;
            encode(&schema, rows.iter().map(|r| &r.value))
                .map_err(|e| ConnectorError::batch(format!("Parquet sink: {e}")))?
        }
    };
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(properties))
        .map_err(|e| ConnectorError::batch(format!("Parquet sink: {e}")))?;
    writer
        .write(&batch)
        .and_then(|_| writer.close().map(drop))
        .map_err(|e| ConnectorError::batch(format!("Parquet sink: {e}")))?;
    outcome.written = rows.len() as u64;
    Ok((bytes, outcome))
}

/// The rows as one record batch of `schema`.
fn encode<'a>(
    schema: &SchemaRef,
    rows: impl Iterator<Item = &'a Value>,
) -> Result<arrow_array::RecordBatch, String> {
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .build_decoder()
        .map_err(|e| e.to_string())?;
    let rows: Vec<&Value> = rows.collect();
    decoder.serialize(&rows).map_err(|e| e.to_string())?;
    let batch = decoder.flush().map_err(|e| e.to_string())?;
    Ok(batch.unwrap_or_else(|| arrow_array::RecordBatch::new_empty(schema.clone())))
}

/// An Arrow JSON error without the value it names, which may be quoted or not (`failed to
/// parse "ten" as Int64`, `expected string got 12`): the field and the expected type are kept,
/// everything else is dropped, since record errors travel in workflow history.
fn without_values(message: &str) -> String {
    let message = message.strip_prefix("Json error: ").unwrap_or(message);
    // "whilst decoding field 'id': <what>"; field names come from the schema, not the data.
    let (field, what) = match message.strip_prefix("whilst decoding field '") {
        Some(rest) => match rest.split_once("': ") {
            Some((name, what)) => (format!("field '{name}': "), what),
            None => (String::new(), message),
        },
        None => (String::new(), message),
    };
    let expected = if what.starts_with("failed to parse") {
        // The type is the last word: "... as Int64".
        what.rsplit_once(" as ")
            .map(|(_, ty)| ty)
            .filter(|ty| !ty.contains(char::is_whitespace))
            .map(|ty| format!("a value that is not a valid {ty}"))
    } else if let Some(rest) = what.strip_prefix("expected ") {
        rest.split_once(" got ")
            .map(|(expected, _)| expected)
            .filter(|e| !e.contains(char::is_whitespace))
            .map(|expected| format!("expected {expected}, got another type"))
    } else {
        None
    };
    format!(
        "{field}{}",
        expected.unwrap_or_else(|| "a value of the wrong type".to_owned())
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_removed_from_messages() {
        let cases = [
            (
                "Json error: whilst decoding field 'id': failed to parse \"ten\" as Int64",
                "field 'id': a value that is not a valid Int64",
            ),
            (
                "Json error: whilst decoding field 'id': failed to parse 3.5 as Int64",
                "field 'id': a value that is not a valid Int64",
            ),
            (
                "Json error: whilst decoding field 'name': expected string got 12",
                "field 'name': expected string, got another type",
            ),
            (
                "Json error: whilst decoding field 'x': something \"secret\" else",
                "field 'x': a value of the wrong type",
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(super::without_values(message), expected);
        }
    }
}
