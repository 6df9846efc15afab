//! Worker processes and time to first write:
//! - `workers_1_rows_per_s`, `workers_2_rows_per_s`: the CSV -> no-op job with its worker in
//!   one child process, then in two on the same task queue (`workers_2_vs_1`); on a 2-core
//!   machine no gain is expected: the figure shows that nothing outside the server serialises
//!   the workers;
//! - `first_write_s`: seconds from `start` to the first batches written, as the job's progress
//!   reports them (tuned dev server).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::testing::TemporalDevServer;
use batch_orchestra::{JobClient, Worker};

use crate::{BenchToNoop, Error};

const QUEUE: &str = "bench-workers";

/// The worker of a child process: serves the no-op pipeline on [`QUEUE`] until SIGTERM.
pub fn worker_child(address: &str) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = batch_orchestra::connect(address, "default").await?;
        let mut worker = Worker::builder(client, QUEUE)
            .pipeline::<BenchToNoop>()?
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
