//! The stores recipes, end to end: CSV into PostgreSQL with a typed transform, PostgreSQL
//! exported to Parquet, and Parquet into MongoDB.
//!
//! `cargo run --release -p batch-orchestra-examples --features stores --example stores`.
//! It starts a Temporal dev server, a PostgreSQL server and a MongoDB-wire server on loopback
//! (`cargo xtask setup` installs them), writes a sample CSV with one bad row, runs the three
//! jobs one after the other, and checks every count.

use batch_orchestra::connectors::csv::{CsvFile, CsvRow};
use batch_orchestra::connectors::mongo::{MongoSink, value_to_document};
use batch_orchestra::connectors::parquet::{ParquetDir, ParquetFile};
use batch_orchestra::connectors::postgres::{PostgresSink, PostgresSource, to_row};
use batch_orchestra::testing::{MongoServer, PostgresServer, TemporalDevServer};
use batch_orchestra::{JobClient, TransformError, Worker, pipeline, pipelines};
use serde::{Deserialize, Serialize};

/// A customer, as the CSV holds it and the table stores it.
#[derive(Debug, Serialize, Deserialize)]
struct Customer {
    id: i64,
    name: String,
    country: String,
    spent: f64,
}

/// A typed transform: the row deserialized into a `Customer` (a bad number is a record error
/// naming the column), then into a row of the table.
fn customer_row(row: CsvRow) -> Result<serde_json::Value, TransformError> {
    let customer: Customer = row.deserialize()?;
    to_row(&customer)
}

pipeline! {
    /// CSV rows into the `customers` table.
    pub CsvToPostgres { source: CsvFile, transform: customer_row, sink: PostgresSink }
}

pipeline! {
    /// The `customers` table exported to Parquet files.
    pub PostgresToParquet { source: PostgresSource, sink: ParquetDir }
}

pipeline! {
    /// A Parquet file into MongoDB documents.
    pub ParquetToMongo { source: ParquetFile, transform: value_to_document, sink: MongoSink }
}

type Error = Box<dyn std::error::Error>;
const QUEUE: &str = "stores-recipes";
const ROWS: i64 = 20_000;

fn main() -> Result<(), Error> {
    let (pg, mongo) = (PostgresServer::start()?, MongoServer::start()?);
    // SAFETY: set before the runtime or any other thread exists.
    unsafe {
        std::env::set_var("DATABASE_URL", pg.url());
        std::env::set_var("MONGODB_URI", mongo.uri());
    }
    let temporal = TemporalDevServer::start()?;
    let dir = tempfile::tempdir()?;
    let csv = dir.path().join("customers.csv");
    let mut text = String::from("id,name,country,spent\n");
    for i in 0..ROWS {
        let spent = if i == 99 {
            "lots".to_owned()
        } else {
            format!("{}.5", i % 500)
        };
        text.push_str(&format!(
            "{i},Customer {i},{},{spent}\n",
            ["FR", "KE", "JP"][i as usize % 3]
        ));
    }
    std::fs::write(&csv, text)?;

    tokio::runtime::Runtime::new()?.block_on(async {
        let (db, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        db.batch_execute(
            "CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, country text, spent float8)",
        )
        .await?;
        let client = temporal.client().await?;
        let mut worker = Worker::builder(client.clone(), QUEUE)
            .pipelines(pipelines![CsvToPostgres, PostgresToParquet, ParquetToMongo])?
            .build()?;
        let jobs = JobClient::new(client, QUEUE);
        let export = dir.path().join("export");
        worker
            .run_until(async {
                let request = CsvToPostgres::request(
                    "customers-import",
                    CsvFile::new(csv.to_str().ok_or("path")?),
                    PostgresSink::new("customers").key_columns(["id"]),
                );
                let report = CsvToPostgres::start(&jobs, request).await?.report().await?;
                println!(
                    "CSV -> PostgreSQL: {} written, {} record errors (first: {})",
                    report.records_written,
                    report.record_errors,
                    report.error_samples.first().map(ToString::to_string).unwrap_or_default()
                );
                check(report.records_written == (ROWS - 1) as u64, "rows in PostgreSQL")?;

                let request = PostgresToParquet::request(
                    "customers-export",
                    PostgresSource::table("customers", "id"),
                    ParquetDir::new(export.to_str().ok_or("path")?).schema_of::<Customer>()?,
                )
                .batch_size(1_000_000);
                let report = PostgresToParquet::start(&jobs, request).await?.report().await?;
                println!("PostgreSQL -> Parquet: {} rows in {}", report.records_written, export.display());
                check(report.records_written == (ROWS - 1) as u64, "rows in Parquet")?;

                let file = export.join("customers-export-00000000.parquet");
                let request = ParquetToMongo::request(
                    "customers-to-mongo",
                    ParquetFile::new(file.to_str().ok_or("path")?),
                    MongoSink::new("shop", "customers"),
                );
                let report = ParquetToMongo::start(&jobs, request).await?.report().await?;
                println!("Parquet -> MongoDB: {} documents", report.records_written);
                check(report.records_written == (ROWS - 1) as u64, "documents in MongoDB")?;
                Ok::<_, Error>(())
            })
            .await??;
        println!("all three recipes checked");
        Ok(())
    })
}

fn check(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(format!("wrong count of {what}").into())
    }
}
