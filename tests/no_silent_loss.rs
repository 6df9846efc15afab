//! Nothing dropped without a word: rows a unique index refuses are record errors (not
//! "already present"), a key held by a different row or document is a key conflict (only the
//! same values under the key are "already present"), and a job id reused over a new input
//! writes that input's rows, while
//! the same input run again is recognised. Real Temporal, MongoDB-wire and PostgreSQL servers.
//!
//! One test function: the sinks read their connection strings from the worker's environment,
//! and the variables are set before any other thread starts. Each check prints its name.

use std::path::Path;
use std::time::{Duration, SystemTime};

use batch_orchestra::batch::JobReport;
use batch_orchestra::connectors::csv::{CsvFile, CsvOffset};
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::connectors::postgres::{PostgresSink, row_from_csv};
use batch_orchestra::testing::{MongoServer, PostgresServer};
use batch_orchestra::{JobClient, pipeline, pipelines};
use batch_orchestra_tests::{Harness, run};
use mongodb::bson::{Document, doc};
use tokio_postgres::NoTls;

pipeline! {
    /// CSV rows into MongoDB documents.
    pub CsvToMongo { source: CsvFile, transform: row_to_document, sink: MongoSink }
}

pipeline! {
    /// CSV rows into PostgreSQL rows.
    pub CsvToPostgres { source: CsvFile, transform: row_from_csv, sink: PostgresSink }
}

const MONGO_ENV: &str = "BATCH_ORCHESTRA_TEST_LOSS_MONGODB_URI";
const PG_ENV: &str = "BATCH_ORCHESTRA_TEST_LOSS_DATABASE_URL";

type Report = JobReport<CsvOffset>;

#[test]
fn nothing_is_dropped_silently() {
    let mongo = MongoServer::start().unwrap();
    let pg = PostgresServer::start().unwrap();
    // SAFETY: set before the runtime, the servers' clients or any other thread exist.
    unsafe {
        std::env::set_var(MONGO_ENV, mongo.uri());
        std::env::set_var(PG_ENV, pg.url());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut h = Harness::with(pipelines![CsvToMongo, CsvToPostgres]).await;
            let db = mongodb::Client::with_uri_str(mongo.uri())
                .await
                .unwrap()
                .database("loss");
            let (pg_db, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
            tokio::spawn(connection);
            let dir = tempfile::tempdir().unwrap();
            let jobs = &h.jobs;
            let dir = dir.path();
            h.worker
                .run_until(async {
                    println!("check: a MongoDB unique index on another field");
                    mongo_unique_index_refusals_are_record_errors(jobs, &db, dir).await;
                    println!("check: a MongoDB upsert refused by a unique index");
                    mongo_upsert_refusals_are_record_errors(jobs, &db, dir).await;
                    println!("check: a job id reused over a new file (MongoDB)");
                    job_id_reused_over_a_new_file_writes_it(jobs, &db, dir).await;
                    println!("check: a file rewritten in place under the same path");
                    same_path_rewritten_is_a_new_input(jobs, &db, dir).await;
                    println!("check: a PostgreSQL unique index on another column");
                    postgres_unique_index_refusals_are_record_errors(jobs, &pg_db, dir).await;
                    println!("check: a job id reused over a new file (PostgreSQL)");
                    postgres_job_id_reused_over_a_new_file_writes_it(jobs, &pg_db, dir).await;
                    println!("check: a PostgreSQL key held by a different row");
                    postgres_key_held_by_a_different_row_is_a_conflict(jobs, &pg_db, dir).await;
                    println!("check: a MongoDB id held by a different document");
                    mongo_id_held_by_a_different_document_is_a_conflict(jobs, &db, dir).await;
                })
                .await
                .unwrap();
        });
}

/// `rows` people `id,name,email` from `first`; every row has the same length, so two files
/// put their rows at the same byte offsets.
fn people(first: u32, rows: u32) -> Vec<u8> {
    let mut s = String::from("id,name,email\n");
    for i in first..first + rows {
        s.push_str(&format!("{i:06},person {i:06},p{i:06}@example.com\n"));
    }
    s.into_bytes()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

async fn to_mongo(jobs: &JobClient, job: &str, path: &str, sink: MongoSink) -> Report {
    let request = CsvToMongo::request(job, CsvFile::new(path), sink)
        .batch_size(25)
        .max_in_flight(4);
    run::<CsvToMongo>(jobs, request)
        .await
        .unwrap_or_else(|e| panic!("job {job}: {e}"))
}

async fn count(db: &mongodb::Database, collection: &str, filter: Document) -> u64 {
    db.collection::<Document>(collection)
        .count_documents(filter)
        .await
        .unwrap()
}

async fn with_email_index(db: &mongodb::Database, collection: &str) {
    let coll = db.collection::<Document>(collection);
    coll.create_index(
        mongodb::IndexModel::builder()
            .keys(doc! { "email": 1 })
            .options(
                mongodb::options::IndexOptions::builder()
                    .unique(true)
                    .build(),
            )
            .build(),
    )
    .await
    .unwrap();
    // Two people of the file are there already, under other ids.
    coll.insert_many([
        doc! { "_id": "crm-1", "email": "p000003@example.com" },
        doc! { "_id": "crm-2", "email": "p000077@example.com" },
    ])
    .await
    .unwrap();
}

fn assert_index_refusals(report: &Report, index: &str, field: &str) {
    assert_eq!(report.records_written, 98, "{report:?}");
    assert_eq!(report.already_present, 0, "{report:?}");
    assert_eq!(report.record_errors, 2, "{report:?}");
    let lines: Vec<_> = report
        .error_samples
        .iter()
        .map(|e| e.position.line)
        .collect();
    assert_eq!(lines, [Some(5), Some(79)], "{report:?}");
    assert_messages(report, &[index, field], "@example.com");
}

/// Every sampled error's message names each of `names` and never holds `value`.
fn assert_messages(report: &Report, names: &[&str], value: &str) {
    for e in &report.error_samples {
        for name in names {
            assert!(e.message.contains(name), "names {name}: {}", e.message);
        }
        assert!(!e.message.contains(value), "never the value: {}", e.message);
    }
}

async fn mongo_unique_index_refusals_are_record_errors(
    jobs: &JobClient,
    db: &mongodb::Database,
    dir: &Path,
) {
    with_email_index(db, "indexed").await;
    let path = write(dir, "indexed.csv", &people(0, 100));
    let sink = MongoSink::new("loss", "indexed").uri_env(MONGO_ENV);
    let report = to_mongo(jobs, "indexed", &path, sink.clone()).await;
    assert_index_refusals(&report, "email_1", "`email`");
    assert_eq!(count(db, "indexed", doc! {}).await, 100);
    // Run again: the 98 are the same records written before; the 2 are still refused.
    let again = to_mongo(jobs, "indexed", &path, sink).await;
    assert_eq!(again.records_written, 0, "{again:?}");
    assert_eq!(again.already_present, 98, "{again:?}");
    assert_eq!(again.record_errors, 2, "{again:?}");
}

async fn mongo_upsert_refusals_are_record_errors(
    jobs: &JobClient,
    db: &mongodb::Database,
    dir: &Path,
) {
    with_email_index(db, "upserted").await;
    let path = write(dir, "upserted.csv", &people(0, 100));
    let sink = MongoSink::new("loss", "upserted")
        .uri_env(MONGO_ENV)
        .upsert();
    let report = to_mongo(jobs, "upserted", &path, sink).await;
    assert_index_refusals(&report, "email_1", "`email`");
    assert_eq!(count(db, "upserted", doc! {}).await, 100);
}

async fn job_id_reused_over_a_new_file_writes_it(
    jobs: &JobClient,
    db: &mongodb::Database,
    dir: &Path,
) {
    let day1 = write(dir, "day1.csv", &people(0, 100));
    let day2 = write(dir, "day2.csv", &people(1_000, 100));
    let sink = || MongoSink::new("loss", "daily").uri_env(MONGO_ENV);
    let first = to_mongo(jobs, "daily-import", &day1, sink()).await;
    assert_eq!(first.records_written, 100, "{first:?}");
    let second = to_mongo(jobs, "daily-import", &day2, sink()).await;
    assert_eq!(
        (second.records_written, second.already_present),
        (100, 0),
        "day 2's rows sit at day 1's offsets and must still be written: {second:?}"
    );
    assert_eq!(count(db, "daily", doc! {}).await, 200);
    assert_ne!(first.input_fingerprint, second.input_fingerprint);
    // Day 1 again under the same id (a resumed job): recognised, nothing written twice.
    let resumed = to_mongo(jobs, "daily-import", &day1, sink()).await;
    assert_eq!(
        (resumed.records_written, resumed.already_present),
        (0, 100),
        "{resumed:?}"
    );
    assert_eq!(resumed.input_fingerprint, first.input_fingerprint);
    assert_eq!(count(db, "daily", doc! {}).await, 200);
}

async fn same_path_rewritten_is_a_new_input(jobs: &JobClient, db: &mongodb::Database, dir: &Path) {
    let path = write(dir, "export.csv", &people(0, 100));
    let sink = || MongoSink::new("loss", "export").uri_env(MONGO_ENV);
    let first = to_mongo(jobs, "export", &path, sink()).await;
    assert_eq!(first.records_written, 100, "{first:?}");
    // The next export under the same name: same length, another modification time.
    std::fs::write(&path, people(5_000, 100)).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(60))
        .unwrap();
    drop(file);
    let second = to_mongo(jobs, "export", &path, sink()).await;
    assert_eq!(
        (second.records_written, second.already_present),
        (100, 0),
        "{second:?}"
    );
    assert_eq!(count(db, "export", doc! {}).await, 200);
    assert_eq!(
        count(db, "export", doc! { "email": "p005042@example.com" }).await,
        1
    );
}

async fn to_postgres(jobs: &JobClient, job: &str, path: &str, table: &str) -> Report {
    let sink = PostgresSink::new(table).url_env(PG_ENV);
    let request = CsvToPostgres::request(job, CsvFile::new(path), sink)
        .batch_size(25)
        .max_in_flight(4);
    run::<CsvToPostgres>(jobs, request)
        .await
        .unwrap_or_else(|e| panic!("job {job}: {e}"))
}

async fn pg_count(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

async fn postgres_unique_index_refusals_are_record_errors(
    jobs: &JobClient,
    db: &tokio_postgres::Client,
    dir: &Path,
) {
    db.batch_execute(
        "CREATE TABLE people (batch_key text UNIQUE, id text, name text, email text UNIQUE);
         INSERT INTO people (batch_key, id, email) VALUES
            ('crm-1', 'x', 'p000003@example.com'), ('crm-2', 'y', 'p000077@example.com');",
    )
    .await
    .unwrap();
    let path = write(dir, "pg-people.csv", &people(0, 100));
    let report = to_postgres(jobs, "pg-people", &path, "people").await;
    assert_index_refusals(&report, "people_email_key", "`email`");
    assert_eq!(pg_count(db, "people").await, 100);
}

async fn postgres_job_id_reused_over_a_new_file_writes_it(
    jobs: &JobClient,
    db: &tokio_postgres::Client,
    dir: &Path,
) {
    db.batch_execute("CREATE TABLE daily (batch_key text UNIQUE, id text, name text, email text)")
        .await
        .unwrap();
    let day1 = write(dir, "pg-day1.csv", &people(0, 100));
    let day2 = write(dir, "pg-day2.csv", &people(1_000, 100));
    let first = to_postgres(jobs, "pg-daily", &day1, "daily").await;
    assert_eq!(first.records_written, 100, "{first:?}");
    let second = to_postgres(jobs, "pg-daily", &day2, "daily").await;
    assert_eq!(
        (second.records_written, second.already_present),
        (100, 0),
        "{second:?}"
    );
    let resumed = to_postgres(jobs, "pg-daily", &day1, "daily").await;
    assert_eq!(
        (resumed.records_written, resumed.already_present),
        (0, 100),
        "{resumed:?}"
    );
    assert_eq!(pg_count(db, "daily").await, 200);
}

/// People 0..20, a row with person 5's id and another name (line 22), an exact copy of person
/// 6 (line 23), then people 20..50: the copies are in the first batch of 25, with their twins,
/// so which of two rows comes first does not depend on how batches interleave.
fn people_with_duplicate_keys() -> Vec<u8> {
    let mut bytes = people(0, 20);
    bytes.extend_from_slice(b"000005,another person,p000005@example.com\n");
    bytes.extend_from_slice(b"000006,person 000006,p000006@example.com\n");
    bytes.extend_from_slice(&people(20, 30)[b"id,name,email\n".len()..]);
    bytes
}

/// Of [`people_with_duplicate_keys`] over a store that held, before the job, person 10's key
/// with another name and person 20 exactly: the conflicts are person 10 (line 12) and the
/// second person 5 (line 22), each naming the column that differs; person 20 and the copy of
/// person 6 are already present.
fn assert_key_conflicts(report: &Report, written: u64, present: u64, column: &str) {
    assert_eq!(
        (
            report.records_written,
            report.already_present,
            report.record_errors
        ),
        (written, present, 2),
        "{report:?}"
    );
    let mut lines: Vec<_> = report
        .error_samples
        .iter()
        .map(|e| e.position.line)
        .collect();
    lines.sort();
    assert_eq!(lines, [Some(12), Some(22)], "{report:?}");
    assert_messages(report, &["key conflict", column], "person");
}

async fn postgres_key_held_by_a_different_row_is_a_conflict(
    jobs: &JobClient,
    db: &tokio_postgres::Client,
    dir: &Path,
) {
    db.batch_execute(
        "CREATE TABLE keyed (id text PRIMARY KEY, name text, email text);
         INSERT INTO keyed VALUES
            ('000010', 'someone else', 'p000010@example.com'),
            ('000020', 'person 000020', 'p000020@example.com');",
    )
    .await
    .unwrap();
    let path = write(dir, "pg-keyed.csv", &people_with_duplicate_keys());
    let run = |job: &'static str| {
        let sink = PostgresSink::new("keyed")
            .url_env(PG_ENV)
            .key_columns(["id"]);
        let request = CsvToPostgres::request(job, CsvFile::new(&path), sink)
            .batch_size(25)
            .max_in_flight(4);
        async move {
            run::<CsvToPostgres>(jobs, request)
                .await
                .unwrap_or_else(|e| panic!("job {job}: {e}"))
        }
    };
    let first = run("pg-keyed").await;
    assert_key_conflicts(&first, 48, 2, "`name`");
    // Run again (a new job over the same rows): everything is there, the conflicts remain.
    let again = run("pg-keyed-again").await;
    assert_key_conflicts(&again, 0, 50, "`name`");
    assert_eq!(pg_count(db, "keyed").await, 50);
    let kept: String = db
        .query_one("SELECT name FROM keyed WHERE id = '000010'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, "someone else", "a stored row is never overwritten");
}

async fn mongo_id_held_by_a_different_document_is_a_conflict(
    jobs: &JobClient,
    db: &mongodb::Database,
    dir: &Path,
) {
    db.collection::<Document>("keyed")
        .insert_many([
            doc! { "_id": "000010", "id": "000010", "name": "someone else", "email": "p000010@example.com" },
            doc! { "_id": "000020", "id": "000020", "name": "person 000020", "email": "p000020@example.com" },
        ])
        .await
        .unwrap();
    let path = write(dir, "mongo-keyed.csv", &people_with_duplicate_keys());
    let sink = || {
        MongoSink::new("loss", "keyed")
            .uri_env(MONGO_ENV)
            .id_field("id")
    };
    let first = to_mongo(jobs, "mongo-keyed", &path, sink()).await;
    assert_key_conflicts(&first, 48, 2, "`name`");
    let again = to_mongo(jobs, "mongo-keyed-again", &path, sink()).await;
    assert_key_conflicts(&again, 0, 50, "`name`");
    assert_eq!(count(db, "keyed", doc! {}).await, 50);
    assert_eq!(
        count(
            db,
            "keyed",
            doc! { "_id": "000010", "name": "someone else" }
        )
        .await,
        1,
        "a stored document is never overwritten"
    );
}
