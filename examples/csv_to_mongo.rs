//! The demo: a CSV file into MongoDB through Temporal, end to end.
//!
//! `cargo xtask demo` (or `cargo run --release -p batch-orchestra-examples --example
//! csv_to_mongo -- [--rows N] [--keep-open]`). It uses `TEMPORAL_ADDRESS` and `MONGODB_URI`
//! when set, and otherwise starts a Temporal dev server and a MongoDB-wire server on loopback
//! for the length of the run. It writes a sample CSV with a few malformed rows, runs the job
//! with a live progress bar, prints a summary, and checks the collection against it.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use batch_orchestra::connectors::csv::{CsvFile, CsvOffset};
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::testing::{MongoServer, TemporalDevServer};
use batch_orchestra::{JobClient, JobReport, Worker, connect_from_env, pipeline};
use mongodb::bson::{Document, doc};

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

type Error = Box<dyn std::error::Error>;

struct Options {
    rows: u64,
    keep_open: bool,
}

fn options() -> Result<Options, Error> {
    let mut options = Options { rows: 100_000, keep_open: false };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rows" => options.rows = args.next().ok_or("--rows needs a number")?.parse().map_err(|e| format!("--rows: {e}"))?,
            "--keep-open" => options.keep_open = true,
            other => return Err(format!("unknown argument `{other}`; expected --rows N or --keep-open").into()),
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    match demo() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
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
            println!("Temporal: started a dev server at {} (pid {})", server.address(), server.pid());
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
            println!("MongoDB: started a MongoDB-wire server (SecantusDB) at {} (pid {})", server.uri(), server.pid());
            // SAFETY: no other thread exists yet.
            unsafe { std::env::set_var("MONGODB_URI", server.uri()) };
            Some(server)
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let ok = runtime.block_on(run(&options, temporal.as_ref()))?;
    drop(mongo);
    drop(temporal);
    Ok(ok)
}

/// Writes `rows` people, with a few malformed rows at known lines.
fn sample_csv(path: &std::path::Path, rows: u64) -> Result<Vec<u64>, Error> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id,first_name,last_name,email,city,signup_date,score")?;
    let cities = ["Lisbon", "Nairobi", "Osaka", "Lima", "Oslo", "Quebec, QC", "Perth"];
    let malformed = [rows / 8, rows / 3, rows / 2 + 7, rows - 2];
    for i in 0..rows {
        let line = i + 2;
        if i == malformed[0] || i == malformed[3] {
            writeln!(out, "{i},only,three")?;
        } else if i == malformed[1] {
            out.write_all(format!("{i},Ren\u{e9},Bad,ren@example.com,").as_bytes())?;
            out.write_all(b"Montr\xE9al,2024-01-01,1\n")?;
        } else if i == malformed[2] {
            writeln!(out, "{i},Too,Many,many@example.com,Oslo,2024-01-01,1,extra")?;
        } else {
            let city = cities[(i % 7) as usize];
            let city = if city.contains(',') { format!("\"{city}\"") } else { city.to_owned() };
            writeln!(out, "{i},First{i},Last{},user{i}@example.com,{city},2024-{:02}-{:02},{}", i % 997, i % 12 + 1, i % 28 + 1, i * 37 % 1000)?;
        }
        let _ = line;
    }
    out.flush()?;
    Ok(malformed.iter().map(|i| i + 2).collect())
}

async fn run(options: &Options, temporal: Option<&TemporalDevServer>) -> Result<bool, Error> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/demo");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("people.csv").canonicalize().unwrap_or_else(|_| dir.join("people.csv"));
    let bad_lines = sample_csv(&path, options.rows)?;
    let file_len = std::fs::metadata(&path)?.len();
    println!("CSV: {} ({} rows, {:.1} MB; malformed rows at lines {bad_lines:?})", path.display(), options.rows, file_len as f64 / 1e6);

    let mongo = mongodb::Client::with_uri_str(std::env::var("MONGODB_URI")?).await?;
    let collection = mongo.database(DATABASE).collection::<Document>(COLLECTION);
    collection.drop().await?;

    let client = match temporal {
        Some(server) => server.client().await?,
        None => connect_from_env().await?,
    };
    let mut worker = Worker::builder(client.clone(), TASK_QUEUE).pipeline::<CsvToMongo>()?.build()?;
    let jobs = JobClient::new(client, TASK_QUEUE);
    let job_id = format!("demo-people-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let request = CsvToMongo::request(&job_id, CsvFile::new(path.to_string_lossy()), MongoSink::new(DATABASE, COLLECTION))
        .batch_size(1_000)
        .max_in_flight(8);

    println!("Job `{job_id}`: workflow `{}` on task queue `{TASK_QUEUE}`", CsvToMongo::WORKFLOW);
    let started = Instant::now();
    let report = worker
        .run_until(async {
            let handle = CsvToMongo::start(&jobs, request).await?;
            let report = handle.report();
            tokio::pin!(report);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    done = &mut report => {
                        if let Ok(r) = &done {
                            draw(r, file_len, started.elapsed());
                        }
                        eprintln!();
                        break done;
                    }
                    _ = tick.tick() => {
                        if let Ok(p) = handle.progress().await {
                            draw(&p.report, file_len, started.elapsed());
                        }
                    }
                }
            }
        })
        .await??;

    let secs = report.elapsed().as_secs_f64().max(started.elapsed().as_secs_f64());
    println!();
    println!("Summary");
    println!("  rows read        {:>10}", report.records_read);
    println!("  rows written     {:>10}", report.records_written);
    println!("  already present  {:>10}", report.already_present);
    println!("  record errors    {:>10}", report.record_errors);
    for e in &report.error_samples {
        println!("    line {:>7}: {}", e.position.line.unwrap_or_default(), e.message);
    }
    println!("  batches          {:>10}   runs {}", report.batches, report.runs);
    println!("  elapsed          {:>9.2}s", secs);
    println!("  rows per second  {:>10.0}", report.records_read as f64 / secs);

    let documents = collection.count_documents(doc! {}).await?;
    let expected = report.records_written + report.already_present;
    let ok = documents == expected && report.records_read == options.rows;
    println!(
        "Check: the collection `{DATABASE}.{COLLECTION}` holds {documents} documents; the report says {expected} written: {}",
        if ok { "OK" } else { "MISMATCH" }
    );

    match temporal {
        Some(server) => {
            let url = format!("{}/namespaces/default/workflows/{job_id}", server.ui_address());
            if options.keep_open {
                println!("Temporal web UI: {url}\nPress Enter to stop the servers.");
                let _ = std::io::stdin().read_line(&mut String::new());
            } else {
                println!("Temporal web UI: {url} (the dev server stops now; run with --keep-open to browse it)");
            }
        }
        None => println!("Temporal web UI: open your server's UI and look up workflow id `{job_id}`"),
    }
    Ok(ok)
}

fn draw(report: &JobReport<CsvOffset>, file_len: u64, elapsed: Duration) {
    let done = report.end_offset.map_or(0, |o| o.byte) as f64 / file_len.max(1) as f64;
    let width = 30;
    let filled = ((done * width as f64) as usize).min(width);
    let rate = report.records_read as f64 / elapsed.as_secs_f64().max(0.001);
    eprint!(
        "\r  [{}{}] {:>5.1}%  {:>9} rows  {:>8.0} rows/s  {} errors ",
        "#".repeat(filled),
        " ".repeat(width - filled),
        done * 100.0,
        report.records_read,
        rate,
        report.record_errors
    );
}
