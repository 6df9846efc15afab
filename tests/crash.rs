//! Crash tests: real processes killed with SIGKILL, real servers taken away, against a real
//! Temporal dev server and a real MongoDB-wire server. The worker runs in a child process
//! (`crash-worker`). Every case checks the collection afterwards: every valid row present
//! exactly once, nothing lost, nothing duplicated, record errors counted once.
//!
//! Kill moments are drawn from a seeded generator (as points of progress, so they land
//! mid-job); the seed is printed, and `CRASH_SEED=<n>` replays a run. Cases run one at a time (they share the machine's two cores).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use batch_orchestra::batch::{JobReport, RequestOf};
use batch_orchestra::connectors::csv::{CsvFile, CsvOffset};
use batch_orchestra::connectors::mongo::MongoSink;
use batch_orchestra::failure::RetrySettings;
use batch_orchestra::sharded::ShardedRequest;
use batch_orchestra::testing::{MongoServer, TemporalDevServer, WorkerProcess};
use batch_orchestra::{JobClient, JobHandle, JobStatus};
use batch_orchestra_tests::{CsvToFaultyMongo, FaultyMongo, at_sink_marks};
use mongodb::bson::{Document, doc};

/// Data rows in the CSV, of which [`BAD_ROWS`] are ragged.
const ROWS: u64 = 20_000;
const BAD_ROWS: u64 = 3;
const VALID: u64 = ROWS - BAD_ROWS;
const BATCH: u64 = 200;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A small seeded generator (xorshift), so kill moments can be replayed.
struct Seeded(u64);

impl Seeded {
    fn from_env() -> Self {
        let seed = std::env::var("CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            .max(1);
        println!("crash seed: {seed} (replay with CRASH_SEED={seed})");
        Self(seed)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        Duration::from_millis(low + self.0 % (high - low))
    }
}

/// Servers, data and workers of one case.
struct Rig {
    temporal: TemporalDevServer,
    mongo: MongoServer,
    jobs: JobClient,
    dir: tempfile::TempDir,
    queue: String,
    workers: Vec<WorkerProcess>,
}

impl Rig {
    async fn start(persistent_temporal: bool) -> Self {
        let temporal = if persistent_temporal {
            TemporalDevServer::start_persistent()
        } else {
            TemporalDevServer::start()
        }
        .expect("start the Temporal dev server");
        let mongo = MongoServer::start().expect("start the MongoDB-wire server");
        let client = temporal.client().await.expect("connect to Temporal");
        let queue = "crash-tests".to_owned();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.csv"), csv()).unwrap();
        Self {
            temporal,
            mongo,
            jobs: JobClient::new(client, &queue),
            dir,
            queue,
            workers: Vec::new(),
        }
    }

    /// Starts one more worker process.
    fn add_worker(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crash-worker"));
        command
            .env("TEMPORAL_ADDRESS", self.temporal.address())
            .env("MONGODB_URI", self.mongo.uri())
            .env("TASK_QUEUE", &self.queue);
        self.workers
            .push(WorkerProcess::spawn(command).expect("start a worker process"));
    }

    fn fault_file(&self) -> PathBuf {
        self.dir.path().join("faults")
    }

    fn request(&self, job: &str, delay_ms: u64) -> RequestOf<CsvToFaultyMongo> {
        let sink = FaultyMongo {
            inner: MongoSink::new("crash", job),
            fault_file: self.fault_file().to_string_lossy().into_owned(),
            delay_ms,
        };
        let csv = CsvFile::new(self.dir.path().join("in.csv").to_string_lossy());
        CsvToFaultyMongo::request(job, csv, sink)
            .batch_size(BATCH)
            .batches_per_activity(2)
            // Fixed groups, so progress (and the kills timed by it) moves in small steps.
            .max_batches_per_activity(2)
            .max_in_flight(4)
            .heartbeat_timeout(Duration::from_secs(2))
            .retry(
                "process",
                RetrySettings {
                    initial_interval: Duration::from_millis(500),
                    maximum_interval: Duration::from_secs(2),
                    maximum_attempts: 20,
                    ..RetrySettings::default()
                },
            )
    }

    /// A job whose groups give up after `attempts` quick retries, with writes abandoned after
    /// 2 s: an outage outlasts them within seconds.
    fn outage_request(&self, job: &str, attempts: u32) -> RequestOf<CsvToFaultyMongo> {
        self.request(job, 100)
            .retry(
                "process",
                RetrySettings {
                    initial_interval: Duration::from_millis(500),
                    maximum_interval: Duration::from_secs(1),
                    maximum_attempts: attempts,
                    ..RetrySettings::default()
                },
            )
            .call_timeout(Duration::from_secs(2))
    }

    async fn start_job(&self, request: RequestOf<CsvToFaultyMongo>) -> JobHandle<CsvToFaultyMongo> {
        self.jobs
            .start::<CsvToFaultyMongo>(request)
            .await
            .expect("start the job")
    }

    async fn collection(&self, job: &str) -> mongodb::Collection<Document> {
        let client = mongodb::Client::with_uri_str(self.mongo.uri())
            .await
            .unwrap();
        client.database("crash").collection(job)
    }

    /// A probe of how many documents the job's collection holds (none while the server is
    /// down), for [`at_sink_marks`].
    async fn held(
        &self,
        job: &str,
    ) -> impl FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<u64>> + Send>> + use<>
    {
        let coll = self.collection(job).await;
        move || {
            let coll = coll.clone();
            Box::pin(async move { coll.count_documents(doc! {}).await.ok() })
        }
    }

    /// Documents in the job's collection, and distinct `id` values among them.
    async fn counts(&self, job: &str) -> (u64, u64) {
        let coll = self.collection(job).await;
        let docs = coll.count_documents(doc! {}).await.unwrap();
        let distinct = coll.distinct("id", doc! {}).await.unwrap().len() as u64;
        (docs, distinct)
    }

    /// Every valid row present exactly once, and the report agrees.
    async fn check_exact(&self, job: &str, report: &JobReport<CsvOffset>, context: &str) {
        let (docs, distinct) = self.counts(job).await;
        let summary = format!(
            "{context}: collection holds {docs} documents ({distinct} distinct ids); report: {} written, {} already present, {} record errors, status {}",
            report.records_written, report.already_present, report.record_errors, report.status
        );
        println!("{summary}");
        assert_eq!(report.status, JobStatus::Completed, "{summary}");
        assert_eq!(docs, VALID, "every valid row present: {summary}");
        assert_eq!(distinct, VALID, "no row twice: {summary}");
        assert_eq!(
            report.record_errors, BAD_ROWS,
            "record errors counted once: {summary}"
        );
        assert_eq!(
            report.records_written + report.already_present,
            VALID,
            "every valid row counted once: {summary}"
        );
        assert_eq!(report.records_read, ROWS, "{summary}");
    }
}

/// `ROWS` rows `id,name,city`; rows 5,001, 12,002 and 19,003 are ragged.
fn csv() -> String {
    let mut s = String::from("id,name,city\n");
    for i in 0..ROWS {
        if [5_000, 12_001, 19_002].contains(&i) {
            s.push_str(&format!("{i},ragged\n"));
        } else {
            s.push_str(&format!("{i},person {i},\"City, {}\"\n", i % 13));
        }
    }
    s
}

async fn report_within(
    handle: &JobHandle<CsvToFaultyMongo>,
    limit: Duration,
) -> JobReport<CsvOffset> {
    tokio::time::timeout(limit, handle.report())
        .await
        .unwrap_or_else(|_| panic!("job {} did not end within {limit:?}", handle.job_id()))
        .unwrap_or_else(|e| panic!("job {} failed: {e}", handle.job_id()))
}

async fn running(handle: &JobHandle<CsvToFaultyMongo>) -> bool {
    handle
        .progress()
        .await
        .is_ok_and(|p| p.report.status == JobStatus::Running)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_five_times_loses_and_duplicates_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rng = Seeded::from_env();
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    let job = "killed-worker";
    let handle = rig.start_job(rig.request(job, 100)).await;
    // Kill moments are points of progress (seeded), so every kill lands mid-job however fast
    // the machine is: the n-th kill comes once 2,000 + 3,000 n (+ up to 1,500) rows are in
    // the collection.
    let marks: Vec<u64> = (0..5)
        .map(|n| 2_000 + 3_000 * n + rng.millis(0, 1_500).as_millis() as u64)
        .collect();
    let held = rig.held(job).await;
    let kills = at_sink_marks(held, VALID, &marks, Duration::from_secs(120), |n, rows| {
        let mut dead = rig.workers.pop().unwrap();
        println!(
            "killing worker {} (kill {}) at {rows} rows written",
            dead.pid(),
            n + 1
        );
        dead.kill();
        rig.add_worker();
    })
    .await;
    let report = report_within(&handle, Duration::from_secs(120)).await;
    assert_eq!(
        kills, 5,
        "the job ended before its fifth kill: {kills} kills"
    );
    rig.check_exact(job, &report, &format!("{kills} kills"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_one_killed_the_other_finishes() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    rig.add_worker();
    let job = "two-workers";
    let handle = rig.start_job(rig.request(job, 100)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        running(&handle).await,
        "the job is still running when a worker dies"
    );
    rig.workers[0].kill();
    let report = report_within(&handle, Duration::from_secs(120)).await;
    rig.check_exact(job, &report, "one of two workers killed")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_temporal_server_restarted_mid_job() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(true).await;
    rig.add_worker();
    let job = "temporal-restart";
    let handle = rig.start_job(rig.request(job, 100)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(running(&handle).await);
    rig.temporal.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.temporal.start_again().expect("start Temporal again");
    let report = report_within(&handle, Duration::from_secs(180)).await;
    rig.check_exact(job, &report, "Temporal killed and restarted")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_down_for_ten_seconds_is_ridden_out() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    let job = "sink-outage";
    let handle = rig.start_job(rig.request(job, 100)).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(running(&handle).await);
    // Stopped as an operator stops it (SIGTERM). A SIGKILL can lose inserts the server had
    // acknowledged but not yet flushed (its default write concern): see the README.
    rig.mongo.stop();
    tokio::time::sleep(Duration::from_secs(10)).await;
    rig.mongo.start_again().expect("start MongoDB again");
    let report = report_within(&handle, Duration::from_secs(180)).await;
    assert_eq!(report.failed_batches, 0, "{report:?}");
    rig.check_exact(job, &report, "MongoDB down for 10 s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_outage_longer_than_the_retries_is_held_not_counted_as_failed_batches() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    let job = "long-outage";
    // Each group gives up after about 3 s of retries, and one failed batch fails the job:
    // only holding through the outage lets this job finish.
    let request = rig
        .outage_request(job, 3)
        .max_failed_batches(1)
        .outage_budget(Duration::from_secs(120));
    let handle = rig.start_job(request).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(running(&handle).await);
    rig.mongo.stop();
    let down = Instant::now();
    let mut seen_waiting = None;
    while down.elapsed() < Duration::from_secs(20) {
        if let Ok(p) = handle.progress().await
            && let Some(outage) = p.outage
        {
            seen_waiting.get_or_insert(outage);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    rig.mongo.start_again().expect("start MongoDB again");
    let report = report_within(&handle, Duration::from_secs(180)).await;
    let outage = seen_waiting.expect("progress showed the job waiting for the sink");
    println!("progress during the outage: {outage:?}");
    assert!(outage.held_batches > 0, "{outage:?}");
    assert!(outage.until_ms > outage.since_ms, "{outage:?}");
    assert_eq!(report.failed_batches, 0, "{report:?}");
    rig.check_exact(job, &report, "MongoDB down for 20 s, retries of 3 s")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_its_budget_fails_the_job_resumable_from_its_end_offset() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    let job = "outage-budget";
    let request = rig
        .outage_request(job, 2)
        .outage_budget(Duration::from_secs(8));
    let handle = rig.start_job(request).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(running(&handle).await);
    rig.mongo.stop();
    let ended = tokio::time::timeout(Duration::from_secs(90), handle.report())
        .await
        .expect("the job ends once its outage budget is spent");
    let error = ended.expect_err("an outage past its budget fails the job");
    let message = error.to_string();
    assert!(
        message.contains("longer than the outage budget of 8 s"),
        "{message}"
    );
    rig.mongo.start_again().expect("start MongoDB again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_killed_mid_job_loses_no_acknowledged_write() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    // SecantusDB honours `j: true` across a SIGKILL only with its log fsynced at every
    // commit; by default it can lose acknowledged writes (seen: 200 of 19,997).
    rig.mongo = MongoServer::start_durable().expect("start a durable MongoDB-wire server");
    rig.add_worker();
    let job = "mongo-killed";
    let handle = rig.start_job(rig.request(job, 50)).await;
    let held = rig.held(job).await;
    let killed = at_sink_marks(
        held,
        VALID,
        &[6_000],
        Duration::from_secs(120),
        |_, rows| {
            println!("SIGKILL to the MongoDB-wire server at {rows} rows written");
            rig.mongo.kill();
        },
    )
    .await;
    assert_eq!(killed, 1, "the job ended before the kill");
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.mongo.start_again().expect("start MongoDB again");
    let report = report_within(&handle, Duration::from_secs(180)).await;
    // Journaled writes (the sink's default): what the server acknowledged survived its crash.
    rig.check_exact(job, &report, "MongoDB SIGKILLed mid-job")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_batch_fails_alone_and_is_redriven() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    std::fs::write(rig.fault_file(), "poison 7\n").unwrap();
    let job = "poison-batch";
    let request = rig.request(job, 0).retry(
        "process",
        RetrySettings {
            initial_interval: Duration::from_millis(200),
            maximum_interval: Duration::from_millis(400),
            maximum_attempts: 3,
            ..RetrySettings::default()
        },
    );
    let handle = rig.start_job(request).await;
    let report = report_within(&handle, Duration::from_secs(120)).await;
    assert_eq!(
        report.status,
        JobStatus::CompletedWithFailures,
        "{report:?}"
    );
    assert_eq!(report.failed_batches, 1);
    let failed = &report.failed[0];
    assert_eq!(
        (failed.first_batch, failed.batches, failed.records),
        (7, 1, BATCH)
    );
    assert!(failed.message.contains("batch 7 is poisoned"), "{failed:?}");
    let (docs, distinct) = rig.counts(job).await;
    assert_eq!(
        (docs, distinct),
        (VALID - BATCH, VALID - BATCH),
        "all but batch 7"
    );

    std::fs::remove_file(rig.fault_file()).unwrap();
    let redrive = handle.redrive(&rig.jobs).await.expect("start the redrive");
    let recovered = report_within(&redrive, Duration::from_secs(60)).await;
    assert_eq!(recovered.status, JobStatus::Completed, "{recovered:?}");
    assert_eq!(
        recovered.records_written, BATCH,
        "exactly the failed batch, recovered"
    );
    let (docs, distinct) = rig.counts(job).await;
    assert_eq!(
        (docs, distinct),
        (VALID, VALID),
        "every valid row present once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_write_is_abandoned_and_retried() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    std::fs::write(rig.fault_file(), "hang 9\n").unwrap();
    let job = "hung-write";
    let request = rig.request(job, 0).call_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let handle = rig.start_job(request).await;
    let report = report_within(&handle, Duration::from_secs(60)).await;
    println!("hung write: job took {:?}", started.elapsed());
    rig.check_exact(job, &report, "a write hung on its first attempt")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_job_stops_within_seconds_with_exact_counts() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(false).await;
    rig.add_worker();
    let job = "cancelled";
    let handle = rig.start_job(rig.request(job, 100)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(running(&handle).await);
    let asked = Instant::now();
    handle.cancel().await.unwrap();
    let report = report_within(&handle, Duration::from_secs(30)).await;
    let took = asked.elapsed();
    let (docs, _) = rig.counts(job).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (later, distinct) = rig.counts(job).await;
    let summary = format!(
        "cancel took {took:?}; report: {} written, status {}; collection: {docs}, {later} two seconds later",
        report.records_written, report.status
    );
    println!("{summary}");
    assert_eq!(report.status, JobStatus::Cancelled, "{summary}");
    assert!(took < Duration::from_secs(5), "{summary}");
    assert_eq!(
        docs, report.records_written,
        "the report matches the sink: {summary}"
    );
    assert_eq!(later, docs, "nothing written after Cancelled: {summary}");
    assert_eq!(distinct, docs);
    assert!(docs > 0 && docs < VALID, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_job_with_its_worker_killed_three_times_loses_and_duplicates_nothing() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let mut rng = Seeded::from_env();
    let mut rig = Rig::start(false).await;
    // The same rows, split into ten files of 2,000 (the ragged rows with them).
    let parts = rig.dir.path().join("parts");
    std::fs::create_dir_all(&parts).unwrap();
    let text = csv();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_owned();
    let rows: Vec<&str> = lines.collect();
    for (i, chunk) in rows.chunks(2_000).enumerate() {
        let body = format!("{header}\n{}\n", chunk.join("\n"));
        std::fs::write(parts.join(format!("part-{i:02}.csv")), body).unwrap();
    }
    rig.add_worker();
    let job = "sharded-killed";
    // Slower writes than the single-file cases: the job must outlast the kills.
    let mut template = rig.request(job, 250);
    template.source = CsvFile::new(parts.join("*.csv").to_string_lossy());
    let request = ShardedRequest::new(template)
        .max_inputs_per_shard(3)
        .max_concurrent_shards(2);
    let handle = rig
        .jobs
        .start_sharded::<CsvToFaultyMongo>(request)
        .await
        .expect("start the sharded job");
    let mut kills = 0;
    while kills < 3 {
        tokio::time::sleep(rng.millis(700, 1_500)).await;
        match handle.progress().await {
            Ok(p) if p.report.status == JobStatus::Running => {}
            _ => break,
        }
        let mut dead = rig.workers.pop().unwrap();
        println!("killing worker {} (kill {})", dead.pid(), kills + 1);
        dead.kill();
        rig.add_worker();
        kills += 1;
    }
    let report = tokio::time::timeout(Duration::from_secs(180), handle.report())
        .await
        .expect("the sharded job ends within 3 minutes")
        .expect("the sharded job has a report");
    let (docs, distinct) = rig.counts(job).await;
    let summary = format!(
        "{kills} kills: collection holds {docs} documents ({distinct} distinct ids); report: {} shards, {} written, {} already present, {} record errors, status {}",
        report.shards,
        report.records_written,
        report.already_present,
        report.record_errors,
        report.status
    );
    println!("{summary}");
    assert!(kills >= 1, "the job ended before the first kill: {summary}");
    assert_eq!(report.status, JobStatus::Completed, "{summary}");
    assert_eq!(report.shards, 4, "ten files, three to a shard: {summary}");
    assert_eq!(docs, VALID, "every valid row present: {summary}");
    assert_eq!(distinct, VALID, "no row twice: {summary}");
    assert_eq!(report.record_errors, BAD_ROWS, "{summary}");
    assert_eq!(
        report.records_written + report.already_present,
        VALID,
        "every valid row counted once: {summary}"
    );
    assert_eq!(report.records_read, ROWS, "{summary}");
}
