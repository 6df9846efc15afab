//! PostgreSQL crash tests: the worker process killed three times mid-job (at seeded points of
//! progress) while it copies a CSV into PostgreSQL, inserting or upserting, and while an
//! incremental run copies a table (the next run then reads only what changed). Every valid row
//! ends up in the table exactly once (at its new version, for the upsert), and the report
//! counts each once (written or already present); rows a killed worker had committed are
//! found again by the retry and counted as already present.

use std::process::Command;
use std::time::Duration;

use batch_orchestra::batch::{JobReport, ReportOf, RequestOf};
use batch_orchestra::connectors::csv::{CsvFile, CsvOffset};
use batch_orchestra::connectors::postgres::{PostgresSink, PostgresSource};
use batch_orchestra::failure::RetrySettings;
use batch_orchestra::testing::{PostgresServer, TemporalDevServer, WorkerProcess};
use batch_orchestra::{JobClient, JobHandle, JobStatus, Pipeline};
use batch_orchestra_tests::{CsvToSlowPostgres, SlowPostgres, TableToSlowPostgres, at_sink_marks};

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

/// The settings of every crash job: small batches, one a `process` activity, a short
/// heartbeat timeout and quick retries, so kills land mid-job and recovery is fast.
fn crash_settings<P: Pipeline>(request: RequestOf<P>) -> RequestOf<P> {
    request
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
        )
}

/// Starts a job with `start` on a worker process killed three times mid-job, when the rows
/// `held_sql` counts (what the job wrote so far, of `total`) reach seeded marks; returns its
/// report.
async fn run_killing_the_worker_three_times<P: Pipeline>(
    pg: &PostgresServer,
    temporal: &TemporalDevServer,
    total: u64,
    held_sql: &str,
    start: impl AsyncFnOnce(&JobClient) -> JobHandle<P>,
) -> ReportOf<P> {
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
    let handle = start(&jobs).await;
    // Kill moments are points of progress, so all three land mid-job: the n-th once
    // 1,000 + 2,500 n (+ up to 500) rows are written, leaving thousands after the last.
    let marks: Vec<u64> = (0..3).map(|n| 1_000 + 2_500 * n + seed % 500).collect();
    let db = std::sync::Arc::new(connect(pg).await);
    let held = || {
        let db = db.clone();
        async move {
            let row = db.query_one(held_sql, &[]).await.ok()?;
            Some(row.get::<_, i64>(0) as u64)
        }
    };
    let kills = at_sink_marks(held, total, &marks, Duration::from_secs(180), |_, rows| {
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

/// The people CSV into `sink` (through [`SlowPostgres`]) with the worker killed three times.
async fn copy_people_killing_the_worker(
    pg: &PostgresServer,
    temporal: &TemporalDevServer,
    csv: String,
    sink: PostgresSink,
) -> JobReport<CsvOffset> {
    let sink = SlowPostgres {
        inner: sink,
        delay_ms: 200,
    };
    run_killing_the_worker_three_times(
        pg,
        temporal,
        VALID,
        "SELECT count(*) FROM people WHERE updated_at = 2",
        async |jobs| {
            let request = CsvToSlowPostgres::request("people", CsvFile::new(csv), sink);
            CsvToSlowPostgres::start(jobs, crash_settings::<CsvToSlowPostgres>(request))
                .await
                .unwrap()
        },
    )
    .await
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
    let report = copy_people_killing_the_worker(&pg, &temporal, people_csv(dir.path()), sink).await;
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
    let report = copy_people_killing_the_worker(&pg, &temporal, people_csv(dir.path()), sink).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_run_with_its_worker_killed_is_exact_and_the_next_reads_only_what_changed() {
    let pg = PostgresServer::start().unwrap();
    let temporal = TemporalDevServer::start().unwrap();
    let db = connect(&pg).await;
    db.batch_execute(&format!(
        "CREATE TABLE orders (id bigint PRIMARY KEY, name text NOT NULL, updated_at bigint NOT NULL);
         CREATE TABLE orders_copy (LIKE orders INCLUDING ALL);
         INSERT INTO orders SELECT i, 'order ' || i, 1 FROM generate_series(0, {ROWS} - 1) i"
    ))
    .await
    .unwrap();
    let request = |run: &str| {
        let source = PostgresSource::table("orders", "id").incremental("updated_at");
        let sink = SlowPostgres {
            inner: PostgresSink::new("orders_copy")
                .key_columns(["id"])
                .upsert("updated_at"),
            delay_ms: 200,
        };
        crash_settings::<TableToSlowPostgres>(
            TableToSlowPostgres::request(run, source, sink).incremental("orders"),
        )
    };
    let first = run_killing_the_worker_three_times(
        &pg,
        &temporal,
        ROWS,
        "SELECT count(*) FROM orders_copy",
        async |jobs| {
            TableToSlowPostgres::start(jobs, request("orders-1"))
                .await
                .unwrap()
        },
    )
    .await;
    let summary = format!(
        "first run: {} read, {} written, {} already present",
        first.records_read, first.records_written, first.already_present
    );
    println!("{summary}");
    assert_eq!(
        first.records_read, ROWS,
        "the window is pinned: every row read once, {summary}"
    );
    assert_eq!(
        first.records_written + first.already_present,
        ROWS,
        "{summary}"
    );
    assert_eq!(
        copied(&db).await,
        (ROWS, ROWS),
        "every row copied: {summary}"
    );

    // The next run, on a worker nobody kills: only what changed since the first.
    db.batch_execute(&format!(
        "INSERT INTO orders SELECT i, 'order ' || i, 2 FROM generate_series({ROWS}, {ROWS} + 999) i;
         UPDATE orders SET name = 'changed', updated_at = 3 WHERE id < 500"
    ))
    .await
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_crash-worker"));
    command
        .env("TEMPORAL_ADDRESS", temporal.address())
        .env("DATABASE_URL", pg.url())
        .env("TASK_QUEUE", "crash-postgres");
    let _worker = WorkerProcess::spawn(command).expect("start a worker process");
    let jobs = JobClient::new(temporal.client().await.unwrap(), "crash-postgres");
    let next = TableToSlowPostgres::start(&jobs, request("orders-2"))
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(next.cursor_from, first.cursor);
    assert_eq!(
        next.records_read, 1_500,
        "1,000 new rows and 500 changed ones"
    );
    assert_eq!(next.records_written, 1_500);
    assert_eq!(
        copied(&db).await,
        (ROWS + 1_000, ROWS + 1_000),
        "the copy is in sync"
    );
}

/// Rows of `orders`, and of them those the copy holds as they are.
async fn copied(db: &tokio_postgres::Client) -> (u64, u64) {
    let row = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE c.name = o.name AND c.updated_at = o.updated_at)
             FROM orders o LEFT JOIN orders_copy c USING (id)",
            &[],
        )
        .await
        .unwrap();
    (row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as u64)
}
