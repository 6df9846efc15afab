//! The sync figures: a PostgreSQL table kept in sync with another by incremental runs.
//!
//! - `incremental_full_rows_per_s`: the first run of a sync (it reads the whole table);
//! - `incremental_rows_per_s`: the next run, after 1 % new rows, over its own rows;
//! - `incremental_vs_full`: the next run's time over the first's (aim <= 0.05): what a run
//!   that picks up 1 % costs against a full copy;
//! - `schedule_start_lag_s`: from a scheduled run's due time to its first row in the copy
//!   (aim <= 2 s), over runs every 2 s;
//! - `files_full_rows_per_s`, `files_incremental_rows_per_s`, `files_incremental_vs_full`:
//!   the same over a directory of 100 JSON Lines files ([`Files`]) into the no-op sink,
//!   the next run after one new file (1 % of the rows).

use std::time::{Duration, Instant, SystemTime};

use batch_orchestra::connectors::files::Files;
use batch_orchestra::connectors::jsonl::JsonLinesFile;
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::connectors::postgres::{PostgresSink, PostgresSource};
use batch_orchestra::job::schedule::Schedule;
use batch_orchestra::testing::{PostgresServer, TemporalDevServer};
use batch_orchestra::{JobClient, Worker, pipeline};

use crate::{Error, QUEUE, Stat, pipeline_run_with, stat};

pipeline! {
    /// A PostgreSQL table into another, upserting by version.
    pub BenchSync { source: PostgresSource, sink: PostgresSink, workflow: "bench-sync" }
}

pipeline! {
    /// The new files of a directory, counted.
    pub BenchFiles { source: Files<JsonLinesFile>, sink: NoopSink<serde_json::Value>, workflow: "bench-files" }
}

const PG_ENV: &str = "BATCH_ORCHESTRA_BENCH_SYNC_DATABASE_URL";

/// The figures, each over the repetitions.
pub struct Figures {
    pub full: Stat,
    pub incremental: Stat,
    pub incremental_vs_full: Stat,
    pub start_lag_s: Stat,
    pub files_full: Stat,
    pub files_incremental: Stat,
    pub files_incremental_vs_full: Stat,
}

fn tables(name: &str, rows: u64) -> String {
    format!(
        "DROP TABLE IF EXISTS {name}; DROP TABLE IF EXISTS {name}_copy;
         CREATE TABLE {name} (id bigint PRIMARY KEY, name text NOT NULL, email text, score int, version bigint NOT NULL);
         CREATE TABLE {name}_copy (LIKE {name} INCLUDING ALL);
         INSERT INTO {name} SELECT i, 'person ' || i, 'p' || i || '@example.com', i % 100, 1
           FROM generate_series(0, {rows} - 1) i;
         ANALYZE {name};"
    )
}

fn source(table: &str) -> PostgresSource {
    PostgresSource::table(table, "id")
        .url_env(PG_ENV)
        .incremental("version")
}

fn sink(table: &str) -> PostgresSink {
    PostgresSink::new(format!("{table}_copy"))
        .url_env(PG_ENV)
        .key_columns(["id"])
        .upsert("version")
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    rows: u64,
    reps: usize,
) -> Result<Figures, Error> {
    let pg = PostgresServer::start()?;
    // SAFETY: the only other threads are the runtime's idle workers, which read no
    // environment; the connectors read the variable when they are built, after this.
    unsafe { std::env::set_var(PG_ENV, pg.url()) };
    let (db, connection) =
        runtime.block_on(tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls))?;
    runtime.spawn(connection);
    let new_rows = (rows / 100).max(1);
    let (mut full, mut incremental, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let table = format!("sync{rep}");
        runtime.block_on(db.batch_execute(&tables(&table, rows)))?;
        let sync = format!("bench-sync-{rep}");
        let (full_rate, _) = runtime.block_on(pipeline_run_with::<BenchSync>(
            server,
            &format!("{sync}-1"),
            source(&table),
            sink(&table),
            None,
            |r| r.incremental(sync.clone()),
        ))?;
        runtime.block_on(db.batch_execute(&format!(
            "INSERT INTO {table} SELECT i, 'person ' || i, 'p' || i || '@example.com', i % 100, 2
               FROM generate_series({rows}, {rows} + {new_rows} - 1) i"
        )))?;
        let (rate, _) = runtime.block_on(pipeline_run_with::<BenchSync>(
            server,
            &format!("{sync}-2"),
            source(&table),
            sink(&table),
            None,
            |r| r.incremental(sync.clone()),
        ))?;
        let copied: i64 = runtime
            .block_on(db.query_one(&format!("SELECT count(*) FROM {table}_copy"), &[]))?
            .get(0);
        if copied as u64 != rows + new_rows {
            return Err(format!("the copy holds {copied} rows of {}", rows + new_rows).into());
        }
        let (full_s, next_s) = (rows as f64 / full_rate, new_rows as f64 / rate);
        println!(
            "sync rep {rep}: full {full_rate:.0} rows/s ({full_s:.2} s), next {rate:.0} rows/s ({next_s:.2} s for {new_rows}), {:.3} of full",
            next_s / full_s
        );
        full.push(full_rate);
        incremental.push(rate);
        ratio.push(next_s / full_s);
    }
    let lags = runtime.block_on(start_lags(server, &db, reps.max(3)))?;
    let (files_full, files_incremental, files_ratio) = files(runtime, server, rows, reps)?;
    Ok(Figures {
        full: stat(full),
        incremental: stat(incremental),
        incremental_vs_full: stat(ratio),
        start_lag_s: stat(lags),
        files_full: stat(files_full),
        files_incremental: stat(files_incremental),
        files_incremental_vs_full: stat(files_ratio),
    })
}

/// `n` JSON Lines records from `first`.
fn lines(first: u64, n: u64) -> String {
    (first..first + n)
        .map(|i| format!("{{\"id\":{i},\"name\":\"person {i}\",\"email\":\"p{i}@example.com\"}}\n"))
        .collect()
}

/// Per repetition: the first run's rate, the next run's, and their times' ratio.
type Runs = (Vec<f64>, Vec<f64>, Vec<f64>);

/// A sync over a directory of 100 files holding `rows` rows, then one more file: the first
/// run's rate, the next run's and their times' ratio, per repetition.
fn files(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    rows: u64,
    reps: usize,
) -> Result<Runs, Error> {
    let per_file = (rows / 100).max(1);
    let (mut full, mut incremental, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let dir = tempfile::tempdir()?;
        for f in 0..100 {
            std::fs::write(
                dir.path().join(format!("{f:03}.jsonl")),
                lines(f * per_file, per_file),
            )?;
        }
        std::thread::sleep(Duration::from_millis(100));
        let sync = format!("bench-files-{rep}");
        let source = || {
            Files::new(JsonLinesFile::new(format!(
                "{}/*.jsonl",
                dir.path().display()
            )))
            .settle(Duration::ZERO)
        };
        let (full_rate, _) = runtime.block_on(pipeline_run_with::<BenchFiles>(
            server,
            &format!("{sync}-1"),
            source(),
            NoopSink::default(),
            None,
            |r| r.incremental(sync.clone()),
        ))?;
        std::fs::write(
            dir.path().join("100.jsonl"),
            lines(100 * per_file, per_file),
        )?;
        std::thread::sleep(Duration::from_millis(100));
        let (rate, _) = runtime.block_on(pipeline_run_with::<BenchFiles>(
            server,
            &format!("{sync}-2"),
            source(),
            NoopSink::default(),
            None,
            |r| r.incremental(sync.clone()),
        ))?;
        let (full_s, next_s) = ((100 * per_file) as f64 / full_rate, per_file as f64 / rate);
        println!(
            "files rep {rep}: full {full_rate:.0} rows/s ({full_s:.2} s), next {rate:.0} rows/s ({next_s:.2} s for {per_file}), {:.3} of full",
            next_s / full_s
        );
        full.push(full_rate);
        incremental.push(rate);
        ratio.push(next_s / full_s);
    }
    Ok((full, incremental, ratio))
}

/// Runs a schedule every 2 s over a table that gets 100 new rows before each run; returns,
/// for `runs` runs, the time from each run's due time to its first row in the copy.
async fn start_lags(
    server: &TemporalDevServer,
    db: &tokio_postgres::Client,
    runs: usize,
) -> Result<Vec<f64>, Error> {
    db.batch_execute(&tables("lag", 0)).await?;
    let client = server.client().await?;
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipeline::<BenchSync>()?
        .build()?;
    let jobs = JobClient::new(client, QUEUE);
    worker
        .run_until(async {
            let request = BenchSync::request("bench-lag", source("lag"), sink("lag"))
                .incremental("bench-lag");
            let schedule = jobs
                .schedule::<BenchSync>(request, &Schedule::every(Duration::from_secs(2)))
                .await?;
            let mut lags = Vec::new();
            let mut held = 0i64;
            for n in 0..runs as i64 {
                db.execute(
                    "INSERT INTO lag SELECT i, 'person ' || i, NULL, 0, 1 FROM generate_series($1::bigint, $1::bigint + 99) i",
                    &[&(n * 100)],
                )
                .await?;
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let count: i64 = db
                        .query_one("SELECT count(*) FROM lag_copy", &[])
                        .await?
                        .get(0);
                    if count > held {
                        break;
                    }
                    if Instant::now() > deadline {
                        return Err("no scheduled run wrote within 30 s".into());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let seen = SystemTime::now();
                let state = schedule.describe().await?;
                let due = state
                    .recent_runs
                    .iter()
                    .filter_map(|r| r.scheduled_at)
                    .filter(|t| *t <= seen)
                    .max()
                    .ok_or("no recent run")?;
                let lag = seen.duration_since(due).unwrap_or_default().as_secs_f64();
                println!("scheduled run {n}: first row {lag:.2} s after it was due");
                lags.push(lag);
                // Past this run before the next insert, so each lag is one run's.
                tokio::time::sleep(Duration::from_millis(500)).await;
                held = db
                    .query_one("SELECT count(*) FROM lag_copy", &[])
                    .await?
                    .get(0);
            }
            schedule.delete().await?;
            Ok::<_, Error>(lags)
        })
        .await?
}
