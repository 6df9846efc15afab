//! `batch-orchestra codec-server`: decrypts encrypted payloads for Temporal's web UI and CLI.

use super::{CliError, Exit};
use crate::encryption::Keyring;
use crate::encryption::server::{CodecServer, CodecServerOptions};

/// Serves the codec protocol on `127.0.0.1:<port>` with the keys of the environment until
/// Ctrl-C or SIGTERM.
pub(crate) async fn serve(
    port: u16,
    origins: Vec<String>,
    token_env: Option<String>,
) -> Result<Exit, CliError> {
    let keys = Keyring::from_env()
        .map_err(|e| CliError::new(Exit::Config, e.to_string()))?
        .ok_or_else(|| {
            CliError::new(
                Exit::Config,
                format!(
                    "no encryption keys: set {} (or {}) as the workers have it",
                    crate::encryption::KEYS_ENV,
                    crate::encryption::KEY_FILE_ENV
                ),
            )
        })?;
    let token = match token_env {
        Some(name) => Some(std::env::var(&name).map_err(|_| {
            CliError::new(
                Exit::Config,
                format!("--token-env {name}: the variable is not set"),
            )
        })?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| {
            CliError::new(
                Exit::Config,
                format!("cannot listen on 127.0.0.1:{port}: {e}"),
            )
        })?;
    let guarded = token.is_some();
    let server = CodecServer::start(
        listener,
        keys.clone(),
        CodecServerOptions { origins, token },
    );
    println!(
        "codec server at {} (encrypting with key `{}`{}); Ctrl-C stops it",
        server.url(),
        keys.current_id(),
        if guarded {
            ", bearer token required"
        } else {
            ""
        }
    );
    super::wait_for_stop().await;
    Ok(Exit::Success)
}
