//! The operator's command line (feature `cli`): run workers, start jobs from TOML files,
//! watch, steer and report on them from a shell.
//!
//! The crate ships a ready binary, `batch-orchestra`, with the built-in
//! [recipes](recipes::recipes). Your own pipelines get the same tool in three lines:
//!
//! ```no_run
//! # use batch_orchestra::testing::RangeToCounting as MyPipeline;
//! fn main() -> std::process::ExitCode {
//!     batch_orchestra::cli::main(batch_orchestra::pipelines![MyPipeline])
//! }
//! ```
//!
//! ```text
//! batch-orchestra worker --metrics 127.0.0.1:9464            # serve the pipelines
//! batch-orchestra start csv-to-mongo --job people-1 --config job.toml --watch
//! batch-orchestra status people-1 --json
//! batch-orchestra pause people-1 | resume | set-parallelism people-1 4 | set-rate people-1 5000
//! batch-orchestra cancel people-1
//! batch-orchestra report people-1 --json
//! batch-orchestra redrive people-1 --watch
//! batch-orchestra list
//! batch-orchestra schedule create pg-to-pg --job orders --config orders.toml --every 15m
//! batch-orchestra schedule describe orders
//! ```
//!
//! The Temporal connection is resolved as [`connect_from_env`](crate::connect_from_env) does
//! (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS variables, profiles from
//! the `temporal` CLI's config file; `--profile` picks one). The task queue is
//! `--task-queue`, else `BATCH_ORCHESTRA_TASK_QUEUE`, else `batch-orchestra`.
//!
//! A job file has the source's config under `[source]`, the sink's under `[sink]` and job
//! options under `[job]` (all optional: `batch_size`, `max_in_flight`,
//! `batches_per_activity`, `plan_ahead`, `max_batches_per_run`, `max_record_errors`,
//! `max_error_samples`, `max_failed_batches`, `max_records_per_s`, `activity_timeout_s`,
//! `call_timeout_s`, `heartbeat_timeout_s`, `stuck_after_s`, `start_at`, `quarantine`, `sync`,
//! `from_cursor` and `to_cursor` for incremental runs). A `[schedule]` table (`cron` or `every`, and
//! `overlap`) is read by `schedule create` and ignored by `start`. Secrets stay out of
//! it: connectors name the environment variable that holds a connection string (`uri_env`,
//! `url_env`), read by the worker.
//!
//! Exit codes: see [`Exit`].

#[cfg(feature = "encryption")]
mod codec;
mod commands;
#[cfg(feature = "testing")]
mod dev;
#[cfg(feature = "recipes")]
pub mod recipes;
mod schedule;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "recipes")]
pub use recipes::recipes;

use crate::PipelineList;

/// The command's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// 0: the command did what was asked; a job it waited for completed.
    Success = 0,
    /// 1: something went wrong that is not the job's outcome: Temporal unreachable, no such
    /// job, a request the job refused (it has finished).
    Error = 1,
    /// 2: bad arguments or an unknown pipeline.
    Usage = 2,
    /// 3: a job file that cannot be used (the message gives the file, line and key), or
    /// Temporal connection settings that cannot be used (an unknown profile, a bad config
    /// file).
    Config = 3,
    /// 4: the job failed.
    JobFailed = 4,
    /// 5: the job completed, but some batches failed for good (see `report`, `redrive`).
    CompletedWithFailures = 5,
    /// 6: the job was cancelled (or terminated).
    Cancelled = 6,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (a job waited for completed)
  1  error: Temporal unreachable, no such job, request refused
  2  usage error, unknown pipeline
  3  configuration error: a job file (file, line and key given) or the
     Temporal connection settings (profile, config file)
  4  job failed
  5  job completed with failed batches
  6  job cancelled
130  worker: a second Ctrl-C or SIGTERM stopped it at once";

/// Run workers and operate Batch Orchestra jobs on Temporal.
#[derive(Debug, Parser)]
#[command(name = "batch-orchestra", version, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Task queue of the workers.
    #[arg(
        long,
        global = true,
        env = "BATCH_ORCHESTRA_TASK_QUEUE",
        default_value = "batch-orchestra"
    )]
    task_queue: String,
    /// Profile of the Temporal config file (else TEMPORAL_PROFILE, else `default`).
    #[arg(long, global = true)]
    profile: Option<String>,
    /// Log format on stderr (levels from RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a worker for the registered pipelines until Ctrl-C or SIGTERM.
    #[command(after_help = "\
Example:
  batch-orchestra worker --metrics 127.0.0.1:9464

On Ctrl-C or SIGTERM the worker takes no new work and lets running activities finish
(after --shutdown-grace-s they finish their write in progress and hand back the rest);
a second signal exits at once.")]
    Worker {
        /// Serve Prometheus metrics at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Seconds a shutdown waits for running activities before asking them to stop.
        #[arg(long, default_value_t = 30)]
        shutdown_grace_s: u64,
    },
    /// Start a job of PIPELINE from a TOML job file.
    Start {
        /// The pipeline (its workflow name; `pipelines` lists them).
        pipeline: String,
        /// The job id (also the workflow id).
        #[arg(long)]
        job: String,
        /// The job file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Records per second at most (overrides `job.max_records_per_s`).
        #[arg(long, value_name = "N")]
        rate: Option<u32>,
        /// An incremental run (`job.sync`) from this cursor instead of the last run's, on
        /// top of what changed since: JSON like '{"value": "2026-12-01"}' (overrides
        /// `job.from_cursor`).
        #[arg(long, value_name = "JSON")]
        from_cursor: Option<String>,
        /// A range run (`job.sync`): read from `--from-cursor` (or the start) to this cursor,
        /// once, leaving the sync's cursor where it is: a backfill of a past range (overrides
        /// `job.to_cursor`).
        #[arg(long, value_name = "JSON")]
        to_cursor: Option<String>,
        /// Check the file and stop: start nothing.
        #[arg(long)]
        check: bool,
        /// Follow the job to its end, as `watch` does.
        #[arg(long)]
        watch: bool,
    },
    /// Follow a job with a live progress bar; exits with the job's outcome.
    #[command(after_help = "Example:\n  batch-orchestra watch people-1")]
    Watch {
        /// The job id.
        job: String,
        /// Seconds between updates.
        #[arg(long, default_value_t = 1.0)]
        interval_s: f64,
    },
    /// Show a job's progress (running) or report (finished) once.
    #[command(after_help = "Example:\n  batch-orchestra status people-1 --json")]
    Status {
        /// The job id.
        job: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List the jobs of the registered pipelines, newest first.
    #[command(after_help = "Example:\n  batch-orchestra list --running")]
    List {
        /// How many, at most.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only running jobs.
        #[arg(long)]
        running: bool,
        /// JSON lines for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Stop starting new batches (running ones finish); confirmed by the job.
    #[command(after_help = "Example:\n  batch-orchestra pause people-1")]
    Pause {
        /// The job id.
        job: String,
    },
    /// Let a paused job start batches again; confirmed by the job.
    #[command(after_help = "Example:\n  batch-orchestra resume people-1")]
    Resume {
        /// The job id.
        job: String,
    },
    /// Change how many batches run at once (1 to 1000); confirmed by the job.
    #[command(after_help = "Example:\n  batch-orchestra set-parallelism people-1 4")]
    SetParallelism {
        /// The job id.
        job: String,
        /// Activities in flight.
        #[arg(value_parser = clap::value_parser!(u32).range(1..=1000))]
        n: u32,
    },
    /// Limit a job to N records per second (0 lifts the limit); confirmed by the job.
    #[command(after_help = "Example:\n  batch-orchestra set-rate people-1 5000")]
    SetRate {
        /// The job id.
        job: String,
        /// Records per second.
        n: u32,
    },
    /// Cancel a job and print what it wrote; resume later from its end offset.
    #[command(after_help = "Example:\n  batch-orchestra cancel people-1")]
    Cancel {
        /// The job id.
        job: String,
    },
    /// Wait for a job's final report; exits with its outcome.
    #[command(after_help = "Example:\n  batch-orchestra report people-1 --json")]
    Report {
        /// The job id.
        job: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List a job's quarantined records: position, stage, reason and the record's bytes.
    #[command(
        after_help = "Examples:\n  batch-orchestra errors people-1\n  batch-orchestra errors people-1 --json | jq -r .raw"
    )]
    Errors {
        /// The job id.
        job: String,
        /// One JSON object a line, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Rerun the failed batches of a finished job as `<job>-redrive-<n>`.
    #[command(after_help = "Example:\n  batch-orchestra redrive people-1 --watch")]
    Redrive {
        /// The job id.
        job: String,
        /// Follow the redrive to its end.
        #[arg(long)]
        watch: bool,
    },
    /// Run a job on a cron expression or an interval: create, list, describe, pause,
    /// unpause, trigger, backfill, delete.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// List the registered pipelines with their source and sink.
    Pipelines {
        /// JSON lines for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Install the dev servers (Temporal CLI, NATS, SecantusDB) into ~/.cache/batch-orchestra/tools.
    #[command(after_help = "\
Example:
  batch-orchestra setup

The folder is BATCH_ORCHESTRA_TOOLS when set. The testing kit finds the servers there.")]
    #[cfg(feature = "testing")]
    Setup,
    /// Start a Temporal dev server (with its web UI) and a MongoDB-wire server on loopback.
    #[command(after_help = "\
Example:
  batch-orchestra dev --postgres --nats

Prints the variables to export, then serves until Ctrl-C. Data is kept in temporary
folders and removed at exit.")]
    #[cfg(feature = "testing")]
    Dev {
        /// Also start a PostgreSQL server.
        #[arg(long)]
        postgres: bool,
        /// Also start a NATS server with JetStream.
        #[arg(long)]
        nats: bool,
    },
    /// Serve Temporal's codec protocol so its web UI and CLI show encrypted payloads in clear.
    #[command(after_help = "\
Example:
  BATCH_ORCHESTRA_ENCRYPTION_KEYS=2026-12=... batch-orchestra codec-server --port 8089 \\
    --origin http://127.0.0.1:8233 --token-env CODEC_TOKEN
  temporal workflow show -w people-1 --codec-endpoint http://127.0.0.1:8089 \\
    --codec-auth \"Bearer $CODEC_TOKEN\"

The keys come from BATCH_ORCHESTRA_ENCRYPTION_KEYS or BATCH_ORCHESTRA_ENCRYPTION_KEY_FILE, as
for the workers. It listens on 127.0.0.1 only.")]
    #[cfg(feature = "encryption")]
    CodecServer {
        /// The port on 127.0.0.1.
        #[arg(long, default_value_t = 8089)]
        port: u16,
        /// A browser origin allowed to call it (the web UI's); repeat for more.
        #[arg(long = "origin", value_name = "URL")]
        origins: Vec<String>,
        /// The variable holding the bearer token every call must send.
        #[arg(long, value_name = "VAR")]
        token_env: Option<String>,
    },
}

/// An error for the operator, with the exit code it ends the command with.
#[derive(Debug)]
pub(crate) struct CliError {
    code: Exit,
    message: String,
}

impl CliError {
    fn new(code: Exit, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::JobError> for CliError {
    fn from(e: crate::JobError) -> Self {
        use crate::JobError;
        let code = match &e {
            JobError::Failed { .. } => Exit::JobFailed,
            JobError::Cancelled { .. } | JobError::Terminated { .. } => Exit::Cancelled,
            JobError::InvalidRequest(_) | JobError::Settings(_) => Exit::Config,
            _ => Exit::Error,
        };
        Self::new(code, e.to_string())
    }
}

/// Runs the command line for `pipelines`: parses the arguments, runs the subcommand, and
/// returns the exit code (see [`Exit`]). Call it from your binary's `main`.
pub fn main(pipelines: PipelineList) -> ExitCode {
    let cli = match parse_for(&pipelines) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Error.into();
        }
    };
    match runtime.block_on(commands::run(cli, pipelines)) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {}", e.message);
            e.code.into()
        }
    }
}

/// Parses the arguments with help that names the registered pipelines: the binary's own
/// name, its pipelines, and the connectors whose fields a job file's tables hold.
fn parse_for(pipelines: &PipelineList) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let bin = std::env::args()
        .next()
        .and_then(|a| a.rsplit('/').next().map(str::to_owned))
        .unwrap_or_else(|| "batch-orchestra".to_owned());
    let listed: Vec<String> = pipelines
        .operators
        .iter()
        .filter(|o| !o.sharded())
        .map(|o| {
            let (source, sink) = o.connectors();
            format!(
                "  {:<28} [source]: the `{source}` source's fields, [sink]: the `{sink}` sink's",
                o.name()
            )
        })
        .collect();
    let first = pipelines.names().first().copied().unwrap_or("my-pipeline");
    let start_help = format!(
        "Example:\n  {bin} start {first} --job {first}-1 --config job.toml --watch\n\n\
         The job file has a [source] and a [sink] table with the fields of the pipeline's\n\
         connector configs, and an optional [job] table (batch_size, max_records_per_s, sync,\n\
         ...; see the crate's `cli` docs):\n{}",
        listed.join("\n")
    );
    let command = Cli::command()
        .bin_name(bin)
        .mut_subcommand("start", |c| c.after_help(start_help));
    Cli::from_arg_matches(&command.try_get_matches()?)
}

/// Logs to stderr: `RUST_LOG` levels (default: info for the worker, warnings otherwise), as
/// text or JSON lines.
fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = match cli.command {
        Command::Worker { .. } => "info",
        #[cfg(feature = "testing")]
        Command::Dev { .. } => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match cli.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Waits for Ctrl-C (SIGINT) or SIGTERM: how `dev` and `codec-server` are stopped.
#[cfg(any(feature = "testing", feature = "encryption"))]
async fn wait_for_stop() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
