//! The benchmark: `cargo xtask bench [-- --rows N --reps N --big-mb N]`.
//!
//! Measures, each on a fresh MongoDB-wire server:
//! 1. the direct loop: the same CSV parser and MongoDB writer, no Temporal, with as many
//!    concurrent writers as the pipeline keeps in flight;
//! 2. the CSV -> MongoDB pipeline through Temporal with its default settings (journaled
//!    writes), and with writes acknowledged from memory (`journaled_vs_acknowledged`);
//! 3. the CSV -> no-op pipeline, on a tuned dev server and on one with default settings, and
//!    with every payload encrypted (`encrypted_vs_plain`);
//! 4. workflow history per batch, from the fetched history;
//! 5. the worker's peak RSS on a large CSV into the no-op sink (in a child process);
//! 6. the CSV source's own plan-and-read loop (`parse_rows_per_s`, the ceiling for CSV into the
//!    no-op sink; `noop_vs_parse`), and two no-op jobs at once (`two_jobs_vs_one`);
//! 7. the JSON Lines source: its own plan-and-read loop, and into the no-op sink through
//!    Temporal (`jsonl_ratio` is the second over the first);
//! 8. the throughput dip at continue-as-new (`can_dip`): the CSV -> MongoDB pipeline with a
//!    continue-as-new every 100 batches, its progress read every 100 ms; the dip is 1 minus
//!    the mean rate of the half-second windows that contain a continue-as-new over the median
//!    rate of all windows, and `can_cost` is 1 minus that job's rate over the pipeline's
//!    median (what the continue-as-new cost the whole job; `can_cost_per_continue_as_new`
//!    divides it by their number).
//!
//! 9. PostgreSQL (`bench_stores.rs`): CSV -> PostgreSQL through Temporal and its direct
//!    loop (`postgres_ratio`), the same file again into the loaded table, every row already
//!    present and compared with its stored twin (`postgres_rerun_rows_per_s`,
//!    `postgres_rerun_vs_fresh`), and the PostgreSQL source into the no-op sink;
//!    The same file into a table holding every other row (`bench_modes.rs`): appended
//!    (`postgres_append_half_rows_per_s`) and upserted by version over older rows
//!    (`postgres_upsert_rows_per_s`, `upsert_vs_append`), and upserted into MongoDB
//!    (`mongo_upsert_rows_per_s`); a file with 10 % bad rows into the no-op sink with a
//!    quarantine (`quarantine_rows_per_s`, `quarantine_vs_clean`); `--modes-only` runs just
//!    these; a table kept in sync by incremental runs (`bench_sync.rs`): the first run
//!    (`incremental_full_rows_per_s`), the next after 1 % new rows (`incremental_rows_per_s`,
//!    `incremental_vs_full`), and scheduled runs' first write after their due time
//!    (`schedule_start_lag_s`), and the same over a directory of files (`files_full_rows_per_s`,
//!    `files_incremental_rows_per_s`, `files_incremental_vs_full`); `--sync-only` runs just
//!    these; the Temporal actions (what
//!    Temporal Cloud bills) per million rows of CSV -> no-op, MongoDB and PostgreSQL
//!    (`bench_cost.rs`: `actions_per_million_rows_*`, `action_shares_noop`); `--cost-only`
//!    runs just these;
//! 10. Parquet (`bench_stores.rs`): the Parquet source's own loop and into the no-op sink
//!     through Temporal (`parquet_ratio`);
//! 11. NATS JetStream (`bench_nats.rs`): CSV -> NATS through Temporal and its direct loop
//!     (`nats_ratio`);
//! 12. worker processes and time to first write (`bench_workers.rs`): the no-op job served by
//!     one and by two worker processes (`workers_2_vs_1`), and `first_write_s`;
//! 13. sharded jobs (`bench_sharded.rs`): the same rows in files of 1,000 rows, listed by glob
//!     and run as shards of up to 128 files into the no-op sink (`sharded_vs_single`), with the
//!     parent's history bytes per shard and per file. `--sharded-only` runs just this and the
//!     single-file no-op job;
//! 14. streaming (`bench_stream.rs`): a JetStream durable consumer through the queue executor
//!     into the no-op sink and into MongoDB, against the stream source's own loop
//!     (`nats_noop_vs_direct`); publish-to-write latency at a steady 10,000 messages/s
//!     (`nats_latency_p50_ms`, `nats_latency_p99_ms`); the worker's peak RSS through a 10 s
//!     MongoDB outage (`nats_outage_rss_mb`). `--stream-only` runs just this.
//!
//! Each figure is the median of `--reps` runs with min and max, written to
//! `target/bench/report.json` and printed as a table. Figures for MongoDB are a MongoDB-wire
//! server's (SecantusDB), not `mongod`'s.

// The report's `json!` literal is longer than the default limit allows.
#![recursion_limit = "512"]

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use batch_orchestra::batch::RequestOf;
use batch_orchestra::connector::{BatchRange, WriteContext};
use batch_orchestra::connectors::csv::{CsvFile, CsvRow};
use batch_orchestra::connectors::jsonl::{JsonLinesFile, JsonLinesReader};
use batch_orchestra::connectors::mongo::{MongoSink, row_to_document};
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::testing::{MongoServer, TemporalDevServer};
use batch_orchestra::worker::Registered;
use batch_orchestra::{
    JobClient, Pipeline, Sink, SinkConfig, Source, SourceConfig, Worker, pipeline,
};
use temporalio_client::WorkflowFetchHistoryOptions;

#[path = "bench_cost.rs"]
mod cost;
#[path = "bench_modes.rs"]
mod modes;
#[path = "bench_nats.rs"]
mod nats;
#[path = "bench_sharded.rs"]
mod sharded;
#[path = "bench_stores.rs"]
mod stores;
#[path = "bench_stream.rs"]
mod stream;
#[path = "bench_sync.rs"]
mod sync;
#[path = "bench_workers.rs"]
mod workers;
use temporalio_common::UntypedWorkflow;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

pipeline! {
    /// CSV rows into MongoDB documents.
    pub BenchToMongo { source: CsvFile, transform: row_to_document, sink: MongoSink, workflow: "bench-csv-to-mongo" }
}

pipeline! {
    /// CSV rows, dropped.
    pub BenchToNoop { source: CsvFile, sink: NoopSink<CsvRow>, workflow: "bench-csv-to-noop" }
}

pipeline! {
    /// JSON Lines values, dropped: the JSON Lines source's throughput.
    pub BenchJsonlToNoop {
        source: JsonLinesFile,
        sink: NoopSink<serde_json::Value>,
        workflow: "bench-jsonl-to-noop"
    }
}

type Error = Box<dyn std::error::Error>;
/// Messages per streaming throughput measure.
const STREAM_MESSAGES: u64 = 200_000;
const QUEUE: &str = "bench";
const URI_ENV: &str = "BATCH_ORCHESTRA_BENCH_MONGODB_URI";

struct Args {
    rows: u64,
    reps: usize,
    big_mb: u64,
    /// Only the single-file no-op run and the sharded run: a quick look at sharding.
    sharded_only: bool,
    /// Only the streaming figures, printed (report.json is left as it was).
    stream_only: bool,
    /// Only the worker-kill recovery, five kills, printed (report.json is left as it was).
    workers_only: bool,
    /// Only the no-op job plain and with encrypted payloads, printed (report.json is left
    /// as it was).
    encryption_only: bool,
    modes_only: bool,
    /// Only the incremental-sync and schedule figures, printed.
    sync_only: bool,
    /// Only the actions per million rows, printed.
    cost_only: bool,
}

fn args() -> Result<Args, Error> {
    let mut a = Args {
        rows: 1_000_000,
        reps: 3,
        big_mb: 1_024,
        sharded_only: false,
        stream_only: false,
        workers_only: false,
        encryption_only: false,
        modes_only: false,
        sync_only: false,
        cost_only: false,
    };
    // `cargo xtask bench -- --rows N` passes the `--` on: skip it.
    let mut it = std::env::args().skip(1).filter(|a| a != "--");
    while let Some(flag) = it.next() {
        if flag == "--sharded-only" {
            a.sharded_only = true;
            continue;
        }
        if flag == "--stream-only" {
            a.stream_only = true;
            continue;
        }
        if flag == "--workers-only" {
            a.workers_only = true;
            continue;
        }
        if flag == "--encryption-only" {
            a.encryption_only = true;
            continue;
        }
        if flag == "--modes-only" {
            a.modes_only = true;
            continue;
        }
        if flag == "--sync-only" {
            a.sync_only = true;
            continue;
        }
        if flag == "--cost-only" {
            a.cost_only = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => a.rows = value.parse()?,
            "--reps" => a.reps = value.parse()?,
            "--big-mb" => a.big_mb = value.parse()?,
            "--rss-child" => {
                return Err(format!("--rss-child {value}: internal flag used alone").into());
            }
            other => {
                return Err(format!(
                    "unknown flag {other}; expected --rows, --reps, --big-mb, --sharded-only, --stream-only, --workers-only, --encryption-only, --modes-only, --sync-only or --cost-only"
                )
                .into());
            }
        }
    }
    Ok(a)
}

/// Row `i` of the benchmark's data, the same in every format: about 100 bytes as CSV.
pub struct BenchRow {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub city: String,
    pub score: u64,
    pub note: String,
}

pub fn bench_row(i: u64) -> BenchRow {
    BenchRow {
        first_name: format!("Firstname{:05}", i % 99_991),
        last_name: format!("Lastname{:05}", i % 88_883),
        email: format!("user{i:08}@example.com"),
        city: format!("City{:03}", i % 997),
        score: i * 37 % 1_000_000,
        note: format!("note{:016}", i * 7),
    }
}

/// The same rows as JSON objects, one a line.
fn write_jsonl(path: &std::path::Path, rows: u64) -> Result<u64, Error> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for i in 0..rows {
        let r = bench_row(i);
        writeln!(
            out,
            r#"{{"id":{i},"first_name":"{}","last_name":"{}","email":"{}","city":"{}","score":{},"note":"{}"}}"#,
            r.first_name, r.last_name, r.email, r.city, r.score, r.note
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

/// A source's own loop: plan and read every batch in one task, no Temporal, no sink; the
/// ceiling for that source into the no-op sink.
async fn own_loop<S: Source>(reader: &S) -> Result<f64, Error> {
    let started = Instant::now();
    let (mut from, mut first, mut rows) = (None, 0, 0u64);
    loop {
        let plan = reader.plan(from.as_ref(), 1_000, 64).await?;
        for (i, b) in plan.batches.into_iter().enumerate() {
            let range = BatchRange {
                index: i as u64,
                start: b.start,
                end: b.end.clone(),
                first_record: first,
                records: b.records,
            };
            rows += reader.read(&range).await?.records.len() as u64;
            first += b.records;
            from = Some(b.end);
        }
        if plan.end_of_source {
            return Ok(rows as f64 / started.elapsed().as_secs_f64());
        }
    }
}

/// The CSV source's own loop.
async fn csv_parse(path: &str) -> Result<f64, Error> {
    own_loop(&CsvFile::new(path).build().await?).await
}

/// Two CSV -> no-op jobs at once on one worker: their aggregate rows/s.
async fn two_jobs(server: &TemporalDevServer, rep: usize, csv: &str) -> Result<f64, Error> {
    let client = server.client().await?;
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipeline::<BenchToNoop>()?
        .build()?;
    let jobs = JobClient::new(client, QUEUE);
    let started = Instant::now();
    let (a, b) = worker
        .run_until(async {
            let first =
                BenchToNoop::request(format!("two-a-{rep}"), CsvFile::new(csv), NoopSink::new());
            let second =
                BenchToNoop::request(format!("two-b-{rep}"), CsvFile::new(csv), NoopSink::new());
            let (ha, hb) = (
                jobs.start::<BenchToNoop>(first).await?,
                jobs.start::<BenchToNoop>(second).await?,
            );
            let (ra, rb) = tokio::join!(ha.report(), hb.report());
            Ok::<_, batch_orchestra::JobError>((ra?, rb?))
        })
        .await??;
    Ok((a.records_read + b.records_read) as f64 / started.elapsed().as_secs_f64())
}

/// The JSON Lines source's own loop.
async fn jsonl_parse(path: &str) -> Result<f64, Error> {
    let reader: JsonLinesReader<_> = JsonLinesFile::new(path).build().await?;
    own_loop(&reader).await
}

/// About 100 bytes a row.
fn write_csv(path: &std::path::Path, rows: u64) -> Result<u64, Error> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "id,first_name,last_name,email,city,score,note")?;
    for i in 0..rows {
        let r = bench_row(i);
        writeln!(
            out,
            "{i:08},{},{},{},{},{:06},{}",
            r.first_name, r.last_name, r.email, r.city, r.score, r.note
        )?;
    }
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

#[derive(Clone, Copy)]
pub struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

fn stat(mut xs: Vec<f64>) -> Stat {
    xs.sort_by(|a, b| a.total_cmp(b));
    Stat {
        median: xs[xs.len() / 2],
        min: xs[0],
        max: xs[xs.len() - 1],
    }
}

fn main() -> Result<(), Error> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--rss-child") {
        return rss_child(&argv[2], argv.get(3).map(String::as_str).unwrap_or(""));
    }
    if argv.get(1).map(String::as_str) == Some("--stream-rss-child") {
        return stream::rss_child(argv.get(2).map(String::as_str).unwrap_or(""));
    }
    if argv.get(1).map(String::as_str) == Some("--worker-child") {
        return workers::worker_child(argv.get(2).map(String::as_str).unwrap_or(""));
    }
    let a = args()?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join("bench.csv");
    let bytes = write_csv(&csv, a.rows)?;
    println!("CSV: {} rows, {:.0} MB", a.rows, bytes as f64 / 1e6);

    // Fresh MongoDB-wire servers, started before the runtime so the sink's variable is set
    // before other threads exist; one per repetition of each MongoDB measurement.
    let mongos: Vec<MongoServer> = (0..3 * a.reps + 1)
        .map(|_| MongoServer::start())
        .collect::<Result<_, _>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tuned = TemporalDevServer::start()?;
    let default = TemporalDevServer::start_with(false, false)?;

    if a.stream_only {
        stream::run(&runtime, &tuned, a.reps, STREAM_MESSAGES)?;
        return Ok(());
    }
    if a.workers_only {
        let took = runtime.block_on(workers::kill_recovery(&default, "kill-recovery-only", 5))?;
        println!("worker kill recovery: {took:.2?} s");
        return Ok(());
    }
    let csv_path = csv.to_string_lossy().into_owned();
    if a.sync_only {
        let s = sync::run(&runtime, &tuned, a.rows, a.reps)?;
        println!(
            "sync: full {:.0} rows/s, next run after 1 % new rows {:.0} rows/s, {:.3} of the full run's time; scheduled runs' first write {:.2} s after due (median); files: full {:.0} rows/s, next run after one new file {:.0} rows/s, {:.3} of the full run's time",
            s.full.median,
            s.incremental.median,
            s.incremental_vs_full.median,
            s.start_lag_s.median,
            s.files_full.median,
            s.files_incremental.median,
            s.files_incremental_vs_full.median
        );
        return Ok(());
    }
    if a.cost_only {
        let c = cost::run(&runtime, &tuned, &csv_path, a.rows)?;
        println!(
            "actions per million rows: no-op {:.0}, MongoDB {:.0}, PostgreSQL {:.0}; no-op by type: {:?}",
            c.noop, c.mongo, c.postgres, c.noop_shares
        );
        return Ok(());
    }
    if a.modes_only {
        let m = modes::run(&runtime, &tuned, &csv_path, a.reps)?;
        println!(
            "append into a table holding half {:.0}, upsert {:.0} rows/s ({:.3} of append); MongoDB upsert {:.0} rows/s; 10 % quarantined {:.0} rows/s ({:.3} of clean)",
            m.append_half.median,
            m.upsert_half.median,
            m.upsert_half.median / m.append_half.median,
            m.mongo_upsert.median,
            m.quarantine.median,
            m.quarantine.median / m.clean.median
        );
        return Ok(());
    }
    if a.encryption_only {
        let keys = batch_orchestra::encryption::Keyring::new("bench", &[7u8; 32])?;
        let (mut plain, mut encrypted) = (Vec::new(), Vec::new());
        for rep in 0..a.reps {
            let source = || CsvFile::new(&csv_path);
            let p = runtime.block_on(pipeline_run::<BenchToNoop>(
                &tuned,
                &format!("plain-only-{rep}"),
                source(),
                NoopSink::new(),
            ))?;
            let e = runtime.block_on(pipeline_run_keyed::<BenchToNoop>(
                &tuned,
                &format!("encrypted-only-{rep}"),
                source(),
                NoopSink::new(),
                Some(&keys),
            ))?;
            println!(
                "rep {rep}: plain {:.0} rows/s, encrypted {:.0} rows/s",
                p.0, e.0
            );
            plain.push(p.0);
            encrypted.push(e.0);
        }
        let (p, e) = (stat(plain), stat(encrypted));
        println!(
            "encrypted_vs_plain {:.3} (medians {:.0} and {:.0} rows/s)",
            e.median / p.median,
            e.median,
            p.median
        );
        return Ok(());
    }
    let shard_dir = dir.join("shards");
    let shard_glob = sharded::write_files(&shard_dir, a.rows)?;
    if a.sharded_only {
        for rep in 0..a.reps {
            let single = runtime.block_on(pipeline_run::<BenchToNoop>(
                &tuned,
                &format!("noop-{rep}"),
                CsvFile::new(&csv_path),
                NoopSink::new(),
            ))?;
            let s = runtime.block_on(sharded::sharded_run(
                &tuned,
                &shard_glob,
                &format!("sharded-{rep}"),
            ))?;
            println!(
                "rep {rep}: no-op {:.0} rows/s; sharded {:.0} rows/s over {} shards in {} runs ({:.2} of one file), {:.0} history bytes per shard",
                single.0,
                s.rate,
                s.shards,
                s.runs,
                s.rate / single.0,
                s.history_bytes_per_shard
            );
        }
        return Ok(());
    }
    let mut direct = Vec::new();
    let mut piped = Vec::new();
    let mut noop = Vec::new();
    let mut noop_default = Vec::new();
    // The no-op job again with every payload encrypted (a fixed key: only the cost counts).
    let mut encrypted = Vec::new();
    let bench_keys = batch_orchestra::encryption::Keyring::new("bench", &[7u8; 32])?;
    let mut parsed = Vec::new();
    let mut two = Vec::new();
    let mut history = (0.0, 0.0);
    let mut sharded_rates = Vec::new();
    let mut shard_history = (0.0, 0.0, 0);
    let mut acknowledged = Vec::new();
    for rep in 0..a.reps {
        let (m1, m2, m3) = (&mongos[3 * rep], &mongos[3 * rep + 1], &mongos[3 * rep + 2]);
        direct.push(runtime.block_on(direct_loop(&csv_path, &m1.uri(), 1_000, 8))?);
        // SAFETY: the only other threads are the runtime's idle workers, which read no
        // environment; the sink reads the variable when it is built, after this.
        unsafe { std::env::set_var(URI_ENV, m2.uri()) };
        let (rate, h) = runtime.block_on(pipeline_run::<BenchToMongo>(
            &tuned,
            &format!("mongo-{rep}"),
            CsvFile::new(&csv_path),
            MongoSink::new("bench", "rows").uri_env(URI_ENV),
        ))?;
        piped.push(rate);
        history = h;
        // The same job with writes acknowledged from memory (no journal): what the journaled
        // default costs.
        // SAFETY: as above.
        unsafe { std::env::set_var(URI_ENV, m3.uri()) };
        acknowledged.push(
            runtime
                .block_on(pipeline_run::<BenchToMongo>(
                    &tuned,
                    &format!("mongo-acknowledged-{rep}"),
                    CsvFile::new(&csv_path),
                    MongoSink::new("bench", "rows")
                        .uri_env(URI_ENV)
                        .acknowledged(),
                ))?
                .0,
        );
        noop.push(
            runtime
                .block_on(pipeline_run::<BenchToNoop>(
                    &tuned,
                    &format!("noop-{rep}"),
                    CsvFile::new(&csv_path),
                    NoopSink::new(),
                ))?
                .0,
        );
        encrypted.push(
            runtime
                .block_on(pipeline_run_keyed::<BenchToNoop>(
                    &tuned,
                    &format!("noop-encrypted-{rep}"),
                    CsvFile::new(&csv_path),
                    NoopSink::new(),
                    Some(&bench_keys),
                ))?
                .0,
        );
        noop_default.push(
            runtime
                .block_on(pipeline_run::<BenchToNoop>(
                    &default,
                    &format!("noop-default-{rep}"),
                    CsvFile::new(&csv_path),
                    NoopSink::new(),
                ))?
                .0,
        );
        parsed.push(runtime.block_on(csv_parse(&csv_path))?);
        let s = runtime.block_on(sharded::sharded_run(
            &tuned,
            &shard_glob,
            &format!("sharded-{rep}"),
        ))?;
        shard_history = (
            s.history_bytes_per_shard,
            s.history_bytes_per_input,
            s.shards,
        );
        sharded_rates.push(s.rate);
        two.push(runtime.block_on(two_jobs(&tuned, rep, &csv_path))?);
        println!(
            "rep {rep}: direct {:.0}, pipeline {:.0}, no-op {:.0}, no-op (default server) {:.0}, parse {:.0}, two no-op jobs {:.0}, sharded {:.0} rows/s",
            direct[rep],
            piped[rep],
            noop[rep],
            noop_default[rep],
            parsed[rep],
            two[rep],
            sharded_rates[rep]
        );
    }
    // The JSON Lines source: its own loop, and through Temporal into the no-op sink.
    let jsonl = dir.join("bench.jsonl");
    let jsonl_bytes = write_jsonl(&jsonl, a.rows)?;
    let jsonl_path = jsonl.to_string_lossy().into_owned();
    let mut jsonl_parsed = Vec::new();
    let mut jsonl_piped = Vec::new();
    for rep in 0..a.reps {
        jsonl_parsed.push(runtime.block_on(jsonl_parse(&jsonl_path))?);
        jsonl_piped.push(
            runtime
                .block_on(pipeline_run::<BenchJsonlToNoop>(
                    &tuned,
                    &format!("jsonl-noop-{rep}"),
                    JsonLinesFile::new(&jsonl_path),
                    NoopSink::new(),
                ))?
                .0,
        );
        println!(
            "rep {rep}: JSON Lines parse {:.0}, JSON Lines -> no-op {:.0} rows/s ({:.0} MB)",
            jsonl_parsed[rep],
            jsonl_piped[rep],
            jsonl_bytes as f64 / 1e6
        );
    }
    let _ = std::fs::remove_file(&jsonl);
    let (jp, jn) = (stat(jsonl_parsed), stat(jsonl_piped));

    // Continue-as-new every 100 batches on a fresh server.
    // SAFETY: as above; the earlier sinks were built already and read no environment now.
    unsafe { std::env::set_var(URI_ENV, mongos[3 * a.reps].uri()) };
    let can = runtime.block_on(can_run(
        &tuned,
        &csv_path,
        MongoSink::new("bench", "can").uri_env(URI_ENV),
    ))?;
    println!(
        "continue-as-new every 100 batches: {:.0} rows/s, {} runs, dip {:.3}",
        can.rate, can.runs, can.dip
    );
    drop(mongos);

    let pg = stores::run(&runtime, &tuned, &csv_path, a.reps)?;
    let modes = modes::run(&runtime, &tuned, &csv_path, a.reps)?;
    let sync = sync::run(&runtime, &tuned, a.rows, a.reps)?;
    let cost = cost::run(&runtime, &tuned, &csv_path, a.rows)?;
    let pq = stores::run_parquet(&runtime, &tuned, &dir, a.rows, a.reps)?;
    let nt = nats::run(&runtime, &tuned, &csv_path, a.reps)?;
    let st = stream::run(&runtime, &tuned, a.reps, STREAM_MESSAGES)?;
    let (mut one_worker, mut two_workers, mut first) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..a.reps {
        one_worker.push(runtime.block_on(workers::with_workers(
            &tuned,
            &csv_path,
            1,
            &format!("workers-1-{rep}"),
        ))?);
        two_workers.push(runtime.block_on(workers::with_workers(
            &tuned,
            &csv_path,
            2,
            &format!("workers-2-{rep}"),
        ))?);
        first.push(runtime.block_on(workers::first_write(
            &tuned,
            &csv_path,
            &format!("first-write-{rep}"),
        ))?);
        println!(
            "rep {rep}: one worker process {:.0}, two {:.0} rows/s; first write after {:.2} s",
            one_worker[rep], two_workers[rep], first[rep]
        );
    }
    let (w1, w2, fw) = (stat(one_worker), stat(two_workers), stat(first));
    let recovery = stat(runtime.block_on(workers::kill_recovery(&default, "kill-recovery", 3))?);
    println!(
        "worker kill recovery: {:.2} s (min {:.2}, max {:.2})",
        recovery.median, recovery.min, recovery.max
    );

    // Peak RSS of a worker on a large file, in a child process of its own.
    let big = dir.join("big.csv");
    let big_rows = a.big_mb * 1_000_000 / 100;
    let big_bytes = write_csv(&big, big_rows)?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["--rss-child", &big.to_string_lossy(), &tuned.address()])
        .output()?;
    let child_out = String::from_utf8_lossy(&child.stdout);
    let peak_rss_mb: f64 = child_out
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_mb "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "the RSS child failed: {child_out} {}",
                String::from_utf8_lossy(&child.stderr)
            )
        })?;
    let child_figure = |name: &str| -> Option<f64> {
        child_out
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let big_history = (
        child_figure("history_events_per_batch ").unwrap_or(0.0),
        child_figure("history_bytes_per_batch ").unwrap_or(0.0),
        child_figure("runs ").unwrap_or(0.0),
    );
    let _ = std::fs::remove_file(&big);

    let (d, p, n, nd) = (stat(direct), stat(piped), stat(noop), stat(noop_default));
    let enc = stat(encrypted);
    let ack = stat(acknowledged);
    println!(
        "MongoDB writes acknowledged from memory: {:.0} rows/s; journaled (the default) {:.3} of that",
        ack.median,
        p.median / ack.median
    );
    println!(
        "encrypted payloads: {:.0} rows/s, {:.3} of plain",
        enc.median,
        enc.median / n.median
    );
    let (parse, two, sh) = (stat(parsed), stat(two), stat(sharded_rates));
    let report = serde_json::json!({
        "rows": a.rows,
        "batch_size": 1000,
        "max_in_flight": 8,
        "direct_rows_per_s": d.median, "direct_min": d.min, "direct_max": d.max,
        "pipeline_rows_per_s": p.median, "pipeline_min": p.min, "pipeline_max": p.max,
        "ratio": p.median / d.median,
        "noop_rows_per_s": n.median, "noop_min": n.min, "noop_max": n.max,
        "encrypted_rows_per_s": enc.median, "encrypted_min": enc.min, "encrypted_max": enc.max,
        "encrypted_vs_plain": enc.median / n.median,
        "mongo_acknowledged_rows_per_s": ack.median, "mongo_acknowledged_min": ack.min, "mongo_acknowledged_max": ack.max,
        "journaled_vs_acknowledged": p.median / ack.median,
        "noop_rows_per_s_default_server": nd.median, "noop_default_min": nd.min, "noop_default_max": nd.max,
        "history_events_per_batch": history.0,
        "history_bytes_per_batch": history.1,
        "peak_rss_mb": peak_rss_mb,
        "parse_rows_per_s": parse.median, "parse_min": parse.min, "parse_max": parse.max,
        "noop_vs_parse": n.median / parse.median,
        "two_jobs_rows_per_s": two.median, "two_jobs_min": two.min, "two_jobs_max": two.max,
        "two_jobs_vs_one": two.median / n.median,
        "sharded_rows_per_s": sh.median, "sharded_min": sh.min, "sharded_max": sh.max,
        "sharded_vs_single": sh.median / n.median,
        "sharded_files": a.rows.div_ceil(sharded::ROWS_PER_FILE),
        "sharded_shards": shard_history.2,
        "sharded_history_bytes_per_shard": shard_history.0,
        "sharded_history_bytes_per_input": shard_history.1,
        "jsonl_parse_rows_per_s": jp.median, "jsonl_parse_min": jp.min, "jsonl_parse_max": jp.max,
        "jsonl_source_rows_per_s": jn.median, "jsonl_source_min": jn.min, "jsonl_source_max": jn.max,
        "jsonl_ratio": jn.median / jp.median,
        "postgres_direct_rows_per_s": pg.direct.median, "postgres_direct_min": pg.direct.min, "postgres_direct_max": pg.direct.max,
        "postgres_rows_per_s": pg.piped.median, "postgres_min": pg.piped.min, "postgres_max": pg.piped.max,
        "postgres_ratio": pg.piped.median / pg.direct.median,
        "postgres_rerun_rows_per_s": pg.rerun.median, "postgres_rerun_min": pg.rerun.min, "postgres_rerun_max": pg.rerun.max,
        "postgres_rerun_vs_fresh": pg.rerun.median / pg.piped.median,
        "postgres_append_half_rows_per_s": modes.append_half.median, "postgres_append_half_min": modes.append_half.min, "postgres_append_half_max": modes.append_half.max,
        "postgres_upsert_rows_per_s": modes.upsert_half.median, "postgres_upsert_min": modes.upsert_half.min, "postgres_upsert_max": modes.upsert_half.max,
        "upsert_vs_append": modes.upsert_half.median / modes.append_half.median,
        "quarantine_rows_per_s": modes.quarantine.median, "quarantine_min": modes.quarantine.min, "quarantine_max": modes.quarantine.max,
        "quarantine_clean_rows_per_s": modes.clean.median,
        "quarantine_vs_clean": modes.quarantine.median / modes.clean.median,
        "actions_per_million_rows_noop": cost.noop,
        "actions_per_million_rows_mongo": cost.mongo,
        "actions_per_million_rows_postgres": cost.postgres,
        "action_shares_noop": cost.noop_shares,
        "incremental_full_rows_per_s": sync.full.median, "incremental_full_min": sync.full.min, "incremental_full_max": sync.full.max,
        "incremental_rows_per_s": sync.incremental.median, "incremental_min": sync.incremental.min, "incremental_max": sync.incremental.max,
        "incremental_vs_full": sync.incremental_vs_full.median,
        "schedule_start_lag_s": sync.start_lag_s.median, "schedule_start_lag_min": sync.start_lag_s.min, "schedule_start_lag_max": sync.start_lag_s.max,
        "files_full_rows_per_s": sync.files_full.median, "files_full_min": sync.files_full.min, "files_full_max": sync.files_full.max,
        "files_incremental_rows_per_s": sync.files_incremental.median, "files_incremental_min": sync.files_incremental.min, "files_incremental_max": sync.files_incremental.max,
        "files_incremental_vs_full": sync.files_incremental_vs_full.median,
        "mongo_upsert_rows_per_s": modes.mongo_upsert.median, "mongo_upsert_min": modes.mongo_upsert.min, "mongo_upsert_max": modes.mongo_upsert.max,
        "postgres_source_rows_per_s": pg.source.median, "postgres_source_min": pg.source.min, "postgres_source_max": pg.source.max,
        "parquet_parse_rows_per_s": pq.parsed.median, "parquet_parse_min": pq.parsed.min, "parquet_parse_max": pq.parsed.max,
        "parquet_source_rows_per_s": pq.piped.median, "parquet_source_min": pq.piped.min, "parquet_source_max": pq.piped.max,
        "parquet_ratio": pq.piped.median / pq.parsed.median,
        "nats_direct_rows_per_s": nt.direct.median, "nats_direct_min": nt.direct.min, "nats_direct_max": nt.direct.max,
        "nats_rows_per_s": nt.piped.median, "nats_min": nt.piped.min, "nats_max": nt.piped.max,
        "nats_ratio": nt.piped.median / nt.direct.median,
        "nats_stream_messages": STREAM_MESSAGES,
        "nats_stream_direct_msgs_per_s": st.direct.median, "nats_stream_direct_min": st.direct.min, "nats_stream_direct_max": st.direct.max,
        "nats_noop_msgs_per_s": st.noop.median, "nats_noop_min": st.noop.min, "nats_noop_max": st.noop.max,
        "nats_noop_vs_direct": st.noop.median / st.direct.median,
        "nats_mongo_msgs_per_s": st.mongo.median, "nats_mongo_min": st.mongo.min, "nats_mongo_max": st.mongo.max,
        "nats_latency_p50_ms": st.p50_ms,
        "nats_latency_p99_ms": st.p99_ms,
        "nats_outage_rss_mb": st.outage_rss_mb,
        "workers_1_rows_per_s": w1.median, "workers_1_min": w1.min, "workers_1_max": w1.max,
        "workers_2_rows_per_s": w2.median, "workers_2_min": w2.min, "workers_2_max": w2.max,
        "workers_2_vs_1": w2.median / w1.median,
        "first_write_s": fw.median, "first_write_min": fw.min, "first_write_max": fw.max,
        "worker_kill_recovery_s": recovery.median, "worker_kill_recovery_min": recovery.min, "worker_kill_recovery_max": recovery.max,
        "can_dip": can.dip,
        "can_cost": 1.0 - can.rate / p.median,
        "can_cost_per_continue_as_new": (1.0 - can.rate / p.median) / f64::from(can.runs.saturating_sub(1).max(1)),
        "can_runs": can.runs,
        "can_rows_per_s": can.rate,
        "peak_rss_file_mb": big_bytes as f64 / 1e6,
        "peak_rss_history_events_per_batch": big_history.0,
        "peak_rss_history_bytes_per_batch": big_history.1,
        "peak_rss_runs": big_history.2,
        "repetitions": a.reps,
        "sink_server": "SecantusDB 0.5.3-beta.196 (MongoDB wire protocol), not mongod",
    });
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    println!();
    println!("| measure | median | min | max |");
    println!("|---|---:|---:|---:|");
    for (name, s) in [
        ("direct loop, rows/s", d),
        ("CSV -> MongoDB pipeline, rows/s", p),
        ("CSV -> no-op, tuned dev server, rows/s", n),
        ("CSV -> no-op, default dev server, rows/s", nd),
        (
            "CSV source's own loop (plan + read, no Temporal), rows/s",
            parse,
        ),
        ("two CSV -> no-op jobs at once, aggregate rows/s", two),
        ("CSV files of 1,000 rows -> no-op, sharded, rows/s", sh),
        ("JSON Lines source's own loop, rows/s", jp),
        ("JSON Lines -> no-op, tuned dev server, rows/s", jn),
        ("CSV -> PostgreSQL direct loop, rows/s", pg.direct),
        ("CSV -> PostgreSQL pipeline, rows/s", pg.piped),
        ("PostgreSQL -> no-op, rows/s", pg.source),
        (
            "CSV -> PostgreSQL holding half, append, rows/s",
            modes.append_half,
        ),
        (
            "CSV -> PostgreSQL holding half, upsert, rows/s",
            modes.upsert_half,
        ),
        (
            "CSV -> MongoDB holding half, upsert, rows/s",
            modes.mongo_upsert,
        ),
        (
            "CSV with 10 % bad rows -> no-op, quarantined, rows/s",
            modes.quarantine,
        ),
        ("Parquet source's own loop, rows/s", pq.parsed),
        ("Parquet -> no-op, tuned dev server, rows/s", pq.piped),
        ("CSV -> NATS JetStream direct loop, rows/s", nt.direct),
        ("CSV -> NATS JetStream pipeline, rows/s", nt.piped),
        ("NATS stream source's own loop, messages/s", st.direct),
        ("NATS stream -> no-op, messages/s", st.noop),
        ("NATS stream -> MongoDB, messages/s", st.mongo),
        ("CSV -> no-op, one worker process, rows/s", w1),
        ("CSV -> no-op, two worker processes, rows/s", w2),
    ] {
        println!("| {name} | {:.0} | {:.0} | {:.0} |", s.median, s.min, s.max);
    }
    println!(
        "| ratio pipeline / direct | {:.2} | | |",
        p.median / d.median
    );
    println!("| no-op / parse | {:.2} | | |", n.median / parse.median);
    println!("| two jobs / one job | {:.2} | | |", two.median / n.median);
    println!("| sharded / one file | {:.2} | | |", sh.median / n.median);
    println!(
        "| sharded parent history bytes per shard ({} shards) / per file | {:.0} / {:.0} | | |",
        shard_history.2, shard_history.0, shard_history.1
    );
    println!(
        "| JSON Lines -> no-op / its own loop | {:.2} | | |",
        jn.median / jp.median
    );
    println!(
        "| CSV -> PostgreSQL pipeline / direct | {:.2} | | |",
        pg.piped.median / pg.direct.median
    );
    println!(
        "| Parquet -> no-op / its own loop | {:.2} | | |",
        pq.piped.median / pq.parsed.median
    );
    println!(
        "| CSV -> NATS pipeline / direct | {:.2} | | |",
        nt.piped.median / nt.direct.median
    );
    println!(
        "| NATS stream -> no-op / the stream source's own loop | {:.2} | | |",
        st.noop.median / st.direct.median
    );
    println!(
        "| NATS latency at 10,000 messages/s, p50 / p99 ms | {:.1} / {:.1} | | |",
        st.p50_ms, st.p99_ms
    );
    println!(
        "| worker peak RSS through a 10 s sink outage, MB | {:.0} | | |",
        st.outage_rss_mb
    );
    println!(
        "| two worker processes / one | {:.2} | | |",
        w2.median / w1.median
    );
    println!(
        "| seconds to the first write | {:.2} | {:.2} | {:.2} |",
        fw.median, fw.min, fw.max
    );
    println!("| history events per batch | {:.1} | | |", history.0);
    println!("| history bytes per batch | {:.0} | | |", history.1);
    println!(
        "| worker peak RSS, MB ({:.0} MB CSV into no-op) | {peak_rss_mb:.0} | | |",
        big_bytes as f64 / 1e6
    );
    println!(
        "| history per batch of that job's last run ({:.0} runs), events / bytes | {:.1} / {:.0} | | |",
        big_history.2, big_history.0, big_history.1
    );
    println!(
        "| continue-as-new dip (windows with one vs median), {} runs | {:.3} | | |",
        can.runs, can.dip
    );
    println!(
        "| continue-as-new cost to the whole job, {} continue-as-new | {:.3} | | |",
        can.runs.saturating_sub(1),
        1.0 - can.rate / p.median
    );
    println!("\nwritten to target/bench/report.json");
    Ok(())
}

/// The direct loop into MongoDB: plan every batch, then `writers` tasks read, transform and
/// insert.
async fn direct_loop(csv: &str, uri: &str, batch: u64, writers: usize) -> Result<f64, Error> {
    let source = CsvFile::new(csv).build().await?;
    // SAFETY: see `main`; the variable is read by `build` just below.
    unsafe { std::env::set_var("BATCH_ORCHESTRA_BENCH_DIRECT_URI", uri) };
    let sink = MongoSink::new("bench", "direct")
        .uri_env("BATCH_ORCHESTRA_BENCH_DIRECT_URI")
        .build()
        .await?;
    direct(
        source,
        sink,
        |row| row_to_document(row).ok(),
        batch,
        writers,
    )
    .await
}

/// A source into a sink with no Temporal: plan every batch, then `writers` tasks read,
/// transform and write, as a pipeline's activities would; returns rows written per second.
async fn direct<S: Source, K: Sink>(
    source: S,
    sink: K,
    transform: fn(S::Record) -> Option<K::Record>,
    batch: u64,
    writers: usize,
) -> Result<f64, Error> {
    let (source, sink) = (Arc::new(source), Arc::new(sink));
    let started = Instant::now();
    let plan = source.plan(None, batch, usize::MAX).await?;
    let mut first = 0;
    let ranges: Vec<BatchRange<_>> = plan
        .batches
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let range = BatchRange {
                index: i as u64,
                start: b.start,
                end: b.end,
                first_record: first,
                records: b.records,
            };
            first += b.records;
            range
        })
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(ranges));
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let (source, sink, queue) = (source.clone(), sink.clone(), queue.clone());
        tasks.push(tokio::spawn(async move {
            let mut rows = 0u64;
            loop {
                let Some(range) = queue.lock().unwrap().pop() else {
                    return Ok::<u64, batch_orchestra::ConnectorError>(rows);
                };
                let read = source.read(&range).await?;
                let out: Vec<_> = read
                    .records
                    .into_iter()
                    .filter_map(|r| {
                        Some(batch_orchestra::Positioned {
                            position: r.position,
                            value: transform(r.value)?,
                        })
                    })
                    .collect();
                let ctx = WriteContext {
                    job_id: "direct".into(),
                    batch: range.index,
                    attempt: 1,
                };
                rows += sink.write(&ctx, out).await?.written;
            }
        }));
    }
    let mut rows = 0;
    for t in tasks {
        rows += t.await??;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// Runs one job of `P` and returns rows/s and (events, bytes) of history per batch of its
/// last run.
async fn pipeline_run<P: Registered>(
    server: &TemporalDevServer,
    job: &str,
    source: P::Source,
    sink: P::Sink,
) -> Result<(f64, (f64, f64)), Error> {
    pipeline_run_keyed::<P>(server, job, source, sink, None).await
}

/// [`pipeline_run`] with payloads encrypted with `keys` when given.
async fn pipeline_run_keyed<P: Registered>(
    server: &TemporalDevServer,
    job: &str,
    source: P::Source,
    sink: P::Sink,
    keys: Option<&batch_orchestra::encryption::Keyring>,
) -> Result<(f64, (f64, f64)), Error> {
    pipeline_run_with::<P>(server, job, source, sink, keys, |r| r).await
}

/// [`pipeline_run_keyed`] with the request changed by `adjust` (a quarantine, say).
async fn pipeline_run_with<P: Registered>(
    server: &TemporalDevServer,
    job: &str,
    source: P::Source,
    sink: P::Sink,
    keys: Option<&batch_orchestra::encryption::Keyring>,
    adjust: impl FnOnce(RequestOf<P>) -> RequestOf<P>,
) -> Result<(f64, (f64, f64)), Error> {
    let client = match keys {
        None => server.client().await?,
        Some(keys) => {
            let env = std::collections::HashMap::from([(
                "TEMPORAL_ADDRESS".to_owned(),
                server.address(),
            )]);
            batch_orchestra::client::TemporalSettings::resolve(None, Some(&env))?
                .with_encryption(keys.clone())
                .connect()
                .await?
        }
    };
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipeline::<P>()?
        .build()?;
    let jobs = JobClient::new(client, QUEUE);
    let mut request: RequestOf<P> = adjust(batch_orchestra::batch::BatchProcessingRequest::new(
        job, source, sink,
    ));
    // For exploring settings without a rebuild: the figures in report.json use the defaults.
    if let Some(n) = env_u32("BATCH_ORCHESTRA_BENCH_BATCHES_PER_ACTIVITY") {
        request = request.batches_per_activity(n);
    }
    if let Some(n) = env_u32("BATCH_ORCHESTRA_BENCH_PLAN_AHEAD") {
        request = request.plan_ahead(n);
    }
    if let Some(n) = env_u32("BATCH_ORCHESTRA_BENCH_MAX_IN_FLIGHT") {
        request = request.max_in_flight(n);
    }
    let started = Instant::now();
    let report = worker
        .run_until(async { jobs.start::<P>(request).await?.report().await })
        .await??;
    let rate = report.records_read as f64 / started.elapsed().as_secs_f64();
    Ok((rate, history_per_batch::<P>(&jobs, job).await?))
}

/// History events and bytes per batch of the last run of job `job`.
async fn history_per_batch<P: Pipeline>(jobs: &JobClient, job: &str) -> Result<(f64, f64), Error> {
    let events = jobs
        .temporal()
        .get_workflow_handle::<UntypedWorkflow>(job.to_owned())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await?;
    // Batches in this run: each scheduled `process` activity carries a group of ranges.
    let batches: usize = events
        .iter()
        .filter_map(|e| match &e.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a))
                if a.activity_type
                    .as_ref()
                    .is_some_and(|t| t.name == P::NAMES.process) =>
            {
                let payload = a.input.as_ref()?.payloads.first()?;
                let input: serde_json::Value = serde_json::from_slice(&payload.data).ok()?;
                Some(input["batches"].as_array()?.len())
            }
            _ => None,
        })
        .sum();
    let batches = batches.max(1) as f64;
    let bytes: usize = events.iter().map(prost::Message::encoded_len).sum();
    Ok((events.len() as f64 / batches, bytes as f64 / batches))
}

/// A number from the environment variable `name`, if set.
fn env_u32(name: &str) -> Option<u32> {
    std::env::var(name).ok()?.parse().ok()
}

/// What a run with frequent continue-as-new showed.
struct CanRun {
    rate: f64,
    runs: u32,
    dip: f64,
}

/// CSV -> MongoDB with a continue-as-new every 100 batches, progress read every 100 ms.
async fn can_run(server: &TemporalDevServer, csv: &str, sink: MongoSink) -> Result<CanRun, Error> {
    let client = server.client().await?;
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipeline::<BenchToMongo>()?
        .build()?;
    let jobs = JobClient::new(client, QUEUE);
    let request: RequestOf<BenchToMongo> =
        batch_orchestra::batch::BatchProcessingRequest::new("can-dip", CsvFile::new(csv), sink)
            .max_batches_per_run(100);
    let started = Instant::now();
    let (report, samples) = worker
        .run_until(async {
            let handle = jobs.start::<BenchToMongo>(request).await?;
            let mut samples = Vec::new();
            let report = loop {
                let waited =
                    tokio::time::timeout(std::time::Duration::from_millis(100), handle.report())
                        .await;
                if let Ok(report) = waited {
                    break report?;
                }
                if let Ok(p) = handle.progress().await {
                    samples.push((
                        started.elapsed().as_secs_f64(),
                        p.report.records_read,
                        p.report.runs,
                    ));
                }
            };
            Ok::<_, batch_orchestra::JobError>((report, samples))
        })
        .await??;
    let rate = report.records_read as f64 / started.elapsed().as_secs_f64();
    // Half-second windows of five samples: their rate, and whether a run ended inside.
    let windows: Vec<(f64, bool)> = samples
        .windows(6)
        .step_by(5)
        .filter_map(|w| {
            let (first, last) = (w.first()?, w.last()?);
            let secs = last.0 - first.0;
            (secs > 0.0).then(|| ((last.1 - first.1) as f64 / secs, last.2 != first.2))
        })
        .collect();
    let mut rates: Vec<f64> = windows.iter().map(|w| w.0).collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    let median = rates.get(rates.len() / 2).copied().unwrap_or(0.0);
    let with_can: Vec<f64> = windows.iter().filter(|w| w.1).map(|w| w.0).collect();
    let dip = if with_can.is_empty() || median == 0.0 {
        0.0
    } else {
        1.0 - with_can.iter().sum::<f64>() / with_can.len() as f64 / median
    };
    Ok(CanRun {
        rate,
        runs: report.runs,
        dip,
    })
}

/// The child process: a worker runs the no-op pipeline over `csv`; prints its peak RSS.
fn rss_child(csv: &str, address: &str) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = batch_orchestra::client::connect(address, "default").await?;
        let mut worker = Worker::builder(client.clone(), "bench-rss")
            .pipeline::<BenchToNoop>()?
            .build()?;
        let jobs = JobClient::new(client, "bench-rss");
        let request = BenchToNoop::request("rss", CsvFile::new(csv), NoopSink::new());
        let started = Instant::now();
        let report = worker
            .run_until(async { jobs.start::<BenchToNoop>(request).await?.report().await })
            .await??;
        eprintln!(
            "rss child: {} rows in {:?}, {} runs",
            report.records_read,
            started.elapsed(),
            report.runs
        );
        // History per batch of the last run, to compare with the 1,000,000-row job's.
        let (events, bytes) = history_per_batch::<BenchToNoop>(&jobs, "rss").await?;
        println!("history_events_per_batch {events:.2}");
        println!("history_bytes_per_batch {bytes:.0}");
        println!("runs {}", report.runs);
        Ok::<_, Error>(())
    })?;
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or("no VmHWM in /proc/self/status")?;
    println!("peak_rss_mb {:.1}", kb / 1024.0);
    Ok(())
}
