//! `batch-orchestra schedule ...`: jobs run on a cron expression or an interval by a Temporal
//! Schedule, from the same job file as `start` with a `[schedule]` table.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Subcommand;

use super::commands::{by_name, jobs, read_job_file, utc};
use super::{CliError, Exit};
use crate::job::schedule::{Overlap, Schedule, ScheduleState};
use crate::job::{JobClient, JobStatus};
use crate::ops::{Operate, Overrides, interval, schedule_table};

/// How long `describe` waits for one run's report before showing it as unknown.
const REPORT_WITHIN: Duration = Duration::from_secs(5);

#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// Create a schedule that starts a job of PIPELINE from a job file at each time due.
    #[command(after_help = "\
Examples:
  batch-orchestra schedule create pg-to-pg --job orders --config orders.toml
  batch-orchestra schedule create csv-to-mongo --job people --config job.toml --every 15m

orders.toml (the job file of `start`, with a [schedule] table):
  [source]
  relation = { Table = \"orders\" }
  key = \"id\"
  incremental = \"updated_at\"
  [sink]
  table = \"orders_copy\"
  key_columns = [\"id\"]
  [job]
  sync = \"orders\"          # each run loads what changed since the last one
  [schedule]
  cron = \"0 * * * *\"        # or: every = \"15m\"
  overlap = \"skip\"          # skip | buffer-one | buffer-all | cancel-other | allow-all

Each run is a job named <job>-<scheduled time>, like orders-2026-12-07T10:00:00Z.")]
    Create {
        /// The pipeline (its workflow name; `pipelines` lists them).
        pipeline: String,
        /// The schedule id; each run's job id is `<id>-<scheduled time>`.
        #[arg(long)]
        job: String,
        /// The job file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// A cron expression in UTC (overrides `schedule.cron`).
        #[arg(long, value_name = "EXPR", conflicts_with = "every")]
        cron: Option<String>,
        /// An interval: 90s, 15m, 1h, 1d (overrides `schedule.every`).
        #[arg(long, value_name = "INTERVAL")]
        every: Option<String>,
        /// When a run is due while one still runs: skip, buffer-one, buffer-all,
        /// cancel-other or allow-all (overrides `schedule.overlap`).
        #[arg(long, value_name = "POLICY")]
        overlap: Option<String>,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// List the schedules.
    #[command(after_help = "Example:\n  batch-orchestra schedule list --json")]
    List {
        /// JSON lines for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Show a schedule: next runs, recent runs with their status and counts, the cursor.
    #[command(after_help = "Example:\n  batch-orchestra schedule describe orders")]
    Describe {
        /// The schedule id.
        id: String,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Stop starting runs (a running one goes on).
    #[command(
        after_help = "Example:\n  batch-orchestra schedule pause orders --note \"source upgrade\""
    )]
    Pause {
        /// The schedule id.
        id: String,
        /// Why, shown by `describe`.
        #[arg(long, default_value = "paused from the command line")]
        note: String,
    },
    /// Start runs again at their times.
    #[command(after_help = "Example:\n  batch-orchestra schedule unpause orders")]
    Unpause {
        /// The schedule id.
        id: String,
        /// Why, shown by `describe`.
        #[arg(long, default_value = "unpaused from the command line")]
        note: String,
    },
    /// Start one run now.
    #[command(after_help = "Example:\n  batch-orchestra schedule trigger orders")]
    Trigger {
        /// The schedule id.
        id: String,
    },
    /// Run the windows that were due between two times, each under the id it would have had.
    #[command(
        after_help = "Example:\n  batch-orchestra schedule backfill orders --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z"
    )]
    Backfill {
        /// The schedule id.
        id: String,
        /// From this time (RFC 3339, UTC: 2026-12-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// To this time.
        #[arg(long, value_name = "TIME")]
        to: String,
    },
    /// Delete a schedule; runs already started go on.
    #[command(after_help = "Example:\n  batch-orchestra schedule delete orders")]
    Delete {
        /// The schedule id.
        id: String,
    },
}

/// Runs a `schedule` subcommand.
pub(super) async fn run(
    command: ScheduleCommand,
    ops: &[Box<dyn Operate>],
    task_queue: &str,
    profile: Option<&str>,
) -> Result<Exit, CliError> {
    let usage = |m: String| CliError::new(Exit::Usage, m);
    match command {
        ScheduleCommand::Create {
            pipeline,
            job,
            config,
            cron,
            every,
            overlap,
            paused,
        } => {
            let op = by_name(ops, &pipeline)?;
            let (request, text) = read_job_file(op, &job, &config, &Overrides::default())?;
            let table = schedule_table(&config, &text)
                .map_err(|e| CliError::new(Exit::Config, e.0))?
                .unwrap_or_default();
            let shown = config.display();
            let mut schedule = match (cron.or(table.cron), every.or(table.every)) {
                (Some(cron), _) => Schedule::cron(cron),
                (None, Some(every)) => Schedule::every(interval(&every).ok_or_else(|| {
                    usage(format!(
                        "`{every}` is not an interval: write a number and s, m, h or d, like 15m"
                    ))
                })?),
                (None, None) => {
                    return Err(usage(format!(
                        "no time to run at: give --cron or --every, or `cron` or `every` under [schedule] in {shown}"
                    )));
                }
            };
            if let Some(policy) = overlap.or(table.overlap) {
                schedule = schedule.overlap(Overlap::parse(&policy).ok_or_else(|| {
                    usage(format!(
                        "unknown overlap policy `{policy}`: use skip, buffer-one, buffer-all, cancel-other or allow-all"
                    ))
                })?);
            }
            if paused {
                schedule = schedule.paused();
            }
            let jobs = jobs(task_queue, profile).await?;
            request.schedule(&jobs, &schedule).await?;
            println!(
                "created schedule `{job}` of `{}` on task queue `{task_queue}`; runs are named {job}-<scheduled time>",
                op.name()
            );
            Ok(Exit::Success)
        }
        ScheduleCommand::List { json } => {
            let jobs = jobs(task_queue, profile).await?;
            let entries = jobs.schedules().await?;
            if !json {
                println!(
                    "{:<28} {:<24} {:<7} NEXT RUN",
                    "SCHEDULE", "PIPELINE", "PAUSED"
                );
            }
            for e in entries {
                let next = e.next_run.map(time).unwrap_or_else(|| "-".into());
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"schedule": e.id, "pipeline": e.workflow, "paused": e.paused, "next_run": next})
                    );
                } else {
                    let paused = if e.paused { "yes" } else { "no" };
                    println!("{:<28} {:<24} {paused:<7} {next}", e.id, e.workflow);
                }
            }
            Ok(Exit::Success)
        }
        ScheduleCommand::Describe { id, json } => {
            let jobs = jobs(task_queue, profile).await?;
            let state = jobs.schedule_of(&id).describe().await?;
            describe(ops, &jobs, &state, json).await;
            Ok(Exit::Success)
        }
        ScheduleCommand::Pause { id, note } => {
            let schedule = jobs(task_queue, profile).await?.schedule_of(&id);
            schedule.pause(&note).await?;
            done(format!("paused schedule `{id}`"))
        }
        ScheduleCommand::Unpause { id, note } => {
            let schedule = jobs(task_queue, profile).await?.schedule_of(&id);
            schedule.unpause(&note).await?;
            done(format!("unpaused schedule `{id}`"))
        }
        ScheduleCommand::Trigger { id } => {
            let schedule = jobs(task_queue, profile).await?.schedule_of(&id);
            schedule.trigger().await?;
            done(format!("triggered a run of schedule `{id}`"))
        }
        ScheduleCommand::Backfill { id, from, to } => {
            let parse = |t: &str| {
                parse_utc(t).ok_or_else(|| {
                    usage(format!(
                        "`{t}` is not a UTC time: write it like 2026-12-01T00:00:00Z"
                    ))
                })
            };
            let (start, end) = (parse(&from)?, parse(&to)?);
            if end <= start {
                return Err(usage(format!("--to {to} is not after --from {from}")));
            }
            let schedule = jobs(task_queue, profile).await?.schedule_of(&id);
            schedule.backfill(start, end).await?;
            done(format!("backfilling schedule `{id}` from {from} to {to}"))
        }
        ScheduleCommand::Delete { id } => {
            let schedule = jobs(task_queue, profile).await?.schedule_of(&id);
            schedule.delete().await?;
            done(format!("deleted schedule `{id}`"))
        }
    }
}

/// Says what was done; the command succeeded.
fn done(what: String) -> Result<Exit, CliError> {
    println!("{what}");
    Ok(Exit::Success)
}

/// One recent run as `describe` shows it.
struct RunShown {
    job_id: String,
    scheduled: String,
    status: String,
    report: Option<serde_json::Value>,
}

/// Prints a schedule with its recent runs' outcomes and the cursor its next run starts from.
async fn describe(ops: &[Box<dyn Operate>], jobs: &JobClient, state: &ScheduleState, json: bool) {
    let op = ops.iter().find(|o| o.name() == state.workflow);
    let mut runs = Vec::new();
    for run in &state.recent_runs {
        let running = state.running.contains(&run.job_id);
        let report = match (op, running) {
            (Some(op), false) => tokio::time::timeout(REPORT_WITHIN, op.report(jobs, &run.job_id))
                .await
                .ok()
                .and_then(Result::ok),
            _ => None,
        };
        let status = match (&report, running) {
            (_, true) => JobStatus::Running.to_string(),
            (Some(r), _) => r.summary.status.to_string(),
            (None, _) => "failed or unknown".to_owned(),
        };
        runs.push(RunShown {
            job_id: run.job_id.clone(),
            scheduled: run.scheduled_at.map(time).unwrap_or_default(),
            status,
            report: report.map(|r| r.json),
        });
    }
    // The cursor the next run starts from: the newest completed run's.
    let cursor = runs.iter().rev().find_map(|r| {
        let report = r.report.as_ref()?;
        (report["status"] == "Completed")
            .then(|| report.get("cursor").cloned())
            .flatten()
            .map(|c| (r.job_id.clone(), c))
    });
    let next: Vec<String> = state.next_runs.iter().copied().map(time).collect();
    if json {
        let runs: Vec<serde_json::Value> = runs
            .iter()
            .map(|r| serde_json::json!({"job_id": r.job_id, "scheduled": r.scheduled, "status": r.status, "report": r.report}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "schedule": state.id,
                "pipeline": state.workflow,
                "paused": state.paused,
                "note": state.note,
                "next_runs": next,
                "runs_started": state.runs_started,
                "runs_skipped": state.runs_skipped,
                "running": state.running,
                "recent_runs": runs,
                "cursor": cursor.as_ref().map(|(_, c)| c),
                "cursor_from_run": cursor.as_ref().map(|(r, _)| r),
            })
        );
        return;
    }
    println!("schedule   {} ({})", state.id, state.workflow);
    let paused = match (&state.paused, &state.note) {
        (true, Some(note)) => format!("yes: {note}"),
        (true, None) => "yes".to_owned(),
        (false, _) => "no".to_owned(),
    };
    println!("paused     {paused}");
    println!(
        "next runs  {}",
        if next.is_empty() {
            "-".to_owned()
        } else {
            next.join(", ")
        }
    );
    println!(
        "runs       {} started, {} skipped (one was still running)",
        state.runs_started, state.runs_skipped
    );
    let completed = runs
        .iter()
        .any(|r| r.status == JobStatus::Completed.to_string());
    match (&cursor, completed) {
        (Some((run, c)), _) => println!("cursor     {c} (from {run})"),
        (None, true) => {
            println!("cursor     - (the runs are not incremental: each reads everything)")
        }
        (None, false) => println!("cursor     - (no completed run among the recent ones)"),
    }
    if runs.is_empty() {
        return;
    }
    println!(
        "\n{:<44} {:<22} {:<24} {:>9} {:>9} {:>9}",
        "RUN", "SCHEDULED", "STATUS", "READ", "WRITTEN", "ERRORS"
    );
    for r in &runs {
        let count = |key: &str| {
            r.report
                .as_ref()
                .and_then(|j| j.get(key))
                .and_then(serde_json::Value::as_u64)
                .map_or("-".to_owned(), |n| n.to_string())
        };
        println!(
            "{:<44} {:<22} {:<24} {:>9} {:>9} {:>9}",
            r.job_id,
            r.scheduled,
            r.status,
            count("records_read"),
            count("records_written"),
            count("record_errors")
        );
    }
}

fn time(t: SystemTime) -> String {
    utc(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// `YYYY-MM-DDTHH:MM:SSZ` as a time.
fn parse_utc(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, clock) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (c.next()??, c.next()??, c.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3_600 + min * 60 + s;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_read_back_as_written() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2026-12-07T10:00:00Z",
            "2024-02-29T23:59:59Z",
        ] {
            assert_eq!(parse_utc(text).map(time).as_deref(), Some(text));
        }
        assert_eq!(parse_utc("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_utc("2026-12-01 00:00:00"), None);
    }
}
