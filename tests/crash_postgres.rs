//! PostgreSQL crash tests: the worker process killed three times mid-job (at seeded points of
//! progress) while it copies a CSV into PostgreSQL, inserting or upserting. Every valid row
//! ends up in the table exactly once (at its new version, for the upsert), and the report
//! counts each once (written or already present); rows a killed worker had committed are
//! found again by the retry and counted as already present.

use std::process::Command;
use std::time::Duration;

use batch_orchestra::batch::JobReport;
use batch_orchestra::connectors::csv::{CsvFile, CsvOffset};
use batch_orchestra::connectors::postgres::PostgresSink;
use batch_orchestra::failure::RetrySettings;
use batch_orchestra::testing::{PostgresServer, TemporalDevServer, WorkerProcess};
use batch_orchestra::{JobClient, JobStatus};
use batch_orchestra_tests::{CsvToSlowPostgres, SlowPostgres, at_sink_marks};

const ROWS: u64 = 12_000;
const BAD_ROWS: u64 = 2;
const VALID: u64 = ROWS - BAD_ROWS;

/// The CSV `id,name,age,updated_at`: `ROWS` people at version 2, two of them refused by
/// PostgreSQL (an age that is not a number, a missing name).
fn people_csv(dir: &std::path::Path) -> String {
    let mut csv = String::from("id,name,age,updated_at\n");
    for i in 0..ROWS {
        match i {
            3_000 => csv.push_str(&format!("{i},person {i},old,2\n")),
            9_000 => csv.push_str(&format!("{i},,30,2\n")),
            _ => csv.push_str(&format!("{i},person {i},{},2\n", i % 90)),
        }
    }
    let path = dir.join("people.csv");
    std::fs::write(&path, csv).unwrap();
    path.to_string_lossy().into_owned()
}

/// Runs the CSV into `sink` on a worker process killed three times mid-job; returns the
/// report.
async fn run_killing_the_worker_three_times(
    pg: &PostgresServer,
    temporal: &TemporalDevServer,
    csv: String,
    sink: PostgresSink,
) -> JobReport<CsvOffset> {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64);
    println!("crash seed: {seed}");
    let queue = "crash-postgres";
    let spawn = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crash-worker"));
        command
            .env("TEMPORAL_ADDRESS", temporal.address())
            .env("DATABASE_URL", pg.url())
            .env("TASK_QUEUE", queue);
        WorkerProcess::spawn(command).expect("start a worker process")
    };
    let mut worker = spawn();
    let jobs = JobClient::new(temporal.client().await.unwrap(), queue);
    let sink = SlowPostgres {
        inner: sink,
        delay_ms: 200,
    };
    let request = CsvToSlowPostgres::request("people", CsvFile::new(csv), sink)
        .batch_size(200)
        .batches_per_activity(1)
        .max_batches_per_activity(1)
        .max_in_flight(2)
        .heartbeat_timeout(Duration::from_secs(2))
        .retry(
            "process",
            RetrySettings {
                initial_interval: Duration::from_millis(500),
                maximum_interval: Duration::from_secs(2),
                maximum_attempts: 20,
                ..RetrySettings::default()
            },
        );
    let handle = CsvToSlowPostgres::start(&jobs, request).await.unwrap();
    // Kill moments are points of progress, so all three land mid-job: the n-th once
    // 1,000 + 2,500 n (+ up to 500) rows are in the table at version 2, leaving 5,500 rows
    // after the last.
    let marks: Vec<u64> = (0..3).map(|n| 1_000 + 2_500 * n + seed % 500).collect();
    let db = std::sync::Arc::new(connect(pg).await);
    let held = || {
        let db = db.clone();
        async move {
            let row = db
                .query_one("SELECT count(*) FROM people WHERE updated_at = 2", &[])
                .await
                .ok()?;
            Some(row.get::<_, i64>(0) as u64)
        }
    };
    let kills = at_sink_marks(held, VALID, &marks, Duration::from_secs(180), |_, rows| {
        println!("killing worker {} at {rows} rows written", worker.pid());
        worker.kill();
        worker = spawn();
    })
    .await;
    let report = tokio::time::timeout(Duration::from_secs(180), handle.report())
        .await
        .expect("the job ends within 3 minutes")
        .expect("the job completes");
    assert_eq!(kills, 3, "the job ended before its third kill");
    drop(worker);
    report
}

async fn connect(pg: &PostgresServer) -> tokio_postgres::Client {
    let (db, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    db
}

/// Checks the counts every crash run must show, and returns the summary line.
fn assert_counted_once(report: &JobReport<CsvOffset>, rows: i64, distinct: i64) -> String {
    let summary = format!(
        "table holds {rows} rows ({distinct} distinct ids); report: {} written, {} already present, {} superseded, {} record errors, status {}",
        report.records_written,
        report.already_present,
        report.superseded,
        report.record_errors,
        report.status
    );
    println!("{summary}");
    assert_eq!(report.status, JobStatus::Completed, "{summary}");
    assert_eq!(report.record_errors, BAD_ROWS, "{summary}");
    assert_eq!(report.superseded, 0, "{summary}");
    assert_eq!(
        report.records_written + report.already_present,
        VALID,
        "every valid row counted once: {summary}"
    );
    assert!(
        report.already_present > 0,
        "a killed worker had committed rows that the retries found again: {summary}"
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_three_times_mid_copy_loses_and_duplicates_nothing() {
    let pg = PostgresServer::start().unwrap();
    let temporal = TemporalDevServer::start().unwrap();
    let db = connect(&pg).await;
    db.batch_execute(
        "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, age int, updated_at int)",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = PostgresSink::new("people").key_columns(["id"]);
    let report =
        run_killing_the_worker_three_times(&pg, &temporal, people_csv(dir.path()), sink).await;
    let row = db
        .query_one("SELECT count(*), count(DISTINCT id) FROM people", &[])
        .await
        .unwrap();
    let (rows, distinct): (i64, i64) = (row.get(0), row.get(1));
    let summary = assert_counted_once(&report, rows, distinct);
    assert_eq!(rows as u64, VALID, "every valid row present: {summary}");
    assert_eq!(distinct as u64, VALID, "no row twice: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_three_times_mid_upsert_leaves_every_row_at_its_new_version() {
    let pg = PostgresServer::start().unwrap();
    let temporal = TemporalDevServer::start().unwrap();
    let db = connect(&pg).await;
    // Every person is there at version 1; the file holds version 2 of each.
    db.batch_execute(&format!(
        "CREATE TABLE people (id bigint PRIMARY KEY, name text NOT NULL, age int, updated_at int);
         INSERT INTO people SELECT i, 'old', 0, 1 FROM generate_series(0, {}) i",
        ROWS - 1
    ))
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sink = PostgresSink::new("people")
        .key_columns(["id"])
        .upsert("updated_at");
    let report =
        run_killing_the_worker_three_times(&pg, &temporal, people_csv(dir.path()), sink).await;
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE updated_at = 2 AND name = 'person ' || id) FROM people",
            &[],
        )
        .await
        .unwrap();
    let (rows, distinct, new): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    let summary = assert_counted_once(&report, rows, distinct);
    assert_eq!(rows as u64, ROWS, "no row added or lost: {summary}");
    assert_eq!(distinct as u64, ROWS, "no row twice: {summary}");
    assert_eq!(
        new as u64, VALID,
        "every valid row at its new version: {summary}"
    );
}
