//! A user-defined source and sink, written with the macros, run end to end.
//!
//! `cargo run -p batch-orchestra-examples --example custom_connector` (uses `TEMPORAL_ADDRESS`,
//! or starts a local Temporal dev server).

use batch_orchestra::connector::*;
use batch_orchestra::testing::TemporalDevServer;
use batch_orchestra::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// The squares of `0..count`; the offset is the next number.
#[batch_source(name = "squares", reader = Self)]
#[derive(Clone, Serialize, Deserialize)]
pub struct Squares {
    count: u64,
}

impl Squares {
    async fn build_source(&self) -> Result<Self, ConnectorError> {
        Ok(self.clone())
    }
}

impl Source for Squares {
    type Record = u64;
    type Offset = u64;

    async fn plan(
        &self,
        from: Option<&u64>,
        size: u64,
        max: usize,
    ) -> Result<Plan<u64>, ConnectorError> {
        let starts = (from.copied().unwrap_or(0)..self.count)
            .step_by(size as usize)
            .take(max);
        let batches: Vec<_> = starts
            .map(|s| PlannedBatch {
                start: s,
                end: (s + size).min(self.count),
                records: (s + size).min(self.count) - s,
            })
            .collect();
        Ok(Plan {
            end_of_source: batches.last().is_none_or(|b| b.end == self.count),
            batches,
        })
    }

    async fn read(&self, range: &BatchRange<u64>) -> Result<ReadBatch<u64>, ConnectorError> {
        let records = (range.start..range.end)
            .map(|n| Positioned {
                position: Position::at(n),
                value: n * n,
            })
            .collect();
        Ok(ReadBatch {
            records,
            errors: vec![],
        })
    }
}

static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Adds up what it receives.
#[batch_sink(name = "sum", writer = Self)]
#[derive(Clone, Serialize, Deserialize)]
pub struct Sum;

impl Sum {
    async fn build_sink(&self) -> Result<Self, ConnectorError> {
        Ok(Sum)
    }
}

impl Sink for Sum {
    type Record = u64;

    async fn write(
        &self,
        _ctx: &WriteContext,
        records: Vec<Positioned<u64>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        TOTAL.fetch_add(records.iter().map(|r| r.value).sum(), Ordering::Relaxed);
        Ok(WriteOutcome {
            written: records.len() as u64,
            ..Default::default()
        })
    }
}

pipeline! {
    /// Sums the squares.
    pub SumOfSquares { source: Squares, sink: Sum }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let local = match std::env::var("TEMPORAL_ADDRESS") {
        Ok(_) => None,
        Err(_) => Some(TemporalDevServer::start()?),
    };
    let client = match &local {
        Some(server) => server.client().await?,
        None => connect_from_env().await?,
    };
    let mut worker = Worker::builder(client.clone(), "examples")
        .pipeline::<SumOfSquares>()?
        .build()?;
    let jobs = JobClient::new(client, "examples");
    let request =
        SumOfSquares::request("sum-of-squares", Squares { count: 1_000 }, Sum).batch_size(100);
    let report = worker
        .run_until(async { SumOfSquares::start(&jobs, request).await?.report().await })
        .await??;
    let expected: u64 = (0..1_000u64).map(|n| n * n).sum();
    println!(
        "workflow `{}`: {} records in {} batches; sum = {}",
        SumOfSquares::WORKFLOW,
        report.records_written,
        report.batches,
        TOTAL.load(Ordering::Relaxed)
    );
    assert_eq!(TOTAL.load(Ordering::Relaxed), expected);
    Ok(())
}
