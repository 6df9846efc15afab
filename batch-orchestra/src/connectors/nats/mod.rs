//! NATS JetStream: a sink publishing JSON messages ([`NatsSink`]) and a streaming source
//! reading a durable pull consumer ([`NatsStream`]).
//!
//! The server URL comes from an environment variable on the worker (`NATS_URL` unless the
//! config names another), never from workflow history.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::error::ConnectorError;

mod sink;
mod stream;

pub use sink::{NatsSink, NatsWriter};
pub use stream::{NatsReceipt, NatsStream, NatsStreamReader};

/// Clients by URL, shared by the connectors of a worker: a client reconnects by itself, so a
/// slice after a server restart reuses it.
static CLIENTS: LazyLock<Mutex<HashMap<String, async_nats::Client>>> =
    LazyLock::new(Default::default);

/// The worker's client for the server whose URL is in `url_env`, connecting on first use.
async fn connect(url_env: &str) -> Result<(String, async_nats::Client), ConnectorError> {
    let url = std::env::var(url_env).map_err(|_| {
        ConnectorError::config(format!(
            "the environment variable `{url_env}` is not set on the worker: it must hold the NATS server URL"
        ))
    })?;
    if let Some(client) = CLIENTS.lock().unwrap_or_else(|p| p.into_inner()).get(&url) {
        return Ok((url, client.clone()));
    }
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .name("batch-orchestra")
        .connect(url.as_str())
        .await
        .map_err(|e| ConnectorError::transient(format!("cannot connect to NATS at {url}: {e}")))?;
    CLIENTS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(url.clone(), client.clone());
    Ok((url, client))
}
