//! One run of a sharded job's parent: list, start children within the limit, forward
//! controls, add up reports, and end (done, continue-as-new, cancelled or failed).

use std::collections::VecDeque;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_sdk::{
    ActivityExecutionError, ApplicationFailure, ChildWorkflowExecutionError, ChildWorkflowOptions,
    ChildWorkflowStartError, ContinueAsNewOptions, SignalWorkflowOptions,
    StartChildWorkflowExecutionFailedCause, WorkflowContext, WorkflowIdReusePolicy,
    WorkflowTermination,
};

use super::{Controls, ShardedWorkflow};
use crate::batch::{FailedBatch, Redrive, redrive_workflow_id};
use crate::batch::{ReportOf, RequestOf};
use crate::connector::{Shard, ShardPage};
use crate::failure::{ACTIVITY_FAILED_TYPE, CONFIG_ERROR_TYPE, FAILED_BATCH_LIMIT_TYPE};
use crate::failure::{Cause, Stop, root_cause};
use crate::failure::{activity_options, checked_request};
use crate::job::JobStatus;
use crate::job::workflow_ms;
use crate::job::{
    Batch, PAUSE_SIGNAL, RESUME_SIGNAL, Run, SET_MAX_IN_FLIGHT_SIGNAL, SET_RATE_SIGNAL, Signal,
};
use crate::pipeline::{OffsetOf, Pipeline};
use crate::sharded::list::{ListActivity, ListInput};
use crate::sharded::{Grouped, Inputs, RunningShard, ShardReport, ShardStatus, ShardedState};
use crate::sharded::{ShardedReportOf, ShardedRequestOf};

/// What the parent waits for.
enum Event<P: Pipeline> {
    Listed(Box<Result<ShardPage<P::Source>, ActivityExecutionError>>),
    Finished(Started<P>, Ended<P>),
    /// A signal changed the controls, or the job was cancelled.
    Control,
    /// A forwarded signal was delivered (or its child had already ended).
    Forwarded,
}

/// How a child ended.
enum Ended<P: Pipeline> {
    Report(Box<ReportOf<Grouped<P>>>),
    NotStarted(ChildWorkflowStartError),
    Failed(ChildWorkflowExecutionError),
}

/// Failed ranges of a shard, in its group's offsets.
type FailedRanges<P> = Vec<FailedBatch<OffsetOf<Grouped<P>>>>;

/// Inputs waiting for a shard: listed (one each, grouped when started), or a whole shard of a
/// redrive with its failed ranges.
struct Queued<P: Pipeline> {
    inputs: Vec<Shard<P::Source>>,
    failed: Option<(u64, FailedRanges<P>)>,
}

/// A started shard, with its inputs (kept in the report when it needs a redrive).
struct Started<P: Pipeline> {
    index: u64,
    inputs: Vec<Shard<P::Source>>,
    workflow_id: String,
}

/// How the run ended.
enum Next {
    Done,
    ContinueAsNew,
    Cancelled,
}

pub(super) async fn run_sharded<P: Pipeline>(
    ctx: &WorkflowContext<ShardedWorkflow<P>>,
) -> Result<ShardedReportOf<P>, WorkflowTermination> {
    let req = checked_request(ctx.state(|w| w.request.clone()), |r| r.validate())?;
    let mut parent = Parent::start(ctx, req);
    parent.state.report.runs += 1;
    parent.state.report.status = JobStatus::Running;
    parent.publish();
    match parent.drive().await {
        Ok(Next::Done) => {
            parent.touch();
            let r = &parent.state.report;
            parent.state.report.status = if r.shards_needing_redrive() > 0 {
                JobStatus::CompletedWithFailures
            } else {
                JobStatus::Completed
            };
            parent.publish();
            Ok(parent.state.report)
        }
        Ok(Next::ContinueAsNew) => {
            parent.touch();
            parent.publish();
            let (paused, max_in_flight, max_records_per_s, max_concurrent_shards) =
                ctx.state(|w| {
                    (
                        w.paused,
                        w.max_in_flight,
                        w.max_records_per_s,
                        w.max_concurrent_shards,
                    )
                });
            let mut next = parent.req.clone();
            let mut state = parent.state;
            state.paused = paused;
            state.max_in_flight = max_in_flight;
            state.max_records_per_s = max_records_per_s;
            state.max_concurrent_shards = max_concurrent_shards;
            next.state = Some(state);
            match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
                Err(termination) => Err(termination),
                Ok(never) => match never {},
            }
        }
        Ok(Next::Cancelled) => {
            parent.touch();
            parent.state.report.status = JobStatus::Cancelled;
            parent.publish();
            Err(WorkflowTermination::cancelled_with_details(
                parent.state.report,
            ))
        }
        Err(stop) => {
            parent.touch();
            parent.state.report.status = JobStatus::Failed;
            parent.state.report.failure = Some(stop.message.clone());
            parent.publish();
            Err(WorkflowTermination::failed_application(
                ApplicationFailure::builder(stop.message)
                    .type_name(stop.kind.to_owned())
                    .non_retryable(true)
                    .details(parent.state.report.clone())
                    .build(),
            ))
        }
    }
}

/// The parent's state within one run.
struct Parent<'a, P: Pipeline> {
    ctx: &'a WorkflowContext<ShardedWorkflow<P>>,
    req: ShardedRequestOf<P>,
    state: ShardedState<P::Source>,
}

impl<'a, P: Pipeline> Parent<'a, P> {
    fn start(ctx: &'a WorkflowContext<ShardedWorkflow<P>>, req: ShardedRequestOf<P>) -> Self {
        let state = match req.state.clone() {
            Some(carried) => carried,
            None => {
                let mut report =
                    crate::sharded::ShardedReport::new(req.workflow_id(), P::NAMES.workflow);
                report.quarantine = req.job.quarantine.clone();
                if req.redrive.is_some() {
                    report.redrive_of = Some(req.job.job_id.clone());
                }
                ShardedState {
                    report,
                    after: None,
                    next_index: 0,
                    inputs_started: 0,
                    listing_done: false,
                    paused: false,
                    max_in_flight: req.job.max_in_flight,
                    max_records_per_s: req.job.max_records_per_s,
                    max_concurrent_shards: req.max_concurrent_shards,
                    started_at_ms: workflow_ms(ctx),
                }
            }
        };
        Self { ctx, req, state }
    }

    fn touch(&mut self) {
        self.state.report.elapsed_ms =
            workflow_ms(self.ctx).saturating_sub(self.state.started_at_ms);
    }

    fn publish(&self) {
        let report = self.state.report.clone();
        self.ctx.state_mut(|w| w.report = report);
    }

    fn list(&self, after: Option<String>) -> LocalBoxFuture<'a, Event<P>> {
        let input = ListInput {
            source: self.req.job.source.clone(),
            after,
            limit: self.req.list_page,
            call_timeout: self.req.job.call_timeout,
        };
        let policies = &self.req.job.retry_policies;
        let settings = policies.get(P::NAMES.list).or_else(|| policies.get("list"));
        let opts = activity_options(
            settings,
            self.req.job.activity_timeout,
            self.req.job.heartbeat_timeout,
            None,
        );
        self.ctx
            .execute_activity(ListActivity::<P>::new(), input, opts)
            .map(|listed| Event::Listed(Box::new(listed)))
            .boxed_local()
    }

    /// Takes the next shard off the queue: a redrive's shard as it was, or listed inputs
    /// grouped up to `max_inputs_per_shard` and `shard_bytes`.
    fn next_shard(&self, queue: &mut VecDeque<Queued<P>>) -> Option<Queued<P>> {
        let mut first = queue.pop_front()?;
        if first.failed.is_some() {
            return Some(first);
        }
        let bytes = |q: &Queued<P>| q.inputs.iter().map(|s| s.bytes.unwrap_or(0)).sum::<u64>();
        let mut total = bytes(&first);
        while (first.inputs.len() as u32) < self.req.max_inputs_per_shard
            && let Some(next) = queue.front()
            && next.failed.is_none()
            && total + bytes(next) <= self.req.shard_bytes
        {
            total += bytes(next);
            let next = queue.pop_front().expect("the front was just seen");
            first.inputs.extend(next.inputs);
        }
        Some(first)
    }

    /// Starts shard `index` over `queued`'s inputs: the template job over them, with the
    /// controls as they are now.
    fn start_child(
        &self,
        index: u64,
        queued: Queued<P>,
        controls: Controls,
    ) -> (RunningShard, LocalBoxFuture<'a, Event<P>>) {
        let Queued { inputs, failed } = queued;
        let first_key = inputs.first().map_or("", |s| s.key.as_str());
        let mut shard_id = self.req.input_job_id(first_key);
        if inputs.len() > 1 {
            shard_id = format!("{shard_id}+{}", inputs.len() - 1);
        }
        let mut child: RequestOf<Grouped<P>> = self.req.job.retarget(Inputs {
            inputs: inputs.clone(),
        });
        child.max_in_flight = controls.max_in_flight;
        child.max_records_per_s = controls.max_records_per_s;
        // Each shard's report is in the sharded job's report.
        child.snapshot = None;
        let workflow_id = match (self.req.redrive.as_ref(), failed) {
            (Some(redrive), Some((_, ranges))) if !ranges.is_empty() => {
                // A shard's ids are scoped by each input's own fingerprint.
                child.redrive = Some(Redrive {
                    number: redrive.number,
                    ranges,
                    input_fingerprint: None,
                    then: Vec::new(),
                });
                redrive_workflow_id(&shard_id, redrive.number)
            }
            // A shard that failed as a whole runs again under a new id.
            (Some(redrive), _) => redrive_workflow_id(&shard_id, redrive.number),
            (None, _) => shard_id,
        };
        let running = RunningShard {
            index,
            key: first_key.to_owned(),
            inputs: inputs.len() as u32,
            workflow_id: workflow_id.clone(),
            started_at_ms: workflow_ms(self.ctx),
        };
        let options = ChildWorkflowOptions::builder()
            .workflow_id(workflow_id.clone())
            // A completed shard of an earlier run of this job is found, not run again.
            .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
            .static_summary(format!(
                "shard {index} of {}: {first_key} ({} input{})",
                self.req.job.job_id,
                inputs.len(),
                if inputs.len() == 1 { "" } else { "s" }
            ))
            .build();
        let info = Started {
            index,
            inputs,
            workflow_id,
        };
        let start = self
            .ctx
            .start_child_workflow(Run::<Grouped<P>, Batch>::new(), child, options);
        let ctx = self.ctx;
        let fut = async move {
            let ended = match start.await {
                Ok(child) => {
                    // A change forwarded while the child was starting may have found no
                    // workflow yet: tell it again what differs from what it started with.
                    let now = ctx.state(|w| w.controls());
                    if now != controls {
                        let mut sends = Vec::new();
                        forward_to(ctx, &info.workflow_id, controls, now, &mut sends);
                        futures::future::join_all(sends).await;
                    }
                    match child.result().await {
                        Ok(report) => Ended::Report(Box::new(report)),
                        Err(e) => Ended::Failed(e),
                    }
                }
                Err(e) => Ended::NotStarted(e),
            };
            Event::Finished(info, ended)
        }
        .boxed_local();
        (running, fut)
    }

    /// Tells every running child what changed in `to` since `from`.
    fn forward(
        &self,
        running: &[RunningShard],
        from: Controls,
        to: Controls,
        window: &mut Vec<LocalBoxFuture<'a, Event<P>>>,
    ) {
        for shard in running {
            forward_to(self.ctx, &shard.workflow_id, from, to, window);
        }
    }

    async fn drive(&mut self) -> Result<Next, Stop> {
        let ctx = self.ctx;
        let mut queue: VecDeque<Queued<P>> = VecDeque::new();
        // Explicit inputs and redrives need no listing: queue what is left of them.
        let skip = self.state.inputs_started as usize;
        if let Some(redrive) = &self.req.redrive {
            queue.extend(redrive.shards.iter().skip(skip).map(|r| Queued {
                inputs: r.inputs.clone(),
                failed: Some((r.index, r.failed.clone())),
            }));
            self.state.listing_done = true;
        } else if let Some(inputs) = &self.req.inputs {
            queue.extend(inputs.iter().skip(skip).map(|s| Queued {
                inputs: vec![s.clone()],
                failed: None,
            }));
            self.state.listing_done = true;
        }
        let mut listed_after = self.state.after.clone();
        let mut list_pending = false;
        let mut running: Vec<RunningShard> = Vec::new();
        let mut window: Vec<LocalBoxFuture<'a, Event<P>>> = Vec::new();
        let mut control_pending = false;
        let mut told = ctx.state(|w| w.controls());
        let mut started_this_run = 0u32;
        let mut rolling_over = false;
        let mut cancelling = false;
        // Futures in the window that are not waits on the controls or forwarded signals.
        let mut work = 0usize;
        loop {
            if !cancelling && ctx.cancellation_token().is_cancelled() {
                cancelling = true;
            }
            if !rolling_over
                && (started_this_run >= self.req.max_shards_per_run
                    || ctx.continue_as_new_suggested())
            {
                rolling_over = true;
            }
            let (controls, max_concurrent) =
                ctx.state(|w| (w.controls(), w.max_concurrent_shards.max(1)));
            if controls != told && !cancelling {
                self.forward(&running, told, controls, &mut window);
                told = controls;
            }
            if !self.state.listing_done
                && !list_pending
                && !rolling_over
                && !cancelling
                && queue.len()
                    < (max_concurrent as usize)
                        .saturating_mul(self.req.max_inputs_per_shard as usize)
            {
                window.push(self.list(listed_after.clone()));
                list_pending = true;
                work += 1;
            }
            if !controls.paused && !cancelling && !rolling_over {
                while running.len() < max_concurrent as usize
                    && started_this_run < self.req.max_shards_per_run
                {
                    // A shard starts with a full group of inputs, unless the listing is done
                    // or no shard is running: small files share shards, not trickle out.
                    let group_ready = self.state.listing_done
                        || running.is_empty()
                        || queue.len() >= self.req.max_inputs_per_shard as usize;
                    if !group_ready {
                        break;
                    }
                    let Some(queued) = self.next_shard(&mut queue) else {
                        break;
                    };
                    // A redrive's shard keeps its index in the original job.
                    let index = queued
                        .failed
                        .as_ref()
                        .map_or(self.state.next_index, |f| f.0);
                    let last_key = queued.inputs.last().map(|s| s.key.clone());
                    self.state.inputs_started += match &self.req.redrive {
                        Some(_) => 1,
                        None => queued.inputs.len() as u64,
                    };
                    let (started, fut) = self.start_child(index, queued, controls);
                    self.state.next_index += 1;
                    if self.req.inputs.is_none() && self.req.redrive.is_none() {
                        self.state.after = last_key;
                    }
                    running.push(started);
                    started_this_run += 1;
                    window.push(fut);
                    work += 1;
                }
            }
            let (queued, listing_done) = (queue.len() as u64, self.state.listing_done);
            let shown = running.clone();
            ctx.state_mut(|w| {
                w.running = shown;
                w.queued = queued;
                w.listing_done = listing_done && queued == 0;
            });
            if work == 0 {
                if cancelling {
                    return Ok(Next::Cancelled);
                }
                if self.state.listing_done && queue.is_empty() {
                    return Ok(Next::Done);
                }
                if rolling_over {
                    // Listed but not started: the next run lists them again after `after`.
                    if !queue.is_empty() && self.req.inputs.is_none() && self.req.redrive.is_none()
                    {
                        self.state.listing_done = false;
                    }
                    return Ok(Next::ContinueAsNew);
                }
                if !controls.paused {
                    return Err(Stop::new(
                        ACTIVITY_FAILED_TYPE,
                        "the sharded workflow has nothing to wait for (internal error)",
                    ));
                }
            }
            if !control_pending && !cancelling {
                let seen = (told, max_concurrent);
                window.push(
                    ctx.wait_condition(move |w| w.settings() != seen)
                        .map(|_| Event::Control)
                        .boxed_local(),
                );
                control_pending = true;
            }
            let (event, _, rest) = futures::future::select_all(window).await;
            window = rest;
            match event {
                Event::Control => control_pending = false,
                Event::Forwarded => {}
                Event::Listed(result) => {
                    work -= 1;
                    list_pending = false;
                    if cancelling {
                        continue;
                    }
                    let page = (*result).map_err(|e| {
                        let cause = Cause::of(&e);
                        let kind = if cause.kind == CONFIG_ERROR_TYPE {
                            CONFIG_ERROR_TYPE
                        } else {
                            ACTIVITY_FAILED_TYPE
                        };
                        Stop::new(
                            kind,
                            format!(
                                "listing the inputs of `{}`: {}",
                                self.req.job.job_id, cause.message
                            ),
                        )
                    })?;
                    if let Some(last) = page.shards.last() {
                        listed_after = Some(last.key.clone());
                    }
                    queue.extend(page.shards.into_iter().map(|shard| Queued {
                        inputs: vec![shard],
                        failed: None,
                    }));
                    if !page.more {
                        self.state.listing_done = true;
                    }
                }
                Event::Finished(started, ended) => {
                    work -= 1;
                    running.retain(|r| r.workflow_id != started.workflow_id);
                    self.finish(started, ended)?;
                    self.touch();
                    self.publish();
                }
            }
        }
    }

    /// Adds a finished shard to the report; stops the job past `max_failed_shards`.
    fn finish(&mut self, started: Started<P>, ended: Ended<P>) -> Result<(), Stop> {
        let Started {
            index,
            inputs,
            workflow_id,
        } = started;
        let key: Vec<String> = inputs.iter().map(|s| s.key.clone()).collect();
        let (mut shard, samples) = match ended {
            Ended::Report(mut report) => {
                let samples = std::mem::take(&mut report.error_samples);
                (
                    ShardReport::from_job(index, key, workflow_id, *report),
                    samples,
                )
            }
            Ended::NotStarted(ChildWorkflowStartError::StartFailed {
                cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
                ..
            }) => {
                let shard = ShardReport::without_counts(
                    index,
                    key,
                    workflow_id,
                    ShardStatus::AlreadyDone,
                    None,
                );
                (shard, Vec::new())
            }
            Ended::NotStarted(e) => {
                let shard = ShardReport::without_counts(
                    index,
                    key,
                    workflow_id,
                    ShardStatus::Failed,
                    Some(format!("the shard's workflow could not start: {e}")),
                );
                (shard, Vec::new())
            }
            Ended::Failed(e) => match e.failure().map(child_end::<P>) {
                Some(ChildEnd::Cancelled(Some(report))) => {
                    let mut report = *report;
                    let samples = std::mem::take(&mut report.error_samples);
                    report.status = JobStatus::Cancelled;
                    (
                        ShardReport::from_job(index, key, workflow_id, report),
                        samples,
                    )
                }
                Some(ChildEnd::Cancelled(None)) => (
                    ShardReport::without_counts(
                        index,
                        key,
                        workflow_id,
                        ShardStatus::Cancelled,
                        None,
                    ),
                    Vec::new(),
                ),
                Some(ChildEnd::Failed(message)) => (
                    ShardReport::without_counts(
                        index,
                        key,
                        workflow_id,
                        ShardStatus::Failed,
                        Some(message),
                    ),
                    Vec::new(),
                ),
                None => (
                    ShardReport::without_counts(
                        index,
                        key,
                        workflow_id,
                        ShardStatus::Failed,
                        Some(e.to_string()),
                    ),
                    Vec::new(),
                ),
            },
        };
        if shard.needs_redrive() {
            shard.redrive_inputs = inputs;
        }
        let failed_now = shard.needs_redrive();
        let report = &mut self.state.report;
        report.add(
            shard,
            samples,
            self.req.job.max_error_samples,
            self.req.max_shard_reports,
        );
        let max = self.req.max_failed_shards;
        if failed_now && report.shards_needing_redrive() > max {
            let first = report
                .shard_reports
                .iter()
                .find(|s| s.needs_redrive())
                .map(|s| format!("; the first: shard `{}` {}: {}", s.key, s.status, s.cause()))
                .unwrap_or_default();
            return Err(Stop::new(
                FAILED_BATCH_LIMIT_TYPE,
                format!(
                    "{} shards failed or have failed batches, more than max_failed_shards = {max}{first}",
                    report.shards_needing_redrive()
                ),
            ));
        }
        Ok(())
    }
}

/// Signals child `workflow_id` what changed in `to` since `from`; each send resolves to
/// [`Event::Forwarded`] (a child that ended meanwhile just does not hear it).
fn forward_to<'a, P: Pipeline>(
    ctx: &'a WorkflowContext<ShardedWorkflow<P>>,
    workflow_id: &str,
    from: Controls,
    to: Controls,
    sends: &mut Vec<LocalBoxFuture<'a, Event<P>>>,
) {
    type Shard<P> = Run<Grouped<P>, Batch>;
    let child = ctx.external_workflow(workflow_id.to_owned(), None);
    let mut send = |name: &'static str, n: Option<u32>| {
        let sent = match n {
            None => child
                .signal(
                    Signal::<Shard<P>, ()>::named(name),
                    (),
                    SignalWorkflowOptions::default(),
                )
                .boxed_local(),
            Some(n) => child
                .signal(
                    Signal::<Shard<P>, u32>::named(name),
                    n,
                    SignalWorkflowOptions::default(),
                )
                .boxed_local(),
        };
        sends.push(sent.map(|_| Event::Forwarded).boxed_local());
    };
    if from.paused != to.paused {
        send(
            if to.paused {
                PAUSE_SIGNAL
            } else {
                RESUME_SIGNAL
            },
            None,
        );
    }
    if from.max_in_flight != to.max_in_flight {
        send(SET_MAX_IN_FLIGHT_SIGNAL, Some(to.max_in_flight));
    }
    if from.max_records_per_s != to.max_records_per_s {
        send(SET_RATE_SIGNAL, Some(to.max_records_per_s.unwrap_or(0)));
    }
}

/// How a child that did not return a report ended.
enum ChildEnd<P: Pipeline> {
    /// Cancelled, with the report it was cancelled with (if readable).
    Cancelled(Option<Box<ReportOf<Grouped<P>>>>),
    /// Failed, with its original cause.
    Failed(String),
}

fn child_end<P: Pipeline>(failure: &Failure) -> ChildEnd<P> {
    let mut current = Some(failure);
    while let Some(f) = current {
        if let Some(FailureInfo::CanceledFailureInfo(info)) = &f.failure_info {
            let report = info
                .details
                .as_ref()
                .and_then(|d| d.payloads.first())
                .and_then(|p| serde_json::from_slice::<ReportOf<Grouped<P>>>(&p.data).ok());
            return ChildEnd::Cancelled(report.map(Box::new));
        }
        current = f.cause.as_deref();
    }
    let (_, message) = root_cause(failure);
    ChildEnd::Failed(message)
}
