//! Sharded jobs on a real dev server into a real MongoDB-wire server: a directory of files
//! listed by glob in small pages, with the parent continuing as new; a file that vanished
//! before it was read, then redriven; a glob that matches nothing; and pause, in-flight and
//! cancel reaching the running shards.
//!
//! One test function: the sink reads its connection string from the worker's environment,
//! set before any other thread starts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use batch_orchestra::connector::Shard;
use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::sharded::ShardedRequest;
use batch_orchestra::sharded::{Grouped, ShardStatus};
use batch_orchestra::testing::MongoServer;
use batch_orchestra::{JobClient, JobError, JobStatus, pipeline, pipelines};
use batch_orchestra_tests::Harness;
use mongodb::bson::{Document, doc};

pipeline! {
    /// CSV files into MongoDB, one shard per file.
    pub FilesToMongo { source: CsvFile, transform: row_to_document, sink: MongoSink }
}

const URI_ENV: &str = "BATCH_ORCHESTRA_SHARDED_TEST_MONGODB_URI";

#[test]
fn sharded_jobs_over_directories_of_files() {
    let mongo = MongoServer::start().unwrap();
    // SAFETY: set before the runtime or any other thread exists.
    unsafe { std::env::set_var(URI_ENV, mongo.uri()) };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut h = Harness::with(pipelines![FilesToMongo]).await;
            let db = mongodb::Client::with_uri_str(mongo.uri())
                .await
                .unwrap()
                .database("sharded");
            h.worker.run_until(cases(&h.jobs, &db)).await.unwrap();
        });
}

async fn cases(jobs: &JobClient, db: &mongodb::Database) {
    thirty_files_in_small_pages_every_row_once(jobs, db).await;
    a_vanished_file_fails_its_shard_and_is_redriven(jobs, db).await;
    a_glob_that_matches_nothing_is_a_configuration_error(jobs).await;
    pause_in_flight_and_cancel_reach_the_running_shards(jobs, db).await;
}

fn sink(collection: &str) -> MongoSink {
    MongoSink::new("sharded", collection).uri_env(URI_ENV)
}

async fn count(db: &mongodb::Database, collection: &str, filter: Document) -> u64 {
    db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

/// `rows` good rows `id,name` numbered from `from`, then `bad` ragged rows.
fn csv(from: u64, rows: u64, bad: u64) -> String {
    let mut text = String::from("id,name\n");
    for i in from..from + rows {
        text.push_str(&format!("{i},person {i}\n"));
    }
    for _ in 0..bad {
        text.push_str("ragged\n");
    }
    text
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

async fn thirty_files_in_small_pages_every_row_once(jobs: &JobClient, db: &mongodb::Database) {
    let dir = tempfile::tempdir().unwrap();
    // 30 files, half of them in a subdirectory; file 7 is empty, file 11 has only a header,
    // files 3 and 20 have bad rows; a text file that the glob leaves out.
    let mut expected: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut next_id = 0;
    for i in 0..30u64 {
        let key = if i % 2 == 0 {
            format!("f{i:02}.csv")
        } else {
            format!("sub/f{i:02}.csv")
        };
        let (text, read, errors) = match i {
            7 => (String::new(), 0, 0),
            11 => ("id,name\n".to_owned(), 0, 0),
            3 | 20 => (csv(next_id, 10 + i, 2), 12 + i, 2),
            _ => (csv(next_id, 10 + i, 0), 10 + i, 0),
        };
        next_id += 10 + i;
        write(&dir.path().join(&key), &text);
        expected.insert(key, (read, errors));
    }
    write(&dir.path().join("notes.txt"), "not a csv\n");
    let good: u64 = expected.values().map(|(read, errors)| read - errors).sum();
    let pattern = format!("{}/**/*.csv", dir.path().display());
    let job = FilesToMongo::request("dir-30", CsvFile::new(&pattern), sink("dir30"))
        .batch_size(7)
        .max_batches_per_run(3);
    // One shard per file, so the report has each file's counts.
    let request = ShardedRequest::new(job)
        .list_page(4)
        .max_shards_per_run(7)
        .max_concurrent_shards(3)
        .max_inputs_per_shard(1);
    let handle = FilesToMongo::start_sharded(jobs, request).await.unwrap();
    let report = handle.report().await.unwrap();
    assert_eq!(report.status, JobStatus::Completed, "{report:#?}");
    assert_eq!(report.shards, 30);
    assert_eq!(report.shards_completed, 30);
    assert!(report.runs >= 5, "30 shards, 7 a run: {} runs", report.runs);
    assert_eq!(report.records_written, good);
    assert_eq!(report.record_errors, 4);
    assert_eq!(count(db, "dir30", doc! {}).await, good, "every row once");
    let per_file: BTreeMap<String, (u64, u64)> = report
        .shard_reports
        .iter()
        .map(|s| (s.key.clone(), (s.records_read, s.record_errors)))
        .collect();
    assert_eq!(per_file, expected, "per-file counts");
    // Shard reports come in listing order, and a shard's job id names its file.
    let keys: Vec<_> = report.shard_reports.iter().map(|s| s.key.clone()).collect();
    assert_eq!(keys, expected.keys().cloned().collect::<Vec<_>>());
    assert_eq!(report.shard_reports[0].workflow_id, "dir-30/f00.csv");
    // Record errors name their file and line.
    let samples: Vec<String> = report.error_samples.iter().map(|e| e.to_string()).collect();
    assert_eq!(samples.len(), 4, "{samples:?}");
    assert!(
        samples[0].starts_with("f20.csv: record 30 (line 32"),
        "{samples:?}"
    );
    assert!(
        samples[2].starts_with("sub/f03.csv: record 13 (line 15"),
        "{samples:?}"
    );

    // The same job again: every shard's child id is taken by a completed run, so none runs
    // again and nothing is written twice.
    let job = FilesToMongo::request("dir-30", CsvFile::new(&pattern), sink("dir30"));
    let request = ShardedRequest::new(job)
        .list_page(100)
        .max_inputs_per_shard(1);
    let again = FilesToMongo::start_sharded(jobs, request)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(again.shards_already_done, 30, "{again:#?}");
    assert_eq!(again.records_written, 0);

    // And grouped 8 files to a shard: new shards, but each file's records keep their ids
    // (`<job id>/<file>`), so everything is already there.
    let job = FilesToMongo::request("dir-30", CsvFile::new(&pattern), sink("dir30"));
    let request = ShardedRequest::new(job)
        .list_page(5)
        .max_inputs_per_shard(8);
    let regrouped = FilesToMongo::start_sharded(jobs, request)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(regrouped.status, JobStatus::Completed, "{regrouped:#?}");
    assert!(
        regrouped.shards < 30,
        "grouped: {} shards",
        regrouped.shards
    );
    // A group of one file has that file's id from the first run: already done, not rerun.
    let done_before: u64 = regrouped
        .shard_reports
        .iter()
        .filter(|s| s.status == ShardStatus::AlreadyDone)
        .flat_map(|s| &s.inputs)
        .map(|key| expected[key].0 - expected[key].1)
        .sum();
    assert_eq!(regrouped.records_written, 0);
    assert_eq!(
        regrouped.already_present + done_before,
        good,
        "{regrouped:#?}"
    );
    assert_eq!(count(db, "dir30", doc! {}).await, good);

    // Grouped from the start, into a new collection: every row once, errors naming their file.
    let job = FilesToMongo::request("dir-30-grouped", CsvFile::new(&pattern), sink("dir30g"))
        .batch_size(7);
    let grouped =
        FilesToMongo::start_sharded(jobs, ShardedRequest::new(job).max_inputs_per_shard(12))
            .await
            .unwrap()
            .report()
            .await
            .unwrap();
    assert_eq!(grouped.status, JobStatus::Completed, "{grouped:#?}");
    assert_eq!(grouped.shards, 3, "30 files, 12 to a shard");
    let inputs: Vec<String> = grouped
        .shard_reports
        .iter()
        .flat_map(|s| s.inputs.clone())
        .collect();
    assert_eq!(inputs, expected.keys().cloned().collect::<Vec<_>>());
    assert_eq!((grouped.records_written, grouped.record_errors), (good, 4));
    assert_eq!(count(db, "dir30g", doc! {}).await, good, "every row once");
    let samples: Vec<String> = grouped
        .error_samples
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert!(
        samples
            .iter()
            .any(|e| e.contains("line 32") && e.contains("in `f20.csv`")),
        "{samples:?}"
    );
}

async fn a_vanished_file_fails_its_shard_and_is_redriven(jobs: &JobClient, db: &mongodb::Database) {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    write(&dir.path().join("a.csv"), &csv(0, 50, 0));
    write(&dir.path().join("c.csv"), &csv(100, 50, 0));
    // An explicit list naming a file that is not there (as if it vanished after listing).
    let inputs = ["a.csv", "b.csv", "c.csv"]
        .map(|name| Shard::new(name, CsvFile::new(path(name))))
        .to_vec();
    let job = FilesToMongo::request("vanished", CsvFile::new(path("*.csv")), sink("vanished"));
    // One file a shard: a file that fails fails only its own shard.
    let request = ShardedRequest::new(job)
        .inputs(inputs)
        .max_inputs_per_shard(1);
    let handle = FilesToMongo::start_sharded(jobs, request).await.unwrap();
    let report = handle.report().await.unwrap();
    assert_eq!(
        report.status,
        JobStatus::CompletedWithFailures,
        "{report:#?}"
    );
    assert_eq!((report.shards_completed, report.shards_failed), (2, 1));
    assert_eq!(report.records_written, 100);
    let failed = report.shard("b.csv").unwrap();
    assert_eq!(failed.status, ShardStatus::Failed);
    let why = failed.failure.as_deref().unwrap();
    assert!(why.contains("b.csv"), "names the file: {why}");
    let err = report.clone().into_result().unwrap_err();
    assert!(err.to_string().contains("b.csv"), "{err}");

    // The file arrives; the redrive runs only that shard.
    write(&dir.path().join("b.csv"), &csv(50, 50, 0));
    let redrive = handle.redrive(jobs).await.unwrap();
    assert_eq!(redrive.job_id(), "vanished-redrive-1");
    let report = redrive.report().await.unwrap();
    assert_eq!(report.status, JobStatus::Completed, "{report:#?}");
    assert_eq!((report.shards, report.records_written), (1, 50));
    assert_eq!(report.redrive_of.as_deref(), Some("vanished"));
    assert_eq!(count(db, "vanished", doc! {}).await, 150);
    let again = handle.redrive(jobs).await;
    assert!(again.is_ok(), "the original job still has its failed shard");
}

async fn a_glob_that_matches_nothing_is_a_configuration_error(jobs: &JobClient) {
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/*.csv", dir.path().display());
    let job = FilesToMongo::request("nothing", CsvFile::new(&pattern), sink("nothing"));
    let err = FilesToMongo::start_sharded(jobs, ShardedRequest::new(job))
        .await
        .unwrap()
        .report()
        .await
        .unwrap_err();
    match err {
        JobError::Failed { message, kind, .. } => {
            assert_eq!(kind, "ConfigError");
            assert!(
                message.contains(&format!("no input matches `{pattern}`")),
                "{message}"
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

async fn pause_in_flight_and_cancel_reach_the_running_shards(
    jobs: &JobClient,
    db: &mongodb::Database,
) {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4u64 {
        write(
            &dir.path().join(format!("part-{i}.csv")),
            &csv(i * 100_000, 6_000, 0),
        );
    }
    let pattern = format!("{}/part-*.csv", dir.path().display());
    // Slow shards: 1,000 rows a second each, two at once.
    let job = FilesToMongo::request("steered", CsvFile::new(&pattern), sink("steered"))
        .batch_size(100)
        .batches_per_activity(1)
        .max_in_flight(1)
        .max_records_per_s(1_000);
    let request = ShardedRequest::new(job)
        .max_concurrent_shards(2)
        .max_inputs_per_shard(1);
    let handle = FilesToMongo::start_sharded(jobs, request).await.unwrap();
    let running = wait_for(|| async {
        let p = handle.progress().await.ok()?;
        (p.running.len() == 2).then_some(p.running)
    })
    .await;
    let children: Vec<_> = running
        .iter()
        .map(|r| jobs.job::<Grouped<FilesToMongo>>(r.workflow_id.clone()))
        .collect();

    handle.pause().await.unwrap();
    for child in &children {
        wait_for(|| async { child.progress().await.ok()?.paused.then_some(()) }).await;
    }
    assert!(handle.progress().await.unwrap().paused);
    handle.set_max_in_flight(3).await.unwrap();
    for child in &children {
        wait_for(|| async { (child.progress().await.ok()?.max_in_flight == 3).then_some(()) })
            .await;
    }
    handle.resume().await.unwrap();
    for child in &children {
        wait_for(|| async { (!child.progress().await.ok()?.paused).then_some(()) }).await;
    }

    handle.cancel().await.unwrap();
    let report = handle.report().await.unwrap();
    assert_eq!(report.status, JobStatus::Cancelled, "{report:#?}");
    assert!(report.shards_cancelled >= 2, "{report:#?}");
    for child in &children {
        let child_report = child.report().await.unwrap();
        assert_eq!(child_report.status, JobStatus::Cancelled);
    }
    // What the report says was written is what the sink holds: nothing lost, nothing twice.
    assert!(report.records_written > 0);
    assert_eq!(count(db, "steered", doc! {}).await, report.records_written);
}

/// Polls `check` every 100 ms until it gives a value (at most 30 s).
async fn wait_for<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..300 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for the condition");
}
