//! A PostgreSQL server in a fresh data directory.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

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
