//! Worker processes and time to first write:
//! - `workers_1_rows_per_s`, `workers_2_rows_per_s`: the CSV -> no-op job with its worker in
//!   one child process, then in two on the same task queue (`workers_2_vs_1`); on a 2-core
//!   machine no gain is expected: the figure shows that nothing outside the server serialises
//!   the workers;
//! - `first_write_s`: seconds from `start` to the first batches written, as the job's progress
//!   reports them (tuned dev server);
//! - `worker_kill_recovery_s`: seconds from a SIGKILL of the worker process running a batch
//!   to the job's progress moving again on another worker process, with the default
//!   `heartbeat_timeout` and retry policy (the median of three kills in one job).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::testing::{CountingSink, RangeSource, RangeToCounting, TemporalDevServer};
use batch_orchestra::{JobClient, Worker};

use crate::{BenchToNoop, Error};

const QUEUE: &str = "bench-workers";

/// The worker of a child process: serves the no-op pipeline on [`QUEUE`] until SIGTERM.
pub fn worker_child(address: &str) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = batch_orchestra::client::connect(address, "default").await?;
        let mut worker = Worker::builder(client, QUEUE)
            .pipeline::<BenchToNoop>()?
            .pipeline::<RangeToCounting>()?
            .build()?;
        worker.run_until_signal().await?;
        Ok(())
    })
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// The no-op job served by `n` worker processes; rows/s from start to report.
pub async fn with_workers(
    server: &TemporalDevServer,
    csv: &str,
    n: usize,
    job: &str,
) -> Result<f64, Error> {
    let exe = std::env::current_exe()?;
    let _children = Children(
        (0..n)
            .map(|_| {
                Command::new(&exe)
                    .args(["--worker-child", &server.address()])
                    .spawn()
            })
            .collect::<Result<_, _>>()?,
    );
    let jobs = JobClient::new(server.client().await?, QUEUE);
    // Let the workers connect and poll before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let request = BenchToNoop::request(job, CsvFile::new(csv), NoopSink::new());
    let report = jobs.start::<BenchToNoop>(request).await?.report().await?;
    Ok(report.records_read as f64 / started.elapsed().as_secs_f64())
}

/// Seconds from `start` until the job's progress shows records written; the job is then
/// cancelled.
pub async fn first_write(server: &TemporalDevServer, csv: &str, job: &str) -> Result<f64, Error> {
    let client = server.client().await?;
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipeline::<BenchToNoop>()?
        .build()?;
    let jobs = JobClient::new(client, QUEUE);
    let request = BenchToNoop::request(job, CsvFile::new(csv), NoopSink::new());
    worker
        .run_until(async {
            let started = Instant::now();
            let handle = jobs.start::<BenchToNoop>(request).await?;
            let took = loop {
                if let Ok(p) = handle.progress().await
                    && p.report.records_written > 0
                {
                    break started.elapsed().as_secs_f64();
                }
                if started.elapsed() > Duration::from_secs(60) {
                    return Err("no record written within 60 s".into());
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            handle.cancel().await?;
            let _ = handle.report().await;
            Ok::<_, Error>(took)
        })
        .await?
}

/// Seconds from a SIGKILL of the only worker process, while it runs a batch, to that batch
/// completed by a fresh worker process (the job's history grows again): `kills` kills in
/// one job. Every wait is bounded.
pub async fn kill_recovery(
    server: &TemporalDevServer,
    job: &str,
    kills: usize,
) -> Result<Vec<f64>, Error> {
    use temporalio_client::WorkflowDescribeOptions;
    let exe = std::env::current_exe()?;
    let spawn = || {
        Command::new(&exe)
            .args(["--worker-child", &server.address()])
            .spawn()
    };
    let mut children = Children(vec![spawn()?]);
    let jobs = JobClient::new(server.client().await?, QUEUE);
    // Batches of 300 ms, one at a time: a kill always lands in a running batch.
    let sink = CountingSink {
        delay_ms: 300,
        ..CountingSink::new(job)
    };
    let request = RangeToCounting::request(job, RangeSource::new(1_000_000), sink)
        .batch_size(100)
        .max_in_flight(1)
        .max_batches_per_activity(1);
    let handle = jobs.start::<RangeToCounting>(request).await?;
    let raw = jobs
        .temporal()
        .get_workflow_handle::<temporalio_common::UntypedWorkflow>(job.to_owned());
    let events = || async {
        raw.describe(WorkflowDescribeOptions::default())
            .await
            .map(|d| d.history_length())
            .unwrap_or(0)
    };
    let mut took = Vec::new();
    for _ in 0..kills {
        // Just after a batch ends, the next is running on the one worker.
        let before = events().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while events().await == before {
            if Instant::now() > deadline {
                return Err("the job made no progress within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let at_kill = events().await;
        let mut dead = children.0.pop().ok_or("no worker")?;
        let _ = Command::new("kill")
            .args(["-KILL", &dead.id().to_string()])
            .status();
        let _ = dead.wait();
        let killed = Instant::now();
        children.0.push(spawn()?);
        while events().await == at_kill {
            if killed.elapsed() > Duration::from_secs(120) {
                return Err("no progress within 120 s of a worker kill".into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        took.push(killed.elapsed().as_secs_f64());
    }
    handle.cancel().await?;
    let _ = tokio::time::timeout(Duration::from_secs(60), handle.report()).await;
    Ok(took)
}
