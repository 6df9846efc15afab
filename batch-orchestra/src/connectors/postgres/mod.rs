//! PostgreSQL: a source ([`PostgresSource`]) that reads a table or a query in key order, and a
//! sink ([`PostgresSink`]) that writes batches with `COPY`, idempotently.
//!
//! Records are JSON objects of column values ([`serde_json::Value`]), the same records the
//! JSON Lines connectors carry: PostgreSQL turns every column type into JSON on the way out
//! and parses the text of every column type on the way in, so any table works without a
//! mapping. Turn rows into your own types in a transform with
//! [`from_value`](crate::connectors::jsonl::from_value), and your types into rows with
//! [`to_row`].
//!
//! The connection string is read by the worker from an environment variable named in the
//! config (`DATABASE_URL` by default), so no secret enters workflow history. TLS is used as
//! the URL's `sslmode` asks (`prefer` by default, as with `psql`), verified against the
//! system's root certificates. Each worker keeps one connection pool per config.

mod sink;
mod source;
mod write_mode;

pub use sink::{ConflictKey, PostgresSink, PostgresWriter};
pub use source::{KeyOffset, PostgresReader, PostgresSource, Relation};
pub use write_mode::WriteMode;

use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;

use crate::error::{ConnectorError, TransformError, redact_values};

/// Connections each worker keeps per config.
const POOL_SIZE: usize = 16;

/// Serializes a value of your own type into a row for the [`PostgresSink`]: a JSON object whose
/// keys are column names. The error names what could not be serialized, never the value.
///
/// ```
/// use batch_orchestra::connectors::postgres::to_row;
///
/// #[derive(serde::Serialize)]
/// struct Person { id: i64, name: String }
///
/// let row = to_row(&Person { id: 7, name: "Ada".into() }).unwrap();
/// assert_eq!(row, serde_json::json!({"id": 7, "name": "Ada"}));
/// ```
pub fn to_row<T: Serialize>(value: &T) -> Result<serde_json::Value, TransformError> {
    serde_json::to_value(value).map_err(|e| TransformError::new(redact_values(&e.to_string())))
}

/// Converts a CSV row to a row for the [`PostgresSink`]: each column's value as text, and empty
/// values as `NULL`, as PostgreSQL's own `COPY ... (FORMAT csv)` reads them. The transform of
/// the CSV -> PostgreSQL recipe.
///
/// ```
/// # #[cfg(feature = "csv")] {
/// use batch_orchestra::connectors::postgres::row_from_csv;
/// use batch_orchestra::connectors::csv::CsvRow;
///
/// let row = CsvRow::new(vec!["id".into(), "age".into()], vec!["7".into(), "".into()]);
/// assert_eq!(row_from_csv(row).unwrap(), serde_json::json!({"id": "7", "age": null}));
/// # }
/// ```
#[cfg(feature = "csv")]
pub fn row_from_csv(
    row: crate::connectors::csv::CsvRow,
) -> Result<serde_json::Value, TransformError> {
    let mut object = serde_json::Map::new();
    for (column, value) in row.iter() {
        let value = if value.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::Value::String(value.to_owned())
        };
        object.insert(column.into_owned(), value);
    }
    Ok(serde_json::Value::Object(object))
}

/// A worker's pool of connections to one database, and how to name it in messages.
#[derive(Clone)]
pub(crate) struct Database {
    pub(crate) pool: Pool,
    /// `host:port/dbname`, without credentials.
    pub(crate) target: Arc<str>,
}

impl Database {
    /// Connects with the connection string held by the environment variable `url_env`, and
    /// checks that a connection can be made.
    pub(crate) async fn connect(url_env: &str) -> Result<Self, ConnectorError> {
        let url = std::env::var(url_env).map_err(|_| {
            ConnectorError::config(format!(
                "the environment variable `{url_env}` is not set on the worker: it must hold the PostgreSQL connection string"
            ))
        })?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| {
            ConnectorError::config(format!(
                "bad PostgreSQL connection string in `{url_env}`: {e}"
            ))
        })?;
        // Fail in seconds when the server is unreachable; the URL may say otherwise.
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("batch-orchestra");
        }
        let target: Arc<str> = describe(&config).into();
        let manager = Manager::from_config(
            config,
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| ConnectorError::config(format!("PostgreSQL at {target}: {e}")))?;
        let db = Self { pool, target };
        drop(db.client().await?);
        Ok(db)
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, ConnectorError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => self.error(&e),
            other => ConnectorError::transient(format!(
                "PostgreSQL at {}: no connection: {other}",
                self.target
            )),
        })
    }

    /// Names the database in an error and classifies it: what a retry cannot fix (bad
    /// credentials, a missing table or column, bad SQL) fails the job; the rest is retried.
    pub(crate) fn error(&self, e: &tokio_postgres::Error) -> ConnectorError {
        classify(&self.target, e)
    }
}

pub(crate) fn classify(target: &str, e: &tokio_postgres::Error) -> ConnectorError {
    let Some(db) = e.as_db_error() else {
        // A closed connection or a network error: worth retrying.
        let detail = std::error::Error::source(e)
            .map(|s| format!("{e}: {s}"))
            .unwrap_or_else(|| e.to_string());
        return ConnectorError::transient(format!("PostgreSQL at {target}: {detail}"));
    };
    let message = format!("PostgreSQL at {target}: {}", db_message(db));
    let code = db.code();
    let config = [
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::UNDEFINED_TABLE,
        SqlState::UNDEFINED_COLUMN,
        SqlState::UNDEFINED_FUNCTION,
        SqlState::UNDEFINED_OBJECT,
        SqlState::INSUFFICIENT_PRIVILEGE,
        SqlState::SYNTAX_ERROR,
        SqlState::INVALID_COLUMN_REFERENCE,
        SqlState::DATATYPE_MISMATCH,
        SqlState::AMBIGUOUS_COLUMN,
        SqlState::INVALID_SCHEMA_NAME,
        SqlState::WRONG_OBJECT_TYPE,
    ];
    if config.contains(code) {
        ConnectorError::config(message)
    } else {
        ConnectorError::transient(message)
    }
}

/// A server message without the values it quotes: record errors travel in history. In a data
/// exception (SQLSTATE class 22) quoted text is a value (`invalid input syntax for type
/// integer: "abc"`, `value "2147483648" is out of range for type integer`) and is dropped;
/// in other messages it names a column, a table or a constraint, and is kept.
pub(crate) fn db_message(db: &tokio_postgres::error::DbError) -> String {
    let message = db.message();
    if !db.code().code().starts_with("22") {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    for (i, part) in message.split('"').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        } else {
            out.push('…');
        }
    }
    match out.strip_suffix(": …") {
        Some(short) => short.to_owned(),
        None => out,
    }
}

/// `host:port/dbname` of a connection config.
fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
                tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    format!("{hosts}/{}", config.get_dbname().unwrap_or("postgres"))
}

/// TLS as the URL's `sslmode` asks, verified against the system's root certificates.
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, ConnectorError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A certificate the store cannot use is skipped, as the platform's own clients do.
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConnectorError::config(format!("TLS for PostgreSQL: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// An identifier quoted for SQL: `my col` becomes `"my col"`.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'it''s'`: a string as an SQL literal.
pub(crate) fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
