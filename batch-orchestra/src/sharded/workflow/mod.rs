//! The parent workflow of a sharded job (`<workflow>.sharded`): lists the inputs a page at a
//! time, runs one child `<workflow>` per input with at most `max_concurrent_shards` at once,
//! forwards pause, resume, in-flight and rate changes to the running children, and adds their
//! reports up. The loop is in `run.rs`; this file holds the workflow's state and signals.

mod run;

use crate::job::{
    Control, PAUSE_SIGNAL, RESUME_SIGNAL, SET_MAX_CONCURRENT_SHARDS_SIGNAL,
    SET_MAX_IN_FLIGHT_SIGNAL, SET_RATE_SIGNAL, Sharded, Steer, workflow_glue,
};
use crate::pipeline::Pipeline;
use crate::sharded::ShardedRequestOf;
use crate::sharded::{RunningShard, ShardedProgress, ShardedReport};

/// Shards at once, at most, whatever a request or signal asks.
const MAX_CONCURRENT_SHARDS: u32 = 10_000;

/// The parent workflow of pipeline `P`'s sharded jobs.
pub struct ShardedWorkflow<P: Pipeline> {
    request: Option<ShardedRequestOf<P>>,
    report: crate::sharded::ShardedReportOf<P>,
    running: Vec<RunningShard>,
    queued: u64,
    listing_done: bool,
    paused: bool,
    max_in_flight: u32,
    max_records_per_s: Option<u32>,
    max_concurrent_shards: u32,
}

impl<P: Pipeline> ShardedWorkflow<P> {
    /// The state before the first activation: signals may arrive in it, so the carried
    /// state is set before they apply.
    fn new(input: Option<ShardedRequestOf<P>>) -> Self {
        let mut me = Self {
            report: ShardedReport::new("", P::NAMES.workflow),
            running: Vec::new(),
            queued: 0,
            listing_done: false,
            paused: false,
            max_in_flight: 1,
            max_records_per_s: None,
            max_concurrent_shards: 1,
            request: None,
        };
        if let Some(req) = &input {
            match &req.state {
                Some(carried) => {
                    me.report = carried.report.clone();
                    me.paused = carried.paused;
                    me.max_in_flight = carried.max_in_flight;
                    me.max_records_per_s = carried.max_records_per_s;
                    me.max_concurrent_shards = carried.max_concurrent_shards;
                    me.listing_done = carried.listing_done;
                }
                None => {
                    me.report = ShardedReport::new(req.workflow_id(), P::NAMES.workflow);
                    me.report.quarantine = req.job.quarantine.clone();
                    me.max_in_flight = req.job.max_in_flight;
                    me.max_records_per_s = req.job.max_records_per_s;
                    me.max_concurrent_shards = req.max_concurrent_shards;
                }
            }
        }
        me.max_in_flight = me.max_in_flight.max(1);
        me.max_concurrent_shards = me.max_concurrent_shards.clamp(1, MAX_CONCURRENT_SHARDS);
        me.request = input;
        me
    }

    /// What the running children must be told, compared to what they were told last.
    fn controls(&self) -> Controls {
        Controls {
            paused: self.paused,
            max_in_flight: self.max_in_flight,
            max_records_per_s: self.max_records_per_s,
        }
    }

    /// Everything a signal can change: the children's controls and the shards at once.
    fn settings(&self) -> (Controls, u32) {
        (self.controls(), self.max_concurrent_shards)
    }
}

/// The settings a sharded job forwards to its running shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Controls {
    paused: bool,
    max_in_flight: u32,
    max_records_per_s: Option<u32>,
}

impl<P: Pipeline> Steer for ShardedWorkflow<P> {
    const SIGNALS: &'static [&'static str] = &[
        PAUSE_SIGNAL,
        RESUME_SIGNAL,
        SET_MAX_IN_FLIGHT_SIGNAL,
        SET_RATE_SIGNAL,
        SET_MAX_CONCURRENT_SHARDS_SIGNAL,
    ];
    type Progress = ShardedProgress<P::Source>;

    fn steer(&mut self, control: Control) {
        match control {
            Control::Pause => self.paused = true,
            Control::Resume => self.paused = false,
            Control::SetMaxInFlight(n) => self.max_in_flight = n.max(1),
            Control::SetRate(n) => self.max_records_per_s = (n > 0).then_some(n),
            Control::SetMaxConcurrentShards(n) => {
                self.max_concurrent_shards = n.clamp(1, MAX_CONCURRENT_SHARDS)
            }
        }
    }

    fn progress(&self) -> ShardedProgress<P::Source> {
        ShardedProgress {
            report: self.report.clone(),
            running: self.running.clone(),
            queued: self.queued,
            listing_done: self.listing_done,
            paused: self.paused,
            max_in_flight: self.max_in_flight,
            max_records_per_s: self.max_records_per_s,
            max_concurrent_shards: self.max_concurrent_shards,
        }
    }
}

workflow_glue!(ShardedWorkflow, Sharded, run::run_sharded);
