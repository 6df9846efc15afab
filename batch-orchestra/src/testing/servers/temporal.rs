//! The Temporal dev server.

use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

/// A Temporal dev server, in memory, on free loopback ports.
///
/// By default it is tuned for tests (the transfer-queue read limit raised, one task-queue
/// partition), so a workflow-task round trip takes milliseconds rather than about 50 ms.
pub struct TemporalDevServer {
    process: OwnedProcess,
    port: u16,
    ui_port: u16,
    metrics_port: u16,
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
            metrics_port,
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

    /// The server's own Prometheus metrics, `http://127.0.0.1:<port>/metrics`: among them
    /// the `action` counter Temporal Cloud bills by.
    pub fn metrics_address(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
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
