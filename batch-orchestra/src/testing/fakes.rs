//! A test source and sink with fault injection, and pipelines over them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::connector::{
    BatchRange, Plan, PlannedBatch, ReadBatch, Sink, Source, WriteContext, WriteOutcome,
};
use crate::error::{ConnectorError, RecordError, TransformError};
use crate::record::{Position, Positioned};

/// A record of [`RangeSource`]: its id and a padding payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRecord {
    /// The record's id: its ordinal in the source.
    pub id: u64,
    /// Padding, `payload_bytes` long, marked so a test can look for it in history.
    pub payload: String,
}

/// The text every [`TestRecord`] payload starts with.
pub const PAYLOAD_MARKER: &str = "RECORD-CONTENT-";

/// A source of `count` records with ids `0..count`; the offset is the next id. Read
/// incrementally, each run reads the ids added since the last (`count` grown), with the
/// cursor `{"end": <count>}`; a range run reads from `from` to `to`.
#[crate::batch_source(name = "range", reader = Self, incremental = begin)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeSource {
    /// Records in the source.
    pub count: u64,
    /// Bytes of payload per record.
    pub payload_bytes: usize,
    /// Every record whose id is a multiple of this (from 1) is unreadable: a record error.
    pub bad_every: Option<u64>,
    /// Fail `build` with a configuration error naming this input.
    pub missing_input: Option<String>,
    /// The first id, when not 0: an incremental run's window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<u64>,
}

impl RangeSource {
    /// `count` records with small payloads.
    pub fn new(count: u64) -> Self {
        Self {
            count,
            payload_bytes: 16,
            bad_every: None,
            missing_input: None,
            first: None,
        }
    }
}

impl RangeSource {
    /// The window of an incremental run: from the last run's end (or a rerun's, whichever
    /// is first) to `count`, or to a range run's `to`.
    async fn begin(
        &self,
        bounds: crate::connector::Bounds,
    ) -> Result<crate::connector::Window<Self>, ConnectorError> {
        let end = |c: &Option<crate::connector::Cursor>| c.as_ref()?.get("end")?.as_u64();
        let first = [end(&bounds.previous), end(&bounds.from)]
            .into_iter()
            .flatten()
            .min();
        let count = end(&bounds.to).map_or(self.count, |to| to.min(self.count));
        Ok(crate::connector::Window {
            source: Self {
                first,
                count,
                ..self.clone()
            },
            next: serde_json::json!({ "end": count }),
        })
    }

    async fn build_source(&self) -> Result<RangeSource, ConnectorError> {
        match &self.missing_input {
            Some(input) => Err(ConnectorError::config(format!(
                "cannot open {input}: no such input"
            ))),
            None => Ok(self.clone()),
        }
    }
}

impl Source for RangeSource {
    type Record = TestRecord;
    type Offset = u64;

    async fn plan(
        &self,
        from: Option<&u64>,
        batch_size: u64,
        max_batches: usize,
    ) -> Result<Plan<u64>, ConnectorError> {
        let mut start = from
            .copied()
            .unwrap_or(self.first.unwrap_or(0))
            .min(self.count);
        let mut batches = Vec::new();
        while start < self.count && batches.len() < max_batches {
            let end = (start + batch_size).min(self.count);
            batches.push(PlannedBatch {
                start,
                end,
                records: end - start,
            });
            start = end;
        }
        Ok(Plan {
            batches,
            end_of_source: start >= self.count,
        })
    }

    async fn read(&self, range: &BatchRange<u64>) -> Result<ReadBatch<TestRecord>, ConnectorError> {
        let mut batch = ReadBatch::default();
        for id in range.start..range.end {
            let position = Position::at(id);
            if self.bad_every.is_some_and(|k| k > 0 && (id + 1) % k == 0) {
                batch.errors.push(RecordError::new(
                    position,
                    format!("record {id} is unreadable (injected)"),
                ));
                continue;
            }
            let mut payload = format!("{PAYLOAD_MARKER}{id}-");
            while payload.len() < self.payload_bytes {
                payload.push('x');
            }
            batch.records.push(Positioned {
                position,
                value: TestRecord { id, payload },
            });
        }
        Ok(batch)
    }
}

/// What a [`CountingSink`] saw for one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkLog {
    /// Ids written, each once.
    pub ids: BTreeSet<u64>,
    /// Records offered again after being written (absorbed as already present).
    pub rewrites: u64,
    /// Write calls, failed ones included.
    pub calls: u64,
    /// Set by [`CountingSink::heal`]: the poison batch is written normally.
    pub healed: bool,
}

static SINK_LOGS: LazyLock<Mutex<HashMap<String, SinkLog>>> = LazyLock::new(Default::default);

/// A sink that records ids in memory, per job, with fault injection.
#[crate::batch_sink(name = "counting", writer = Self)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountingSink {
    /// The key under which writes are logged (use the job id).
    pub log: String,
    /// Fail the first this-many attempts of every batch with a transient error.
    pub fail_attempts: u32,
    /// Fail batch number `n` with a configuration (non-retryable) error.
    pub fatal_at_batch: Option<u64>,
    /// Sleep this long in every write, to keep batches in flight.
    pub delay_ms: u64,
    /// Fail every attempt of batch number `n` with a transient error (a poison batch), until
    /// [`CountingSink::heal`] is called for this log.
    #[serde(default)]
    pub poison_batch: Option<u64>,
    /// Hang forever in the first attempt of batch number `n` (a hung call).
    #[serde(default)]
    pub hang_batch: Option<u64>,
}

impl CountingSink {
    /// A well-behaved sink logging under `log`.
    pub fn new(log: impl Into<String>) -> Self {
        Self {
            log: log.into(),
            fail_attempts: 0,
            fatal_at_batch: None,
            delay_ms: 0,
            poison_batch: None,
            hang_batch: None,
        }
    }

    /// Removes the poison batch's fault for `log`: later writes of it succeed.
    pub fn heal(log: &str) {
        SINK_LOGS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(log.to_owned())
            .or_default()
            .healed = true;
    }

    /// What was written under `log`.
    pub fn log(log: &str) -> SinkLog {
        SINK_LOGS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(log)
            .cloned()
            .unwrap_or_default()
    }
}

impl CountingSink {
    async fn build_sink(&self) -> Result<CountingSink, ConnectorError> {
        Ok(self.clone())
    }
}

impl Sink for CountingSink {
    type Record = TestRecord;

    async fn write(
        &self,
        ctx: &WriteContext,
        records: Vec<Positioned<TestRecord>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        if self.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        }
        if self.hang_batch == Some(ctx.batch) && ctx.attempt == 1 {
            std::future::pending::<()>().await;
        }
        let mut logs = SINK_LOGS.lock().unwrap_or_else(|p| p.into_inner());
        let log = logs.entry(self.log.clone()).or_default();
        log.calls += 1;
        if self.fatal_at_batch == Some(ctx.batch) {
            return Err(ConnectorError::config(format!(
                "sink `{}` refuses batch {} (injected)",
                self.log, ctx.batch
            )));
        }
        if self.poison_batch == Some(ctx.batch) && !log.healed {
            return Err(ConnectorError::transient(format!(
                "sink `{}` cannot take batch {} (injected poison)",
                self.log, ctx.batch
            )));
        }
        if ctx.attempt <= self.fail_attempts {
            return Err(ConnectorError::transient(format!(
                "sink `{}` unavailable on attempt {} of batch {} (injected)",
                self.log, ctx.attempt, ctx.batch
            )));
        }
        let mut outcome = WriteOutcome::default();
        for record in records {
            if log.ids.insert(record.value.id) {
                outcome.written += 1;
            } else {
                log.rewrites += 1;
                outcome.already_present += 1;
            }
        }
        Ok(outcome)
    }
}

crate::pipeline! {
    /// A pipeline from [`RangeSource`] to [`CountingSink`], under the name `range-to-counting`.
    pub RangeToCounting {
        source: RangeSource,
        sink: CountingSink,
    }
}

/// Keeps every `even` record and rejects the others: a transform for tests.
pub fn keep_even(record: TestRecord) -> Result<TestRecord, TransformError> {
    if record.id.is_multiple_of(2) {
        Ok(record)
    } else {
        Err(TransformError::new(format!("id {} is odd", record.id)))
    }
}

crate::pipeline! {
    /// Like [`RangeToCounting`], with the [`keep_even`] transform, under the name `even-only`.
    pub EvenOnly {
        source: RangeSource,
        transform: keep_even,
        sink: CountingSink,
        workflow: "even-only",
    }
}
