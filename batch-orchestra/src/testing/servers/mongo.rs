//! A MongoDB-wire server (SecantusDB).

use std::process::Command;
use std::time::Duration;

use super::*;

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
