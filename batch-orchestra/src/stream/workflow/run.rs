//! One workflow run of a streaming job: start slices, add up what they did, end or continue
//! as new.

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use std::time::Duration;

use temporalio_sdk::{
    ActivityCancellationType, ActivityExecutionError, ApplicationFailure, ContinueAsNewOptions,
    WorkflowContext, WorkflowTermination,
};

use super::StreamWorkflow;
use crate::connector::StreamSource;
use crate::failure::{ACTIVITY_FAILED_TYPE, RECORD_ERROR_LIMIT_TYPE};
use crate::failure::{Cause, Stop};
use crate::failure::{activity_options, checked_request};
use crate::job::JobStatus;
use crate::job::workflow_ms;
use crate::pipeline::{OffsetOf, Pipeline};
use crate::stream::executor::StreamActivity;
use crate::stream::{EndReason, SliceInput, SliceReport, StreamCarried};
use crate::stream::{StreamReportOf, StreamRequestOf};

type SliceDone<O> = (u32, Result<SliceReport<O>, ActivityExecutionError>);

/// Runs one workflow run of a streaming job.
pub(super) async fn run_stream<P: Pipeline>(
    ctx: &WorkflowContext<StreamWorkflow<P>>,
) -> Result<StreamReportOf<P>, WorkflowTermination>
where
    P::Source: StreamSource,
{
    let req = checked_request(ctx.state(|w| w.request.clone()), |r| r.validate())?;
    let mut report = ctx.state(|w| w.report.clone());
    let now = workflow_ms(ctx);
    if report.runs == 0 {
        report.started_at_ms = now;
    }
    report.runs += 1;
    report.status = JobStatus::Running;
    report.checkpoints.resize(req.executors as usize, None);
    publish(ctx, &report, 0, None);

    let mut running: Vec<LocalBoxFuture<'_, SliceDone<OffsetOf<P>>>> = Vec::new();
    let mut busy = vec![false; req.executors as usize];
    // Records allotted to running slices, so that together they stop at max_records.
    let mut allotted = vec![0u64; req.executors as usize];
    let mut idle_ms = vec![0u64; req.executors as usize];
    let mut rates = vec![0f64; req.executors as usize];
    let mut ending: Option<EndReason> = None;
    let mut cancelling = false;
    let mut rolling_over = false;
    let mut this_run = 0u32;
    let mut started = 0u64;

    loop {
        if !cancelling && ctx.cancellation_token().is_cancelled() {
            cancelling = true;
        }
        if !rolling_over && (this_run >= req.max_slices_per_run || ctx.continue_as_new_suggested())
        {
            rolling_over = true;
        }
        let elapsed = workflow_ms(ctx).saturating_sub(report.started_at_ms);
        if ending.is_none()
            && let Some(max) = req.max_duration
            && elapsed >= max.as_millis() as u64
        {
            ending = Some(EndReason::MaxDuration);
        }
        if ending.is_none()
            && let Some(max) = req.max_records
            && report.records_received >= max
        {
            ending = Some(EndReason::MaxRecords);
        }
        let paused = ctx.state(|w| w.paused);
        if !paused && !cancelling && !rolling_over && ending.is_none() {
            // What max_records leaves, shared among the executors about to start.
            let free = busy.iter().filter(|b| !**b).count() as u64;
            let share = req.max_records.map(|max| {
                max.saturating_sub(report.records_received)
                    .saturating_sub(allotted.iter().sum())
                    .div_ceil(free.max(1))
            });
            for executor in 0..req.executors {
                let i = executor as usize;
                if busy[i] || share == Some(0) {
                    continue;
                }
                let max_records = share;
                let length = match req.max_duration {
                    Some(max) => req
                        .checkpoint_interval
                        .min(max.saturating_sub(Duration::from_millis(elapsed)))
                        .max(Duration::from_millis(100)),
                    None => req.checkpoint_interval,
                };
                let idle_after = req
                    .idle_timeout
                    .map(|t| t.saturating_sub(Duration::from_millis(idle_ms[i])));
                let input = SliceInput {
                    job_id: req.job_id.clone(),
                    source: req.source.clone(),
                    sink: req.sink.clone(),
                    executor,
                    after: report.checkpoints[i].clone(),
                    batch_size: req.batch_size,
                    linger: req.linger,
                    buffer: req.buffer,
                    length,
                    max_records,
                    idle_after,
                    max_error_samples: req.max_error_samples,
                    retry_for: req.retry_for,
                    call_timeout: req.call_timeout,
                };
                running.push(slice::<P>(ctx, &req, input, report.slices + started));
                started += 1;
                busy[i] = true;
                allotted[i] = max_records.unwrap_or(0);
            }
        }
        publish(ctx, &report, running.len() as u32, Some(rates.iter().sum()));
        if running.is_empty() {
            if cancelling {
                report.status = JobStatus::Cancelled;
                finish(ctx, &mut report);
                return Err(WorkflowTermination::cancelled_with_details(report));
            }
            if let Some(reason) = ending {
                report.status = JobStatus::Completed;
                report.ended = Some(reason);
                finish(ctx, &mut report);
                return Ok(report);
            }
            if rolling_over {
                finish(ctx, &mut report);
                let paused = ctx.state(|w| w.paused);
                let mut next = req.clone();
                next.state = Some(StreamCarried { report, paused });
                return match ctx.continue_as_new(next, ContinueAsNewOptions::default()) {
                    Err(termination) => Err(termination),
                    Ok(never) => match never {},
                };
            }
            if paused {
                if ctx.wait_condition(|w| !w.paused).await.is_err() {
                    cancelling = true;
                }
                continue;
            }
            return Err(fail(
                ctx,
                report,
                Stop::new(
                    ACTIVITY_FAILED_TYPE,
                    "the workflow has nothing to wait for (internal error)",
                ),
            ));
        }
        let ((executor, result), _, rest) = futures::future::select_all(running).await;
        running = rest;
        let i = executor as usize;
        busy[i] = false;
        allotted[i] = 0;
        this_run += 1;
        let slice = match result {
            Ok(slice) => slice,
            // A cancelled slice that did not report its counts: what it wrote is in the sink
            // and was acknowledged, or will be delivered again to the next job.
            Err(_) if cancelling || ctx.cancellation_token().is_cancelled() => {
                cancelling = true;
                continue;
            }
            Err(e) => {
                let stop = Cause::of(&e).stop(format_args!(
                    "streaming from checkpoint {:?} (executor {executor})",
                    report.checkpoints[i]
                ));
                return Err(fail(ctx, report, stop));
            }
        };
        report.slices += 1;
        report.records_received += slice.received;
        report.records_written += slice.written;
        report.already_present += slice.already_present;
        report.superseded += slice.superseded;
        report.records_filtered += slice.filtered;
        report.record_errors += slice.record_errors;
        report.error_samples.extend(slice.error_samples);
        report.error_samples.sort_by_key(|e| e.position.record);
        report
            .error_samples
            .truncate(req.max_error_samples as usize);
        if slice.checkpoint.is_some() {
            report.checkpoints[i] = slice.checkpoint;
        }
        rates[i] = if slice.work_ms > 0 {
            slice.received as f64 * 1000.0 / slice.work_ms as f64
        } else {
            0.0
        };
        // Idleness adds up over slices that received nothing.
        idle_ms[i] = if slice.received == 0 {
            idle_ms[i] + slice.idle_ms
        } else {
            slice.idle_ms
        };
        ctx.state_mut(|w| w.lag = slice.lag);
        if slice.idle && ending.is_none() {
            ending = Some(EndReason::Idle);
        }
        if let Some(max) = req.max_record_errors
            && report.record_errors > max
        {
            let first = report
                .error_samples
                .first()
                .map(|e| format!("; the first: {e}"))
                .unwrap_or_default();
            let stop = Stop::new(
                RECORD_ERROR_LIMIT_TYPE,
                format!(
                    "{} record errors, more than max_record_errors = {max}{first}",
                    report.record_errors
                ),
            );
            return Err(fail(ctx, report, stop));
        }
    }
}

/// Starts one slice on the queue executor. A cancel waits for the slice to stop: it writes
/// what it holds and reports it.
fn slice<'a, P: Pipeline>(
    ctx: &'a WorkflowContext<StreamWorkflow<P>>,
    req: &StreamRequestOf<P>,
    input: SliceInput<P::Source, P::Sink>,
    number: u64,
) -> LocalBoxFuture<'a, SliceDone<OffsetOf<P>>>
where
    P::Source: StreamSource,
{
    let executor = input.executor;
    // Room for the slice, a final write and the connect that opens it.
    let timeout = input.length + req.call_timeout * 3 + Duration::from_secs(30);
    let mut opts = activity_options(
        Some(&req.retry),
        timeout,
        req.heartbeat_timeout,
        Some(format!("stream-{executor}-{number}")),
    );
    opts.cancellation_type = ActivityCancellationType::WaitCancellationCompleted;
    ctx.execute_activity(StreamActivity::<P>::new(), input, opts)
        .map(move |result| (executor, result))
        .boxed_local()
}

/// Shares the report with the `progress` query.
fn publish<P: Pipeline>(
    ctx: &WorkflowContext<StreamWorkflow<P>>,
    report: &StreamReportOf<P>,
    running: u32,
    rate: Option<f64>,
) {
    let report = report.clone();
    ctx.state_mut(|w| {
        w.report = report;
        w.running = running;
        if let Some(rate) = rate {
            w.records_per_s = rate;
        }
    });
}

fn finish<P: Pipeline>(ctx: &WorkflowContext<StreamWorkflow<P>>, report: &mut StreamReportOf<P>) {
    report.elapsed_ms = workflow_ms(ctx).saturating_sub(report.started_at_ms);
    publish(ctx, report, 0, None);
}

fn fail<P: Pipeline>(
    ctx: &WorkflowContext<StreamWorkflow<P>>,
    mut report: StreamReportOf<P>,
    stop: Stop,
) -> WorkflowTermination {
    report.status = JobStatus::Failed;
    report.failure = Some(stop.message.clone());
    finish(ctx, &mut report);
    WorkflowTermination::failed_application(
        ApplicationFailure::builder(stop.message)
            .type_name(stop.kind.to_owned())
            .non_retryable(true)
            .details(report)
            .build(),
    )
}
