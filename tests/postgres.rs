//! PostgreSQL on a real server: the CSV -> PostgreSQL recipe with bad rows, idempotent replays
//! (a job run twice, a batch written twice), the table read back in key order, resumed from an
//! offset, copied table to table and round-tripped through JSON Lines, and bad configurations
//! that fail the job at once with a message naming what is wrong.
//!
//! One test function: the connectors read their connection strings from the worker's
//! environment, and the variables are set before any other thread starts.

use std::path::Path;

use batch_orchestra::connector::{BatchRange, WriteContext};
use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::jsonl::{JsonLinesDir, JsonLinesFile};
use batch_orchestra::connectors::postgres::{
    KeyOffset, PostgresSink, PostgresSource, row_from_csv,
};
use batch_orchestra::failure::RetrySettings;
use batch_orchestra::testing::PostgresServer;
use batch_orchestra::{
    JobClient, Position, Positioned, Sink, SinkConfig, Source, SourceConfig, pipeline, pipelines,
};
use batch_orchestra_tests::{Harness, assert_job_failed, read_json_lines, run};
use serde_json::json;
use tokio_postgres::NoTls;

pipeline! {
    /// CSV rows into a PostgreSQL table.
    pub CsvToPostgres { source: CsvFile, transform: row_from_csv, sink: PostgresSink }
}

pipeline! {
    /// A PostgreSQL table into JSON Lines files (an export).
    pub PostgresToJsonLines { source: PostgresSource, sink: JsonLinesDir }
}

pipeline! {
    /// A PostgreSQL table into another.
    pub PostgresToPostgres { source: PostgresSource, sink: PostgresSink }
}

pipeline! {
    /// JSON Lines into a PostgreSQL table.
    pub JsonLinesToPostgres { source: JsonLinesFile, sink: PostgresSink }
}

const URL_ENV: &str = "BATCH_ORCHESTRA_TEST_DATABASE_URL";
const WRONG_PASSWORD_ENV: &str = "BATCH_ORCHESTRA_TEST_WRONG_PASSWORD_URL";
const UNREACHABLE_ENV: &str = "BATCH_ORCHESTRA_TEST_UNREACHABLE_DATABASE_URL";

#[test]
fn postgres_source_and_sink() {
    let pg = PostgresServer::start().unwrap();
    // Port 1 (tcpmux): nothing listens there. A free port picked now could be taken by a
    // server started later (the dev server's own ports), and a connect would then hang.
    let closed = 1;
    // SAFETY: set before the runtime, the servers' clients or any other thread exist.
    unsafe {
        std::env::set_var(URL_ENV, pg.url());
        std::env::set_var(
            WRONG_PASSWORD_ENV,
            pg.url().replace(PostgresServer::PASSWORD, "wrong"),
        );
        std::env::set_var(
            UNREACHABLE_ENV,
            format!("postgres://postgres:x@127.0.0.1:{closed}/postgres?connect_timeout=1"),
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut h = Harness::with(pipelines![
                CsvToPostgres,
                PostgresToJsonLines,
                PostgresToPostgres,
                JsonLinesToPostgres
            ])
            .await;
            let (db, connection) = tokio_postgres::connect(&pg.url(), NoTls).await.unwrap();
            tokio::spawn(connection);
            let dir = tempfile::tempdir().unwrap();
            h.worker
                .run_until(cases(&h.jobs, &db, dir.path()))
                .await
                .unwrap();
        });
}

async fn count(db: &tokio_postgres::Client, table: &str) -> i64 {
    db.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// 2,000 people with four bad rows: an age that is not a number (line 503), a missing name
/// (line 1,004, `NOT NULL`), a negative age (line 1,505, a `CHECK`) and a name too long for its
/// column (line 2,006). Row 450's name holds a line break (in the same batch as the first bad
/// row), so the file's lines and the records differ by one after it, and PostgreSQL's `COPY`
/// counts that line break too.
fn people_csv() -> Vec<u8> {
    let mut s = String::from("id,name,age,city\n");
    for i in 0..2_004 {
        let row = match i {
            450 => format!("{i},\"person,\non two lines\",30,Paris\n"),
            500 => format!("{i},person {i},old,Paris\n"),
            1_001 => format!("{i},,40,Paris\n"),
            1_502 => format!("{i},person {i},-1,Paris\n"),
            2_003 => format!("{i},{},30,Paris\n", "x".repeat(80)),
            _ => format!("{i},\"person, {i}\",{},\"City {}\"\n", i % 90, i % 7),
        };
        s.push_str(&row);
    }
    s.into_bytes()
}

async fn cases(jobs: &JobClient, db: &tokio_postgres::Client, dir: &Path) {
    db.batch_execute(
        "CREATE TABLE people (id bigint PRIMARY KEY, name varchar(64) NOT NULL,
                              age int CHECK (age >= 0), city text, tags text[]);
         CREATE TABLE people_copy (LIKE people INCLUDING ALL);
         CREATE TABLE events (batch_key text UNIQUE, id int, payload jsonb, at timestamptz);
         CREATE TABLE no_key (LIKE people);",
    )
    .await
    .unwrap();

    // CSV -> PostgreSQL: good rows written once, bad rows are record errors with their lines.
    let csv = dir.join("people.csv");
    std::fs::write(&csv, people_csv()).unwrap();
    let sink = || {
        PostgresSink::new("people")
            .key_columns(["id"])
            .url_env(URL_ENV)
    };
    let import = |job: &'static str| {
        let request = CsvToPostgres::request(job, CsvFile::new(csv.to_str().unwrap()), sink())
            .batch_size(300)
            .max_in_flight(4);
        async move { run::<CsvToPostgres>(jobs, request).await }
    };
    let report = import("people").await.unwrap();
    assert_eq!(report.records_read, 2_004);
    assert_eq!(
        (report.records_written, report.record_errors),
        (2_000, 4),
        "{:?}",
        report.error_samples
    );
    let mut errors: Vec<_> = report
        .error_samples
        .iter()
        .map(|e| (e.position.line, e.message.as_str()))
        .collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            (
                Some(503),
                "PostgreSQL refused the row (column `age`): invalid input syntax for type integer"
            ),
            (
                Some(1_004),
                "PostgreSQL refused the row (column `name`): null value in column \"name\" of table `people` violates not-null constraint"
            ),
            (
                Some(1_505),
                "PostgreSQL refused the row: new row for table `people` violates check constraint \"people_age_check\""
            ),
            (
                Some(2_006),
                "PostgreSQL refused the row (column `name`): value too long for type character varying(64)"
            ),
        ]
    );
    assert_eq!(count(db, "people").await, 2_000);
    let row = db
        .query_one("SELECT name, age, city FROM people WHERE id = 7", &[])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2)
        ),
        ("person, 7".to_owned(), 7, "City 0".to_owned())
    );

    let two_lines: String = db
        .query_one("SELECT name FROM people WHERE id = 450", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(two_lines, "person,\non two lines");

    // The same file again, as another job: every row is already there.
    let again = import("people-again").await.unwrap();
    assert_eq!((again.records_written, again.already_present), (0, 2_000));
    assert_eq!(count(db, "people").await, 2_000);

    // A batch written twice (a retried activity): nothing twice, counted as already present.
    let writer = PostgresSink::new("events")
        .url_env(URL_ENV)
        .build()
        .await
        .unwrap();
    let batch = || {
        (0..50u64)
            .map(|i| Positioned {
                position: Position::at(i).byte(i * 10),
                value: json!({"id": i, "payload": {"n": i, "tags": ["a", "b"]}, "at": "2026-12-02T10:00:00Z"}),
            })
            .collect::<Vec<_>>()
    };
    let ctx = |attempt| WriteContext {
        job_id: "events".into(),
        batch: 0,
        attempt,
    };
    let first = writer.write(&ctx(1), batch()).await.unwrap();
    let second = writer.write(&ctx(2), batch()).await.unwrap();
    assert_eq!((first.written, first.already_present), (50, 0));
    assert_eq!((second.written, second.already_present), (0, 50));
    assert_eq!(count(db, "events").await, 50);
    let key: String = db
        .query_one("SELECT batch_key FROM events WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        key, "events:30",
        "the position key is the job and the byte offset"
    );
    let wrong = writer
        .write(
            &ctx(1),
            vec![
                Positioned {
                    position: Position::at(60),
                    value: json!({"id": 60, "nmae": "x"}),
                },
                Positioned {
                    position: Position::at(61),
                    value: json!([1, 2]),
                },
                Positioned {
                    position: Position::at(62),
                    value: json!({"id": 62}),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(wrong.written, 1);
    let messages: Vec<_> = wrong.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "record 60: table `events` has no column `nmae`",
            "record 61: the PostgreSQL sink takes a JSON object of column values, not an array"
        ]
    );

    // A row without its key would be new on every attempt: a record error, not written.
    let people = sink().build().await.unwrap();
    let keyless = people
        .write(
            &ctx(1),
            vec![
                Positioned {
                    position: Position::at(0),
                    value: json!({"name": "no id"}),
                },
                Positioned {
                    position: Position::at(1),
                    value: json!({"id": null, "name": "null id"}),
                },
            ],
        )
        .await
        .unwrap();
    let messages: Vec<_> = keyless.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "record 0: the key column `id` is missing or null",
            "record 1: the key column `id` is missing or null"
        ]
    );
    assert_eq!(count(db, "people").await, 2_000);

    // The table read back in key order, as JSON Lines, in small batches over several plans.
    let source = || PostgresSource::table("people", "id").url_env(URL_ENV);
    let export = dir.join("export");
    let request = PostgresToJsonLines::request(
        "export",
        source().columns(["id", "name", "age"]),
        JsonLinesDir::new(export.to_str().unwrap()),
    )
    .batch_size(128)
    .plan_ahead(3);
    let report = run::<PostgresToJsonLines>(jobs, request).await.unwrap();
    assert_eq!(
        (report.records_read, report.records_written),
        (2_000, 2_000)
    );
    assert_eq!(
        report.end_offset,
        Some(KeyOffset {
            after: Some("2002".into())
        }),
        "the offset is the last key read"
    );
    let exported = read_json_lines(&export);
    let ids: Vec<i64> = exported.iter().map(|v| v["id"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (0..2_004)
        .filter(|i| ![500, 1_001, 1_502, 2_003].contains(i))
        .collect();
    assert_eq!(ids, expected, "every row once, in key order");
    assert_eq!(exported[7], json!({"id": 7, "name": "person, 7", "age": 7}));

    // Resume from an offset: planning after key 1999 finds the last rows only.
    let reader = source().build().await.unwrap();
    let after = KeyOffset {
        after: Some("1999".into()),
    };
    let plan = reader.plan(Some(&after), 2, 10).await.unwrap();
    assert!(plan.end_of_source);
    let ends: Vec<_> = plan
        .batches
        .iter()
        .map(|b| (b.end.after.clone(), b.records))
        .collect();
    assert_eq!(ends, [(Some("2001".into()), 2), (Some("2002".into()), 1)]);
    let read = reader
        .read(&BatchRange {
            index: 0,
            start: after,
            end: plan.batches[0].end.clone(),
            first_record: 0,
            records: 2,
        })
        .await
        .unwrap();
    let ids: Vec<_> = read.records.iter().map(|r| r.value["id"].clone()).collect();
    assert_eq!(ids, [json!(2000), json!(2001)]);

    // Table to table, every column (arrays included), no transform.
    db.batch_execute("UPDATE people SET tags = ARRAY['x', NULL, 'y \"q\"'] WHERE id % 100 = 0")
        .await
        .unwrap();
    let request = PostgresToPostgres::request(
        "copy",
        source(),
        PostgresSink::new("people_copy")
            .key_columns(["id"])
            .url_env(URL_ENV),
    )
    .batch_size(500);
    let report = run::<PostgresToPostgres>(jobs, request).await.unwrap();
    assert_eq!((report.records_written, report.record_errors), (2_000, 0));
    let differ: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT * FROM people EXCEPT SELECT * FROM people_copy) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differ, 0, "the copy holds every value and null");

    // A JSON Lines round trip: events out and back into an equal table.
    db.batch_execute("CREATE TABLE events_back (LIKE events INCLUDING ALL)")
        .await
        .unwrap();
    let out = dir.join("events-out");
    let request = PostgresToJsonLines::request(
        "events-out",
        PostgresSource::table("events", "batch_key").url_env(URL_ENV),
        JsonLinesDir::new(out.to_str().unwrap()),
    );
    run::<PostgresToJsonLines>(jobs, request).await.unwrap();
    let lines = read_json_lines(&out);
    let file = dir.join("events.jsonl");
    let text: String = lines.iter().map(|v| format!("{v}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let request = JsonLinesToPostgres::request(
        "events-back",
        JsonLinesFile::new(file.to_str().unwrap()),
        PostgresSink::new("events_back")
            .key_columns(["batch_key"])
            .url_env(URL_ENV),
    );
    let report = run::<JsonLinesToPostgres>(jobs, request).await.unwrap();
    assert_eq!(report.records_written, 51);
    let differ: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT * FROM events EXCEPT SELECT * FROM events_back) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(differ, 0, "jsonb and timestamps survive the round trip");

    // Bad configurations fail the job at once, naming what is wrong.
    let quick = RetrySettings {
        maximum_attempts: 2,
        ..RetrySettings::default()
    };
    let csv_path = csv.to_str().unwrap();
    let bad_sinks = [
        (
            "missing-table",
            PostgresSink::new("nowhere").url_env(URL_ENV),
            "ConfigError",
            "relation \"nowhere\" does not exist",
        ),
        (
            "wrong-password",
            sink().url_env(WRONG_PASSWORD_ENV),
            "ConfigError",
            "password authentication failed for user \"postgres\"",
        ),
        (
            "unset-variable",
            sink().url_env("BATCH_ORCHESTRA_TEST_UNSET_URL"),
            "ConfigError",
            "`BATCH_ORCHESTRA_TEST_UNSET_URL` is not set",
        ),
        (
            "missing-key",
            PostgresSink::new("people")
                .key_columns(["ident"])
                .url_env(URL_ENV),
            "ConfigError",
            "table `people` has no column `ident` for the sink's key",
        ),
        (
            "no-unique-index",
            PostgresSink::new("no_key")
                .key_columns(["id"])
                .url_env(URL_ENV),
            "ConfigError",
            "table `no_key` has no unique index on (\"id\")",
        ),
        (
            // Retried, then failed: nothing was written, so the job stops.
            "unreachable",
            sink().url_env(UNREACHABLE_ENV),
            "ActivityFailed",
            "PostgreSQL at 127.0.0.1:",
        ),
    ];
    for (job, bad, kind, expected) in bad_sinks {
        let request = CsvToPostgres::request(job, CsvFile::new(csv_path), bad)
            .retry("process", quick.clone());
        let outcome = run::<CsvToPostgres>(jobs, request).await;
        assert_job_failed(job, outcome, kind, expected);
    }
    let bad_sources = [
        (
            "missing-source-table",
            PostgresSource::table("nowhere", "id").url_env(URL_ENV),
            "relation \"nowhere\" does not exist",
        ),
        (
            "missing-source-key",
            PostgresSource::table("people", "ident").url_env(URL_ENV),
            "reading table `people` by key `ident`",
        ),
        (
            "bad-query",
            PostgresSource::query("SELEC id FROM people", "id").url_env(URL_ENV),
            "reading the source's query by key `id`: PostgreSQL at 127.0.0.1:",
        ),
    ];
    for (job, bad, expected) in bad_sources {
        let request =
            PostgresToJsonLines::request(job, bad, JsonLinesDir::new(export.to_str().unwrap()))
                .retry("plan", quick.clone());
        let outcome = run::<PostgresToJsonLines>(jobs, request).await;
        assert_job_failed(job, outcome, "ConfigError", expected);
    }
}
