//! The subcommands.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use futures::StreamExt;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionStatus, WorkflowListOptions,
};
use temporalio_common::UntypedWorkflow;
use temporalio_common::protos::temporal::api::workflow::v1::WorkflowExecutionInfo;

use super::{Cli, CliError, Command, Exit};
use crate::client::TemporalSettings;
use crate::job::JobClient;
use crate::job::JobStatus;
use crate::ops::view::{describe_progress, describe_report};
use crate::ops::{Control, Operate, Overrides, PipelineList};
use crate::worker::Worker;
use temporalio_common::protos::temporal::api::enums::v1::WorkflowExecutionStatus as RawStatus;

/// How long `pause`, `resume`, `set-parallelism` and `set-rate` wait for the job to confirm.
const CONFIRM_WITHIN: Duration = Duration::from_secs(15);

/// Where the jobs are: the task queue and the Temporal profile.
struct Target {
    task_queue: String,
    profile: Option<String>,
}

pub(super) async fn run(cli: Cli, list: PipelineList) -> Result<Exit, CliError> {
    let ops = &list.operators;
    let command = cli.command;
    let cli_target = Target {
        task_queue: cli.task_queue,
        profile: cli.profile,
    };
    let cli = &cli_target;
    match command {
        Command::Pipelines { json } => {
            for op in ops.iter().filter(|o| !o.sharded()) {
                let (source, sink) = op.connectors();
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"pipeline": op.name(), "source": source, "sink": sink})
                    );
                } else {
                    println!("{:<28} {source} -> {sink}", op.name());
                }
            }
            Ok(Exit::Success)
        }
        Command::Schedule(command) => {
            super::schedule::run(command, ops, &cli.task_queue, cli.profile.as_deref()).await
        }
        #[cfg(feature = "testing")]
        Command::Setup => super::dev::setup(),
        #[cfg(feature = "testing")]
        Command::Dev { postgres, nats } => super::dev::dev(postgres, nats).await,
        #[cfg(feature = "encryption")]
        Command::CodecServer {
            port,
            origins,
            token_env,
        } => super::codec::serve(port, origins, token_env).await,
        Command::Start {
            pipeline,
            job,
            config,
            rate,
            from_cursor,
            to_cursor,
            check,
            watch,
        } => {
            let op = by_name(ops, &pipeline)?;
            // A cursor that is not JSON is taken as a string (`--from-cursor 2026-12-01`).
            let json = |c: String| serde_json::from_str(&c).unwrap_or(serde_json::Value::String(c));
            let overrides = Overrides {
                rate,
                from_cursor: from_cursor.map(json),
                to_cursor: to_cursor.map(json),
            };
            let (request, _) = read_job_file(op, &job, &config, &overrides)?;
            let sharded = if request.kind() == "sharded" {
                ", sharded"
            } else {
                ""
            };
            if check {
                println!(
                    "{}: a valid job of `{}`{sharded}",
                    config.display(),
                    op.name()
                );
                return Ok(Exit::Success);
            }
            let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
            request.start(&jobs).await?;
            println!(
                "started job `{job}` of `{}`{sharded} on task queue `{}`",
                op.name(),
                cli.task_queue
            );
            if watch {
                // A job file with `[shards]` started the pipeline's sharded workflow.
                let (op, _) = find(ops, &jobs, &job).await?;
                watch_job(op, &jobs, &job, Duration::from_secs(1)).await
            } else {
                Ok(Exit::Success)
            }
        }
        Command::Worker {
            metrics,
            shutdown_grace_s,
        } => {
            let client = connect(cli.profile.as_deref()).await?;
            let mut builder = Worker::builder(client, cli.task_queue.clone())
                .shutdown_grace(Duration::from_secs(shutdown_grace_s));
            if let Some(addr) = metrics {
                builder = builder.metrics(addr);
            }
            let names = list.names().join(", ");
            let mut worker = builder
                .pipelines(list)
                .and_then(|b| b.build())
                .map_err(|e| CliError::new(Exit::Error, e.to_string()))?;
            tracing::info!(
                task_queue = %cli.task_queue,
                pipelines = %names,
                metrics = ?worker.metrics_addr().map(|a| format!("http://{a}/metrics")),
                "worker running"
            );
            worker
                .run_until_signal()
                .await
                .map_err(|e| CliError::new(Exit::Error, e.to_string()))?;
            tracing::info!("worker stopped");
            Ok(Exit::Success)
        }
        Command::Watch { job, interval_s } => {
            // The arguments first: a bad interval is a usage error whatever the job.
            let interval = Duration::try_from_secs_f64(interval_s)
                .ok()
                .filter(|d| *d >= Duration::from_millis(100))
                .ok_or_else(|| CliError::new(Exit::Usage, "--interval-s must be at least 0.1"))?;
            let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
            let (op, _) = find(ops, &jobs, &job).await?;
            watch_job(op, &jobs, &job, interval).await
        }
        Command::Status { job, json } => {
            let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
            let (op, status) = find(ops, &jobs, &job).await?;
            if status == WorkflowExecutionStatus::Running {
                let progress = op.progress(&jobs, &job).await.map_err(|e| {
                    CliError::new(
                        Exit::Error,
                        format!(
                            "job `{job}` is running, but its progress query failed ({e}): is a worker running for task queue `{}`?",
                            cli.task_queue
                        ),
                    )
                })?;
                if json {
                    println!("{}", progress.json);
                } else {
                    print!("{}", describe_progress(&progress.summary));
                }
                Ok(Exit::Success)
            } else {
                print_report(op, &jobs, &job, json).await
            }
        }
        Command::Report { job, json } => {
            let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
            let (op, _) = find(ops, &jobs, &job).await?;
            print_report(op, &jobs, &job, json).await
        }
        Command::Errors { job, json } => {
            let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
            let (op, status) = find(ops, &jobs, &job).await?;
            let summary = if status == WorkflowExecutionStatus::Running {
                op.progress(&jobs, &job).await?.summary.report
            } else {
                match op.report(&jobs, &job).await {
                    Ok(report) => report.summary,
                    Err(crate::JobError::Failed {
                        report: Some(report),
                        ..
                    }) => op.failed_report(&report).ok_or_else(|| {
                        CliError::new(Exit::Error, format!("job `{job}` failed without a report"))
                    })?,
                    Err(e) => return Err(e.into()),
                }
            };
            print_quarantine(&summary, json)
        }
        Command::List {
            limit,
            running,
            json,
        } => {
            let client = connect(cli.profile.as_deref()).await?;
            list_jobs(ops, &client, limit, running, json).await
        }
        Command::Pause { job } => steer(cli, ops, &job, Control::Pause).await,
        Command::Resume { job } => steer(cli, ops, &job, Control::Resume).await,
        Command::SetParallelism { job, n } => {
            steer(cli, ops, &job, Control::SetParallelism(n)).await
        }
        Command::SetRate { job, n } => steer(cli, ops, &job, Control::SetRate(n)).await,
        Command::Cancel { job } => {
            let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
            let (op, status) = find(ops, &jobs, &job).await?;
            refuse_unless_running(&job, status, "cancel")?;
            op.control(&jobs, &job, Control::Cancel).await?;
            eprintln!("cancelling job `{job}`: waiting for its activities to stop");
            let report = op.report(&jobs, &job).await?;
            print!("{}", describe_report(&report.summary));
            Ok(Exit::Success)
        }
        Command::Redrive { job, watch } => {
            let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
            let (op, _) = find(ops, &jobs, &job).await?;
            let redrive = op.redrive(&jobs, &job).await?;
            println!("started `{redrive}`: the failed batches of `{job}`");
            if watch {
                watch_job(op, &jobs, &redrive, Duration::from_secs(1)).await
            } else {
                Ok(Exit::Success)
            }
        }
    }
}

async fn connect(profile: Option<&str>) -> Result<Client, CliError> {
    let settings = TemporalSettings::resolve(profile, None)
        .map_err(|e| CliError::new(Exit::Config, e.to_string()))?;
    Ok(settings.connect().await?)
}

pub(super) async fn jobs(task_queue: &str, profile: Option<&str>) -> Result<JobClient, CliError> {
    Ok(JobClient::new(connect(profile).await?, task_queue))
}

/// Reads and checks the job file `config` of job `job`; returns the request and the text.
pub(super) fn read_job_file(
    op: &dyn Operate,
    job: &str,
    config: &std::path::Path,
    overrides: &Overrides,
) -> Result<(Box<dyn crate::ops::Ready>, String), CliError> {
    let text = std::fs::read_to_string(config).map_err(|e| {
        CliError::new(
            Exit::Config,
            format!("cannot read the job file {}: {e}", config.display()),
        )
    })?;
    let request = op
        .parse(job, config, &text, overrides)
        .map_err(|e| CliError::new(Exit::Config, e.0))?;
    Ok((request, text))
}

pub(super) fn by_name<'a>(
    ops: &'a [Box<dyn Operate>],
    name: &str,
) -> Result<&'a dyn Operate, CliError> {
    ops.iter()
        .find(|o| o.name() == name && !o.sharded())
        .map(|o| o.as_ref())
        .ok_or_else(|| {
            let known: Vec<&str> = ops
                .iter()
                .filter(|o| !o.sharded())
                .map(|o| o.name())
                .collect();
            CliError::new(
                Exit::Usage,
                format!(
                    "unknown pipeline `{name}`; this binary knows: {}",
                    known.join(", ")
                ),
            )
        })
}

/// The pipeline of job `job_id` (from its workflow type) and the status of its latest run.
async fn find<'a>(
    ops: &'a [Box<dyn Operate>],
    jobs: &JobClient,
    job_id: &str,
) -> Result<(&'a dyn Operate, WorkflowExecutionStatus), CliError> {
    let info = describe(jobs, job_id)
        .await
        .map_err(|e| match e {
            WorkflowInteractionError::NotFound(_) => CliError::new(
                Exit::Error,
                format!("no job `{job_id}` in this namespace (`list` shows the jobs)"),
            ),
            e => CliError::new(Exit::Error, format!("job `{job_id}`: {e}")),
        })?
        .unwrap_or_default();
    let workflow_type = info.r#type.map(|t| t.name).unwrap_or_default();
    let status = status_of(info.status);
    let op = ops
        .iter()
        .find(|o| o.name() == workflow_type)
        .ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                format!(
                    "job `{job_id}` runs workflow `{workflow_type}`, which this binary does not register (it knows: {})",
                    ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
    Ok((op.as_ref(), status))
}

/// The latest run of workflow `job_id`, as Temporal describes it.
async fn describe(
    jobs: &JobClient,
    job_id: &str,
) -> Result<Option<WorkflowExecutionInfo>, WorkflowInteractionError> {
    let described = jobs
        .temporal()
        .get_workflow_handle::<UntypedWorkflow>(job_id.to_owned())
        .describe(WorkflowDescribeOptions::default())
        .await?;
    Ok(described.raw_description.workflow_execution_info)
}

fn status_of(raw: i32) -> WorkflowExecutionStatus {
    RawStatus::try_from(raw).map_or(WorkflowExecutionStatus::Unknown, Into::into)
}

fn refuse_unless_running(
    job_id: &str,
    status: WorkflowExecutionStatus,
    what: &str,
) -> Result<(), CliError> {
    if status == WorkflowExecutionStatus::Running {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::Error,
            format!(
                "cannot {what} job `{job_id}`: it is not running (it {})",
                ended(status)
            ),
        ))
    }
}

fn ended(status: WorkflowExecutionStatus) -> &'static str {
    match status {
        WorkflowExecutionStatus::Completed => "completed",
        WorkflowExecutionStatus::Failed => "failed",
        WorkflowExecutionStatus::Canceled => "was cancelled",
        WorkflowExecutionStatus::Terminated => "was terminated",
        WorkflowExecutionStatus::TimedOut => "timed out",
        WorkflowExecutionStatus::ContinuedAsNew => "continued as new",
        _ => "is in an unknown state",
    }
}

/// Sends a control signal and waits until the job's progress shows it applied.
async fn steer(
    cli: &Target,
    ops: &[Box<dyn Operate>],
    job_id: &str,
    control: Control,
) -> Result<Exit, CliError> {
    let jobs = jobs(&cli.task_queue, cli.profile.as_deref()).await?;
    let (op, status) = find(ops, &jobs, job_id).await?;
    let what = match control {
        Control::Pause => "pause",
        Control::Resume => "resume",
        Control::SetParallelism(_) => "change the parallelism of",
        Control::SetRate(_) => "change the rate of",
        Control::Cancel => "cancel",
    };
    refuse_unless_running(job_id, status, what)?;
    op.control(&jobs, job_id, control).await?;
    let deadline = Instant::now() + CONFIRM_WITHIN;
    loop {
        let confirmed = match op.progress(&jobs, job_id).await {
            Ok(p) => {
                let p = p.summary;
                let applied = match control {
                    Control::Pause => p.paused,
                    Control::Resume => !p.paused,
                    Control::SetParallelism(n) => p.max_in_flight == n,
                    Control::SetRate(n) => p.max_records_per_s.unwrap_or(0) == n,
                    Control::Cancel => true,
                };
                applied.then_some(p)
            }
            Err(_) => None,
        };
        if let Some(p) = confirmed {
            let said = match control {
                Control::Pause => format!(
                    "job `{job_id}` paused; {} running batch group(s) will finish",
                    p.in_flight
                ),
                Control::Resume => format!("job `{job_id}` resumed"),
                Control::SetParallelism(n) => {
                    format!("job `{job_id}` now runs up to {n} batch group(s) at once")
                }
                Control::SetRate(0) => format!("job `{job_id}` has no rate limit"),
                Control::SetRate(n) => {
                    format!("job `{job_id}` now starts at most {n} records per second")
                }
                Control::Cancel => String::new(),
            };
            println!("{said}");
            return Ok(Exit::Success);
        }
        if Instant::now() > deadline {
            return Err(CliError::new(
                Exit::Error,
                format!(
                    "job `{job_id}` got the request but did not confirm it within {} s: is a worker running for task queue `{}`?",
                    CONFIRM_WITHIN.as_secs(),
                    cli.task_queue
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The exit code of a report's status.
fn outcome(status: JobStatus) -> Exit {
    match status {
        JobStatus::Completed | JobStatus::Running => Exit::Success,
        JobStatus::CompletedWithFailures => Exit::CompletedWithFailures,
        JobStatus::Failed => Exit::JobFailed,
        JobStatus::Cancelled => Exit::Cancelled,
    }
}

async fn print_report(
    op: &dyn Operate,
    jobs: &JobClient,
    job_id: &str,
    json: bool,
) -> Result<Exit, CliError> {
    let report = match op.report(jobs, job_id).await {
        Ok(report) => report,
        Err(e) => return print_failure(op, e, json),
    };
    if json {
        println!("{}", report.json);
    } else {
        print!("{}", describe_report(&report.summary));
    }
    Ok(outcome(report.summary.status))
}

/// A job that failed: its report (counts, failed ranges, where it stopped) with its cause,
/// printed like a report (JSON for scripts), with the failed job's exit code. Other errors
/// are errors.
fn print_failure(op: &dyn Operate, e: crate::JobError, json: bool) -> Result<Exit, CliError> {
    match e {
        crate::JobError::Failed {
            job_id,
            message,
            kind,
            report,
        } => {
            let attached = report.as_deref().and_then(|r| op.failed_report(r));
            let mut report = report.map_or_else(
                || serde_json::json!({ "job_id": job_id, "status": "Failed" }),
                |r| *r,
            );
            report["kind"] = kind.clone().into();
            report["failure"] = message.clone().into();
            if json {
                println!("{report}");
            } else {
                if let Some(mut summary) = attached {
                    summary.kind = Some(kind.clone());
                    summary.failure = Some(message.clone());
                    print!("{}", describe_report(&summary));
                    // A configuration error fails again until the configuration changes.
                    if kind != crate::failure::CONFIG_ERROR_TYPE {
                        println!(
                            "next      `redrive {job_id}` reruns its failed batches and the rest of its input"
                        );
                    }
                } else {
                    println!("job       {job_id}\nstatus    failed ({kind})\nfailure   {message}");
                }
            }
            Ok(Exit::JobFailed)
        }
        e => Err(e.into()),
    }
}

/// Follows a job until it ends: a progress bar on a terminal, nothing otherwise; then the
/// report, and the job's outcome as the exit code.
async fn watch_job(
    op: &dyn Operate,
    jobs: &JobClient,
    job_id: &str,
    interval: Duration,
) -> Result<Exit, CliError> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let spinner = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let counted = ProgressStyle::with_template(
        "{bar:30} {percent:>3}% {elapsed_precise} ETA {eta} {per_sec} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(spinner);
    // The clock and the rate count from the job's start, not from when watching began.
    let since_start = started_ago(op, jobs, job_id).await;
    let bar = match since_start {
        Some(ago) if std::time::Instant::now().checked_sub(ago).is_some() => bar.with_elapsed(ago),
        _ => bar,
    };
    let watching = std::time::Instant::now();
    let mut sized = false;
    loop {
        match find_status(jobs, job_id).await {
            Ok(Some(s)) if s != WorkflowExecutionStatus::Running => break,
            Ok(_) => {}
            Err(e) => {
                bar.finish_and_clear();
                return Err(e);
            }
        }
        match op.progress(jobs, job_id).await {
            Ok(p) => {
                let p = p.summary;
                if let (Some(total), false) = (p.total(), sized) {
                    bar.set_length(total);
                    bar.set_style(counted.clone());
                    sized = true;
                }
                bar.set_position(p.done());
                let line = match (sized, since_start) {
                    // No total for a bar: say how fast it goes since the start.
                    (false, Some(ago)) => {
                        let secs = (ago + watching.elapsed()).as_secs_f64().max(0.001);
                        format!(
                            "{} · {:.0} records/s since the start",
                            p.line(),
                            p.done() as f64 / secs
                        )
                    }
                    _ => p.line(),
                };
                bar.set_message(line);
            }
            Err(e) => bar.set_message(format!("waiting for a worker to answer: {e}")),
        }
        bar.tick();
        tokio::time::sleep(interval).await;
    }
    bar.finish_and_clear();
    print_report(op, jobs, job_id, false).await
}

/// How long the job has run, as its own report says (across continue-as-new), when a worker
/// answers.
async fn started_ago(op: &dyn Operate, jobs: &JobClient, job_id: &str) -> Option<Duration> {
    let progress = op.progress(jobs, job_id).await.ok()?;
    Some(Duration::from_millis(progress.summary.report.elapsed_ms))
}

/// The status of a job's latest run; `None` while the server cannot be asked (an outage: the
/// watch goes on); an error when the job is gone.
async fn find_status(
    jobs: &JobClient,
    job_id: &str,
) -> Result<Option<WorkflowExecutionStatus>, CliError> {
    match describe(jobs, job_id).await {
        Ok(info) => Ok(info.map(|info| status_of(info.status))),
        Err(WorkflowInteractionError::NotFound(_)) => Err(CliError::new(
            Exit::Error,
            format!("job `{job_id}` is gone from this namespace (deleted, or past its retention)"),
        )),
        Err(_) => Ok(None),
    }
}

/// Jobs of the registered pipelines from Temporal's visibility store, newest first.
async fn list_jobs(
    ops: &[Box<dyn Operate>],
    client: &Client,
    limit: usize,
    running: bool,
    json: bool,
) -> Result<Exit, CliError> {
    let types: Vec<String> = ops
        .iter()
        .map(|o| format!("WorkflowType = '{}'", o.name()))
        .collect();
    let mut query = format!("({})", types.join(" OR "));
    if running {
        query.push_str(" AND ExecutionStatus = 'Running'");
    }
    let mut stream =
        client.list_workflows(query, WorkflowListOptions::builder().limit(limit).build());
    if !json {
        println!("{:<32} {:<24} {:<16} STARTED", "JOB", "PIPELINE", "STATUS");
    }
    while let Some(item) = stream.next().await {
        let w = item.map_err(|e| CliError::new(Exit::Error, format!("listing jobs: {e}")))?;
        let started = w
            .start_time()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let started_utc = utc(started);
        let status = format!("{:?}", w.status());
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "job_id": w.id(),
                    "pipeline": w.workflow_type(),
                    "status": status,
                    "started": started_utc,
                })
            );
        } else {
            println!(
                "{:<32} {:<24} {:<16} {}",
                w.id(),
                w.workflow_type(),
                status,
                started_utc
            );
        }
    }
    Ok(Exit::Success)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn utc(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The quarantined records of the job `summary` describes, as lines (or JSON lines).
fn print_quarantine(summary: &crate::job::ReportSummary, json: bool) -> Result<Exit, CliError> {
    let job = &summary.job_id;
    let Some(quarantine) = &summary.quarantine else {
        return Err(CliError::new(
            Exit::Error,
            format!(
                "job `{job}` keeps no quarantine: its {} record errors are counted and sampled in its report. Start jobs with `quarantine = {{ Dir = \"<dir>\" }}` under `[job]` (or `.quarantine(Quarantine::dir(..))`) to keep failed records",
                summary.record_errors
            ),
        ));
    };
    // A redrive writes into the folder of the job it reruns.
    let folder = summary.redrive_of.as_deref().unwrap_or(job);
    let records = crate::quarantine::read_job(quarantine, folder)
        .map_err(|e| CliError::new(Exit::Error, e.to_string()))?;
    for r in &records {
        if json {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
            continue;
        }
        let stage = match r.stage {
            crate::quarantine::Stage::Read => "read",
            crate::quarantine::Stage::Transform => "transform",
            crate::quarantine::Stage::Write => "write",
        };
        // A sharded job's records name their input: `<job>/<input>@<fingerprint>`.
        let input = r
            .input
            .split_once('/')
            .map(|(_, input)| format!("`{}` ", input.rsplit_once('@').map_or(input, |(i, _)| i)))
            .unwrap_or_default();
        println!("{input}{}  {stage}: {}", r.position, r.reason);
        match (&r.raw, &r.raw_base64) {
            (Some(text), _) => println!("    {text}"),
            (None, Some(b64)) => println!("    (not UTF-8, base64) {b64}"),
            (None, None) => println!("    (the source cannot give the record's bytes)"),
        }
    }
    if !json {
        eprintln!(
            "{} quarantined records in {}",
            records.len(),
            quarantine.describe(folder)
        );
    }
    // The folder is the workers': read on another machine (or under another working
    // directory) it may be missing or partial.
    if (records.len() as u64) < summary.quarantined {
        return Err(CliError::new(
            Exit::Error,
            format!(
                "the report of `{job}` counts {} quarantined records, and {} holds {}: run `errors` where the workers write the quarantine",
                summary.quarantined,
                quarantine.describe(folder),
                records.len()
            ),
        ));
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_796_207_921), "2026-12-02T10:38:41Z");
    }
}
