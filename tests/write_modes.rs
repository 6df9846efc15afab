//! Upserts on real servers: a newer version of a row replaces the stored one, an older one is
//! superseded and never written over it, the same version with the same values is already
//! present and with other values a version conflict (a record error with its line); several
//! versions of one key in a batch write the highest. PostgreSQL (`PostgresSink::upsert`) and
//! a MongoDB-wire server (`MongoSink::version_field`, and plain `upsert`, where the last write
//! wins). Real Temporal through the batch workflow.
//!
//! One test function: the sinks read their connection strings from the worker's environment,
//! and the variables are set before any other thread starts. Each check prints its name.

use std::path::Path;

use batch_orchestra::batch::JobReport;
use batch_orchestra::connectors::csv::{CsvFile, CsvOffset};
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::connectors::postgres::{PostgresSink, row_from_csv};
use batch_orchestra::testing::{MongoServer, PostgresServer};
use batch_orchestra::{JobClient, pipeline, pipelines};
use batch_orchestra_tests::{Harness, assert_job_failed, run};
use mongodb::bson::{Document, doc};
use tokio_postgres::NoTls;

pipeline! {
    /// CSV rows upserted into PostgreSQL.
    pub CsvUpsertPostgres { source: CsvFile, transform: row_from_csv, sink: PostgresSink }
}

pipeline! {
    /// CSV rows upserted into MongoDB.
    pub CsvUpsertMongo { source: CsvFile, transform: row_to_document, sink: MongoSink }
}

const PG_ENV: &str = "BATCH_ORCHESTRA_TEST_MODES_DATABASE_URL";
const MONGO_ENV: &str = "BATCH_ORCHESTRA_TEST_MODES_MONGODB_URI";

type Report = JobReport<CsvOffset>;

#[test]
fn write_modes() {
    let pg = PostgresServer::start().unwrap();
    let mongo = MongoServer::start().unwrap();
    // SAFETY: set before the runtime, the servers' clients or any other thread exist.
    unsafe {
        std::env::set_var(PG_ENV, pg.url());
        std::env::set_var(MONGO_ENV, mongo.uri());
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut h = Harness::with(pipelines![CsvUpsertPostgres, CsvUpsertMongo]).await;
            let (pg_db, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
            tokio::spawn(connection);
            let db = mongodb::Client::with_uri_str(mongo.uri())
                .await
                .unwrap()
                .database("modes");
            let dir = tempfile::tempdir().unwrap();
            let (jobs, dir) = (&h.jobs, dir.path());
            h.worker
                .run_until(async {
                    println!("check: PostgreSQL upsert writes newer versions, keeps newer rows");
                    postgres_upsert_orders_by_version(jobs, &pg_db, dir).await;
                    println!("check: PostgreSQL upsert of versions of one key in one batch");
                    postgres_versions_in_one_batch(jobs, &pg_db, dir).await;
                    println!("check: PostgreSQL upsert needs key columns and a version column");
                    postgres_upsert_configuration_errors(jobs, &pg_db, dir).await;
                    println!("check: MongoDB upsert by version field");
                    mongo_upsert_orders_by_version(jobs, &db, dir).await;
                    println!("check: MongoDB upsert of versions of one id in one batch");
                    mongo_versions_in_one_batch(jobs, &db, dir).await;
                    println!("check: MongoDB upsert without a version: the last write wins");
                    mongo_upsert_without_version(jobs, &db, dir).await;
                })
                .await
                .unwrap();
        });
}

/// Versions of three keys in one batch: key 1 at days 1, 3, 2; key 2 twice at day 1 with
/// other names (lines 5 and 6: the second wins, the first is a version conflict); key 3
/// twice at day 1 with other names, then at day 2 (both superseded, neither a conflict).
const ONE_BATCH: [(u32, &str, u32); 8] = [
    (1, "a", 1),
    (1, "c", 3),
    (1, "b", 2),
    (2, "x", 1),
    (2, "y", 1),
    (3, "d", 1),
    (3, "e", 1),
    (3, "f", 2),
];

/// Accounts `id,name,updated_at`, one line each, in order.
fn accounts(rows: &[(u32, &str, u32)]) -> Vec<u8> {
    let mut s = String::from("id,name,updated_at\n");
    for (id, name, day) in rows {
        s.push_str(&format!("{id},{name},2026-01-{day:02}T00:00:00Z\n"));
    }
    s.into_bytes()
}

/// The first load: ids 0..100, named `v1-<id>`, on day 10.
fn first_load() -> Vec<u8> {
    let names: Vec<String> = (0..100).map(|i| format!("v1-{i}")).collect();
    let rows: Vec<_> = (0..100)
        .map(|i| (i, names[i as usize].as_str(), 10))
        .collect();
    accounts(&rows)
}

/// The second load: ids 50..75 newer (day 20), 75..100 older (day 5), 100..150 new (day 10).
fn second_load() -> Vec<u8> {
    let names: Vec<String> = (50..150).map(|i| format!("v2-{i}")).collect();
    let rows: Vec<_> = (50..150)
        .map(|i| {
            let day = match i {
                50..75 => 20,
                75..100 => 5,
                _ => 10,
            };
            (i, names[(i - 50) as usize].as_str(), day)
        })
        .collect();
    accounts(&rows)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

async fn to_postgres(jobs: &JobClient, job: &str, path: &str, sink: PostgresSink) -> Report {
    let request = CsvUpsertPostgres::request(job, CsvFile::new(path), sink.url_env(PG_ENV))
        .batch_size(20)
        .max_in_flight(4);
    run::<CsvUpsertPostgres>(jobs, request)
        .await
        .unwrap_or_else(|e| panic!("job {job}: {e}"))
}

fn counts(r: &Report) -> (u64, u64, u64, u64) {
    (
        r.records_written,
        r.already_present,
        r.superseded,
        r.record_errors,
    )
}

async fn pg_names(
    db: &tokio_postgres::Client,
    table: &str,
    ids: std::ops::Range<i64>,
) -> Vec<String> {
    db.query(
        &format!("SELECT name FROM {table} WHERE id >= $1 AND id < $2 ORDER BY id"),
        &[&ids.start, &ids.end],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn names(prefix: &str, ids: std::ops::Range<i64>) -> Vec<String> {
    ids.map(|i| format!("{prefix}-{i}")).collect()
}

async fn postgres_upsert_orders_by_version(
    jobs: &JobClient,
    db: &tokio_postgres::Client,
    dir: &Path,
) {
    db.batch_execute(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, name text, updated_at timestamptz)",
    )
    .await
    .unwrap();
    let sink = || {
        PostgresSink::new("accounts")
            .key_columns(["id"])
            .upsert("updated_at")
    };
    let first = write(dir, "first.csv", &first_load());
    let report = to_postgres(jobs, "pg-upsert-1", &first, sink()).await;
    assert_eq!(counts(&report), (100, 0, 0, 0), "{report:?}");

    let second = write(dir, "second.csv", &second_load());
    let report = to_postgres(jobs, "pg-upsert-2", &second, sink()).await;
    // 25 newer versions and 50 new keys written; 25 older versions superseded.
    assert_eq!(counts(&report), (75, 0, 25, 0), "{report:?}");
    assert_eq!(pg_names(db, "accounts", 0..50).await, names("v1", 0..50));
    assert_eq!(pg_names(db, "accounts", 50..75).await, names("v2", 50..75));
    assert_eq!(
        pg_names(db, "accounts", 75..100).await,
        names("v1", 75..100)
    );
    assert_eq!(
        pg_names(db, "accounts", 100..150).await,
        names("v2", 100..150)
    );

    // The second file again, as another job (a rerun, a redrive): nothing written twice.
    let report = to_postgres(jobs, "pg-upsert-2-again", &second, sink()).await;
    assert_eq!(counts(&report), (0, 75, 25, 0), "{report:?}");
    // The first file late: every row it holds is older or the same.
    let report = to_postgres(jobs, "pg-upsert-1-late", &first, sink()).await;
    assert_eq!(counts(&report), (0, 75, 25, 0), "{report:?}");
    assert_eq!(pg_names(db, "accounts", 50..75).await, names("v2", 50..75));
}

async fn postgres_versions_in_one_batch(jobs: &JobClient, db: &tokio_postgres::Client, dir: &Path) {
    db.batch_execute(
        "CREATE TABLE versions (id bigint PRIMARY KEY, name text, updated_at timestamptz)",
    )
    .await
    .unwrap();
    let csv = accounts(&ONE_BATCH);
    let path = write(dir, "versions.csv", &csv);
    let sink = PostgresSink::new("versions")
        .key_columns(["id"])
        .upsert("updated_at");
    let report = to_postgres(jobs, "pg-versions", &path, sink).await;
    assert_eq!(counts(&report), (3, 0, 4, 1), "{report:?}");
    let error = &report.error_samples[0];
    assert_eq!(error.position.line, Some(5), "{error:?}");
    assert!(
        error.message.contains("version conflict"),
        "{}",
        error.message
    );
    assert!(error.message.contains("`name`"), "{}", error.message);
    assert_eq!(pg_names(db, "versions", 1..4).await, ["c", "y", "f"]);
}

async fn postgres_upsert_configuration_errors(
    jobs: &JobClient,
    db: &tokio_postgres::Client,
    dir: &Path,
) {
    db.batch_execute(
        "CREATE TABLE keyed (batch_key text UNIQUE, id bigint, name text, updated_at timestamptz)",
    )
    .await
    .unwrap();
    let path = write(dir, "config.csv", &accounts(&[(1, "a", 1)]));
    let start = |job: &str, sink: PostgresSink| {
        let request = CsvUpsertPostgres::request(job, CsvFile::new(&path), sink.url_env(PG_ENV));
        run::<CsvUpsertPostgres>(jobs, request)
    };
    assert_job_failed(
        "upsert on a position key",
        start(
            "pg-upsert-no-key",
            PostgresSink::new("keyed").upsert("updated_at"),
        )
        .await,
        "ConfigError",
        "upsert needs the key columns",
    );
    assert_job_failed(
        "a version column the table lacks",
        start(
            "pg-upsert-no-version",
            PostgresSink::new("accounts")
                .key_columns(["id"])
                .upsert("version"),
        )
        .await,
        "ConfigError",
        "no column `version`",
    );
}

async fn to_mongo(jobs: &JobClient, job: &str, path: &str, sink: MongoSink) -> Report {
    let request = CsvUpsertMongo::request(job, CsvFile::new(path), sink.uri_env(MONGO_ENV))
        .batch_size(20)
        .max_in_flight(4);
    run::<CsvUpsertMongo>(jobs, request)
        .await
        .unwrap_or_else(|e| panic!("job {job}: {e}"))
}

async fn mongo_names(
    db: &mongodb::Database,
    collection: &str,
    ids: std::ops::Range<i64>,
) -> Vec<String> {
    let coll = db.collection::<Document>(collection);
    let mut out = Vec::new();
    for id in ids {
        let found = coll
            .find_one(doc! { "_id": id.to_string() })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("document {id}"));
        out.push(found.get_str("name").unwrap().to_owned());
    }
    out
}

async fn mongo_upsert_orders_by_version(jobs: &JobClient, db: &mongodb::Database, dir: &Path) {
    // The CSV's values are strings: ISO timestamps order as text.
    let sink = || {
        MongoSink::new("modes", "accounts")
            .id_field("id")
            .version_field("updated_at")
    };
    let first = write(dir, "m-first.csv", &first_load());
    let report = to_mongo(jobs, "mongo-upsert-1", &first, sink()).await;
    assert_eq!(counts(&report), (100, 0, 0, 0), "{report:?}");

    let second = write(dir, "m-second.csv", &second_load());
    let report = to_mongo(jobs, "mongo-upsert-2", &second, sink()).await;
    assert_eq!(counts(&report), (75, 0, 25, 0), "{report:?}");
    assert_eq!(mongo_names(db, "accounts", 0..50).await, names("v1", 0..50));
    assert_eq!(
        mongo_names(db, "accounts", 50..75).await,
        names("v2", 50..75)
    );
    assert_eq!(
        mongo_names(db, "accounts", 75..100).await,
        names("v1", 75..100)
    );
    assert_eq!(
        mongo_names(db, "accounts", 100..150).await,
        names("v2", 100..150)
    );

    let report = to_mongo(jobs, "mongo-upsert-2-again", &second, sink()).await;
    assert_eq!(counts(&report), (0, 75, 25, 0), "{report:?}");

    // Same version, other values: a version conflict at its line.
    let csv = accounts(&[(1, "other", 10)]);
    let path = write(dir, "m-conflict.csv", &csv);
    let report = to_mongo(jobs, "mongo-upsert-conflict", &path, sink()).await;
    assert_eq!(counts(&report), (0, 0, 0, 1), "{report:?}");
    let error = &report.error_samples[0];
    assert_eq!(error.position.line, Some(2), "{error:?}");
    assert!(
        error.message.contains("version conflict"),
        "{}",
        error.message
    );
    assert!(error.message.contains("`name`"), "{}", error.message);
    assert_eq!(mongo_names(db, "accounts", 1..2).await, ["v1-1"]);
}

async fn mongo_upsert_without_version(jobs: &JobClient, db: &mongodb::Database, dir: &Path) {
    let sink = || MongoSink::new("modes", "latest").id_field("id").upsert();
    let first = write(dir, "l-first.csv", &first_load());
    let report = to_mongo(jobs, "mongo-latest-1", &first, sink()).await;
    assert_eq!(counts(&report), (100, 0, 0, 0), "{report:?}");
    // A changed document is written (replaced), an unchanged one already present.
    let second = write(dir, "l-second.csv", &second_load());
    let report = to_mongo(jobs, "mongo-latest-2", &second, sink()).await;
    assert_eq!(counts(&report), (100, 0, 0, 0), "{report:?}");
    assert_eq!(
        mongo_names(db, "latest", 75..100).await,
        names("v2", 75..100)
    );
    let report = to_mongo(jobs, "mongo-latest-2-again", &second, sink()).await;
    assert_eq!(counts(&report), (0, 100, 0, 0), "{report:?}");
}

async fn mongo_versions_in_one_batch(jobs: &JobClient, db: &mongodb::Database, dir: &Path) {
    let csv = accounts(&ONE_BATCH);
    let path = write(dir, "m-versions.csv", &csv);
    let sink = MongoSink::new("modes", "versions")
        .id_field("id")
        .version_field("updated_at");
    let report = to_mongo(jobs, "mongo-versions", &path, sink).await;
    assert_eq!(counts(&report), (3, 0, 4, 1), "{report:?}");
    let error = &report.error_samples[0];
    assert_eq!(error.position.line, Some(5), "{error:?}");
    assert!(
        error.message.contains("version conflict"),
        "{}",
        error.message
    );
    assert!(error.message.contains("`name`"), "{}", error.message);
    assert_eq!(mongo_names(db, "versions", 1..4).await, ["c", "y", "f"]);

    // Without versions the last record of an id wins; the earlier one is superseded.
    let csv = accounts(&[(1, "a", 1), (1, "b", 1), (2, "x", 1), (2, "x", 1)]);
    let path = write(dir, "m-latest.csv", &csv);
    let sink = MongoSink::new("modes", "latest-in-batch")
        .id_field("id")
        .upsert();
    let report = to_mongo(jobs, "mongo-latest-in-batch", &path, sink).await;
    assert_eq!(counts(&report), (2, 1, 1, 0), "{report:?}");
    assert_eq!(mongo_names(db, "latest-in-batch", 1..3).await, ["b", "x"]);
}
