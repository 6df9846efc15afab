//! What a job costs on Temporal Cloud, which bills by action: the server's own `action`
//! counter (its metrics port) read before and after each job, per million rows.
//!
//! - `actions_per_million_rows_noop`: CSV -> no-op sink (the engine's own cost);
//! - `actions_per_million_rows_mongo`: CSV -> MongoDB;
//! - `actions_per_million_rows_postgres`: CSV -> PostgreSQL;
//! - `action_shares_noop`: the share of each action type in the no-op job.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::mongo::MongoSink;
use batch_orchestra::connectors::noop::NoopSink;
use batch_orchestra::connectors::postgres::PostgresSink;
use batch_orchestra::testing::{MongoServer, PostgresServer, TemporalDevServer};

use crate::stores::BenchToPostgres;
use crate::{BenchToMongo, BenchToNoop, Error, pipeline_run};

const PG_ENV: &str = "BATCH_ORCHESTRA_BENCH_COST_DATABASE_URL";
const MONGO_ENV: &str = "BATCH_ORCHESTRA_BENCH_COST_MONGODB_URI";

/// Actions per million rows of each path, and the no-op job's shares by action type.
pub struct Figures {
    pub noop: f64,
    pub mongo: f64,
    pub postgres: f64,
    pub noop_shares: BTreeMap<String, f64>,
}

/// The server's `action` counter by action type.
fn actions(server: &TemporalDevServer) -> Result<BTreeMap<String, f64>, Error> {
    let address = server.metrics_address();
    let host = address
        .strip_prefix("http://")
        .and_then(|a| a.split('/').next())
        .ok_or("a metrics address")?;
    let mut stream = std::net::TcpStream::connect(host)?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    let mut by_type = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("action{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let kind = labels
            .split("action_type=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("other")
            .to_owned();
        *by_type.entry(kind).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    Ok(by_type)
}

/// Actions taken between `before` and `after`, by type.
fn taken(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    csv: &str,
    rows: u64,
) -> Result<Figures, Error> {
    let per_million = |t: &BTreeMap<String, f64>| t.values().sum::<f64>() * 1e6 / rows as f64;
    let before = actions(server)?;
    runtime.block_on(pipeline_run::<BenchToNoop>(
        server,
        "cost-noop",
        CsvFile::new(csv),
        NoopSink::new(),
    ))?;
    let noop = taken(&before, &actions(server)?);
    if noop.is_empty() {
        return Err("the server's metrics have no `action` counter".into());
    }

    let mongo_server = MongoServer::start()?;
    let pg = PostgresServer::start()?;
    // SAFETY: the only other threads are the runtime's idle workers, which read no
    // environment; the sinks read the variables when they are built, after this.
    unsafe {
        std::env::set_var(MONGO_ENV, mongo_server.uri());
        std::env::set_var(PG_ENV, pg.url());
    }
    let before = actions(server)?;
    runtime.block_on(pipeline_run::<BenchToMongo>(
        server,
        "cost-mongo",
        CsvFile::new(csv),
        MongoSink::new("bench", "cost").uri_env(MONGO_ENV),
    ))?;
    let mongo = taken(&before, &actions(server)?);

    let (db, connection) =
        runtime.block_on(tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls))?;
    runtime.spawn(connection);
    runtime.block_on(db.batch_execute(
        "CREATE TABLE cost (id bigint PRIMARY KEY, first_name text, last_name text, email text,
                            city text, score int, note text)",
    ))?;
    let before = actions(server)?;
    runtime.block_on(pipeline_run::<BenchToPostgres>(
        server,
        "cost-postgres",
        CsvFile::new(csv),
        PostgresSink::new("cost")
            .key_columns(["id"])
            .url_env(PG_ENV),
    ))?;
    let postgres = taken(&before, &actions(server)?);

    let total: f64 = noop.values().sum();
    Ok(Figures {
        noop: per_million(&noop),
        mongo: per_million(&mongo),
        postgres: per_million(&postgres),
        noop_shares: noop.iter().map(|(k, v)| (k.clone(), v / total)).collect(),
    })
}
