//! `setup` and `dev`: the dev servers, for trying jobs and for the testing kit.

use std::path::Path;

use super::{CliError, Exit};
use crate::testing::{MongoServer, NatsServer, PostgresServer, TemporalDevServer, install};

/// Installs the Temporal CLI, the NATS server and SecantusDB into the tools folder.
pub(super) fn setup() -> Result<Exit, CliError> {
    let tools = install::default_tools_dir().ok_or_else(|| {
        CliError::new(
            Exit::Error,
            "no tools folder: set BATCH_ORCHESTRA_TOOLS (HOME is not set)",
        )
    })?;
    std::fs::create_dir_all(&tools).map_err(|e| {
        CliError::new(
            Exit::Error,
            format!("cannot create {}: {e}", tools.display()),
        )
    })?;
    let failed = |e: String| CliError::new(Exit::Error, e);
    install::temporal(&tools).map_err(failed)?;
    install::nats(&tools).map_err(failed)?;
    install::secantus(&tools, Path::new("cargo")).map_err(failed)?;
    println!(
        "dev servers installed in {}; the testing kit and `batch-orchestra dev` use them",
        tools.display()
    );
    Ok(Exit::Success)
}

/// Starts the dev servers, prints the variables to export, serves until Ctrl-C or SIGTERM,
/// then stops them by process id.
pub(super) async fn dev(postgres: bool, nats: bool) -> Result<Exit, CliError> {
    let failed = |e: crate::testing::TestingError| CliError::new(Exit::Error, e.to_string());
    let temporal = TemporalDevServer::start_with(false, true).map_err(failed)?;
    let mongo = MongoServer::start().map_err(failed)?;
    let pg = if postgres {
        Some(PostgresServer::start().map_err(failed)?)
    } else {
        None
    };
    let nats = if nats {
        Some(NatsServer::start().map_err(failed)?)
    } else {
        None
    };
    println!("export TEMPORAL_ADDRESS={}", temporal.address());
    println!("export MONGODB_URI={}", mongo.uri());
    if let Some(pg) = &pg {
        println!("export POSTGRES_URL='{}'", pg.url());
    }
    if let Some(nats) = &nats {
        println!("export NATS_URL={}", nats.url());
    }
    println!(
        "# Temporal web UI: {}  (Ctrl-C stops the servers)",
        temporal.ui_address()
    );
    tracing::info!(
        temporal = temporal.pid(),
        mongodb = mongo.pid(),
        "dev servers running"
    );
    super::wait_for_stop().await;
    drop(nats);
    drop(pg);
    drop(mongo);
    drop(temporal);
    eprintln!("dev servers stopped");
    Ok(Exit::Success)
}
