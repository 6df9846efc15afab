//! The no-op sink: counts records and drops them. It measures what the orchestration alone
//! can carry, and serves dry runs.

use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

use crate::connector::{Sink, SinkConfig, WriteContext, WriteOutcome};
use crate::error::ConnectorError;
use crate::record::Positioned;

/// A sink that accepts records of type `R` and drops them.
///
/// It is generic over the record type, so it implements [`SinkConfig`] by hand rather than
/// with `#[batch_sink]` (whose configs are not generic).
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct NoopSink<R> {
    #[serde(skip)]
    _record: PhantomData<fn(R)>,
}

impl<R> NoopSink<R> {
    /// The sink.
    pub fn new() -> Self {
        Self {
            _record: PhantomData,
        }
    }
}

impl<R> Default for NoopSink<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Clone for NoopSink<R> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<R: Send + 'static> SinkConfig for NoopSink<R> {
    const NAME: &'static str = "noop";
    type Record = R;
    type Sink = NoopSink<R>;

    async fn build(&self) -> Result<NoopSink<R>, ConnectorError> {
        Ok(Self::new())
    }
}

impl<R: Send + 'static> Sink for NoopSink<R> {
    type Record = R;

    async fn write(
        &self,
        _ctx: &WriteContext,
        records: Vec<Positioned<R>>,
    ) -> Result<WriteOutcome, ConnectorError> {
        Ok(WriteOutcome {
            written: records.len() as u64,
            ..WriteOutcome::default()
        })
    }
}
