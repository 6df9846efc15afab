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
//! `async fn(&self, previous: Option<Cursor>, from: Option<Cursor>) -> Result<Window<Self>,
//! ConnectorError>`: `previous` is the last completed run's cursor, `from` a rerun's
//! starting point, read on top of what changed since `previous` (so a rerun never moves the
//! sync past changes it did not read).

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
