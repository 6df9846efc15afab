//! Sharded jobs: the benchmark's rows split into files of 1,000 rows, listed by glob and run
//! as one child workflow per file into the no-op sink (`sharded_rows_per_s`, and
//! `sharded_vs_single` against the single-file no-op run on the same server), and the parent's
//! history bytes over all its runs, per shard (a child workflow over up to 128 files) and per
//! file (`sharded_history_bytes_per_shard`, `sharded_history_bytes_per_input`).

use std::io::Write;
use std::time::Instant;

use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::sharded::ShardedRequest;
use batch_orchestra::testing::TemporalDevServer;
use batch_orchestra::{JobClient, Worker};
use temporalio_client::{WorkflowExecutionInfo, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

use crate::{BenchToNoop, Error, bench_row};

const QUEUE: &str = "bench-sharded";
/// Rows per file.
pub const ROWS_PER_FILE: u64 = 1_000;
/// Shards running at once.
pub const CONCURRENT_SHARDS: u32 = 8;

/// Writes `rows` benchmark rows into files of [`ROWS_PER_FILE`] under `dir`, as the
/// single-file run has them; returns the glob that lists them.
pub fn write_files(dir: &std::path::Path, rows: u64) -> Result<String, Error> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let files = rows.div_ceil(ROWS_PER_FILE);
    for f in 0..files {
        let path = dir.join(format!("part-{f:05}.csv"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "id,first_name,last_name,email,city,score,note")?;
        for i in f * ROWS_PER_FILE..((f + 1) * ROWS_PER_FILE).min(rows) {
            let r = bench_row(i);
            writeln!(
                out,
                "{i:08},{},{},{},{},{:06},{}",
                r.first_name, r.last_name, r.email, r.city, r.score, r.note
            )?;
        }
        out.flush()?;
    }
    Ok(format!("{}/part-*.csv", dir.display()))
}

/// What one sharded run showed.
pub struct ShardedRun {
    pub rate: f64,
    pub shards: u64,
    pub runs: u32,
    pub history_bytes_per_shard: f64,
    pub history_bytes_per_input: f64,
}

/// Runs one sharded job over `pattern` into the no-op sink.
pub async fn sharded_run(
    server: &TemporalDevServer,
    pattern: &str,
    job: &str,
) -> Result<ShardedRun, Error> {
    let client = server.client().await?;
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipeline::<BenchToNoop>()?
        .build()?;
    let jobs = JobClient::new(client.clone(), QUEUE);
    let request = ShardedRequest::new(BenchToNoop::request(
        job,
        CsvFile::new(pattern),
        NoopSink::new(),
    ))
    .max_concurrent_shards(env_or("BATCH_ORCHESTRA_BENCH_SHARDS", CONCURRENT_SHARDS))
    .max_inputs_per_shard(env_or("BATCH_ORCHESTRA_BENCH_INPUTS_PER_SHARD", 128));
    let started = Instant::now();
    let report = worker
        .run_until(async {
            BenchToNoop::start_sharded(&jobs, request)
                .await?
                .report()
                .await
        })
        .await??;
    let rate = report.records_read as f64 / started.elapsed().as_secs_f64();
    // Every run of the parent, newest first, through each run's previous run id.
    let mut bytes = 0usize;
    let mut run_id: Option<String> = None;
    loop {
        let info = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(job)
            .maybe_run_id(run_id.clone())
            .build();
        let events = info
            .bind_untyped(client.clone())
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await?;
        bytes += events
            .iter()
            .map(prost::Message::encoded_len)
            .sum::<usize>();
        let previous = events.first().and_then(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                Some(a.continued_execution_run_id.clone()).filter(|r| !r.is_empty())
            }
            _ => None,
        });
        match previous {
            Some(previous) => run_id = Some(previous),
            None => break,
        }
    }
    Ok(ShardedRun {
        rate,
        shards: report.shards,
        runs: report.runs,
        history_bytes_per_shard: bytes as f64 / report.shards.max(1) as f64,
        history_bytes_per_input: bytes as f64
            / report
                .shard_reports
                .iter()
                .map(|s| s.inputs.len())
                .sum::<usize>()
                .max(1) as f64,
    })
}

/// A number from the environment, for exploring settings without a rebuild; the figures in
/// report.json use the defaults.
fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
