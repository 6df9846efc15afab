//! Shared set-up for the integration tests: a real Temporal dev server and a worker.

use batch_orchestra::testing::{RangeToCounting, TemporalDevServer};
use batch_orchestra::{JobClient, PipelineList, Worker, pipelines};
use temporalio_client::WorkflowFetchHistoryOptions;
use temporalio_common::UntypedWorkflow;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;

/// The task queue every test worker polls.
pub const TASK_QUEUE: &str = "batch-orchestra-tests";

/// A dev server, a job client and a worker serving some pipelines.
pub struct Harness {
    /// The dev server; stopped when the harness is dropped.
    pub server: TemporalDevServer,
    /// Starts and finds jobs.
    pub jobs: JobClient,
    /// Serves the pipelines; run it with `run_until`.
    pub worker: Worker,
}

impl Harness {
    /// Starts a tuned dev server and a worker for [`RangeToCounting`].
    pub async fn start() -> Self {
        Self::with(pipelines![RangeToCounting]).await
    }

    /// Starts a tuned dev server and a worker for the `pipelines`.
    pub async fn with(pipelines: PipelineList) -> Self {
        let server = TemporalDevServer::start().expect("start the Temporal dev server");
        let client = server.client().await.expect("connect to the dev server");
        let worker = Worker::builder(client.clone(), TASK_QUEUE)
            .pipelines(pipelines)
            .expect("register the pipelines")
            .build()
            .expect("build the worker");
        Self {
            server,
            jobs: JobClient::new(client, TASK_QUEUE),
            worker,
        }
    }
}

/// Retries 100 to 200 ms apart, `attempts` in all, so failure tests finish quickly.
pub fn quick_retries(attempts: u32) -> batch_orchestra::failure::RetrySettings {
    batch_orchestra::failure::RetrySettings {
        initial_interval: std::time::Duration::from_millis(100),
        maximum_interval: std::time::Duration::from_millis(200),
        maximum_attempts: attempts,
        ..batch_orchestra::failure::RetrySettings::default()
    }
}

/// The events of the latest run of workflow `id`.
pub async fn history(jobs: &JobClient, id: &str) -> Vec<HistoryEvent> {
    jobs.temporal()
        .get_workflow_handle::<UntypedWorkflow>(id.to_owned())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await
        .expect("fetch the history")
}

/// The history of the latest run of workflow `id` as JSON, as a replay fixture stores it.
pub async fn history_json(jobs: &JobClient, id: &str) -> Vec<u8> {
    jobs.temporal()
        .get_workflow_handle::<UntypedWorkflow>(id.to_owned())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("fetch the history as JSON")
}

/// A CSV of 1,000 good rows (quoted commas included), a row with a quoted newline, three bad
/// rows (lines 1,002, 1,005 and 1,006) and a last row without a final newline.
pub fn people_with_bad_rows() -> Vec<u8> {
    let mut s = String::from("id,name,city\n");
    for i in 0..1_000 {
        s.push_str(&format!("{i},person {i},\"City, {}\"\n", i % 7));
    }
    s.push_str("1000,ragged row\n1001,\"quoted, with a\nnewline\",Paris\n");
    let mut bytes = s.into_bytes();
    bytes.extend_from_slice(b"1002,bad \xFF utf8,Rome\n1003,also,ragged,row\n1004,last,Oslo");
    bytes
}

/// Every value of every `.jsonl` file in `dir`, files in name order (batch order for the JSON
/// Lines sink).
pub fn read_json_lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read a JSON Lines file")
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Starts a job of `P` and waits for its report.
pub async fn run<P: batch_orchestra::Pipeline>(
    jobs: &JobClient,
    request: batch_orchestra::batch::RequestOf<P>,
) -> Result<batch_orchestra::batch::ReportOf<P>, batch_orchestra::JobError> {
    jobs.start::<P>(request).await?.report().await
}

/// While a job runs, calls `act(n, held)` once the rows its sink holds (`held()`, read from
/// the sink's own server) reach `marks[n]`, for each mark in turn (a crash test kills a worker
/// there); returns how many marks were reached before the sink held `total` rows or `limit`
/// passed. Progress is read from the sink, not queried from the workflow: a query can wait
/// seconds after a worker is killed, long enough for a fast job to end unseen.
pub async fn at_sink_marks<F, Fut>(
    mut held: F,
    total: u64,
    marks: &[u64],
    limit: std::time::Duration,
    mut act: impl FnMut(usize, u64),
) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<u64>>,
{
    let deadline = std::time::Instant::now() + limit;
    let mut reached = 0;
    while reached < marks.len() && std::time::Instant::now() < deadline {
        if let Some(rows) = held().await {
            if rows >= total {
                break;
            }
            if rows >= marks[reached] {
                act(reached, rows);
                reached += 1;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    reached
}

/// Checks that a job failed with an error of `kind` whose message holds `expected`.
pub fn assert_job_failed<O: std::fmt::Debug + batch_orchestra::connector::Offset>(
    case: &str,
    outcome: Result<batch_orchestra::batch::JobReport<O>, batch_orchestra::JobError>,
    kind: &str,
    expected: &str,
) {
    match outcome {
        Err(batch_orchestra::JobError::Failed {
            kind: got, message, ..
        }) => {
            assert_eq!(got, kind, "{case}: {message}");
            assert!(message.contains(expected), "{case}: {message}");
        }
        other => panic!("{case}: expected a failed job ({kind}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The crash-test pipeline: CSV into MongoDB through a sink whose faults are set from a file,
// so a test can inject and remove them while the worker runs in another process.
// ---------------------------------------------------------------------------------------------

use batch_orchestra::connector::{WriteContext, WriteOutcome};
use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::mongo::{MongoSink, MongoWriter, row_to_document};
use batch_orchestra::{ConnectorError, Positioned, Sink, SinkConfig, batch_sink, pipeline};
use serde::{Deserialize, Serialize};

/// A MongoDB sink with faults read from `fault_file` before every write: a line
/// `poison <batch>` fails every attempt of that batch; `hang <batch>` hangs its first attempt.
/// Removing the file removes the faults.
#[batch_sink(name = "faulty-mongodb", writer = FaultyWriter)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultyMongo {
    /// The real sink.
    pub inner: MongoSink,
    /// Where the faults are listed.
    pub fault_file: String,
    /// A pause before every write, so a job lasts long enough to be hit.
    pub delay_ms: u64,
}

/// The built [`FaultyMongo`].
pub struct FaultyWriter {
    inner: MongoWriter,
    config: FaultyMongo,
}

impl FaultyMongo {
    async fn build_sink(&self) -> Result<FaultyWriter, ConnectorError> {
        Ok(FaultyWriter {
            inner: self.inner.build().await?,
            config: self.clone(),
        })
    }
}

impl Sink for FaultyWriter {
    type Record = mongodb::bson::Document;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Self::Record>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        tokio::time::sleep(std::time::Duration::from_millis(self.config.delay_ms)).await;
        let faults = std::fs::read_to_string(&self.config.fault_file).unwrap_or_default();
        for line in faults.lines() {
            let mut words = line.split_whitespace();
            let (Some(kind), Some(batch)) = (words.next(), words.next()) else {
                continue;
            };
            if batch.parse::<u64>() != Ok(ctx.batch) {
                continue;
            }
            match kind {
                "poison" => {
                    return Err(ConnectorError::transient(format!(
                        "batch {} is poisoned (injected)",
                        ctx.batch
                    )));
                }
                "hang" if ctx.attempt == 1 => std::future::pending::<()>().await,
                _ => {}
            }
        }
        self.inner.write(ctx, records).await
    }
}

pipeline! {
    /// CSV rows into MongoDB documents through [`FaultyMongo`].
    pub CsvToFaultyMongo {
        source: CsvFile,
        transform: row_to_document,
        sink: FaultyMongo,
        workflow: "csv-to-faulty-mongo",
    }
}

// ---------------------------------------------------------------------------------------------
// The PostgreSQL crash-test pipeline: CSV into PostgreSQL through a sink that pauses after
// every write, so a job lasts long enough for its worker to be killed mid-job.
// ---------------------------------------------------------------------------------------------

use batch_orchestra::connectors::postgres::{PostgresSink, PostgresWriter, row_from_csv};

/// A PostgreSQL sink that pauses `delay_ms` after every write.
#[batch_sink(name = "slow-postgres", writer = SlowPostgresWriter)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlowPostgres {
    /// The real sink.
    pub inner: PostgresSink,
    /// The pause after every write.
    pub delay_ms: u64,
}

/// The built [`SlowPostgres`].
pub struct SlowPostgresWriter {
    inner: PostgresWriter,
    delay_ms: u64,
}

impl SlowPostgres {
    async fn build_sink(&self) -> Result<SlowPostgresWriter, ConnectorError> {
        Ok(SlowPostgresWriter {
            inner: self.inner.build().await?,
            delay_ms: self.delay_ms,
        })
    }
}

impl Sink for SlowPostgresWriter {
    type Record = serde_json::Value;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<Self::Record>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        // Written first, then the pause: a worker killed in the pause has committed rows the
        // job does not know of yet, which the retry must absorb.
        let outcome = self.inner.write(ctx, records).await?;
        tokio::time::sleep(std::time::Duration::from_millis(self.delay_ms)).await;
        Ok(outcome)
    }
}

pipeline! {
    /// CSV rows into PostgreSQL through [`SlowPostgres`].
    pub CsvToSlowPostgres {
        source: CsvFile,
        transform: row_from_csv,
        sink: SlowPostgres,
        workflow: "csv-to-slow-postgres",
    }
}

pipeline! {
    /// A PostgreSQL table into another through [`SlowPostgres`] (incremental runs).
    pub TableToSlowPostgres {
        source: batch_orchestra::connectors::postgres::PostgresSource,
        sink: SlowPostgres,
        workflow: "table-to-slow-postgres",
    }
}

// ---------------------------------------------------------------------------------------------
// The streaming pipeline: JSON messages of a JetStream consumer into MongoDB documents.
// ---------------------------------------------------------------------------------------------

use batch_orchestra::connectors::mongo::value_to_document;
use batch_orchestra::connectors::nats::NatsStream;

pipeline! {
    /// JetStream messages into MongoDB, through [`FaultyMongo`] so a test can slow writes.
    pub NatsToMongo {
        source: NatsStream,
        transform: value_to_document,
        sink: FaultyMongo,
        workflow: "nats-to-mongo",
    }
}

/// The environment variable the streaming tests' sources read the NATS URL from.
pub const NATS_URL_ENV: &str = "BATCH_ORCHESTRA_TEST_NATS_URL";
