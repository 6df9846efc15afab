//! Streaming from a real NATS JetStream server into a real MongoDB-wire server through the
//! queue executor, on a real Temporal dev server:
//!
//! - 100,000 messages, every one exactly once in the collection, all acknowledged;
//! - a message that is not JSON: a record error with its stream sequence, acknowledged;
//! - a missing stream, a missing consumer and a consumer without explicit acks: configuration
//!   errors before anything is read;
//! - messages published while the job runs arrive within a second;
//! - the NATS server restarted mid-job: nothing lost, nothing written twice;
//! - MongoDB down for a while: what is delivered and unacknowledged stays within the
//!   executor's buffer, and the job catches up once the server is back;
//! - the worker process killed with SIGKILL at three random moments: every message once.
//!
//! Cases share servers and run one after another: they share the machine's two cores.

use std::process::Command;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use batch_orchestra::connectors::mongo::MongoSink;
use batch_orchestra::connectors::nats::NatsStream;
use batch_orchestra::failure::RetrySettings;
use batch_orchestra::stream::EndReason;
use batch_orchestra::stream::StreamRequest;
use batch_orchestra::testing::{MongoServer, NatsServer, TemporalDevServer, WorkerProcess};
use batch_orchestra::{JobClient, JobError, JobStatus, Worker};
use batch_orchestra_tests::{FaultyMongo, NATS_URL_ENV, NatsToMongo};
use mongodb::bson::{Document, doc};

const QUEUE: &str = "stream-nats-tests";
/// The consumers' redelivery delay: short, so a crashed worker's messages come back soon.
const ACK_WAIT: Duration = Duration::from_secs(4);

struct Rig {
    temporal: TemporalDevServer,
    mongo: MongoServer,
    nats: NatsServer,
    jobs: JobClient,
    js: jetstream::Context,
    dir: tempfile::TempDir,
}

/// The servers of a case, started before any runtime thread exists.
fn servers() -> (TemporalDevServer, MongoServer, NatsServer) {
    (
        TemporalDevServer::start().expect("start the Temporal dev server"),
        MongoServer::start().expect("start the MongoDB-wire server"),
        NatsServer::start().expect("start the NATS server"),
    )
}

/// Cases run one at a time: they share the machine's two cores.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Rig {
    async fn start((temporal, mongo, nats): (TemporalDevServer, MongoServer, NatsServer)) -> Self {
        let client = temporal.client().await.expect("connect to Temporal");
        let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
        Self {
            temporal,
            mongo,
            nats,
            jobs: JobClient::new(client, QUEUE),
            js,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A stream `name` on `name.>` and a durable pull consumer `name-consumer` with explicit
    /// acks.
    async fn stream(&self, name: &str) -> NatsStream {
        let stream = self
            .js
            .create_stream(jetstream::stream::Config {
                name: name.into(),
                subjects: vec![format!("{name}.>")],
                ..Default::default()
            })
            .await
            .unwrap();
        stream
            .create_consumer(pull::Config {
                durable_name: Some(format!("{name}-consumer")),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: 50_000,
                ..Default::default()
            })
            .await
            .unwrap();
        NatsStream::new(name, format!("{name}-consumer")).url_env(NATS_URL_ENV)
    }

    /// Publishes messages `{"n": from..to}` to `<stream>.in`, waiting for every ack.
    async fn publish(&self, stream: &str, range: std::ops::Range<u64>) {
        let mut acks = Vec::new();
        for n in range {
            let payload =
                serde_json::to_vec(&serde_json::json!({ "n": n, "sent_ms": now_ms() })).unwrap();
            acks.push(
                self.js
                    .publish(format!("{stream}.in"), payload.into())
                    .await
                    .unwrap(),
            );
            if acks.len() == 1_000 {
                for ack in acks.drain(..) {
                    ack.await.unwrap();
                }
            }
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }

    fn sink(&self, job: &str, delay_ms: u64) -> FaultyMongo {
        FaultyMongo {
            inner: MongoSink::new("streams", job),
            fault_file: self
                .dir
                .path()
                .join("no-faults")
                .to_string_lossy()
                .into_owned(),
            delay_ms,
        }
    }

    async fn collection(&self, job: &str) -> mongodb::Collection<Document> {
        let client = mongodb::Client::with_uri_str(self.mongo.uri())
            .await
            .unwrap();
        client.database("streams").collection(job)
    }

    /// Documents in the collection, and distinct `n`s among them.
    async fn written(&self, job: &str) -> (u64, u64) {
        let collection = self.collection(job).await;
        let count = collection.count_documents(doc! {}).await.unwrap();
        let distinct = collection.distinct("n", doc! {}).await.unwrap().len() as u64;
        (count, distinct)
    }

    async fn consumer_info(&self, stream: &str) -> jetstream::consumer::Info {
        let stream = self.js.get_stream(stream).await.unwrap();
        stream
            .consumer_info(format!("{}-consumer", stream.cached_info().config.name))
            .await
            .unwrap()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn quick_retries() -> RetrySettings {
    RetrySettings {
        initial_interval: Duration::from_millis(200),
        maximum_interval: Duration::from_secs(1),
        maximum_attempts: 0,
        ..RetrySettings::default()
    }
}

#[test]
fn streams_from_nats_into_mongodb() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let servers = servers();
    // SAFETY: set before this test's runtime, clients or worker exist; the other test of
    // this file waits on the lock above and passes its settings to a child process.
    unsafe {
        std::env::set_var(NATS_URL_ENV, servers.2.url());
        std::env::set_var("MONGODB_URI", servers.1.uri());
    }
    let runtime = runtime();
    let mut rig = runtime.block_on(Rig::start(servers));
    runtime.block_on(async {
        let client = rig.temporal.client().await.unwrap();
        let mut worker = Worker::builder(client, QUEUE)
            .pipeline::<NatsToMongo>()
            .unwrap()
            .build()
            .unwrap();
        let cases = async {
            exactly_once_for_100_000_messages(&rig).await;
            a_message_that_is_not_json_is_a_record_error(&rig).await;
            missing_streams_and_consumers_are_configuration_errors(&rig).await;
            messages_arrive_within_a_second(&rig).await;
            survives_a_nats_restart(&mut rig).await;
            a_sink_outage_holds_the_stream_back(&mut rig).await;
        };
        worker.run_until(cases).await.unwrap();
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn exactly_once_for_100_000_messages(rig: &Rig) {
    let job = "nats-100k";
    let source = rig.stream("HUNDRED").await;
    rig.publish("HUNDRED", 0..100_000).await;
    let started = Instant::now();
    let req = StreamRequest::new(job, source, rig.sink(job, 0))
        .batch_size(1_000)
        .max_records(100_000);
    let report = rig
        .jobs
        .start_stream::<NatsToMongo>(req)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    println!("100,000 messages in {:?}: {report:?}", started.elapsed());
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.ended, Some(EndReason::MaxRecords));
    assert_eq!(report.records_received, 100_000);
    assert_eq!(report.records_written, 100_000);
    assert_eq!(report.already_present, 0);
    assert_eq!(report.record_errors, 0);
    assert_eq!(
        report.checkpoints,
        vec![Some(100_000)],
        "stream sequences start at 1"
    );
    assert_eq!(rig.written(job).await, (100_000, 100_000));
    let info = rig.consumer_info("HUNDRED").await;
    assert_eq!(info.num_pending, 0, "everything delivered");
    assert_eq!(info.num_ack_pending, 0, "everything acknowledged");
    assert_eq!(info.num_redelivered, 0);
}

async fn a_message_that_is_not_json_is_a_record_error(rig: &Rig) {
    let job = "nats-bad-input";
    let source = rig.stream("BAD").await;
    rig.publish("BAD", 0..3).await;
    let ack = rig
        .js
        .publish("BAD.in", "not json {".into())
        .await
        .unwrap()
        .await
        .unwrap();
    rig.publish("BAD", 3..5).await;
    let req = StreamRequest::new(job, source, rig.sink(job, 0))
        .linger(Duration::from_millis(20))
        .idle_timeout(Duration::from_secs(2));
    let report = rig
        .jobs
        .start_stream::<NatsToMongo>(req)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(report.ended, Some(EndReason::Idle));
    assert_eq!(report.records_received, 6);
    assert_eq!(report.records_written, 5);
    assert_eq!(report.record_errors, 1);
    let error = report.error_samples[0].to_string();
    assert_eq!(ack.sequence, 4);
    assert!(
        error.starts_with(
            "record 4: the message at stream sequence 4 (subject `BAD.in`) is not JSON"
        ),
        "{error}"
    );
    assert_eq!(rig.written(job).await, (5, 5));
    let info = rig.consumer_info("BAD").await;
    assert_eq!(
        info.num_ack_pending, 0,
        "the bad message was acknowledged too"
    );
    assert_eq!(info.num_redelivered, 0);
}

async fn missing_streams_and_consumers_are_configuration_errors(rig: &Rig) {
    rig.stream("CONFIG").await;
    let stream = rig.js.get_stream("CONFIG").await.unwrap();
    stream
        .create_consumer(pull::Config {
            durable_name: Some("acks-all".into()),
            ack_policy: AckPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let cases = [
        (
            NatsStream::new("NOPE", "c").url_env(NATS_URL_ENV),
            "no JetStream stream `NOPE`",
        ),
        (
            NatsStream::new("CONFIG", "nobody").url_env(NATS_URL_ENV),
            "stream `CONFIG`",
        ),
        (
            NatsStream::new("CONFIG", "acks-all").url_env(NATS_URL_ENV),
            "which needs `explicit` acks",
        ),
    ];
    for (i, (source, expected)) in cases.into_iter().enumerate() {
        let job = format!("nats-config-{i}");
        let started = Instant::now();
        let outcome = rig
            .jobs
            .start_stream::<NatsToMongo>(StreamRequest::new(&job, source, rig.sink(&job, 0)))
            .await
            .unwrap()
            .report()
            .await;
        match outcome {
            Err(JobError::Failed { kind, message, .. }) => {
                assert_eq!(kind, "ConfigError", "{message}");
                assert!(message.contains(expected), "{message}");
                if i == 1 {
                    assert!(message.contains("has no consumer `nobody`"), "{message}");
                }
            }
            other => panic!("expected a configuration failure, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "failed at once"
        );
    }
}

async fn messages_arrive_within_a_second(rig: &Rig) {
    let job = "nats-latency";
    let source = rig.stream("LIVE").await;
    let req = StreamRequest::new(job, source, rig.sink(job, 0))
        .linger(Duration::from_millis(50))
        .max_records(40);
    let handle = rig.jobs.start_stream::<NatsToMongo>(req).await.unwrap();
    let collection = rig.collection(job).await;
    let mut latencies = Vec::new();
    for n in 0..40u64 {
        let payload = serde_json::to_vec(&serde_json::json!({ "n": n })).unwrap();
        let sent = Instant::now();
        let ack = rig
            .js
            .publish("LIVE.in", payload.into())
            .await
            .unwrap()
            .await
            .unwrap();
        let id = format!("{job}:{}", ack.sequence);
        while collection
            .find_one(doc! { "_id": &id })
            .await
            .unwrap()
            .is_none()
        {
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "message {n} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let report = handle.report().await.unwrap();
    assert_eq!(report.records_written, 40);
    latencies.sort();
    println!(
        "publish-to-document latency: p50 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    assert!(
        latencies[latencies.len() - 1] < Duration::from_secs(1),
        "every message within a second: {latencies:?}"
    );
}

async fn survives_a_nats_restart(rig: &mut Rig) {
    let job = "nats-restart";
    let source = rig.stream("RESTART").await;
    rig.publish("RESTART", 0..20_000).await;
    let req = StreamRequest::new(job, source, rig.sink(job, 2))
        .batch_size(200)
        .buffer(1_000)
        .idle_timeout(ACK_WAIT * 3)
        .retry(quick_retries());
    let handle = rig.jobs.start_stream::<NatsToMongo>(req).await.unwrap();
    wait_for_documents(rig, job, 4_000).await;
    tokio::task::block_in_place(|| rig.nats.stop());
    let stopped_at = rig.written(job).await.0;
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| rig.nats.start_again()).unwrap();
    let report = handle.report().await.unwrap();
    println!("NATS restarted after {stopped_at} documents: {report:?}");
    assert!(stopped_at < 20_000, "the restart came mid-job");
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(
        rig.written(job).await,
        (20_000, 20_000),
        "every message once"
    );
    assert_eq!(report.records_written, 20_000);
    // The client reconnects; the job's own connection for later cases too.
    rig.js = jetstream::new(async_nats::connect(rig.nats.url()).await.unwrap());
}

async fn a_sink_outage_holds_the_stream_back(rig: &mut Rig) {
    let job = "nats-sink-outage";
    let source = rig.stream("OUTAGE").await;
    rig.publish("OUTAGE", 0..10_000).await;
    let (batch, buffer) = (250u64, 1_000u64);
    let req = StreamRequest::new(job, source, rig.sink(job, 5))
        .batch_size(batch)
        .buffer(buffer)
        // Shorter than the outage: writes fail, hand their messages back and the slice is
        // retried, over and over, until the server is back.
        .call_timeout(Duration::from_secs(2))
        .idle_timeout(ACK_WAIT * 3)
        .retry(quick_retries());
    let handle = rig.jobs.start_stream::<NatsToMongo>(req).await.unwrap();
    wait_for_documents(rig, job, 2_000).await;
    tokio::task::block_in_place(|| rig.mongo.stop());
    // Ten thousand more arrive while the sink is down; delivered-but-unacknowledged messages
    // stay within what one executor holds.
    let publishing = rig.publish("OUTAGE", 10_000..20_000);
    let watching = async {
        let mut most = 0;
        let until = Instant::now() + Duration::from_secs(6);
        while Instant::now() < until {
            most = most.max(rig.consumer_info("OUTAGE").await.num_ack_pending as u64);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        most
    };
    let ((), most_unacked) = tokio::join!(publishing, watching);
    let pending = rig.consumer_info("OUTAGE").await.num_pending;
    println!("sink down: at most {most_unacked} unacknowledged, {pending} waiting in the stream");
    assert!(
        most_unacked <= buffer + 2 * batch,
        "back-pressure: {most_unacked} unacknowledged"
    );
    assert!(pending > 0, "the stream held messages back");
    tokio::task::block_in_place(|| rig.mongo.start_again()).unwrap();
    let report = handle.report().await.unwrap();
    // Every delivery takes a consumer sequence: those past the stream's are deliveries again.
    let delivered = rig.consumer_info("OUTAGE").await.delivered;
    let redelivered = delivered.consumer_sequence - delivered.stream_sequence;
    println!("after the outage ({redelivered} redelivered): {report:?}");
    assert!(
        redelivered > 0,
        "writes failed during the outage and handed their messages back"
    );
    assert_eq!(report.status, JobStatus::Completed);
    assert_eq!(
        rig.written(job).await,
        (20_000, 20_000),
        "caught up, every message once"
    );
}

async fn wait_for_documents(rig: &Rig, job: &str, n: u64) {
    let until = Instant::now() + Duration::from_secs(120);
    while rig.written(job).await.0 < n {
        assert!(
            Instant::now() < until,
            "{job}: fewer than {n} documents after 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The worker in a child process, killed with SIGKILL three times at random moments while it
/// streams 30,000 messages: every message lands once.
#[test]
fn a_streaming_worker_killed_three_times() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let servers = servers();
    runtime().block_on(async {
        let rig = Rig::start(servers).await;
        let job = "nats-crash";
        let source = rig.stream("CRASH").await;
        rig.publish("CRASH", 0..30_000).await;
        let spawn = || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_crash-worker"));
            command
                .env("TEMPORAL_ADDRESS", rig.temporal.address())
                .env("MONGODB_URI", rig.mongo.uri())
                .env(NATS_URL_ENV, rig.nats.url())
                .env("TASK_QUEUE", QUEUE);
            WorkerProcess::spawn(command).expect("start a worker process")
        };
        let mut worker = spawn();
        let req = StreamRequest::new(job, source, rig.sink(job, 20))
            .batch_size(200)
            .buffer(1_000)
            .heartbeat_timeout(Duration::from_secs(2))
            .idle_timeout(ACK_WAIT * 3)
            .retry(quick_retries());
        let handle = rig.jobs.start_stream::<NatsToMongo>(req).await.unwrap();
        let mut seed = seed();
        let mut kills = Vec::new();
        let mut last = 0;
        for _ in 0..3 {
            // Each kill lands while the new worker writes: after it wrote 1,000 more, at a
            // random moment within the next second.
            wait_for_documents(&rig, job, last + 1_000).await;
            tokio::time::sleep(Duration::from_millis(next(&mut seed) % 1_000)).await;
            let before = rig.written(job).await.0;
            last = before;
            worker.kill();
            kills.push(before);
            worker = spawn();
        }
        let report = handle.report().await.unwrap();
        println!("kills after {kills:?} documents: {report:?}");
        let _ = &worker;
        assert!(
            kills.iter().all(|&k| k > 0 && k < 30_000),
            "every kill landed mid-job: {kills:?}"
        );
        assert_eq!(report.status, JobStatus::Completed);
        assert_eq!(
            rig.written(job).await,
            (30_000, 30_000),
            "every message once"
        );
        let info = rig.consumer_info("CRASH").await;
        assert_eq!(
            info.num_ack_pending, 0,
            "everything acknowledged in the end"
        );
    });
}

fn seed() -> u64 {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ms)
        .max(1);
    println!("crash seed: {seed} (replay with CRASH_SEED={seed})");
    seed
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
