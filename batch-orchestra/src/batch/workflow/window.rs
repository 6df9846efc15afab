//! The sliding window: plans ahead, keeps up to `max_in_flight` `process` activities running,
//! records failed batches and goes on, and drains cleanly on continue-as-new or cancellation.
//!
//! A group of batches whose activity fails for good is split: each batch is rerun alone
//! (with at most two attempts), so a poison batch fails alone and its neighbours are written.
//! A group that fails while no other batch succeeded since it started is an outage, not a
//! poison batch: the job holds (`Outage` in progress), putting the failed batches aside and
//! probing with one batch at a time every [`PROBE_INTERVAL`], and goes on when a probe
//! succeeds, or fails once the outage outlasts the request's `outage_budget`.
//! A batch that fails alone is recorded as a failed batch, unless no batch of the job has been
//! processed yet (outside a redrive): then the sink or source is most likely wrong, and the job
//! fails. A
//! configuration error fails the job.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use temporalio_sdk::TimerResult;

use super::carry::Segment;
use super::failures::{describe, record_all_failed};
use super::job::{Dispatched, Event, ISOLATED_ATTEMPTS, Job};
use crate::batch::StoppedAt;
use crate::connector::{BatchRange, SourceConfig};
use crate::failure::{
    ACTIVITY_FAILED_TYPE, BATCH_ERROR_TYPE, CONFIG_ERROR_TYPE, TRANSIENT_ERROR_TYPE,
};
use crate::failure::{Cause, Stop};
use crate::job::{InFlight, Outage};
use crate::pipeline::{OffsetOf, Pipeline};

/// How a run of the window ended.
pub(super) enum Next {
    /// Every batch is done (processed or failed).
    Done,
    /// The run processed its share: continue as new.
    ContinueAsNew,
    /// The job was cancelled and every activity has stopped.
    Cancelled,
}

type Planned<O> = VecDeque<(u64, u32, BatchRange<O>)>;
/// Batches to run again one per activity: (sequence, range, isolated after a failure).
type Reruns<O> = VecDeque<(u64, BatchRange<O>, bool)>;

/// Runs the window until the source is exhausted, the run should continue as new, or the job
/// is cancelled, with no activity left running.
pub(super) async fn drive<P: Pipeline>(
    job: &mut Job<'_, P>,
    segments: &[Segment<OffsetOf<P>>],
) -> Result<Next, Stop> {
    let ctx = job.ctx;
    let max_per_run = job.req.max_batches_per_run;
    let plan_ahead = job.req.plan_ahead as usize;
    // Batches per activity: the request's number, grown while a group's work is quick (runs
    // recorded before this keep it fixed on replay).
    let mut sizing = GroupSizing::new(
        job.req.batches_per_activity.max(1) as usize,
        ctx.patched(ADAPTIVE_GROUPS_PATCH) && job.req.throttle.is_none(),
    );
    if let Some(cap) = job.req.max_batches_per_activity {
        sizing.cap = Some(cap as usize);
    }
    let mut plan_segment = job.segment;
    let mut plan_cursor = job.cursor.clone();
    let mut plan_record = job.next_record;
    let mut next_index = job.next_batch;
    // Batches planned but not started, and batches to rerun alone: (sequence, segment, range).
    let mut planned: Planned<OffsetOf<P>> = VecDeque::new();
    let mut isolate: Reruns<OffsetOf<P>> = VecDeque::new();
    // Ends of batches done (processed or failed) not yet contiguous with the frontier, by
    // sequence number within this run.
    let mut done: BTreeMap<u64, BatchRange<OffsetOf<P>>> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut frontier = 0u64;
    let mut exhausted = plan_segment as usize >= segments.len();
    let mut plan_pending = false;
    let mut rolling_over = false;
    let mut cancelling = false;
    let mut this_run = 0u32;
    // Running activities by dispatch slot.
    let mut running: Vec<(u64, InFlight)> = Vec::new();
    let mut window: Vec<LocalBoxFuture<'_, Event<OffsetOf<P>>>> = Vec::new();
    // The rate limit's clock, and whether its timer is in the window.
    let mut pace: Option<Pace> = None;
    let mut pace_pending = false;
    // Holding through outages (runs recorded before this count every failed group).
    let holds = job.req.outage_budget > Duration::ZERO && ctx.patched(OUTAGE_HOLD_PATCH);
    let mut successes = 0u64;
    // Successes counted when each running dispatch started, by slot.
    let mut successes_at: BTreeMap<u64, u64> = BTreeMap::new();
    let mut hold: Option<Hold> = None;
    // Batches put aside during an outage, run again once a probe succeeds.
    let mut held: Reruns<OffsetOf<P>> = VecDeque::new();
    // Batches put aside in an outage that ended: failing alone again, they are poison.
    let mut suspects: BTreeSet<u64> = BTreeSet::new();
    // A job that fails cancels its running activities and waits for them, as a cancelled
    // job does, so its report counts their last writes (runs recorded before this failed at
    // once). The cause waits in `failing` until the window is empty.
    let drain = ctx
        .patched(DRAIN_ON_FAILURE_PATCH)
        .then(|| ctx.cancellation_token().child_token());
    job.activity_token = drain.clone();
    let mut failing: Option<Stop> = None;
    // Fails the job: at once, or once its running activities have stopped.
    macro_rules! stop {
        ($window:lifetime, $stop:expr) => {{
            let stop: Stop = $stop;
            match &drain {
                Some(token) => {
                    failing.get_or_insert(stop);
                    token.cancel();
                    cancelling = true;
                    continue $window;
                }
                None => return Err(stop),
            }
        }};
    }

    'window: loop {
        if !cancelling && ctx.cancellation_token().is_cancelled() {
            cancelling = true;
        }
        if !rolling_over && (this_run >= max_per_run || ctx.continue_as_new_suggested()) {
            rolling_over = true;
        }
        let (paused, max_in_flight, rate) =
            ctx.state(|w| (w.paused, w.max_in_flight.max(1), w.max_records_per_s));
        if rate.is_none() {
            pace = None;
        }
        let throttle = job
            .req
            .throttle
            .clone()
            .filter(|t| job.report.records_read >= job.throttle_mark + t.every_records);
        let per_activity = sizing.size;
        if !exhausted
            && !plan_pending
            && !rolling_over
            && !cancelling
            && planned.len()
                < plan_ahead
                    .div_ceil(2)
                    .max(max_in_flight as usize * per_activity)
        {
            let ahead = if sizing.adaptive {
                plan_ahead.max(per_activity)
            } else {
                plan_ahead
            };
            window.push(job.plan(plan_cursor.clone(), ahead as u32));
            plan_pending = true;
        }
        let mut give_up = false;
        if let Some(h) = &mut hold {
            if h.probe_due && running.is_empty() && !paused && !cancelling {
                h.probe_due = false;
                let probe = match held.iter().position(|(seq, ..)| !h.probed.contains(seq)) {
                    Some(i) => held.remove(i),
                    // Every batch put aside failed a probe: try one not tried yet.
                    None if !planned.is_empty() && !rolling_over => {
                        let (seq, segment, range) = planned.pop_front().expect("not empty");
                        job.dispatched_up_to(segment, &range);
                        this_run += 1;
                        Some((seq, range, false))
                    }
                    // Every batch there is failed alone: nothing tells an outage from
                    // poison batches any more, so they fail as batches (redrivable).
                    None => {
                        give_up = true;
                        None
                    }
                };
                if let Some((seq, range, _)) = probe {
                    let (slot, info, fut) = job.process(vec![seq], vec![range], false);
                    successes_at.insert(slot, successes);
                    h.probing = Some(slot);
                    running.push((slot, info));
                    window.push(fut);
                }
                job.publish(&running);
            }
        } else if !paused && throttle.is_none() && !cancelling {
            while (running.len() as u32) < max_in_flight {
                let ready = !(rolling_over || this_run >= max_per_run || planned.is_empty());
                if isolate.is_empty() && !ready {
                    break;
                }
                if let Some(rate) = rate {
                    let now = job.now_ms();
                    let clock = pace.get_or_insert(Pace::new(now, rate));
                    // A new rate, or a clock that fell behind (a pause, a slow sink), starts
                    // afresh: no burst to catch up.
                    if clock.rate != rate || now > clock.due_ms() + 1_000 {
                        *clock = Pace::new(now, rate);
                    }
                    if now < clock.due_ms() {
                        if !pace_pending {
                            // At most a second, so a new rate applies within a second.
                            let wait = (clock.due_ms() - now).min(1_000);
                            window.push(
                                ctx.timer(std::time::Duration::from_millis(wait))
                                    .map(Event::Paced)
                                    .boxed_local(),
                            );
                            pace_pending = true;
                        }
                        break;
                    }
                }
                if let Some((seq, range, isolated)) = isolate.pop_front() {
                    let (slot, info, fut) = job.process(vec![seq], vec![range], isolated);
                    successes_at.insert(slot, successes);
                    if let Some(clock) = &mut pace {
                        clock.sent += info.records;
                    }
                    running.push((slot, info));
                    window.push(fut);
                    continue;
                }
                // A group of consecutive batches, within the run's limit.
                let take = per_activity
                    .min(planned.len())
                    .min((max_per_run - this_run) as usize);
                let (mut seqs, mut group) = (Vec::with_capacity(take), Vec::with_capacity(take));
                for (seq, segment, range) in planned.drain(..take) {
                    job.dispatched_up_to(segment, &range);
                    seqs.push(seq);
                    group.push(range);
                }
                this_run += take as u32;
                let (slot, info, fut) = job.process(seqs, group, false);
                successes_at.insert(slot, successes);
                if let Some(clock) = &mut pace {
                    clock.sent += info.records;
                }
                running.push((slot, info));
                window.push(fut);
            }
            job.publish(&running);
        }
        if give_up && let Some(h) = hold.take() {
            ctx.state_mut(|w| w.outage = None);
            let mut aside: Vec<_> = held.drain(..).collect();
            aside.sort_by_key(|(seq, ..)| *seq);
            let now = job.now_ms();
            let cause = Cause {
                kind: TRANSIENT_ERROR_TYPE,
                message: h.cause.clone(),
                attempt: None,
            };
            let ranges: Vec<_> = aside.iter().map(|(_, range, _)| range.clone()).collect();
            let max = job.req.max_failed_batches;
            let recorded = record_all_failed(&mut job.report, &ranges, &cause, 1, now, max);
            done.extend(aside.into_iter().map(|(seq, range, _)| (seq, range)));
            advance(job, segments, &mut done, &mut frontier);
            job.touch();
            job.publish(&running);
            if let Err(e) = recorded {
                stop!('window, e);
            }
            continue;
        }
        if window.is_empty() {
            if let Some(stop) = failing.take() {
                return Err(stop);
            }
            if cancelling {
                return Ok(Next::Cancelled);
            }
            if exhausted && planned.is_empty() && isolate.is_empty() && held.is_empty() {
                return Ok(Next::Done);
            }
            if rolling_over && isolate.is_empty() && held.is_empty() {
                return Ok(Next::ContinueAsNew);
            }
            if let Some(t) = throttle {
                if ctx.timer(t.pause).await == TimerResult::Cancelled
                    || ctx.cancellation_token().is_cancelled()
                {
                    cancelling = true;
                    continue;
                }
                let over = job.report.records_read - job.throttle_mark;
                job.throttle_mark += over - over % t.every_records;
                continue;
            }
            if paused {
                if ctx.wait_condition(|w| !w.paused).await.is_err() {
                    cancelling = true;
                }
                continue;
            }
            stop!(
                'window,
                Stop::new(
                    ACTIVITY_FAILED_TYPE,
                    "the workflow has nothing to wait for (internal error)",
                )
            );
        }
        let (event, _, rest) = futures::future::select_all(window).await;
        window = rest;
        // A cancelled job stops dispatching and waits for its activities to stop writing.
        if !cancelling && ctx.cancellation_token().is_cancelled() {
            cancelling = true;
        }
        match event {
            Event::Paced(fired) => {
                pace_pending = false;
                if fired == TimerResult::Cancelled {
                    cancelling = true;
                }
            }
            Event::Probe(fired) => {
                if fired == TimerResult::Cancelled {
                    cancelling = true;
                }
                if let Some(h) = &mut hold {
                    h.timer_pending = false;
                    h.probe_due = true;
                }
            }
            Event::Planned(result) => {
                plan_pending = false;
                if cancelling {
                    continue;
                }
                let output = match result {
                    Ok(output) => output,
                    Err(e) => stop!(
                        'window,
                        Cause::of(&e)
                            .stop(format_args!("planning batches from record {plan_record}"))
                    ),
                };
                if job.takes_fingerprint {
                    job.takes_fingerprint = false;
                    job.report.input_fingerprint = output.input_fingerprint;
                }
                let plan = output.plan;
                if plan.batches.is_empty() && !plan.end_of_source {
                    stop!(
                        'window,
                        Stop::new(
                            ACTIVITY_FAILED_TYPE,
                            format!(
                                "source `{}` planned no batch from record {plan_record} but did not report the end of the source",
                                <P::Source as SourceConfig>::NAME
                            ),
                        )
                    );
                }
                let segment = &segments[plan_segment as usize];
                let mut segment_done = plan.end_of_source;
                for b in plan.batches {
                    plan_cursor = Some(b.end.clone());
                    let reached = segment.end.as_ref() == Some(&b.end)
                        || segment
                            .records
                            .is_some_and(|r| plan_record + b.records >= segment.first_record + r);
                    planned.push_back((
                        next_seq,
                        plan_segment,
                        BatchRange {
                            index: next_index,
                            start: b.start,
                            end: b.end,
                            first_record: plan_record,
                            records: b.records,
                        },
                    ));
                    next_seq += 1;
                    plan_record += b.records;
                    next_index += 1;
                    if reached {
                        segment_done = true;
                        break;
                    }
                }
                if segment_done {
                    plan_segment += 1;
                    match segments.get(plan_segment as usize) {
                        Some(next) => {
                            plan_cursor = next.start.clone();
                            plan_record = next.first_record;
                            next_index = next.first_batch;
                        }
                        None => exhausted = true,
                    }
                }
                let planning_done = exhausted;
                ctx.state_mut(|w| {
                    w.records_planned = plan_record;
                    w.planning_done = planning_done;
                });
            }
            Event::Processed(dispatched, result) => {
                running.retain(|(slot, _)| *slot != dispatched.slot);
                let successes_before = successes_at.remove(&dispatched.slot);
                match result {
                    Ok(batch) => {
                        successes += 1;
                        if hold.take().is_some() {
                            // The sink answers again: what was put aside runs first.
                            suspects.extend(held.iter().map(|(seq, ..)| *seq));
                            isolate.extend(held.drain(..));
                            ctx.state_mut(|w| w.outage = None);
                        }
                        let count = batch
                            .cancelled_after
                            .map_or(dispatched.group.len(), |k| k as usize)
                            .min(dispatched.group.len());
                        if count == dispatched.group.len()
                            && !dispatched.isolated
                            && rate.is_none()
                            && let Some(work_ms) = batch.work_ms
                        {
                            sizing.finished(count, work_ms);
                        }
                        for (seq, range) in
                            dispatched.seqs.iter().zip(&dispatched.group).take(count)
                        {
                            done.insert(*seq, range.clone());
                        }
                        // Stopped early while the job goes on (its worker shut down): the
                        // rest of the group runs again, elsewhere, with the full retry policy.
                        if count < dispatched.group.len() && !cancelling {
                            rerun_alone(&mut isolate, &dispatched, count, false);
                        }
                        advance(job, segments, &mut done, &mut frontier);
                        job.touch();
                        let added = job.add(count as u64, batch);
                        job.publish(&running);
                        if let Err(e) = added {
                            stop!('window, e);
                        }
                    }
                    // Cancelled (or lost) while the job was being cancelled: it wrote nothing
                    // that is not already counted.
                    Err(_) if cancelling => job.publish(&running),
                    Err(e) => {
                        let cause = Cause::of(&e);
                        if cause.kind == CONFIG_ERROR_TYPE {
                            stop!('window, cause.stop(describe(&dispatched.group)));
                        }
                        // Nothing succeeded since the group started, after something did
                        // (so the configs are right): an outage, not a poison batch.
                        // An isolated rerun that fails during a hold is held too; a batch held
                        // before that fails alone again is poison, whatever else runs.
                        let suspect =
                            dispatched.seqs.len() == 1 && suspects.contains(&dispatched.seqs[0]);
                        let outage = holds
                            && (!dispatched.isolated || hold.is_some())
                            && !suspect
                            && cause.kind != BATCH_ERROR_TYPE
                            && (job.report.batches > 0 || job.req.redrive.is_some())
                            && (hold.is_some() || successes_before == Some(successes));
                        if outage {
                            let now = job.now_ms();
                            let budget = job.req.outage_budget.as_millis() as u64;
                            let h = hold.get_or_insert_with(|| Hold::new(now, budget));
                            if now >= h.until_ms {
                                stop!(
                                    'window,
                                    Stop::new(
                                    ACTIVITY_FAILED_TYPE,
                                    format!(
                                        "every batch failed for {} s, longer than the outage budget of {} s (the sink or source is unreachable); the last failure, {}: {}",
                                        (now - h.since_ms) / 1_000,
                                        budget / 1_000,
                                        describe(&dispatched.group),
                                        cause.message
                                    ),
                                    )
                                );
                            }
                            if h.probing == Some(dispatched.slot) {
                                h.probing = None;
                                h.probed.extend(dispatched.seqs.iter().copied());
                            }
                            h.cause = cause.message;
                            let isolated = dispatched.isolated;
                            held.extend(
                                dispatched
                                    .seqs
                                    .iter()
                                    .zip(&dispatched.group)
                                    .map(|(seq, range)| (*seq, range.clone(), isolated)),
                            );
                            if !h.timer_pending && !cancelling {
                                h.timer_pending = true;
                                window.push(
                                    ctx.timer(PROBE_INTERVAL).map(Event::Probe).boxed_local(),
                                );
                            }
                            let shown = h.shown(held.len() as u64);
                            ctx.state_mut(|w| w.outage = Some(shown));
                            job.publish(&running);
                            continue;
                        }
                        if dispatched.group.len() > 1 && job.req.max_failed_batches > 0 {
                            // Rerun each batch alone, so only a poison batch fails.
                            rerun_alone(&mut isolate, &dispatched, 0, true);
                        } else if job.report.batches == 0
                            && job.req.redrive.is_none()
                            && job.req.max_failed_batches > 0
                            && cause.kind != BATCH_ERROR_TYPE
                        {
                            // Nothing has been written yet: the sink or the source is most
                            // likely wrong (an unreachable host), not one batch. Fail now
                            // rather than retrying every batch of the job.
                            stop!(
                                'window,
                                cause.stop(format_args!(
                                "{} failed before any batch of the job was processed, so the job stops (check the source and sink)",
                                describe(&dispatched.group)
                            ))
                            );
                        } else {
                            let attempts = if dispatched.isolated {
                                ISOLATED_ATTEMPTS
                            } else {
                                1
                            };
                            let now = job.now_ms();
                            let max = job.req.max_failed_batches;
                            for (seq, range) in dispatched.seqs.iter().zip(&dispatched.group) {
                                done.insert(*seq, range.clone());
                            }
                            // Every batch of the group is unwritten (a group fails as a
                            // whole only when no failed batch is allowed): each is recorded, so
                            // a redrive reruns them all.
                            let recorded = record_all_failed(
                                &mut job.report,
                                &dispatched.group,
                                &cause,
                                attempts,
                                now,
                                max,
                            );
                            advance(job, segments, &mut done, &mut frontier);
                            job.touch();
                            if let Err(e) = recorded {
                                stop!('window, e);
                            }
                        }
                        job.publish(&running);
                    }
                }
            }
        }
    }
}

/// Marks runs whose failure cancels and awaits their running activities first.
const DRAIN_ON_FAILURE_PATCH: &str = "drain-on-failure";
/// Marks runs that hold through outages instead of counting every failed group.
const OUTAGE_HOLD_PATCH: &str = "hold-through-outages";
/// The wait between probes during an outage (each probe also takes its activity's retries).
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// An outage the window is holding through.
struct Hold {
    since_ms: u64,
    until_ms: u64,
    cause: String,
    /// A probe may start (its wait ended).
    probe_due: bool,
    /// The probe timer is in the window.
    timer_pending: bool,
    /// The running probe's slot.
    probing: Option<u64>,
    /// Batches that failed as probes in this round, so the next probe tries another.
    probed: BTreeSet<u64>,
}

impl Hold {
    fn new(now_ms: u64, budget_ms: u64) -> Self {
        Self {
            since_ms: now_ms,
            until_ms: now_ms.saturating_add(budget_ms),
            cause: String::new(),
            probe_due: false,
            timer_pending: false,
            probing: None,
            probed: BTreeSet::new(),
        }
    }

    fn shown(&self, held_batches: u64) -> Outage {
        Outage {
            since_ms: self.since_ms,
            until_ms: self.until_ms,
            cause: self.cause.clone(),
            held_batches,
        }
    }
}

/// Marks runs whose groups of batches per activity are sized by their work time.
const ADAPTIVE_GROUPS_PATCH: &str = "groups-sized-by-work-time";
/// A group whose work (read, transform, write) took less than this doubles the next groups:
/// the activity's fixed cost of orchestration, several milliseconds of server round trips,
/// then outweighs its work.
const QUICK_GROUP_MS: u64 = 300;
/// A group whose work took more than this halves the next groups (back towards the request's
/// number), so a slow sink keeps fine-grained retries and progress.
const SLOW_GROUP_MS: u64 = 4_000;
/// How far groups grow: this many times the request's batches per activity, and at most
/// [`MAX_GROUP`] batches.
const GROWTH: usize = 16;
const MAX_GROUP: usize = 64;

/// Batches per `process` activity: the request's `batches_per_activity`, doubled after a full
/// group's work took under [`QUICK_GROUP_MS`] (up to [`GROWTH`] times it, at most
/// [`MAX_GROUP`]) and halved after one took over [`SLOW_GROUP_MS`]. The work time is what the
/// activity measured and returned, so it is in history and a replay sizes groups the same way
/// (workflow time is not: a workflow task retried after its worker died sees another time). A
/// fast source and sink (a no-op, a local file) then pay the per-activity cost of
/// orchestration once per tens of batches, while a failed group is still split and rerun one
/// batch at a time.
struct GroupSizing {
    base: usize,
    size: usize,
    adaptive: bool,
    /// The request's `max_batches_per_activity`, if set.
    cap: Option<usize>,
}

impl GroupSizing {
    fn new(base: usize, adaptive: bool) -> Self {
        Self {
            base,
            size: base,
            adaptive,
            cap: None,
        }
    }

    /// A full group of `batches` did its work in `took_ms`.
    fn finished(&mut self, batches: usize, took_ms: u64) {
        if !self.adaptive || batches < self.size {
            return;
        }
        let max = self
            .cap
            .unwrap_or((self.base * GROWTH).min(MAX_GROUP))
            .max(self.base);
        if took_ms < QUICK_GROUP_MS {
            self.size = (self.size * 2).min(max);
        } else if took_ms > SLOW_GROUP_MS {
            self.size = (self.size / 2).max(self.base);
        }
    }
}

/// The rate limit's clock: records started since `start_ms`, at `rate` records per second.
struct Pace {
    start_ms: u64,
    sent: u64,
    rate: u32,
}

impl Pace {
    fn new(now_ms: u64, rate: u32) -> Self {
        Self {
            start_ms: now_ms,
            sent: 0,
            rate: rate.max(1),
        }
    }

    /// When the next group may start.
    fn due_ms(&self) -> u64 {
        self.start_ms + self.sent * 1_000 / u64::from(self.rate)
    }
}

/// Queues the batches of `dispatched` from `skip` on to be run one per activity: `isolated`
/// (after their group failed for good, with at most two attempts) or handed on (after their
/// activity stopped early, with the job's retry policy).
fn rerun_alone<O: crate::connector::Offset>(
    reruns: &mut Reruns<O>,
    dispatched: &Dispatched<O>,
    skip: usize,
    isolated: bool,
) {
    let batches = dispatched.seqs.iter().zip(&dispatched.group).skip(skip);
    reruns.extend(batches.map(|(seq, range)| (*seq, range.clone(), isolated)));
}

/// Moves the report's end offset over every batch done contiguously from the frontier.
fn advance<P: Pipeline>(
    job: &mut Job<'_, P>,
    segments: &[Segment<OffsetOf<P>>],
    done: &mut BTreeMap<u64, BatchRange<OffsetOf<P>>>,
    frontier: &mut u64,
) {
    while let Some(range) = done.remove(frontier) {
        // The stretch of a batch: the last whose first batch is at or before it.
        let stretch = segments
            .iter()
            .rposition(|s| s.first_batch <= range.index)
            .unwrap_or(0);
        job.stopped_at = StoppedAt {
            stretch: stretch as u32,
            offset: Some(range.end.clone()),
            record: range.first_record + range.records,
            batch: range.index + 1,
        };
        job.report.end_offset = Some(range.end);
        *frontier += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::GroupSizing;

    #[test]
    fn groups_grow_while_quick_and_shrink_when_slow() {
        let mut g = GroupSizing::new(4, true);
        g.finished(4, 100);
        assert_eq!(g.size, 8);
        // A group smaller than the current size (dispatched earlier) says nothing.
        g.finished(4, 100);
        assert_eq!(g.size, 8);
        for _ in 0..10 {
            let size = g.size;
            g.finished(size, 50);
        }
        assert_eq!(g.size, 64, "at most 16 times the request's, 64 in all");
        g.finished(64, 1_000);
        assert_eq!(g.size, 64, "between quick and slow: unchanged");
        g.finished(64, 5_000);
        assert_eq!(g.size, 32);
        for _ in 0..10 {
            let size = g.size;
            g.finished(size, 9_000);
        }
        assert_eq!(g.size, 4, "never below the request's number");
        let mut fixed = GroupSizing::new(4, false);
        fixed.finished(4, 1);
        assert_eq!(fixed.size, 4, "runs recorded before keep it fixed");
        let mut capped = GroupSizing::new(2, true);
        capped.cap = Some(2);
        capped.finished(2, 1);
        assert_eq!(
            capped.size, 2,
            "a cap at the request's number keeps it fixed"
        );
        let mut one = GroupSizing::new(1, true);
        for _ in 0..10 {
            let size = one.size;
            one.finished(size, 1);
        }
        assert_eq!(one.size, 16);
    }
}
