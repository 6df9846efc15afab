//! The PostgreSQL and Parquet figures of the benchmark.
//!
//! On a fresh PostgreSQL server:
//! - `postgres_rows_per_s`: the CSV -> PostgreSQL pipeline through Temporal;
//! - `postgres_direct_rows_per_s`: the same CSV parser and PostgreSQL writer in a loop with as
//!   many concurrent writers as the pipeline keeps in flight, no Temporal (`postgres_ratio` is
//!   the first over this);
//! - `postgres_source_rows_per_s`: the table read back in key order into the no-op sink.
//!
//! On a Parquet file of the same rows (row groups of 100,000, zstd):
//! - `parquet_parse_rows_per_s`: the Parquet source's own plan-and-read loop, no Temporal;
//! - `parquet_source_rows_per_s`: the Parquet source into the no-op sink through Temporal
//!   (`parquet_ratio` is this over the first).

use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::connectors::parquet::ParquetFile;
use batch_orchestra::connectors::postgres::{PostgresSink, PostgresSource, row_from_csv};
use batch_orchestra::testing::{PostgresServer, TemporalDevServer};
use batch_orchestra::{SinkConfig, SourceConfig, pipeline};

use crate::{BenchRow, Error, Stat, bench_row, direct, own_loop, pipeline_run, stat};

pipeline! {
    /// CSV rows into a PostgreSQL table.
    pub BenchToPostgres { source: CsvFile, transform: row_from_csv, sink: PostgresSink, workflow: "bench-csv-to-postgres" }
}

pipeline! {
    /// A PostgreSQL table, dropped: the PostgreSQL source's throughput.
    pub BenchPostgresToNoop {
        source: PostgresSource,
        sink: NoopSink<serde_json::Value>,
        workflow: "bench-postgres-to-noop"
    }
}

pipeline! {
    /// A Parquet file, dropped: the Parquet source's throughput.
    pub BenchParquetToNoop {
        source: ParquetFile,
        sink: NoopSink<serde_json::Value>,
        workflow: "bench-parquet-to-noop"
    }
}

const URL_ENV: &str = "BATCH_ORCHESTRA_BENCH_DATABASE_URL";

/// The figures, each over the repetitions.
pub struct Figures {
    pub direct: Stat,
    pub piped: Stat,
    /// The same file again into the loaded table: every row already present, each one
    /// compared with its stored twin.
    pub rerun: Stat,
    pub source: Stat,
}

/// A table for the benchmark's CSV.
fn table(name: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {name};
         CREATE TABLE {name} (id bigint PRIMARY KEY, first_name text, last_name text, email text,
                              city text, score int, note text)"
    )
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    csv: &str,
    reps: usize,
) -> Result<Figures, Error> {
    let pg = PostgresServer::start()?;
    // SAFETY: the only other threads are the runtime's idle workers, which read no
    // environment; the sinks read the variable when they are built, after this.
    unsafe { std::env::set_var(URL_ENV, pg.url()) };
    let (db, connection) =
        runtime.block_on(tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls))?;
    runtime.spawn(connection);
    let (mut direct, mut piped, mut rerun, mut source) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        runtime.block_on(db.batch_execute(&table("direct_rows")))?;
        direct.push(runtime.block_on(direct_loop(csv, 1_000, 8))?);
        runtime.block_on(db.batch_execute(&table("rows")))?;
        let load = |job: String| {
            runtime.block_on(pipeline_run::<BenchToPostgres>(
                server,
                &job,
                CsvFile::new(csv),
                PostgresSink::new("rows")
                    .key_columns(["id"])
                    .url_env(URL_ENV),
            ))
        };
        piped.push(load(format!("postgres-{rep}"))?.0);
        rerun.push(load(format!("postgres-rerun-{rep}"))?.0);
        let (rate, _) = runtime.block_on(pipeline_run::<BenchPostgresToNoop>(
            server,
            &format!("postgres-source-{rep}"),
            PostgresSource::table("rows", "id").url_env(URL_ENV),
            NoopSink::new(),
        ))?;
        source.push(rate);
        println!(
            "rep {rep}: CSV -> PostgreSQL direct {:.0}, pipeline {:.0}, again (all present) {:.0}, PostgreSQL -> no-op {:.0} rows/s",
            direct[rep], piped[rep], rerun[rep], source[rep]
        );
    }
    Ok(Figures {
        direct: stat(direct),
        piped: stat(piped),
        rerun: stat(rerun),
        source: stat(source),
    })
}

/// CSV into PostgreSQL with no Temporal, as the pipeline does it.
async fn direct_loop(csv: &str, batch: u64, writers: usize) -> Result<f64, Error> {
    let source = CsvFile::new(csv).build().await?;
    let sink = PostgresSink::new("direct_rows")
        .key_columns(["id"])
        .url_env(URL_ENV)
        .build()
        .await?;
    direct(source, sink, |row| row_from_csv(row).ok(), batch, writers).await
}

/// The Parquet figures: its own loop and through Temporal.
pub struct ParquetFigures {
    pub parsed: Stat,
    pub piped: Stat,
}

pub fn run_parquet(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    dir: &std::path::Path,
    rows: u64,
    reps: usize,
) -> Result<ParquetFigures, Error> {
    let path = dir.join("bench.parquet");
    write_parquet(&path, rows)?;
    let path = path.to_string_lossy().into_owned();
    let (mut parsed, mut piped) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        parsed.push(
            runtime.block_on(async { own_loop(&ParquetFile::new(&path).build().await?).await })?,
        );
        let (rate, _) = runtime.block_on(pipeline_run::<BenchParquetToNoop>(
            server,
            &format!("parquet-noop-{rep}"),
            ParquetFile::new(&path),
            NoopSink::new(),
        ))?;
        piped.push(rate);
        println!(
            "rep {rep}: Parquet own loop {:.0}, Parquet -> no-op {:.0} rows/s",
            parsed[rep], piped[rep]
        );
    }
    let _ = std::fs::remove_file(&path);
    Ok(ParquetFigures {
        parsed: stat(parsed),
        piped: stat(piped),
    })
}

/// The benchmark's rows as a Parquet file, in row groups of 100,000.
fn write_parquet(path: &std::path::Path, rows: u64) -> Result<(), Error> {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let chunk = |start: u64| -> Result<RecordBatch, Error> {
        let ids: Vec<u64> = (start..(start + 100_000).min(rows)).collect();
        let data: Vec<_> = ids.iter().map(|&i| bench_row(i)).collect();
        let text = |f: fn(&BenchRow) -> &str| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(data.iter().map(f)))
        };
        let number = |values: Vec<i64>| -> ArrayRef { Arc::new(Int64Array::from(values)) };
        Ok(RecordBatch::try_from_iter([
            ("id", number(ids.iter().map(|&i| i as i64).collect())),
            ("first_name", text(|r| &r.first_name)),
            ("last_name", text(|r| &r.last_name)),
            ("email", text(|r| &r.email)),
            ("city", text(|r| &r.city)),
            (
                "score",
                number(data.iter().map(|r| r.score as i64).collect()),
            ),
            ("note", text(|r| &r.note)),
        ])?)
    };
    let properties = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .set_max_row_group_row_count(Some(100_000))
        .build();
    let first = chunk(0)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path)?,
        first.schema(),
        Some(properties),
    )?;
    writer.write(&first)?;
    let mut start = first.num_rows() as u64;
    while start < rows {
        let batch = chunk(start)?;
        writer.write(&batch)?;
        start += batch.num_rows() as u64;
    }
    writer.close()?;
    Ok(())
}
