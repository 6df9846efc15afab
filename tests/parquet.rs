//! Parquet on real files: JSON Lines into Parquet with a schema from a serde type, bad rows as
//! record errors, the file read back by row group in batches that span row groups (every value
//! and null kept), projection, and bad inputs that fail the job naming the file.

use batch_orchestra::connector::BatchRange;
use batch_orchestra::connectors::jsonl::{JsonLinesDir, JsonLinesFile};
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::connectors::parquet::{
    ParquetColumns, ParquetDir, ParquetFile, ParquetObject, ParquetOffset,
};
use batch_orchestra::testing::S3Server;
use batch_orchestra::{Source, SourceConfig, pipeline, pipelines};
use batch_orchestra_tests::{Harness, assert_job_failed, read_json_lines, run};
use object_store::{ObjectStoreExt, PutPayload, path::Path as ObjectPath};
use serde::Deserialize;
use serde_json::{Value, json};

pipeline! {
    /// JSON Lines into Parquet files.
    pub JsonLinesToParquet { source: JsonLinesFile, sink: ParquetDir }
}

pipeline! {
    /// A Parquet file into JSON Lines files.
    pub ParquetToJsonLines { source: ParquetFile, sink: JsonLinesDir }
}

pipeline! {
    /// A Parquet file as Arrow record batches, counted and dropped.
    pub ParquetColumnsToNoop { source: ParquetColumns, sink: NoopSink<arrow_array::RecordBatch> }
}

pipeline! {
    /// A Parquet object into JSON Lines files.
    pub ParquetObjectToJsonLines { source: ParquetObject, sink: JsonLinesDir }
}

pipeline! {
    /// JSON Lines into Parquet objects (a prefix in a store).
    pub JsonLinesToParquetObjects { source: JsonLinesFile, sink: ParquetDir, workflow: "json-lines-to-parquet-objects" }
}

/// The rows' type, for the Parquet schema.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Row {
    id: i64,
    name: String,
    score: Option<f64>,
    active: Option<bool>,
    tags: Option<Vec<String>>,
}

/// Row `i`: some nulls, floats, lists, escapes.
fn row(i: i64) -> Value {
    let mut row = json!({"id": i, "name": format!("name \"{i}\"\n✓")});
    if i % 3 != 0 {
        row["score"] = json!(i as f64 / 8.0);
    }
    if i % 5 != 0 {
        row["active"] = json!(i % 2 == 0);
    }
    if i % 7 == 0 {
        row["tags"] = json!(["a", format!("t{i}")]);
    }
    row
}

#[test]
fn parquet_round_trip_with_bad_rows_and_bad_files() {
    let s3 = S3Server::start().unwrap();
    // SAFETY: set before the runtime or any client exists. Fake credentials: the endpoint is
    // an emulator on loopback.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(round_trip(&s3));
}

async fn round_trip(s3: &S3Server) {
    let mut h = Harness::with(pipelines![
        JsonLinesToParquet,
        ParquetToJsonLines,
        ParquetObjectToJsonLines,
        JsonLinesToParquetObjects,
        ParquetColumnsToNoop
    ])
    .await;
    let jobs = h.jobs.clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    h.worker
        .run_until(async move {
            // 1,000 rows and two that do not fit the schema (lines 11 and 502).
            let mut text = String::new();
            for i in 0..1_000 {
                if i == 10 {
                    text.push_str("{\"id\": \"ten\", \"name\": \"x\"}\n");
                }
                if i == 500 {
                    text.push_str("{\"id\": 5000, \"name\": 5}\n");
                }
                text.push_str(&format!("{}\n", row(i)));
            }
            let input = dir.join("rows.jsonl");
            std::fs::write(&input, text).unwrap();
            let out = dir.join("parquet");
            let sink = ParquetDir::new(out.to_str().unwrap())
                .schema_of::<Row>()
                .unwrap()
                .row_group_rows(100);
            let request = JsonLinesToParquet::request(
                "to-parquet",
                JsonLinesFile::new(input.to_str().unwrap()),
                sink,
            )
            .batch_size(2_000);
            let report = run::<JsonLinesToParquet>(&jobs, request).await.unwrap();
            assert_eq!(
                (report.records_read, report.records_written),
                (1_002, 1_000)
            );
            let lines: Vec<_> = report
                .error_samples
                .iter()
                .map(|e| e.position.line)
                .collect();
            assert_eq!(lines, [Some(11), Some(502)]);
            assert!(
                report.error_samples[0]
                    .message
                    .starts_with("the row does not fit the Parquet schema"),
                "{}",
                report.error_samples[0]
            );
            assert!(
                !report.error_samples[0].message.contains("ten"),
                "no value in the message: {}",
                report.error_samples[0]
            );
            // One file, named by the job id, the input's fingerprint and the batch.
            let files = files_in(&out);
            assert_eq!(files.len(), 1, "{files:?}");
            let file = files[0].clone();
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(
                name.starts_with("to-parquet_") && name.ends_with("-00000000.parquet"),
                "{name}"
            );

            // Read back in batches of 64 over row groups of 100: every value and null.
            let back = dir.join("back");
            let request = ParquetToJsonLines::request(
                "from-parquet",
                ParquetFile::new(file.to_str().unwrap()),
                JsonLinesDir::new(back.to_str().unwrap()),
            )
            .batch_size(64)
            .plan_ahead(4);
            let report = run::<ParquetToJsonLines>(&jobs, request).await.unwrap();
            assert_eq!(
                (report.records_read, report.records_written, report.batches),
                (1_000, 1_000, 16)
            );
            assert_eq!(
                report.end_offset,
                Some(ParquetOffset {
                    row_group: 10,
                    row: 0
                })
            );
            let rows = read_json_lines(&back);
            let expected: Vec<Value> = (0..1_000).map(row).collect();
            assert_eq!(rows.len(), expected.len());
            for (got, want) in rows.iter().zip(&expected) {
                assert_eq!(got, want);
            }

            // As Arrow record batches: a record a batch of up to 300 rows, projected.
            let request = ParquetColumnsToNoop::request(
                "columns",
                ParquetColumns::new(file.to_str().unwrap()).columns(["id", "score"]),
                NoopSink::new(),
            )
            .batch_size(300);
            let report = run::<ParquetColumnsToNoop>(&jobs, request).await.unwrap();
            assert_eq!((report.records_read, report.batches), (4, 4));
            let reader = ParquetColumns::new(file.to_str().unwrap())
                .columns(["id", "score"])
                .build()
                .await
                .unwrap();
            let plan = reader.plan(None, 300, 10).await.unwrap();
            let last = plan.batches.last().unwrap().clone();
            let read = reader
                .read(&BatchRange {
                    index: 3,
                    start: last.start,
                    end: last.end,
                    first_record: 3,
                    records: last.records,
                })
                .await
                .unwrap();
            let batch = &read.records[0].value;
            assert_eq!((batch.num_rows(), batch.num_columns()), (100, 2));
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .unwrap();
            assert_eq!((ids.value(0), ids.value(99)), (900, 999));

            // The same file from an S3 object, by ranged gets.
            s3.create_bucket("lake").unwrap();
            let store = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(s3.endpoint())
                .with_allow_http(true)
                .with_bucket_name("lake")
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .build()
                .unwrap();
            store
                .put(
                    &ObjectPath::from("rows.parquet"),
                    PutPayload::from(std::fs::read(&file).unwrap()),
                )
                .await
                .unwrap();
            let object = |url: &str| {
                ParquetObject::new(url)
                    .option("endpoint", s3.endpoint())
                    .option("allow_http", "true")
                    .option("region", "us-east-1")
            };
            let from_s3 = dir.join("from-s3");
            let request = ParquetObjectToJsonLines::request(
                "from-s3",
                object("s3://lake/rows.parquet"),
                JsonLinesDir::new(from_s3.to_str().unwrap()),
            )
            .batch_size(150);
            let report = run::<ParquetObjectToJsonLines>(&jobs, request)
                .await
                .unwrap();
            assert_eq!(report.records_written, 1_000);
            assert_eq!(
                read_json_lines(&from_s3),
                expected,
                "the object reads as the file does"
            );
            let request = ParquetObjectToJsonLines::request(
                "missing-object",
                object("s3://lake/nowhere.parquet"),
                JsonLinesDir::new(from_s3.to_str().unwrap()),
            );
            let outcome = run::<ParquetObjectToJsonLines>(&jobs, request).await;
            assert_job_failed(
                "missing object",
                outcome,
                "ConfigError",
                "s3://lake/nowhere.parquet: no such object",
            );

            // The sink writing to a prefix in the store: one object per batch, read back whole.
            let good: String = (0..1_000).map(|i| format!("{}\n", row(i))).collect();
            let good_file = dir.join("good.jsonl");
            std::fs::write(&good_file, good).unwrap();
            let request = JsonLinesToParquetObjects::request(
                "to-s3",
                JsonLinesFile::new(good_file.to_str().unwrap()),
                ParquetDir::new("s3://lake/out")
                    .option("endpoint", s3.endpoint())
                    .option("allow_http", "true")
                    .option("region", "us-east-1")
                    .schema_of::<Row>()
                    .unwrap(),
            )
            .batch_size(400);
            let report = run::<JsonLinesToParquetObjects>(&jobs, request)
                .await
                .unwrap();
            assert_eq!((report.records_written, report.batches), (1_000, 3));
            let fingerprint = report.input_fingerprint.clone().unwrap();
            let mut back = Vec::new();
            for batch in 0..3 {
                let out = dir.join(format!("s3-back-{batch}"));
                let request = ParquetObjectToJsonLines::request(
                    format!("s3-back-{batch}"),
                    object(&format!(
                        "s3://lake/out/to-s3_{fingerprint}-{batch:08}.parquet"
                    )),
                    JsonLinesDir::new(out.to_str().unwrap()),
                );
                run::<ParquetObjectToJsonLines>(&jobs, request)
                    .await
                    .unwrap();
                back.extend(read_json_lines(&out));
            }
            assert_eq!(back, expected, "three objects hold every row once");

            // Projection: only the columns asked for.
            let ids = dir.join("ids");
            let request = ParquetToJsonLines::request(
                "ids",
                ParquetFile::new(file.to_str().unwrap()).columns(["id", "score"]),
                JsonLinesDir::new(ids.to_str().unwrap()),
            )
            .batch_size(300);
            run::<ParquetToJsonLines>(&jobs, request).await.unwrap();
            let rows = read_json_lines(&ids);
            assert_eq!(rows[1], json!({"id": 1, "score": 0.125}));
            assert_eq!(rows[3], json!({"id": 3}));

            // Bad inputs fail the job at once, naming the file.
            let not_parquet = dir.join("not.parquet");
            std::fs::write(&not_parquet, "id,name\n1,a\n").unwrap();
            let cases = [
                (
                    "missing",
                    ParquetFile::new(dir.join("nowhere.parquet").to_str().unwrap()),
                    "nowhere.parquet",
                ),
                (
                    "not-parquet",
                    ParquetFile::new(not_parquet.to_str().unwrap()),
                    "not.parquet`: not a Parquet file",
                ),
                (
                    "unknown-column",
                    ParquetFile::new(file.to_str().unwrap()).columns(["nmae"]),
                    "has no column `nmae` (its columns: id, name, score, active, tags)",
                ),
            ];
            for (job, source, expected) in cases {
                let request = ParquetToJsonLines::request(
                    job,
                    source,
                    JsonLinesDir::new(ids.to_str().unwrap()),
                );
                let outcome = run::<ParquetToJsonLines>(&jobs, request).await;
                assert_job_failed(job, outcome, "ConfigError", expected);
            }
        })
        .await
        .unwrap();
}

/// The files of a directory, sorted.
fn files_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}
