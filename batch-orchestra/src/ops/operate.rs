//! One operator for every kind of job: what the command does with one pipeline's jobs of one
//! kind, without knowing their types. Each pipeline of a [`PipelineList`](super::PipelineList)
//! brings one [`Operate`] per kind it runs; what differs between kinds (the job file, the
//! controls they take, how they redrive, their JSON) is [`Operated`].

use std::future::Future;
use std::marker::PhantomData;
use std::path::Path;

use futures::future::BoxFuture;

use crate::connector::{SinkConfig, SourceConfig};
use crate::error::JobError;
use crate::job::schedule::Schedule;
use crate::job::{JobClient, JobHandle, JobKind, ProgressSummary, ReportSummary};
use crate::pipeline::Pipeline;

/// A change an operator asks of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Pause,
    Resume,
    SetParallelism(u32),
    SetRate(u32),
    Cancel,
}

/// What the command line sets over a job file: `--rate`, `--from-cursor` and `--to-cursor`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    /// Records per second at most.
    pub rate: Option<u32>,
    /// An incremental run's starting cursor.
    pub from_cursor: Option<crate::connector::Cursor>,
    /// A range run's ending cursor.
    pub to_cursor: Option<crate::connector::Cursor>,
}

/// A job config file that cannot be used, with the file and what is wrong.
#[derive(Debug)]
pub(crate) struct ConfigError(pub String);

/// A checked request, ready to start.
pub(crate) trait Ready: Send {
    /// The kind's name: `batch`, `sharded` or `stream`.
    fn kind(&self) -> &'static str;
    /// Starts the job.
    fn start(self: Box<Self>, jobs: &JobClient) -> BoxFuture<'_, Result<(), JobError>>;
    /// Creates a schedule that starts the job at each time `schedule` names.
    fn schedule<'a>(
        self: Box<Self>,
        jobs: &'a JobClient,
        schedule: &'a Schedule,
    ) -> BoxFuture<'a, Result<(), JobError>>;
}

/// A request of kind `K` of pipeline `P`.
pub(crate) struct Request<P: Pipeline, K: JobKind<P>>(pub K::Request, PhantomData<fn() -> P>);

impl<P: Pipeline, K: JobKind<P>> Request<P, K> {
    /// The request, ready to start.
    pub(crate) fn ready(request: K::Request) -> Box<dyn Ready> {
        Box::new(Self(request, PhantomData))
    }
}

impl<P: Pipeline, K: JobKind<P>> Ready for Request<P, K> {
    fn kind(&self) -> &'static str {
        K::NAME
    }

    fn start(self: Box<Self>, jobs: &JobClient) -> BoxFuture<'_, Result<(), JobError>> {
        Box::pin(async move { jobs.start_kind::<P, K>(self.0).await.map(drop) })
    }

    fn schedule<'a>(
        self: Box<Self>,
        jobs: &'a JobClient,
        schedule: &'a Schedule,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move { jobs.schedule_kind::<P, K>(self.0, schedule).await.map(drop) })
    }
}

/// What the command does differently for each kind of job.
pub(crate) trait Operated<P: Pipeline>: JobKind<P> {
    /// Whether the kind's jobs are found by workflow type only, not listed or started by
    /// pipeline name (a sharded job starts from a batch job file with `[shards]`).
    const FOUND_BY_TYPE: bool = false;

    /// Reads a job file into a checked request.
    fn parse(
        job_id: &str,
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Box<dyn Ready>, ConfigError>;

    /// The report as JSON for scripts.
    fn report_json(report: &Self::Report) -> serde_json::Value {
        serde_json::to_value(report).unwrap_or(serde_json::Value::Null)
    }

    /// The progress as JSON for scripts.
    fn progress_json(progress: &Self::Progress) -> serde_json::Value {
        serde_json::to_value(progress).unwrap_or(serde_json::Value::Null)
    }

    /// Sends a control.
    fn control(
        job: &JobHandle<P, Self>,
        control: Control,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Starts a redrive of a finished job; returns its id.
    fn redrive(
        job: &JobHandle<P, Self>,
        jobs: &JobClient,
    ) -> impl Future<Output = Result<String, JobError>> + Send;
}

/// A report or progress, for people and for scripts.
pub(crate) struct Shown<T> {
    pub summary: T,
    pub json: serde_json::Value,
}

/// One pipeline's operations on its jobs of one kind.
pub(crate) trait Operate: Send + Sync {
    /// The kind's workflow name (`<workflow>.sharded` for sharded jobs).
    fn name(&self) -> &'static str;
    /// Whether its jobs are found by workflow type only, not listed or started by name.
    fn sharded(&self) -> bool;
    /// The source's and the sink's connector names.
    fn connectors(&self) -> (&'static str, &'static str);
    /// Reads a job file into a checked request, ready to start.
    fn parse(
        &self,
        job_id: &str,
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Box<dyn Ready>, ConfigError>;
    /// The live progress of a running job.
    fn progress<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<Shown<ProgressSummary>, JobError>>;
    /// The final report (waits for the job to end).
    fn report<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<Shown<ReportSummary>, JobError>>;
    /// The report a failed job attached to its failure, read as this kind's.
    fn failed_report(&self, report: &serde_json::Value) -> Option<ReportSummary>;
    /// Sends a control.
    fn control<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
        control: Control,
    ) -> BoxFuture<'a, Result<(), JobError>>;
    /// Starts a redrive of a finished job; returns its id.
    fn redrive<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<String, JobError>>;
}

/// The operations on pipeline `P`'s jobs of kind `K`.
pub(crate) fn operator<P: Pipeline, K: Operated<P>>() -> Box<dyn Operate> {
    Box::new(Operator::<P, K>(PhantomData))
}

struct Operator<P, K>(PhantomData<fn() -> (P, K)>);

impl<P: Pipeline, K: Operated<P>> Operate for Operator<P, K> {
    fn name(&self) -> &'static str {
        K::workflow()
    }

    fn sharded(&self) -> bool {
        K::FOUND_BY_TYPE
    }

    fn connectors(&self) -> (&'static str, &'static str) {
        (
            <P::Source as SourceConfig>::NAME,
            <P::Sink as SinkConfig>::NAME,
        )
    }

    fn parse(
        &self,
        job_id: &str,
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Box<dyn Ready>, ConfigError> {
        K::parse(job_id, path, text, overrides)
    }

    fn progress<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<Shown<ProgressSummary>, JobError>> {
        Box::pin(async move {
            let progress = jobs.job_of::<P, K>(job_id).progress().await?;
            Ok(Shown {
                summary: K::progress_summary(&progress),
                json: K::progress_json(&progress),
            })
        })
    }

    fn report<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<Shown<ReportSummary>, JobError>> {
        Box::pin(async move {
            let report = jobs.job_of::<P, K>(job_id).report().await?;
            Ok(Shown {
                summary: K::summary(&report),
                json: K::report_json(&report),
            })
        })
    }

    fn failed_report(&self, report: &serde_json::Value) -> Option<ReportSummary> {
        let report: K::Report = serde_json::from_value(report.clone()).ok()?;
        Some(K::summary(&report))
    }

    fn control<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
        control: Control,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let job = jobs.job_of::<P, K>(job_id);
            match control {
                Control::Pause => job.pause().await,
                Control::Resume => job.resume().await,
                Control::Cancel => job.cancel().await,
                other => K::control(&job, other).await,
            }
        })
    }

    fn redrive<'a>(
        &'a self,
        jobs: &'a JobClient,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<String, JobError>> {
        Box::pin(async move { K::redrive(&jobs.job_of::<P, K>(job_id), jobs).await })
    }
}
