//! A worker binary in a child process, for crash tests.

use std::process::Command;

use super::*;

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
