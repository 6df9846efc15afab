//! A testing kit: real servers on loopback for your tests, and a small source and sink with
//! fault injection.
//!
//! [`TemporalDevServer`], [`MongoServer`], [`PostgresServer`] and [`NatsServer`] start real servers on free loopback ports with
//! fresh storage and stop them, by their own process id, when dropped. The binaries are found
//! through environment variables, the tools folder (`batch-orchestra setup` fills it with the
//! Temporal CLI and SecantusDB), or `PATH`:
//!
//! | server   | variable     | tools folder                    | on `PATH`      |
//! |----------|--------------|---------------------------------|----------------|
//! | Temporal | `TEMPORAL_CLI` | `<tools>/venv/bin/temporal`   | `temporal`     |
//! | MongoDB  | `SECANTUSD`  | `<tools>/bin/secantusd-rs`      | `secantusd-rs` |
//! | S3 (moto) | `MOTO_SERVER` | `<tools>/venv/bin/moto_server` | `moto_server` |
//! | Azure (Azurite) | `AZURITE_BLOB` | `<tools>/node/node_modules/.bin/azurite-blob` | `azurite-blob` |
//! | GCS (fake-gcs-server) | `FAKE_GCS_SERVER` | in the PyPI wheel, in `<tools>/venv` | `fake-gcs-server` |
//! | PostgreSQL | `BATCH_ORCHESTRA_POSTGRES_BIN` (a folder) | `/usr/lib/postgresql/<version>/bin` | |
//! | NATS (JetStream) | `NATS_SERVER` | `<tools>/venv/bin/nats-server` | `nats-server` |
//!
//! `<tools>` is `BATCH_ORCHESTRA_TOOLS`, else the nearest `.tools` folder above the current
//! directory, else `~/.cache/batch-orchestra/tools` (see [`tools_dir`]).
//!
//! For crash tests of your own: [`TemporalDevServer::start_persistent`] keeps its database in a
//! file so [`restart`](TemporalDevServer::restart) brings it back on the same port with the same
//! workflows; [`MongoServer::stop`] and [`MongoServer::start_again`] take the MongoDB-wire server
//! away and back on the same port and storage; [`WorkerProcess`] runs a worker binary in a
//! child process that a test can kill with SIGKILL.

mod fakes;
pub mod install;
mod servers;
mod ticks;

pub use fakes::*;
pub use servers::*;
pub use ticks::*;
