//! Batch jobs from the command line: the job file (a sharded job's too, with `[shards]`),
//! and the controls and redrive batch jobs take.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::operate::{ConfigError, Control, Operated, Overrides, Ready, Request};
use crate::batch::BatchProcessingRequest;
use crate::batch::RequestOf;
use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::job::{Batch, JobClient, JobHandle, Throttled};
use crate::pipeline::Pipeline;

/// A job file: the source's and the sink's configs, and the job's options.
///
/// ```toml
/// [source]
/// path = "data/people.csv"
///
/// # Optional, and so is each key.
/// [source.options]
/// delimiter = ";"
///
/// [sink]
/// uri_env = "MONGODB_URI"
/// database = "demo"
/// collection = "people"
///
/// [job]
/// batch_size = 1000
/// max_in_flight = 8
/// max_records_per_s = 5000
///
/// # Optional: one job over every file the source's path matches (a glob).
/// [shards]
/// max_concurrent = 8
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
struct JobFile<S: SourceConfig, K: SinkConfig> {
    source: S,
    sink: K,
    #[serde(default)]
    job: JobOptions<S::Offset>,
    /// Present: the job runs sharded over the inputs the source lists.
    #[serde(default)]
    shards: Option<super::sharded::ShardOptions>,
    /// When `schedule create` runs the job (read there with [`schedule_table`]); parsed here
    /// too so a wrong key is refused with its line, and ignored by `start`.
    #[serde(default)]
    #[allow(dead_code)]
    schedule: Option<ScheduleTable>,
}

/// The `[schedule]` table of a job file: `cron = "0 * * * *"` or `every = "15m"`, and
/// `overlap` (`skip`, the default, `buffer-one`, `buffer-all`, `cancel-other`,
/// `allow-all`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScheduleTable {
    pub cron: Option<String>,
    pub every: Option<String>,
    pub overlap: Option<String>,
}

/// The `[schedule]` table of a job file, if it has one.
pub(crate) fn schedule_table(
    path: &Path,
    text: &str,
) -> Result<Option<ScheduleTable>, ConfigError> {
    #[derive(Deserialize)]
    struct OnlySchedule {
        schedule: Option<ScheduleTable>,
    }
    toml::from_str::<OnlySchedule>(text)
        .map(|f| f.schedule)
        .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.to_string().trim_end())))
}

/// `90s`, `15m`, `1h`, `2d` (or plain seconds) as a duration.
pub(crate) fn interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let unit = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(unit)?))
}

/// The `[job]` table: every key is optional; durations are in seconds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
struct JobOptions<O: crate::connector::Offset> {
    batch_size: Option<u64>,
    max_in_flight: Option<u32>,
    batches_per_activity: Option<u32>,
    max_batches_per_activity: Option<u32>,
    plan_ahead: Option<u32>,
    max_batches_per_run: Option<u32>,
    max_record_errors: Option<u64>,
    max_error_samples: Option<u32>,
    max_failed_batches: Option<u64>,
    max_records_per_s: Option<u32>,
    activity_timeout_s: Option<f64>,
    call_timeout_s: Option<f64>,
    heartbeat_timeout_s: Option<f64>,
    stuck_after_s: Option<f64>,
    outage_budget_s: Option<f64>,
    start_at: Option<O>,
    quarantine: Option<crate::quarantine::Quarantine>,
    /// Makes each run an incremental run of this sync.
    sync: Option<String>,
    /// An incremental run's starting cursor instead of the last run's.
    from_cursor: Option<crate::connector::Cursor>,
    /// A range run's ending cursor: the run reads from `from_cursor` to it, once.
    to_cursor: Option<crate::connector::Cursor>,
}

impl<O: crate::connector::Offset> Default for JobOptions<O> {
    fn default() -> Self {
        Self {
            batch_size: None,
            max_in_flight: None,
            batches_per_activity: None,
            max_batches_per_activity: None,
            plan_ahead: None,
            max_batches_per_run: None,
            max_record_errors: None,
            max_error_samples: None,
            max_failed_batches: None,
            max_records_per_s: None,
            activity_timeout_s: None,
            call_timeout_s: None,
            heartbeat_timeout_s: None,
            stuck_after_s: None,
            outage_budget_s: None,
            start_at: None,
            quarantine: None,
            sync: None,
            from_cursor: None,
            to_cursor: None,
        }
    }
}

/// Parses `text` (the file `path`) as a job file of pipeline `P`. Keys the configs do not
/// know are refused with their line, as are values of the wrong type.
fn parse_job_file<P: Pipeline>(
    path: &Path,
    text: &str,
) -> Result<JobFile<P::Source, P::Sink>, ConfigError> {
    parse_file::<P, _>(path, text)
}

/// Parses `text` (the file `path`) as `F`, a job file of pipeline `P`: unknown keys are
/// refused with their line, values of the wrong type with toml's own message.
pub(crate) fn parse_file<P: Pipeline, F: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<F, ConfigError> {
    let shown = path.display();
    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError(format!("{shown}: {}", e.to_string().trim_end())))?;
    let file: F = serde_ignored::deserialize(deserializer, |key| unknown.push(key.to_string()))
        .map_err(|e| ConfigError(format!("{shown}: {}", e.to_string().trim_end())))?;
    if let Some(key) = unknown.first() {
        let last = key.rsplit('.').next().unwrap_or(key);
        let line = text
            .lines()
            .position(|l| {
                let l = l.trim_start();
                l.strip_prefix(last)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map(|i| format!(", line {}", i + 1))
            .unwrap_or_default();
        return Err(ConfigError(format!(
            "{shown}{line}: unknown key `{key}` for pipeline `{}` (source `{}`, sink `{}`)",
            P::NAMES.workflow,
            <P::Source as SourceConfig>::NAME,
            <P::Sink as SinkConfig>::NAME,
        )));
    }
    Ok(file)
}

fn seconds(path: &Path, key: &str, value: f64) -> Result<Duration, ConfigError> {
    seconds_in(path, "job", key, value)
}

/// `value` seconds of key `table.key`, which must be positive.
pub(crate) fn seconds_in(
    path: &Path,
    table: &str,
    key: &str,
    value: f64,
) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ConfigError(format!(
                "{}: `{table}.{key}` must be a positive number of seconds, not {value}",
                path.display()
            ))
        })
}

impl<P: Pipeline> Operated<P> for Batch {
    fn parse(
        job_id: &str,
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Box<dyn Ready>, ConfigError> {
        let file = parse_job_file::<P>(path, text)?;
        let o = file.job;
        let mut r: RequestOf<P> = BatchProcessingRequest::new(job_id, file.source, file.sink);
        r.batch_size = o.batch_size.unwrap_or(r.batch_size);
        r.max_in_flight = o.max_in_flight.unwrap_or(r.max_in_flight);
        r.batches_per_activity = o.batches_per_activity.unwrap_or(r.batches_per_activity);
        r.max_batches_per_activity = o.max_batches_per_activity.or(r.max_batches_per_activity);
        r.plan_ahead = o.plan_ahead.unwrap_or(r.plan_ahead);
        r.max_batches_per_run = o.max_batches_per_run.unwrap_or(r.max_batches_per_run);
        r.max_record_errors = o.max_record_errors.or(r.max_record_errors);
        r.max_error_samples = o.max_error_samples.unwrap_or(r.max_error_samples);
        r.max_failed_batches = o.max_failed_batches.unwrap_or(r.max_failed_batches);
        r.max_records_per_s = overrides.rate.or(o.max_records_per_s).filter(|n| *n > 0);
        r.start_at = o.start_at;
        r.quarantine = o.quarantine;
        let from = overrides.from_cursor.clone().or(o.from_cursor);
        let to = overrides.to_cursor.clone().or(o.to_cursor);
        match o.sync {
            Some(sync) => {
                r = r.incremental(sync);
                if let Some(from) = from {
                    r = r.incremental_from(from);
                }
                if let Some(to) = to {
                    r = r.incremental_to(to);
                }
            }
            None if from.is_some() || to.is_some() => {
                return Err(ConfigError(format!(
                    "{}: a cursor (`job.from_cursor`, `job.to_cursor`, `--from-cursor`, `--to-cursor`) is for incremental runs: set `job.sync` too",
                    path.display()
                )));
            }
            None => {}
        }
        for (key, value, field) in [
            (
                "activity_timeout_s",
                o.activity_timeout_s,
                &mut r.activity_timeout,
            ),
            ("call_timeout_s", o.call_timeout_s, &mut r.call_timeout),
            (
                "heartbeat_timeout_s",
                o.heartbeat_timeout_s,
                &mut r.heartbeat_timeout,
            ),
            ("stuck_after_s", o.stuck_after_s, &mut r.stuck_after),
            ("outage_budget_s", o.outage_budget_s, &mut r.outage_budget),
        ] {
            if let Some(v) = value {
                *field = seconds(path, key, v)?;
            }
        }
        if let Some(shards) = file.shards {
            if r.incremental.is_some() {
                return Err(ConfigError(format!(
                    "{}: `job.sync` makes runs incremental over one table; a job with `[shards]` reads many inputs",
                    path.display()
                )));
            }
            if r.start_at.is_some() {
                return Err(ConfigError(format!(
                    "{}: `job.start_at` is an offset in one input; a job with `[shards]` has many",
                    path.display()
                )));
            }
            return super::sharded::sharded_request::<P>(path, r, shards);
        }
        r.validate()
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Ok(Request::<P, Batch>::ready(r))
    }

    async fn control(job: &JobHandle<P, Batch>, control: Control) -> Result<(), JobError> {
        throttle(job, control).await
    }

    async fn redrive(job: &JobHandle<P, Batch>, jobs: &JobClient) -> Result<String, JobError> {
        Ok(job.redrive(jobs).await?.job_id().to_owned())
    }
}

/// Sends a change of parallelism or rate to a kind that takes one.
pub(crate) async fn throttle<P: Pipeline, K: Throttled<P>>(
    job: &JobHandle<P, K>,
    control: Control,
) -> Result<(), JobError> {
    match control {
        Control::Pause => job.pause().await,
        Control::Resume => job.resume().await,
        Control::SetParallelism(n) => job.set_max_in_flight(n).await,
        Control::SetRate(n) => job.set_rate(n).await,
        Control::Cancel => job.cancel().await,
    }
}
