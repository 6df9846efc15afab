//! A worker process for the crash tests: serves `CsvToFaultyMongo`, `CsvToSlowPostgres`,
//! `TableToSlowPostgres` on
//! `TASK_QUEUE`, with Temporal at `TEMPORAL_ADDRESS`, MongoDB at `MONGODB_URI` and PostgreSQL
//! at `DATABASE_URL`, and `NatsToMongo` with NATS at `BATCH_ORCHESTRA_TEST_NATS_URL`. A test
//! kills it with SIGKILL.

use std::time::Duration;

use batch_orchestra::{Worker, connect_from_env};
use batch_orchestra_tests::{
    CsvToFaultyMongo, CsvToSlowPostgres, NatsToMongo, TableToSlowPostgres,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let queue = std::env::var("TASK_QUEUE").expect("TASK_QUEUE is set");
    // Ride out a Temporal restart: connect again and serve again.
    loop {
        let client = match connect_from_env().await {
            Ok(client) => client,
            Err(e) => {
                eprintln!("crash-worker: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let built = Worker::builder(client, queue.clone())
            .pipeline::<CsvToFaultyMongo>()
            .and_then(|b| b.pipeline::<CsvToSlowPostgres>())
            .and_then(|b| b.pipeline::<TableToSlowPostgres>())
            .and_then(|b| b.pipeline::<NatsToMongo>())
            .and_then(|b| b.build());
        match built {
            Ok(mut worker) => {
                if let Err(e) = worker.run().await {
                    eprintln!("crash-worker: {e}; starting again");
                }
            }
            Err(e) => eprintln!("crash-worker: {e}; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
