//! The demo: a CSV file into MongoDB through Temporal, end to end.
//!
//! `cargo xtask demo` (or `cargo run --release -p batch-orchestra-examples --example
//! csv_to_mongo -- [--rows N] [--keep-open]`). It uses `TEMPORAL_ADDRESS` and `MONGODB_URI`
//! when set, and otherwise starts a Temporal dev server and a MongoDB-wire server on loopback
//! for the length of the run. It writes a sample CSV with a few malformed rows, runs the job
//! with a live progress bar, prints a summary, and checks the collection against it.

use std::process::ExitCode;

use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::testing::{MongoServer, TemporalDevServer};
use batch_orchestra::{JobClient, Worker, connect_from_env, pipeline};
use mongodb::bson::Document;
use shared::Error;

#[path = "shared.rs"]
mod shared;

pipeline! {
    /// CSV rows into MongoDB documents, one document per row.
    pub CsvToMongo {
        source: CsvFile,
        transform: row_to_document,
        sink: MongoSink,
        workflow: "csv-to-mongo",
    }
}

const TASK_QUEUE: &str = "batch-orchestra-demo";
const DATABASE: &str = "batch_orchestra_demo";
const COLLECTION: &str = "people";

struct Options {
    rows: u64,
    keep_open: bool,
}

fn options() -> Result<Options, Error> {
    let mut options = Options {
        rows: 100_000,
        keep_open: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rows" => {
                options.rows = args
                    .next()
                    .ok_or("--rows needs a number")?
                    .parse()
                    .map_err(|e| format!("--rows: {e}"))?
            }
            "--keep-open" => options.keep_open = true,
            other => {
                return Err(format!(
                    "unknown argument `{other}`; expected --rows N or --keep-open"
                )
                .into());
            }
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    shared::exit_code(demo())
}

fn demo() -> Result<bool, Error> {
    let options = options()?;
    // Servers start before the async runtime, so the sink's environment variable is set
    // before any other thread exists.
    let temporal = match std::env::var("TEMPORAL_ADDRESS") {
        Ok(address) => {
            println!("Temporal: {address} (from TEMPORAL_ADDRESS)");
            None
        }
        Err(_) => {
            let server = TemporalDevServer::start_with(true, true)?;
            println!(
                "Temporal: started a dev server at {} (pid {})",
                server.address(),
                server.pid()
            );
            Some(server)
        }
    };
    let mongo = match std::env::var("MONGODB_URI") {
        Ok(_) => {
            println!("MongoDB: from MONGODB_URI");
            None
        }
        Err(_) => {
            let server = MongoServer::start()?;
            println!(
                "MongoDB: started a MongoDB-wire server (SecantusDB) at {} (pid {})",
                server.uri(),
                server.pid()
            );
            // SAFETY: no other thread exists yet.
            unsafe { std::env::set_var("MONGODB_URI", server.uri()) };
            Some(server)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ok = runtime.block_on(run(&options, temporal.as_ref()))?;
    drop(mongo);
    drop(temporal);
    Ok(ok)
}

async fn run(options: &Options, temporal: Option<&TemporalDevServer>) -> Result<bool, Error> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/demo");
    std::fs::create_dir_all(&dir)?;
    let path = dir
        .join("people.csv")
        .canonicalize()
        .unwrap_or_else(|_| dir.join("people.csv"));
    let bad_lines = shared::sample_csv(&path, options.rows)?;
    let file_len = std::fs::metadata(&path)?.len();
    println!(
        "CSV: {} ({} rows, {:.1} MB; malformed rows at lines {bad_lines:?})",
        path.display(),
        options.rows,
        file_len as f64 / 1e6
    );

    let mongo = mongodb::Client::with_uri_str(std::env::var("MONGODB_URI")?).await?;
    let collection = mongo.database(DATABASE).collection::<Document>(COLLECTION);
    collection.drop().await?;

    let client = match temporal {
        Some(server) => server.client().await?,
        None => connect_from_env().await?,
    };
    let mut worker = Worker::builder(client.clone(), TASK_QUEUE)
        .pipeline::<CsvToMongo>()?
        .build()?;
    let jobs = JobClient::new(client, TASK_QUEUE);
    let job_id = format!(
        "demo-people-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    let request = CsvToMongo::request(
        &job_id,
        CsvFile::new(path.to_string_lossy()),
        MongoSink::new(DATABASE, COLLECTION),
    )
    .batch_size(1_000)
    .max_in_flight(8);

    println!(
        "Job `{job_id}`: workflow `{}` on task queue `{TASK_QUEUE}`",
        CsvToMongo::WORKFLOW
    );
    let report =
        shared::run_with_progress::<CsvToMongo>(&mut worker, &jobs, request, file_len).await?;
    let ok = shared::summarize(&report, options.rows, &collection).await?;

    match temporal {
        Some(server) => {
            let url = format!(
                "{}/namespaces/default/workflows/{job_id}",
                server.ui_address()
            );
            if options.keep_open {
                println!("Temporal web UI: {url}\nPress Enter to stop the servers.");
                let _ = std::io::stdin().read_line(&mut String::new());
            } else {
                println!(
                    "Temporal web UI: {url} (the dev server stops now; run with --keep-open to browse it)"
                );
            }
        }
        None => {
            println!("Temporal web UI: open your server's UI and look up workflow id `{job_id}`")
        }
    }
    Ok(ok)
}
