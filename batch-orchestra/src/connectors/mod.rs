//! Built-in connectors, written with the crate's own macros as a user would write theirs.
//!
//! | connector | kind | feature |
//! |---|---|---|
//! | [`csv::CsvFile`] | source: a local CSV file | `csv` |
//! | `object_store::CsvObject` | source: a CSV object in S3, GCS, Azure or a local store | `csv` + `object-store` |
//! | `mongo::MongoSink` | sink: a MongoDB collection | `mongodb` |
//! | [`jsonl::JsonLinesFile`] | source: a local JSON Lines file | always |
//! | `object_store::JsonLinesObject` | source: a JSON Lines object in a store | `object-store` |
//! | [`jsonl::JsonLinesDir`] | sink: JSON-lines files | always |
//! | [`noop::NoopSink`] | sink: drops records | always |
//! | `parquet::ParquetFile` | source: a local Parquet file, by row group | `parquet` |
//! | `parquet::ParquetColumns` | source: a local Parquet file as Arrow record batches | `parquet` |
//! | `parquet::ParquetObject` | source: a Parquet object in a store, by row group | `parquet` + `object-store` |
//! | `parquet::ParquetDir` | sink: Parquet files, one per batch | `parquet` |
//! | `postgres::PostgresSource` | source: a PostgreSQL table or query, in key order | `postgres` |
//! | `postgres::PostgresSink` | sink: a PostgreSQL table, by `COPY` | `postgres` |
//! | `nats::NatsSink` | sink: a NATS JetStream subject, one JSON message per record | `nats` |
//! | `nats::NatsStream` | streaming source: a durable JetStream pull consumer, JSON messages | `nats` |
//!
//! [`files::Files`] reads every file a glob matches as one source (the new and changed ones
//! only, incrementally). `CsvFile` and [`jsonl::JsonLinesFile`] read a growing file
//! incrementally ([`growing`]); `postgres::PostgresSource` a table's changes since the last
//! run.

#[cfg(feature = "csv")]
pub mod csv;
pub mod files;
pub mod growing;
pub mod input;
pub mod jsonl;
#[cfg(feature = "mongodb")]
pub mod mongo;
#[cfg(feature = "nats")]
pub mod nats;
pub mod noop;
#[cfg(feature = "object-store")]
pub mod object_store;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "postgres")]
pub mod postgres;
