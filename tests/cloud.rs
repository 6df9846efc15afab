//! The CSV object source against S3 (moto), Azure (Azurite) and GCS (fake-gcs-server), all on
//! loopback with fake credentials and explicit endpoints: the same records, errors and
//! positions as a local file; bad URLs and missing objects fail the job with a clear message.
//!
//! One test function: credentials are read from the worker's environment, which is set before
//! any other thread starts.

use std::sync::Arc;

use base64::Engine;
use batch_orchestra::connectors::csv::CsvRow;
use batch_orchestra::connectors::files::Files;
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::connectors::object_store::CsvObject;
use batch_orchestra::sharded::ShardedRequest;
use batch_orchestra::snapshot::SnapshotTarget;
use batch_orchestra::testing::{
    AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, FakeGcsServer, MongoServer, S3Server, http_request,
};
use batch_orchestra::{JobClient, JobError, JobStatus, pipeline, pipelines};
use batch_orchestra_tests::{Harness, people_with_bad_rows};
use hmac::Mac;
use mongodb::bson::{Document, doc};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path as ObjectPath};

pipeline! {
    /// CSV objects into MongoDB.
    pub ObjectToMongo { source: CsvObject, transform: row_to_document, sink: MongoSink }
}

pipeline! {
    /// CSV objects, counted and dropped.
    pub ObjectToNoop { source: CsvObject, sink: NoopSink<CsvRow> }
}

pipeline! {
    /// The new CSV objects under a prefix, counted.
    pub NewObjects { source: Files<CsvObject>, sink: NoopSink<CsvRow> }
}

const URI_ENV: &str = "BATCH_ORCHESTRA_CLOUD_TEST_MONGODB_URI";

#[test]
fn csv_objects_in_s3_azure_and_gcs() {
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data.path().join("gcs-bucket/exports")).unwrap();
    std::fs::write(
        data.path().join("gcs-bucket/exports/people.csv"),
        people_with_bad_rows(),
    )
    .unwrap();
    std::fs::create_dir_all(data.path().join("gcs-bucket/daily")).unwrap();
    for day in 1..=3 {
        std::fs::write(
            data.path().join(format!("gcs-bucket/daily/day-{day}.csv")),
            daily_rows(day),
        )
        .unwrap();
    }
    let (s3, azurite, gcs, mongo) = (
        S3Server::start().unwrap(),
        AzuriteServer::start().unwrap(),
        FakeGcsServer::start(data.path()).unwrap(),
        MongoServer::start().unwrap(),
    );
    // SAFETY: set before the runtime or any client exists. Fake credentials only: every
    // endpoint is an emulator on loopback.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AZURE_STORAGE_ACCOUNT_NAME", AZURITE_ACCOUNT);
        std::env::set_var("AZURE_STORAGE_ACCOUNT_KEY", AZURITE_KEY);
        std::env::set_var("GOOGLE_SERVICE_ACCOUNT_KEY", gcs.service_account_key());
        std::env::set_var(URI_ENV, mongo.uri());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        seed_s3(&s3).await;
        seed_azure(&azurite).await;
        let mut h = Harness::with(pipelines![ObjectToMongo, ObjectToNoop, NewObjects]).await;
        let db = mongodb::Client::with_uri_str(mongo.uri())
            .await
            .unwrap()
            .database("cloud");
        h.worker
            .run_until(cases(&h.jobs, &db, &s3, &azurite))
            .await
            .unwrap();
    });
}

fn s3_store(s3: &S3Server) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_allow_http(true)
        .with_bucket_name("exports")
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap()
}

async fn seed_s3(s3: &S3Server) {
    s3.create_bucket("exports").unwrap();
    let store = s3_store(s3);
    store
        .put(
            &ObjectPath::from("in/people.csv"),
            PutPayload::from(people_with_bad_rows()),
        )
        .await
        .unwrap();
    seed_daily(&store, 5).await;
}

/// 20 rows of day `day`, ids unique across days.
fn daily_rows(day: u64) -> String {
    let mut text = String::from("id,name\n");
    for i in 0..20 {
        text.push_str(&format!("{},day {day} person {i}\n", day * 1_000 + i));
    }
    text
}

/// `daily/day-<n>.csv` for `days` days, and two objects a `daily/*.csv` glob leaves out.
async fn seed_daily(store: &dyn ObjectStore, days: u64) {
    for day in 1..=days {
        store
            .put(
                &ObjectPath::from(format!("daily/day-{day}.csv")),
                PutPayload::from(daily_rows(day)),
            )
            .await
            .unwrap();
    }
    for other in ["daily/readme.txt", "daily/old/day-0.csv"] {
        store
            .put(&ObjectPath::from(other), PutPayload::from(daily_rows(0)))
            .await
            .unwrap();
    }
}

/// Creates a container with a SharedKey-signed request (object_store cannot), then uploads.
async fn seed_azure(azurite: &AzuriteServer) {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/exports\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let request = format!(
        "PUT /{AZURITE_ACCOUNT}/exports?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\n\
         Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        azurite.port()
    );
    http_request(azurite.port(), &request).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(AZURITE_ACCOUNT)
            .with_access_key(AZURITE_KEY)
            .with_container_name("exports")
            .with_endpoint(azurite.endpoint())
            .with_allow_http(true)
            .build()
            .unwrap(),
    );
    store
        .put(
            &ObjectPath::from("in/people.csv"),
            PutPayload::from(people_with_bad_rows()),
        )
        .await
        .unwrap();
    seed_daily(store.as_ref(), 2).await;
}

fn source(url: &str, endpoint: &str) -> CsvObject {
    CsvObject::new(url)
        .option("endpoint", endpoint)
        .option("allow_http", "true")
        .option("region", "us-east-1")
}

async fn cases(jobs: &JobClient, db: &mongodb::Database, s3: &S3Server, azurite: &AzuriteServer) {
    only_new_objects_are_read(jobs, s3).await;
    // S3 into MongoDB: the recipe.
    let sink = MongoSink::new("cloud", "people").uri_env(URI_ENV);
    let options: std::collections::BTreeMap<String, String> = [
        ("endpoint", s3.endpoint()),
        ("allow_http", "true".into()),
        ("region", "us-east-1".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    let request = ObjectToMongo::request(
        "s3-people",
        source("s3://exports/in/people.csv", &s3.endpoint()),
        sink.clone(),
    )
    .batch_size(100)
    .snapshot(SnapshotTarget::object_store(
        "s3://exports/reports",
        options,
    ));
    let report = ObjectToMongo::start(jobs, request)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(
        (
            report.records_read,
            report.records_written,
            report.record_errors
        ),
        (1_005, 1_002, 3),
        "s3: {report:?}"
    );
    let lines: Vec<_> = report
        .error_samples
        .iter()
        .map(|e| e.position.line)
        .collect();
    assert_eq!(
        lines,
        vec![Some(1_002), Some(1_005), Some(1_006)],
        "s3: the same lines as a local file"
    );
    assert_eq!(
        db.collection::<Document>("people")
            .count_documents(doc! {})
            .await
            .unwrap(),
        1_002
    );
    let quoted = db
        .collection::<Document>("people")
        .find_one(doc! { "id": "1001" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(quoted.get_str("name").unwrap(), "quoted, with a\nnewline");
    let saved = s3_store(s3)
        .get(&ObjectPath::from("reports/s3-people.json"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    assert_eq!(
        (saved["status"].as_str(), saved["records_written"].as_u64()),
        (Some("Completed"), Some(1_002)),
        "the report snapshot in S3"
    );

    // Azure and GCS: the same records.
    let gcs_source =
        CsvObject::new("gs://gcs-bucket/exports/people.csv").option("allow_http", "true");
    let azure_source = CsvObject::new("az://exports/in/people.csv")
        .option("endpoint", azurite.endpoint())
        .option("allow_http", "true");
    for (case, src) in [("azure", azure_source), ("gcs", gcs_source)] {
        let request = ObjectToNoop::request(case, src, NoopSink::new())
            .batch_size(64)
            .max_in_flight(4);
        let report = ObjectToNoop::start(jobs, request)
            .await
            .unwrap()
            .report()
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            (
                report.records_read,
                report.records_written,
                report.record_errors
            ),
            (1_005, 1_002, 3),
            "{case}: {report:?}"
        );
        let lines: Vec<_> = report
            .error_samples
            .iter()
            .map(|e| e.position.line)
            .collect();
        assert_eq!(lines, vec![Some(1_002), Some(1_005), Some(1_006)], "{case}");
    }

    sharded_over_prefixes(jobs, db, s3, azurite).await;

    // Bad URLs, missing objects and secrets in the request fail at once, naming the input.
    let bad: [(&str, CsvObject, &str); 5] = [
        (
            "no-scheme",
            CsvObject::new("exports/people.csv"),
            "bad object URL `exports/people.csv`",
        ),
        (
            "unknown-scheme",
            CsvObject::new("ftp://host/people.csv"),
            "unknown scheme `ftp`",
        ),
        (
            "no-object-name",
            source("s3://exports", &s3.endpoint()),
            "no object name after the bucket",
        ),
        (
            "missing-object",
            source("s3://exports/in/missing.csv", &s3.endpoint()),
            "s3://exports/in/missing.csv: no such object",
        ),
        (
            "secret-in-request",
            source("s3://exports/in/people.csv", &s3.endpoint())
                .option("aws_secret_access_key", "x"),
            "looks like a credential",
        ),
    ];
    for (case, src, expected) in bad {
        let request = ObjectToNoop::request(case, src, NoopSink::new());
        match ObjectToNoop::start(jobs, request)
            .await
            .unwrap()
            .report()
            .await
        {
            Err(JobError::Failed { kind, message, .. }) => {
                assert_eq!(kind, "ConfigError", "{case}: {message}");
                assert!(message.contains(expected), "{case}: {message}");
            }
            other => panic!("{case}: expected a configuration error, got {other:?}"),
        }
    }
}

/// One sharded job per store over `daily/*.csv`: one shard per object the glob matches (not
/// the text file, not the subdirectory), every row once.
async fn sharded_over_prefixes(
    jobs: &JobClient,
    db: &mongodb::Database,
    s3: &S3Server,
    azurite: &AzuriteServer,
) {
    let sink = MongoSink::new("cloud", "daily").uri_env(URI_ENV);
    let job = ObjectToMongo::request(
        "s3-daily",
        source("s3://exports/daily/*.csv", &s3.endpoint()),
        sink,
    )
    .batch_size(8);
    // Listed two at a time, grouped two to a shard.
    let request = ShardedRequest::new(job)
        .list_page(2)
        .max_inputs_per_shard(2);
    let report = ObjectToMongo::start_sharded(jobs, request)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed, "s3: {report:#?}");
    let shards: Vec<_> = report
        .shard_reports
        .iter()
        .map(|s| s.inputs.join(" "))
        .collect();
    assert_eq!(
        shards,
        ["day-1.csv day-2.csv", "day-3.csv day-4.csv", "day-5.csv"]
    );
    assert_eq!(report.records_written, 100);
    assert_eq!(
        db.collection::<Document>("daily")
            .count_documents(doc! {})
            .await
            .unwrap(),
        100,
        "s3: every row once"
    );

    let azure = CsvObject::new("az://exports/daily/*.csv")
        .option("endpoint", azurite.endpoint())
        .option("allow_http", "true");
    let gcs = CsvObject::new("gs://gcs-bucket/daily/*.csv").option("allow_http", "true");
    for (case, src, shards) in [("azure-daily", azure, 2), ("gcs-daily", gcs, 3)] {
        let job = ObjectToNoop::request(case, src, NoopSink::new());
        let request = ShardedRequest::new(job).max_inputs_per_shard(1);
        let report = ObjectToNoop::start_sharded(jobs, request)
            .await
            .unwrap()
            .report()
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            (report.shards_completed, report.records_written),
            (shards, shards * 20),
            "{case}: {report:#?}"
        );
    }

    // A prefix with nothing under it: a configuration error naming the pattern.
    let job = ObjectToNoop::request(
        "s3-nothing",
        source("s3://exports/nothing/*.csv", &s3.endpoint()),
        NoopSink::new(),
    );
    match ObjectToNoop::start_sharded(jobs, ShardedRequest::new(job))
        .await
        .unwrap()
        .report()
        .await
    {
        Err(JobError::Failed { kind, message, .. }) => {
            assert_eq!(kind, "ConfigError", "{message}");
            assert!(
                message.contains("no input matches `s3://exports/nothing/*.csv`"),
                "{message}"
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// An incremental job over an S3 prefix: each run reads the objects written since the last.
async fn only_new_objects_are_read(jobs: &JobClient, s3: &S3Server) {
    let store = s3_store(s3);
    let put = async |day: u64| {
        store
            .put(
                &ObjectPath::from(format!("arrivals/day-{day}.csv")),
                PutPayload::from(daily_rows(day)),
            )
            .await
            .unwrap();
    };
    // The store keeps write times to the second: wait out the settle time and that.
    let settle = std::time::Duration::from_secs(1);
    let run = async |id: &str| {
        let source =
            Files::new(source("s3://exports/arrivals/*.csv", &s3.endpoint())).settle(settle);
        let request = NewObjects::request(id, source, NoopSink::default()).incremental("arrivals");
        let report = NewObjects::start(jobs, request)
            .await
            .unwrap()
            .report()
            .await
            .unwrap();
        assert_eq!(report.status, JobStatus::Completed, "{id}: {report:?}");
        report
    };
    put(1).await;
    put(2).await;
    tokio::time::sleep(settle * 2 + std::time::Duration::from_millis(100)).await;
    let first = run("arrivals-1").await;
    assert_eq!(
        first.records_written, 40,
        "the first run reads both objects"
    );
    put(3).await;
    tokio::time::sleep(settle * 2 + std::time::Duration::from_millis(100)).await;
    let second = run("arrivals-2").await;
    assert_eq!(
        second.records_written, 20,
        "the second run reads the new object only"
    );
    let third = run("arrivals-3").await;
    assert_eq!(third.records_read, 0, "nothing new: nothing read");
}
