//! The write-mode figures of the benchmark: the same CSV into a table or collection that
//! already holds every other row.
//!
//! - `postgres_append_half_rows_per_s`: CSV -> PostgreSQL, inserting; the held half are
//!   already present (each compared with its stored row);
//! - `postgres_upsert_rows_per_s`: the same file upserted by version into a table holding the
//!   same half at an older version: half updated, half inserted (`upsert_vs_append` is this
//!   over the first);
//! - `mongo_upsert_rows_per_s`: the file upserted by version into a MongoDB collection
//!   holding the same half at an older version;
//! - `quarantine_rows_per_s`: the file with every tenth row ragged (a read error) into the
//!   no-op sink with a quarantine, against the clean file into the no-op sink
//!   (`quarantine_vs_clean`).

use std::io::{BufRead, Write};

use batch_orchestra::connectors::csv::{CsvFile, CsvRow};
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::connectors::postgres::{PostgresSink, row_from_csv};
use batch_orchestra::testing::{MongoServer, PostgresServer, TemporalDevServer};
use batch_orchestra::{TransformError, pipeline};
use futures::SinkExt;

use crate::stores::BenchToPostgres;
use crate::{BenchToNoop, Error, Stat, pipeline_run, pipeline_run_with, stat};
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::quarantine::Quarantine;

/// A CSV row as a PostgreSQL row at version 1.
fn row_at_version_1(row: CsvRow) -> Result<serde_json::Value, TransformError> {
    let mut value = row_from_csv(row)?;
    value["version"] = 1.into();
    Ok(value)
}

/// A CSV row as a document at version `version`.
fn document_at(row: CsvRow, version: i32) -> Result<mongodb::bson::Document, TransformError> {
    let mut doc = row_to_document(row)?;
    doc.insert("version", version);
    Ok(doc)
}

fn document_at_version_0(row: CsvRow) -> Result<mongodb::bson::Document, TransformError> {
    document_at(row, 0)
}

fn document_at_version_1(row: CsvRow) -> Result<mongodb::bson::Document, TransformError> {
    document_at(row, 1)
}

pipeline! {
    /// CSV rows upserted into PostgreSQL at version 1.
    pub BenchUpsertPostgres { source: CsvFile, transform: row_at_version_1, sink: PostgresSink, workflow: "bench-upsert-postgres" }
}

pipeline! {
    /// CSV rows upserted into MongoDB at version 0 (the held half).
    pub BenchMongoAtVersion0 { source: CsvFile, transform: document_at_version_0, sink: MongoSink, workflow: "bench-mongo-version-0" }
}

pipeline! {
    /// CSV rows upserted into MongoDB at version 1.
    pub BenchUpsertMongo { source: CsvFile, transform: document_at_version_1, sink: MongoSink, workflow: "bench-upsert-mongo" }
}

const PG_ENV: &str = "BATCH_ORCHESTRA_BENCH_MODES_DATABASE_URL";
const MONGO_ENV: &str = "BATCH_ORCHESTRA_BENCH_MODES_MONGODB_URI";

/// The figures, each over the repetitions.
pub struct Figures {
    pub append_half: Stat,
    pub upsert_half: Stat,
    pub mongo_upsert: Stat,
    pub quarantine: Stat,
    pub clean: Stat,
}

/// Every other row of `csv` (the even ids), with the header: the half the tables hold.
fn write_half(csv: &str, half: &std::path::Path) -> Result<(), Error> {
    let input = std::io::BufReader::new(std::fs::File::open(csv)?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(half)?);
    for (i, line) in input.lines().enumerate() {
        // Line 0 is the header, line n the row of id n - 1.
        if i == 0 || i % 2 == 1 {
            writeln!(out, "{}", line?)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `csv` with every tenth row given a field too many: a read error each.
fn write_with_bad_rows(csv: &str, bad: &std::path::Path) -> Result<(), Error> {
    let input = std::io::BufReader::new(std::fs::File::open(csv)?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(bad)?);
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if i > 0 && i % 10 == 0 {
            writeln!(out, "{line},extra")?;
        } else {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}

fn table(name: &str, extra: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {name};
         CREATE TABLE {name} (id bigint PRIMARY KEY, first_name text, last_name text, email text,
                              city text, score int, note text{extra})"
    )
}

/// Copies the half file into `table` with the client's `COPY`.
async fn copy_half(
    db: &tokio_postgres::Client,
    table: &str,
    half: &std::path::Path,
) -> Result<(), Error> {
    let sink = db
        .copy_in(&format!(
            "COPY {table} (id, first_name, last_name, email, city, score, note) FROM STDIN (FORMAT csv, HEADER)"
        ))
        .await?;
    futures::pin_mut!(sink);
    sink.send(std::io::Cursor::new(std::fs::read(half)?))
        .await?;
    sink.finish().await?;
    Ok(())
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    csv: &str,
    reps: usize,
) -> Result<Figures, Error> {
    let half = std::path::Path::new(csv).with_file_name("bench-half.csv");
    write_half(csv, &half)?;
    let pg = PostgresServer::start()?;
    let mongos: Vec<MongoServer> = (0..reps)
        .map(|_| MongoServer::start())
        .collect::<Result<_, _>>()?;
    // SAFETY: the only other threads are the runtime's idle workers, which read no
    // environment; the sinks read the variable when they are built, after this.
    unsafe { std::env::set_var(PG_ENV, pg.url()) };
    let (db, connection) =
        runtime.block_on(tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls))?;
    runtime.spawn(connection);
    let bad = std::path::Path::new(csv).with_file_name("bench-bad.csv");
    write_with_bad_rows(csv, &bad)?;
    let quarantine_dir = std::path::Path::new(csv).with_file_name("quarantine");
    let (mut append, mut upsert, mut mongo) = (Vec::new(), Vec::new(), Vec::new());
    let (mut quarantined, mut clean) = (Vec::new(), Vec::new());
    for (rep, m) in mongos.iter().enumerate() {
        runtime.block_on(async {
            db.batch_execute(&table("half_append", "")).await?;
            copy_half(&db, "half_append", &half).await?;
            db.batch_execute(&table("half_upsert", ", version int DEFAULT 0"))
                .await?;
            copy_half(&db, "half_upsert", &half).await
        })?;
        let (rate, _) = runtime.block_on(pipeline_run::<BenchToPostgres>(
            server,
            &format!("postgres-append-half-{rep}"),
            CsvFile::new(csv),
            PostgresSink::new("half_append")
                .key_columns(["id"])
                .url_env(PG_ENV),
        ))?;
        append.push(rate);
        let (rate, _) = runtime.block_on(pipeline_run::<BenchUpsertPostgres>(
            server,
            &format!("postgres-upsert-half-{rep}"),
            CsvFile::new(csv),
            PostgresSink::new("half_upsert")
                .key_columns(["id"])
                .upsert("version")
                .url_env(PG_ENV),
        ))?;
        upsert.push(rate);
        let updated: i64 = runtime
            .block_on(db.query_one("SELECT count(*) FROM half_upsert WHERE version = 1", &[]))?
            .get(0);
        if updated as usize != csv_rows(csv)? {
            return Err(format!("the upsert left {updated} rows at version 1").into());
        }
        // SAFETY: as above.
        unsafe { std::env::set_var(MONGO_ENV, m.uri()) };
        let sink = || {
            MongoSink::new("bench", "upserted")
                .id_field("id")
                .version_field("version")
                .uri_env(MONGO_ENV)
        };
        runtime.block_on(pipeline_run::<BenchMongoAtVersion0>(
            server,
            &format!("mongo-version-0-{rep}"),
            CsvFile::new(half.to_string_lossy()),
            sink(),
        ))?;
        let (rate, _) = runtime.block_on(pipeline_run::<BenchUpsertMongo>(
            server,
            &format!("mongo-upsert-half-{rep}"),
            CsvFile::new(csv),
            sink(),
        ))?;
        mongo.push(rate);
        let _ = std::fs::remove_dir_all(&quarantine_dir);
        let (rate, _) = runtime.block_on(pipeline_run_with::<BenchToNoop>(
            server,
            &format!("quarantine-{rep}"),
            CsvFile::new(bad.to_string_lossy()),
            NoopSink::new(),
            None,
            |r| {
                r.quarantine(Quarantine::dir(quarantine_dir.to_string_lossy()))
                    .max_record_errors(u64::MAX)
            },
        ))?;
        quarantined.push(rate);
        let (rate, _) = runtime.block_on(pipeline_run::<BenchToNoop>(
            server,
            &format!("quarantine-clean-{rep}"),
            CsvFile::new(csv),
            NoopSink::new(),
        ))?;
        clean.push(rate);
        println!(
            "rep {rep}: CSV -> PostgreSQL holding half: append {:.0}, upsert {:.0}; MongoDB upsert {:.0}; CSV -> no-op with 10 % quarantined {:.0}, clean {:.0} rows/s",
            append[rep], upsert[rep], mongo[rep], quarantined[rep], clean[rep]
        );
    }
    let _ = std::fs::remove_file(&half);
    let _ = std::fs::remove_file(&bad);
    let _ = std::fs::remove_dir_all(&quarantine_dir);
    Ok(Figures {
        append_half: stat(append),
        upsert_half: stat(upsert),
        mongo_upsert: stat(mongo),
        quarantine: stat(quarantined),
        clean: stat(clean),
    })
}

fn csv_rows(csv: &str) -> Result<usize, Error> {
    let input = std::io::BufReader::new(std::fs::File::open(csv)?);
    Ok(input.lines().count() - 1)
}
