//! The NATS JetStream sink on a real server: a CSV published once per record, a second run of
//! the same job absorbed by the stream's duplicate window, a batch written twice counted as
//! already present, and a subject no stream captures failing the job at once.
//!
//! One test function: the sink reads its URL from the worker's environment, set before any
//! other thread starts.

use async_nats::jetstream;
use batch_orchestra::connector::WriteContext;
use batch_orchestra::connectors::csv::{CsvFile, CsvRow};
use batch_orchestra::connectors::nats::NatsSink;
use batch_orchestra::testing::NatsServer;
use batch_orchestra::{
    JobStatus, Position, Positioned, Sink, SinkConfig, TransformError, pipeline, pipelines,
};
use batch_orchestra_tests::{Harness, assert_job_failed, run};
use futures::StreamExt;

fn row_to_json(row: CsvRow) -> Result<serde_json::Value, TransformError> {
    serde_json::to_value(&row).map_err(|e| TransformError::new(e.to_string()))
}

pipeline! {
    /// CSV rows published to NATS.
    pub CsvToNats { source: CsvFile, transform: row_to_json, sink: NatsSink }
}

const URL_ENV: &str = "BATCH_ORCHESTRA_TEST_NATS_URL";

#[test]
fn nats_jetstream_sink() {
    let nats = NatsServer::start().unwrap();
    // SAFETY: set before the runtime, the clients or any other thread exist.
    unsafe { std::env::set_var(URL_ENV, nats.url()) };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut h = Harness::with(pipelines![CsvToNats]).await;
            let client = async_nats::connect(nats.url()).await.unwrap();
            let js = jetstream::new(client);
            js.create_stream(jetstream::stream::Config {
                name: "ORDERS".into(),
                subjects: vec!["orders.>".into()],
                ..Default::default()
            })
            .await
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            h.worker
                .run_until(cases(&h.jobs, &js, dir.path()))
                .await
                .unwrap();
        });
}

async fn messages(js: &jetstream::Context) -> u64 {
    js.get_stream("ORDERS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

async fn cases(jobs: &batch_orchestra::JobClient, js: &jetstream::Context, dir: &std::path::Path) {
    // 2,000 orders, two ragged rows (lines 11 and 1,502).
    let mut csv = String::from("id,item,qty\n");
    for i in 0..2_000 {
        if i == 9 || i == 1_500 {
            csv.push_str(&format!("{i},ragged\n"));
        } else {
            csv.push_str(&format!("{i},\"item, {i}\",{}\n", i % 9));
        }
    }
    let path = dir.join("orders.csv");
    std::fs::write(&path, csv).unwrap();
    let sink = || NatsSink::new("orders.imported").url_env(URL_ENV);
    let request = || {
        CsvToNats::request("orders-1", CsvFile::new(path.to_str().unwrap()), sink()).batch_size(250)
    };

    let report = run::<CsvToNats>(jobs, request()).await.unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.records_written, 1_998);
    assert_eq!(report.record_errors, 2);
    let lines: Vec<u64> = report
        .error_samples
        .iter()
        .map(|e| e.position.line.unwrap())
        .collect();
    assert_eq!(lines, vec![11, 1_502]);
    assert_eq!(messages(js).await, 1_998);

    // Every good row is one message, as JSON (batches publish concurrently, so the stream's
    // order is not the file's).
    let consumer = js
        .get_stream("ORDERS")
        .await
        .unwrap()
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut seen = 0;
    while seen < 1_998 {
        let mut batch = consumer.fetch().max_messages(500).messages().await.unwrap();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let row: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            let id: u64 = row["id"].as_str().unwrap().parse().unwrap();
            assert_eq!(row["item"], format!("item, {id}"));
            ids.insert(id);
            seen += 1;
        }
    }
    assert_eq!(ids.len(), 1_998, "no row twice");
    assert!(
        !ids.contains(&9) && !ids.contains(&1_500),
        "the ragged rows are not published"
    );

    // The same job again, within the duplicate window: nothing is published twice.
    let again = run::<CsvToNats>(jobs, request()).await.unwrap();
    assert_eq!(again.records_written, 0);
    assert_eq!(again.already_present, 1_998);
    assert_eq!(messages(js).await, 1_998);

    // A batch written twice directly: the second write is all already present.
    let writer = sink().build().await.unwrap();
    let ctx = WriteContext {
        job_id: "direct".into(),
        batch: 0,
        attempt: 1,
    };
    let records = || {
        (0..50u64)
            .map(|i| Positioned {
                position: Position::at(i),
                value: serde_json::json!({"id": i}),
            })
            .collect::<Vec<_>>()
    };
    let first = writer.write(&ctx, records()).await.unwrap();
    assert_eq!((first.written, first.already_present), (50, 0));
    let second = writer.write(&ctx, records()).await.unwrap();
    assert_eq!((second.written, second.already_present), (0, 50));
    assert_eq!(messages(js).await, 2_048);

    // Writes larger than the client's default allowance of unacknowledged messages (5,000),
    // from several writers at once: they do not wait on each other.
    let big = |job: &str| {
        let ctx = WriteContext {
            job_id: job.into(),
            batch: 0,
            attempt: 1,
        };
        let records = (0..6_000u64)
            .map(|i| Positioned {
                position: Position::at(i),
                value: serde_json::json!({"id": i}),
            })
            .collect::<Vec<_>>();
        (ctx, records)
    };
    let (a, b) = (big("big-a"), big("big-b"));
    let (ra, rb) = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        tokio::join!(writer.write(&a.0, a.1), writer.write(&b.0, b.1))
    })
    .await
    .expect("two 6,000-record writes finish");
    assert_eq!(ra.unwrap().written, 6_000);
    assert_eq!(rb.unwrap().written, 6_000);
    assert_eq!(messages(js).await, 14_048);

    // A subject no stream captures: the job fails at once, naming it.
    let lost = CsvToNats::request(
        "lost-1",
        CsvFile::new(path.to_str().unwrap()),
        NatsSink::new("nowhere.at.all").url_env(URL_ENV),
    );
    assert_job_failed(
        "a subject without a stream",
        run::<CsvToNats>(jobs, lost).await,
        "ConfigError",
        "no JetStream stream captures subject `nowhere.at.all`",
    );
    // An unset variable names it.
    let unset = CsvToNats::request(
        "unset-1",
        CsvFile::new(path.to_str().unwrap()),
        NatsSink::new("orders.x").url_env("BATCH_ORCHESTRA_TEST_NO_SUCH_VARIABLE"),
    );
    assert_job_failed(
        "an unset variable",
        run::<CsvToNats>(jobs, unset).await,
        "ConfigError",
        "`BATCH_ORCHESTRA_TEST_NO_SUCH_VARIABLE` is not set",
    );
}
