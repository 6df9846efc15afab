//! The signals and the query every kind of job answers: their fixed names, the typed markers
//! clients send them with, and the one value a workflow receives them as.

use std::marker::PhantomData;

use serde::{Deserialize, Serialize};
use temporalio_common::{QueryDefinition, SignalDefinition};

use super::kind::{JobKind, Run};
use crate::pipeline::Pipeline;

/// Name of the query answering a job's progress.
pub const PROGRESS_QUERY: &str = "progress";
/// Name of the signal that stops new work from starting (running work finishes).
pub const PAUSE_SIGNAL: &str = "pause";
/// Name of the signal that lets new work start again.
pub const RESUME_SIGNAL: &str = "resume";
/// Name of the signal that changes how many batches run at once.
pub const SET_MAX_IN_FLIGHT_SIGNAL: &str = "set_max_in_flight";
/// Name of the signal that sets the rate limit in records per second (0: no limit).
pub const SET_RATE_SIGNAL: &str = "set_rate";
/// Name of the signal that changes how many shards of a sharded job run at once.
pub const SET_MAX_CONCURRENT_SHARDS_SIGNAL: &str = "set_max_concurrent_shards";

/// A signal as a workflow receives it: decoded by name from its payload (`()` or a `u32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// `pause`.
    Pause,
    /// `resume`.
    Resume,
    /// `set_max_in_flight`.
    SetMaxInFlight(u32),
    /// `set_rate`: 0 lifts the limit.
    SetRate(u32),
    /// `set_max_concurrent_shards`.
    SetMaxConcurrentShards(u32),
}

impl Control {
    /// The control a signal `name` with the number `n` (ignored by `pause` and `resume`)
    /// stands for; `None` for a name no kind has.
    pub fn of(name: &str, n: u32) -> Option<Self> {
        Some(match name {
            PAUSE_SIGNAL => Self::Pause,
            RESUME_SIGNAL => Self::Resume,
            SET_MAX_IN_FLIGHT_SIGNAL => Self::SetMaxInFlight(n),
            SET_RATE_SIGNAL => Self::SetRate(n),
            SET_MAX_CONCURRENT_SHARDS_SIGNAL => Self::SetMaxConcurrentShards(n),
            _ => return None,
        })
    }

    /// Whether the signal carries a number.
    pub fn takes_number(name: &str) -> bool {
        !matches!(name, PAUSE_SIGNAL | RESUME_SIGNAL)
    }
}

/// A signal of workflow `W` with input `I`, by name: what a client or a parent workflow
/// sends.
pub struct Signal<W, I> {
    name: &'static str,
    _types: PhantomData<fn() -> (W, I)>,
}

impl<W, I> Signal<W, I> {
    /// The signal `name`.
    pub fn named(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }
}

impl<W, I> SignalDefinition for Signal<W, I>
where
    W: temporalio_common::WorkflowDefinition,
    I: Serialize + serde::de::DeserializeOwned + 'static,
{
    type Workflow = W;
    type Input = I;
    fn name(&self) -> &str {
        self.name
    }
}

/// Every signal of kind `K`'s workflow, as the workflow receives it.
pub struct ControlSignal<P, K>(PhantomData<fn() -> (P, K)>);

impl<P: Pipeline, K: JobKind<P>> SignalDefinition for ControlSignal<P, K> {
    type Workflow = Run<P, K>;
    type Input = Control;
    fn name(&self) -> &str {
        "control"
    }
}

/// The `progress` query of kind `K`'s workflow.
pub struct ProgressQuery<P, K>(PhantomData<fn() -> (P, K)>);

impl<P, K> ProgressQuery<P, K> {
    /// The marker.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<P: Pipeline, K: JobKind<P>> QueryDefinition for ProgressQuery<P, K> {
    type Workflow = Run<P, K>;
    type Input = ();
    type Output = K::Progress;
    fn name(&self) -> &str {
        PROGRESS_QUERY
    }
}
