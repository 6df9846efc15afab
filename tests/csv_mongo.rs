//! The CSV -> MongoDB recipe on a real dev server and a real MongoDB-wire server: good files,
//! a table of malformed files and bad configurations. Every case ends in a report or an error
//! naming the input and the position; good rows are written exactly once; the worker lives on.
//!
//! One test function: the sink reads its connection string from the worker's environment,
//! and the variables are set before any other thread starts.

use std::path::Path;

use batch_orchestra::batch::JobReport;
use batch_orchestra::connectors::csv::{CsvFile, RaggedRows};
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::failure::RetrySettings;
use batch_orchestra::testing::MongoServer;
use batch_orchestra::{JobClient, JobError, pipeline, pipelines};
use batch_orchestra_tests::{Harness, people_with_bad_rows};
use mongodb::bson::{Document, doc};

pipeline! {
    /// CSV rows into MongoDB documents.
    pub CsvToMongo {
        source: CsvFile,
        transform: row_to_document,
        sink: MongoSink,
    }
}

type Report = JobReport<batch_orchestra::connectors::csv::CsvOffset>;

/// A malformed-file case: name, bytes, source tweak, rows written, record errors.
type Case = (&'static str, Vec<u8>, fn(CsvFile) -> CsvFile, u64, u64);

const URI_ENV: &str = "BATCH_ORCHESTRA_TEST_MONGODB_URI";
const UNREACHABLE_ENV: &str = "BATCH_ORCHESTRA_TEST_UNREACHABLE_URI";

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn csv_to_mongo_recipe_with_bad_inputs() {
    let mongo = MongoServer::start().unwrap();
    let closed = batch_orchestra::testing::free_port().unwrap();
    // SAFETY: set before the runtime, the servers' clients or any other thread exist.
    unsafe {
        std::env::set_var(URI_ENV, mongo.uri());
        std::env::set_var(
            UNREACHABLE_ENV,
            format!(
                "mongodb://127.0.0.1:{closed}/?directConnection=true&serverSelectionTimeoutMS=1000"
            ),
        );
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(recipe(&mongo));
}

async fn recipe(mongo: &MongoServer) {
    let mut h = Harness::with(pipelines![CsvToMongo]).await;
    let db = mongodb::Client::with_uri_str(mongo.uri())
        .await
        .unwrap()
        .database("recipe");
    let dir = tempfile::tempdir().unwrap();
    h.worker
        .run_until(cases(&h.jobs, &db, dir.path()))
        .await
        .unwrap();
}

async fn run(
    jobs: &JobClient,
    job: &str,
    source: CsvFile,
    collection: &str,
) -> Result<Report, JobError> {
    let sink = MongoSink::new("recipe", collection).uri_env(URI_ENV);
    let request = CsvToMongo::request(job, source, sink)
        .batch_size(100)
        .max_in_flight(4);
    CsvToMongo::start(jobs, request).await?.report().await
}

async fn count(db: &mongodb::Database, collection: &str) -> u64 {
    db.collection::<Document>(collection)
        .count_documents(doc! {})
        .await
        .unwrap()
}

async fn cases(jobs: &JobClient, db: &mongodb::Database, dir: &Path) {
    // A good file, quoted commas included, with three bad rows; then the same job again.
    let bytes = people_with_bad_rows();
    let path = write(dir, "people.csv", &bytes);
    let report = run(jobs, "people", CsvFile::new(&path), "people")
        .await
        .unwrap();
    assert_eq!(report.records_read, 1_005, "people.csv: header not counted");
    assert_eq!(report.records_written, 1_002);
    assert_eq!(report.record_errors, 3);
    let lines: Vec<_> = report
        .error_samples
        .iter()
        .map(|e| (e.position.line, e.message.clone()))
        .collect();
    assert_eq!(
        lines[0],
        (
            Some(1_002),
            "expected 3 fields as in the header, found 2".to_owned()
        )
    );
    assert_eq!(
        lines[1],
        (Some(1_005), "invalid UTF-8 in field 2".to_owned())
    );
    assert_eq!(
        lines[2],
        (
            Some(1_006),
            "expected 3 fields as in the header, found 4".to_owned()
        )
    );
    assert_eq!(count(db, "people").await, 1_002);
    let quoted = db
        .collection::<Document>("people")
        .find_one(doc! { "id": "1001" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(quoted.get_str("name").unwrap(), "quoted, with a\nnewline");
    let city = db
        .collection::<Document>("people")
        .find_one(doc! { "id": "3" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(city.get_str("city").unwrap(), "City, 3");
    assert_eq!(report.end_offset.unwrap().byte, bytes.len() as u64);

    let again = run(jobs, "people", CsvFile::new(&path), "people")
        .await
        .unwrap();
    assert_eq!(
        (again.records_written, again.already_present),
        (0, 1_002),
        "a second run writes no duplicate"
    );
    assert_eq!(count(db, "people").await, 1_002);

    // The table of malformed files: (case, bytes, source tweak, rows written, record errors).
    let big_field = format!("id,blob\n1,{}\n", "x".repeat(10 * 1024 * 1024));
    let table: Vec<Case> = vec![
        ("empty", b"".to_vec(), |s| s, 0, 0),
        ("header-only", b"id,name,city\n".to_vec(), |s| s, 0, 0),
        (
            "ragged",
            b"id,name\n1,a\n2\n3,c,extra\n4,d\n".to_vec(),
            |s| s,
            2,
            2,
        ),
        (
            "ragged-accepted",
            b"id,name\n1,a\n2\n3,c,extra\n".to_vec(),
            |s| s.ragged(RaggedRows::Accept),
            3,
            0,
        ),
        (
            "unterminated-quote",
            b"id,name\n1,a\n2,\"never closed\n3,c\n".to_vec(),
            |s| s,
            1,
            1,
        ),
        (
            "literal-quote",
            b"id,size\n1,5\" pipe\n2,6\" pipe\n".to_vec(),
            |s| s,
            2,
            0,
        ),
        (
            "invalid-utf8",
            b"id,name\n1,a\n2,\xC3\x28\n".to_vec(),
            |s| s,
            1,
            1,
        ),
        (
            "bom",
            b"\xEF\xBB\xBFid,name\n1,a\n2,b\n".to_vec(),
            |s| s,
            2,
            0,
        ),
        ("crlf", b"id,name\r\n1,a\r\n2,b\r\n".to_vec(), |s| s, 2, 0),
        ("ten-megabyte-field", big_field.into_bytes(), |s| s, 1, 0),
        (
            "wrong-delimiter",
            b"id;name\n1;a\n2;b\n".to_vec(),
            |s| s,
            2,
            0,
        ),
        (
            "semicolons",
            b"id;name\n1;a\n2;b\n".to_vec(),
            |s| s.delimiter(';'),
            2,
            0,
        ),
        (
            "no-header",
            b"1,a\n2,b\n".to_vec(),
            |s| s.has_header(false),
            2,
            0,
        ),
    ];
    for (case, bytes, tweak, written, errors) in table {
        let path = write(dir, &format!("{case}.csv"), &bytes);
        let report = run(jobs, case, tweak(CsvFile::new(&path)), case)
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            (report.records_written, report.record_errors),
            (written, errors),
            "{case}: {report:?}"
        );
        assert_eq!(
            count(db, case).await,
            written,
            "{case}: documents in the collection"
        );
        for e in &report.error_samples {
            assert!(
                e.position.line.is_some() && e.position.byte.is_some(),
                "{case}: error without a position: {e}"
            );
        }
    }
    let bom = db
        .collection::<Document>("bom")
        .find_one(doc! { "id": "2" })
        .await
        .unwrap();
    assert_eq!(
        bom.unwrap().get_str("name").unwrap(),
        "b",
        "bom: the first column is `id`, not `\\u{{feff}}id`"
    );
    let crlf = db
        .collection::<Document>("crlf")
        .find_one(doc! { "id": "1" })
        .await
        .unwrap();
    assert_eq!(
        crlf.unwrap().get_str("name").unwrap(),
        "a",
        "crlf: no carriage return in values"
    );
    let ragged = run(
        jobs,
        "ragged-again",
        CsvFile::new(dir.join("ragged.csv").to_string_lossy()),
        "ragged",
    )
    .await
    .unwrap();
    let lines: Vec<_> = ragged
        .error_samples
        .iter()
        .map(|e| e.position.line)
        .collect();
    assert_eq!(
        lines,
        vec![Some(3), Some(4)],
        "ragged: the lines of the bad rows"
    );
    let wrong = db
        .collection::<Document>("wrong-delimiter")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(
        wrong.contains_key("id;name"),
        "wrong delimiter: one column named `id;name`: {wrong:?}"
    );
    let no_header = db
        .collection::<Document>("no-header")
        .find_one(doc! { "column1": "2" })
        .await
        .unwrap();
    assert_eq!(no_header.unwrap().get_str("column2").unwrap(), "b");

    // Bad configurations fail with a message naming the input.
    let missing = dir
        .join("nowhere/missing.csv")
        .to_string_lossy()
        .into_owned();
    match run(jobs, "missing-file", CsvFile::new(&missing), "missing").await {
        Err(JobError::Failed { kind, message, .. }) => {
            assert_eq!(kind, "ConfigError");
            assert!(
                message.contains(&missing) && message.contains("No such file"),
                "{message}"
            );
        }
        other => panic!("missing file: {other:?}"),
    }
    match run(
        jobs,
        "bad-delimiter",
        CsvFile::new(dir.join("crlf.csv").to_string_lossy()).delimiter('→'),
        "x",
    )
    .await
    {
        Err(JobError::Failed { kind, message, .. }) => {
            assert_eq!(kind, "ConfigError");
            assert!(
                message.contains("the delimiter `→` is not an ASCII character"),
                "{message}"
            );
        }
        other => panic!("bad delimiter: {other:?}"),
    }
    let unset = MongoSink::new("recipe", "x").uri_env("BATCH_ORCHESTRA_TEST_UNSET_URI");
    let request = CsvToMongo::request("unset-uri", CsvFile::new(&path), unset);
    match CsvToMongo::start(jobs, request)
        .await
        .unwrap()
        .report()
        .await
    {
        Err(JobError::Failed { kind, message, .. }) => {
            assert_eq!(kind, "ConfigError");
            assert!(
                message.contains("`BATCH_ORCHESTRA_TEST_UNSET_URI` is not set"),
                "{message}"
            );
        }
        other => panic!("unset URI variable: {other:?}"),
    }
    let quick = RetrySettings {
        initial_interval: std::time::Duration::from_millis(100),
        maximum_attempts: 2,
        ..RetrySettings::default()
    };
    let unreachable = MongoSink::new("recipe", "x").uri_env(UNREACHABLE_ENV);
    let request = CsvToMongo::request("unreachable", CsvFile::new(&path), unreachable)
        .retry("process", quick);
    match CsvToMongo::start(jobs, request)
        .await
        .unwrap()
        .report()
        .await
    {
        Err(JobError::Failed { message, .. }) => {
            assert!(
                message.contains("cannot reach MongoDB at 127.0.0.1:")
                    && message.contains("(connection refused)"),
                "{message}"
            );
            assert!(!message.contains("Topology"), "no driver dump: {message}")
        }
        other => panic!("unreachable MongoDB: {other:?}"),
    }

    // The worker is still serving after every failure.
    let report = run(jobs, "after-failures", CsvFile::new(&path), "after")
        .await
        .unwrap();
    assert_eq!(report.records_written, 1_002);
}
