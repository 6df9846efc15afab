//! Parquet: a source ([`ParquetFile`], and `ParquetObject` in an object store) that reads a
//! file by row group with projection, and a
//! sink ([`ParquetDir`]) that writes one Parquet file per batch, so a retried batch overwrites
//! its own file and nothing is written twice.
//!
//! Records are JSON objects of column values ([`serde_json::Value`]), the same records the
//! JSON Lines and PostgreSQL connectors carry, so any of them feeds any other without a
//! transform. Turn them into your own types with
//! [`from_value`](crate::connectors::jsonl::from_value); give the sink your type's schema with
//! [`ParquetDir::schema_of`]. For work on columns, [`ParquetColumns`] reads Arrow record
//! batches instead of rows.

mod json;
#[cfg(feature = "object-store")]
mod object;
mod sink;
mod source;

#[cfg(feature = "object-store")]
pub use object::ParquetObject;
pub use sink::{Compression, ParquetDir, ParquetWriter};
pub use source::{ParquetColumns, ParquetColumnsReader, ParquetFile, ParquetOffset, ParquetReader};
