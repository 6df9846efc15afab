//! One workflow run of a job: its request, its report so far, and the activity calls.

use futures::FutureExt;
use futures::future::LocalBoxFuture;

use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ActivityOptions, TimerResult,
    WorkflowCancellationToken, WorkflowContext,
};

use super::PipelineWorkflow;
use crate::batch::activities::{
    PlanActivity, PlanInput, PlanOutput, ProcessActivity, ProcessInput, SnapshotActivity,
    SnapshotInput,
};
use crate::batch::begin::{BeginActivity, BeginInput};
use crate::batch::{BatchReport, StoppedAt};
use crate::batch::{ReportOf, RequestOf};
use crate::connector::BatchRange;
use crate::failure::Cause;
use crate::failure::RECORD_ERROR_LIMIT_TYPE;
use crate::failure::Stop;
use crate::failure::activity_options;
use crate::job::InFlight;
use crate::job::workflow_ms;
use crate::pipeline::{OffsetOf, Pipeline};

/// Marks runs whose `process` activities carry ids naming their first batch.
const NAMED_ACTIVITIES_PATCH: &str = "process-activity-ids";
/// Failure type of a request the workflow cannot run.
/// Attempts for a batch rerun alone after its group failed: the group used the full retry
/// budget already, so one more try tells a poison batch from a passing fault.
pub(super) const ISOLATED_ATTEMPTS: u32 = 2;

/// What the window waits for: a plan or a processed group of batches.
pub(super) enum Event<O: crate::connector::Offset> {
    Planned(Result<PlanOutput<O>, ActivityExecutionError>),
    Processed(Dispatched<O>, Result<BatchReport, ActivityExecutionError>),
    /// The rate limit's timer fired: another group may start.
    Paced(TimerResult),
    /// During an outage, the wait before the next probe ended.
    Probe(TimerResult),
}

/// A group of batches handed to one `process` activity.
pub(super) struct Dispatched<O: crate::connector::Offset> {
    /// Frontier sequence numbers of the batches, in order.
    pub seqs: Vec<u64>,
    pub group: Vec<BatchRange<O>>,
    /// Rerun alone after its group failed.
    pub isolated: bool,
    /// Which dispatch of the run it was, to find it among the running ones.
    pub slot: u64,
}

/// The job's state within one workflow run.
pub(super) struct Job<'a, P: Pipeline> {
    pub ctx: &'a WorkflowContext<PipelineWorkflow<P>>,
    pub req: RequestOf<P>,
    pub report: ReportOf<P>,
    pub started_at_ms: u64,
    /// Ordinal of the record after the last dispatched batch.
    pub next_record: u64,
    /// Number of the batch after the last dispatched one.
    pub next_batch: u64,
    pub throttle_mark: u64,
    /// Where the run plans from.
    pub cursor: Option<OffsetOf<P>>,
    /// For a redrive: the range being rerun.
    pub segment: u32,
    /// Activities scheduled in this run, for activity ids.
    pub scheduled: u64,
    /// A new job before its first plan: that plan's input fingerprint becomes the job's
    /// record-id scope. Resumed runs and redrives keep the fingerprint they carry.
    pub takes_fingerprint: bool,
    /// How far the job got: the first batch not done (processed or recorded failed).
    pub stopped_at: StoppedAt<OffsetOf<P>>,
    /// Cancels the `process` activities when the job fails (a child of the workflow's
    /// token, so a cancelled job cancels them too); `None` in runs recorded before.
    pub activity_token: Option<WorkflowCancellationToken>,
}

impl<'a, P: Pipeline> Job<'a, P> {
    fn options(&self, name: &str, kind: &str) -> ActivityOptions {
        let policies = &self.req.retry_policies;
        let settings = policies.get(name).or_else(|| policies.get(kind));
        activity_options(
            settings,
            self.req.activity_timeout,
            self.req.heartbeat_timeout,
            None,
        )
    }

    /// Moves the run's cursor past `range`, the latest planned batch handed to an activity.
    pub fn dispatched_up_to(&mut self, segment: u32, range: &BatchRange<OffsetOf<P>>) {
        self.segment = segment;
        self.cursor = Some(range.end.clone());
        self.next_record = range.first_record + range.records;
        self.next_batch = range.index + 1;
    }

    /// The first step of an incremental run: the `begin` activity finds the last run's
    /// cursor and pins the window, which the run then reads (and carries, so later runs of
    /// the job after continue-as-new read the same window).
    pub async fn begin(&mut self) -> Result<(), Stop> {
        let Some(incremental) = self.req.incremental.clone() else {
            return Ok(());
        };
        self.report.sync = Some(incremental.sync.clone());
        let range = incremental.to.is_some();
        let input = BeginInput {
            source: self.req.source.clone(),
            incremental,
            run_id: self.req.job_id.clone(),
            call_timeout: self.req.call_timeout,
        };
        let opts = self.options(P::NAMES.begin, "begin");
        let begun = self
            .ctx
            .execute_activity(BeginActivity::<P>::new(), input, opts)
            .await
            .map_err(|e| Cause::of(&e).stop("pinning the incremental window"))?;
        self.req.source = begun.source;
        self.report.cursor_from = begun.from;
        if range {
            self.report.cursor_to = Some(begun.next);
        } else {
            self.report.cursor = Some(begun.next);
        }
        self.publish(&[]);
        Ok(())
    }

    pub fn now_ms(&self) -> u64 {
        workflow_ms(self.ctx)
    }

    pub fn plan(
        &self,
        from: Option<OffsetOf<P>>,
        max_batches: u32,
    ) -> LocalBoxFuture<'a, Event<OffsetOf<P>>> {
        let input = PlanInput {
            source: self.req.source.clone(),
            from,
            batch_size: self.req.batch_size,
            max_batches,
            call_timeout: self.req.call_timeout,
        };
        let opts = self.options(P::NAMES.plan, "plan");
        self.ctx
            .execute_activity(PlanActivity::<P>::new(), input, opts)
            .map(Event::Planned)
            .boxed_local()
    }

    /// Starts a `process` activity for `group`. It waits for a cancel to be acknowledged, so a
    /// cancelled job ends only after its activities stopped writing.
    pub fn process(
        &mut self,
        seqs: Vec<u64>,
        group: Vec<BatchRange<OffsetOf<P>>>,
        isolated: bool,
    ) -> (u64, InFlight, LocalBoxFuture<'a, Event<OffsetOf<P>>>) {
        let first = &group[0];
        // Runs recorded before activities were named keep the SDK's numbering on replay.
        let activity_id = self
            .ctx
            .patched(NAMED_ACTIVITIES_PATCH)
            .then(|| format!("process-{}-{}", first.index, self.scheduled));
        self.scheduled += 1;
        let running = InFlight {
            activity_id: activity_id.clone().unwrap_or_default(),
            first_batch: first.index,
            batches: group.len() as u64,
            first_record: first.first_record,
            records: group.iter().map(|b| b.records).sum(),
            scheduled_at_ms: self.now_ms(),
            age_ms: 0,
            attempt: None,
            stuck: false,
        };
        let input = ProcessInput {
            job_id: self.req.job_id.clone(),
            source: self.req.source.clone(),
            sink: self.req.sink.clone(),
            batches: group.clone(),
            max_error_samples: self.req.max_error_samples,
            call_timeout: self.req.call_timeout,
            input_fingerprint: self.report.input_fingerprint.clone(),
            quarantine: self.req.quarantine.clone(),
        };
        let policies = &self.req.retry_policies;
        let mut settings = policies
            .get(P::NAMES.process)
            .or_else(|| policies.get("process"))
            .cloned()
            .unwrap_or_default();
        if isolated
            && (settings.maximum_attempts == 0 || settings.maximum_attempts > ISOLATED_ATTEMPTS)
        {
            settings.maximum_attempts = ISOLATED_ATTEMPTS;
        }
        let mut opts = activity_options(
            Some(&settings),
            self.req.activity_timeout,
            self.req.heartbeat_timeout,
            activity_id.clone(),
        );
        opts.cancellation_type = ActivityCancellationType::WaitCancellationCompleted;
        opts.cancellation_token = self.activity_token.clone();
        let dispatched = Dispatched {
            seqs,
            group,
            isolated,
            slot: self.scheduled,
        };
        let fut = self
            .ctx
            .execute_activity(ProcessActivity::<P>::new(), input, opts)
            .map(move |result| Event::Processed(dispatched, result))
            .boxed_local();
        (self.scheduled, running, fut)
    }

    pub fn touch(&mut self) {
        self.report.elapsed_ms = workflow_ms(self.ctx).saturating_sub(self.started_at_ms);
    }

    /// Shares the report and the running activities with the `progress` query.
    pub fn publish(&self, running: &[(u64, InFlight)]) {
        let report = self.report.clone();
        let running: Vec<InFlight> = running.iter().map(|(_, r)| r.clone()).collect();
        self.ctx.state_mut(|w| {
            w.report = report;
            w.in_flight = running.len() as u32;
            w.running = running;
        });
    }

    /// Adds one activity's counts to the report; stops past `max_record_errors`.
    pub fn add(&mut self, batches: u64, batch: BatchReport) -> Result<(), Stop> {
        let r = &mut self.report;
        r.records_read += batch.records_read;
        r.records_written += batch.records_written;
        r.already_present += batch.already_present;
        r.superseded += batch.superseded;
        r.quarantined += batch.quarantined;
        r.records_filtered += batch.records_filtered;
        r.record_errors += batch.record_errors;
        r.batches += batches;
        // Keep the earliest errors by position, whatever order batches finish in.
        r.error_samples.extend(batch.error_samples);
        r.error_samples.sort_by_key(|e| e.position.record);
        r.error_samples
            .truncate(self.req.max_error_samples as usize);
        match self.req.max_record_errors {
            Some(max) if r.record_errors > max => {
                let first = r
                    .error_samples
                    .first()
                    .map(|e| format!("; the first: {e}"))
                    .unwrap_or_default();
                Err(Stop::new(
                    RECORD_ERROR_LIMIT_TYPE,
                    format!(
                        "{} record errors, more than max_record_errors = {max}{first}",
                        r.record_errors
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Saves the report when the request asks for it. It runs even after the job was
    /// cancelled (a token of its own), so a cancelled job's report is saved too.
    pub async fn snapshot(&self) -> Result<(), Stop> {
        let Some(target) = self.req.snapshot.clone() else {
            return Ok(());
        };
        let input = SnapshotInput {
            target,
            name: self.req.workflow_id(),
            report: self.report.clone(),
        };
        let policies = &self.req.retry_policies;
        let settings = policies
            .get(P::NAMES.snapshot)
            .or_else(|| policies.get("snapshot"));
        let mut opts = activity_options(
            settings,
            self.req.activity_timeout,
            self.req.heartbeat_timeout,
            None,
        );
        opts.cancellation_token = Some(WorkflowCancellationToken::new());
        self.ctx
            .execute_activity(SnapshotActivity::<P>::new(), input, opts)
            .await
            .map_err(|e| crate::failure::Cause::of(&e).stop("saving the job report"))
    }
}
