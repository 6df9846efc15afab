//! The `list` activity of a sharded job: a page of the inputs its source lists.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_sdk::activities::{ActivityContext, ActivityDefinitions};

use crate::activity::{Activity, PipelineActivities, Work, bounded};
use crate::connector::{ShardPage, SourceConfig};
use crate::error::ConnectorError;
use crate::pipeline::{Pipeline, PipelineNames};

/// Input of the `list` activity of a sharded job.
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ListInput<S: SourceConfig> {
    /// The config that stands for many inputs.
    pub source: S,
    /// List inputs whose keys come after this one; from the first when `None`.
    pub after: Option<String>,
    /// Inputs to return, at most.
    pub limit: u32,
    /// Longest time the listing call may take.
    pub call_timeout: Duration,
}

/// The `list` work.
pub(crate) enum ListWork {}

/// The `<workflow>.list` activity: lists a page of a sharded job's inputs.
pub(crate) type ListActivity<P> = Activity<P, ListWork>;

impl<P: Pipeline> Work<P> for ListWork {
    type Input = ListInput<P::Source>;
    type Output = ShardPage<P::Source>;
    const LABEL: &'static str = "list";

    fn name(names: &PipelineNames) -> &'static str {
        names.list
    }

    async fn run(
        _me: Arc<PipelineActivities<P>>,
        _ctx: &ActivityContext,
        input: Self::Input,
        _span: &tracing::Span,
    ) -> Result<Self::Output, ConnectorError> {
        let limit = input.limit.max(1) as usize;
        bounded(input.call_timeout, "listing inputs", async {
            P::capabilities()
                .list(&input.source, input.after.clone(), limit)
                .await
        })
        .await
    }

    fn done(page: &Self::Output) {
        tracing::debug!(inputs = page.shards.len(), more = page.more, "listed");
    }
}

/// Registers the `list` activity of pipeline `P`'s sharded jobs.
pub(crate) fn register<P: Pipeline>(
    me: Arc<PipelineActivities<P>>,
    defs: &mut ActivityDefinitions,
) {
    defs.register_activity::<ListActivity<P>>(me);
}
