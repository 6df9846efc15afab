//! Keeping a table in sync on real servers: incremental runs of a PostgreSQL table into
//! another (each run reads what changed since the last completed one), the late commit a
//! `MAX(updated_at)` cursor misses, a rerun from a value, a range run between two cursors, a
//! failed run passed over, the cursor
//! surviving a Temporal server restart, a schedule every two seconds that is paused,
//! triggered, backfilled and deleted, and a schedule whose runs outlast its interval (the
//! runs due meanwhile skipped).
//!
//! One test function: the connectors read their connection string from the worker's
//! environment, set before any other thread starts. Each case is a named function, so a
//! failure names what broke.

use std::time::{Duration, SystemTime};

use batch_orchestra::batch::{JobReport, RequestOf};
use batch_orchestra::connectors::postgres::{KeyOffset, PostgresSink, PostgresSource};
use batch_orchestra::job::schedule::Schedule;
use batch_orchestra::testing::{
    CountingSink, PostgresServer, RangeSource, RangeToCounting, TemporalDevServer,
};
use batch_orchestra::{JobClient, JobStatus, Worker, pipeline, pipelines};
use serde_json::json;
use tokio_postgres::NoTls;

pipeline! {
    /// A PostgreSQL table into another, upserting by `updated_at`.
    pub TableSync { source: PostgresSource, sink: PostgresSink }
}

const URL_ENV: &str = "BATCH_ORCHESTRA_TEST_SYNC_DATABASE_URL";
const QUEUE: &str = "incremental";

#[test]
fn incremental_runs_and_schedules() {
    let pg = PostgresServer::start().unwrap();
    // SAFETY: set before the runtime, the servers' clients or any other thread exist.
    unsafe { std::env::set_var(URL_ENV, pg.url()) };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut temporal = TemporalDevServer::start_persistent().unwrap();
            let (db, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
            tokio::spawn(connection);
            let db = Sync { db, pg: &pg };
            with_worker(&temporal, async |jobs| {
                let (first, second) = a_second_run_reads_only_what_changed(jobs, &db).await;
                a_commit_that_lands_late_below_the_cursor_is_read_by_the_next_run(jobs, &db).await;
                a_rerun_from_a_value_reads_the_rows_above_it_and_writes_nothing_twice(jobs, &db)
                    .await;
                a_range_run_reads_between_two_cursors_and_leaves_the_sync_cursor(
                    jobs, &db, first, second,
                )
                .await;
                a_failed_run_leaves_the_next_where_the_last_good_one_ended(jobs, &db).await;
            })
            .await;
            temporal.restart().expect("restart the Temporal server");
            with_worker(&temporal, async |jobs| {
                the_cursor_survives_a_temporal_server_restart(jobs, &db).await;
                a_schedule_runs_pauses_triggers_backfills_and_is_deleted(jobs, &db).await;
                a_run_due_while_the_last_still_runs_is_skipped(jobs).await;
            })
            .await;
        });
}

/// Runs `cases` with a worker serving [`TableSync`] and [`RangeToCounting`] on `temporal`.
async fn with_worker(temporal: &TemporalDevServer, cases: impl AsyncFnOnce(&JobClient)) {
    let client = temporal.client().await.expect("connect to Temporal");
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipelines(pipelines![TableSync, RangeToCounting])
        .expect("register the pipeline")
        .build()
        .expect("build the worker");
    let jobs = JobClient::new(client, QUEUE);
    worker
        .run_until(cases(&jobs))
        .await
        .expect("the worker runs");
}

/// The database, with the tables of each case.
struct Sync<'a> {
    db: tokio_postgres::Client,
    pg: &'a PostgresServer,
}

impl Sync<'_> {
    /// Creates `<name>` (the source: `id`, `name`, `updated_at`) and `<name>_copy`.
    async fn tables(&self, name: &str) {
        self.db
            .batch_execute(&format!(
                "CREATE TABLE {name} (id bigint PRIMARY KEY, name text NOT NULL, updated_at bigint NOT NULL);
                 CREATE TABLE {name}_copy (id bigint PRIMARY KEY, name text NOT NULL, updated_at bigint NOT NULL);"
            ))
            .await
            .unwrap();
    }

    /// Inserts ids `from..to`, named `person <id>`, at version `version`.
    async fn insert(&self, table: &str, ids: std::ops::Range<i64>, version: i64) {
        self.db
            .execute(
                &format!(
                    "INSERT INTO {table} SELECT i, 'person ' || i, $3 FROM generate_series($1::bigint, $2::bigint - 1) i"
                ),
                &[&ids.start, &ids.end, &version],
            )
            .await
            .unwrap();
    }

    async fn scalar(&self, sql: &str) -> i64 {
        self.db.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// The copy holds exactly the source's rows, each once.
    async fn assert_in_sync(&self, table: &str, case: &str) {
        let missing = self
            .scalar(&format!(
                "SELECT count(*) FROM {table} s LEFT JOIN {table}_copy c USING (id)
                 WHERE c.id IS NULL OR c.name <> s.name OR c.updated_at <> s.updated_at"
            ))
            .await;
        let (rows, copied) = (
            self.scalar(&format!("SELECT count(*) FROM {table}")).await,
            self.scalar(&format!("SELECT count(*) FROM {table}_copy"))
                .await,
        );
        assert_eq!(
            (missing, copied),
            (0, rows),
            "{case}: {missing} of {rows} rows missing or stale in the copy, which holds {copied}"
        );
    }
}

fn request(table: &str, run: &str, sync: &str) -> RequestOf<TableSync> {
    let source = PostgresSource::table(table, "id")
        .url_env(URL_ENV)
        .incremental("updated_at");
    let sink = PostgresSink::new(format!("{table}_copy"))
        .url_env(URL_ENV)
        .key_columns(["id"])
        .upsert("updated_at");
    TableSync::request(run, source, sink)
        .batch_size(200)
        .incremental(sync)
}

async fn run(jobs: &JobClient, request: RequestOf<TableSync>) -> JobReport<KeyOffset> {
    let id = request.job_id.clone();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        TableSync::start(jobs, request).await.unwrap().report(),
    )
    .await
    .unwrap_or_else(|_| panic!("run {id} did not end within 2 minutes"))
    .unwrap_or_else(|e| panic!("run {id} failed: {e}"));
    println!(
        "{id}: read {}, written {}, already present {}, cursor from {:?} to {:?}",
        report.records_read,
        report.records_written,
        report.already_present,
        report.cursor_from,
        report.cursor
    );
    assert_eq!(report.status, JobStatus::Completed, "{id}: {report:?}");
    report
}

/// Returns the first two runs' cursors.
async fn a_second_run_reads_only_what_changed(
    jobs: &JobClient,
    db: &Sync<'_>,
) -> (serde_json::Value, serde_json::Value) {
    db.tables("people").await;
    db.insert("people", 0..1_000, 1).await;
    let first = run(jobs, request("people", "people-1", "people")).await;
    assert_eq!(first.records_read, 1_000, "a first run reads every row");
    assert_eq!(first.records_written, 1_000);
    assert_eq!(first.cursor_from, None, "a first run starts from nothing");
    assert_eq!(first.cursor.as_ref().unwrap()["value"], "1");
    db.assert_in_sync("people", "after the first run").await;

    db.insert("people", 1_000..1_100, 2).await;
    db.db
        .execute(
            "UPDATE people SET name = 'renamed', updated_at = 3 WHERE id < 50",
            &[],
        )
        .await
        .unwrap();
    let second = run(jobs, request("people", "people-2", "people")).await;
    assert_eq!(
        second.records_read, 150,
        "the second run reads the 100 new rows and the 50 updated ones, nothing else"
    );
    assert_eq!(second.records_written, 150);
    assert_eq!(
        second.cursor_from, first.cursor,
        "it starts where the first ended"
    );
    assert_eq!(second.cursor.as_ref().unwrap()["value"], "3");
    db.assert_in_sync("people", "after the second run").await;

    let third = run(jobs, request("people", "people-3", "people")).await;
    assert_eq!(third.records_read, 0, "nothing changed: nothing read");
    assert_eq!(third.cursor_from, second.cursor);
    (first.cursor.unwrap(), second.cursor.unwrap())
}

async fn a_range_run_reads_between_two_cursors_and_leaves_the_sync_cursor(
    jobs: &JobClient,
    db: &Sync<'_>,
    first: serde_json::Value,
    second: serde_json::Value,
) {
    let range = request("people", "people-range", "people")
        .incremental_from(first.clone())
        .incremental_to(second.clone());
    let ranged = run(jobs, range).await;
    assert_eq!(
        ranged.records_read, 150,
        "the range holds what the second run read: 100 new rows and 50 updated"
    );
    assert_eq!(
        ranged.already_present, 150,
        "the copy holds them: nothing twice"
    );
    assert_eq!(ranged.cursor_to, Some(second.clone()));
    assert_eq!(ranged.cursor, None, "a range run leaves the sync's cursor");
    let next = run(jobs, request("people", "people-4", "people")).await;
    assert_ne!(
        next.cursor_from,
        Some(second),
        "the next live run starts from the last live run, not the range's end"
    );
    assert_eq!(next.records_read, 0);
    db.assert_in_sync("people", "after the range run").await;
}

async fn a_commit_that_lands_late_below_the_cursor_is_read_by_the_next_run(
    jobs: &JobClient,
    db: &Sync<'_>,
) {
    db.tables("late").await;
    db.insert("late", 0..10, 1).await;
    // Transaction A takes version 5 and stays open; B takes 1,000 and commits first.
    let (mut a, connection) = tokio_postgres::connect(&db.pg.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let a = a.transaction().await.unwrap();
    a.execute("INSERT INTO late VALUES (100, 'committed late', 5)", &[])
        .await
        .unwrap();
    db.insert("late", 101..102, 1_000).await;
    let first = run(jobs, request("late", "late-1", "late")).await;
    assert_eq!(
        first.records_read, 11,
        "A is not committed yet: 10 rows and B"
    );
    let cursor = first.cursor.as_ref().unwrap()["value"].clone();
    assert_eq!(
        cursor, "1000",
        "the cursor's value is past A's version (5): a MAX(updated_at) cursor would skip A"
    );
    a.commit().await.unwrap();
    let second = run(jobs, request("late", "late-2", "late")).await;
    assert_eq!(
        second.records_read, 1,
        "the next run reads A, committed after the first run's snapshot"
    );
    assert_eq!(second.records_written, 1);
    db.assert_in_sync("late", "after the late commit").await;
}

async fn a_rerun_from_a_value_reads_the_rows_above_it_and_writes_nothing_twice(
    jobs: &JobClient,
    db: &Sync<'_>,
) {
    let above_1 = db
        .scalar("SELECT count(*) FROM people WHERE updated_at > 1")
        .await;
    let rerun = run(
        jobs,
        request("people", "people-rerun", "people").incremental_from(json!({ "value": "1" })),
    )
    .await;
    assert_eq!(
        rerun.records_read as i64, above_1,
        "a rerun from 1 reads the rows above version 1"
    );
    assert_eq!(
        rerun.already_present, rerun.records_read,
        "the copy holds them already: nothing written twice"
    );
    db.assert_in_sync("people", "after the rerun").await;
}

async fn a_failed_run_leaves_the_next_where_the_last_good_one_ended(
    jobs: &JobClient,
    db: &Sync<'_>,
) {
    db.tables("flaky").await;
    db.insert("flaky", 0..10, 1).await;
    let first = run(jobs, request("flaky", "flaky-1", "flaky")).await;
    db.insert("flaky", 10..15, 2).await;
    // The copy is away: the next run fails before it writes anything.
    db.db
        .batch_execute("ALTER TABLE flaky_copy RENAME TO flaky_away")
        .await
        .unwrap();
    let failed = TableSync::start(jobs, request("flaky", "flaky-2", "flaky"))
        .await
        .unwrap()
        .report()
        .await;
    assert!(
        failed.is_err(),
        "the run without its copy fails: {failed:?}"
    );
    db.db
        .batch_execute("ALTER TABLE flaky_away RENAME TO flaky_copy")
        .await
        .unwrap();
    let next = run(jobs, request("flaky", "flaky-3", "flaky")).await;
    assert_eq!(
        next.cursor_from, first.cursor,
        "the failed run is passed over: the next starts where the first ended"
    );
    assert_eq!(
        next.records_read, 5,
        "and reads the 5 rows the failed run did not write"
    );
    db.assert_in_sync("flaky", "after a failed run").await;
}

async fn the_cursor_survives_a_temporal_server_restart(jobs: &JobClient, db: &Sync<'_>) {
    db.insert("people", 2_000..2_010, 4).await;
    let after = run(jobs, request("people", "people-4", "people")).await;
    assert_eq!(
        after.records_read, 10,
        "after the restart, the run finds the last run's cursor and reads the 10 new rows"
    );
    assert!(after.cursor_from.is_some());
    db.assert_in_sync("people", "after the restart").await;
}

async fn a_schedule_runs_pauses_triggers_backfills_and_is_deleted(jobs: &JobClient, db: &Sync<'_>) {
    db.tables("orders").await;
    db.insert("orders", 0..500, 1).await;
    let schedule = jobs
        .schedule::<TableSync>(
            request("orders", "orders", "orders"),
            &Schedule::every(Duration::from_secs(2)),
        )
        .await
        .expect("create the schedule");
    let again = jobs
        .schedule::<TableSync>(
            request("orders", "orders", "orders"),
            &Schedule::every(Duration::from_secs(2)),
        )
        .await;
    assert!(
        matches!(again, Err(batch_orchestra::JobError::ScheduleExists { .. })),
        "a second schedule with the same id is refused: {again:?}"
    );

    // Three runs: the first loads the table, rows inserted meanwhile come with the next.
    let runs = completed_runs(jobs, "orders", 1).await;
    db.insert("orders", 500..520, 2).await;
    let runs = completed_runs(jobs, "orders", runs.len() + 2).await;
    for r in &runs {
        assert!(
            r.job_id.starts_with("orders-20"),
            "a run is named by its scheduled time: {}",
            r.job_id
        );
        assert_eq!(r.status, JobStatus::Completed, "{}", r.job_id);
    }
    let read: u64 = runs.iter().map(|r| r.records_read).sum();
    assert_eq!(read, 520, "the runs read each row once between them");
    db.assert_in_sync("orders", "after three scheduled runs")
        .await;

    // Paused: no run starts.
    schedule.pause("test pause").await.unwrap();
    let paused_at = SystemTime::now();
    let started = schedule.describe().await.unwrap().runs_started;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let state = schedule.describe().await.unwrap();
    assert!(state.paused);
    assert_eq!(state.note.as_deref(), Some("test pause"));
    assert_eq!(
        state.runs_started, started,
        "a paused schedule starts nothing"
    );

    // Trigger: one run now, paused or not.
    schedule.trigger().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while schedule.describe().await.unwrap().runs_started == started {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trigger started no run"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Backfill the paused window: its runs, named by the times they were due.
    let resumed_at = SystemTime::now();
    let before = completed_runs(jobs, "orders", 0).await.len();
    schedule.backfill(paused_at, resumed_at).await.unwrap();
    let after = completed_runs(jobs, "orders", before + 2).await;
    let backfilled: Vec<&Run> = after
        .iter()
        .filter(|r| {
            r.scheduled
                .is_some_and(|t| (secs(paused_at)..=secs(resumed_at)).contains(&t))
        })
        .collect();
    assert!(
        backfilled.len() >= 2,
        "the paused window's runs were backfilled: {after:?}"
    );

    schedule.delete().await.unwrap();
    let gone = schedule.describe().await;
    assert!(
        matches!(
            gone,
            Err(batch_orchestra::JobError::ScheduleNotFound { .. })
        ),
        "a deleted schedule is gone: {gone:?}"
    );
    db.assert_in_sync("orders", "after the backfill").await;
}

async fn a_run_due_while_the_last_still_runs_is_skipped(jobs: &JobClient) {
    // Each run takes about 3 s (6 batches of 500 ms, one at a time); one is due every second.
    let sink = CountingSink {
        delay_ms: 500,
        ..CountingSink::new("slow-schedule")
    };
    let request =
        batch_orchestra::batch::BatchProcessingRequest::new("slow", RangeSource::new(60), sink)
            .batch_size(10)
            .max_in_flight(1)
            .batches_per_activity(1);
    let schedule = jobs
        .schedule::<RangeToCounting>(request, &Schedule::every(Duration::from_secs(1)))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let state = loop {
        let state = schedule.describe().await.unwrap();
        if state.runs_skipped >= 2 && state.runs_started >= 2 {
            break state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no overlapping run skipped within 30 s: {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        state.running.len() <= 1,
        "one run at a time under the default overlap policy: {state:?}"
    );
    schedule.delete().await.unwrap();
}

/// A completed run of a schedule.
#[derive(Debug)]
struct Run {
    job_id: String,
    /// Seconds since the epoch of the time it was due, from its id.
    scheduled: Option<u64>,
    status: JobStatus,
    records_read: u64,
}

/// Waits (up to a minute) until at least `n` runs of `sync`'s pipeline completed, and returns
/// every completed one, oldest first.
async fn completed_runs(jobs: &JobClient, sync: &str, n: usize) -> Vec<Run> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut runs = Vec::new();
        let mut listed = jobs.temporal().list_workflows(
            format!(
                "WorkflowType = '{}' AND WorkflowId STARTS_WITH '{sync}-' AND ExecutionStatus = 'Completed'",
                <TableSync as batch_orchestra::Pipeline>::NAMES.workflow
            ),
            temporalio_client::WorkflowListOptions::builder()
                .limit(100)
                .build(),
        );
        while let Some(item) = futures::StreamExt::next(&mut listed).await {
            let id = item.unwrap().id().to_owned();
            let report = TableSync::job(jobs, &id).report().await.unwrap();
            runs.push(Run {
                scheduled: scheduled_secs(&id, sync),
                job_id: id,
                status: report.status,
                records_read: report.records_read,
            });
        }
        if runs.len() >= n {
            runs.sort_by(|a, b| a.job_id.cmp(&b.job_id));
            return runs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} runs of `{sync}` completed within a minute",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// `<sync>-2026-12-07T10:00:02Z` -> seconds since the epoch.
fn scheduled_secs(id: &str, sync: &str) -> Option<u64> {
    let t = id.strip_prefix(sync)?.strip_prefix('-')?;
    let (date, clock) = t.strip_suffix('Z')?.split_once('T')?;
    let d: Vec<i64> = date.split('-').filter_map(|p| p.parse().ok()).collect();
    let c: Vec<i64> = clock.split(':').filter_map(|p| p.parse().ok()).collect();
    if d.len() != 3 || c.len() != 3 {
        return None;
    }
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(days * 86_400 + c[0] * 3_600 + c[1] * 60 + c[2]).ok()
}
