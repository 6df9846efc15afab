//! A NATS server with JetStream.

use std::process::Command;
use std::time::Duration;

use super::*;

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
