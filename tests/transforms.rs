//! Transforms beyond one-to-one, on a real dev server: filtering (`Option`), one record to
//! many (`Vec`), and async transforms with per-worker state. Filtered records are counted as
//! such, records made from one source record keep apart in a sink keyed by position, and the
//! state is built once per worker however many batches run at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex};

use batch_orchestra::connector::{WriteContext, WriteOutcome};
use batch_orchestra::pipeline::TransformState;
use batch_orchestra::testing::{CountingSink, RangeSource, TestRecord};
use batch_orchestra::{
    ConnectorError, Positioned, Sink, TransformError, batch_sink, pipeline, pipelines,
};
use batch_orchestra_tests::{Harness, assert_job_failed, run};
use serde::{Deserialize, Serialize};

/// Keeps records whose id is a multiple of 3; id 7 is a record error.
fn multiples_of_three(record: TestRecord) -> Result<Option<TestRecord>, TransformError> {
    match record.id {
        7 => Err(TransformError::new("id 7 is refused")),
        id if id % 3 == 0 => Ok(Some(record)),
        _ => Ok(None),
    }
}

pipeline! {
    /// Only multiples of three.
    pub Filtering { source: RangeSource, transform: multiples_of_three, sink: CountingSink }
}

/// Each record becomes `id % 4` records (none for multiples of 4).
fn fan_out(record: TestRecord) -> Result<Vec<TestRecord>, TransformError> {
    Ok((0..record.id % 4)
        .map(|i| TestRecord {
            id: record.id,
            payload: format!("copy {i}"),
        })
        .collect())
}

/// Writes each record once per position key, whatever its value: a sink keyed as the
/// MongoDB and PostgreSQL sinks are.
#[batch_sink(name = "keyed", writer = KeyedWriter)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyed {
    /// The log the keys go to.
    pub log: String,
}

/// Keys written, by log.
static KEYS: LazyLock<Mutex<HashMap<String, Vec<String>>>> = LazyLock::new(Default::default);

/// The built [`Keyed`] sink.
pub struct KeyedWriter(String);

impl Keyed {
    async fn build_sink(&self) -> Result<KeyedWriter, ConnectorError> {
        Ok(KeyedWriter(self.log.clone()))
    }
}

impl Sink for KeyedWriter {
    type Record = TestRecord;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<TestRecord>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let mut keys = KEYS.lock().unwrap();
        let log = keys.entry(self.0.clone()).or_default();
        let mut outcome = WriteOutcome::default();
        for r in records {
            let key = format!("{}:{}", ctx.job_id, r.position.key());
            if log.contains(&key) {
                outcome.already_present += 1;
            } else {
                log.push(key);
                outcome.written += 1;
            }
        }
        Ok(outcome)
    }
}

pipeline! {
    /// One record to many, into a sink keyed by position.
    pub FanOut { source: RangeSource, transform: fan_out, sink: Keyed }
}

/// How many times [`Offsets`] was built.
static BUILDS: AtomicUsize = AtomicUsize::new(0);

/// An offset to add to every id, as a lookup client built once per worker would hold.
pub struct Offsets {
    add: u64,
}

impl TransformState for Offsets {
    async fn build() -> Result<Self, ConnectorError> {
        BUILDS.fetch_add(1, Ordering::SeqCst);
        // A slow connect: concurrent batches all wait for this one build.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        Ok(Offsets { add: 1_000_000 })
    }
}

async fn enrich(record: TestRecord, offsets: &Offsets) -> Result<TestRecord, TransformError> {
    tokio::task::yield_now().await;
    Ok(TestRecord {
        id: record.id + offsets.add,
        payload: record.payload,
    })
}

pipeline! {
    /// An async transform with per-worker state.
    pub Enriching { source: RangeSource, transform: async enrich, state: Offsets, sink: CountingSink }
}

/// State whose build always fails with a configuration error.
pub struct Unreachable;

impl TransformState for Unreachable {
    async fn build() -> Result<Self, ConnectorError> {
        Err(ConnectorError::config(
            "the lookup service at 127.0.0.1:1 refused the connection",
        ))
    }
}

fn with_unreachable(record: TestRecord, _: &Unreachable) -> Result<TestRecord, TransformError> {
    Ok(record)
}

pipeline! {
    /// State that cannot be built.
    pub Unbuildable { source: RangeSource, transform: with_unreachable, state: Unreachable, sink: CountingSink }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_fan_out_and_async_transforms_with_state() {
    let mut h = Harness::with(pipelines![Filtering, FanOut, Enriching, Unbuildable]).await;
    let jobs = h.jobs.clone();
    h.worker
        .run_until(async move {
            // Filtering: 1,000 records, 334 multiples of 3, id 7 an error, the rest filtered.
            let request = Filtering::request("filter", RangeSource::new(1_000), CountingSink::new("filter"))
                .batch_size(64)
                .max_in_flight(4);
            let report = run::<Filtering>(&jobs, request).await.unwrap();
            assert_eq!(report.records_read, 1_000);
            assert_eq!(report.records_written, 334);
            assert_eq!(report.records_filtered, 665);
            assert_eq!(report.record_errors, 1);
            assert_eq!(report.error_samples[0].to_string(), "record 7: id 7 is refused");
            let ids = CountingSink::log("filter").ids;
            assert!(ids.iter().all(|id| id % 3 == 0) && ids.len() == 334);

            // One to many: ids 0..1000 make 0+1+2+3 records per 4 ids = 1,500 records, each
            // kept apart by its position's part; the same job again writes nothing twice.
            let fan = || {
                FanOut::request("fan", RangeSource::new(1_000), Keyed { log: "fan".into() })
                    .batch_size(100)
                    .max_in_flight(4)
            };
            let report = run::<FanOut>(&jobs, fan()).await.unwrap();
            assert_eq!((report.records_read, report.records_written, report.already_present), (1_000, 1_500, 0));
            let again = run::<FanOut>(&jobs, fan()).await.unwrap();
            assert_eq!((again.records_written, again.already_present), (0, 1_500));
            let keys = KEYS.lock().unwrap()["fan"].clone();
            assert_eq!(keys.len(), 1_500);
            // Keys are scoped by the job id and the input's fingerprint.
            let scope = format!("fan@{}", report.input_fingerprint.clone().unwrap());
            let key = |position: &str| format!("{scope}:{position}");
            assert!(keys.contains(&key("3")) && keys.contains(&key("3.1")) && keys.contains(&key("3.2")), "{:?}", &keys[..3]);
            assert!(!keys.contains(&key("4")), "a record that made none writes none");

            // Async with state: built once for the worker, though four batches start at once.
            let request = Enriching::request("enrich", RangeSource::new(2_000), CountingSink::new("enrich"))
                .batch_size(100)
                .max_in_flight(4);
            let report = run::<Enriching>(&jobs, request).await.unwrap();
            assert_eq!(report.records_written, 2_000);
            assert_eq!(BUILDS.load(Ordering::SeqCst), 1, "state built once per worker");
            let ids = CountingSink::log("enrich").ids;
            assert_eq!(ids.iter().min(), Some(&1_000_000));
            assert_eq!(ids.iter().max(), Some(&1_001_999));

            // State that cannot be built: the job fails at once, naming the pipeline.
            let request = Unbuildable::request("unbuildable", RangeSource::new(10), CountingSink::new("unbuildable"));
            let outcome = run::<Unbuildable>(&jobs, request).await;
            assert_job_failed(
                "unbuildable state",
                outcome,
                "ConfigError",
                "building the state of pipeline `unbuildable`: the lookup service at 127.0.0.1:1 refused the connection",
            );
        })
        .await
        .unwrap();
}
