//! Real servers on loopback, started on free ports and stopped by their own process id.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod mongo;
mod nats;
mod postgres;
mod stores;
mod temporal;
mod worker;

pub use mongo::MongoServer;
pub use nats::NatsServer;
pub use postgres::PostgresServer;
pub use stores::{AZURITE_ACCOUNT, AZURITE_KEY, AzuriteServer, FakeGcsServer, S3Server};
pub use temporal::TemporalDevServer;
pub use worker::WorkerProcess;

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
    // One start at a time in this process: a start picks free ports that its server binds a
    // moment later (the Temporal dev server picks more of its own inside), so two starts at
    // once can pick one port, and the server that loses it can die after it first answered.
    let _one_at_a_time = STARTING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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

/// Held while a server starts: see [`retry_on_taken_port`].
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
        // A test that failed because its server died says so, with the server's last words.
        if self.running
            && std::thread::panicking()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            eprintln!(
                "{} (pid {}) had exited with {status} before the test ended: {}",
                self.name,
                self.child.id(),
                self.log_tail()
            );
        }
        self.stop();
    }
}

fn temp_dir() -> Result<tempfile::TempDir, TestingError> {
    tempfile::tempdir().map_err(|e| TestingError(format!("no temporary directory: {e}")))
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
