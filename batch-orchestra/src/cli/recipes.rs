//! The built-in recipes: pipelines between the built-in connectors, registered by the
//! `batch-orchestra` binary so the common jobs need no Rust.
//!
//! | pipeline | source | sink | transform |
//! |---|---|---|---|
//! | `csv-to-mongo` | [`CsvFile`] | [`MongoSink`] | one document of strings per row |
//! | `csv-to-json-lines` | [`CsvFile`] | [`JsonLinesDir`] | one object of strings per row |
//! | `csv-to-noop` | [`CsvFile`] | [`NoopSink`] | none (a dry run: parses and counts) |
//! | `json-lines-to-mongo` | [`JsonLinesFile`] | [`MongoSink`] | each object as a document |
//! | `json-lines-to-noop` | [`JsonLinesFile`] | [`NoopSink`] | none |
//! | `csv-to-postgres` | [`CsvFile`] | `PostgresSink` | columns by header (feature `postgres`) |
//! | `postgres-to-json-lines` | `PostgresSource` | [`JsonLinesDir`] | none (feature `postgres`) |
//! | `json-lines-to-postgres` | [`JsonLinesFile`] | `PostgresSink` | none (feature `postgres`) |
//! | `postgres-to-postgres` | `PostgresSource` | `PostgresSink` | none: a table kept in sync, incrementally with `job.sync` (feature `postgres`) |
//! | `parquet-to-json-lines` | `ParquetFile` | [`JsonLinesDir`] | none (feature `parquet`) |
//! | `json-lines-to-parquet` | [`JsonLinesFile`] | `ParquetDir` | none (feature `parquet`) |
//! | `csv-to-nats` | [`CsvFile`] | `NatsSink` | one object of strings per row (feature `nats`) |
//! | `json-lines-to-nats` | [`JsonLinesFile`] | `NatsSink` | none (feature `nats`) |
//! | `nats-to-mongo` | `NatsStream` (streaming) | [`MongoSink`] | each message's object as a document (feature `nats`) |
//!
//! Each job file has a `[source]` and a `[sink]` table with the fields of these configs, and
//! an optional `[job]` table (see [`cli`](crate::cli)); a streaming recipe's has a `[stream]`
//! table instead.

use crate::connectors::csv::{CsvFile, CsvRow};
use crate::connectors::jsonl::{JsonLinesDir, JsonLinesFile};
use crate::connectors::mongo::{MongoSink, row_to_document, value_to_document};
use crate::connectors::noop::NoopSink;
use crate::{PipelineList, TransformError, pipeline, pipelines};

/// A CSV row as a JSON object of strings, by header.
pub fn row_to_json(row: CsvRow) -> Result<serde_json::Value, TransformError> {
    serde_json::to_value(&row).map_err(|e| TransformError::new(e.to_string()))
}

pipeline! {
    /// CSV rows into MongoDB documents of strings.
    pub CsvToMongo {
        source: CsvFile,
        transform: row_to_document,
        sink: MongoSink,
        workflow: "csv-to-mongo",
    }
}

pipeline! {
    /// CSV rows into JSON Lines files, one object per row.
    pub CsvToJsonLines {
        source: CsvFile,
        transform: row_to_json,
        sink: JsonLinesDir,
        workflow: "csv-to-json-lines",
    }
}

pipeline! {
    /// CSV rows parsed, counted and dropped: checks a file without writing it.
    pub CsvToNoop {
        source: CsvFile,
        sink: NoopSink<CsvRow>,
        workflow: "csv-to-noop",
    }
}

pipeline! {
    /// JSON Lines objects into MongoDB documents.
    pub JsonLinesToMongo {
        source: JsonLinesFile,
        transform: value_to_document,
        sink: MongoSink,
        workflow: "json-lines-to-mongo",
    }
}

pipeline! {
    /// JSON Lines parsed, counted and dropped.
    pub JsonLinesToNoop {
        source: JsonLinesFile,
        sink: NoopSink<serde_json::Value>,
        workflow: "json-lines-to-noop",
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use crate::connectors::csv::CsvFile;
    use crate::connectors::jsonl::{JsonLinesDir, JsonLinesFile};
    use crate::connectors::postgres::{PostgresSink, PostgresSource, row_from_csv};
    use crate::pipeline;

    pipeline! {
        /// CSV rows into a PostgreSQL table, columns by header.
        pub CsvToPostgres {
            source: CsvFile,
            transform: row_from_csv,
            sink: PostgresSink,
            workflow: "csv-to-postgres",
        }
    }

    pipeline! {
        /// A PostgreSQL table or query into JSON Lines files, in key order.
        pub PostgresToJsonLines {
            source: PostgresSource,
            sink: JsonLinesDir,
            workflow: "postgres-to-json-lines",
        }
    }

    pipeline! {
        /// A PostgreSQL table or query into another table; with `job.sync` and the source's
        /// `incremental` column, each run copies what changed since the last.
        pub PostgresToPostgres {
            source: PostgresSource,
            sink: PostgresSink,
            workflow: "postgres-to-postgres",
        }
    }

    pipeline! {
        /// JSON Lines objects into a PostgreSQL table.
        pub JsonLinesToPostgres {
            source: JsonLinesFile,
            sink: PostgresSink,
            workflow: "json-lines-to-postgres",
        }
    }
}
#[cfg(feature = "postgres")]
pub use postgres::{CsvToPostgres, JsonLinesToPostgres, PostgresToJsonLines, PostgresToPostgres};

#[cfg(feature = "parquet")]
mod parquet {
    use crate::connectors::jsonl::{JsonLinesDir, JsonLinesFile};
    use crate::connectors::parquet::{ParquetDir, ParquetFile};
    use crate::pipeline;

    pipeline! {
        /// Parquet rows into JSON Lines files.
        pub ParquetToJsonLines {
            source: ParquetFile,
            sink: JsonLinesDir,
            workflow: "parquet-to-json-lines",
        }
    }

    pipeline! {
        /// JSON Lines objects into Parquet files, one per batch.
        pub JsonLinesToParquet {
            source: JsonLinesFile,
            sink: ParquetDir,
            workflow: "json-lines-to-parquet",
        }
    }
}
#[cfg(feature = "parquet")]
pub use parquet::{JsonLinesToParquet, ParquetToJsonLines};

#[cfg(feature = "nats")]
mod nats {
    use super::row_to_json;
    use crate::connectors::csv::CsvFile;
    use crate::connectors::jsonl::JsonLinesFile;
    use crate::connectors::nats::NatsSink;
    use crate::pipeline;

    pipeline! {
        /// CSV rows published to a NATS JetStream subject, one JSON object per row.
        pub CsvToNats {
            source: CsvFile,
            transform: row_to_json,
            sink: NatsSink,
            workflow: "csv-to-nats",
        }
    }

    pipeline! {
        /// JSON Lines objects published to a NATS JetStream subject.
        pub JsonLinesToNats {
            source: JsonLinesFile,
            sink: NatsSink,
            workflow: "json-lines-to-nats",
        }
    }

    pipeline! {
        /// JetStream messages (JSON objects) streamed into MongoDB documents.
        pub NatsToMongo {
            source: crate::connectors::nats::NatsStream,
            transform: crate::connectors::mongo::value_to_document,
            sink: crate::connectors::mongo::MongoSink,
            workflow: "nats-to-mongo",
        }
    }
}
#[cfg(feature = "nats")]
pub use nats::{CsvToNats, JsonLinesToNats, NatsToMongo};

/// Every built-in recipe this build has (the `postgres`, `parquet` and `nats` ones with
/// their features).
pub fn recipes() -> PipelineList {
    let list = pipelines![
        CsvToMongo,
        CsvToJsonLines,
        CsvToNoop,
        JsonLinesToMongo,
        JsonLinesToNoop
    ];
    #[cfg(feature = "postgres")]
    let list = list
        .with::<CsvToPostgres>()
        .with::<PostgresToJsonLines>()
        .with::<JsonLinesToPostgres>()
        .with::<PostgresToPostgres>();
    #[cfg(feature = "parquet")]
    let list = list
        .with::<ParquetToJsonLines>()
        .with::<JsonLinesToParquet>();
    #[cfg(feature = "nats")]
    let list = list
        .with::<CsvToNats>()
        .with::<JsonLinesToNats>()
        .with::<NatsToMongo>();
    list
}
