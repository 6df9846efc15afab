//! The demo from an object store: a CSV object in S3 into MongoDB through Temporal.
//!
//! `cargo run --release -p batch-orchestra-examples --features cloud --example cloud_csv_to_mongo -- [--rows N]`
//!
//! With `S3_ENDPOINT` unset it starts an S3 emulator (moto) on loopback with fake credentials,
//! creates a bucket and uploads a sample CSV; with it set, it uploads to that endpoint with the
//! credentials of the `AWS_*` variables. Temporal and MongoDB come from `TEMPORAL_ADDRESS` and
//! `MONGODB_URI`, or are started on loopback, as in the `csv_to_mongo` demo.

use std::process::ExitCode;

use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::connectors::object_store::CsvObject;
use batch_orchestra::testing::{MongoServer, S3Server, TemporalDevServer};
use batch_orchestra::{JobClient, Worker, connect_from_env, pipeline};
use mongodb::bson::Document;
use object_store::{ObjectStoreExt, PutPayload};
use shared::Error;

#[path = "shared.rs"]
mod shared;

pipeline! {
    /// CSV objects into MongoDB documents.
    pub ObjectToMongo {
        source: CsvObject,
        transform: row_to_document,
        sink: MongoSink,
        workflow: "object-csv-to-mongo",
    }
}

const TASK_QUEUE: &str = "batch-orchestra-demo";
const BUCKET: &str = "demo-exports";

fn main() -> ExitCode {
    shared::exit_code(demo())
}

fn demo() -> Result<bool, Error> {
    let rows: u64 = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => 100_000,
        [flag, n] if flag == "--rows" => n.parse()?,
        other => return Err(format!("unknown arguments {other:?}; expected --rows N").into()),
    };
    let s3 = match std::env::var("S3_ENDPOINT") {
        Ok(_) => None,
        Err(_) => Some(S3Server::start()?),
    };
    let temporal = match std::env::var("TEMPORAL_ADDRESS") {
        Ok(_) => None,
        Err(_) => Some(TemporalDevServer::start()?),
    };
    let mongo = match std::env::var("MONGODB_URI") {
        Ok(_) => None,
        Err(_) => Some(MongoServer::start()?),
    };
    // SAFETY: no other thread exists yet. Fake credentials, for the emulator on loopback only.
    unsafe {
        if let Some(server) = &s3 {
            std::env::set_var("S3_ENDPOINT", server.endpoint());
            std::env::set_var("AWS_ACCESS_KEY_ID", "demo");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "demo");
            server.create_bucket(BUCKET)?;
        }
        if let Some(server) = &mongo {
            std::env::set_var("MONGODB_URI", server.uri());
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(rows, temporal.as_ref()))
}

async fn run(rows: u64, temporal: Option<&TemporalDevServer>) -> Result<bool, Error> {
    let endpoint = std::env::var("S3_ENDPOINT")?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/demo");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("people-cloud.csv");
    shared::sample_csv(&path, rows)?;
    let bytes = std::fs::read(&path)?;
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_bucket_name(BUCKET)
        .build()?;
    let len = bytes.len() as u64;
    store
        .put(&"in/people.csv".into(), PutPayload::from(bytes))
        .await?;
    let url = format!("s3://{BUCKET}/in/people.csv");
    println!(
        "CSV: {url} at {endpoint} ({rows} rows, {:.1} MB)",
        len as f64 / 1e6
    );

    let mongo = mongodb::Client::with_uri_str(std::env::var("MONGODB_URI")?).await?;
    let collection = mongo
        .database("batch_orchestra_demo")
        .collection::<Document>("people_from_s3");
    collection.drop().await?;

    let client = match temporal {
        Some(server) => server.client().await?,
        None => connect_from_env().await?,
    };
    let mut worker = Worker::builder(client.clone(), TASK_QUEUE)
        .pipeline::<ObjectToMongo>()?
        .build()?;
    let jobs = JobClient::new(client, TASK_QUEUE);
    let source = CsvObject::new(&url)
        .option("endpoint", &endpoint)
        .option("allow_http", "true")
        .option("region", "us-east-1");
    let job_id = format!(
        "demo-s3-people-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let request = ObjectToMongo::request(
        &job_id,
        source,
        MongoSink::new("batch_orchestra_demo", "people_from_s3"),
    );
    println!("Job `{job_id}`: workflow `{}`", ObjectToMongo::WORKFLOW);
    let report =
        shared::run_with_progress::<ObjectToMongo>(&mut worker, &jobs, request, len).await?;
    shared::summarize(&report, rows, &collection).await
}
