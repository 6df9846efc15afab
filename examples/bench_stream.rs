//! The streaming figures of the benchmark: a NATS JetStream durable consumer through the
//! queue executor, on a fresh NATS server with a stream per measurement.
//!
//! - `nats_stream_direct_msgs_per_s`: the stream source's own loop (pull, decode, ack), no
//!   Temporal;
//! - `nats_noop_msgs_per_s`: NATS -> no-op through Temporal (`nats_noop_vs_direct` is this
//!   over the first);
//! - `nats_mongo_msgs_per_s`: NATS -> MongoDB through Temporal;
//! - `nats_latency_p50_ms`, `nats_latency_p99_ms`: publish to write, at a steady 10,000
//!   messages/s for 10 s, with the default linger;
//! - `nats_outage_rss_mb`: the worker's peak RSS (a child process) while MongoDB is down for
//!   10 s and messages keep arriving at 10,000/s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use batch_orchestra::connector::{Receipt, StreamReader, StreamSource};
use batch_orchestra::connector::{WriteContext, WriteOutcome};
use batch_orchestra::connectors::mongo::{MongoSink, value_to_document};
use batch_orchestra::connectors::nats::NatsStream;
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::stream::StreamRequest;
use batch_orchestra::testing::{MongoServer, NatsServer, TemporalDevServer};
use batch_orchestra::worker::Registered;
use batch_orchestra::{ConnectorError, JobClient, Positioned, Sink, Worker, batch_sink, pipeline};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Stat, stat};

pipeline! {
    /// JetStream messages, dropped.
    pub BenchNatsToNoop { source: NatsStream, sink: NoopSink<Value>, workflow: "bench-nats-to-noop" }
}

pipeline! {
    /// JetStream messages into MongoDB documents.
    pub BenchNatsToMongo {
        source: NatsStream,
        transform: value_to_document,
        sink: MongoSink,
        workflow: "bench-nats-to-mongo",
    }
}

pipeline! {
    /// JetStream messages whose publish time is compared with the time they are written.
    pub BenchNatsLatency { source: NatsStream, sink: LatencySink, workflow: "bench-nats-latency" }
}

/// Latencies seen by [`LatencySink`], in microseconds.
static LATENCIES: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// A sink that records, for each message, the time from its `sent_us` to its write.
#[batch_sink(name = "latency", writer = Self)]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySink {}

impl LatencySink {
    async fn build_sink(&self) -> Result<LatencySink, ConnectorError> {
        Ok(self.clone())
    }
}

impl Sink for LatencySink {
    type Record = Value;

    async fn write(
        &self,
        _ctx: &WriteContext,
        records: Vec<Positioned<Value>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        let now = now_us();
        let mut latencies = LATENCIES.lock().unwrap();
        for r in &records {
            if let Some(sent) = r.value.get("sent_us").and_then(Value::as_u64) {
                latencies.push(now.saturating_sub(sent));
            }
        }
        Ok(WriteOutcome {
            written: records.len() as u64,
            ..Default::default()
        })
    }
}

const URL_ENV: &str = "BATCH_ORCHESTRA_BENCH_NATS_URL";
const MONGO_ENV: &str = "BATCH_ORCHESTRA_BENCH_STREAM_MONGODB_URI";
const QUEUE: &str = "bench-stream";

/// The figures.
pub struct Figures {
    pub direct: Stat,
    pub noop: Stat,
    pub mongo: Stat,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub outage_rss_mb: f64,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A stream `name` on `name.>` with a durable pull consumer `c` (explicit acks, room for
/// the executor's buffer).
async fn stream(js: &jetstream::Context, name: &str) -> Result<NatsStream, Error> {
    let _ = js.delete_stream(name).await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            ..Default::default()
        })
        .await?;
    stream
        .create_consumer(pull::Config {
            durable_name: Some("c".into()),
            ack_policy: AckPolicy::Explicit,
            max_ack_pending: 50_000,
            ..Default::default()
        })
        .await?;
    Ok(NatsStream::new(name, "c").url_env(URL_ENV))
}

/// Publishes `count` messages like a bench row, each with its publish time.
async fn publish(js: &jetstream::Context, name: &str, from: u64, count: u64) -> Result<(), Error> {
    let mut acks = Vec::with_capacity(1_000);
    for n in from..from + count {
        let payload = serde_json::to_vec(&serde_json::json!({
            "n": n,
            "name": format!("person {n}"),
            "city": format!("City, {}", n % 7),
            "sent_us": now_us(),
        }))?;
        acks.push(js.publish(format!("{name}.in"), payload.into()).await?);
        if acks.len() == 1_000 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// Publishes at `per_s` messages a second for `seconds`, in ticks of 10 ms.
async fn publish_steadily(
    js: &jetstream::Context,
    name: &str,
    from: u64,
    per_s: u64,
    seconds: u64,
) -> Result<u64, Error> {
    let per_tick = per_s / 100;
    let started = Instant::now();
    let mut sent = 0;
    for tick in 0..seconds * 100 {
        publish(js, name, from + sent, per_tick).await?;
        sent += per_tick;
        let next = started + Duration::from_millis(10 * (tick + 1));
        tokio::time::sleep_until(next.into()).await;
    }
    Ok(sent)
}

/// The source's own loop: pull, decode and acknowledge `count` messages.
async fn direct(source: &NatsStream, count: u64) -> Result<f64, Error> {
    let mut reader = source.open(None).await?;
    let started = Instant::now();
    let mut got = 0;
    while got < count {
        let batch = reader.next(1_000, Duration::from_millis(100)).await?;
        got += batch.len() as u64;
        for item in batch {
            item.receipt.ack().await?;
        }
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}

/// Runs a streaming job of `P` over `count` messages; returns messages/s.
async fn piped<P: batch_orchestra::Pipeline<Source = NatsStream> + Registered>(
    server: &TemporalDevServer,
    job: &str,
    source: NatsStream,
    sink: P::Sink,
    count: u64,
) -> Result<f64, Error> {
    let client = server.client().await?;
    let mut worker = Worker::builder(client.clone(), QUEUE)
        .pipeline::<P>()?
        .build()?;
    let jobs = JobClient::new(client, QUEUE);
    let request = StreamRequest::new(job, source, sink).max_records(count);
    let started = Instant::now();
    let report = worker
        .run_until(async { jobs.start_stream::<P>(request).await?.report().await })
        .await??;
    Ok(report.records_received as f64 / started.elapsed().as_secs_f64())
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    reps: usize,
    messages: u64,
) -> Result<Figures, Error> {
    let nats = NatsServer::start()?;
    let mut mongo = MongoServer::start()?;
    // SAFETY: the only other threads are the runtime's idle workers, which read no
    // environment; the connectors read the variables when they are built, after this.
    unsafe {
        std::env::set_var(URL_ENV, nats.url());
        std::env::set_var(MONGO_ENV, mongo.uri());
    }
    let js = runtime.block_on(async {
        Ok::<_, Error>(jetstream::new(async_nats::connect(nats.url()).await?))
    })?;
    let (mut direct_rates, mut noop, mut to_mongo) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        runtime.block_on(async {
            let source = stream(&js, &format!("DIRECT{rep}")).await?;
            publish(&js, &format!("DIRECT{rep}"), 0, messages).await?;
            direct_rates.push(direct(&source, messages).await?);
            let source = stream(&js, &format!("NOOP{rep}")).await?;
            publish(&js, &format!("NOOP{rep}"), 0, messages).await?;
            noop.push(
                piped::<BenchNatsToNoop>(
                    server,
                    &format!("nats-noop-{rep}"),
                    source,
                    NoopSink::new(),
                    messages,
                )
                .await?,
            );
            let source = stream(&js, &format!("MONGO{rep}")).await?;
            publish(&js, &format!("MONGO{rep}"), 0, messages).await?;
            let sink = MongoSink::new("bench", format!("stream{rep}")).uri_env(MONGO_ENV);
            to_mongo.push(
                piped::<BenchNatsToMongo>(
                    server,
                    &format!("nats-mongo-{rep}"),
                    source,
                    sink,
                    messages,
                )
                .await?,
            );
            Ok::<_, Error>(())
        })?;
        println!(
            "rep {rep}: NATS stream direct {:.0}, -> no-op {:.0}, -> MongoDB {:.0} messages/s",
            direct_rates[rep], noop[rep], to_mongo[rep]
        );
    }

    // Latency at a steady 10,000 messages/s for 10 s.
    let (p50_ms, p99_ms) = runtime.block_on(async {
        let source = stream(&js, "LATENCY").await?;
        let client = server.client().await?;
        let mut worker = Worker::builder(client.clone(), QUEUE)
            .pipeline::<BenchNatsLatency>()?
            .build()?;
        let jobs = JobClient::new(client, QUEUE);
        LATENCIES.lock().unwrap().clear();
        let request =
            StreamRequest::new("nats-latency", source, LatencySink::default()).max_records(100_000);
        worker
            .run_until(async {
                let handle = jobs.start_stream::<BenchNatsLatency>(request).await?;
                publish_steadily(&js, "LATENCY", 0, 10_000, 10).await?;
                handle.report().await?;
                Ok::<_, Error>(())
            })
            .await??;
        let mut latencies = std::mem::take(&mut *LATENCIES.lock().unwrap());
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;
        Ok::<_, Error>((at(0.5), at(0.99)))
    })?;
    println!("latency at 10,000 messages/s: p50 {p50_ms:.1} ms, p99 {p99_ms:.1} ms");

    // Peak RSS of a worker process while the sink is down for 10 s.
    let outage_rss_mb = runtime.block_on(async {
        stream(&js, "OUTAGE").await?;
        publish(&js, "OUTAGE", 0, 20_000).await?;
        let exe = std::env::current_exe()?;
        let child = tokio::process::Command::new(exe)
            .args(["--stream-rss-child", &server.address()])
            .env(URL_ENV, nats.url())
            .env(MONGO_ENV, mongo.uri())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mongo_client = mongodb::Client::with_uri_str(mongo.uri()).await?;
        let collection = mongo_client
            .database("bench")
            .collection::<mongodb::bson::Document>("outage");
        let until = Instant::now() + Duration::from_secs(120);
        while collection.count_documents(mongodb::bson::doc! {}).await? < 5_000 {
            if Instant::now() > until {
                return Err("the outage job wrote nothing in 2 minutes".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        mongo.stop();
        publish_steadily(&js, "OUTAGE", 20_000, 10_000, 10).await?;
        mongo.start_again()?;
        let out = child.wait_with_output().await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let rss: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("peak_rss_mb "))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("the outage child printed no peak RSS: {stdout}"))?;
        Ok::<_, Error>(rss)
    })?;
    println!(
        "worker peak RSS through a 10 s MongoDB outage at 10,000 messages/s: {outage_rss_mb:.0} MB"
    );

    Ok(Figures {
        direct: stat(direct_rates),
        noop: stat(noop),
        mongo: stat(to_mongo),
        p50_ms,
        p99_ms,
        outage_rss_mb,
    })
}

/// The child process of the outage measure: a worker streams `OUTAGE` into MongoDB until the
/// stream is idle for 5 s; prints its peak RSS.
pub fn rss_child(address: &str) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = batch_orchestra::client::connect(address, "default").await?;
        let mut worker = Worker::builder(client.clone(), "bench-stream-rss")
            .pipeline::<BenchNatsToMongo>()?
            .build()?;
        let jobs = JobClient::new(client, "bench-stream-rss");
        let request = StreamRequest::new(
            "nats-outage",
            NatsStream::new("OUTAGE", "c").url_env(URL_ENV),
            MongoSink::new("bench", "outage").uri_env(MONGO_ENV),
        )
        .call_timeout(Duration::from_secs(5))
        .idle_timeout(Duration::from_secs(5));
        let report = worker
            .run_until(async {
                jobs.start_stream::<BenchNatsToMongo>(request)
                    .await?
                    .report()
                    .await
            })
            .await??;
        eprintln!(
            "outage child: {} received, {} written, {} already present",
            report.records_received, report.records_written, report.already_present
        );
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
