//! The first step of an incremental run: find where the last completed run of its sync ended,
//! and pin this run's window (see [`incremental`](crate::connector::incremental)).
//!
//! The cursor lives in Temporal, in the report of the last run that completed with every
//! batch written: no database beside Temporal and the sink. A run that failed, was cancelled
//! or completed with failed batches is passed over, so the next run starts where the last
//! good one ended and nothing it did not write is skipped.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use temporalio_client::{Client, WorkflowListOptions};
use temporalio_sdk::activities::{ActivityContext, ActivityDefinitions};

use super::Incremental;
use crate::activity::{Activity, PipelineActivities, Work, bounded};
use crate::connector::{Bounds, Cursor, SourceConfig};
use crate::error::ConnectorError;
use crate::job::{Batch, JobClient, JobStatus};
use crate::pipeline::{Pipeline, PipelineNames};

/// The most earlier runs the lookup reads the reports of before it gives up looking for a
/// completed one: past that, the sync starts over (reads everything, which an idempotent
/// sink counts as already present).
const RUNS_LOOKED_AT: usize = 50;

/// Input of the `begin` activity.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BeginInput<S: SourceConfig> {
    /// The source's config, before the window is pinned.
    pub source: S,
    /// The sync and, for a rerun, its starting cursor.
    pub incremental: Incremental,
    /// This run's id, passed over when looking for the last run.
    pub run_id: String,
    /// Longest time the source may take to pin the window.
    pub call_timeout: Duration,
}

/// Output of the `begin` activity: the pinned source and the cursors.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct BeginOutput<S: SourceConfig> {
    /// The source config limited to this run's window.
    pub source: S,
    /// The cursor this run starts from: the one the last completed run left (`None` on a
    /// first run), or a range run's own.
    pub from: Option<Cursor>,
    /// The cursor the next run starts from.
    pub next: Cursor,
    /// The run whose cursor this run starts from, when it was found rather than given.
    pub previous_run: Option<String>,
}

/// The `<workflow>.begin` work.
pub(crate) struct BeginWork;

/// The `<workflow>.begin` activity of an incremental run.
pub(crate) type BeginActivity<P> = Activity<P, BeginWork>;

impl<P: Pipeline> Work<P> for BeginWork {
    type Input = BeginInput<P::Source>;
    type Output = BeginOutput<P::Source>;
    const LABEL: &'static str = "begin";

    fn name(names: &PipelineNames) -> &'static str {
        names.begin
    }

    async fn run(
        me: Arc<PipelineActivities<P>>,
        _ctx: &ActivityContext,
        input: Self::Input,
        _span: &tracing::Span,
    ) -> Result<Self::Output, ConnectorError> {
        let BeginInput {
            source,
            incremental,
            run_id,
            call_timeout,
        } = input;
        let Incremental { sync, from, to } = incremental;
        // A range run has its own start and end: the sync's runs are not looked at.
        let found = match to {
            Some(_) => None,
            None => last_cursor::<P>(&me.client, &sync, &run_id).await?,
        };
        let (previous_run, previous) = found.unzip();
        let starts_at = if to.is_some() {
            from.clone()
        } else {
            previous.clone()
        };
        let bounds = Bounds::after(previous).from(from).to(to);
        let window = bounded(
            call_timeout,
            "pinning the incremental window",
            source.begin_window(bounds),
        )
        .await?;
        Ok(BeginOutput {
            source: window.source,
            from: starts_at,
            next: window.next,
            previous_run,
        })
    }

    fn done(begun: &Self::Output) {
        tracing::info!(
            previous_run = begun.previous_run.as_deref().unwrap_or("none"),
            from = %begun.from.as_ref().map_or("the start".to_owned(), Cursor::to_string),
            next = %begun.next,
            "window pinned"
        );
    }
}

/// Registers the `begin` activity of pipeline `P`.
pub(crate) fn register<P: Pipeline>(
    me: Arc<PipelineActivities<P>>,
    defs: &mut ActivityDefinitions,
) {
    defs.register_activity::<BeginActivity<P>>(me);
}

/// The cursor the last completed run of `sync` left, with that run's id: the newest run (by
/// start time) of pipeline `P` whose id is `<sync>` or starts with `<sync>-`, other than
/// `except`, that completed with every batch written.
pub(crate) async fn last_cursor<P: Pipeline>(
    client: &Client,
    sync: &str,
    except: &str,
) -> Result<Option<(String, Cursor)>, ConnectorError> {
    let query = format!(
        "WorkflowType = '{}' AND (WorkflowId = '{sync}' OR WorkflowId STARTS_WITH '{sync}-') AND ExecutionStatus = 'Completed'",
        P::NAMES.workflow,
    );
    let lookup_failed = |e: &dyn std::fmt::Display| {
        ConnectorError::transient(format!(
            "cannot look up the last run of sync `{sync}` in Temporal: {e}"
        ))
    };
    let mut listed =
        client.list_workflows(query, WorkflowListOptions::builder().limit(1_000).build());
    let mut runs: Vec<(SystemTime, String)> = Vec::new();
    while let Some(item) = listed.next().await {
        let run = item.map_err(|e| lookup_failed(&e))?;
        if run.id() != except {
            runs.push((
                run.start_time().unwrap_or(SystemTime::UNIX_EPOCH),
                run.id().to_owned(),
            ));
        }
    }
    runs.sort_by(|a, b| b.cmp(a));
    let jobs = JobClient::new(client.clone(), "");
    for (_, id) in runs.into_iter().take(RUNS_LOOKED_AT) {
        let report = jobs
            .job_of::<P, Batch>(id.clone())
            .report()
            .await
            .map_err(|e| lookup_failed(&e))?;
        // Another sync's runs can share the prefix (`orders` and `orders-eu`).
        let of_sync = report.sync.as_deref() == Some(sync);
        if of_sync
            && report.status == JobStatus::Completed
            && let Some(cursor) = report.cursor
        {
            return Ok(Some((id, cursor)));
        }
    }
    Ok(None)
}
