//! The NATS JetStream figures of the benchmark, on a fresh NATS server with a stream per
//! repetition (so the duplicate window of one repetition does not absorb the next):
//! - `nats_direct_rows_per_s`: the CSV parser and the NATS sink in a loop with as many
//!   concurrent writers as the pipeline keeps in flight, no Temporal;
//! - `nats_rows_per_s`: CSV -> NATS through Temporal (`nats_ratio` is this over the first).

use async_nats::jetstream;
use batch_orchestra::cli::recipes::row_to_json;
use batch_orchestra::connectors::csv::CsvFile;
use batch_orchestra::connectors::nats::NatsSink;
use batch_orchestra::testing::{NatsServer, TemporalDevServer};
use batch_orchestra::{SinkConfig, SourceConfig, pipeline};

use crate::{Error, Stat, direct, pipeline_run, stat};

pipeline! {
    /// CSV rows published to NATS JetStream.
    pub BenchToNats { source: CsvFile, transform: row_to_json, sink: NatsSink, workflow: "bench-csv-to-nats" }
}

const URL_ENV: &str = "BATCH_ORCHESTRA_BENCH_NATS_URL";

/// The figures, each over the repetitions.
pub struct Figures {
    pub direct: Stat,
    pub piped: Stat,
}

pub fn run(
    runtime: &tokio::runtime::Runtime,
    server: &TemporalDevServer,
    csv: &str,
    reps: usize,
) -> Result<Figures, Error> {
    let nats = NatsServer::start()?;
    // SAFETY: the only other threads are the runtime's idle workers, which read no
    // environment; the sinks read the variable when they are built, after this.
    unsafe { std::env::set_var(URL_ENV, nats.url()) };
    // The JetStream context spawns a task: make it inside the runtime.
    let js = runtime.block_on(async {
        Ok::<_, Error>(jetstream::new(async_nats::connect(nats.url()).await?))
    })?;
    let (mut direct_rates, mut piped) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let stream = |name: String, subject: String| {
            let js = js.clone();
            async move {
                let _ = js.delete_stream(&name).await;
                js.create_stream(jetstream::stream::Config {
                    name,
                    subjects: vec![subject],
                    ..Default::default()
                })
                .await
                .map(drop)
            }
        };
        runtime.block_on(stream(format!("DIRECT{rep}"), format!("direct.{rep}")))?;
        let subject = format!("direct.{rep}");
        direct_rates.push(runtime.block_on(async {
            let source = CsvFile::new(csv).build().await?;
            let sink = NatsSink::new(subject).url_env(URL_ENV).build().await?;
            direct(source, sink, |row| row_to_json(row).ok(), 1_000, 8).await
        })?);
        runtime.block_on(js.delete_stream(format!("DIRECT{rep}")))?;
        runtime.block_on(stream(format!("PIPED{rep}"), format!("piped.{rep}")))?;
        let (rate, _) = runtime.block_on(pipeline_run::<BenchToNats>(
            server,
            &format!("nats-{rep}"),
            CsvFile::new(csv),
            NatsSink::new(format!("piped.{rep}")).url_env(URL_ENV),
        ))?;
        piped.push(rate);
        runtime.block_on(js.delete_stream(format!("PIPED{rep}")))?;
        println!(
            "rep {rep}: CSV -> NATS direct {:.0}, pipeline {:.0} rows/s",
            direct_rates[rep], piped[rep]
        );
    }
    Ok(Figures {
        direct: stat(direct_rates),
        piped: stat(piped),
    })
}
