//! Incremental reading: a source that can pin the window of one run of a sync, the rows that
//! changed since the last run, and say where the next run starts.
//!
//! A run of an incremental job (a batch request with
//! [`incremental`](crate::batch::BatchProcessingRequest::incremental)) first calls the
//! `<workflow>.begin` activity. It finds the cursor the last completed run of the same sync
//! left (or takes the one the request gives), and asks the source config for a
//! [`Window`]: a copy of the config limited to what changed since that cursor, and the
//! cursor the next run starts from. The run then reads the pinned config like any other, so
//! plans, retries and replays see one fixed window.
//!
//! A source opts in with `incremental = <method>` in `#[batch_source]`, naming an
//! `async fn(&self, bounds: Bounds) -> Result<Window<Self>, ConnectorError>`. See
//! [`Bounds`] for what a live run, a rerun and a range run give it.

use serde::{Deserialize, Serialize};

/// Where an incremental run starts, as the source writes it: small JSON (a column value, a
/// database snapshot, a byte offset), shown by `schedule describe` and carried in reports.
pub type Cursor = serde_json::Value;

/// One incremental run's window, pinned before the run reads anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window<C> {
    /// The source config limited to the window: what the run reads.
    pub source: C,
    /// Where the next run starts once this one has written everything.
    pub next: Cursor,
}

/// The cursors a run's window is pinned between, as the `begin` activity gives them to
/// [`SourceConfig::begin_window`](crate::SourceConfig::begin_window).
///
/// - A live run has `previous` (the last completed run's cursor; `None` on a first run).
/// - A rerun adds `from`, read on top of what changed since `previous`, so a rerun never
///   moves the sync past changes it did not read.
/// - A range run (a backfill of an explicit cursor range) has `from` and `to` and no
///   `previous`: its window ends at `to`, and the sync's cursor does not move.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Bounds {
    /// The cursor the last completed run of the sync left.
    pub previous: Option<Cursor>,
    /// Where the request says to start.
    pub from: Option<Cursor>,
    /// Where the request says to end: set only for a range run.
    pub to: Option<Cursor>,
}

impl Bounds {
    /// The bounds of a live run after `previous`.
    pub fn after(previous: Option<Cursor>) -> Self {
        Self {
            previous,
            ..Self::default()
        }
    }

    /// Adds a starting cursor.
    pub fn from(mut self, from: Option<Cursor>) -> Self {
        self.from = from;
        self
    }

    /// Adds an ending cursor.
    pub fn to(mut self, to: Option<Cursor>) -> Self {
        self.to = to;
        self
    }
}
