//! The workflow of a streaming pipeline, registered under the pipeline's workflow name: runs
//! slices of the stream through the queue executor (`<workflow>.stream`), up to `executors`
//! at once, records their checkpoints and counts, and ends when cancelled or at an end
//! condition. The loop is in `run.rs`; this file holds the workflow's state and signals.

mod run;

use crate::job::{Control, PAUSE_SIGNAL, RESUME_SIGNAL, Steer, Stream, workflow_glue};
use crate::pipeline::{OffsetOf, Pipeline};
use crate::stream::{StreamProgress, StreamReport};
use crate::stream::{StreamReportOf, StreamRequestOf};

/// The workflow of streaming pipeline `P`.
pub struct StreamWorkflow<P: Pipeline> {
    request: Option<StreamRequestOf<P>>,
    report: StreamReportOf<P>,
    paused: bool,
    running: u32,
    records_per_s: f64,
    lag: Option<u64>,
}

impl<P: Pipeline> StreamWorkflow<P> {
    /// The state before the first activation: signals may arrive in it, so the carried
    /// state is set before they apply.
    fn new(input: Option<StreamRequestOf<P>>) -> Self {
        let (report, paused) = match &input {
            Some(req) => match &req.state {
                Some(carried) => (carried.report.clone(), carried.paused),
                None => (
                    StreamReport::new(&req.job_id, P::NAMES.workflow, req.executors),
                    false,
                ),
            },
            None => (StreamReport::new("", P::NAMES.workflow, 1), false),
        };
        Self {
            request: input,
            report,
            paused,
            running: 0,
            records_per_s: 0.0,
            lag: None,
        }
    }
}

impl<P: Pipeline> Steer for StreamWorkflow<P> {
    const SIGNALS: &'static [&'static str] = &[PAUSE_SIGNAL, RESUME_SIGNAL];
    type Progress = StreamProgress<OffsetOf<P>>;

    fn steer(&mut self, control: Control) {
        match control {
            Control::Pause => self.paused = true,
            Control::Resume => self.paused = false,
            // Not among its signals: a stream's executors are set when it starts.
            Control::SetMaxInFlight(_)
            | Control::SetRate(_)
            | Control::SetMaxConcurrentShards(_) => {}
        }
    }

    fn progress(&self) -> StreamProgress<OffsetOf<P>> {
        StreamProgress {
            report: self.report.clone(),
            paused: self.paused,
            running: self.running,
            records_per_s: self.records_per_s,
            lag: self.lag,
        }
    }
}

workflow_glue!(StreamWorkflow, Stream, run::run_stream, where P::Source: crate::connector::StreamSource);
